"""The runtime on real ONNX and TFLite files: fused == loop == torch, chunked fixed batches, dynamics, images.

Bundles are built here with torch (tests only). The tflite-runtime tests run in the numpy<2 venv of
``.ci/tflite-runtime.sh``, which builds fixture bundles in the main environment and points
``EDGEODE_TFLITE_FIXTURES`` at them; elsewhere they skip with the reason.
"""

from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime_bundles as rb  # noqa: E402

from edgeode.errors import ConfigError  # noqa: E402
from edgeode.runtime import load, preprocess_image  # noqa: E402
from edgeode.runtime.backends import backend_available  # noqa: E402
from edgeode.runtime.image import load_image, read_pgm, read_png, resize  # noqa: E402

ATOL = 2e-5
FIXTURES = os.environ.get("EDGEODE_TFLITE_FIXTURES")


def _need_build_env():
    pytest.importorskip("torch", reason="building test bundles needs torch (training env)")
    pytest.importorskip("litert_torch", reason="building TFLite test bundles needs litert-torch")
    for backend in ("onnxruntime", "litert"):
        if not backend_available(backend):
            pytest.skip(f"backend {backend} not installed")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    _need_build_env()
    built = rb.build_classifier(tmp_path_factory.mktemp("cls") / "classifier", formats=("onnx", "tflite"), tflite_batch=2)
    rb.add_int8_dynamic(built.path)
    return built


@pytest.fixture(scope="module")
def dynamics(tmp_path_factory):
    _need_build_env()
    return rb.build_dynamics(tmp_path_factory.mktemp("dyn") / "dynamics", formats=("onnx", "tflite"), tflite_batch=2)


def _torch_solve(built_field, h0, tableau, t0, t1, steps, trajectory=False):
    import torch

    from edgeode.train.solver import solve

    with torch.no_grad():
        return solve(built_field, torch.from_numpy(h0), tableau, t0, t1, steps, trajectory=trajectory).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
@pytest.mark.parametrize("mode", ["fused", "loop"])
def test_classifier_matches_torch(classifier, backend, mode):
    with load(classifier.path, backend=backend, mode=mode, threads=1) as model:
        scores = model.predict(classifier.x)  # batch 5: TFLite (batch 2) runs 3 chunks, the last padded
        assert scores.shape == (5, 3) and scores.dtype == np.float32
        np.testing.assert_allclose(scores, classifier.y, atol=ATOL)
        np.testing.assert_allclose(model.predict(classifier.x[:1]), classifier.y[:1], atol=ATOL)
        d = model.describe()
        assert d["backend"] == backend and d["mode"] == mode and d["tableau"] == "rk4" and d["steps"] == 4
        assert d["field_evaluations"] == model.field_evaluations == 16
        assert d["batch"] == (2 if backend == "litert" else None)
        roles = {"fused"} if mode == "fused" else {"encoder", "field", "head"}
        assert set(d["artifacts"]) == roles
        assert d["labels"] == ["zero", "one", "two"]


def test_auto_prefers_onnxruntime_then_litert(classifier):
    assert load(classifier.path).backend == "onnxruntime"
    # int8-dynamic exists only as TFLite: auto falls through to LiteRT
    assert load(classifier.path, precision="int8-dynamic").backend == "litert"


def test_int8_dynamic_runs_on_litert(classifier):
    model = load(classifier.path, backend="litert", precision="int8-dynamic")
    scores = model.predict(classifier.x)
    assert np.abs(scores - classifier.y).max() < 0.05
    # classes only where the torch margin exceeds 2 x 0.05: the untrained fixture has near-ties
    from margins import assert_same_class_where_decided

    assert_same_class_where_decided(scores, classifier.y, 0.05, "litert int8-dynamic")


