"""Export-time rewrite of the paper's time-channel convolution (no retraining, exact up to rounding).

:class:`~edgeode.train.fields.ConcatConv2d` appends t as a constant extra input channel and runs one
convolution over ``C + 1`` channels. Because that channel is ``t`` everywhere (and zero in the padding),
the convolution is linear in it::

    conv([t·1, h]; W, b) = conv(h; W[:, 1:], b) + t · M,     M = conv(1; W[:, :1], bias=0)

where ``1`` is a one-channel image of ones with h's spatial size, convolved with the same stride and
padding, so that M (shape ``[C_out, H_out, W_out]``) carries the exact border values. The rewritten
field has a ``C``-channel convolution (fast blocked kernels in ONNX Runtime / XNNPACK, see DESIGN.md)
plus one multiply-add per call.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from edgeode.errors import ExportError
from edgeode.train.fields import ConcatConv2d

__all__ = ["TimeMapConv2d", "rewrite_time_channel", "max_rewrite_error"]


class TimeMapConv2d(nn.Module):
    """``conv(h; W[:, 1:], b) + t * M``: the rewritten :class:`ConcatConv2d` for one input size."""

    def __init__(self, source: ConcatConv2d, height: int, width: int):
        super().__init__()
        conv = source.conv
        self.conv = nn.Conv2d(conv.in_channels - 1, conv.out_channels, conv.kernel_size, stride=conv.stride,
                              padding=conv.padding, dilation=conv.dilation, groups=1, bias=conv.bias is not None)
        if conv.groups != 1:
            raise ExportError("time-channel rewrite supports only groups=1 convolutions; export without the rewrite")
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight[:, 1:])
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)
            ones = torch.ones(1, 1, height, width, dtype=conv.weight.dtype)
            tmap = F.conv2d(ones, conv.weight[:, :1], None, conv.stride, conv.padding, conv.dilation)
        self.register_buffer("tmap", tmap)  # [1, C_out, H_out, W_out]

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.conv(h) + t * self.tmap


def rewrite_time_channel(field: nn.Module, state_shape: tuple[int, ...]) -> tuple[nn.Module, int]:
    """A deep copy of ``field`` with every :class:`ConcatConv2d` replaced by :class:`TimeMapConv2d`.

    ``state_shape`` is the shape of h (``[B, C, H, W]``); the spatial size of each ConcatConv2d's
    input is found by running the field once. Returns the new field and the number of convs replaced
    (0 for fields without ConcatConv2d, e.g. MLP fields: then the copy equals the original).
    """
    field = copy.deepcopy(field).eval()
    sizes: dict[str, tuple[int, int]] = {}
    hooks = []
    for name, mod in field.named_modules():
        if isinstance(mod, ConcatConv2d):
            def hook(_mod, args, _name=name):
                sizes[_name] = tuple(args[1].shape[-2:])
            hooks.append(mod.register_forward_pre_hook(hook))
    if not hooks:
        return field, 0
    try:
        with torch.no_grad():
            field(torch.zeros(()), torch.zeros(state_shape))
    finally:
        for h in hooks:
            h.remove()
    for name, (height, width) in sizes.items():
        parent_name, _, attr = name.rpartition(".")
        parent = field.get_submodule(parent_name) if parent_name else field
        setattr(parent, attr, TimeMapConv2d(getattr(parent, attr), height, width))
    return field, len(sizes)


def max_rewrite_error(original: nn.Module, rewritten: nn.Module, h: torch.Tensor, times: tuple[float, ...]) -> float:
    """Max abs difference of the two fields over the given states and times (a check, ~1e-6 expected)."""
    worst = 0.0
    with torch.no_grad():
        for t in times:
            tt = torch.tensor(float(t), dtype=h.dtype)
            worst = max(worst, float((original(tt, h) - rewritten(tt, h)).abs().max()))
    return worst
