"""``edgeode profile``: memory, latency, CPU time, MACs and energy of a bundle for a device.

Steps (each measurement in a fresh child process, :mod:`edgeode.devices.child`):

1. the **runtime floor**: a child that imports numpy and the backend and opens a trivial session;
2. the **model**: a child that loads the bundle with :func:`edgeode.runtime.load` (load time),
   runs ``warmup`` untimed and ``runs`` timed inferences (latency percentiles, process CPU time,
   RAPL energy where readable);
3. peak resident memory of both, sampled by the parent and from the kernel
   (:mod:`edgeode.devices.measure`); the model adds ``peak(model) - peak(floor)``;
4. MACs per inference from the bundle's ONNX graphs (:mod:`edgeode.devices.macs`);
5. device figures: measured on a calibrated device, else host figures scaled
   (:mod:`edgeode.devices.scaling`) and labelled *estimate*; energy by the CPU-time proxy
   (:mod:`edgeode.devices.power`);
6. a verdict on RAM and storage: "does not fit: needs X MB, device has Y MB".

ONNX Runtime's idle spinning is off (the runtime sets ``session.intra_op.allow_spinning=0``) so the
CPU time is work, not spinning. Threads default to one for estimates (pinned to one CPU: the host latency
matched to the single-thread SGEMM ratio, :func:`timing_threads`) and to ``min(device cores, host CPUs)`` on a
calibrated device.
Memory figures are MiB (2**20 bytes), written ``MB`` as the devices' RAM is.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeode.devices.hostinfo import cpu_count, quietest_cpus
from edgeode.devices.measure import ChildFailed, ChildRun, run_child
from edgeode.devices.power import EnergyEstimate, energy_proxy, rapl_readable
from edgeode.devices.profiles import DeviceProfile, load_profile
from edgeode.devices.scaling import Scaling, decide_scaling
from edgeode.errors import ConfigError

__all__ = ["DeviceTimings", "device_timings", "FitVerdict", "ProfileReport", "profile_bundle", "fit_verdict", "ram_need", "percentiles", "dir_size_mb",
           "HostBasis", "host_basis", "low_percentile", "undisturbed_runs", "timing_threads"]

SPINNING_NOTE = ("ONNX Runtime idle spinning is off (session.intra_op.allow_spinning=0, set by edgeode.runtime): "
                 "CPU time counts work, not spinning threads")


@dataclass
class FitVerdict:
    """Does the model fit the device's RAM and storage? ``message`` says it in words."""

    fits: bool
    ram_needed_mb: float
    ram_available_mb: float
    ram_total_mb: float
    storage_needed_mb: float
    storage_mb: float
    message: str
    basis: str


