"""``edgeode run BUNDLE INPUT`` end to end, as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def edgeode(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeode", *args], capture_output=True, text=True, cwd=ROOT, timeout=180)


@pytest.fixture(scope="module")
def bundles(onnx_bundles):
    """The shared hand-built ONNX classifier and dynamics bundles (tests/conftest.py)."""
    return onnx_bundles.classifier, onnx_bundles.dynamics


def test_json_output_batch(bundles, tmp_path):
    cls, _ = bundles
    np.save(tmp_path / "x.npy", cls.x)
    proc = edgeode("run", str(cls.path), str(tmp_path / "x.npy"), "--json", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)  # exactly one JSON object on stdout
    assert out["backend"] == "onnxruntime" and out["mode"] == "fused" and out["latency_ms"] > 0
    assert [p["index"] for p in out["predictions"]] == list(range(5))
    labels = ["zero", "one", "two"]
    logits = np.array([p["logits"] for p in out["predictions"]])
    np.testing.assert_allclose(logits, cls.y, atol=2e-5)
    # the label is that of the printed logits' argmax (torch's own argmax would hinge on near-ties)
    assert [p["label"] for p in out["predictions"]] == [labels[k] for k in logits.argmax(1)]


def test_loop_mode_solver_steps_and_single_sample(bundles, tmp_path):
    cls, _ = bundles
    np.save(tmp_path / "one.npy", cls.x[0].astype(np.float64))  # one sample, no batch axis, float64
    proc = edgeode("run", str(cls.path), str(tmp_path / "one.npy"), "--json", "--solver", "euler", "--steps", "20")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["mode"] == "loop" and out["tableau"] == "euler" and out["steps"] == 20 and out["field_evaluations"] == 20
    assert len(out["predictions"]) == 1
    # Euler with 20 steps is close to (not equal to) the RK4 reference
    assert np.abs(np.array(out["predictions"][0]["logits"]) - cls.y[0]).max() < 0.05


def test_one_image_without_batch_and_channel_axes(bundles, tmp_path):
    cls, _ = bundles
    np.save(tmp_path / "hw.npy", cls.x[0, 0])  # [H, W] of a single-channel model
    proc = edgeode("run", str(cls.path), str(tmp_path / "hw.npy"), "--json")
    assert proc.returncode == 0, proc.stderr
    (pred,) = json.loads(proc.stdout)["predictions"]
    np.testing.assert_allclose(pred["logits"], cls.y[0], atol=2e-5)
    probs = np.exp(cls.y[0] - cls.y[0].max())
    probs /= probs.sum()
    np.testing.assert_allclose(pred["probabilities"], probs, atol=1e-5)
    assert pred["class"] == int(np.argmax(cls.y[0])) and pred["probability"] == max(pred["probabilities"])


def test_text_output_and_dynamics(bundles, tmp_path):
    cls, dyn = bundles
    np.save(tmp_path / "x.npy", cls.x[:2])
    proc = edgeode("run", str(cls.path), str(tmp_path / "x.npy"), "--mode", "loop")
    assert proc.returncode == 0, proc.stderr
    assert "odenet (classifier) on onnxruntime, mode loop, rk4 x 4 steps: 2 sample(s)" in proc.stdout
    assert "[1]" in proc.stdout
    np.save(tmp_path / "y0.npy", dyn.x)
    proc = edgeode("run", str(dyn.path), str(tmp_path / "y0.npy"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    np.testing.assert_allclose([p["final_state"] for p in out["predictions"]], dyn.y[-1], atol=2e-5)


def test_image_input(bundles, tmp_path):
    cls, _ = bundles
    pixels = (np.arange(36).reshape(6, 6) * 7).astype(np.uint8)
    (tmp_path / "img.pgm").write_bytes(b"P5\n6 6\n255\n" + pixels.tobytes())
    proc = edgeode("run", str(cls.path), str(tmp_path / "img.pgm"), "--json")
    assert proc.returncode == 0, proc.stderr
    from edgeode.runtime import load

    x = ((pixels / 255.0) * (1 / 255) * 255 - 0.5) / 0.25  # manifest: raw_max 255, scale 1/255, mean .5, std .25
    want = load(cls.path).predict(x[None, None].astype(np.float32))
    np.testing.assert_allclose(json.loads(proc.stdout)["predictions"][0]["logits"], want[0], atol=1e-5)


def test_errors_exit_2(bundles, tmp_path):
    cls, _ = bundles
    np.save(tmp_path / "int.npy", np.zeros((1, 1, 6, 6), np.int64))
    (tmp_path / "empty.npy").write_bytes(b"")
    for args, match in [
        ((str(cls.path), str(tmp_path / "empty.npy")), "not a readable .npy file"),
        ((str(cls.path), str(tmp_path / "int.npy")), "float32"),
        ((str(cls.path), str(tmp_path / "missing.npy")), "not found"),
        ((str(cls.path), str(tmp_path / "int.npy"), "--backend", "litert"), "bundle has only"),
        ((str(cls.path), str(tmp_path / "int.npy"), "--steps", "9"), "--mode loop"),
    ]:
        proc = edgeode("run", *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "edgeode run: error:" in proc.stderr and match in proc.stderr, proc.stderr


def test_non_finite_output_is_a_typed_error_never_invalid_json(tmp_path):
    """A head whose logits overflow float32 (finite input, finite solver state): `run --json` used to print
    NaN / Infinity, which is not JSON. Every mode now exits 2 with one line naming NaN/Inf; stdout stays empty."""
    pytest.importorskip("torch", reason="building the test bundle needs torch")
    sys.path.insert(0, str(ROOT / "tests"))
    import runtime_bundles as rb

    built = rb.build_classifier(tmp_path / "overflow", head_gain=1e30)
    assert not np.isfinite(built.y).all()  # torch's own output overflows: the bundle is what it claims
    np.save(tmp_path / "x.npy", built.x[:2])
    for mode, where in (("fused", "fused solve"), ("loop", "the head after a finite state")):
        proc = edgeode("run", str(built.path), str(tmp_path / "x.npy"), "--json", "--mode", mode)
        assert proc.returncode == 2 and proc.stdout == "", (mode, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "NaN/Inf" in lines[0] and where in lines[0] and "Traceback" not in proc.stderr
