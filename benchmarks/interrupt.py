"""Bounded, interruptible work, measured as a user meets it: real ``edgeode run`` processes.

    python3 benchmarks/interrupt.py                 # 3 Ctrl-C trials per mode, one --timeout run per mode
    python3 benchmarks/interrupt.py --trials 1 --quick

Builds a dynamics bundle with a 512-wide field whose fused ONNX ``Loop`` takes a ``steps`` input
(``tests/runtime_bundles.build_loop_dynamics``, needs torch), then, on onnxruntime, for the fused and
the loop mode:

* ``--steps 1000000000000`` (above the bound): exit code, seconds from start to exit, stderr lines;
* a legal long run (``--steps 100000``, batch 100: 10^7 sample-steps, tens of seconds of work) sent
  SIGINT after ``--wait`` seconds: exit code, seconds from the signal to the exit, stderr lines;
* the same run with ``--timeout 3``: exit code and seconds from start to exit.

The goals (issue 11): the bound refused within seconds, Ctrl-C exits 130 within one second with one
line, ``--timeout`` exits 124. Results: ``benchmarks/results/interrupt.{json,md}``.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from common import REPO_ROOT, machine_info, machine_markdown, markdown_table, write_results  # noqa: E402


def _run_args(bundle: Path, y0: Path, mode: str, steps: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edgeode", "run", str(bundle), str(y0), "--mode", mode, "--steps", steps,
            "--threads", "1", "--json", *extra]


def _finish(proc: subprocess.Popen, since: float, limit: float = 120.0) -> dict:
    """The process's exit: code (None if it had not exited after ``limit`` s: then killed), seconds since ``since``."""
    try:
        out, err = proc.communicate(timeout=limit)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        code = None
    return {"exit": code, "seconds": round(time.perf_counter() - since, 2),
            "stderr_lines": len(err.strip().splitlines()), "traceback": "Traceback" in err,
            "stdout_empty": out == "", "last_line": err.strip().splitlines()[-1] if err.strip() else ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=3, help="Ctrl-C trials per mode (default 3)")
    parser.add_argument("--wait", type=float, default=6.0, help="seconds before SIGINT (start-up and load done; default 6)")
    parser.add_argument("--quick", action="store_true", help="no results files")
    args = parser.parse_args(argv)

    import runtime_bundles as rb

    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="edgeode-interrupt-") as tmp:
        bundle = rb.build_loop_dynamics(Path(tmp) / "slow", hidden=512).path
        y0 = Path(tmp) / "y0.npy"
        np.save(y0, np.full((100, 2), 0.1, np.float32))
        for mode in ("fused", "loop"):
            start = time.perf_counter()
            res = _finish(subprocess.Popen(_run_args(bundle, y0, mode, "1000000000000"), cwd=REPO_ROOT, text=True,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE), start)
            results.append({"mode": mode, "case": "--steps 10^12", **res})
            for _ in range(args.trials):
                proc = subprocess.Popen(_run_args(bundle, y0, mode, "100000"), cwd=REPO_ROOT, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                time.sleep(args.wait)
                running = proc.poll() is None
                sent = time.perf_counter()
                proc.send_signal(signal.SIGINT)
                results.append({"mode": mode, "case": "Ctrl-C", "running_when_sent": running, **_finish(proc, sent)})
            start = time.perf_counter()
            res = _finish(subprocess.Popen(_run_args(bundle, y0, mode, "100000", "--timeout", "3"), cwd=REPO_ROOT,
                                           text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE), start)
            results.append({"mode": mode, "case": "--timeout 3", **res})
    for r in results:
        what = "from SIGINT" if r["case"] == "Ctrl-C" else "from start"
        rows.append([r["mode"], r["case"], "none: killed" if r["exit"] is None else r["exit"], f"{r['seconds']:.2f} {what}", r["stderr_lines"],
                     "yes" if r["traceback"] else "no", r["last_line"][:90]])
        print(" | ".join(str(c) for c in rows[-1]), flush=True)
    table = markdown_table(["mode", "case", "exit", "seconds", "stderr lines", "traceback", "last stderr line"], rows)
    ctrl = [r for r in results if r["case"] == "Ctrl-C"]
    ok = (all(r["exit"] == 130 and r["stderr_lines"] == 1 and r["running_when_sent"] for r in ctrl)
          and all(r["exit"] == 2 and not r["traceback"] for r in results if r["case"] == "--steps 10^12")
          and all(r["exit"] == 124 and not r["traceback"] for r in results if r["case"] == "--timeout 3"))
    worst = max(r["seconds"] for r in ctrl) if ctrl else None
    summary = f"Ctrl-C: exit within {worst:.2f} s of the signal at worst ({len(ctrl)} trials)." if ctrl else ""
    print(summary)
    if not args.quick:
        info = machine_info()
        write_results("interrupt", {"machine": info, "results": results, "ok": ok},
                      "# Bounded, interruptible `edgeode run` (`python3 benchmarks/interrupt.py`)\n\n"
                      f"{summary}\n\n{table}\n\n{machine_markdown(info)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
