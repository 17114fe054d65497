"""The held-out samples ``edgeode tune`` measures accuracy on, as plain numpy arrays.

Three sources, one :class:`HeldOut`:

* a run directory: the test split of the data set the run recorded (``config.data``, ``data_path``,
  ``seed``), loaded by :func:`edgeode.train.data.load_dataset`, the loader training used, so the
  samples are the ones training held out (imports torch: a run directory needs it anyway);
* a data set name with a seed (``--data digits --seed 0``): the same, for a bundle;
* an ``.npz`` file with ``x`` (inputs, float32, batch first) and, for a classifier, ``y`` (labels):
  torch-free, for tuning a bundle on the device side.

Selection without bias: tune picks a configuration by its figure on a **validation** set and reports
the chosen one's figure on a **test** set it did not pick on (picking and reporting on the same samples
would report the winner of many tries, biased upward). :func:`split` makes the two from one held-out
set, deterministically: a permutation of the sample indices seeded with :data:`SPLIT_SEED`, the first
half (rounded down) validation, the rest test, each kept in its original order. A separate validation
set (``--val-data``) replaces the split; the whole ``--data`` is then the test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeode.errors import DataError
from edgeode.runtime.npy import read_npz

__all__ = ["HeldOut", "Split", "split", "from_npz", "from_dataset", "from_run", "SPLIT_SEED"]

#: Seed of the permutation :func:`split` halves a held-out set by (fixed: the same data give the same halves).
SPLIT_SEED = 17


@dataclass(frozen=True)
class HeldOut:
    """Inputs ``x`` (batch first) and, for a classifier, integer labels ``y``; ``source`` says where they came from."""

    x: np.ndarray
    y: np.ndarray | None
    source: str

    def __post_init__(self) -> None:
        if self.x.ndim < 2 or len(self.x) == 0:
            raise DataError(f"held-out data from {self.source}: x must be a non-empty batch [N, ...], got shape "
                            f"{list(self.x.shape)}")
        if self.y is not None and (self.y.ndim != 1 or len(self.y) != len(self.x)):
            raise DataError(f"held-out data from {self.source}: y must hold one label per sample ({len(self.x)}), got "
                            f"shape {list(self.y.shape)}")

    def limit(self, n: int | None) -> HeldOut:
        """The first ``n`` samples (all of them for ``None``)."""
        if n is None or n >= len(self.x):
            return self
        return HeldOut(self.x[:n], None if self.y is None else self.y[:n], f"{self.source}, first {n}")


    def take(self, idx: np.ndarray, what: str) -> HeldOut:
        """The samples at indices ``idx``, described as ``what`` of this set."""
        return HeldOut(self.x[idx], None if self.y is None else self.y[idx], f"{self.source}: {what}")


@dataclass(frozen=True)
class Split:
    """The set a configuration is picked on (``val``) and the set its reported figure comes from (``test``)."""

    val: HeldOut
    test: HeldOut


def split(data: HeldOut, seed: int = SPLIT_SEED) -> Split:
    """Halve ``data`` into validation and test (see the module docstring); at least 2 samples."""
    n = len(data.x)
    if n < 2:
        raise DataError(f"held-out data from {data.source} has {n} sample: tune needs at least 2, one half to pick a "
                        "configuration on and one to report its accuracy on (or pass --val-data for the picking)")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = n // 2
    val, test = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return Split(data.take(val, f"validation half ({n_val} of {n}, split seed {seed})"),
                 data.take(test, f"test half ({n - n_val} of {n}, split seed {seed})"))


def from_npz(path: str | Path) -> HeldOut:
    """``x`` (and ``y``) from an ``.npz`` file (``np.savez(path, x=..., y=...)``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--data {path}: no such file; pass an .npz with arrays x (and y for a classifier), or a data "
                        "set name (digits, mnist, spiral) with --seed")
    arrays = read_npz(path, "save it with np.savez(path, x=inputs, y=labels)", names=("x", "y"))
    if "x" not in arrays:
        raise DataError(f"{path} has no array 'x'; save it with np.savez(path, x=inputs, y=labels)")
    x, y = arrays["x"], arrays.get("y")
    if x.dtype.kind != "f":
        raise DataError(f"{path}: x holds {x.dtype} values; the model takes preprocessed float32 input")
    if y is not None and y.dtype.kind not in "iu":
        raise DataError(f"{path}: y holds {y.dtype} values; class labels must be integers")
    return HeldOut(x.astype(np.float32), None if y is None else y.astype(np.int64), str(path))


def from_dataset(name: str, path: str | None, seed: int, kind: str) -> HeldOut:
    """The test split of data set ``name`` split by ``seed`` (imports torch through :mod:`edgeode.train.data`)."""
    try:
        from edgeode.train.data import load_dataset
    except ImportError as exc:
        raise DataError(f"loading data set {name!r} needs torch ({exc}); on a device pass --data FILE.npz with arrays "
                        "x and y instead (pip install 'edgeode[train]' for the data sets)") from None
    data = load_dataset(name, path, seed)
    x = data.x_test.numpy().astype(np.float32)
    y = data.y_test.numpy().astype(np.int64) if kind == "classifier" else None
    return HeldOut(x, y, f"{name} test split (seed {seed}, {len(x)} samples, held out from training)")


def from_run(run_dir: str | Path, kind: str) -> HeldOut:
    """The test split of the data set a run directory was trained on."""
    from edgeode.train.checkpoint import load_run

    cfg = load_run(run_dir).config
    return from_dataset(cfg.data, cfg.data_path, cfg.seed, kind)
