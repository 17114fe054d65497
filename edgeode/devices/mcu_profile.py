"""``edgeode profile BUNDLE --device MCU``: fit, accuracy and estimated latency/energy of a full-int8 bundle.

A microcontroller runs no Python and no ONNX Runtime, so nothing is run on the host here: every memory
figure comes from what the bundle's export MEASURED in the real TensorFlow Lite Micro interpreter
(each int8 file's size and smallest working arena, in the manifest), put together by the same fit
computation ``edgeode pack`` refuses a bundle with (:func:`edgeode.firmware.fit.mcu_fit`); accuracy is
the manifest's (measured in TFLM on the held-out split); latency and energy are ESTIMATES from MACs and
the board's published cycle figures (:mod:`edgeode.devices.mcu_estimate`).

A bundle that does not fit gets a verdict that says by how much and what would make it fit: the other
mode (the loop needs the largest single model's arena, the unrolled fused file all of its ops'), a
board with more memory (every microcontroller profile is checked), fewer channels.
Standard library only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeode.devices.mcu_estimate import estimate_mcu
from edgeode.devices.profiles import DeviceProfile, list_profiles
from edgeode.errors import BundleError, ConfigError
from edgeode.firmware.fit import ARENA_MARGIN, HOST_ARENA_NOTE, MODES, McuFit, mcu_fit, mcu_nets

__all__ = ["profile_mcu", "default_mode"]


def default_mode(manifest: Any) -> str:
    """loop where the bundle has loop files (the microcontroller design), else fused."""
    try:
        mcu_nets(manifest, "loop")
        return "loop"
    except BundleError:
        return "fused"


def _kb(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def _shortfall(fit: McuFit) -> list[str]:
    out = []
    if not fit.ram_fits:
        out.append(f"RAM: needs {_kb(fit.ram_needed_bytes)} (static arrays {_kb(fit.ram_bytes)} + runtime "
                   f"{_kb(fit.runtime_ram_bytes)}) of {_kb(fit.ram_board_bytes)}: "
                   f"{_kb(fit.ram_needed_bytes - fit.ram_board_bytes)} over")
    if not fit.flash_fits:
        out.append(f"flash: needs {_kb(fit.flash_bytes)} (models {_kb(fit.model_flash_bytes)} + runtime code "
                   f"{_kb(fit.runtime_flash_bytes)}) of {_kb(fit.flash_board_bytes)}: "
                   f"{_kb(fit.flash_bytes - fit.flash_board_bytes)} over")
    return out


def _remedies(manifest: Any, fit: McuFit, profile: DeviceProfile) -> list[str]:
    out = []
    other = "loop" if fit.mode == "fused" else "fused"
    try:
        alt = mcu_fit(manifest, profile, other)
        if alt.fits:
            out.append(f"{other} mode fits ({_kb(alt.ram_needed_bytes)} RAM, {_kb(alt.flash_bytes)} flash): "
                       f"`--mode {other}`" + (" (encoder, field and head as separate models, the RK loop in C)"
                                             if other == "loop" else ""))
    except BundleError:
        pass
    boards = []
    for p in list_profiles():
        if p.device_class != "mcu" or p.mcu is None or p.name == profile.name:
            continue
        f = mcu_fit(manifest, p, fit.mode)
        if f.fits:
            boards.append(f"{p.name} ({_kb(f.ram_board_bytes)} RAM for static arrays, {_kb(f.flash_board_bytes)} flash)")
    if boards:
        out.append("a board with more memory: it fits " + ", ".join(boards))
    if not fit.ram_fits:
        out.append("fewer channels (`edgeode train --width W`): the arenas scale with the activations (about W), "
                   "the RK state with the state size")
    if not fit.flash_fits:
        out.append("fewer channels: model flash scales with the weights (about W^2 for the convolutions)")
    return out


def _accuracy(manifest: Any, mode: str) -> dict[str, Any] | None:
    """The int8 and float32 accuracy the export measured in TFLM (a network without an ODE: its one file,
    recorded under ``fused``)."""
    if manifest.mcu is None:
        return None
    acc = manifest.mcu.accuracy
    mode = mode if manifest.solver is not None else "fused"
    int8 = (acc.get("int8") or {}).get(mode)
    fl = acc.get("float32") or {}
    return {"int8": int8, "float32": next(iter(fl.values()), None), "split": acc.get("split"),
            "samples": acc.get("samples"), "unit": acc.get("unit", "samples"), "interpreter": acc.get("interpreter"),
            "agreement_with_float32": (acc.get("agreement_with_float32") or {}).get(mode)}


def profile_mcu(bundle: str | Path, profile: DeviceProfile, mode: str | None = None) -> dict[str, Any]:
    """The profile of a full-int8 ``bundle`` on a microcontroller ``profile`` (see the module doc).

    Raises:
        BundleError: not a bundle, or no full-int8 files (the message names ``--quantize int8``).
        ConfigError: an unknown mode.
    """
    from edgeode.runtime.manifest import Manifest

    if mode is not None and mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: a microcontroller runs {' or '.join(MODES)}")
    bundle = Path(bundle)
    manifest = Manifest.read(bundle)
    mode = mode or default_mode(manifest)
    fit = mcu_fit(manifest, profile, mode)
    nets = mcu_nets(manifest, mode)
    est = estimate_mcu(bundle, manifest, profile, nets, fit.state_size)
    if fit.fits:
        verdict = f"fits {profile.name}: {_kb(fit.ram_needed_bytes)} of {_kb(fit.ram_board_bytes)} RAM " \
                  f"({100 * fit.ram_needed_bytes / fit.ram_board_bytes:.0f}%), {_kb(fit.flash_bytes)} of " \
                  f"{_kb(fit.flash_board_bytes)} flash ({100 * fit.flash_bytes / fit.flash_board_bytes:.0f}%)"
        remedies: list[str] = []
    else:
        remedies = _remedies(manifest, fit, profile)
        verdict = (f"does not fit {profile.name}: " + "; ".join(_shortfall(fit))
                   + (". Would fit: " + "; ".join(remedies) if remedies else ""))
    src = profile.sources
    notes = [
        HOST_ARENA_NOTE + f"; each arena gets {ARENA_MARGIN:.0%} margin in the firmware (and here)",
        f"runtime RAM {fit.runtime_ram_bytes:,} B is the profile's os_reserved_mb (stack, OS, the library's heap): "
        f"{src.get('os_reserved_mb', 'estimate')}",
        f"runtime flash {fit.runtime_flash_bytes:,} B: {src.get('mcu.runtime_flash_bytes', 'estimate')}",
        f"RAM for static arrays: min(ram_mb, mcu.sram_bytes) = {fit.ram_board_bytes:,} B: {src.get('mcu.sram_bytes', '')}",
        f"latency and energy: {est.to_dict()['method']}; not counted: "
        + (f"the float32 RK arithmetic ({est.solver_flops:,} multiply-adds per solve) and " if est.solver_flops else "")
        + "per-op interpreter overhead",
    ]
    if manifest.kind == "series":
        from edgeode.devices.mcu_estimate import count_tflite

        head = count_tflite(bundle / dict(nets)["head"].path).macs
        notes.append(f"series bundle: one observation is the field x {est.calls.get('field')} (a gap of one max_step, "
                     f"{manifest.series.max_step:g} s; a gap of k max_steps takes k x the field's share) and the cell; "
                     f"the head ({head:,} MACs) runs once per classify and is not counted")
    return {
        "device": profile.name,
        "device_display_name": profile.display_name,
        "device_class": "mcu",
        "figures": "memory and accuracy MEASURED at export in TFLM (manifest); latency and energy ESTIMATED",
        "estimate": True,
        "bundle": str(bundle),
        "arch": manifest.model.get("arch"),
        "kind": manifest.kind,
        "unit": "observation" if manifest.kind == "series" else "inference",
        "mode": "single" if nets[0][0] == "model" else mode,  # a network without an ODE is one file
        "precision": "int8",
        "backend": "tflite-micro",
        "kernels": profile.mcu.kernels,
        "artifacts_used": {n.role: n.path for n in fit.nets},
        "fits": {"fits": fit.fits, "message": verdict, "remedies": remedies, "detail": fit.message,
                 "ram_needed_bytes": fit.ram_needed_bytes, "ram_board_bytes": fit.ram_board_bytes,
                 "flash_bytes": fit.flash_bytes, "flash_board_bytes": fit.flash_board_bytes,
                 "ram_fits": fit.ram_fits, "flash_fits": fit.flash_fits},
        "arena_bytes": fit.arena_bytes,
        "arena_measured_bytes": sum(n.arena_measured_bytes for n in fit.nets),
        "rk_state_bytes": fit.rk_state_bytes,
        "manifest_rk_state_bytes": manifest.mcu.rk_state_bytes if manifest.mcu is not None else None,
        "flash_bytes": fit.flash_bytes,
        "model_flash_bytes": fit.model_flash_bytes,
        "ram_bytes": fit.ram_bytes,
        "mcu_fit": fit.to_dict(),
        "accuracy": _accuracy(manifest, mode),
        "macs_per_inference": est.macs,
        "field_evaluations": est.calls.get("field"),
        "steps": manifest.solver.steps if manifest.solver is not None else None,
        "tableau": manifest.solver.tableau.name if manifest.solver is not None else None,
        "latency_ms": est.to_dict()["latency_ms"],
        "energy_mj": est.to_dict()["energy_mj"],
        "mcu_estimate": est.to_dict(),
        "notes": notes,
    }
