"""One ``Model`` shared by many threads gives bit-identical results to serial calls (issue 11, Build 1).

Real tiny bundles (tests/runtime_bundles.py), every backend installed here x every mode: 8 threads
x 1,000 calls each on one model, each output compared with ``np.array_equal`` to the serial one.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime_bundles as rb  # noqa: E402

from edgeode.runtime import load  # noqa: E402
from edgeode.runtime.backends import EnginePool, backend_available  # noqa: E402

THREADS = 8
CALLS = 1000
BACKENDS = [b for b in ("onnxruntime", "litert") if backend_available(b)]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    pytest.importorskip("torch", reason="building the test bundles needs torch")
    pytest.importorskip("litert_torch", reason="building TFLite test bundles needs litert-torch")
    root = tmp_path_factory.mktemp("threads")
    # two stages x two steps: the loop's stage buffers are used on every call
    cls = rb.build_classifier(root / "classifier", formats=("onnx", "tflite"), tflite_batch=2, steps=2, tableau="midpoint")
    # dynamics on ONNX only: solve() runs the same TFLite session code as predict(), and its conversion is slow
    dyn = rb.build_dynamics(root / "dynamics", formats=("onnx",), steps=3, tableau="midpoint")
    base = rb.build_baseline(root / "baseline", formats=("onnx", "tflite"), tflite_batch=2)
    return {"classifier": cls, "dynamics": dyn, "baseline": base}


def _hammer(call, inputs: list[np.ndarray], calls: int = CALLS) -> tuple[int, list[str]]:
    """THREADS threads x ``calls`` calls of ``call`` over ``inputs``; (outputs differing from serial, errors)."""
    expected = [call(x) for x in inputs]
    wrong, errors = [0] * THREADS, []
    start = threading.Barrier(THREADS)

    def work(k: int) -> None:
        start.wait()
        for i in range(calls):
            j = (i * 7 + k) % len(inputs)
            try:
                if not np.array_equal(call(inputs[j]), expected[j]):
                    wrong[k] += 1
            except Exception as exc:  # counted, not raised: every thread must finish
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(wrong), errors


def _inputs(shape: tuple[int, ...], scale: float = 1.0) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    # batch 2 (the TFLite files' fixed batch) and batch 3 (chunked, the last chunk padded)
    return [(scale * rng.standard_normal((2 + i % 2, *shape))).astype(np.float32) for i in range(12)]


CASES = [(name, mode, backend) for backend in BACKENDS
         for name, mode in (("classifier", "fused"), ("classifier", "loop"), ("dynamics", "fused"), ("dynamics", "loop"),
                            ("baseline", "single"))
         if not (name == "dynamics" and backend != "onnxruntime")]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "mode", "backend"), CASES, ids=["-".join(c) for c in CASES])
def test_shared_model_is_bit_identical_to_serial(bundles, name, mode, backend):
    built = bundles[name]
    with load(built.path, backend=backend, mode="fused" if mode == "single" else mode, threads=1) as model:
        assert model.mode == mode
        call = model.solve if name == "dynamics" else model.predict
        inputs = _inputs(built.x.shape[1:], 0.5 if name == "dynamics" else 1.0)
        wrong, errors = _hammer(call, inputs)
        assert errors == [] and wrong == 0, f"{wrong} wrong of {THREADS * CALLS}; errors: {errors[:3]}"
        for sess in model.sessions.values():  # TFLite: one interpreter per concurrent caller, capped
            assert 1 <= getattr(sess, "pool_size", 1) <= THREADS


def test_engine_pool_lends_each_engine_to_one_caller_at_a_time():
    made, inside, peak = [], [0], [0]
    lock = threading.Lock()

    def factory():
        made.append(object())
        return made[-1]

    pool = EnginePool(factory, limit=3)
    held = set()

    def work():
        for _ in range(200):
            with pool.engine() as eng:
                with lock:
                    assert eng not in held
                    held.add(eng)
                    inside[0] += 1
                    peak[0] = max(peak[0], inside[0])
                with lock:
                    held.discard(eng)
                    inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= len(made) <= 3 and pool.size == len(made) and peak[0] <= 3


TFLM_CALLS = 250  # TFLM runs its reference kernels: 8 x 250 calls took 10-15 s per case on the shared 2-core machine


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "precision"), [("loop", "int8"), ("fused", "int8"), ("loop", "float32")])
def test_shared_tflm_model_is_bit_identical_to_serial(digits_int8_bundle, mode, precision):
    """The tflm backend (full-int8 files, interpreters pooled with one arena each) under the same hammer."""
    with load(digits_int8_bundle, backend="tflm", mode=mode, precision=precision) as model:
        inputs = _inputs(model.manifest.input.tensor.shape[1:])[:4]
        wrong, errors = _hammer(model.predict, inputs, calls=TFLM_CALLS)
        assert errors == [] and wrong == 0, f"{wrong} wrong of {THREADS * TFLM_CALLS}; errors: {errors[:3]}"
