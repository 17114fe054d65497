"""Per-observation time of an ODE-RNN bundle, the one-call observe file against the separate files (issue 18).

    nice -n 10 python benchmarks/series_stream.py RUN [--work DIR] [--drops 0 0.5 0.8]

``RUN`` is an ``edgeode train --model odernn --data watch`` run; it is exported to ``--work`` (reused when
there). On its test series thinned to each dropped fraction (seed 0), in one process, one after the other:
onnxruntime through the bundle's ``observe`` file (one call per observation), onnxruntime through the separate
field (once per RK stage and step) and cell files, LiteRT (separate files) -- each host time and its
Raspberry Pi 4 estimate by the profiler's own basis and scaling
(:func:`series_compare.time_observations`). Prints a markdown table; ``--json`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt, machine_info, markdown_table  # noqa: E402
from series_compare import LATENCY_PATHS, RunResult, export_bundle, time_observations  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--work", type=Path, default=Path("/tmp/edgeode-series-stream"))
    p.add_argument("--drops", type=float, nargs="+", default=[0.0, 0.5, 0.8])
    p.add_argument("--passes", type=int, default=10)
    p.add_argument("--time-series", type=int, default=40, help="test series per timed pass")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    run = RunResult("odernn", 0.0, 0, 0, 0, 0.0, 0.0, 0, 0, 0.0, 0.0, str(args.run))
    bundle, _ = export_bundle(run, args.work)
    rows = []
    for backend, fused in LATENCY_PATHS:
        rows += time_observations(bundle, args.drops, 0, backend, args.passes, args.time_series, fused)[0]
    print(f"machine: {machine_info().get('cpu', '')}, load at end {os.getloadavg()[0]:.2f}; bundle {bundle}")
    print(markdown_table(["backend", "path", "dropped", "host ms/obs", "Pi 4 ms/obs (estimate)"],
                         [[r["backend"], r["path"], f"{r['drop']:.0%}", fmt(r["host_ms_per_observation"], 4),
                           fmt(r["pi_4b_ms_per_observation"], 4)] for r in rows]))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