def test_onnx_dynamic_batch_equals_tflite_fixed_batch(classifier):
    x = np.concatenate([classifier.x] * 3)  # 15 samples, not a multiple of 2
    onnx_scores = load(classifier.path, backend="onnxruntime").predict(x)
    tfl_scores = load(classifier.path, backend="litert").predict(x)
    assert onnx_scores.shape == tfl_scores.shape == (15, 3)
    np.testing.assert_allclose(onnx_scores, tfl_scores, atol=ATOL)


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_loop_with_other_tableau_and_steps_matches_torch(classifier, backend):
    import torch

    enc, field, head = rb._modules(0)
    with torch.no_grad():
        h0 = enc(torch.from_numpy(classifier.x)).numpy()
    for tableau, steps in (("euler", 3), ("rk4_38", 7), ("midpoint", 4)):
        model = load(classifier.path, backend=backend, mode="loop", tableau=tableau, steps=steps)
        h1 = _torch_solve(field, h0, tableau, 0.0, 1.0, steps)
        with torch.no_grad():
            want = head(torch.from_numpy(h1)).numpy()
        np.testing.assert_allclose(model.predict(classifier.x), want, atol=ATOL)
        assert model.field_evaluations == model.tableau.stages * steps


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_dynamics_fused_equals_loop_equals_torch(dynamics, backend):
    fused = load(dynamics.path, backend=backend, mode="fused")
    loop = load(dynamics.path, backend=backend, mode="loop")
    traj_f, traj_l = fused.solve(dynamics.x), loop.solve(dynamics.x)
    assert traj_f.shape == traj_l.shape == (9, 5, 2)
    np.testing.assert_allclose(traj_f, dynamics.y, atol=ATOL)
    np.testing.assert_allclose(traj_l, dynamics.y, atol=ATOL)
    np.testing.assert_allclose(loop.predict(dynamics.x), dynamics.y[-1], atol=ATOL)
    # the uniform grid may be passed explicitly in fused mode; other times need loop mode
    np.testing.assert_allclose(fused.solve(dynamics.x, times=np.linspace(0, 2, 9)), traj_f)
    with pytest.raises(ConfigError, match="mode='loop'"):
        fused.solve(dynamics.x, times=[0.0, 0.5, 2.0])


def test_dynamics_loop_arbitrary_times(dynamics):
    from edgeode.runtime.loop import interval_steps

    model = load(dynamics.path, mode="loop")
    times = [0.0, 0.1, 0.35, 1.2, 2.0]  # manifest dt = 0.25: intervals take 1, 1, 4, 4 steps
    traj = model.solve(dynamics.x, times=times)
    assert traj.shape == (5, 5, 2)
    field = _spiral_field()
    want = [dynamics.x]
    for a, b in zip(times[:-1], times[1:], strict=True):
        n = interval_steps(b - a, 0.25)
        want.append(_torch_solve(field, want[-1], "rk4", a, b, n))
    np.testing.assert_allclose(traj, np.stack(want), atol=ATOL)
    assert [interval_steps(b - a, 0.25) for a, b in zip(times[:-1], times[1:], strict=True)] == [1, 1, 4, 4]
    with pytest.raises(ConfigError, match="increasing"):
        model.solve(dynamics.x, times=[0.0, 1.0, 0.5])


def _spiral_field():
    return rb.spiral_field(1)


# ------------------------------------------------------------------ tflite-runtime (legacy, numpy<2 venv)

def _tflite_runtime_fixtures() -> Path:
    if FIXTURES is None:
        pytest.skip("tflite-runtime tests run in the numpy<2 venv of .ci/tflite-runtime.sh (EDGEODE_TFLITE_FIXTURES unset)")
    if not backend_available("tflite-runtime"):
        pytest.skip("tflite-runtime is not usable here (not installed, or numpy >= 2)")
    return Path(FIXTURES)


@pytest.mark.parametrize("mode", ["fused", "loop"])
def test_tflite_runtime_classifier(mode):
    root = _tflite_runtime_fixtures() / "classifier"
    ref = np.load(str(root) + ".ref.npz")
    model = load(root, backend="tflite-runtime", mode=mode, threads=1)
    np.testing.assert_allclose(model.predict(ref["x"]), ref["y"], atol=ATOL)
    assert load(root).backend == "tflite-runtime"  # auto: the only backend there


def test_tflite_runtime_dynamics():
    root = _tflite_runtime_fixtures() / "dynamics"
    ref = np.load(str(root) + ".ref.npz")
    for mode in ("fused", "loop"):
        np.testing.assert_allclose(load(root, backend="tflite-runtime", mode=mode).solve(ref["x"]), ref["y"], atol=ATOL)


def test_tflite_runtime_refuses_int8_dynamic_bundle():
    from edgeode.errors import BackendError

    root = _tflite_runtime_fixtures() / "int8"
    with pytest.raises(BackendError, match="wrong results.*LiteRT"):
        load(root, backend="tflite-runtime", precision="int8-dynamic")
    with pytest.raises(BackendError, match="no installed backend"):
        load(root, precision="int8-dynamic")


# ------------------------------------------------------------------ images

