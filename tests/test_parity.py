"""The export parity gate runs a bundle's files through the runtime's own sessions (issue 12, item 3).

Real files from the session's trained digits bundle (ONNX and TFLite, batch 1), run by the real
onnxruntime / LiteRT through :mod:`edgeode.runtime.backends`.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeode.export.parity import ParityCase, check_parity, gate_backend, open_gate_session, tolerance_for
from edgeode.runtime.backends import OnnxSession, TFLiteSession, run_chunked
from edgeode.runtime.manifest import Manifest

#: The wrong reference is off by this many times the gate's bound: far outside it for every precision.
OFFSET_BOUNDS = 3.0


def _gate_twice(bundle, art, x, ref):
    """The gate on ``bundle``'s file ``art`` against ``ref``, then against ``ref`` with one sample shifted."""
    session = open_gate_session(bundle / art.path, art)
    try:
        assert session.backend == gate_backend(art.format, art.precision)
        good = check_parity(session, [ParityCase({"x": x}, ref, ("x",))], tolerance_for(art.precision))
        shifted = ref.copy()
        shifted[2] += OFFSET_BOUNDS * good.bound  # one sample, inside a chunk for the batch-1 TFLite files
        bad = check_parity(session, [ParityCase({"x": x}, shifted, ("x",))], tolerance_for(art.precision))
        return type(session), good, bad
    finally:
        session.close()


@pytest.mark.parametrize("fmt, session_type", [("onnx", OnnxSession), ("tflite", TFLiteSession)])
def test_gate_runs_the_runtime_session_and_catches_a_wrong_reference(digits_run, digits_bundle, fmt, session_type):
    pytest.importorskip("onnxruntime" if fmt == "onnx" else "ai_edge_litert.interpreter")
    art = Manifest.read(digits_bundle).find("fused", fmt)
    kind, good, bad = _gate_twice(digits_bundle, art, digits_run.x[:5], digits_run.ref[:5])
    assert kind is session_type
    assert good.ok and good.samples == 5
    assert not bad.ok and bad.max_abs >= OFFSET_BOUNDS * good.bound - good.max_abs


def test_int8_gate_runs_the_tflm_session(digits_run, digits_int8_bundle):
    from edgeode.runtime.tflm import TFLMSession

    art = Manifest.read(digits_int8_bundle).find("fused", "tflite", "int8")
    assert art.tflm is not None and art.tflm.arena_bytes > 0
    kind, good, bad = _gate_twice(digits_int8_bundle, art, digits_run.x[:5], digits_run.ref[:5])
    assert kind is TFLMSession and good.ok and not bad.ok


def test_run_chunked_pads_the_last_chunk_and_drops_its_outputs():
    calls = []

    def fn(part: np.ndarray) -> np.ndarray:
        calls.append(part.copy())
        return np.stack([part * 2, part * 3])  # a trajectory-like output, batch on axis 1

    x = np.arange(5, dtype=np.float32)
    out = run_chunked(fn, x, 2, out_axis=1)
    np.testing.assert_array_equal(out, np.stack([x * 2, x * 3]))
    assert [c.tolist() for c in calls] == [[0, 1], [2, 3], [4, 4]]
    assert run_chunked(fn, x, None).shape == (2, 5) and len(calls) == 4
