"""Facts about the machine edgeode runs on: cores, clock, RAM, SGEMM throughput, emulation.

``sgemm_gflops`` is the figure latency estimates are scaled by: single-thread float32
matrix-multiply throughput measured with numpy in a child process whose BLAS is pinned to one
thread (``OMP_NUM_THREADS=1`` and friends), so the parent's thread pools do not matter.

``detect_emulation`` refuses a lie: under QEMU user-mode emulation (``qemu-aarch64`` running an
aarch64 Python on an x86 host) or full-system emulation, timings are the emulator's, not the
device's. Heuristics (each documented below) rather than certainty; the profiler says which fired.

Standard library only (numpy is used inside the child process).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

__all__ = ["cpu_count", "cpu_clock_ghz", "cpu_model", "ram_mb", "sgemm_gflops", "detect_emulation", "host_id"]

_SGEMM = """
import time, numpy as np
n = {n}
a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
b = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
a @ b
best = 0.0
end = time.perf_counter() + {seconds}
while time.perf_counter() < end:
    t = time.perf_counter(); a @ b; dt = time.perf_counter() - t
    best = max(best, 2 * n**3 / dt / 1e9)
print(best)
"""


def cpu_count() -> int:
    """CPUs this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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
    """Best-of float32 ``n x n`` matmul throughput in GFLOP/s with ``threads`` BLAS threads."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = str(threads)
    out = subprocess.run([sys.executable, "-c", _SGEMM.format(n=n, seconds=seconds)], env=env,
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        from edgeode.errors import BackendError

        raise BackendError(f"measuring SGEMM throughput failed (is numpy installed? pip install numpy): {out.stderr[-500:]}")
    return float(out.stdout.strip().splitlines()[-1])


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
