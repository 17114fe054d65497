"""From host measurements to device figures: when they are measured, and how they are estimated.

A timing taken on the host is a *device* figure only when the host is that device: the profile was
made by ``edgeode devices calibrate`` on this machine (``calibrated`` and ``measured_on`` match host
name and machine). Otherwise every time-derived figure (latency, CPU time, energy) is an
**estimate**: the host value times

    factor = host single-thread SGEMM GFLOP/s  /  device single-thread SGEMM GFLOP/s

with the host figure measured once per machine and cached (:func:`edgeode.devices.hostinfo.host_reference`;
measuring it on every run moved the factor by up to 45% on a shared machine) and the device
figure from its profile (``cpu.gflops_1t``, whose source says whether it is measured or derived
from the core's published FMA width and clock). Small CNN inference is dominated by the same
convolution/GEMM kernels, so throughput ratios transfer to first order; memory bandwidth, cache
sizes, thread scaling and the runtime's kernel choice per ISA are not modelled (expect +-2x for
models dominated by convolutions and GEMMs). For tiny models whose time is mostly per-call
overhead (Python, the runtime's dispatch) the SIMD-throughput ratio overstates the slowdown
(scalar code runs perhaps 5-15x slower on an A53 than on a server core, not 65x): read those
estimates as upper bounds, or calibrate on the device.
Memory figures are not scaled: resident memory of the same runtime on aarch64 and x86_64 differs
by tens of MB at most (different binaries), which the report states.

Under emulation (QEMU) timings are refused as device figures whatever the profile says.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgeode.devices.hostinfo import detect_emulation, host_id, host_reference
from edgeode.devices.profiles import DeviceProfile

__all__ = ["Scaling", "decide_scaling"]


@dataclass(frozen=True)
class Scaling:
    """How host timings become device figures: ``factor`` multiplies host times."""

    on_device: bool
    factor: float | None
    label: str
    method: str
    host_sgemm_gflops_1t: float | None
    device_gflops_1t: float
    device_gflops_source: str
    emulation: str | None
    #: where the host figure comes from (cache file and when it was measured) and its own spread
    host_reference: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _is_this_machine(profile: DeviceProfile) -> bool:
    if not profile.calibrated:
        return False
    me = host_id()
    return (profile.measured_on.get("hostname") == me["hostname"]
            and profile.measured_on.get("machine") == me["machine"])


def decide_scaling(profile: DeviceProfile) -> Scaling:
    """Measured (on the calibrated device), estimated (scaled), or refused (emulated)."""
    src = profile.sources.get("cpu.gflops_1t", "")
    emulated = detect_emulation()
    if emulated:
        return Scaling(False, None, "not a device figure: running under emulation",
                       "timings under emulation measure the emulator; no device figure is reported",
                       None, profile.cpu.gflops_1t, src, emulated)
    if _is_this_machine(profile):
        return Scaling(True, 1.0, "measured on this device",
                       "measured on the device itself (calibrated profile for this host)",
                       None, profile.cpu.gflops_1t, src, None)
    ref = host_reference()
    factor = ref.gflops / profile.cpu.gflops_1t
    return Scaling(False, factor, f"estimate for {profile.name} (host figures scaled x{factor:.2f})",
                   "single-thread host latency (one backend thread pinned, on the less disturbed of two CPUs, a low percentile of >= 2 s of timed "
                   "runs: undisturbed) x (host single-thread SGEMM GFLOP/s / device cpu.gflops_1t): the device on one "
                   "core; about +-2x "
                   "for conv/GEMM-bound models, an upper bound for tiny overhead-bound ones (see edgeode.devices.scaling)",
                   ref.gflops, profile.cpu.gflops_1t, src, None,
                   {"cache_file": ref.cache_file, "measured_at": ref.measured_at, "cached": ref.cached,
                    "spread": ref.spread, "rounds_gflops": ref.rounds})
