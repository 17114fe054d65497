"""Session-scoped fixtures shared by the whole suite, built once per test session.

- ``digits_run``: an ODE-Net (adjoint, RK4, 2 steps) trained on the 8x8 digits well enough that its
  torch margins (best minus second-best logit) exceed the quantization error on most test digits,
  with the torch logits of the first test digits as the reference every backend is compared with.
- ``digits_bundle``: that run exported to ONNX and TFLite (batch 1) with int8-dynamic and float16
  variants, through the parity gate (``edgeode.export.export_run``).
- ``digits_int8_bundle``: that run exported to TFLite with the full-int8 microcontroller files,
  measured in TensorFlow Lite Micro (``--quantize int8``).
- ``spiral_run`` / ``spiral_bundle``: the spiral dynamics model, trained and exported the same way.
- ``onnx_bundles``: the tiny hand-built ONNX classifier and dynamics bundles of
  ``tests/runtime_bundles.py`` (untrained; for CLI and error-path tests that need no training).
- ``quick_compare``: one ``edgeode compare --quick`` report (with ``--mcu`` where the int8 tools are
  installed), read by tests/test_compare.py and tests/test_compare_mcu.py: one run instead of two.

Every test that needs one of these uses the same artifacts, so a fix to how they are built lands
once. Tests must not modify them: copy first (``shutil.copytree``) to damage a bundle.

``EDGEODE_TEST_SEED`` (default 0) changes the training seed of the trained fixtures, to check that
no test depends on how one particular training run came out (the weights a seed gives differ
across CPUs through float rounding).

The session also keeps its side effects inside temporary directories: edgeode caches per-machine
measurements (the host's reference SGEMM throughput, see edgeode.devices.hostinfo.host_reference)
in the user's cache directory and reads user device profiles from ~/.config/edgeode/devices. Tests
point both at a temporary directory made for the session (subprocesses inherit the environment),
so running the suite writes nothing into the home directory and no profile a user saved changes a
test's outcome.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: Training seed of the trained fixtures (see the module docstring).
SEED = int(os.environ.get("EDGEODE_TEST_SEED", "0"))
#: How many test digits carry a torch reference.
DIGITS_SAMPLES = 32

_SESSION_DIR: str | None = None


def pytest_configure(config) -> None:
    global _SESSION_DIR
    _SESSION_DIR = tempfile.mkdtemp(prefix="edgeode-tests-")
    os.environ.setdefault("EDGEODE_CACHE_DIR", os.path.join(_SESSION_DIR, "cache"))
    os.environ.setdefault("EDGEODE_DEVICES_DIR", os.path.join(_SESSION_DIR, "devices"))


def pytest_unconfigure(config) -> None:
    if _SESSION_DIR is not None:
        shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@dataclass(frozen=True)
class TrainedDigits:
    """A trained digits run and the torch reference for its first test digits."""

    path: Path
    x: np.ndarray  # [DIGITS_SAMPLES, 1, 8, 8] preprocessed test digits
    y: np.ndarray  # their labels
    ref: np.ndarray  # torch logits of the trained model for x


@dataclass(frozen=True)
class TrainedSpiral:
    """A trained spiral dynamics run and the torch reference trajectory for five test states."""

    path: Path
    y0: np.ndarray  # [5, 2] initial states from the spiral test split
    ref: np.ndarray  # [steps + 1, 5, 2] torch trajectory


@dataclass(frozen=True)
class OnnxBundles:
    """The hand-built ONNX bundles of tests/runtime_bundles.py (``Built``: path, x, torch output y)."""

    classifier: object
    dynamics: object


def _train(config, out: Path) -> None:
    from edgeode.train.trainer import train

    train(config, out, progress=False)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> TrainedDigits:
    """ODE-Net on the digits: width 16, RK4 x 2 steps, 6 epochs at lr 1e-2 (~15 s on one core).

    Measured here (seeds 0 and 1): test accuracy 0.947 both; median torch margin 2.1 and 2.5, and
    over 90% of test digits have a margin above 0.5 = 2 x the int8-dynamic parity tolerance. The
    barely trained model this replaces (width 8, one epoch on 64 digits) had all margins near zero,
    so int8 flipped classes on some CPUs and not on others.
    """
    pytest.importorskip("torch", reason="training the fixture model needs torch")
    import torch

    from edgeode.train.checkpoint import TrainConfig, load_run
    from edgeode.train.data import load_dataset
    from edgeode.train.models import ModelConfig

    path = tmp_path_factory.mktemp("digits") / "run"
    config = TrainConfig(model=ModelConfig(arch="odenet", image_size=8, width=16, downsample=1, steps=2, solver="rk4"),
                         data="digits", epochs=6, batch_size=32, lr=1e-2, seed=SEED, threads=1)
    _train(config, path)
    data = load_dataset("digits", seed=SEED)
    x = data.x_test[:DIGITS_SAMPLES]
    with torch.no_grad():
        ref = load_run(path).model(x).numpy()
    return TrainedDigits(path, x.numpy(), data.y_test[:DIGITS_SAMPLES].numpy(), ref)


@pytest.fixture(scope="session")
def digits_bundle(digits_run, tmp_path_factory) -> Path:
    """``digits_run`` exported: ONNX and TFLite (batch 1), float32 plus int8-dynamic and float16 variants."""
    pytest.importorskip("litert_torch", reason="litert-torch is needed to export TFLite")
    from edgeode.export import export_run

    out = tmp_path_factory.mktemp("digits-bundle") / "bundle"
    export_run(digits_run.path, out, quantize=("int8-dynamic", "float16"), progress=False)
    return out


@pytest.fixture(scope="session")
def digits_int8_bundle(digits_run, tmp_path_factory) -> Path:
    """``digits_run`` exported for microcontrollers: float32 TFLite plus full-int8 files measured in TFLM
    (``--formats tflite --quantize int8``)."""
    pytest.importorskip("litert_torch", reason="litert-torch is needed to export TFLite")
    pytest.importorskip("ai_edge_quantizer", reason="int8 export needs ai-edge-quantizer")
    pytest.importorskip("tflite_micro", reason="int8 bundles are measured in tflite-micro: pip install 'edgeode[mcu]'")
    from edgeode.export import export_run

    out = tmp_path_factory.mktemp("digits-int8") / "bundle"
    export_run(digits_run.path, out, formats=("tflite",), quantize=("int8",), progress=False)
    return out


@pytest.fixture(scope="session")
def spiral_run(tmp_path_factory) -> TrainedSpiral:
    """The spiral model, Euler x 20 steps over a 0.5 window (the data fixes 20 steps per window; Euler
    keeps the unrolled TFLite solve small), one epoch on 32 windows."""
    pytest.importorskip("torch", reason="training the fixture model needs torch")
    import torch

    from edgeode.train.checkpoint import TrainConfig, load_run
    from edgeode.train.data import load_dataset
    from edgeode.train.models import ModelConfig

    path = tmp_path_factory.mktemp("spiral") / "run"
    config = TrainConfig(model=ModelConfig(arch="spiral", steps=20, solver="euler", t0=0.0, t1=0.5, image_size=1,
                                           in_channels=1, num_classes=1),
                         data="spiral", epochs=1, batch_size=16, train_limit=32, seed=SEED, threads=1)
    _train(config, path)
    y0 = load_dataset("spiral", seed=SEED).x_test[:5]
    with torch.no_grad():
        ref = load_run(path).model(y0).numpy()
    return TrainedSpiral(path, y0.numpy(), ref)


@pytest.fixture(scope="session")
def spiral_bundle(spiral_run, tmp_path_factory) -> Path:
    """``spiral_run`` exported to ONNX and TFLite (batch 1)."""
    pytest.importorskip("litert_torch", reason="litert-torch is needed to export TFLite")
    from edgeode.export import export_run

    out = tmp_path_factory.mktemp("spiral-bundle") / "bundle"
    export_run(spiral_run.path, out, progress=False)
    return out


@pytest.fixture(scope="session")
def onnx_bundles(tmp_path_factory) -> OnnxBundles:
    """The tiny ONNX-only classifier and dynamics bundles (built with torch, not trained)."""
    pytest.importorskip("torch", reason="building the test bundles needs torch")
    pytest.importorskip("onnxruntime")
    import runtime_bundles as rb

    root = tmp_path_factory.mktemp("onnx-bundles")
    return OnnxBundles(rb.build_classifier(root / "classifier", formats=("onnx",)),
                       rb.build_dynamics(root / "dynamics", formats=("onnx",)))


@dataclass(frozen=True)
class QuickCompare:
    """The output folder of one ``edgeode compare --quick`` run and the finished process."""

    out: Path
    proc: object  # subprocess.CompletedProcess
    mcu: bool  # whether --mcu was asked (tflite-micro and ai-edge-quantizer installed)


@pytest.fixture(scope="session")
def quick_compare(tmp_path_factory) -> QuickCompare:
    """``edgeode compare --quick --device pi-zero-2w --runs 2`` (plus ``--mcu`` when its tools are here),
    really run in a subprocess: training, exports, profiles and the report, once for the session."""
    import importlib.util
    import subprocess

    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    mcu = all(importlib.util.find_spec(m) is not None for m in ("tflite_micro", "ai_edge_quantizer"))
    out = tmp_path_factory.mktemp("compare") / "report"
    args = ["compare", "--quick", "--device", "pi-zero-2w", "--runs", "2", "-q", "-o", str(out)] + (["--mcu"] if mcu else [])
    proc = subprocess.run([sys.executable, "-m", "edgeode", *args], capture_output=True, text=True, timeout=900)
    return QuickCompare(out, proc, mcu)
