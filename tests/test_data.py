"""Data sets without downloads: spiral, digits, MNIST IDX files (real t10k files when present, synthetic bad ones)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeode.errors import ConfigError, DataError
from edgeode.runtime.manifest import Preprocess
from edgeode.train.data import DATASETS, SPIRAL_WINDOW, load_dataset, read_idx, spiral_trajectory

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def test_spiral_follows_its_ode() -> None:
    times, states = spiral_trajectory()
    assert torch.allclose(states[0], torch.tensor([2.0, 0.0], dtype=torch.float64))
    assert float(times[-1]) == 25.0 and len(times) == 1001
    data = load_dataset("spiral", seed=0)
    assert data.kind == "dynamics" and data.labels == [] and data.input_shape == (2,)
    assert data.y_train.shape[1:] == (SPIRAL_WINDOW + 1, 2)
    assert torch.equal(data.x_train, data.y_train[:, 0])
    assert data.x_train.shape[0] + data.x_test.shape[0] == 1001 - SPIRAL_WINDOW
    assert data.times is not None and len(data.times) == SPIRAL_WINDOW + 1
    Preprocess.from_dict(data.preprocess, "preprocess")
    # the same ODE solved by an independent adaptive solver (torchdiffeq's dopri5, tight tolerances)
    torchdiffeq = pytest.importorskip("torchdiffeq", reason="torchdiffeq (dev extra) not installed")
    a = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64)
    ref = torchdiffeq.odeint(lambda t, y: (y**3) @ a, states[:1], times, rtol=1e-10, atol=1e-12)[:, 0]
    assert float((ref - states).abs().max()) < 1e-6


def test_digits_split_and_preprocess() -> None:
    a, b, c = load_dataset("digits", seed=0), load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert a.x_train.shape == (1437, 1, 8, 8) and a.x_test.shape == (360, 1, 8, 8)
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_test, c.y_test)
    assert a.labels == [str(i) for i in range(10)] and a.input_shape == (1, 8, 8)
    pre = Preprocess.from_dict(a.preprocess, "preprocess")  # exactly the manifest's keys
    assert pre.raw_max == 16 and pre.image_size == (8, 8)
    # model_input = (raw * scale - mean) / std reproduces the tensors from the raw 0..16 images
    from sklearn.datasets import load_digits

    raw = load_digits().images
    first = raw[np.isin(np.arange(len(raw)), np.sort(np.random.default_rng(0).permutation(len(raw))[360:]))][0]
    expected = (first * pre.scale - pre.mean) / pre.std
    assert np.allclose(a.x_train[0, 0].numpy(), expected, atol=1e-5)
    assert abs(float(a.x_train.mean())) < 0.05 and abs(float(a.x_train.std()) - 1) < 0.05


def test_unknown_dataset() -> None:
    with pytest.raises(ConfigError, match="choose one of: spiral, digits, mnist"):
        load_dataset("cifar10")
    assert DATASETS == ("spiral", "digits", "mnist")


def test_mnist_t10k_split() -> None:
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST t10k files not found at {MNIST_DIR}")
    data = load_dataset("mnist", str(MNIST_DIR), seed=0)
    assert data.x_train.shape == (8000, 1, 28, 28) and data.x_test.shape == (2000, 1, 28, 28)
    assert set(data.y_test.tolist()) == set(range(10))
    assert data.preprocess["raw_max"] == 255.0 and data.preprocess["image_size"] == [28, 28]
    again = load_dataset("mnist", str(MNIST_DIR), seed=0)
    assert torch.equal(data.y_train, again.y_train)


def _write_idx(path: Path, magic: int, dims: tuple[int, ...], payload: bytes | None = None, gz: bool = False) -> None:
    body = struct.pack(">i", magic) + struct.pack(f">{len(dims)}i", *dims)
    body += payload if payload is not None else bytes(int(np.prod(dims)))
    path.write_bytes(gzip.compress(body) if gz else body)


def test_mnist_from_synthetic_idx(tmp_path: Path) -> None:
    images = (np.arange(20 * 28 * 28) % 256).astype(np.uint8).tobytes()
    labels = bytes(i % 10 for i in range(20))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, (20, 28, 28), images, gz=True)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", 2049, (20,), labels)  # raw, not gzipped
    data = load_dataset("mnist", str(tmp_path), seed=0)
    assert data.x_train.shape == (16, 1, 28, 28) and data.x_test.shape == (4, 1, 28, 28)
    # with train files, the official split is used
    _write_idx(tmp_path / "train-images-idx3-ubyte", 2051, (30, 28, 28))
    _write_idx(tmp_path / "train-labels-idx1-ubyte", 2049, (30,))
    data = load_dataset("mnist", str(tmp_path), seed=0)
    assert data.x_train.shape[0] == 30 and data.x_test.shape[0] == 20


def test_mnist_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--data-path"):
        load_dataset("mnist", None)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("mnist", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        load_dataset("mnist", str(tmp_path))
    img = tmp_path / "t10k-images-idx3-ubyte"
    lab = tmp_path / "t10k-labels-idx1-ubyte"
    _write_idx(img, 2049, (5,))  # a labels file under the images name
    _write_idx(lab, 2049, (5,))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte has magic number 2049"):
        load_dataset("mnist", str(tmp_path))
    _write_idx(img, 2051, (5, 28, 28), bytes(100))  # truncated
    with pytest.raises(DataError, match="truncated"):
        load_dataset("mnist", str(tmp_path))
    _write_idx(img, 2051, (5, 32, 32))
    with pytest.raises(DataError, match="expected 28x28"):
        load_dataset("mnist", str(tmp_path))
    _write_idx(img, 2051, (4, 28, 28))
    with pytest.raises(DataError, match="do not match"):
        load_dataset("mnist", str(tmp_path))
    (tmp_path / "x.gz").write_bytes(b"\x1f\x8b" + b"garbage")
    with pytest.raises(DataError, match="corrupt"):
        read_idx(tmp_path / "x.gz", 2051)
