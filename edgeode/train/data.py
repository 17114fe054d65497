"""Data sets that need no download: the spiral dynamics, scikit-learn's 8x8 digits, MNIST from IDX files.

Every loader returns a :class:`Dataset` of in-memory torch tensors, split into train and test by a
fixed seed, plus the preprocessing a device must apply to raw input so that it matches training
(``model_input = (raw * scale - mean) / std``, the keys of
:class:`edgeode.runtime.manifest.Preprocess`).

* ``spiral`` -- the two-dimensional spiral of torchdiffeq's ``examples/ode_demo.py``
  (Chen et al. 2018, §5 / Fig. 4): ``dy/dt = (y**3) @ A`` with ``A = [[-0.1, 2.0], [-2.0, -0.1]]``
  and ``y(0) = [2, 0]``, integrated with our own RK4 over ``[0, 25]`` at 10 sub-steps per sample
  (float64, far below the float32 resolution of the data). The true trajectory is sampled at
  ``SPIRAL_POINTS`` points; each example is a window of ``SPIRAL_WINDOW`` intervals:
  ``x`` = the state at the window start ``[N, 2]``, ``y`` = the states at the ``SPIRAL_WINDOW + 1``
  window points ``[N, SPIRAL_WINDOW + 1, 2]``, at the times ``Dataset.times`` (relative to the
  window start). Windows are split 80 / 20 by seed. No noise is added.
* ``digits`` -- ``sklearn.datasets.load_digits`` (1,797 bundled 8x8 images, raw values 0..16),
  split 1,437 / 360 by seed.
* ``mnist`` -- IDX files (``*-idx3-ubyte`` / ``*-idx1-ubyte``, gzipped or raw) in a directory the
  user gives. With ``train-*`` and ``t10k-*`` files the official split is used; with only the
  ``t10k-*`` files (the official 10,000-image test set) those are split 8,000 / 2,000 by seed.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgeode.errors import ConfigError, DataError
from edgeode.names import DATASETS

__all__ = [
    "DATASETS",
    "Dataset",
    "load_dataset",
    "dataset_for",
    "read_idx",
    "spiral_trajectory",
    "SPIRAL_A",
    "SPIRAL_Y0",
    "SPIRAL_T_END",
    "SPIRAL_POINTS",
    "SPIRAL_WINDOW",
]

SPIRAL_A = ((-0.1, 2.0), (-2.0, -0.1))
SPIRAL_Y0 = (2.0, 0.0)
SPIRAL_T_END = 25.0
#: Number of samples of the true trajectory (1,000 intervals of 0.025 over [0, 25]).
SPIRAL_POINTS = 1001
#: Intervals per training window (so a window spans 20 * 0.025 = 0.5 time units).
SPIRAL_WINDOW = 20
_SPIRAL_SUBSTEPS = 10


@dataclass
class Dataset:
    """An in-memory, already split and normalised data set.

    Attributes:
        name: one of :data:`DATASETS`.
        kind: ``"classifier"`` (x images [N, C, H, W] float32, y labels int64) or ``"dynamics"``
            (x initial states [N, D], y target trajectories [N, T, D] at ``times``).
        labels: class names (``[]`` for dynamics).
        preprocess: ``scale, mean, std, image_size, raw_max, invert`` with
            ``model_input = (raw * scale - mean) / std``.
        input_shape: one example's shape, (C, H, W) or (D,).
        times: dynamics only: the times of the target points relative to the start state.
        info: where the data came from (files, split sizes, seed), written into the run directory.
    """

    name: str
    kind: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    labels: list[str]
    preprocess: dict
    input_shape: tuple[int, ...]
    times: torch.Tensor | None = None
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def describe(self) -> dict:
        """A JSON-ready summary (no tensors): what a run directory records about its data."""
        return {
            "name": self.name,
            "kind": self.kind,
            "labels": list(self.labels),
            "preprocess": dict(self.preprocess),
            "input_shape": list(self.input_shape),
            "times": [float(t) for t in self.times] if self.times is not None else None,
            "num_train": int(self.x_train.shape[0]),
            "num_test": int(self.x_test.shape[0]),
            **self.info,
        }


def load_dataset(name: str, path: str | None = None, seed: int = 0) -> Dataset:
    """Load data set ``name`` (one of :data:`DATASETS`), split by ``seed``.

    ``path`` is the directory of the MNIST IDX files (required for ``mnist``, ignored otherwise).

    Raises:
        ConfigError: unknown name.
        DataError: MNIST files missing, truncated or malformed (the message names the file and the fix).
    """
    if name == "spiral":
        return _spiral(seed)
    if name == "digits":
        return _digits(seed)
    if name == "mnist":
        return _mnist(path, seed)
    raise ConfigError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")


def dataset_for(name: str, path: str | None = None, seed: int = 0, data: Dataset | None = None) -> Dataset:
    """``data`` if given, else :func:`load_dataset` ``(name, path, seed)``.

    Lets a process load a data set once and hand it to every step that needs it (``train``,
    ``export_run``, the runtime accuracy check: quickstart and compare), instead of each step
    loading it again (MNIST from its IDX files takes seconds). A given ``data`` must be the data set
    ``name`` split by ``seed`` (what the run recorded), else :class:`ConfigError`.
    """
    if data is None:
        return load_dataset(name, path, seed)
    recorded = data.info.get("seed", seed)
    if data.name != name or recorded != seed:
        raise ConfigError(
            f"the data set passed in is {data.name!r} split with seed {recorded}, but the run needs {name!r} with "
            f"seed {seed}; pass the matching data set, or none (data=None) to load it"
        )
    return data


def _split(n: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _image_preprocess(train_raw: np.ndarray, raw_max: float, size: tuple[int, int]) -> dict:
    scaled = train_raw.astype(np.float64) / raw_max
    std = round(float(scaled.std()), 6)
    return {
        "scale": 1.0 / raw_max,
        "mean": round(float(scaled.mean()), 6),
        "std": std if std > 0 else 1.0,  # constant images (only in synthetic tests): do not divide by 0
        "image_size": [int(size[0]), int(size[1])],
        "raw_max": float(raw_max),
        "invert": False,
    }


def _normalise(raw: np.ndarray, pre: dict) -> torch.Tensor:
    x = (raw.astype(np.float32) * np.float32(pre["scale"]) - np.float32(pre["mean"])) / np.float32(pre["std"])
    return torch.from_numpy(np.ascontiguousarray(x[:, None, :, :], dtype=np.float32))


def _classifier(name: str, images: np.ndarray, labels: np.ndarray, train_idx, test_idx, raw_max: float,
                info: dict) -> Dataset:
    pre = _image_preprocess(images[train_idx], raw_max, images.shape[1:])
    return Dataset(
        name=name,
        kind="classifier",
        x_train=_normalise(images[train_idx], pre),
        y_train=torch.from_numpy(labels[train_idx].astype(np.int64)),
        x_test=_normalise(images[test_idx], pre),
        y_test=torch.from_numpy(labels[test_idx].astype(np.int64)),
        labels=[str(i) for i in range(10)],
        preprocess=pre,
        input_shape=(1, int(images.shape[1]), int(images.shape[2])),
        info=info,
    )


# --------------------------------------------------------------------------------------------- spiral


def spiral_trajectory(points: int = SPIRAL_POINTS, t_end: float = SPIRAL_T_END,
                      substeps: int = _SPIRAL_SUBSTEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """The true spiral: times [points] and states [points, 2] (float64), by RK4 with ``substeps`` per sample."""
    from edgeode.train.solver import odeint

    a = torch.tensor(SPIRAL_A, dtype=torch.float64)
    times = torch.linspace(0.0, t_end, points, dtype=torch.float64)
    y0 = torch.tensor([SPIRAL_Y0], dtype=torch.float64)
    with torch.no_grad():
        states = odeint(lambda t, y: (y**3) @ a, y0, times, "rk4", steps_per_interval=substeps)
    return times, states[:, 0, :]


def _spiral(seed: int) -> Dataset:
    times, states = spiral_trajectory()
    w = SPIRAL_WINDOW
    starts = np.arange(SPIRAL_POINTS - w)
    windows = torch.stack([states[s : s + w + 1] for s in starts]).to(torch.float32)  # [N, w+1, 2]
    train_idx, test_idx = _split(len(starts), len(starts) // 5, seed)
    x = windows[:, 0, :].contiguous()
    rel_times = (times[: w + 1] - times[0]).to(torch.float32)
    return Dataset(
        name="spiral",
        kind="dynamics",
        x_train=x[train_idx],
        y_train=windows[train_idx],
        x_test=x[test_idx],
        y_test=windows[test_idx],
        labels=[],
        preprocess={"scale": 1.0, "mean": 0.0, "std": 1.0, "image_size": None, "raw_max": 1.0, "invert": False},
        input_shape=(2,),
        times=rel_times,
        info={"source": "dy/dt = (y**3) @ A, A = [[-0.1, 2.0], [-2.0, -0.1]], y0 = [2, 0], t in [0, 25]",
              "window": w, "seed": seed},
    )


# --------------------------------------------------------------------------------------------- digits


def _digits(seed: int) -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - scikit-learn is in the train extra
        raise DataError("the digits data set needs scikit-learn: pip install 'edgeode[train]'") from None
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)  # [1797, 8, 8], values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = _split(len(labels), 360, seed)
    info = {"source": "sklearn.datasets.load_digits (bundled, 8x8, raw 0..16)", "seed": seed}
    return _classifier("digits", images, labels, train_idx, test_idx, 16.0, info)


# --------------------------------------------------------------------------------------------- MNIST

_IDX_MAGIC = {2051: "images (idx3)", 2049: "labels (idx1)"}
_MNIST_HINT = (
    "pass --data-path DIR with the MNIST IDX files t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] "
    "(optionally train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]), as published at "
    "http://yann.lecun.com/exdb/mnist/"
)


def read_idx(path: str | Path, expect_magic: int) -> np.ndarray:
    """Read one IDX file (raw or gzip) into a uint8 array, checking magic number, dims and size.

    ``expect_magic`` is 2051 for images (``[N, rows, cols]``) or 2049 for labels (``[N]``).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except OSError as exc:
        raise DataError(f"cannot read MNIST file {path}: {exc.strerror or exc}; {_MNIST_HINT}") from None
    except (EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"MNIST file {path} is a corrupt or truncated gzip file ({exc}); download it again") from None
    if len(raw) < 8:
        raise DataError(f"MNIST file {path} is only {len(raw)} bytes, too short for an IDX header; download it again")
    magic = struct.unpack(">i", raw[:4])[0]
    if magic != expect_magic:
        got = _IDX_MAGIC.get(magic, "not an IDX file")
        raise DataError(
            f"MNIST file {path} has magic number {magic} ({got}); expected {expect_magic} "
            f"({_IDX_MAGIC[expect_magic]}). Check that the images and labels files are not swapped or corrupt"
        )
    ndim = 3 if expect_magic == 2051 else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"MNIST file {path} is truncated inside its header; download it again")
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    if ndim == 3 and dims[1:] != (28, 28):
        raise DataError(f"MNIST file {path} holds {dims[1]}x{dims[2]} images; expected 28x28 MNIST images")
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(
            f"MNIST file {path} has {len(raw)} bytes (after decompression) but its header {list(dims)} "
            f"needs {expected}; the file is truncated or corrupt: download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _read_pair(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    img_path = _find(directory, f"{prefix}-images-idx3-ubyte")
    lab_path = _find(directory, f"{prefix}-labels-idx1-ubyte")
    if img_path is None or lab_path is None:
        missing = f"{prefix}-images-idx3-ubyte[.gz]" if img_path is None else f"{prefix}-labels-idx1-ubyte[.gz]"
        raise DataError(f"MNIST directory {directory} has no {missing}; {_MNIST_HINT}")
    images, labels = read_idx(img_path, 2051), read_idx(lab_path, 2049)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"MNIST files {img_path.name} ({images.shape[0]} images) and {lab_path.name} ({labels.shape[0]} labels) "
            "do not match; use the images and labels of the same set"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"MNIST file {lab_path} holds label {int(labels.max())}; MNIST labels are 0..9")
    return images, labels, [img_path.name, lab_path.name]


