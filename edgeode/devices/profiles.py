"""Device profiles: what a target device has (CPU, memory, storage, power), as validated data.

Each shipped device is one JSON file in ``edgeode/devices/profiles/NAME.json``; a profile measured
with ``edgeode devices calibrate --save NAME`` lives in the user's profile directory
(``$EDGEODE_DEVICES_DIR`` or ``~/.config/edgeode/devices``) and overrides a shipped one of the same
name. Every figure carries its source in ``sources`` (keyed by field path, e.g. ``"power.idle_w"``);
a figure we could not verify says ``estimate`` in its source.

Profiles are parsed strictly: a missing or unknown key, a wrong type, an unknown runtime or a figure
without a source is a :class:`~edgeode.errors.DeviceError` that names the file and the field.

Standard library only: the torch-free device side imports this module.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeode.errors import DeviceError, did_you_mean
from edgeode.jsonfile import read_json

__all__ = [
    "DEVICE_CLASSES",
    "RUNTIMES",
    "SOURCED_FIELDS",
    "CPUSpec",
    "PowerSpec",
    "McuSpec",
    "DeviceProfile",
    "builtin_dir",
    "user_dir",
    "load_profile",
    "list_profiles",
    "profile_names",
    "parse_profile",
]

DEVICE_CLASSES = ("sbc", "phone", "mcu", "jetson", "host")
RUNTIMES = ("onnxruntime", "litert", "tflite-runtime", "tflite-micro")
# Every profile must cite a source for each of these figures.
SOURCED_FIELDS = (
    "cpu.arch",
    "cpu.cores",
    "cpu.clock_ghz",
    "cpu.gflops_1t",
    "ram_mb",
    "os_reserved_mb",
    "storage_mb",
    "power.idle_w",
    "power.load_w",
)


@dataclass(frozen=True)
class CPUSpec:
    """The CPU: architecture (``uname -m`` style), core count, top clock and single-thread throughput.

    ``gflops_1t`` is single-thread float32 matrix-multiply throughput in GFLOP/s: the figure the
    profiler scales host latencies by (see :mod:`edgeode.devices.scaling`). ``model`` is free text
    (e.g. ``"4x Cortex-A53"``).
    """

    arch: str
    cores: int
    clock_ghz: float
    gflops_1t: float
    model: str = ""


@dataclass(frozen=True)
class PowerSpec:
    """Whole-board power in watts when idle and with all cores under full CPU load."""

    idle_w: float
    load_w: float


@dataclass(frozen=True)
class McuSpec:
    """What a microcontroller board gives a TFLite Micro firmware, and what its int8 kernels cost.

    ``sram_bytes``: the RAM the firmware's static arrays (tensor arenas, RK state, buffers) live in, when
    less than ``ram_mb`` (the ESP32-S3's PSRAM is not where ``.bss`` goes). ``runtime_flash_bytes``: the
    flash of the TFLM runtime, its kernels, the C library and the firmware's own code (what comes on top
    of the model files). ``kernels`` names the int8 kernel library. Cost model of an int8 inference
    (:mod:`edgeode.devices.mcu_estimate`): ``cycles_per_mac`` (low, typical, high) for the MAC-bound ops
    (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED), ``cycles_per_element`` (low, typical, high) for every
    other op's output element. Every figure has its source in the profile's ``sources`` under ``mcu.KEY``.
    """

    sram_bytes: int
    runtime_flash_bytes: int
    kernels: str
    cycles_per_mac: tuple[float, float, float]
    cycles_per_element: tuple[float, float, float]


@dataclass(frozen=True)
class DeviceProfile:
    """One target device. Field names are a contract (``edgeode pack`` reads ``python``,
    ``pip_platforms``, ``runtimes``, ``cpu.arch``, ``ram_mb`` and ``device_class``).

    ``ram_mb`` is the RAM of the variant named by ``default_variant``; ``ram_variants`` maps other
    variants (``"pi-4b:8gb"`` style suffixes) to their RAM. ``os_reserved_mb`` is what the OS itself
    keeps resident (what a model can not have). ``calibrated`` is true for a profile measured on the
    device by ``edgeode devices calibrate``; ``measured_on`` then holds the host name and machine
    so the profiler knows when it runs on that device.
    """

    name: str
    display_name: str
    device_class: str
    cpu: CPUSpec
    ram_mb: float
    os_reserved_mb: float
    storage_mb: float
    power: PowerSpec
    runtimes: tuple[str, ...]
    python: bool
    pip_platforms: tuple[str, ...]
    os_notes: str
    sources: dict[str, str]
    ram_variants: dict[str, float] = field(default_factory=dict)
    calibrated: bool = False
    measured_on: dict[str, str] = field(default_factory=dict)
    mcu: McuSpec | None = None
    path: str = ""

    @property
    def available_ram_mb(self) -> float:
        """RAM a model process can use: total minus what the OS keeps."""
        return max(self.ram_mb - self.os_reserved_mb, 0)

    def variant(self, suffix: str) -> DeviceProfile:
        """The same device with another RAM variant (``profile.variant("8gb")``)."""
        if suffix not in self.ram_variants:
            raise DeviceError(
                f"device {self.name!r} has no RAM variant {suffix!r}; variants: {', '.join(sorted(self.ram_variants)) or 'none'}"
            )
        from dataclasses import replace

        return replace(self, name=f"{self.name}:{suffix}", ram_mb=self.ram_variants[suffix],
                       display_name=f"{self.display_name} ({suffix})")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["runtimes"] = list(self.runtimes)
        d["pip_platforms"] = list(self.pip_platforms)
        d.pop("path")
        if self.mcu is None:
            d.pop("mcu")
        return d


_KEYS = {
    "name": str, "display_name": str, "device_class": str, "cpu": dict, "ram_mb": (int, float),
    "os_reserved_mb": (int, float), "storage_mb": (int, float), "power": dict, "runtimes": list, "python": bool, "pip_platforms": list, "os_notes": str,
    "sources": dict,
}
_OPTIONAL = {"ram_variants": dict, "calibrated": bool, "measured_on": dict, "$schema": str, "notes": str, "mcu": dict}
_CPU_KEYS = {"arch": str, "cores": int, "clock_ghz": (int, float), "gflops_1t": (int, float)}
_CPU_OPTIONAL = {"model": str}
_POWER_KEYS = {"idle_w": (int, float), "load_w": (int, float)}
_MCU_KEYS = {"sram_bytes": int, "runtime_flash_bytes": int, "kernels": str, "cycles_per_mac": list,
             "cycles_per_element": list}
#: Fields of the ``mcu`` block that need a source (``sources["mcu.KEY"]``).
MCU_SOURCED = tuple(f"mcu.{k}" for k in ("sram_bytes", "runtime_flash_bytes", "cycles_per_mac", "cycles_per_element"))


def builtin_dir() -> Path:
    """Directory of the profiles shipped with edgeode."""
    return Path(__file__).resolve().parent / "profiles"


def user_dir() -> Path:
    """Directory of user profiles (``$EDGEODE_DEVICES_DIR`` or ``~/.config/edgeode/devices``)."""
    env = os.environ.get("EDGEODE_DEVICES_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edgeode" / "devices"


def _check(obj: dict, keys: dict, optional: dict, where: str, file: str) -> None:
    missing = sorted(set(keys) - set(obj))
    if missing:
        raise DeviceError(f"device profile {file}: missing field {where}{missing[0]} (all missing: {missing}); add it")
    unknown = sorted(set(obj) - set(keys) - set(optional))
    if unknown:
        raise DeviceError(
            f"device profile {file}: unknown field {where}{unknown[0]}; known fields: {sorted(set(keys) | set(optional))}"
        )
    for key, typ in {**keys, **optional}.items():
        if key not in obj:
            continue
        value = obj[key]
        bad = isinstance(value, bool) and typ is not bool and bool not in (typ if isinstance(typ, tuple) else (typ,))
        if bad or not isinstance(value, typ):
            name = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            raise DeviceError(f"device profile {file}: field {where}{key} must be a {name}, got {value!r}")


def _positive(value: float, where: str, file: str) -> None:
    if not math.isfinite(value) or value <= 0:
        raise DeviceError(f"device profile {file}: field {where} must be a positive number, got {value!r}")


def parse_profile(data: Any, file: str = "<profile>") -> DeviceProfile:
    """Validate a profile's JSON data and build a :class:`DeviceProfile` (``file`` names it in errors)."""
    if not isinstance(data, dict):
        raise DeviceError(f"device profile {file}: expected a JSON object")
    _check(data, _KEYS, _OPTIONAL, "", file)
    _check(data["cpu"], _CPU_KEYS, _CPU_OPTIONAL, "cpu.", file)
    _check(data["power"], _POWER_KEYS, {}, "power.", file)
    cpu, power = data["cpu"], data["power"]
    if data["device_class"] not in DEVICE_CLASSES:
        raise DeviceError(
            f"device profile {file}: field device_class {data['device_class']!r} is unknown; use one of {DEVICE_CLASSES}"
        )
    for key in ("cores",):
        _positive(cpu[key], f"cpu.{key}", file)
    for key in ("clock_ghz", "gflops_1t"):
        _positive(float(cpu[key]), f"cpu.{key}", file)
    for key in ("ram_mb", "storage_mb"):
        _positive(float(data[key]), key, file)
    if data["os_reserved_mb"] < 0 or data["os_reserved_mb"] >= data["ram_mb"]:
        raise DeviceError(f"device profile {file}: field os_reserved_mb must be >= 0 and below ram_mb")
    for key in ("idle_w", "load_w"):
        _positive(float(power[key]), f"power.{key}", file)
    if power["load_w"] < power["idle_w"]:
        raise DeviceError(f"device profile {file}: field power.load_w ({power['load_w']}) is below power.idle_w")
    runtimes = data["runtimes"]
    if not runtimes or any(r not in RUNTIMES for r in runtimes):
        raise DeviceError(f"device profile {file}: field runtimes {runtimes!r} must be a non-empty list from {RUNTIMES}")
    if not all(isinstance(p, str) and p for p in data["pip_platforms"]):
        raise DeviceError(f"device profile {file}: field pip_platforms must be a list of pip platform tags")
    if data["python"] and not data["pip_platforms"]:
        raise DeviceError(f"device profile {file}: field pip_platforms is empty but python is true; list the wheel tags")
    sources = data["sources"]
    for key in SOURCED_FIELDS:
        src = sources.get(key)
        if not isinstance(src, str) or not src.strip():
            raise DeviceError(
                f"device profile {file}: field sources[{key!r}] is missing; every figure needs a source "
                "(a URL or document name, or 'estimate: how')"
            )
    mcu = _parse_mcu(data["mcu"], sources, file) if "mcu" in data else None
    if data["device_class"] == "mcu" and mcu is None:
        raise DeviceError(f"device profile {file}: a microcontroller profile needs an mcu block ({sorted(_MCU_KEYS)}); "
                          "see edgeode/devices/profiles/nano-33-ble-sense.json")
    unknown = sorted(set(sources) - set(SOURCED_FIELDS) - set(MCU_SOURCED)
                     - {"ram_variants", "runtimes", "os_notes", "pip_platforms"})
    if unknown:
        raise DeviceError(f"device profile {file}: field sources has unknown key {unknown[0]!r}; keys: {SOURCED_FIELDS}")
    variants = data.get("ram_variants", {})
    if not all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
               for k, v in variants.items()):
        raise DeviceError(f"device profile {file}: field ram_variants must map variant names to RAM in MB")
    return DeviceProfile(
        name=data["name"],
        display_name=data["display_name"],
        device_class=data["device_class"],
        cpu=CPUSpec(cpu["arch"], cpu["cores"], float(cpu["clock_ghz"]), float(cpu["gflops_1t"]), cpu.get("model", "")),
        ram_mb=data["ram_mb"],
        os_reserved_mb=data["os_reserved_mb"],
        storage_mb=data["storage_mb"],
        power=PowerSpec(float(power["idle_w"]), float(power["load_w"])),
        runtimes=tuple(runtimes),
        python=data["python"],
        pip_platforms=tuple(data["pip_platforms"]),
        os_notes=data["os_notes"],
        sources=dict(sources),
        ram_variants=dict(variants),
        calibrated=data.get("calibrated", False),
        measured_on=dict(data.get("measured_on", {})),
        mcu=mcu,
        path=file,
    )


