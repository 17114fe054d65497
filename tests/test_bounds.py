"""Bounded, interruptible work (issue 11, Build 2): step bounds are typed errors, Ctrl-C and --timeout stop a
long real run in a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime_bundles as rb  # noqa: E402

from edgeode.errors import BundleError, ConfigError  # noqa: E402
from edgeode.runtime import load, read_bundle  # noqa: E402
from edgeode.runtime.limits import MAX_SAMPLE_STEPS, MAX_STEPS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def edgeode(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeode", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("torch", reason="building the test bundles needs torch")
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("bounds")
    cls = rb.build_classifier(root / "classifier", formats=("onnx",))
    dyn = rb.build_loop_dynamics(root / "dynamics")  # fused ONNX Loop with a `steps` input
    np.save(root / "x.npy", cls.x)
    np.save(root / "y0.npy", dyn.x)
    return cls, dyn, root


@pytest.mark.parametrize("steps", [MAX_STEPS + 1, 10**12, 2**63, 10**5000, 0, -3, True],
                         ids=["bound+1", "1e12", "2**63", "5000-digits", "0", "-3", "True"])
def test_steps_out_of_bounds_is_a_config_error(built, steps):
    cls, _, _ = built
    with pytest.raises(ConfigError, match="steps"):
        load(cls.path, mode="loop", steps=steps)


def test_batch_times_steps_is_bounded(built):
    cls, _, _ = built
    model = load(cls.path, mode="loop", steps=MAX_STEPS)
    x = np.zeros((MAX_SAMPLE_STEPS // MAX_STEPS + 1, 1, 6, 6), np.float32)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="sample-steps"):
        model.predict(x)
    assert time.perf_counter() - start < 1.0  # refused before any work


def test_solve_times_spanning_too_many_steps(built):
    _, dyn, _ = built
    with pytest.raises(ConfigError, match="MAX_STEPS"):
        load(dyn.path, mode="loop").solve(dyn.x, times=[0.0, 1e9])


def test_manifest_steps_above_the_bound_is_refused(built, tmp_path):
    import shutil

    cls, _, _ = built
    dst = tmp_path / "b"
    shutil.copytree(cls.path, dst)
    data = json.loads((dst / "manifest.json").read_text())
    data["solver"]["steps"] = 10**12
    (dst / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"solver.steps.*bound"):
        read_bundle(dst)


@pytest.mark.parametrize("steps", [str(10**12), str(2**63)])
def test_cli_steps_above_the_bound_exits_fast_without_traceback(built, steps):
    cls, _, root = built
    start = time.perf_counter()
    proc = edgeode("run", str(cls.path), str(root / "x.npy"), "--steps", steps, "--json")
    assert proc.returncode != 0 and time.perf_counter() - start < 30
    assert "Traceback" not in proc.stderr and "bound" in proc.stderr and proc.stdout == ""
