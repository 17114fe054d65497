"""Do device estimates hold still? Five runs of ``edgeode profile BUNDLE --device DEVICE --json`` (issue 15).

Each run is the real command in its own process, exactly as a user types it. For each run the script
records the estimated p50 latency the command reports (``latency_ms.p50``: the scaling factor times the
host's basis latency, a low percentile of the timed runs, see ``edgeode.devices.profiler.host_basis``)
and, side by side from the same runs, what the estimate would have been from the host's median of all
runs and from the median of the runs not kept waiting (the earlier estimator), so the table shows what
the basis buys on this machine. The spread of a column is (max - min) / min over the runs; the
contract is a spread within 5% for the reported estimate on an idle machine.

    python3 benchmarks/estimate_stability.py BUNDLE                 # 5 runs for pi-4b
    python3 benchmarks/estimate_stability.py BUNDLE --runs 5 --device pi-zero-2w
    python3 benchmarks/estimate_stability.py BUNDLE --percentiles 10   # which statistic: 10 measuring processes

``--percentiles N`` runs the profiler's measuring child (``edgeode.devices.child run``, 2 s of runs) N
times in each of three timing configurations (2 threads, as the profiler did on a 2-core host before;
1 thread; 1 thread pinned to the quietest CPU, the profiler's default for estimates) and prints how far
the 1st, 2nd, 5th, 10th and 50th percentiles and the median of the runs not kept waiting move between the
processes: the measurement behind the choice of the configuration and of the percentile.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import HelpFormatter, log, machine_info, machine_markdown, markdown_table, write_results

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = (("reported estimate (basis: p1, 1 thread pinned, the less disturbed of 2 CPUs)", "estimate"), ("from host median, all runs", "median_all"),
           ("from median of runs not kept waiting", "median_calm"))


def spread(values: list[float]) -> float:
    """(max - min) / min: how far the runs disagree, as a fraction of the smallest."""
    return (max(values) - min(values)) / min(values)


def one_run(bundle: Path, device: str) -> dict:
    """One ``edgeode profile --json`` in a fresh process; the figures this benchmark compares."""
    out = subprocess.run([sys.executable, "-m", "edgeode", "profile", str(bundle), "--device", device, "--json", "-q"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"edgeode profile failed ({out.returncode}): {out.stderr.strip()[-800:]}")
    d = json.loads(out.stdout)
    f = d["scaling"]["factor"]
    return {"estimate": d["latency_ms"]["p50"], "median_all": f * d["host_latency_ms"]["p50"],
            "median_calm": f * d["host_latency_undisturbed_ms"]["p50"], "factor": f, "runs": d["runs"],
            "host_basis_ms": d["host_basis"]["latency_ms"]["p50"], "uncertainty": d["latency_uncertainty"]["p50_relative"],
            "load_average": d.get("host_load_average")}


#: The timing configurations ``--percentiles`` compares: (label, backend threads, pinned to one CPU).
CONFIGS = (("2 threads", 2, False), ("1 thread", 1, False), ("1 thread, pinned (the default)", 1, True))


def percentile_spreads(bundle: Path, processes: int) -> tuple[str, dict[str, dict[str, list[float]]]]:
    """The spread between ``processes`` measuring children of each candidate statistic, per timing
    configuration (the configurations interleaved, so a slow stretch of the machine hits each), as Markdown."""
    sys.path.insert(0, str(ROOT))
    from edgeode.devices.hostinfo import quietest_cpu
    from edgeode.devices.measure import run_child
    from edgeode.devices.profiler import low_percentile, percentiles, undisturbed_runs

    qs = (1, 2, 5, 10, 50)
    names = (*(f"p{q}" for q in qs), "median of runs not kept waiting")
    stats: dict[str, dict[str, list[float]]] = {c[0]: {k: [] for k in names} for c in CONFIGS}
    for i in range(processes):
        for label, threads, pin in CONFIGS:
            args = ["run", "--bundle", str(bundle), "--backend", "onnxruntime", "--mode", "fused", "--threads",
                    str(threads), "--runs", "50", "--min-seconds", "2", "--max-runs", "20000", "--warmup", "5"]
            cpu = quietest_cpu() if pin else None
            if cpu is not None:
                args += ["--pin-cpu", str(cpu)]
            r = run_child(args, timeout=300).result
            lat, got = r["latencies_ms"], stats[label]
            for q in qs:
                got[f"p{q}"].append(low_percentile(lat, q)[0])
            got["median of runs not kept waiting"].append(percentiles(undisturbed_runs(lat, r["cpu_ms"]).latencies_ms)["p50"])
            log(f"process {i + 1}/{processes}, {label}: {len(lat)} runs, "
                + ", ".join(f"{k} {v[-1]:.4f} ms" for k, v in got.items()))
    rows = [[label, k, f"{min(v):.4f}", f"{max(v):.4f}", f"**{100 * spread(v):.1f}%**"]
            for label, got in stats.items() for k, v in got.items()]
    return markdown_table(["timing", "host statistic", "lowest ms", "highest ms", "spread"], rows), stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("bundle", type=Path, help="bundle directory (e.g. edgeode-quickstart/bundle)")
    parser.add_argument("--device", default="pi-4b", help="device profile")
    parser.add_argument("--runs", type=int, default=5, help="how many `edgeode profile` processes")
    parser.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    parser.add_argument("--percentiles", type=int, default=0, metavar="N",
                        help="instead: N measuring processes, the spread of each candidate statistic")
    args = parser.parse_args(argv)
    info = machine_info()
    if args.percentiles:
        table, stats = percentile_spreads(args.bundle, args.percentiles)
        md = (f"# Which host timing holds still: {args.percentiles} measuring processes per configuration, 2 s of runs "
              "each\n\n"
              f"{machine_markdown(info)}\n\nbundle: {args.bundle}\n\n{table}\n")
        write_results("estimate_percentiles", {"machine": info, "bundle": str(args.bundle), "table": table,
                                              "per_process_ms": stats}, md, args.out)
        print(md)
        return 0
    results = []
    for i in range(args.runs):
        r = one_run(args.bundle, args.device)
        log(f"run {i + 1}/{args.runs}: estimate p50 {r['estimate']:.3f} ms ({r['runs']} timed runs, x{r['factor']:.2f}); "
            f"from the host median {r['median_all']:.3f} ms")
        results.append(r)
    spreads = {key: spread([r[key] for r in results]) for _, key in COLUMNS}
    rows = [[i + 1, *(f"{r[key]:.3f}" for _, key in COLUMNS), r["runs"], f"+-{100 * r['uncertainty']:.1f}%",
             "n/a" if r["load_average"] is None else f"{r['load_average']:.1f}"]
            for i, r in enumerate(results)]
    rows.append(["spread", *(f"**{100 * spreads[key]:.1f}%**" for _, key in COLUMNS), "", "", ""])
    distinct = sorted({r["factor"] for r in results})
    factors = (f"x{distinct[0]:.2f} in every run (the cached host reference)" if len(distinct) == 1
               else "x" + ", x".join(f"{f:.2f}" for f in distinct) + " (the host reference was measured again)")
    table = markdown_table(["run", *(f"p50 ms {name}" for name, _ in COLUMNS), "timed runs", "stated +-",
                                   "load avg (1 min)"], rows)
    md = (f"# Estimate stability: {args.runs} x `edgeode profile BUNDLE --device {args.device} --json`\n\n"
          f"{machine_markdown(info)}\n\nbundle: {args.bundle}; scaling factor {factors}\n\n{table}\n")
    write_results(f"estimate_stability-{args.device}", {"machine": info, "bundle": str(args.bundle), "device": args.device,
                                                        "runs": results, "spread": spreads}, md, args.out)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