def _mnist(path: str | None, seed: int) -> Dataset:
    if path is None:
        raise DataError(f"the mnist data set needs a directory: {_MNIST_HINT}")
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise DataError(f"MNIST directory {directory} does not exist or is not a directory; {_MNIST_HINT}")
    test_images, test_labels, files = _read_pair(directory, "t10k")
    has_train = _find(directory, "train-images-idx3-ubyte") or _find(directory, "train-labels-idx1-ubyte")
    if has_train:
        train_images, train_labels, train_files = _read_pair(directory, "train")
        images = np.concatenate([train_images, test_images])
        labels = np.concatenate([train_labels, test_labels])
        n_train = train_images.shape[0]
        train_idx, test_idx = np.arange(n_train), np.arange(n_train, images.shape[0])
        split = "official train / t10k split"
        files = train_files + files
    else:
        images, labels = test_images, test_labels
        n_test = images.shape[0] // 5  # 10,000 -> 8,000 train / 2,000 test
        train_idx, test_idx = _split(images.shape[0], n_test, seed)
        split = f"t10k only: split {images.shape[0] - n_test} / {n_test} by seed"
    info = {"source": f"MNIST IDX files in {directory.resolve()}", "files": files, "split": split, "seed": seed}
    return _classifier("mnist", images, labels, train_idx, test_idx, 255.0, info)
