"""Facts about the machine edgeode runs on: cores, clock, RAM, SGEMM throughput, emulation.

``sgemm_gflops`` is the figure latency estimates are scaled by: single-thread float32
matrix-multiply throughput measured with numpy in a child process whose BLAS is pinned to one
thread (``OMP_NUM_THREADS=1`` and friends), so the parent's thread pools do not matter.

``host_reference`` is the figure estimates actually use: the same SGEMM measured once per machine,
robustly (several rounds, best of each), and cached in the user's cache directory
(``$EDGEODE_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgeode``, else ``~/.cache/edgeode``; never inside
a project), so that two profiles of the same bundle on the same machine scale by the same factor.
Measured afresh each time, the best-of-0.6 s figure moved by up to 45% between runs on a shared
2-core machine (x16.9 to x24.8 for a Pi 4), and every estimate moved with it.

``detect_emulation`` refuses a lie: under QEMU user-mode emulation (``qemu-aarch64`` running an
aarch64 Python on an x86 host) or full-system emulation, timings are the emulator's, not the
device's. Heuristics (each documented below) rather than certainty; the profiler says which fired.

Standard library only (numpy is used inside the child process).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["cpu_count", "quietest_cpu", "quietest_cpus", "cpu_clock_ghz", "cpu_model", "ram_mb", "sgemm_gflops", "detect_emulation", "host_id",
           "HostReference", "host_reference", "cached_host_reference", "cache_dir"]

#: Rounds of the cached reference measurement; each round is a best-of over ``_ROUND_S`` seconds.
_ROUNDS = 5
_ROUND_S = 0.4
#: Bumped when the measurement changes, so older cache files are measured again.
_REFERENCE_VERSION = 1

_SGEMM = """
import json, time, numpy as np
n = {n}
a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
b = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
a @ b
rounds = []
for _ in range({rounds}):
    best = 0.0
    end = time.perf_counter() + {seconds}
    while time.perf_counter() < end:
        t = time.perf_counter(); a @ b; dt = time.perf_counter() - t
        best = max(best, 2 * n**3 / dt / 1e9)
    rounds.append(best)
print(json.dumps(rounds))
"""


def cpu_count() -> int:
    """CPUs this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_busy_ticks() -> dict[int, tuple[int, int]]:
    """Per CPU: (busy, total) jiffies since boot from ``/proc/stat`` (Linux; empty elsewhere)."""
    ticks = {}
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                values = [int(v) for v in fields[:8]]
                idle = values[3] + values[4]  # idle + iowait
                ticks[int(name[3:])] = (sum(values) - idle, sum(values))
    except (OSError, ValueError, IndexError):
        return {}
    return ticks


def quietest_cpus(count: int = 2, window_s: float = 0.1) -> list[int]:
    """Up to ``count`` CPUs this process may use, the least busy over the next ``window_s`` seconds first;
    empty where they cannot be chosen (one CPU, no affinity API, no ``/proc/stat``).

    The profiler's single-thread timing process takes turns on them and keeps the runs of the one that
    was least disturbed (:mod:`edgeode.devices.profiler`): a process left to migrate between the CPUs of a
    busy host refills its caches after each move, and a 0.1 s glance beforehand cannot tell which CPU
    another job will hold for the next two seconds.
    """
    if not hasattr(os, "sched_setaffinity") or cpu_count() < 2 or count < 1:
        return []
    allowed = sorted(os.sched_getaffinity(0))
    before = _cpu_busy_ticks()
    time.sleep(window_s)
    after = _cpu_busy_ticks()
    load = {}
    for cpu in allowed:
        if cpu in before and cpu in after:
            total = after[cpu][1] - before[cpu][1]
            load[cpu] = (after[cpu][0] - before[cpu][0]) / total if total > 0 else 0.0
    # ties: the highest-numbered first (CPU 0 serves most interrupts)
    return sorted(load, key=lambda cpu: (load[cpu], -cpu))[:count]


def quietest_cpu(window_s: float = 0.1) -> int | None:
    """The least busy CPU of :func:`quietest_cpus`, or ``None`` where it cannot be chosen."""
    cpus = quietest_cpus(1, window_s)
    return cpus[0] if cpus else None