def _png(path: Path, pixels: np.ndarray, color: int, filters: list[int]) -> None:
    """Write a PNG with explicit per-row filter types (exercises all five unfilter paths)."""
    h, w = pixels.shape[:2]
    bpp = pixels.shape[2]
    rows, prior = [], np.zeros(w * bpp, np.int32)
    for y in range(h):
        line = pixels[y].reshape(-1).astype(np.int32)
        f = filters[y % len(filters)]
        left = np.concatenate([np.zeros(bpp, np.int32), line[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), prior[:-bpp]])
        if f == 0:
            enc = line
        elif f == 1:
            enc = line - left
        elif f == 2:
            enc = line - prior
        elif f == 3:
            enc = line - (left + prior) // 2
        else:
            p = left + prior - upleft
            pa, pb, pc = abs(p - left), abs(p - prior), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prior, upleft))
            enc = line - pred
        rows.append(bytes([f]) + (enc & 0xFF).astype(np.uint8).tobytes())
        prior = line

    def chunk(kind: bytes, body: bytes) -> bytes:
        import struct

        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    import struct

    ihdr = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("color, channels", [(0, 1), (2, 3), (4, 2), (6, 4)])
def test_png_decoder_all_filters(tmp_path, color, channels):
    rng = np.random.default_rng(color)
    pixels = rng.integers(0, 256, (7, 5, channels), dtype=np.uint8)
    path = tmp_path / "img.png"
    _png(path, pixels, color, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(read_png(path), pixels)
    try:
        from PIL import Image
    except ImportError:
        return
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(tmp_path / "pil.png")
    np.testing.assert_array_equal(read_png(tmp_path / "pil.png"), pixels)


def test_pgm_p5_p2_and_resize(tmp_path):
    img = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    (tmp_path / "a.pgm").write_bytes(b"P5\n# comment\n4 3\n255\n" + img.tobytes())
    (tmp_path / "b.pgm").write_text("P2\n4 3\n255\n" + " ".join(str(v) for v in img.ravel()) + "\n")
    for name in ("a.pgm", "b.pgm"):
        pixels, maxval = read_pgm(tmp_path / name)
        assert maxval == 255
        np.testing.assert_array_equal(pixels[..., 0], img)
    big = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    np.testing.assert_array_equal(resize(big, (2, 2), "nearest")[..., 0], [[5, 7], [13, 15]])
    np.testing.assert_allclose(resize(big, (2, 2), "bilinear")[..., 0], [[2.5, 4.5], [10.5, 12.5]])
    (tmp_path / "bad.pgm").write_bytes(b"P5\n4 3\n255\n" + img.tobytes()[:5])
    from edgeode.errors import DataError

    with pytest.raises(DataError, match="truncated"):
        load_image(tmp_path / "bad.pgm")


def test_preprocess_image_follows_manifest(tmp_path):
    from edgeode.runtime.manifest import InputSpec, Manifest, OutputSpec, Preprocess, TensorSpec

    pre = Preprocess(scale=1 / 16, mean=0.5, std=0.25, image_size=(2, 2), raw_max=16.0, invert=True)
    man = Manifest("classifier", {"arch": "x"}, InputSpec(TensorSpec("x", (None, 1, 2, 2)), pre),
                   OutputSpec(TensorSpec("y", (None, 3))), None, (), {}, "now")
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:2, :2] = 255  # top-left quadrant white
    _png(tmp_path / "x.png", rgb, 2, [1])
    x = preprocess_image(tmp_path / "x.png", man, method="nearest")
    assert x.shape == (1, 1, 2, 2) and x.dtype == np.float32
    # white -> raw 16 -> inverted 0 -> (0 - 0.5) / 0.25 = -2; black -> 16 -> (1 - 0.5) / 0.25 = 2
    np.testing.assert_allclose(x[0, 0], [[-2, 2], [2, 2]], atol=1e-5)


def test_fused_onnx_loop_takes_steps_override(tmp_path):
    pytest.importorskip("torch")
    built = rb.build_loop_dynamics(tmp_path / "loopdyn", steps=8)
    default = load(built.path, mode="fused")
    assert "steps" not in default._fused_feeds(built.x)  # optional input left to its default
    np.testing.assert_allclose(default.solve(built.x), built.y, atol=ATOL)
    fine = load(built.path, mode="fused", steps=16)
    assert int(fine._fused_feeds(built.x)["steps"]) == 16
    traj = fine.solve(built.x)
    assert traj.shape == (17, 5, 2) and fine.field_evaluations == 64
    want = _torch_solve(_spiral_field(), built.x, "rk4", 0.0, 2.0, 16, trajectory=True)
    np.testing.assert_allclose(traj, want, atol=ATOL)
    np.testing.assert_allclose(traj, load(built.path, mode="loop", steps=16).solve(built.x), atol=1e-6)
