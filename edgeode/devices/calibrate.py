"""``edgeode devices calibrate``: measure this machine and write it as a device profile.

Run on the real device (a Raspberry Pi, a Jetson...) so that ``edgeode profile`` reports measured
figures there instead of estimates. Measured: CPU cores (affinity), top clock (cpufreq, else
/proc/cpuinfo), architecture, RAM and what the OS keeps resident now, free storage of the home
file system, single-thread SGEMM GFLOP/s (numpy), and idle / all-core-load package power from RAPL
if readable. What cannot be measured (board power without RAPL, which is nearly always the case on
Arm boards) is taken from ``like`` (a shipped profile of the same board) with its source, or left
as an explicit estimate to be replaced by a power-meter reading.

Standard library + numpy (in a child) + psutil (optional).
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import multiprocessing
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from edgeode.devices import hostinfo
from edgeode.devices.power import rapl_delta_uj, read_rapl_uj
from edgeode.devices.profiles import DeviceProfile, load_profile, parse_profile, user_dir
from edgeode.errors import ConfigError, DeviceError
from edgeode.fsutil import atomic_write_json

__all__ = ["calibrate", "save_profile"]


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def _rapl_power(seconds: float, load: bool) -> float | None:
    before = read_rapl_uj()
    if before is None:
        return None
    procs = []
    if load:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_spin, args=(seconds,)) for _ in range(hostinfo.cpu_count())]
        for p in procs:
            p.start()
    start = time.perf_counter()
    time.sleep(seconds)
    for p in procs:
        p.join()
    after = read_rapl_uj()
    if after is None:
        return None
    return rapl_delta_uj(before, after) / 1e6 / (time.perf_counter() - start)


def _pip_platforms(machine: str) -> list[str]:
    libc, version = platform.libc_ver()
    tags = []
    if libc == "glibc" and version:
        major, minor = (int(v) for v in version.split(".")[:2])
        for m in range(minor, 16, -1):
            if (major, m) in ((2, 36), (2, 34), (2, 31), (2, 28), (2, 27), (2, 17)) or m == minor:
                tags.append(f"manylinux_{major}_{m}_{machine}")
        tags.append(f"manylinux2014_{machine}")
    return tags


def calibrate(name: str = "this-device", like: str | None = None, seconds: float = 2.0) -> DeviceProfile:
    """Measure this machine; return it as a validated, ``calibrated`` :class:`DeviceProfile`."""
    if not name or "/" in name or ":" in name or name.startswith("."):
        raise ConfigError(f"profile name {name!r} must be a plain file name (letters, digits, '-')")
    base = load_profile(like) if like else None
    emulated = hostinfo.detect_emulation()
    if emulated:
        raise DeviceError(f"refusing to calibrate under emulation ({emulated}): the figures would be the emulator's")
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    who = hostinfo.host_id()
    measured = f"measured by `edgeode devices calibrate` on {who['hostname']} ({who['cpu']}) at {stamp}"
    machine = platform.machine()
    clock = hostinfo.cpu_clock_ghz()
    gflops = hostinfo.sgemm_gflops()
    ram = hostinfo.ram_mb()
    try:
        import psutil

        vm = psutil.virtual_memory()
        reserved = (vm.total - vm.available) / 2**20
    except ImportError:
        reserved = base.os_reserved_mb if base else ram * 0.1
    storage = shutil.disk_usage(Path.home()).free / 2**20
    idle = _rapl_power(seconds, load=False)
    load = _rapl_power(seconds, load=True) if idle is not None else None
    sources = {
        "cpu.arch": f"{measured} (platform.machine())",
        "cpu.cores": f"{measured} (CPUs in this process's affinity mask)",
        "cpu.clock_ghz": f"{measured} (cpufreq cpuinfo_max_freq or /proc/cpuinfo)" if clock else
        "estimate: clock not readable here" + (f"; taken from {like}" if base else ""),
        "cpu.gflops_1t": f"{measured} (numpy float32 384x384 matmul, one BLAS thread, best of ~0.6 s)",
        "ram_mb": f"{measured} (psutil total memory)",
        "os_reserved_mb": f"{measured} (total - available memory at calibration time)",
        "storage_mb": f"{measured} (free space of the home file system)",
    }
    if idle is not None and load is not None and load > idle:
        power = {"idle_w": round(idle, 3), "load_w": round(load, 3)}
        sources["power.idle_w"] = f"{measured} (RAPL package energy, {seconds:g} s idle)"
        sources["power.load_w"] = f"{measured} (RAPL package energy, {seconds:g} s with every CPU spinning)"
    elif base is not None:
        power = {"idle_w": base.power.idle_w, "load_w": base.power.load_w}
        sources["power.idle_w"] = f"from profile {base.name}: {base.sources['power.idle_w']}"
        sources["power.load_w"] = f"from profile {base.name}: {base.sources['power.load_w']}"
    else:
        power = {"idle_w": 1.0, "load_w": 1.0 + hostinfo.cpu_count()}
        note = "estimate: power not measurable here (no readable RAPL); placeholder — edit with a USB power meter reading"
        sources["power.idle_w"] = note
        sources["power.load_w"] = note
    runtimes = [r for r, mod in (("onnxruntime", "onnxruntime"), ("litert", "ai_edge_litert"),
                                 ("tflite-runtime", "tflite_runtime")) if importlib.util.find_spec(mod)]
    data: dict[str, Any] = {
        "name": name,
        "display_name": f"{base.display_name if base else who['cpu']} (calibrated on {who['hostname']})",
        "device_class": base.device_class if base else "host",
        "cpu": {"arch": machine, "cores": hostinfo.cpu_count(),
                "clock_ghz": round(clock, 3) if clock else (base.cpu.clock_ghz if base else 1.0),
                "gflops_1t": round(gflops, 3), "model": who["cpu"]},
        "ram_mb": round(ram, 1),
        "os_reserved_mb": round(min(reserved, ram * 0.95), 1),
        "storage_mb": round(storage, 1),
        "power": power,
        "runtimes": runtimes or (list(base.runtimes) if base else ["onnxruntime"]),
        "python": True,
        "pip_platforms": _pip_platforms(machine) or (list(base.pip_platforms) if base else [f"linux_{machine}"]),
        "os_notes": f"{platform.platform()}, Python {platform.python_version()}" + (f". Board: {base.os_notes}" if base else ""),
        "sources": sources,
        "calibrated": True,
        "measured_on": {"hostname": who["hostname"], "machine": who["machine"], "date": stamp},
    }
    return parse_profile(data, f"<calibration of {who['hostname']}>")


def save_profile(profile: DeviceProfile, output: str | Path | None = None) -> Path:
    """Write ``profile`` atomically to ``output`` or the user profile directory; return the path."""
    path = Path(output) if output else user_dir() / f"{profile.name}.json"
    if path.suffix != ".json" or path.stem != profile.name:
        raise ConfigError(f"the profile file must be named {profile.name}.json (the name is the file name), got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(path, profile.to_dict())