def cpu_clock_ghz() -> float | None:
    """Top clock of CPU 0 from cpufreq, else the current ``cpu MHz`` of /proc/cpuinfo, else None."""
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1e6
    except (OSError, ValueError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return float(line.split(":")[1]) / 1e3
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":")[0].strip().lower()
            if key in ("model name", "hardware", "cpu model"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_mb() -> float:
    """Total RAM in MiB."""
    try:
        import psutil

        return psutil.virtual_memory().total / 2**20
    except ImportError:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


@lru_cache(maxsize=4)
def sgemm_gflops(n: int = 384, seconds: float = 0.6, threads: int = 1) -> float:
    """Best-of float32 ``n x n`` matmul throughput in GFLOP/s with ``threads`` BLAS threads, measured now."""
    return max(_sgemm_rounds(n, seconds, threads, 1))


def _sgemm_rounds(n: int, seconds: float, threads: int, rounds: int) -> list[float]:
    """Best-of throughput of each of ``rounds`` rounds of ``seconds``, in one child process."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = str(threads)
    out = subprocess.run([sys.executable, "-c", _SGEMM.format(n=n, seconds=seconds, rounds=rounds)], env=env,
                         capture_output=True, text=True, timeout=120 + rounds * seconds)
    if out.returncode != 0:
        from edgeode.errors import BackendError

        raise BackendError(f"measuring SGEMM throughput failed (is numpy installed? pip install numpy): {out.stderr[-500:]}")
    return [float(v) for v in json.loads(out.stdout.strip().splitlines()[-1])]


def cache_dir() -> Path:
    """Where edgeode caches per-machine measurements: ``$EDGEODE_CACHE_DIR``, ``$XDG_CACHE_HOME/edgeode``
    or ``~/.cache/edgeode``."""
    if os.environ.get("EDGEODE_CACHE_DIR"):
        return Path(os.environ["EDGEODE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgeode"


@dataclass(frozen=True)
class HostReference:
    """This machine's single-thread SGEMM throughput, the reference estimates are scaled by.

    ``gflops`` is the best of ``rounds`` round-bests (contention only ever lowers a round's best, so the
    highest is the least disturbed); ``spread`` is (best - median round) / best, the measurement's own
    uncertainty. ``cache_file`` is where it is kept (``None`` if the cache could not be written).
    """

    gflops: float
    rounds: list[float]
    spread: float
    measured_at: str
    host: dict[str, str]
    cache_file: str | None
    cached: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _reference_key() -> dict[str, str]:
    try:
        import numpy

        numpy_version = numpy.__version__
    except ImportError:  # measured in the child anyway; the key just lacks it
        numpy_version = "?"
    return {**host_id(), "python": platform.python_version(), "numpy": numpy_version,
            "version": str(_REFERENCE_VERSION)}


def cached_host_reference() -> HostReference | None:
    """The cached reference of this machine, or ``None`` if it has not been measured yet (measures nothing)."""
    key = _reference_key()
    path = cache_dir() / "host-reference.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("key") == key and float(data["gflops"]) > 0:
            return HostReference(float(data["gflops"]), [float(r) for r in data["rounds"]], float(data["spread"]),
                                 str(data["measured_at"]), key, str(path), True)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing, unreadable or from another machine
    return None


@lru_cache(maxsize=2)
def host_reference(refresh: bool = False) -> HostReference:
    """The cached reference throughput of this machine, measured (about 2 s) if not cached yet or ``refresh``.

    The cache file is keyed by host name, machine, CPU model, Python and numpy version: a different
    machine (or a numpy with another BLAS) measures again. Delete the file, or pass ``refresh=True``,
    to re-measure (e.g. after the machine was busy during the first measurement).
    """
    cached = None if refresh else cached_host_reference()
    if cached is not None:
        return cached
    key = _reference_key()
    path = cache_dir() / "host-reference.json"
    rounds = _sgemm_rounds(384, _ROUND_S, 1, _ROUNDS)
    best = max(rounds)
    spread = (best - sorted(rounds)[len(rounds) // 2]) / best
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cache_file: str | None = str(path)
    try:
        from edgeode.fsutil import atomic_write_json

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"key": key, "gflops": best, "rounds": rounds, "spread": spread, "measured_at": when,
                                 "what": "single-thread float32 384x384 SGEMM GFLOP/s, best of each round "
                                         "(edgeode.devices.hostinfo.host_reference)"})
    except OSError:
        cache_file = None  # read-only home: measure each time, estimates then move with the machine's load
    return HostReference(best, rounds, spread, when, key, cache_file, False)


def detect_emulation() -> str | None:
    """A reason string if this process looks emulated (QEMU), else ``None``.

    * QEMU user mode: the kernel's /proc/cpuinfo describes the real (x86) CPU while Python
      reports an Arm machine (or vice versa).
    * QEMU full-system (TCG) emulation: DMI names QEMU and the machine is not x86 (KVM guests on
      x86 also say QEMU but run natively, so they are not flagged).
    * ``EDGEODE_EMULATED=1`` forces the flag (tests, or a user who knows).
    """
    if os.environ.get("EDGEODE_EMULATED") == "1":
        return "EDGEODE_EMULATED=1 is set"
    machine = platform.machine().lower()
    info = ""
    # /proc/self/root/... is the real root even under `qemu-aarch64 -L SYSROOT`, which maps /proc/cpuinfo
    # to a fake SYSROOT/proc/cpuinfo (an Arm one, needed by onnxruntime): read both.
    for path in ("/proc/cpuinfo", "/proc/self/root/proc/cpuinfo"):
        try:
            info += Path(path).read_text().lower()
        except OSError:
            pass
    x86_cpu = "vendor_id" in info and ("genuineintel" in info or "authenticamd" in info)
    arm_machine = machine.startswith(("aarch64", "arm"))
    if arm_machine and x86_cpu:
        return f"Python reports a {machine} machine but /proc/cpuinfo describes an x86 CPU (QEMU user-mode emulation)"
    if machine in ("x86_64", "amd64", "i686") and "cpu implementer" in info:
        return f"Python reports {machine} but /proc/cpuinfo describes an Arm CPU (emulation)"
    for f in ("/sys/class/dmi/id/sys_vendor", "/sys/class/dmi/id/product_name"):
        try:
            text = Path(f).read_text().lower()
        except OSError:
            continue
        if "qemu" in text and not machine.startswith(("x86", "amd64", "i686")):
            return f"{f} says QEMU on a {machine} machine (full-system emulation)"
    return None


def host_id() -> dict[str, str]:
    """What identifies this machine in a calibrated profile's ``measured_on``."""
    return {"hostname": socket.gethostname(), "machine": platform.machine(), "cpu": cpu_model()}
