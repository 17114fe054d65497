"""The compare report's microcontroller section (``edgeode compare --mcu``).

The MNIST-scale ODE-Net, ResNet and VGG runs are exported once more as full-int8 bundles
(``--formats tflite --quantize int8``: calibrated on the training split, each file measured in the real
TensorFlow Lite Micro interpreter, accuracy measured in TFLM on the held-out split), and each is
profiled on the boards of :data:`MCU_BOARDS` with :func:`edgeode.devices.mcu_profile.profile_mcu`: the
ODE-Net in loop mode (encoder, field and head, the RK loop in C) and fused (the unrolled solve in one
file), the baselines as their one file. Flash, RAM and the fit come from the measured figures;
latency and energy are estimates (MACs x the board's cycles per MAC). RK-Net is left out: its int8
files are the ODE-Net's architecture (the same figures), only trained differently.

Opt-in because each int8 export calibrates and measures in TFLM (about 0.5-1.5 min per model on the
digits on a 2-core host; the unrolled fused file is the slowest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["MCU_BOARDS", "MCU_ARCHS", "MCU_NOTE", "INT8_BASIS", "export_int8", "mcu_rows", "int8_device_figures"]

MCU_BOARDS = ("nano-33-ble-sense", "esp32-s3")
MCU_ARCHS = ("odenet", "resnet", "vgg")
MCU_NOTE = ("Microcontrollers: flash, RAM and fit from the full-int8 files' sizes and arenas measured in TFLM at "
            "export (the fit `edgeode pack` uses), accuracy measured in TFLM on the test split; latency and energy "
            "are ESTIMATES (int8 MACs x the board's cycles per MAC, sources in `edgeode devices show NAME`).")


#: the basis of a microcontroller cell of ``memory_per_device`` rated from the int8 bundle
INT8_BASIS = "int8 files: arenas measured in TFLM at export + RK state + buffers + runtime share (edgeode pack's fit)"


def export_int8(run_dir: Path, bundle_dir: Path, data: Any = None) -> Path:
    """The run as a full-int8 bundle measured in TFLM (what ``edgeode export RUN --quantize int8`` writes);
    ``data``: the run's data set if the caller has it loaded (``export_run(data=...)``)."""
    from edgeode.export import export_run

    export_run(run_dir, bundle_dir, formats=("tflite",), quantize=("int8",), progress=False, overwrite=True,
               data=data)
    return bundle_dir


def mcu_rows(bundles: dict[str, Path], boards: tuple[str, ...] = MCU_BOARDS) -> list[dict[str, Any]]:
    """One row per (model, mode, board): flash, RAM, fit, TFLM accuracy, estimated latency and energy."""
    from edgeode.devices.mcu_profile import profile_mcu
    from edgeode.devices.profiles import load_profile

    rows = []
    for arch, bundle in bundles.items():
        modes = ("loop", "fused") if arch == "odenet" else (None,)
        for name in boards:
            profile = load_profile(name)
            for mode in modes:
                d = profile_mcu(bundle, profile, mode)
                acc = d["accuracy"] or {}
                rows.append({
                    "model": arch, "mode": d["mode"], "device": name, "bundle": str(bundle),
                    "flash_bytes": d["flash_bytes"], "model_flash_bytes": d["model_flash_bytes"],
                    "ram_needed_bytes": d["fits"]["ram_needed_bytes"], "ram_board_bytes": d["fits"]["ram_board_bytes"],
                    "flash_board_bytes": d["fits"]["flash_board_bytes"], "arena_bytes": d["arena_bytes"],
                    "rk_state_bytes": d["rk_state_bytes"], "fits": d["fits"]["fits"], "verdict": d["fits"]["message"],
                    "accuracy_int8": acc.get("int8"), "accuracy_float32": acc.get("float32"),
                    "macs_per_inference": d["macs_per_inference"], "latency_ms": d["latency_ms"],
                    "energy_mj": d["energy_mj"], "kernels": d["kernels"],
                })
    return rows


def int8_device_figures(bundle: Path, profiles: list[Any]) -> dict[str, dict[str, Any]]:
    """Per microcontroller profile of ``profiles``: the fit of the int8 ``bundle`` (loop mode where it has
    one), in the shape of :func:`edgeode.compare.runner.device_figures`' rows.

    The compare report rates the MNIST-scale models on a microcontroller with these (the int8 files a
    board runs, their arenas measured in TFLM), not with the float32 ONNX graph's activation estimate.
    """
    from edgeode.devices.mcu_profile import default_mode
    from edgeode.firmware.fit import mcu_fit
    from edgeode.runtime.manifest import Manifest

    manifest = Manifest.read(bundle)
    mode = default_mode(manifest)
    out = {}
    for p in profiles:
        if p.device_class != "mcu" or p.mcu is None:
            continue
        fit = mcu_fit(manifest, p, mode)
        out[p.name] = {"fits": fit.fits, "message": fit.message, "ram_needed_mb": fit.ram_needed_bytes / 2**20,
                       "ram_available_mb": fit.ram_board_bytes / 2**20, "flash_mb": fit.flash_bytes / 2**20,
                       "flash_available_mb": fit.flash_board_bytes / 2**20, "mode": mode, "basis": INT8_BASIS,
                       "int8": True}
    return out
