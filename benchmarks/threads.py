"""Throughput of one shared ``Model`` at 1, 2, 4 and 8 threads (issue 11, Build 1: the thread rule).

For every installed backend x mode, one model (backend threads=1) is called by N Python threads for
``--seconds`` each; calls/s counts every thread's calls, and every output is compared bit for bit with
the serial one (a mismatch aborts the benchmark). TFLite backends run twice: with the default pool
(one interpreter per concurrent caller, up to the CPU count) and with ``engines=1`` (one interpreter
behind a lock), the two designs the rule was chosen between.

    python3 benchmarks/threads.py                    # the tiny test classifier (tests/runtime_bundles.py)
    python3 benchmarks/threads.py --wide             # a dynamics bundle with a 512-wide field, batch 32:
                                                     # the backend call, not Python, dominates
    python3 benchmarks/threads.py --bundle BUNDLE    # any exported bundle (batch = its TFLite batch or 1)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from common import HelpFormatter, log, machine_info, machine_markdown, markdown_table, write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
THREADS = (1, 2, 4, 8)


def _throughput(model, inputs: list[np.ndarray], expected: list[np.ndarray], threads: int, seconds: float) -> float:
    counts = [0] * threads
    stop = threading.Event()
    wrong: list[int] = []
    barrier = threading.Barrier(threads + 1)

    def work(k: int) -> None:
        barrier.wait()
        i = k
        while not stop.is_set():
            j = i % len(inputs)
            if not np.array_equal(model.predict(inputs[j]), expected[j]):
                wrong.append(j)
            counts[k] += 1
            i += 1

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    if wrong:
        raise SystemExit(f"{len(wrong)} outputs differ from serial calls at {threads} threads")
    return sum(counts) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None, help="bundle to measure (default: build the tiny test classifier)")
    parser.add_argument("--wide", action="store_true", help="build a dynamics bundle with a 512-wide field (batch 32)")
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per configuration")
    parser.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    args = parser.parse_args(argv)

    from edgeode.runtime import load
    from edgeode.runtime.backends import backend_available

    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle
        if bundle is None:
            sys.path.insert(0, str(ROOT / "tests"))
            import runtime_bundles as rb

            if args.wide:
                log("building a dynamics bundle with a 512-wide field (ONNX + TFLite, batch 32)")
                bundle = rb.build_dynamics(Path(tmp) / "wide", formats=("onnx", "tflite"), tflite_batch=32, hidden=512).path
            else:
                log("building the tiny test classifier (ONNX + TFLite)")
                bundle = rb.build_classifier(Path(tmp) / "classifier", formats=("onnx", "tflite"), tflite_batch=2).path
        rows, results = [], []
        for backend in ("onnxruntime", "litert", "tflite-runtime"):
            if not backend_available(backend):
                continue
            for mode in ("fused", "loop"):
                for engines in ((None,) if backend == "onnxruntime" else (None, 1)):
                    try:
                        model = load(bundle, backend=backend, mode=mode, threads=1, engines=engines)
                    except Exception as exc:  # this bundle has no such artifact
                        log(f"skip {backend} {mode}: {exc}")
                        break
                    batch = model.batch or (32 if args.wide else 1)
                    rng = np.random.default_rng(0)
                    shape = model.manifest.input.tensor.shape[1:]
                    inputs = [rng.standard_normal((batch, *shape)).astype(np.float32) for _ in range(8)]
                    expected = [model.predict(x) for x in inputs]
                    design = "shared session" if backend == "onnxruntime" else (
                        "one interpreter + lock" if engines == 1 else "interpreter pool")
                    rates = [_throughput(model, inputs, expected, n, args.seconds) for n in THREADS]
                    model.close()
                    log(f"{backend} {mode} {design}: " + ", ".join(f"{n}t {r:,.0f}/s" for n, r in zip(THREADS, rates, strict=True)))
                    results.append({"backend": backend, "mode": model.mode, "design": design, "batch": batch,
                                    "calls_per_s": dict(zip(map(str, THREADS), rates, strict=True))})
                    rows.append([backend, model.mode, design, batch, *(f"{r:,.0f}" for r in rates),
                                 f"{rates[-1] / rates[0]:.2f}x"])
    info = machine_info()
    table = markdown_table(["backend", "mode", "design", "batch", *(f"{n} thr calls/s" for n in THREADS), "8 vs 1"], rows)
    label = str(args.bundle) if args.bundle else ("wide dynamics (512 hidden, batch 32)" if args.wide else "tiny test classifier")
    md = f"# One shared Model, N threads\n\n{machine_markdown(info)}\n\nbundle: {label}\n\n{table}\n"
    name = "threads_wide" if args.wide and not args.bundle else "threads"
    write_results(name, {"machine": info, "bundle": label, "results": results}, md, args.out)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
