"""Host time per observation of a series bundle's streaming runtime (ODE-RNN), on held-out BasicMotions series.

    python benchmarks/series_stream.py BUNDLE [--series 10]

Runs ``predict_series`` (the same calls as ``observe`` per sample) on each backend, one thread, after one
warm-up series; prints milliseconds per observation. Needs ``pip install 'edgeode[series]'`` for the data.
"""

from __future__ import annotations

import argparse
import time

from edgeode.runtime import load
from edgeode.train.series_data import load_series_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("--series", type=int, default=10)
    args = p.parse_args()
    data = load_series_dataset("basicmotions")
    series = data.test[: args.series]
    for backend in ("onnxruntime", "litert"):
        model = load(args.bundle, backend=backend, threads=1)
        model.predict_series(series[0].times, data.raw(series[0]))
        start = time.perf_counter()
        for s in series:
            model.predict_series(s.times, data.raw(s))
        n = sum(len(s) for s in series)
        print(f"{backend}: {(time.perf_counter() - start) / n * 1e3:.3f} ms per observation "
              f"({len(series)} series, {n} observations, {model.tableau.name})")


if __name__ == "__main__":
    main()