@dataclass
class ProfileReport:
    """Everything ``edgeode profile --json`` prints (keys carry their units)."""

    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.data


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 (nearest-rank on the sorted values), mean and min."""
    if not values:
        return {"p50": math.nan, "p95": math.nan, "p99": math.nan, "mean": math.nan, "min": math.nan}
    s = sorted(values)

    def rank(p: float) -> float:
        return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "mean": sum(s) / len(s), "min": s[0]}


#: A run counts as disturbed (the process waited for a CPU another process held) when its wall time
#: exceeds its own CPU time by more than this factor plus ``_WAIT_MS``.
_WAIT_FACTOR = 1.2
_WAIT_MS = 0.05


@dataclass
class Undisturbed:
    """The timed runs an estimate is based on: those that were not kept waiting by other processes."""

    latencies_ms: list[float]
    disturbed: int
    basis: str


def undisturbed_runs(latencies_ms: list[float], cpu_ms: list[float] | None) -> Undisturbed:
    """The runs whose wall time is explained by their own CPU time (nobody else held the CPU meanwhile).

    On a machine shared with other jobs, a run's wall time is its work plus waits for a CPU; the
    device runs the model alone, so its estimate should come from the runs without waits. A run
    waited when wall > 1.2 x its process CPU time + 0.05 ms (threads working in parallel only make
    wall smaller than CPU time, so a parallel run is not mistaken for a waiting one). If fewer than a
    fifth of the runs qualify, the fifth with the lowest wall / CPU ratio is used. Measured on a
    2-core machine at load 5: the p50 of all runs moved 1.3-6.4 ms across five processes; this
    selection's p50 stayed within 1.0-1.5 ms (the CPU time itself moves with cache and SMT sharing).
    """
    n = len(latencies_ms)
    if not cpu_ms or len(cpu_ms) != n or n == 0:
        return Undisturbed(list(latencies_ms), 0, "all runs (no per-run CPU time)")
    keep = [w for w, c in zip(latencies_ms, cpu_ms, strict=True) if w <= _WAIT_FACTOR * c + _WAIT_MS]
    if len(keep) >= max(1, n // 5):
        return Undisturbed(keep, n - len(keep), f"{len(keep)} of {n} runs not kept waiting by other processes "
                                                 f"(wall <= {_WAIT_FACTOR:g} x own CPU time + {_WAIT_MS:g} ms)")
    ranked = sorted(zip(latencies_ms, cpu_ms, strict=True), key=lambda wc: wc[0] / max(wc[1], 1e-9))
    keep = [w for w, _ in ranked[: max(1, n // 5)]]
    return Undisturbed(keep, n - len(keep), f"the {len(keep)} of {n} runs least kept waiting (machine busy: fewer "
                                             "than a fifth ran without waits)")


#: Estimates scale this low percentile of the host's timed runs (see :func:`host_basis`).
BASIS_PERCENTILE = 1
#: Without an explicit ``runs``: time at least this many runs and this many seconds, at most AUTO_MAX_RUNS.
AUTO_MIN_RUNS, AUTO_MIN_SECONDS, AUTO_MAX_RUNS = 50, 2.0, 20000


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def low_percentile(values: list[float], q: float = BASIS_PERCENTILE) -> tuple[float, float, float]:
    """The ``q``-th percentile of ``values`` (nearest rank) and its distribution-free 95% confidence interval.

    The interval is the pair of order statistics whose ranks are ``n q/100 -+ 1.96 sqrt(n q/100 (1 - q/100))``
    (the binomial / normal-approximation interval for a quantile, e.g. Conover, *Practical Nonparametric
    Statistics*, 3rd ed., 1999, section 3.2): it assumes nothing about the shape of the distribution.
    """
    s = sorted(values)
    n = len(s)
    if n == 0:
        return math.nan, math.nan, math.nan
    p = q / 100
    half = 1.96 * math.sqrt(n * p * (1 - p))

    def at(rank: float) -> float:
        return s[min(n - 1, max(0, math.ceil(rank) - 1))]

    return at(n * p), at(n * p - half), at(n * p + half)


@dataclass(frozen=True)
class HostBasis:
    """The host figures that device estimates scale (:func:`device_timings`), each robust to a busy host.

    ``latency_ms`` holds ``p50`` (the :data:`BASIS_PERCENTILE` th percentile of all timed runs' wall times: the
    host's undisturbed latency, see :func:`host_basis`) and ``p95``/``p99`` (of the runs not kept waiting, never
    below ``p50``); ``cpu_ms`` is the same percentile of the runs' own CPU times (``None`` without per-run CPU times); ``interval_ms`` the 95% confidence interval
    of the ``p50`` basis within this process's runs. ``cpu`` is the CPU whose runs these are when the process
    took turns on several (the least disturbed, see :func:`host_basis`), else ``None`` (all runs).
    """

    latency_ms: dict[str, float]
    cpu_ms: float | None
    interval_ms: tuple[float, float]
    runs: int
    basis: str
    cpu: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def host_basis(latencies_ms: list[float], cpu_ms: list[float] | None, run_cpus: list[int] | None = None) -> HostBasis:
    """What the device's typical (p50) latency is estimated from: the host's *undisturbed* latency.

    Other processes on a shared host only ever add time to a run (waiting for a core, a busy SMT
    sibling, caches refilled after another job), never take it away, so the fastest runs are the
    closest to the model running alone, as it does on the device (Chen & Revels 2016, "Robust
    benchmarking in noisy environments", arXiv 1608.04295). The minimum itself rests on a few lucky
    runs; a low percentile of many runs holds still while the share of slowed runs changes. On the
    shared 2-core Xeon the runs of the quickstart bundle fall in two modes (about 0.29 and 0.46 ms on
    one thread: contention the VM cannot see, shared caches or physical cores) whose shares change
    from process to process, so the median moves most; a low percentile stays on the fast mode while a
    process sees some undisturbed runs, and the lower the percentile, the fewer it needs (the 1st:
    one run in a hundred). Pinning (:func:`timing_threads`) helps a process see them: at load 6 a
    single-thread process left to migrate between the CPUs gave a 5th percentile of 0.287-0.584 ms
    across five processes, pinned 0.296-0.307 ms (``benchmarks/estimate_stability.py BUNDLE
    --percentiles 5``, ``benchmarks/results/estimate_percentiles-1737.md``); in a later window at load 9
    both held within 5% at the 1st percentile (``estimate_percentiles.md``). When other work slows a
    whole window, every statistic moves (at load 9-12 some processes saw no fast run at all); the
    profile then notes the busy host. The wall-versus-CPU-time filter
    (:func:`undisturbed_runs`) cannot tell the modes apart: a slowed run's own CPU time grows with its
    wall time. On an idle device the median is somewhat above this basis (the device's own jitter,
    which a busy host cannot show); that bias is far inside the scaling model's x0.5-x2.

    ``run_cpus`` (each run's CPU, when the timing process took turns on several, :func:`timing_threads`):
    the basis is taken from the runs of the CPU they were fastest on. Another job that holds one CPU for a
    whole window slows every run there (on the 2-core Xeon one such profile of five came out 10.3% above
    the others, all runs on the CPU a 0.1 s glance had found quietest); it cannot hold both.
    """
    cpu = None
    if run_cpus and len(run_cpus) == len(latencies_ms) and len(set(run_cpus)) > 1:
        cpu, keep = _least_disturbed_cpu(latencies_ms, run_cpus)
        latencies_ms = [latencies_ms[i] for i in keep]
        cpu_ms = [cpu_ms[i] for i in keep] if cpu_ms and len(cpu_ms) == len(run_cpus) else None
    base, lo, hi = low_percentile(latencies_ms)
    calm = undisturbed_runs(latencies_ms, cpu_ms)
    tails = percentiles(calm.latencies_ms)
    cpu_basis = low_percentile(cpu_ms)[0] if cpu_ms and len(cpu_ms) == len(latencies_ms) else None
    n = len(latencies_ms)
    where = "" if cpu is None else f" on CPU {cpu} (of those it took turns on, the one its runs were fastest on)"
    return HostBasis({"p50": base, "p95": max(base, tails["p95"]), "p99": max(base, tails["p99"])}, cpu_basis, (lo, hi), n,
                     f"p50: the {_ordinal(BASIS_PERCENTILE)} percentile of all {n} timed runs{where} (the host's "
                     f"undisturbed latency); p95/p99: {calm.basis}", cpu)


def _least_disturbed_cpu(latencies_ms: list[float], run_cpus: list[int]) -> tuple[int, list[int]]:
    """The CPU with the lowest basis percentile among those that ran at least a quarter of their fair share
    of the runs (a CPU with a handful of runs has no meaningful low percentile), and the indices of its runs."""
    by_cpu: dict[int, list[int]] = {}
    for i, c in enumerate(run_cpus):
        by_cpu.setdefault(c, []).append(i)
    enough = max(1, len(run_cpus) // (4 * len(by_cpu)))
    scored = {c: low_percentile([latencies_ms[i] for i in idx])[0] for c, idx in by_cpu.items() if len(idx) >= enough}
    best = min(scored, key=lambda c: (scored[c], c))
    return best, by_cpu[best]


def _uncertainty(basis: HostBasis, scaling: Scaling) -> dict[str, Any]:
    """How far the estimated p50 could move from measurement alone (the scaling model's own error, about
    x0.5-x2, comes on top): the basis percentile's 95% confidence interval within this process's runs
    (:func:`low_percentile`), and the host reference's spread (best vs median SGEMM round) in quadrature."""
    base = basis.latency_ms["p50"]
    lo, hi = basis.interval_ms
    ci = (hi - lo) / 2 / base if base and base == base else 0.0
    ref = (scaling.host_reference or {}).get("spread", 0.0)
    rel = math.sqrt(ci**2 + ref**2)
    f = scaling.factor or 0.0
    return {"p50_relative": rel, "p50_range_ms": [base * f * (1 - rel), base * f * (1 + rel)],
            "parts": {"basis_percentile_ci95": ci, "host_reference_spread": ref},
            "model": "the scaling model itself: about x0.5 to x2 for conv/GEMM-bound models (see `edgeode devices "
                     "show DEVICE`)"}


@dataclass(frozen=True)
class DeviceTimings:
    """Time-derived figures for a device, from host measurements and a :class:`Scaling`.

    All ``None`` when the scaling refuses device figures (emulation). On a calibrated device the
    factor is 1: the host figures are the device's.
    """

    latency_ms: dict[str, float] | None
    cpu_ms_per_inference: float | None
    energy: EnergyEstimate | None

    def to_dict(self) -> dict[str, Any]:
        """The keys ``edgeode profile --json`` reports them under."""
        e = self.energy
        return {"latency_ms": self.latency_ms, "cpu_ms_per_inference": self.cpu_ms_per_inference,
                "energy_proxy_mj": e.dynamic_mj if e else None, "energy_proxy_with_idle_mj": e.with_idle_mj if e else None}


def device_timings(profile: DeviceProfile, scaling: Scaling, host_latency_ms: dict[str, float],
                   host_cpu_s: float) -> DeviceTimings:
    """Scale host latency percentiles and CPU-seconds per inference (a :class:`HostBasis`) to ``profile``.

    The one place host timings become device timings: ``edgeode profile`` uses it for its device and
    ``edgeode compare`` for every device, so both give the same figures for the same measurements
    (a calibrated profile, emulation and the host reference apply to both through ``scaling``).
    Energy by the CPU-time proxy (:mod:`edgeode.devices.power`), wall time = the p50 latency.
    """
    if scaling.factor is None:
        return DeviceTimings(None, None, None)
    f = scaling.factor
    e = energy_proxy(host_cpu_s * f, host_latency_ms["p50"] / 1e3 * f, profile.power.idle_w, profile.power.load_w,
                     profile.cpu.cores)
    return DeviceTimings({k: v * f for k, v in host_latency_ms.items()}, host_cpu_s * f * 1e3, e)


def timing_threads(profile: DeviceProfile, scaling: Scaling, threads: int | None) -> tuple[int, list[int] | None]:
    """Backend threads for the timed runs, and the CPUs to pin them to (``None``: not pinned).

    An estimate scales the host latency by the ratio of *single-thread* SGEMM throughputs
    (:mod:`edgeode.devices.scaling`), so by default its host latency is measured on one thread too,
    pinned, taking turns on the host's two least busy CPUs (:func:`edgeode.devices.hostinfo.quietest_cpus`;
    the basis keeps the runs of the less disturbed one, :func:`host_basis`): the estimate is the device
    running the model on one core. Two threads on a 2-core host shared with other work made
    the timings bimodal and the estimate moved by 44% across five profiles (idle, 2026-12-03 14:48,
    ``benchmarks/results/estimate_stability-pi-4b.md`` as of commit 8350fcd); at load 6 a single thread left
    to migrate between CPUs moved its 5th percentile by 104%, pinned by 3.9%
    (``benchmarks/results/estimate_percentiles-1737.md``). An explicit ``threads``
    is used as given (pinned only if 1). On the device itself (calibrated) the default is
    ``min(device cores, host CPUs)``, unpinned: what the device runs.
    """
    estimate = scaling.factor is not None and not scaling.on_device
    if threads is None:
        threads = 1 if estimate else max(1, min(profile.cpu.cores, cpu_count()))
    return threads, ((quietest_cpus(2) or None) if estimate and threads == 1 else None)


def dir_size_mb(path: str | Path) -> float:
    """Bytes on disk of every file under ``path``, in MiB."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size / 2**20
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20


def _size(mb: float) -> str:
    return f"{mb * 1024:.1f} KB" if mb < 1 else f"{mb:.1f} MB"


def fit_verdict(profile: DeviceProfile, ram_needed_mb: float, storage_needed_mb: float, basis: str) -> FitVerdict:
    """Compare needs with what the device has (RAM minus what its OS keeps; storage)."""
    avail = profile.available_ram_mb
    problems = []
    if ram_needed_mb > avail:
        problems.append(
            f"needs {_size(ram_needed_mb)} RAM, device has {_size(avail)} available "
            f"({_size(profile.ram_mb)} total, about {_size(profile.os_reserved_mb)} kept by the OS)"
        )
    if storage_needed_mb > profile.storage_mb:
        problems.append(f"needs {_size(storage_needed_mb)} storage, device has {_size(profile.storage_mb)}")
    if problems:
        message = f"does not fit {profile.name}: " + "; ".join(problems)
    else:
        message = (f"fits {profile.name}: needs {_size(ram_needed_mb)} of {_size(avail)} available RAM "
                   f"({100 * ram_needed_mb / avail:.0f}%), {_size(storage_needed_mb)} of {_size(profile.storage_mb)} storage")
    return FitVerdict(not problems, ram_needed_mb, avail, profile.ram_mb, storage_needed_mb, profile.storage_mb,
                      message, basis)


def ram_need(profile: DeviceProfile, peak_mb: float, floor_mb: float, arena_mb: float | None = None) -> tuple[float, str]:
    """RAM a model needs on ``profile`` from host measurements, and the basis of that figure.

    Devices with a Python userland need the whole process (python + numpy + runtime + model); a
    phone app embeds a runtime of similar size; a microcontroller has no Python or ONNX Runtime:
    TFLite Micro keeps the weights in flash (counted as storage) and the activations in a RAM
    arena, estimated from the graph (``arena_mb``: the largest live inputs + outputs of one node,
    float32) or, without it, by what the model adds on the host (an upper bound).
    """
    if profile.device_class == "mcu":
        if arena_mb is not None:
            return arena_mb, "activation arena estimated from the ONNX graph (MCU: weights in flash, float32)"
        return max(peak_mb - floor_mb, 0.0), "model-added memory on the host (MCU: no Python/runtime floor)"
    if not profile.python:
        return peak_mb, "peak resident memory of the host process (an app embeds a similar runtime)"
    return peak_mb, "peak resident memory of python + runtime + model, measured on the host"


def _macs(bundle: Path, manifest: Any, used: dict[str, str], field_evals: int, steps: int | None,
          batch: int) -> dict[str, Any]:
    from edgeode.devices.macs import count_macs

    total, by_op, complete, counted, arena = 0, {}, True, {}, 0
    for role, rel in used.items():
        art = next((a for a in manifest.artifacts if a.path == rel), None)
        if art is None:
            continue
        onnx_art = art if art.format == "onnx" else manifest.find(role, "onnx", "float32")
        if onnx_art is None:
            return {"total": None, "note": f"no ONNX graph for role {role!r} to count MACs from"}
        count = count_macs(bundle / onnx_art.path, batch=batch, loop_trips=steps)
        times = field_evals if role == "field" else 1
        total += count.total * times
        arena = max(arena, count.peak_activation_bytes)
        for op, n in count.by_op.items():
            by_op[op] = by_op.get(op, 0) + n * times
        complete = complete and count.complete
        counted[role] = {"file": onnx_art.path, "macs": count.total, "calls_per_inference": times,
                         "loops": count.loops, "unknown_nodes": count.unknown}
    return {"total": total, "per_sample": total // max(batch, 1), "by_op": by_op, "complete": complete,
            "peak_activation_mb": arena / 2**20, "artifacts": counted}


def _progress(enabled: bool, total: int):
    """Live bar on a terminal, one line per stage in a log (edgeode.progress)."""
    if not enabled:
        return None
    from edgeode.progress import Stages

    return Stages("profile", total, unit="step")


def _step(bar: Any, text: str) -> None:
    if bar is not None:
        bar.set_description(text)
        bar.update(1)


def profile_bundle(bundle: str | Path, device: str | DeviceProfile, *, backend: str = "auto", mode: str | None = None,
                   threads: int | None = None, runs: int | None = None, warmup: int = 5, batch: int = 1,
                   precision: str = "float32", timeout: float = 300.0, count_macs: bool = True,
                   progress: bool = True, gap: float | None = None) -> ProfileReport:
    """Profile ``bundle`` for ``device`` (a profile name or :class:`DeviceProfile`); see the module doc.

    ``mode``: fused (default) or loop. A microcontroller profile reports the bundle's full-int8 files
    instead, from the figures measured at export (:func:`edgeode.devices.mcu_profile.profile_mcu`;
    ``mode`` defaults to loop there; nothing runs on the host).

    ``runs=None`` times at least :data:`AUTO_MIN_RUNS` runs and :data:`AUTO_MIN_SECONDS` seconds of them
    (at most :data:`AUTO_MAX_RUNS`), enough for a stable basis percentile; an integer times exactly that many.

    A series bundle (an ODE-RNN) is timed per observation: one sample ``gap`` seconds after the previous
    one (default: its ``max_step``, one solver step), the solve across the gap and the GRU update; the
    figures "per inference" are then per observation (``unit`` in the result says which).

    Raises:
        DeviceError: unknown device. BundleError: not a bundle. ConfigError: bad option values.
        ChildTimeout: the model ran past ``timeout`` seconds.
    """
    from edgeode.runtime.manifest import Manifest

    profile = load_profile(device) if isinstance(device, str) else device
    if profile.device_class == "mcu":
        from edgeode.devices.mcu_profile import profile_mcu

        if gap is not None:
            raise ConfigError("gap sets the host-timed observation; a microcontroller profile estimates one "
                              "observation across a one-step gap (its note says how a longer gap scales): leave out gap")

        return ProfileReport(profile_mcu(bundle, profile, mode))
    mode = mode or "fused"
    for name, value, low in (("runs", AUTO_MIN_RUNS if runs is None else runs, 1), ("warmup", warmup, 0),
                             ("batch", batch, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be a positive integer, got {threads!r}")
    bundle = Path(bundle)
    manifest = Manifest.read(bundle)
    _check_gap(manifest, gap, batch)
    from edgeode.runtime.backends import choose_backend

    resolved_backend = choose_backend(manifest, backend, precision)  # fails before any child runs
    bar = _progress(progress, 3)
    try:
        scaling = decide_scaling(profile)
        threads, pin = timing_threads(profile, scaling, threads)
        _step(bar, "runtime floor")
        floor = run_child(["floor", "--backend", resolved_backend, "--threads", str(threads)], timeout=min(timeout, 120))
        timed = f"{runs}" if runs is not None else f">= {AUTO_MIN_SECONDS:g} s of"
        _step(bar, f"model: {warmup} warm-up + {timed} timed runs")
        args = ["run", "--bundle", str(bundle), "--backend", resolved_backend, "--mode", mode, "--precision", precision,
                "--threads", str(threads), "--runs", str(AUTO_MIN_RUNS if runs is None else runs),
                "--warmup", str(warmup), "--batch", str(batch)]
        if runs is None:
            args += ["--min-seconds", str(AUTO_MIN_SECONDS), "--max-runs", str(AUTO_MAX_RUNS)]
        if gap is not None:
            args += ["--gap", repr(float(gap))]
        if pin is not None:
            args += ["--pin-cpu", ",".join(map(str, pin))]
        error = None
        try:
            run: ChildRun | None = run_child(args, timeout=timeout)
        except ChildFailed as exc:
            if exc.error_type not in ("MemoryError", "Killed"):
                raise
            run, error = None, str(exc)
        _step(bar, "done")
    finally:
        if bar is not None:
            bar.close()
    data = _assemble(bundle, manifest, profile, scaling, floor, run, error, resolved_backend, mode, threads, runs,
                     warmup, batch, precision, count_macs)
    return ProfileReport(data)


def _check_gap(manifest: Any, gap: float | None, batch: int) -> None:
    """``gap`` and ``batch`` against the bundle's kind: a gap only for a series bundle, which takes no batch."""
    if manifest.kind != "series":
        if gap is not None:
            raise ConfigError(f"gap (seconds between observations) applies to a series bundle; this one is a "
                              f"{manifest.kind}")
        return
    if batch != 1:
        raise ConfigError("a series bundle observes one sample at a time (one stream): batch does not apply")
    if gap is not None:
        from edgeode.runtime.series import gap_steps

        if isinstance(gap, bool) or not isinstance(gap, (int, float)) or not 0 < gap < float("inf"):
            raise ConfigError(f"gap must be a positive number of seconds, got {gap!r}")
        gap_steps(gap, manifest.series.max_step, f"a gap of {gap:g} s", "time a shorter gap")


def _assemble(bundle: Path, manifest: Any, profile: DeviceProfile, scaling: Scaling, floor: ChildRun,
              run: ChildRun | None, error: str | None, backend: str, mode: str, threads: int, runs: int, warmup: int,
              batch: int, precision: str, want_macs: bool) -> dict[str, Any]:
    notes: list[str] = []
    floor_mb = floor.peak_rss_mb
    bundle_mb = dir_size_mb(bundle)
    d: dict[str, Any] = {
        "device": profile.name,
        "device_display_name": profile.display_name,
        "figures": scaling.label,
        "estimate": not scaling.on_device,
        "scaling": scaling.to_dict(),
        "bundle": str(bundle),
        "arch": manifest.model.get("arch"),
        "kind": manifest.kind,
        "backend": backend,
        "mode": mode,
        "precision": precision,
        "threads": threads,
        "pinned_cpu": (run.result.get("pinned_cpu") if run is not None else None),
        "timed_cpus": (sorted(set(run.result["run_cpus"])) if run is not None and run.result.get("run_cpus") else None),
        "batch": batch,
        "unit": "observation" if manifest.kind == "series" else "inference",
        "runs": runs,
        "runs_requested": "auto" if runs is None else runs,
        "warmup": warmup,
        "bundle_size_mb": bundle_mb,
        "runtime_floor_mb": floor_mb,
        "runtime_floor": floor.result.get("floor"),
        "spinning": SPINNING_NOTE,
    }
    if d["estimate"] and scaling.factor is not None and threads > 1:
        notes.append(f"the estimate scales a {threads}-thread host timing by the single-thread SGEMM ratio: the device's "
                     "thread scaling is not modelled, and several threads on a shared host time less steadily; the "
                     "default (one thread, pinned to one CPU) gives the steadiest estimate")
    if backend not in profile.runtimes:
        notes.append(f"{profile.name} cannot run {backend} (its runtimes: {', '.join(profile.runtimes)}); "
                     "memory and time are for the host's runtime")
    if profile.device_class == "mcu":
        notes.append("microcontroller: no Python/ONNX Runtime; on the board TFLite Micro keeps weights in flash "
                     "(storage) and activations in a RAM arena (estimated from the graph, float32; int8 needs a quarter)")
    if run is None:
        weights_mb = sum(a.size for a in manifest.artifacts if a.format == "onnx" and a.precision == precision) / 2**20
        need = floor_mb + weights_mb
        d.update({"error": error, "peak_rss_mb": None, "latency_ms": None})
        d["fits"] = asdict(fit_verdict(profile, need, bundle_mb,
                                       "static: runtime floor + weights (the host could not run the model)"))
        d["notes"] = notes
        return d
    res = run.result
    d["runs"] = len(res["latencies_ms"])
    lat_host = percentiles(res["latencies_ms"])
    calm = undisturbed_runs(res["latencies_ms"], res.get("cpu_ms"))
    lat_calm = percentiles(calm.latencies_ms)
    basis = host_basis(res["latencies_ms"], res.get("cpu_ms"), res.get("run_cpus"))
    if basis.cpu is not None:
        d["pinned_cpu"] = basis.cpu  # the CPU whose runs the basis is
    cpu_host_s = res["timed_cpu_s"] / d["runs"]
    cpu_basis_s = cpu_host_s if basis.cpu_ms is None else basis.cpu_ms / 1e3
    peak = run.peak_rss_mb
    used = res["describe"].get("artifacts", {})
    used_mb = sum((bundle / p).stat().st_size for p in used.values() if (bundle / p).is_file()) / 2**20
    if manifest.kind == "series":  # what ran: the observe file (solve and cell in one graph), or field and cell
        d["mode"] = res["describe"]["mode"]
    d.update({
        "artifacts_used": used,
        "artifacts_size_mb": used_mb,
        "load_time_ms": res["load_s"] * 1e3,
        "load_time_note": "measured on the host, not scaled (imports and file I/O dominate it, not arithmetic)",
        "peak_rss_mb": peak,
        "peak_rss_sampled_mb": run.peak_rss_sampled_mb,
        "peak_rss_kernel_mb": run.peak_rss_kernel_mb,
        "model_added_mb": max(peak - floor_mb, 0.0),
        "field_evaluations": res["field_evaluations"],
        "steps": res["describe"].get("steps"),
        "tableau": res["describe"].get("tableau"),
        "gap_s": res["describe"].get("gap_s"),
        "host_latency_ms": lat_host,
        "host_latency_undisturbed_ms": lat_calm,
        "disturbed_runs": calm.disturbed,
        "host_basis": {**basis.to_dict(), "cpu_ms": cpu_basis_s * 1e3},
        "latency_basis": basis.basis,
        "host_cpu_ms_per_inference": cpu_host_s * 1e3,
        "host_load_time_ms": res["load_s"] * 1e3,
    })
    timings = device_timings(profile, scaling, basis.latency_ms, cpu_basis_s)
    d.update(timings.to_dict())
    if timings.energy is not None:
        f, e = scaling.factor, timings.energy
        d["latency_uncertainty"] = _uncertainty(basis, scaling)
        worked = (f"; here {timings.cpu_ms_per_inference:.3g} ms x {e.per_core_w:.3g} W = {e.dynamic_mj:.3g} mJ dynamic, "
                  f"+ {profile.power.idle_w:g} W x {basis.latency_ms['p50'] * f:.3g} ms = {e.with_idle_mj:.3g} mJ total")
    else:
        worked = ""
        notes.append(f"no device timings: {scaling.emulation}; host figures are under host_*")
    d["energy_model"] = (f"dynamic = CPU time x (load_w - idle_w) / cores = CPU time x ({profile.power.load_w:g} - "
                         f"{profile.power.idle_w:g}) W / {profile.cpu.cores}; total = dynamic + idle_w x p50 latency"
                         f"{worked} (see edgeode.devices.power)")
    if res.get("rapl_uj") is not None:
        d["rapl_energy_mj_per_inference"] = res["rapl_uj"] / 1e3 / d["runs"]
        d["rapl"] = "host CPU package energy (all processes) over the timed runs, from intel-rapl energy_uj"
    else:
        d["rapl_energy_mj_per_inference"] = None
        d["rapl"] = "not readable on this host" if not rapl_readable() else "not measured"
    if want_macs:
        try:
            if manifest.kind == "series":  # per observation: the field across the gap and the cell; the head
                # runs once per classify, and an observe file is that same field and cell in one graph
                parts = {r: used[r] for r in ("field", "cell") if r in used}
                d["macs"] = _macs(bundle, manifest, parts, res["field_evaluations"], None, batch)
            else:
                d["macs"] = _macs(bundle, manifest, used, res["field_evaluations"], res["describe"].get("steps"), batch)
        except Exception as exc:  # onnx missing or unreadable graph: the rest of the profile stands
            d["macs"] = {"total": None, "note": str(exc)}
        d["macs_per_inference"] = d["macs"].get("total")
    need, basis = ram_need(profile, peak, floor_mb, (d.get("macs") or {}).get("peak_activation_mb"))
    storage = used_mb if profile.device_class == "mcu" else bundle_mb
    d["fits"] = asdict(fit_verdict(profile, need, storage, basis))
    notes.append("memory is measured on the host's build of the runtime; on the device it differs by the binaries' size")
    load = _load_average()
    d["host_load_average"] = load
    if d["estimate"] and load is not None and load > cpu_count():
        notes.append(f"the host was busy (load average {load:.1f} on {cpu_count()} CPUs): when other work slows every "
                     "timed run, even the estimate's low-percentile basis comes out high; profile again on an idle host")
    d["notes"] = notes
    return d


def _load_average() -> float | None:
    """The host's 1-minute load average, or ``None`` where the OS has none."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None
