"""Latency and energy of an int8 inference on a microcontroller: ESTIMATES from MACs and cycle figures.

No microcontroller is at hand, so the time of one inference is modelled, not measured:

    cycles = sum over the model's calls of (MACs x cycles per MAC + other elements x cycles per element)
    latency = cycles / clock,   energy = latency x the board's power under load (``power.load_w``)

* **MACs** are counted from each ``.tflite`` file's own graph (:func:`count_tflite`): CONV_2D
  ``prod(out) x KH x KW x C_in``, DEPTHWISE_CONV_2D ``prod(out) x KH x KW``, FULLY_CONNECTED
  ``prod(out) x C_in``, BATCH_MATMUL ``prod(out) x K``. Every other op (ADD, SUB, MUL, MEAN, RSQRT,
  TRANSPOSE, PAD...: GroupNorm decomposes into these) costs per element of its output (MEAN: of its
  input); RESHAPE costs nothing (TFLM aliases or copies its buffer). In loop mode the field's count
  is multiplied by the field evaluations of one solve (stages x steps).
* **Cycle figures** (low, typical, high) come from the device profile's ``mcu`` block, each with its
  source (``edgeode devices show NAME``): ESP-NN's kernel table for the ESP32-S3, MLPerf Tiny results
  for Cortex-M4 (1.6 cycles/MAC best, ST X-CUBE-AI; 6.8 TFLM + CMSIS-NN, v0.5).

Not counted: the float32 RK arithmetic of the loop and the int8 <-> float conversions around the
field (a few operations per state value per call; reported as ``solver_flops`` for scale), interpreter
overhead per op, and memory stalls beyond what the sources' figures include.
Standard library only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OpCount", "McuEstimate", "count_tflite", "estimate_mcu", "ESTIMATE_NOTE"]

#: ops whose cost is their multiply-accumulates
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")
#: ops that cost nothing per element in TFLM
FREE_OPS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
ESTIMATE_NOTE = ("ESTIMATE, not a measurement: int8 MACs x cycles per MAC + other ops' elements x cycles per "
                 "element at the board clock; energy = latency x the board's power under load")


@dataclass
class OpCount:
    """MACs and other-op elements of one model call, per op type."""

    macs: int = 0
    elements: int = 0
    by_op: dict[str, int] = field(default_factory=dict)

    def add(self, op: str, macs: int, elements: int) -> None:
        self.macs += macs
        self.elements += elements
        self.by_op[op] = self.by_op.get(op, 0) + macs + elements


def _prod(shape: tuple[int, ...] | None) -> int:
    return int(math.prod(shape)) if shape else (0 if shape is None else 1)


def count_tflite(path: str | Path) -> OpCount:
    """MACs and other-op elements of one call of the ``.tflite`` file at ``path`` (see the module doc)."""
    from edgeode.firmware.tflite_ops import tflite_graph

    count = OpCount()
    for op in tflite_graph(path).ops:
        out = _prod(op.outputs[0]) if op.outputs else 0
        ins = op.inputs
        weights = ins[1] if len(ins) > 1 and ins[1] is not None else ()
        if op.op == "CONV_2D" and len(weights) == 4:
            count.add(op.op, out * weights[1] * weights[2] * weights[3], 0)
        elif op.op == "DEPTHWISE_CONV_2D" and len(weights) == 4:
            count.add(op.op, out * weights[1] * weights[2], 0)
        elif op.op == "FULLY_CONNECTED" and len(weights) == 2:
            count.add(op.op, out * weights[1], 0)
        elif op.op == "BATCH_MATMUL" and ins and ins[0]:
            count.add(op.op, out * ins[0][-1], 0)
        elif op.op in FREE_OPS:
            continue
        elif op.op == "MEAN" and ins and ins[0] is not None:
            count.add(op.op, 0, _prod(ins[0]))
        else:
            count.add(op.op, 0, out)
    return count


@dataclass(frozen=True)
class McuEstimate:
    """Estimated cycles, latency and energy of one inference on one board (low, typical, high)."""

    macs: int
    elements: int
    calls: dict[str, int]
    macs_by_role: dict[str, int]
    by_op: dict[str, int]
    solver_flops: int
    clock_hz: float
    cycles_per_mac: tuple[float, float, float]
    cycles_per_element: tuple[float, float, float]
    cycles: tuple[float, float, float]
    latency_ms: tuple[float, float, float]
    energy_mj: tuple[float, float, float]
    power_w: float
    kernels: str
    sources: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("cycles_per_mac", "cycles_per_element", "cycles", "latency_ms", "energy_mj"):
            d[key] = dict(zip(("low", "typical", "high"), d[key], strict=True))
        d["estimate"] = True
        d["method"] = ESTIMATE_NOTE
        return d


def _solver_flops(manifest: Any, state_size: int) -> int:
    """float32 multiply-adds of the RK loop in one solve (stage inputs and the update), for scale."""
    sol = manifest.solver
    if sol is None or not state_size:
        return 0
    tab = sol.tableau
    per_step = sum(1 for row in tab.a for v in row if v) + sum(1 for v in tab.b if v)
    return per_step * state_size * sol.steps


def estimate_mcu(bundle: Path, manifest: Any, profile: Any, nets: list[tuple[str, Any]], state_size: int) -> McuEstimate:
    """The estimate for ``nets`` (role, artifact) of ``bundle`` on ``profile`` (with an ``mcu`` block)."""
    spec = profile.mcu
    sol = manifest.solver
    evals = sol.tableau.stages * sol.steps if sol is not None else 1
    total = OpCount()
    calls, by_role = {}, {}
    for role, art in nets:
        one = count_tflite(bundle / art.path)
        # per inference; a series bundle's unit is one observation: the field across a one-step gap and the
        # cell, not the head (once per classify), as the host profile times it
        n = evals if role == "field" else 0 if (role == "head" and manifest.kind == "series") else 1
        calls[role] = n
        by_role[role] = one.macs * n
        total.macs += one.macs * n
        total.elements += one.elements * n
        for op, v in one.by_op.items():
            total.by_op[op] = total.by_op.get(op, 0) + v * n
    clock = profile.cpu.clock_ghz * 1e9
    cycles = tuple(total.macs * m + total.elements * e
                   for m, e in zip(spec.cycles_per_mac, spec.cycles_per_element, strict=True))
    latency = tuple(c / clock * 1e3 for c in cycles)
    energy = tuple(t * profile.power.load_w for t in latency)  # ms x W = mJ
    sources = {k: profile.sources[k] for k in ("mcu.cycles_per_mac", "mcu.cycles_per_element", "cpu.clock_ghz",
                                               "power.load_w") if k in profile.sources}
    return McuEstimate(total.macs, total.elements, calls, by_role, dict(sorted(total.by_op.items())),
                       _solver_flops(manifest, state_size), clock, spec.cycles_per_mac, spec.cycles_per_element,
                       cycles, latency, energy, profile.power.load_w, spec.kernels, sources)
