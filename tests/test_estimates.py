"""Estimates that hold still: one cached host reference per machine, timings from undisturbed runs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from edgeode.devices import hostinfo
from edgeode.devices.profiler import undisturbed_runs

sys.path.insert(0, str(Path(__file__).resolve().parent))


def test_runs_kept_waiting_are_left_out():
    wall = [1.0, 1.1, 5.0, 1.05, 9.0, 1.0]
    cpu = [1.0, 1.0, 1.0, 1.0, 1.1, 0.95]
    sel = undisturbed_runs(wall, cpu)
    assert sel.latencies_ms == [1.0, 1.1, 1.05, 1.0] and sel.disturbed == 2
    # parallel threads make wall < CPU: such runs are not mistaken for waiting ones
    assert undisturbed_runs([1.0, 1.0], [1.9, 2.0]).disturbed == 0


def test_a_busy_machine_falls_back_to_the_least_disturbed_fifth():
    wall = [10.0 + i for i in range(10)]
    cpu = [1.0] * 9 + [5.0]
    sel = undisturbed_runs(wall, cpu)
    assert sel.latencies_ms == [19.0, 10.0] and "least kept waiting" in sel.basis


def test_host_reference_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEODE_CACHE_DIR", str(tmp_path))
    hostinfo.host_reference.cache_clear()
    try:
        first = hostinfo.host_reference()
        assert not first.cached and first.gflops > 0 and len(first.rounds) == 5 and 0 <= first.spread < 1
        path = tmp_path / "host-reference.json"
        assert first.cache_file == str(path) and path.is_file()
        hostinfo.host_reference.cache_clear()
        again = hostinfo.host_reference()
        assert again.cached and again.gflops == first.gflops
        # another machine's (or another numpy's) figure is not used
        data = json.loads(path.read_text())
        data["key"]["hostname"] = "some-other-host"
        path.write_text(json.dumps(data))
        assert hostinfo.cached_host_reference() is None
    finally:
        hostinfo.host_reference.cache_clear()


def test_two_profiles_scale_by_the_same_factor(tmp_path):
    """On a busy machine the host latency moves; the factor must not, and the estimate is exactly
    factor x the undisturbed host latency, with its uncertainty stated."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    import runtime_bundles as rb

    from edgeode.devices.profiler import profile_bundle

    bundle = rb.build_classifier(tmp_path / "b").path
    a, b = (profile_bundle(bundle, "pi-4b", runs=20, warmup=2, count_macs=False, progress=False).to_dict()
            for _ in range(2))
    assert a["scaling"]["factor"] == b["scaling"]["factor"]
    cache_file = Path(a["scaling"]["host_reference"]["cache_file"])
    assert cache_file.is_file() and cache_file.is_relative_to(os.environ["EDGEODE_CACHE_DIR"])  # conftest: a temp dir
    for d in (a, b):
        f = d["scaling"]["factor"]
        assert d["latency_ms"]["p50"] == pytest.approx(f * d["host_latency_undisturbed_ms"]["p50"])
        u = d["latency_uncertainty"]
        lo, hi = u["p50_range_ms"]
        assert lo <= d["latency_ms"]["p50"] <= hi and 0 <= u["p50_relative"] < 1
