"""Peak memory of one training step: ODE-Net with the adjoint method vs backprop, and ResNet depth.

The claim under test (Chen et al. 2018, §2 and Table 1): the adjoint method trains an ODE block in
memory that does not grow with the number of solver steps, while backprop through the solver
stores every stage of every step (O(steps) memory), like a ResNet whose memory grows with depth.

Each configuration runs in a fresh child process (so peaks do not mix) that builds the model, does
ONE forward + backward pass on a random batch of 32 28x28 images (MNIST-sized; the data do not
matter for memory) and reports ``ru_maxrss`` (peak resident set size) before and after the step.
The "step" column is the growth of the peak during the step -- the memory the gradient method
needs; "peak" includes the ~200+ MB of the Python + torch process itself.

    nice python3 benchmarks/train_memory.py            # writes benchmarks/results/train_memory.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from edgeode.fsutil import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
STEPS = (10, 40, 160)
RES_BLOCKS = (6, 24)
BATCH = 32


def _cases() -> list[dict]:
    cases = [{"method": m, "arch": "odenet", "steps": s, "adjoint": m == "adjoint"}
             for m in ("adjoint", "backprop") for s in STEPS]
    cases += [{"method": "resnet", "arch": "resnet", "blocks": b} for b in RES_BLOCKS]
    return cases


def _child(case: dict) -> dict:
    import torch

    from edgeode.train.models import ModelConfig, build_model, count_parameters

    torch.set_num_threads(1)
    torch.manual_seed(0)
    if case["arch"] == "odenet":
        cfg = ModelConfig(arch="odenet", solver="rk4", steps=case["steps"], adjoint=case["adjoint"])
    else:
        cfg = ModelConfig(arch="resnet", res_blocks=case["blocks"])
    model = build_model(cfg)
    model.train()
    x = torch.randn(BATCH, 1, 28, 28)
    y = torch.randint(0, 10, (BATCH,))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {**case, "parameters": count_parameters(model), "peak_mb": after / 1024,
            "before_mb": before / 1024, "step_mb": (after - before) / 1024, "step_s": seconds}


def _run_case(case: dict) -> dict:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"child failed for {case}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _label(r: dict) -> str:
    if r["arch"] == "odenet":
        return f"ODE-Net, {r['method']}, RK4 x {r['steps']} steps"
    return f"ResNet, {r['blocks']} blocks"


def _markdown(rows: list[dict], ratios: dict) -> str:
    lines = [
        f"One training step (forward + backward), batch {BATCH}, 28x28 input, 1 thread; "
        "peak RSS of a fresh process each.",
        "",
        "| model | parameters | peak RSS (MB) | growth during step (MB) | step time (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {_label(r)} | {r['parameters']:,} | {r['peak_mb']:.0f} | {r['step_mb']:.0f} | {r['step_s']:.2f} |")
    lines += ["", "| ratio | peak RSS | growth during step |", "|---|---:|---:|"]
    for name, v in ratios.items():
        lines.append(f"| {name} | {v['peak']:.2f}x | {v['step']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for train_memory.json / .md")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return 0
    rows = []
    for case in _cases():
        rows.append(_run_case(case))
        print(f"{_label(rows[-1])}: peak {rows[-1]['peak_mb']:.0f} MB, step {rows[-1]['step_mb']:.0f} MB", file=sys.stderr)

    def pick(method: str, key: str, value: int) -> dict:
        return next(r for r in rows if r["method"] == method and r.get(key) == value)

    ratios = {}
    for method in ("adjoint", "backprop"):
        hi, lo = pick(method, "steps", STEPS[-1]), pick(method, "steps", STEPS[0])
        ratios[f"ODE-Net {method}: {STEPS[-1]}/{STEPS[0]} steps"] = {
            "peak": hi["peak_mb"] / lo["peak_mb"], "step": hi["step_mb"] / max(lo["step_mb"], 1e-9)}
    hi, lo = pick("resnet", "blocks", RES_BLOCKS[-1]), pick("resnet", "blocks", RES_BLOCKS[0])
    ratios[f"ResNet: {RES_BLOCKS[-1]}/{RES_BLOCKS[0]} blocks"] = {
        "peak": hi["peak_mb"] / lo["peak_mb"], "step": hi["step_mb"] / max(lo["step_mb"], 1e-9)}
    md = _markdown(rows, ratios)
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "batch": BATCH,
            "threads": 1, "measure": "ru_maxrss of a fresh child process per row"}
    for name, text in (("train_memory.json", json.dumps({"meta": meta, "rows": rows, "ratios": ratios}, indent=2)),
                       ("train_memory.md", md)):
        atomic_write_text(args.out / name, text + ("\n" if not text.endswith("\n") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