def _triple(value: list, where: str, file: str) -> tuple[float, float, float]:
    ok = (len(value) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                  and v > 0 for v in value) and value[0] <= value[1] <= value[2])
    if not ok:
        raise DeviceError(f"device profile {file}: field {where} must be [low, typical, high], positive numbers in "
                          f"ascending order, got {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))


def _parse_mcu(data: dict, sources: dict, file: str) -> McuSpec:
    _check(data, _MCU_KEYS, {}, "mcu.", file)
    for key in ("sram_bytes", "runtime_flash_bytes"):
        _positive(data[key], f"mcu.{key}", file)
    for key in MCU_SOURCED:
        src = sources.get(key)
        if not isinstance(src, str) or not src.strip():
            raise DeviceError(f"device profile {file}: field sources[{key!r}] is missing; every figure needs a source "
                              "(a URL or document name, or 'estimate: how')")
    return McuSpec(data["sram_bytes"], data["runtime_flash_bytes"], data["kernels"],
                   _triple(data["cycles_per_mac"], "mcu.cycles_per_mac", file),
                   _triple(data["cycles_per_element"], "mcu.cycles_per_element", file))


def read_profile_file(path: str | Path) -> DeviceProfile:
    """Read and validate one profile file; the profile's ``name`` must match the file name."""
    path = Path(path)
    data = read_json(path, DeviceError, "fix or delete the device profile file")
    profile = parse_profile(data, str(path))
    if profile.name != path.stem:
        raise DeviceError(f"device profile {path}: field name {profile.name!r} must match the file name {path.stem!r}")
    return profile


def _files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for directory in (builtin_dir(), user_dir()):  # user profiles override shipped ones
        if directory.is_dir():
            for path in sorted(directory.glob("*.json")):
                found[path.stem] = path
    return found


def profile_names() -> list[str]:
    """Names of every known device (shipped and user profiles)."""
    return sorted(_files())


def load_profile(name: str) -> DeviceProfile:
    """The profile called ``name`` (``NAME`` or ``NAME:VARIANT`` for a RAM variant, e.g. ``pi-4b:8gb``)."""
    base, _, variant = name.partition(":")
    files = _files()
    if base not in files:
        raise DeviceError(f"unknown device {name!r}{did_you_mean(base, files)}; known devices: {', '.join(sorted(files))} (see `edgeode devices`)")
    profile = read_profile_file(files[base])
    return profile.variant(variant) if variant else profile


def list_profiles() -> list[DeviceProfile]:
    """Every known device profile, validated, sorted by name."""
    return [read_profile_file(path) for _, path in sorted(_files().items())]
