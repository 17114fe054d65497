"""Estimates that hold still: one cached host reference per machine, a low percentile of many runs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeode.devices import hostinfo
from edgeode.devices.profiler import host_basis, low_percentile, undisturbed_runs

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


def test_low_percentile_and_its_interval():
    values = [float(i) for i in range(1, 1001)]
    p5, lo, hi = low_percentile(values, 5)
    assert p5 == 50.0 and lo < p5 < hi
    # n q -+ 1.96 sqrt(n q (1 - q)) = 50 -+ 13.5: ranks 37 and 64 (nearest rank, rounded up)
    assert (lo, hi) == (37.0, 64.0)
    assert low_percentile([3.0], 5) == (3.0, 3.0, 3.0)


def test_basis_holds_still_when_the_share_of_slowed_runs_changes():
    """The shape measured on the shared 2-core host: a fast mode (the model alone) and a slow one (other work
    on the machine), in shares that change from process to process. The median follows the shares; the
    basis (5th percentile) stays on the fast mode while at least ~10% of the runs are fast."""
    rng = np.random.default_rng(0)
    bases, medians = [], []
    for fast_share in (0.9, 0.5, 0.15):
        fast = rng.random(2000) < fast_share
        wall = np.where(fast, 0.32, 0.46) * (1 + 0.02 * rng.random(2000)) + rng.exponential(0.01, 2000)
        b = host_basis(wall.tolist(), wall.tolist())
        assert b.runs == 2000 and b.interval_ms[0] <= b.latency_ms["p50"] <= b.interval_ms[1]
        assert b.latency_ms["p50"] <= b.latency_ms["p95"] <= b.latency_ms["p99"] and b.cpu_ms == b.latency_ms["p50"]
        bases.append(b.latency_ms["p50"])
        medians.append(float(np.median(wall)))
    assert (max(bases) - min(bases)) / min(bases) < 0.02
    assert (max(medians) - min(medians)) / min(medians) > 0.3


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


def test_estimates_time_one_pinned_thread_and_a_device_its_own_threads():
    """An estimate's host timing matches the single-thread SGEMM ratio: one thread, pinned to a CPU this
    process may use; on the calibrated device itself the default is what the device runs, unpinned."""
    from edgeode.devices.profiler import timing_threads
    from edgeode.devices.profiles import load_profile
    from edgeode.devices.scaling import Scaling

    pi = load_profile("pi-4b")
    est = Scaling(False, 19.0, "estimate", "scaled", 115.0, 6.0, "", None)
    threads, pin = timing_threads(pi, est, None)
    assert threads == 1
    if hostinfo.cpu_count() >= 2 and hasattr(os, "sched_setaffinity"):
        assert len(pin) == 2 and len(set(pin)) == 2 and set(pin) <= os.sched_getaffinity(0)
    else:
        assert pin is None
    assert timing_threads(pi, est, 2) == (2, None)  # as asked, unpinned
    on_device = Scaling(True, 1.0, "measured", "measured", None, 6.0, "", None)
    assert timing_threads(pi, on_device, None) == (min(pi.cpu.cores, hostinfo.cpu_count()), None)
    emulated = Scaling(False, None, "emulated", "refused", None, 6.0, "", "qemu")
    assert timing_threads(pi, emulated, None)[1] is None


def test_quietest_cpu_is_one_this_process_may_use():
    cpu = hostinfo.quietest_cpu(0.02)
    cpus = hostinfo.quietest_cpus(8, 0.02)
    if hostinfo.cpu_count() < 2 or not hasattr(os, "sched_setaffinity"):
        assert cpu is None and cpus == []
    else:
        assert cpu in os.sched_getaffinity(0)
        assert set(cpus) <= os.sched_getaffinity(0) and len(cpus) == min(8, len(os.sched_getaffinity(0)))


def test_basis_comes_from_the_cpu_its_runs_were_fastest_on():
    """A job holding one CPU for the whole window slows every run there; the basis keeps the other CPU's
    runs, whichever order the turns came in, and ignores a CPU with too few runs for a percentile."""
    rng = np.random.default_rng(1)
    calm = 0.25 * (1 + 0.02 * rng.random(1000))
    busy = 0.45 * (1 + 0.02 * rng.random(1000))
    for first, second, cpus in ((calm, busy, [0] * 1000 + [1] * 1000), (busy, calm, [1] * 1000 + [0] * 1000)):
        b = host_basis([*first, *second], None, cpus)
        assert b.cpu == 0 and b.runs == 1000 and b.latency_ms["p50"] < 0.26
    # 3 runs on CPU 1, however fast, are not a percentile
    b = host_basis([*busy, 0.1, 0.1, 0.1], None, [0] * 1000 + [1] * 3)
    assert b.cpu == 0 and b.latency_ms["p50"] > 0.44
    assert host_basis(list(calm), None, [5] * 1000).cpu is None  # one CPU: no choice made


def test_profiles_agree_and_scale_by_the_same_factor(onnx_bundles):
    """Three profiles of one bundle (default runs: >= 2 s each) on this machine, busy or not: one factor, and
    estimates that agree. The estimate is exactly factor x the host basis, with its uncertainty stated.
    The tolerance is for a busy CI host: on the shared 2-core Xeon at load 9.5-9.9 five profiles of the
    quickstart bundle (one thread, pinned) agreed within 4.6% (benchmarks/results/estimate_stability-pi-4b.md),
    but at load 11-12 a whole 2 s window can see no undisturbed run and come out up to ~1.7x higher. Of three
    profiles two see calm runs, hence: the two closest agree within 10%. What tells the estimators apart is
    the test above, on the measured shape.
    """
    from edgeode.devices.profiler import profile_bundle

    bundle = onnx_bundles.classifier.path
    runs = [profile_bundle(bundle, "pi-4b", warmup=2, count_macs=False, progress=False).to_dict() for _ in range(3)]
    assert len({d["scaling"]["factor"] for d in runs}) == 1
    cache_file = Path(runs[0]["scaling"]["host_reference"]["cache_file"])
    assert cache_file.is_file() and cache_file.is_relative_to(os.environ["EDGEODE_CACHE_DIR"])  # conftest: a temp dir
    for d in runs:
        f = d["scaling"]["factor"]
        assert d["runs"] >= 50 and d["runs_requested"] == "auto" and d["threads"] == 1
        if hostinfo.cpu_count() >= 2 and hasattr(os, "sched_setaffinity"):
            assert d["pinned_cpu"] in os.sched_getaffinity(0)  # the child really ran there: it reports its own pin
            assert d["timed_cpus"] is None or (d["pinned_cpu"] in d["timed_cpus"] and len(d["timed_cpus"]) == 2)
        assert d["latency_ms"]["p50"] == pytest.approx(f * d["host_basis"]["latency_ms"]["p50"])
        u = d["latency_uncertainty"]
        lo, hi = u["p50_range_ms"]
        assert lo <= d["latency_ms"]["p50"] <= hi and 0 <= u["p50_relative"] < 1
    p50 = sorted(d["latency_ms"]["p50"] for d in runs)
    # the two closest of three: a burst of other work on a shared CI machine can slow one whole window
    closest = min(p50[1] / p50[0], p50[2] / p50[1])
    load = max((d["host_load_average"] or 0.0) for d in runs)
    if closest >= 1.10 and load >= hostinfo.cpu_count() - 0.5:
        # Other jobs held the CPUs beyond this test's own (measured: at load ~2 on the 2-core Xeon, with a
        # second test run beside the suite, three profiles gave 2.21 / 2.46 / 3.59 ms): no window saw an
        # undisturbed run, and the profile says so. Stability is a claim about a host with a free core.
        assert all(any("the host was busy" in n for n in d["notes"]) for d in runs if d["host_load_average"] > hostinfo.cpu_count())
        pytest.skip(f"host busy (load average up to {load:.1f} on {hostinfo.cpu_count()} CPUs): estimates {p50} "
                    "cannot be compared; rerun on a host with a free core")
    assert closest < 1.10, (p50, load)
