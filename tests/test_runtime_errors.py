"""Every way a bundle, an input or a backend can be wrong gives a typed error that names the problem."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime_bundles as rb  # noqa: E402

from edgeode.errors import BackendError, BundleError, ConfigError, ShapeError, SolverError  # noqa: E402
from edgeode.runtime import load, read_bundle  # noqa: E402
from edgeode.runtime.backends import check_backend  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(onnx_bundles):
    """The shared hand-built ONNX classifier (tests/conftest.py); tests that damage it use ``bundle``."""
    return onnx_bundles.classifier


@pytest.fixture
def bundle(built, tmp_path) -> Path:
    """A fresh copy the test may damage."""
    dst = tmp_path / "bundle"
    shutil.copytree(built.path, dst)
    return dst


def test_good_bundle_reads(bundle):
    b = read_bundle(bundle)
    assert b.root == bundle.resolve()
    assert {a.role for a in b.manifest.artifacts} == {"encoder", "field", "head", "fused"}
    assert b.path(b.manifest.artifacts[0]).is_file()


def test_not_a_directory(tmp_path):
    with pytest.raises(BundleError, match="not a directory"):
        read_bundle(tmp_path / "nope")
    with pytest.raises(BundleError, match="manifest.json not found|not a bundle directory"):
        read_bundle(tmp_path)


def test_missing_file(bundle):
    (bundle / "onnx/field.onnx").unlink()
    with pytest.raises(BundleError, match=r"'onnx/field.onnx'.*missing"):
        load(bundle)


def test_truncated_file(bundle):
    path = bundle / "onnx/fused.onnx"
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size // 2])
    with pytest.raises(BundleError, match=rf"onnx/fused.onnx.*truncated: expected {size} bytes, got {size // 2}"):
        read_bundle(bundle)


def test_checksum_mismatch(bundle):
    path = bundle / "onnx/head.onnx"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"onnx/head.onnx.*checksum mismatch"):
        read_bundle(bundle)


def test_symlink_out_of_bundle(bundle, tmp_path):
    outside = tmp_path / "outside.onnx"
    shutil.move(bundle / "onnx/head.onnx", outside)
    os.symlink(outside, bundle / "onnx/head.onnx")
    with pytest.raises(BundleError, match=r"outside the bundle"):
        read_bundle(bundle)


def test_escaping_path_in_manifest(bundle):
    data = json.loads((bundle / "manifest.json").read_text())
    data["artifacts"][0]["path"] = "../../etc/passwd"
    (bundle / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="escapes the bundle"):
        read_bundle(bundle)


def test_manifest_disagrees_with_file(bundle):
    data = json.loads((bundle / "manifest.json").read_text())
    fused = next(a for a in data["artifacts"] if a["role"] == "fused")
    fused["inputs"][0]["name"] = "images"
    (bundle / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="does not belong to this file"):
        load(bundle)


@pytest.mark.parametrize("mode", ["fused", "loop"])
def test_wrong_inputs(built, mode):
    model = load(built.path, mode=mode)
    with pytest.raises(ShapeError, match=r"rank 4 with shape \[B, 1, 6, 6\], got shape \[1, 6, 6\].*x\[None\]"):
        model.predict(built.x[0])
    with pytest.raises(ShapeError, match=r"shape \[B, 1, 6, 6\], got \[2, 1, 5, 6\]"):
        model.predict(np.zeros((2, 1, 5, 6), np.float32))
    with pytest.raises(ShapeError, match="float32.*got dtype uint8"):
        model.predict(np.zeros((2, 1, 6, 6), np.uint8))
    with pytest.raises(ShapeError, match="empty batch"):
        model.predict(np.zeros((0, 1, 6, 6), np.float32))
    # float64 is cast to float32
    np.testing.assert_allclose(model.predict(built.x.astype(np.float64)), built.y, atol=1e-5)


def test_bad_options(built):
    with pytest.raises(ConfigError, match="unknown mode"):
        load(built.path, mode="unrolled")
    with pytest.raises(ConfigError, match="unknown backend"):
        load(built.path, backend="tensorflow")
    with pytest.raises(ConfigError, match="threads"):
        load(built.path, threads=0)
    with pytest.raises(ConfigError, match="steps"):
        load(built.path, mode="loop", steps=-3)
    with pytest.raises(ConfigError, match="unknown solver"):
        load(built.path, mode="loop", tableau="dopri5")
    with pytest.raises(ConfigError, match="mode='loop'"):
        load(built.path, mode="fused", tableau="euler")
    with pytest.raises(ConfigError, match="unrolled for 4 steps.*mode='loop'"):
        load(built.path, mode="fused", steps=7)
    with pytest.raises(ConfigError, match="runs tflite files but the bundle has only"):
        load(built.path, backend="litert")
    with pytest.raises(ConfigError, match="no int8-dynamic artifacts"):
        load(built.path, precision="int8-dynamic")
    with pytest.raises(ConfigError, match="for dynamics bundles"):
        load(built.path).solve(built.x)


def test_nan_state_names_the_step(tmp_path):
    pytest.importorskip("torch")
    div = rb.build_diverging(tmp_path / "div")
    model = load(div.path, mode="loop")
    with pytest.raises(SolverError, match=r"NaN/Inf at step 2 \(t = 0.333"):
        model.solve(div.x)
    with pytest.raises(SolverError, match="step 2"):
        model.predict(div.x)
    # a small enough start stays finite over all 6 Euler steps
    assert np.isfinite(model.solve(np.full((1, 1), 1e-40, np.float32))).all()
    fused = load(div.path, mode="fused")
    with pytest.raises(SolverError, match=r"fused solve.*NaN/Inf.*mode='loop'"):
        fused.predict(div.x)
    np.testing.assert_allclose(fused.solve(np.full((1, 1), 1e-40, np.float32)), model.solve(np.full((1, 1), 1e-40, np.float32)))


def test_tflite_runtime_refused_under_numpy2():
    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip("numpy < 2 here: the refusal applies only under numpy >= 2")
    with pytest.raises(BackendError, match=r"numpy 1.x ABI.*numpy<2.*LiteRT"):
        check_backend("tflite-runtime")


def test_tflite_runtime_refuses_int8_dynamic():
    with pytest.raises(BackendError, match="wrong results.*int8-dynamic.*LiteRT"):
        check_backend("tflite-runtime", "int8-dynamic")


_BLOCKER = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"No module named {{name!r}} (blocked by the test)")
        return None
sys.meta_path.insert(0, _Block())
"""


def _run_blocked(blocked: set[str], body: str) -> subprocess.CompletedProcess:
    code = _BLOCKER.format(blocked=blocked) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_backend_not_installed_gives_install_hint(built):
    proc = _run_blocked({"onnxruntime"}, f"""
        from edgeode.errors import BackendError
        from edgeode.runtime import load, backend_available
        assert not backend_available("onnxruntime")
        for backend in ("onnxruntime", "auto"):
            try:
                load({str(built.path)!r}, backend=backend)
            except BackendError as exc:
                print("ERR", backend, exc)
        """)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ERR")]
    assert len(lines) == 2, proc.stdout
    assert "not installed" in lines[0] and "pip install 'edgeode[onnx]'" in lines[0]
    assert "no installed backend" in proc.stdout


def test_cli_reports_errors_with_exit_2(built, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 1, 7, 7), np.float32))
    proc = subprocess.run([sys.executable, "-m", "edgeode", "run", str(built.path), str(x)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert "edgeode run: error:" in proc.stderr and "[B, 1, 6, 6]" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "edgeode", "run", str(tmp_path / "nobundle"), str(x)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "bundle directory" in proc.stderr
