"""Torch modules that give each exported artifact its exact inputs and outputs.

Each artifact of a bundle is a small module wrapped around parts of a trained model: the ODE-Net's
encoder, its vector field (``(t, h) -> dh``), its head, or a dynamics trajectory with the solve
unrolled for a fixed number of steps (the spiral's TFLite ``fused`` artifact). A classifier's fused
graph is built from the exported parts instead: an ONNX ``Loop`` (:mod:`edgeode.export.fused_onnx`),
a TFLite ``WHILE`` (:mod:`edgeode.export.fused_tflite`).

``Named`` returns a ``{name: tensor}`` dict so that litert-torch names the TFLite signature outputs
(``dh``, ``logits``, ...) the same as the ONNX graph outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeode.tableaus import ButcherTableau
from edgeode.train.solver import solve

__all__ = ["Named", "named", "Field", "UnrolledTrajectory", "graph_zero"]


class Named(nn.Module):
    """``module(*args)`` returned as ``{name: output}`` (TFLite signature output names)."""

    def __init__(self, module: nn.Module, name: str):
        super().__init__()
        self.module = module
        self.name = name

    def forward(self, *args: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.name: self.module(*args)}


class _NamedX(Named):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.name: self.module(x)}


class _NamedH(Named):
    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.name: self.module(h)}


class _NamedY0(Named):
    def forward(self, y0: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.name: self.module(y0)}


class _NamedTH(Named):
    def forward(self, t: torch.Tensor, h: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.name: self.module(t, h)}


class _NamedXH(Named):  # an ODE-RNN's GRU cell: (observation, state) -> state
    def forward(self, x: torch.Tensor, h: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.name: self.module(x, h)}


_NAMED = {("x",): _NamedX, ("h",): _NamedH, ("y0",): _NamedY0, ("t", "h"): _NamedTH, ("x", "h"): _NamedXH}


def named(module: nn.Module, inputs: tuple[str, ...], output: str) -> Named:
    """Wrap ``module`` so that its keyword inputs are ``inputs`` and its output is ``{output: ...}``.

    litert-torch names the TFLite signature inputs after the parameters of ``forward``.
    """
    return _NAMED[tuple(inputs)](module, output)


class Field(nn.Module):
    """The vector field as a module with positional inputs ``(t, h)`` (t a 0-dim tensor)."""

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.field(t, h)


def graph_zero(x: torch.Tensor) -> torch.Tensor:
    """A ``[1]`` zero computed from the model's input ``x``: ``relu(-|x[0]|)``, exactly 0 for a finite input.

    In an unrolled solve every stage time is a Python constant, so the converter folds the field's
    time term ``t * M`` (:class:`~edgeode.export.rewrite.TimeMapConv2d`, ``M`` of the conv's output
    size) into one new constant per stage time: the file grows with the number of steps. Adding this
    zero to t makes each stage time a graph value, so ``M`` is stored once and ``t * M`` is computed
    in the graph. The converter proves ``a - a`` and ``a * 0`` to be zero and folds them (measured:
    the constants came back); it does not see through ``relu(-|a|)``.
    """
    return torch.relu(-x.reshape(-1)[:1].abs())


class _GraphTimeField(nn.Module):
    """``field(t + zero, h)``: the field with its time made a graph value (see :func:`graph_zero`)."""

    def __init__(self, field: nn.Module, zero: torch.Tensor):
        super().__init__()
        self.field, self.zero = field, zero

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.field(t + self.zero, h)


class UnrolledTrajectory(nn.Module):
    """y0 [B, D] -> states on the uniform grid ``[steps + 1, B, D]`` (dynamics models)."""

    def __init__(self, field: nn.Module, tableau: ButcherTableau, t0: float, t1: float, steps: int):
        super().__init__()
        self.field = field
        self.tableau, self.t0, self.t1, self.steps = tableau, t0, t1, steps

    def forward(self, y0: torch.Tensor) -> torch.Tensor:
        field = _GraphTimeField(self.field, graph_zero(y0))
        return solve(field, y0, self.tableau, self.t0, self.t1, self.steps, trajectory=True)
