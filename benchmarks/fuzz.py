"""The long fuzz run: every target of ``tests/fuzz_targets.py`` with a large hypothesis budget; counts printed.

    python3 benchmarks/fuzz.py                      # 10,200 cases (1,700 per target, 6 targets)
    python3 benchmarks/fuzz.py --cases 200 --quick  # a smoke run

Builds one small real ONNX classifier bundle (needs torch, as the tests do), then runs each target's
cases and counts the outcomes: ``ok`` (the input was valid and ran), ``typed`` (a typed edgeode
error), ``usage`` (an argparse usage error), and the failures ``traceback``, ``hang`` (over
``HANG_S``), ``crash`` (the model worker process died) and ``lie`` (a hand-edited manifest loaded
and computed or reported something else). The goal (issue 11): at least 10,000 cases with 0
tracebacks, 0 hangs, 0 crashes (and 0 lies). Results go to ``benchmarks/results/fuzz.{json,md}``.
Exit status 1 if any failure was found (the first ones are printed in full).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, machine_markdown, markdown_table, write_results  # noqa: E402


def _property(name, strategy, run, tally, args):
    """A hypothesis test that runs ``run`` on ``args.cases`` examples and counts every outcome (never fails)."""
    from hypothesis import HealthCheck, given, seed, settings

    @seed(args.seed)
    @settings(max_examples=args.cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(case):
        outcome, detail = run(case)
        tally.add(name, outcome, detail, case)

    return prop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=1700, help="hypothesis examples per target (default 1700)")
    parser.add_argument("--targets", default="manifest,contract,npy,image,cli,model", help="comma-separated targets")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    parser.add_argument("--quick", action="store_true", help="do not write results files")
    args = parser.parse_args(argv)

    import fuzz_targets as ft
    import runtime_bundles as rb

    tally = ft.Tally()
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="edgeode-fuzz-") as tmp:
        built = rb.build_classifier(Path(tmp) / "classifier", formats=("onnx",))
        fuzzer = ft.Fuzzer(built.path, built.x[:2], Path(tmp) / "work")
        try:
            targets = fuzzer.targets()
            for name in args.targets.split(","):
                start = time.perf_counter()
                _property(name, *targets[name], tally, args)()
                seconds[name] = round(time.perf_counter() - start, 1)
                row = {o: tally.counts[(name, o)] for o in ft.OUTCOMES}
                print(f"{name:9s} {sum(row.values()):6d} cases in {seconds[name]:7.1f} s  "
                      + "  ".join(f"{o} {n}" for o, n in row.items()), flush=True)
        finally:
            fuzzer.close()
    failures = {o: tally.total(o) for o in ft.FAILURES}
    print(f"total     {tally.total():6d} cases; tracebacks {failures['traceback']}, hangs {failures['hang']}, "
          f"crashes {failures['crash']}, lies {failures['lie']}")
    for bad in tally.bad[:5]:
        print(f"\n--- {bad['target']}: {bad['outcome']} on {bad['case']}\n{bad['detail']}")
    if not args.quick:
        info = machine_info()
        result = {
            "machine": info,
            "cases_per_target": args.cases,
            "seed": args.seed,
            "counts": {f"{t}/{o}": n for (t, o), n in sorted(tally.counts.items())},
            "seconds": seconds,
            "total": tally.total(),
            **failures,
            "first_failures": tally.bad,
        }
        rows = []
        for name in seconds:
            row = [tally.counts[(name, o)] for o in ft.OUTCOMES]
            rows.append([name, sum(row), *row, seconds[name]])
        table = markdown_table(["target", "cases", *ft.OUTCOMES, "seconds"], rows)
        write_results("fuzz", result, "# Fuzz run (`python3 benchmarks/fuzz.py`)\n\n" + table + "\n\n"
                      f"Total {tally.total():,} cases: {failures['traceback']} tracebacks, {failures['hang']} hangs, "
                      f"{failures['crash']} crashes, {failures['lie']} lies. Seed {args.seed}.\n\n" + machine_markdown(info))
    return 1 if any(failures.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
