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

Workers, peak RSS and result files come from ``benchmarks/common.py`` (as for the other scripts).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import (
    RESULTS_DIR,
    emit,
    machine_info,
    run_worker,
    training_step_memory,
    worker_spec,
    write_results,
)

SCRIPT = Path(__file__).resolve()
STEPS = (10, 40, 160)
RES_BLOCKS = (6, 24)
BATCH = 32


def _cases() -> list[dict]:
    cases = [{"method": m, "arch": "odenet", "steps": s, "adjoint": m == "adjoint"}
             for m in ("adjoint", "backprop") for s in STEPS]
    cases += [{"method": "resnet", "arch": "resnet", "blocks": b} for b in RES_BLOCKS]
    return cases


def _work(case: dict) -> dict:
    """One training step of the case's model in this (worker) process."""
    from edgeode.train.models import ModelConfig

    if case["arch"] == "odenet":
        cfg = ModelConfig(arch="odenet", solver="rk4", steps=case["steps"], adjoint=case["adjoint"])
    else:
        cfg = ModelConfig(arch="resnet", res_blocks=case["blocks"])
    step = training_step_memory(cfg, BATCH, threads=1)
    return {**case, "parameters": step["parameters"], "peak_mb": step["peak_after_mb"],
            "before_mb": step["peak_before_mb"], "step_mb": step["peak_after_mb"] - step["peak_before_mb"],
            "step_s": step["step_s"]}


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
    argv = sys.argv[1:] if argv is None else argv
    spec = worker_spec(argv)
    if spec is not None:
        emit(_work(spec))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for train_memory.json / .md")
    args = parser.parse_args(argv)
    rows = []
    for case in _cases():
        rows.append(run_worker(SCRIPT, case))
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
    meta = {"batch": BATCH, "threads": 1, "measure": "ru_maxrss of a fresh worker process per row",
            "machine": machine_info()}
    write_results("train_memory", {"meta": meta, "rows": rows, "ratios": ratios}, md, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
