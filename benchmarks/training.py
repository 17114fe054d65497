"""Training step time and peak memory: edgeode vs torchdiffeq (issue 5, item 3).

The MNIST ODE-Net (``ModelConfig(arch="odenet")``, width 64, 28x28), batch 32, Kutta's 3/8 rule
(our ``rk4_38`` = torchdiffeq's fixed-grid ``"rk4"``) with 10, 40 and 160 steps, one thread. Four
ways to get the gradient, each in a fresh process:

* ``edgeode-adjoint``     :func:`edgeode.train.adjoint.odeint_adjoint` (Chen et al. 2018, Algorithm 1)
* ``torchdiffeq-adjoint`` ``torchdiffeq.odeint_adjoint(field, h0, [t0, t1], method="rk4", options={"step_size": dt})``
* ``edgeode-backprop``    backprop through :func:`edgeode.train.solver.solve` (RK-Net)
* ``torchdiffeq-backprop`` backprop through ``torchdiffeq.odeint`` with the same arguments

Same initial weights (seed 0), same random batch, SGD with momentum. A training step is forward +
backward + optimiser step; the first step is untimed (warm-up) and its loss and gradient norm are
recorded so that the four methods can be checked to train the same model. Peak memory is the
worker's ``ru_maxrss`` (the whole process: python + torch + data + the step), and also the part
above the process's RSS just before the first step.

    python3 benchmarks/training.py            # full run (~5 min on 2 cores)
    python3 benchmarks/training.py --quick    # tiny smoke run
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import (
    BenchmarkError,
    HelpFormatter,
    Target,
    current_rss_mb,
    emit,
    fmt,
    log,
    machine_info,
    machine_markdown,
    markdown_table,
    run_worker,
    start_main,
    targets_markdown,
    write_results,
)

SCRIPT = Path(__file__).resolve()
METHODS = ("edgeode-adjoint", "torchdiffeq-adjoint", "edgeode-backprop", "torchdiffeq-backprop")


def _work_train(spec: dict) -> dict:
    """One method at one step count: warm-up step, then ``iterations`` timed training steps."""
    import time

    import torch
    from torch import nn

    from edgeode.train.models import ModelConfig, build_model

    torch.set_num_threads(spec["threads"])
    method, steps, batch = spec["method"], spec["steps"], spec["batch"]
    torch.manual_seed(0)
    cfg = ModelConfig(arch="odenet", solver="rk4_38", steps=steps, width=spec["width"],
                      adjoint=(method == "edgeode-adjoint"))
    model = build_model(cfg)
    if method.startswith("torchdiffeq"):
        import torchdiffeq

        class TorchdiffeqBlock(nn.Module):
            """The ODE block solved by torchdiffeq (same field, span and step size)."""

            def __init__(self, field: nn.Module, t0: float, t1: float, n: int, adjoint: bool):
                super().__init__()
                self.field = field
                self.register_buffer("span", torch.tensor([t0, t1]))
                self.options = {"step_size": (t1 - t0) / n}
                self.solve = torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint

            def forward(self, h: torch.Tensor) -> torch.Tensor:
                return self.solve(self.field, h, self.span, method="rk4", options=self.options)[-1]

        old = model.block
        model.block = TorchdiffeqBlock(old.field, old.t0, old.t1, old.steps, method == "torchdiffeq-adjoint")
    model.train()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 1, cfg.image_size, cfg.image_size, generator=gen)
    y = torch.randint(0, cfg.num_classes, (batch,), generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> tuple[float, float]:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        gnorm = float(torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in model.parameters() if p.grad is not None)))
        opt.step()
        return float(loss), gnorm

    rss_before = current_rss_mb()
    first_loss, first_gnorm = step()
    times = []
    for _ in range(spec["iterations"]):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2] if len(times) % 2 else 0.5 * (times[len(times) // 2 - 1] + times[len(times) // 2])
    return {"method": method, "steps": steps, "batch": batch, "step_s": median, "step_samples_s": times,
            "first_loss": first_loss, "first_grad_norm": first_gnorm, "rss_before_mb": rss_before}


def _worker_main(spec: dict) -> int:
    result = _work_train(spec)
    emit(result)
    return 0


def _targets(rows: list[dict], steps: list[int]) -> list[Target]:
    by = {(r["method"], r["steps"]): r for r in rows if "error" not in r}
    lo, hi = min(steps), max(steps)
    targets = []
    a_lo, a_hi = by.get(("edgeode-adjoint", lo)), by.get(("edgeode-adjoint", hi))
    targets.append(Target(f"edgeode adjoint training peak RSS, {hi} steps / {lo} steps", "<=", 1.05,
                          a_hi["peak_rss_mb"] / a_lo["peak_rss_mb"] if a_lo and a_hi else None,
                          f"{a_lo['peak_rss_mb']:.0f} -> {a_hi['peak_rss_mb']:.0f} MB" if a_lo and a_hi else ""))
    ratios = []
    for s in steps:
        e, t = by.get(("edgeode-adjoint", s)), by.get(("torchdiffeq-adjoint", s))
        if e and t:
            ratios.append((e["step_s"] / t["step_s"], s))
    worst = max(ratios) if ratios else None
    targets.append(Target("adjoint training step time, edgeode / torchdiffeq (worst over step counts)", "<=", 1.0,
                          worst[0] if worst else None,
                          ", ".join(f"{s} steps: {r:.2f}" for r, s in sorted(ratios, key=lambda v: v[1]))))
    return targets


def _markdown(info: dict, rows: list[dict], targets: list[Target], args, checks: list[str]) -> str:
    cmd = " ".join(["python3 benchmarks/training.py", *args.argv])
    parts = [f"# Training: edgeode vs torchdiffeq ({'quick' if args.quick else 'full'} run)", "",
             machine_markdown(info), "",
             f"Command: `{cmd}`. MNIST ODE-Net (width {args.width}), batch {args.batch}, rk4_38 (torchdiffeq 'rk4'), "
             f"{args.threads} thread(s), random data; median of {args.iterations} timed training steps after one "
             "warm-up step; peak RSS (`ru_maxrss`) of each configuration's own fresh process, and the part of it "
             "above the RSS just before the first step.", "",
             "## Targets", "", targets_markdown(targets), "", "## Step time and memory", ""]
    by = {(r["method"], r["steps"]): r for r in rows if "error" not in r}
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["method"], r["steps"], "error", "", "", "", "", r["error"].strip().splitlines()[-1][:80]])
            continue
        peer = "torchdiffeq-adjoint" if r["method"].endswith("adjoint") else "torchdiffeq-backprop"
        p = by.get((peer, r["steps"]))
        ratio = fmt(r["step_s"] / p["step_s"]) if p and r["method"].startswith("edgeode") else ""
        mem_ratio = fmt(r["peak_rss_mb"] / p["peak_rss_mb"]) if p and r["method"].startswith("edgeode") else ""
        table.append([r["method"], r["steps"], f"{r['step_s']:.3f}", ratio, f"{r['peak_rss_mb']:.0f}",
                      f"{r['peak_rss_mb'] - r['rss_before_mb']:.0f}", mem_ratio,
                      f"loss {r['first_loss']:.5f}, |grad| {r['first_grad_norm']:.5f}"])
    parts.append(markdown_table(["method", "steps", "s / step", "time vs torchdiffeq", "peak RSS MB",
                                 "above baseline MB", "memory vs torchdiffeq", "first step"], table))
    if checks:
        parts += ["", "Checks: " + "; ".join(checks)]
    return "\n".join(parts)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Writes benchmarks/results/training.json and training.md (training-quick.* with --quick).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="steps 2 and 4, batch 4, width 16, one timed step")
    p.add_argument("--steps", nargs="+", type=int, default=[10, 40, 160], help="solver step counts")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="gradient methods")
    p.add_argument("--batch", type=int, default=32, help="batch size")
    p.add_argument("--width", type=int, default=64, help="ODE-Net width (channels)")
    p.add_argument("--iterations", type=int, default=2,
                   help="timed training steps per configuration (after one warm-up step); at 160 steps with "
                        "backprop each takes seconds and GBs")
    p.add_argument("--threads", type=int, default=1, help="torch threads in each worker")
    p.add_argument("--out", default=None, help="results directory (default benchmarks/results)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = start_main(argv, _parser(), _worker_main)
    if isinstance(args, int):
        return args
    if args.quick:
        if args.steps == [10, 40, 160]:
            args.steps = [2, 4]
        args.batch, args.width, args.iterations = 4, 16, 1

    info = machine_info()
    rows = []
    for steps in args.steps:
        for method in args.methods:
            spec = {"method": method, "steps": steps, "batch": args.batch, "width": args.width,
                    "iterations": args.iterations, "threads": args.threads}
            try:
                res = run_worker(SCRIPT, spec, threads=args.threads)
            except BenchmarkError as exc:
                log(f"{method} {steps} steps FAILED: {exc}")
                rows.append({"method": method, "steps": steps, "error": str(exc)})
                continue
            log(f"{method:22s} {steps:4d} steps: {res['step_s']:.3f} s/step, peak {res['peak_rss_mb']:.0f} MB "
                f"(+{res['peak_rss_mb'] - res['rss_before_mb']:.0f}), loss {res['first_loss']:.6f}")
            rows.append(res)
    checks = []
    for steps in args.steps:
        losses = {r["method"]: r["first_loss"] for r in rows if r.get("steps") == steps and "error" not in r}
        if losses:
            spread = max(losses.values()) - min(losses.values())
            checks.append(f"{steps} steps: first-step losses agree to {spread:.1e}")
        g = {r["method"]: r["first_grad_norm"] for r in rows if r.get("steps") == steps and "error" not in r}
        if "edgeode-backprop" in g and "torchdiffeq-backprop" in g:
            checks.append(f"backprop |grad| {g['edgeode-backprop']:.6f} vs {g['torchdiffeq-backprop']:.6f}")
        if "edgeode-adjoint" in g and "torchdiffeq-adjoint" in g:
            checks.append(f"adjoint |grad| {g['edgeode-adjoint']:.6f} vs {g['torchdiffeq-adjoint']:.6f}")
    targets = _targets(rows, args.steps)
    md = _markdown(info, rows, targets, args, checks)
    payload = {"machine": info, "args": vars(args), "rows": rows, "checks": checks,
               "targets": [t.to_dict() for t in targets]}
    write_results("training-quick" if args.quick else "training", payload, md, args.out)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
