"""Do the kinetic / Jacobian regularisers (Finlay et al. 2020, arXiv 2002.02798) or a randomly varied step
count (``--random-steps``, the fixed-step analogue of STEER, Ghosh et al. 2020) buy cheaper solves?

For each seed, trains the same ODE-Net once per *arm* (``--arms``) with backprop through the solver
(``edgeode train``, real runs, the same epochs, data and nominal steps in every arm): by default without
anything; the Jacobian term alone; kinetic + Jacobian at 0.01 (the best weight of the last session) and at
0.03; ``--random-steps 1:7`` (mean 4 = the nominal steps: the same expected training cost per batch); and
random steps + kinetic/Jacobian 0.01. Then reads each run's accuracy-vs-field-evaluations
curve with ``edgeode tune RUN --no-prune --json`` (every step count of every swept tableau up to
``--max-steps``, float32, through the torch-free runtime), and reports

* the reference: the 10-step RK4 figure (``rk4 x 10``, 40 field evaluations), and
* the fewest field evaluations whose accuracy stays within ``--within`` (0.5 point) of it, and
* the figures of two cheap solves beside it: RK4 x 1 (4 evaluations) and Euler x 2 (2 evaluations);
* per arm, the fewest evaluations of each seed and the ratio to the unregularised arm's (the goal: >= 2).

Selection without bias, as tune does it: the held-out test split is halved; the fewest-evaluations
configuration is chosen on the validation half (its figure within 0.5 point of rk4 x 10's validation
figure) and its figure on the test half is reported beside rk4 x 10's test figure.

    python3 benchmarks/reg_cheap_solves.py --data mnist --data-path ../shared/data/mnist --seeds 0,1,2
    python3 benchmarks/reg_cheap_solves.py --arms "none;kinetic=0.01"     # one arm against none
    python3 benchmarks/reg_cheap_solves.py --data digits --epochs 12 --width 32   # the digits case

An arm is ``none``, a ``--reg`` spec, ``random=LO:HI``, or ``random=LO:HI+REG``; arms are separated by ``;``.
Writes benchmarks/results/reg_cheap_solves[-DATA][-ARMS].json and .md (ARMS where --arms is not the default)
(``--out DIR`` elsewhere); runs are kept under ``--work DIR`` (a rerun reuses a finished run of the same
settings, with the training time it was measured with, and its curve): two processes can train different
``--seeds`` into one ``--work`` on two cores, and a third run with all the seeds merges them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import HelpFormatter, log, machine_info, machine_markdown, markdown_table, write_results

ROOT = Path(__file__).resolve().parents[1]
#: Cheap solves whose figures are shown beside the reference (tableau, steps).
CHEAP = (("rk4", 1), ("euler", 2))
#: The default arms (see the module docstring).
ARMS = "none;jacobian=0.01;kinetic=0.01,jacobian=0.01;kinetic=0.03,jacobian=0.03;random=1:7;" \
       "random=1:7+kinetic=0.01,jacobian=0.01"


@dataclass(frozen=True)
class Arm:
    """One training variant: a ``--reg`` spec and/or a ``--random-steps`` range (both ``None``: plain)."""

    reg: str | None = None
    random_steps: str | None = None

    @property
    def label(self) -> str:
        parts = ([f"random={self.random_steps}"] if self.random_steps else []) + ([self.reg] if self.reg else [])
        return "+".join(parts) or "none"

    @property
    def slug(self) -> str:
        """The run-name suffix (``none``, ``kinetic0.01_jacobian0.01``, ``rs1-7``, ``rs1-7-kinetic0.01``)."""
        parts = ([f"rs{self.random_steps.replace(':', '-')}"] if self.random_steps else []) + (
            [self.reg.replace("=", "").replace(",", "_")] if self.reg else [])
        return "-".join(parts) or "none"


def parse_arms(spec: str) -> list[Arm]:
    """``"none;jacobian=0.01;random=1:7+kinetic=0.01"`` -> arms (see the module docstring)."""
    arms = []
    for text in (a.strip() for a in spec.split(";") if a.strip()):
        reg = random_steps = None
        for token in text.split("+"):
            if token.startswith("random="):
                random_steps = token.removeprefix("random=")
            elif token != "none":
                reg = token
        arms.append(Arm(reg, random_steps))
    if not arms or arms[0] != Arm():
        raise SystemExit(f"--arms {spec!r}: the first arm must be none (the baseline the others are compared with)")
    return arms


def _edgeode(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "edgeode.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"edgeode {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def _train(args, seed: int, arm: Arm, work: Path) -> tuple[Path, dict]:
    name = f"{args.data}-w{args.width}-{args.solver}{args.steps}-e{args.epochs}-s{seed}-{arm.slug}"
    run = work / name
    cmd = ["train", "-o", str(run), "--data", args.data, "--width", str(args.width), "--solver", args.solver,
           "--steps", str(args.steps), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--lr", str(args.lr), "--schedule", "onecycle", "--seed", str(seed), "--threads", "1", "--backprop", "-q"]
    if args.data_path:
        cmd += ["--data-path", args.data_path]
    if args.train_limit:
        cmd += ["--train-limit", str(args.train_limit)]
    if arm.reg:
        cmd += ["--reg", arm.reg]
    if arm.random_steps:
        cmd += ["--random-steps", arm.random_steps]
    if not (run / "metrics.json").is_file():
        log(f"train {name}")
        _edgeode(*cmd, "--overwrite")
    metrics = json.loads((run / "metrics.json").read_text())
    return run, {"command": "edgeode " + " ".join(cmd), "test_accuracy": metrics["test_accuracy"],
                 "train_time_s": metrics["train_time_s"]}


def _curve(args, run: Path) -> dict:
    """The run's accuracy-vs-evaluations curve, kept in the run directory (a rerun of the same settings, e.g. one
    that merges seeds measured by two processes, reads it instead of measuring it again)."""
    cache = run / f"curve-{args.device}-{args.solvers.replace(',', '_')}-max{args.max_steps}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    log(f"tune {run.name}")
    out = _edgeode("tune", str(run), "--device", args.device, "--solvers", args.solvers, "--max-steps",
                   str(args.max_steps), "--no-prune", "--precisions", "float32", "--quantize", "", "--seconds", "0.02",
                   "--json", "-q")
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(out)
    tmp.replace(cache)
    return json.loads(out)


def _summary(tune: dict, within: float) -> dict:
    configs = [c for c in tune["configs"] if c["precision"] == "float32"]
    ref = next(c for c in configs if c["tableau"] == "rk4" and c["steps"] == 10)
    ok = [c for c in configs if c["val_accuracy"] >= ref["val_accuracy"] - within]
    best = min(ok, key=lambda c: (c["field_evaluations"], -c["val_accuracy"]))
    cheap = {f"{t} x {n}": next((c["field_evaluations"], c["val_accuracy"], c["accuracy"]) for c in configs
                                if (c["tableau"], c["steps"]) == (t, n)) for t, n in CHEAP}
    return {"cheap": cheap, "ref_val": ref["val_accuracy"], "ref_test": ref["accuracy"],
            "fewest": f"{best['tableau']} x {best['steps']}", "evals": best["field_evaluations"],
            "val": best["val_accuracy"], "test": best["accuracy"],
            "curve": [{k: c[k] for k in ("tableau", "steps", "field_evaluations", "val_accuracy", "accuracy")}
                      for c in configs]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--data", default="mnist")
    p.add_argument("--data-path", default=None)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--arms", default=ARMS, help="the training variants, ';'-separated, the first none (docstring)")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--solver", default="rk4", help="the training tableau")
    p.add_argument("--steps", type=int, default=4, help="the training steps")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--device", default="pi-4b")
    p.add_argument("--solvers", default="euler,midpoint,rk4")
    p.add_argument("--max-steps", type=int, default=10)
    p.add_argument("--within", type=float, default=0.005, help="accuracy tolerance (fraction)")
    p.add_argument("--work", default="/tmp/edgeode-reg-runs")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.data_path:
        args.data_path = str(Path(args.data_path).expanduser().absolute())
    info = machine_info()
    start = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows, payload = [], {"machine": info, "settings": vars(args), "runs": []}
    arms = parse_arms(args.arms)
    fewest: dict[str, dict[int, int]] = {a.label: {} for a in arms}
    for seed in (int(s) for s in args.seeds.split(",")):
        for arm in arms:
            run, trained = _train(args, seed, arm, work)
            s = _summary(_curve(args, run), args.within)
            fewest[arm.label][seed] = s["evals"]
            payload["runs"].append({"seed": seed, "arm": arm.label, **trained, **s})
            rows.append([seed, arm.label, f"{trained['test_accuracy']:.4f}", f"{trained['train_time_s']:.0f}",
                         f"{100 * s['ref_val']:.2f}% / {100 * s['ref_test']:.2f}%", s["fewest"], s["evals"],
                         f"{100 * s['val']:.2f}% / {100 * s['test']:.2f}%",
                         *(f"{100 * v:.1f}% / {100 * t:.1f}%" for _, v, t in s["cheap"].values())])
            log(" | ".join(str(c) for c in rows[-1]))
    payload["seconds"] = time.perf_counter() - start
    base = fewest["none"]
    summary = [[label, " / ".join(str(e) for e in per.values()),
                " / ".join(f"{base[k] / e:.2f}" for k, e in per.items())] for label, per in fewest.items()]
    payload["fewest_evaluations"] = {label: {str(k): e for k, e in per.items()} for label, per in fewest.items()}
    table = markdown_table(["seed", "arm", "torch test acc.", "train s", "rk4 x 10 (40 evals) val / test",
                            f"fewest evals within {100 * args.within:g} pt (val)", "evals", "its val / test",
                            *(f"{k} ({e} evals) val / test" for k, (e, _, _) in s["cheap"].items())], rows)
    md = "\n\n".join([f"# Regularised training for cheap solves ({args.data})", machine_markdown(info),
                      f"Settings: width {args.width}, trained {args.solver} x {args.steps}, {args.epochs} epochs, "
                      f"backprop; curves by `edgeode tune RUN --device {args.device} --solvers {args.solvers} "
                      f"--max-steps {args.max_steps} --no-prune --precisions float32`; training "
                      f"{sum(r['train_time_s'] for r in payload['runs']):.0f} s (one thread, summed over the runs); this "
                      f"invocation {payload['seconds']:.0f} s (finished runs and curves in --work are reused).",
                      table, "Fewest evaluations within the tolerance per seed, and the ratio none / arm "
                      "(the goal: >= 2 at every seed):",
                      markdown_table(["arm", f"fewest evals (seeds {args.seeds})", "none / arm"], summary)])
    name = "reg_cheap_solves" + ("" if args.data == "mnist" else f"-{args.data}") + (
        "" if args.arms == ARMS else "-" + "-".join(a.slug for a in arms[1:]))
    paths = write_results(name, payload, md, args.out)
    print(md)
    log(f"wrote {paths[0]} and {paths[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
