"""Soak: RSS growth over 100,000 calls on one Model, per backend and mode, outputs checked identical.

    python3 benchmarks/soak.py                     # 100,000 calls each: onnxruntime fused and loop
    python3 benchmarks/soak.py --bundle B --calls 20000 --backends onnxruntime,litert
    python3 benchmarks/soak.py --quick             # 2,000 calls, no results files

Each configuration runs in a fresh worker process that imports only ``edgeode.runtime`` (no torch):
it loads one :class:`~edgeode.runtime.Model` (1 thread), calls ``predict`` on one batch-1 sample
1,000 times to warm up, reads its RSS (``/proc/self/statm``), makes ``--calls`` more calls (RSS
sampled every tenth of them; every output compared bit for bit with the first) and reports the
growth. The goal (issue 11): at most 1 MB. Without ``--bundle`` a tiny real ODE classifier
bundle is built first (ONNX; needs torch, as the tests do). Results: ``benchmarks/results/soak.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    REPO_ROOT,
    current_rss_mb,
    emit,
    machine_info,
    machine_markdown,
    markdown_table,
    run_worker,
    worker_spec,
    write_results,
)

WARMUP = 1000
GOAL_MB = 1.0


def worker(spec: dict) -> None:
    import numpy as np

    from edgeode.runtime import load

    model = load(spec["bundle"], backend=spec["backend"], mode=spec["mode"], threads=1)
    shape = [1 if d is None else d for d in model.manifest.input.tensor.shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    call = model.predict if model.manifest.kind == "classifier" else model.solve
    first = call(x)
    for _ in range(WARMUP):
        call(x)
    rss0 = current_rss_mb()
    samples, differ = [rss0], 0
    start = time.perf_counter()
    every = max(1, spec["calls"] // 10)
    for i in range(1, spec["calls"] + 1):
        if not np.array_equal(call(x), first):
            differ += 1
        if i % every == 0:
            samples.append(current_rss_mb())
    seconds = time.perf_counter() - start
    model.close()
    emit({"rss_start_mb": rss0, "rss_end_mb": samples[-1], "growth_mb": samples[-1] - rss0,
          "max_growth_mb": max(samples) - rss0, "samples_mb": samples, "calls": spec["calls"],
          "outputs_differing": differ, "us_per_call": seconds / spec["calls"] * 1e6})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", help="bundle to soak (default: build a tiny ONNX classifier bundle)")
    parser.add_argument("--calls", type=int, default=100_000, help="calls after warm-up (default 100,000)")
    parser.add_argument("--backends", default="onnxruntime", help="comma-separated backends (default onnxruntime)")
    parser.add_argument("--modes", default="fused,loop", help="comma-separated modes (default fused,loop)")
    parser.add_argument("--quick", action="store_true", help="2,000 calls, no results files")
    args = parser.parse_args(argv)
    calls = 2000 if args.quick else args.calls
    with tempfile.TemporaryDirectory(prefix="edgeode-soak-") as tmp:
        bundle = args.bundle
        if bundle is None:
            sys.path.insert(0, str(REPO_ROOT / "tests"))
            import runtime_bundles as rb

            bundle = str(rb.build_classifier(Path(tmp) / "classifier", formats=("onnx",)).path)
        rows, results = [], []
        for backend in args.backends.split(","):
            for mode in args.modes.split(","):
                r = run_worker(__file__, {"bundle": bundle, "backend": backend, "mode": mode, "calls": calls},
                               timeout=3600)
                r.update(backend=backend, mode=mode)
                results.append(r)
                ok = r["growth_mb"] <= GOAL_MB and r["outputs_differing"] == 0
                rows.append([backend, mode, f"{calls:,}", f"{r['rss_start_mb']:.1f}", f"{r['growth_mb']:+.2f}",
                             f"{r['max_growth_mb']:+.2f}", r["outputs_differing"], f"{r['us_per_call']:.0f}",
                             "yes" if ok else "NO"])
                print(f"{backend:12s} {mode:5s} {calls:,} calls: RSS {r['rss_start_mb']:.1f} MB after warm-up, growth "
                      f"{r['growth_mb']:+.2f} MB (max {r['max_growth_mb']:+.2f}), outputs differing "
                      f"{r['outputs_differing']}, {r['us_per_call']:.0f} us/call", flush=True)
    table = markdown_table(["backend", "mode", "calls", "RSS after warm-up MB", "growth MB", "max growth MB",
                            "outputs differing", "us/call", f"<= {GOAL_MB:g} MB"], rows)
    if not args.quick:
        info = machine_info()
        write_results("soak", {"machine": info, "bundle": args.bundle or "tiny test classifier", "results": results},
                      "# Soak (`python3 benchmarks/soak.py`)\n\n" + table + "\n\n" + machine_markdown(info))
    print(table)
    return 0 if all(r["growth_mb"] <= GOAL_MB and r["outputs_differing"] == 0 for r in results) else 1


if __name__ == "__main__":
    spec = worker_spec(sys.argv[1:])
    if spec is not None:
        worker(spec)
    else:
        sys.exit(main())
