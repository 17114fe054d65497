"""Energy per inference: a CPU-time proxy from a device's power model, and RAPL where readable.

**The proxy** (no edge runtime we compare with reports energy; this is clearly a *proxy*). A
device's profile gives whole-board power idle (``idle_w``) and with all ``cores`` busy
(``load_w``). We take the extra power of one busy core as ``(load_w - idle_w) / cores`` (the
linear CPU-utilisation power model, e.g. Fan, Weber & Barroso, "Power provisioning for a
warehouse-sized computer", ISCA 2007) and charge an inference the CPU-seconds it used::

    dynamic energy  E_dyn  = cpu_s * (load_w - idle_w) / cores
    with idle share E_tot  = E_dyn + idle_w * wall_s

``E_dyn`` is the marginal energy of running the model on an otherwise idle device; ``E_tot`` also
charges the board's idle power for the time the inference holds the device (the right figure for
a device that exists only to run the model). CPU time is process time (user + system) of the
measured child; ONNX Runtime's idle spinning is switched off by :mod:`edgeode.runtime` so spinning
threads are not counted as work. Memory and cache power are folded into the load figure.

**RAPL**: on Intel/AMD Linux hosts ``/sys/class/powercap/intel-rapl:N/energy_uj`` counts package
energy in microjoules (wrapping at ``max_energy_range_uj``). It measures the whole package (every
process), usually needs root (mode 0400 since 2020), and is never a figure for another device.

Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["EnergyEstimate", "energy_proxy", "rapl_domains", "read_rapl_uj", "rapl_delta_uj", "rapl_readable"]

POWERCAP = Path("/sys/class/powercap")


@dataclass(frozen=True)
class EnergyEstimate:
    """Energy of one inference in millijoules, by the CPU-time proxy."""

    dynamic_mj: float
    with_idle_mj: float
    per_core_w: float


def energy_proxy(cpu_s: float, wall_s: float, idle_w: float, load_w: float, cores: int) -> EnergyEstimate:
    """The proxy above for ``cpu_s`` CPU-seconds over ``wall_s`` seconds on a device."""
    per_core = (load_w - idle_w) / max(cores, 1)
    dynamic = cpu_s * per_core
    return EnergyEstimate(dynamic * 1e3, (dynamic + idle_w * wall_s) * 1e3, per_core)


def rapl_domains() -> list[Path]:
    """Top-level (package) RAPL domains, e.g. ``intel-rapl:0``; sub-domains are inside them."""
    if not POWERCAP.is_dir():
        return []
    return sorted(p for p in POWERCAP.glob("intel-rapl:*") if p.name.count(":") == 1)


def read_rapl_uj() -> int | None:
    """Sum of the package energy counters in microjoules, or ``None`` if none is readable."""
    total, found = 0, False
    for dom in rapl_domains():
        try:
            total += int((dom / "energy_uj").read_text())
            found = True
        except (OSError, ValueError):
            return None
    return total if found else None


def _max_range_uj() -> int:
    total = 0
    for dom in rapl_domains():
        try:
            total += int((dom / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            pass
    return total


def rapl_delta_uj(before: int, after: int) -> int:
    """``after - before``, corrected for one counter wrap-around."""
    delta = after - before
    if delta < 0:
        delta += _max_range_uj()
    return delta


def rapl_readable() -> bool:
    """Whether this machine exposes readable RAPL energy counters."""
    return read_rapl_uj() is not None
