"""Does a full-int8 bundle fit a microcontroller? The one fit computation of ``edgeode pack`` and ``edgeode profile``.

What a firmware built by :mod:`edgeode.firmware.project` allocates, from the figures the bundle's
manifest measured at export (``artifacts[i].size``, ``artifacts[i].tflm.arena_bytes``):

* **RAM** (static arrays): one tensor arena per model (the measured smallest arena plus
  :data:`ARENA_MARGIN`, rounded up to 16 B), the solver's RK state (the static buffers of the
  generated C loop, :func:`edgeode.firmware.solver_c.solver_state_bytes`), and the float in/out
  buffers of one inference (``4 x (2 x state + output)`` bytes); on top, the board's runtime share
  (``os_reserved_mb`` of the profile: OS, stacks, the library's heap), against the RAM static arrays
  can live in (``min(ram_mb, mcu.sram_bytes)``).
* **Flash**: the model files byte for byte plus the runtime's code (``mcu.runtime_flash_bytes`` of
  the profile: TFLM, its kernels, the C library, the firmware's code), against ``storage_mb``.

The arenas are measured by the 64-bit host build of ``tflite-micro``; a 32-bit Cortex-M build needs
about 2% less (ResNet-8: 55,984 against 55,044 B), so the margin covers that and the board library's
other TFLM version. Standard library only (the torch-free device side imports it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from edgeode.errors import BundleError, EdgeodeError
from edgeode.firmware.solver_c import solver_state_bytes

__all__ = ["ARENA_MARGIN", "HOST_ARENA_NOTE", "MODES", "McuFit", "McuNet", "FieldInputs", "field_inputs",
           "mcu_nets", "mcu_fit", "arena_with_margin", "tensor_elements"]

#: Added to each measured arena: the board library's TFLM is another version than the host's (kernel
#: scratch buffers differ); the host's 64-bit build already needs about 2% more than a 32-bit one.
ARENA_MARGIN = 0.10
HOST_ARENA_NOTE = ("arenas measured by the 64-bit host build of tflite-micro at export; a 32-bit Cortex-M build "
                   "needs about 2% less (ResNet-8: 55,984 against 55,044 B)")
#: loop: encoder, field and head as separate models with the RK loop in C (ODE-Net; field only for a
#: dynamics model; ``model`` for a network without an ODE); fused: the whole unrolled solve in one file
MODES = ("loop", "fused")
_MIB = 1 << 20


@dataclass(frozen=True)
class McuNet:
    """One int8 model of the firmware: its flash bytes and arenas (measured at export, and with the margin)."""

    role: str
    path: str
    flash_bytes: int
    arena_measured_bytes: int
    arena_bytes: int


@dataclass(frozen=True)
class FieldInputs:
    """Which input of the field model is the state h (``state``) and which the time t (``time``, -1 if none)."""

    state: int
    time: int
    state_size: int


@dataclass(frozen=True)
class McuFit:
    """RAM and flash of a firmware for one board, and whether it fits (``message`` says it in words)."""

    device: str
    display_name: str
    mode: str
    nets: tuple[McuNet, ...]
    rk_state_bytes: int
    buffer_bytes: int
    ram_bytes: int  # arenas (with margin) + RK state + buffers: the firmware's static arrays
    runtime_ram_bytes: int  # the board's runtime share (OS, stacks, heap), from the profile
    ram_board_bytes: int
    model_flash_bytes: int
    runtime_flash_bytes: int
    flash_bytes: int
    flash_board_bytes: int
    state_size: int
    output_size: int
    message: str

    @property
    def arena_bytes(self) -> int:
        return sum(n.arena_bytes for n in self.nets)

    @property
    def ram_needed_bytes(self) -> int:
        return self.ram_bytes + self.runtime_ram_bytes

    @property
    def ram_fits(self) -> bool:
        return self.ram_needed_bytes <= self.ram_board_bytes

    @property
    def flash_fits(self) -> bool:
        return self.flash_bytes <= self.flash_board_bytes

    @property
    def fits(self) -> bool:
        return self.ram_fits and self.flash_fits

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(fits=self.fits, ram_fits=self.ram_fits, flash_fits=self.flash_fits, arena_bytes=self.arena_bytes,
                 ram_needed_bytes=self.ram_needed_bytes, arena_margin=ARENA_MARGIN)
        return d


def arena_with_margin(measured: int) -> int:
    """The arena a firmware allocates for a model whose measured smallest arena is ``measured`` bytes."""
    return int(math.ceil(measured * (1 + ARENA_MARGIN) / 16.0)) * 16


def tensor_elements(shape: tuple[int | None, ...], what: str, error: type[EdgeodeError] = BundleError) -> int:
    """Elements of one batch-1 sample of a fixed-shape tensor (firmware runs batch 1)."""
    if any(s is None for s in shape) or (shape and shape[0] != 1):
        raise error(f"{what} has shape {list(shape)}; firmware runs batch-1 int8 files with fixed shapes: "
                    "re-export with `edgeode export --quantize int8`")
    return int(math.prod(shape[1:])) if len(shape) > 1 else 1


def field_inputs(artifact: Any, error: type[EdgeodeError] = BundleError) -> FieldInputs:
    """The state and time inputs of an int8 field file (TFLM addresses inputs by index)."""
    ins = artifact.inputs
    times = [i for i, s in enumerate(ins) if len(s.shape) == 0 or tuple(s.shape) in ((1,), (1, 1))]
    states = [i for i in range(len(ins)) if i not in times]
    if len(states) != 1 or len(times) > 1:
        raise error(f"{artifact.path}: a field takes a time t and one state h, but its inputs are "
                    f"{[(s.name, list(s.shape)) for s in ins]}; re-export the bundle")
    state = states[0]
    return FieldInputs(state, times[0] if times else -1,
                       tensor_elements(ins[state].shape, f"{artifact.path} input {ins[state].name!r}", error))


def mcu_nets(manifest: Any, mode: str = "loop", error: type[EdgeodeError] = BundleError) -> list[tuple[str, Any]]:
    """The int8 files (role, artifact) a firmware runs in ``mode``, in the order it runs them.

    loop: encoder, field and head (ODE-Net), field, cell and head (an ODE-RNN series bundle: one
    observation), field (dynamics model) or model (no ODE); fused: the
    unrolled ``fused`` file (an ODE-Net's whole solve). Raises ``error`` naming
    ``--quantize int8`` for a bundle without full-int8 files measured in TFLM.
    """
    if mode not in MODES:
        raise error(f"unknown microcontroller mode {mode!r}; choose one of {', '.join(MODES)}")
    int8 = [a for a in manifest.artifacts if a.format == "tflite" and a.precision == "int8"
            and getattr(a, "tflm", None) is not None]
    by_role = {a.role: a for a in int8}
    layouts = ((("encoder", "field", "head"), ("field", "cell", "head"), ("field",), ("model",)) if mode == "loop"
               else (("fused",), ("model",)))
    for layout in layouts:
        if all(r in by_role for r in layout):
            if (layout == ("field",) and manifest.kind != "dynamics") or ("cell" in layout) != (manifest.kind == "series"):
                continue
            return [(r, by_role[r]) for r in layout]
    if int8 and mode == "fused":
        raise error("this bundle has no fused int8 file (the unrolled solve in one model); use the loop "
                    "(`--mode loop`), the layout a microcontroller runs")
    have = sorted({f"{a.role} ({a.precision})" for a in manifest.artifacts if a.format == "tflite"})
    raise error(
        "a microcontroller runs the bundle's full-int8 TFLite files measured in TFLM (encoder, field and head for "
        f"an ODE-Net; field, cell and head for an ODE-RNN; field for a dynamics model; model for a network without an "
        f"ODE), but this bundle has "
        f"{', '.join(have) or 'no TFLite files'}; re-export it with `edgeode export RUN -o BUNDLE --quantize int8`"
    )


def mcu_fit(manifest: Any, profile: Any, mode: str = "loop", error: type[EdgeodeError] = BundleError) -> McuFit:
    """RAM and flash of the firmware for ``profile`` (a microcontroller DeviceProfile) in ``mode``."""
    if profile.mcu is None:
        raise error(f"{profile.name} ({profile.display_name}) is not a microcontroller profile (no mcu block)")
    picked = mcu_nets(manifest, mode, error)
    nets = tuple(McuNet(role, art.path, art.size, art.tflm.arena_bytes, arena_with_margin(art.tflm.arena_bytes))
                 for role, art in picked)
    state_size = rk_state = 0
    field = next((art for role, art in picked if role == "field"), None)
    if field is not None:
        state_size = field_inputs(field, error).state_size
        rk_state = solver_state_bytes(manifest.solver.tableau, state_size)
    last = picked[-1][1]
    output_size = tensor_elements(tuple(last.outputs[0].shape), f"{last.path} output", error)
    buffers = 4 * (2 * state_size + output_size)
    ram = sum(n.arena_bytes for n in nets) + rk_state + buffers
    reserved = int(profile.os_reserved_mb * _MIB)
    ram_board = min(int(profile.ram_mb * _MIB), profile.mcu.sram_bytes)
    models = sum(n.flash_bytes for n in nets)
    code = profile.mcu.runtime_flash_bytes
    flash_board = int(profile.storage_mb * _MIB)
    fits = ram + reserved <= ram_board and models + code <= flash_board
    arenas = " + ".join(f"{n.role} {n.arena_bytes:,}" for n in nets)
    figures = (f"RAM {ram:,} B (arenas {arenas} with {ARENA_MARGIN:.0%} margin, RK state {rk_state:,}, buffers "
               f"{buffers:,}) + {reserved:,} B for the board's runtime against {ram_board:,} B; flash {models + code:,} B "
               f"(models {models:,} + runtime code {code:,}) against {flash_board:,} B")
    message = (f"fits the {profile.display_name}: {figures}" if fits
               else f"does not fit the {profile.display_name}: {figures}")
    return McuFit(profile.name, profile.display_name, mode, nets, rk_state, buffers, ram, reserved, ram_board, models,
                  code, models + code, flash_board, state_size, output_size, message)
