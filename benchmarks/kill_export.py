"""kill -9 during ``edgeode export --overwrite`` at random instants: the bundle is never broken or missing,
and no leftovers stay once the next export has run.

    python3 benchmarks/kill_export.py               # 20 trials
    python3 benchmarks/kill_export.py --trials 3 --quick

Trains one tiny digits ODE-Net (``edgeode train``, 1 epoch), exports it once (timed: T), then per
trial starts ``edgeode export RUN -o BUNDLE --overwrite --formats onnx`` as a real process and
SIGKILLs its process group after a random delay in [0, 0.9 T] (T shrinks to the length of any trial's
export that finished before its kill: on a shared machine an export's time varies). After every kill it checks that
BUNDLE is a complete, verified bundle (:func:`edgeode.runtime.digest.verify_bundle`, what
``edgeode verify`` checks: manifest, sizes, SHA-256 of every file, each file's record, the seal) and
counts the staging / aside directories beside it. At the end it runs one
more export and counts again: the killed exports' leftovers must be gone (only dead ones are
removed, see :mod:`edgeode.fsutil`). Results: ``benchmarks/results/kill_export.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT, machine_info, machine_markdown, markdown_table, single_thread_env, write_results  # noqa: E402


def _edgeode(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgeode", *args]


def _leftovers(bundle: Path) -> list[str]:
    return sorted(p.name for p in bundle.parent.iterdir() if p.name.startswith(f".{bundle.name}."))


def _state(bundle: Path) -> str:
    """'intact' (as `edgeode verify` checks: manifest, sizes, SHA-256, each file's record, the seal), 'missing'
    or 'broken: reason'."""
    from edgeode.errors import BundleError
    from edgeode.runtime.digest import verify_bundle

    if not bundle.exists():
        return "missing"
    try:
        verify_bundle(bundle)
    except BundleError as exc:
        return f"broken: {exc}"
    return "intact"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="kills (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill delays (default 0)")
    parser.add_argument("--quick", action="store_true", help="no results files")
    args = parser.parse_args(argv)
    from edgeode.fsutil import STALE_AFTER_S

    rng = random.Random(args.seed)
    env = single_thread_env(2)
    with tempfile.TemporaryDirectory(prefix="edgeode-kill-") as tmp:
        run, bundle = Path(tmp) / "run", Path(tmp) / "bundle"
        subprocess.run(_edgeode("train", "-o", str(run), "--epochs", "1", "--width", "8", "--train-limit", "200", "-q"),
                       check=True, env=env, cwd=REPO_ROOT)
        export = _edgeode("export", str(run), "-o", str(bundle), "--formats", "onnx", "--overwrite", "-q")
        start = time.perf_counter()
        subprocess.run(export, check=True, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
        full_s = time.perf_counter() - start
        print(f"one export: {full_s:.1f} s", flush=True)
        trials, span = [], full_s
        for i in range(args.trials):
            delay = rng.uniform(0, 0.9 * span)
            begun = time.perf_counter()
            proc = subprocess.Popen(export, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            while time.perf_counter() - begun < delay and proc.poll() is None:
                time.sleep(0.05)
            finished = proc.poll() is not None
            if finished:  # the machine got faster (it is shared): later delays are drawn over this run's length
                span = min(span, time.perf_counter() - begun)
            if not finished:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            state, left = _state(bundle), _leftovers(bundle)
            trials.append({"delay_s": round(delay, 2), "killed": not finished, "state": state, "leftovers": left})
            print(f"trial {i + 1:2d}: kill after {delay:5.1f} s ({'killed' if not finished else 'had finished'}): "
                  f"bundle {state}, {len(left)} leftover(s) beside it", flush=True)
        time.sleep(STALE_AFTER_S + 0.5)  # the last kill's leftovers count as dead only after this
        subprocess.run(export, check=True, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
        final_state, final_left = _state(bundle), _leftovers(bundle)
    killed = sum(t["killed"] for t in trials)
    intact = sum(t["state"] == "intact" for t in trials)
    print(f"{len(trials)} trials, {killed} killed mid-export: bundle intact after {intact} of {len(trials)}; "
          f"after the next export: bundle {final_state}, {len(final_left)} leftover(s)")
    rows = [[i + 1, t["delay_s"], "yes" if t["killed"] else "no (done)", t["state"], len(t["leftovers"])]
            for i, t in enumerate(trials)]
    table = markdown_table(["trial", "kill after s", "killed mid-export", "bundle", "leftovers right after"], rows)
    summary = (f"One export {full_s:.1f} s. {len(trials)} trials, {killed} killed mid-export; bundle intact after "
               f"{intact} of {len(trials)}; after the next export: bundle {final_state}, {len(final_left)} leftovers.")
    if not args.quick:
        info = machine_info()
        write_results("kill_export", {"machine": info, "export_s": full_s, "trials": trials, "final_state": final_state,
                                      "final_leftovers": final_left},
                      "# kill -9 during export (`python3 benchmarks/kill_export.py`)\n\n" + summary + "\n\n" + table
                      + "\n\n" + machine_markdown(info))
    ok = intact == len(trials) and final_state == "intact" and not final_left
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
