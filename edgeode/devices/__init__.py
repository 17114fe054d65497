"""Device profiles, the profiler and the power model (torch-free).

    >>> from edgeode.devices import load_profile, profile_bundle
    >>> pi = load_profile("pi-zero-2w")
    >>> report = profile_bundle("bundle/", pi)        # estimates unless run on a calibrated Pi
    >>> report.to_dict()["fits"]["message"]

Profiles are JSON data with a source for every figure (``edgeode/devices/profiles/``); the
profiler measures a bundle in a child process (:mod:`edgeode.devices.child`). Never imports
torch; numpy, psutil and onnx are imported only by the functions that need them.
"""

from __future__ import annotations

from edgeode.devices.profiles import (
    DEVICE_CLASSES,
    RUNTIMES,
    CPUSpec,
    DeviceProfile,
    PowerSpec,
    list_profiles,
    load_profile,
    parse_profile,
    profile_names,
    user_dir,
)

__all__ = [
    "DEVICE_CLASSES",
    "RUNTIMES",
    "CPUSpec",
    "DeviceProfile",
    "PowerSpec",
    "list_profiles",
    "load_profile",
    "parse_profile",
    "profile_names",
    "user_dir",
    "profile_bundle",
    "count_macs",
]


def __getattr__(name: str):  # lazy: the profiler pulls in subprocess/psutil machinery
    if name == "profile_bundle":
        from edgeode.devices.profiler import profile_bundle

        return profile_bundle
    if name == "count_macs":
        from edgeode.devices.macs import count_macs

        return count_macs
    raise AttributeError(f"module 'edgeode.devices' has no attribute {name!r}")
