"""Learned vector fields f(t, h) for ODE blocks.

The convolutional field follows the paper's MNIST ODE-Net as implemented in torchdiffeq's
``examples/odenet_mnist.py`` (Chen et al. 2018, §7.1): GroupNorm, ReLU, ConcatConv 3x3 (t fed as an
extra input channel), GroupNorm, ReLU, ConcatConv, GroupNorm.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["norm", "ConcatConv2d", "ConvField", "MLPField", "SpiralField"]


def norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with min(32, channels) groups, as in torchdiffeq's MNIST example."""
    return nn.GroupNorm(min(32, channels), channels)


class ConcatConv2d(nn.Module):
    """A 2-D convolution whose input is h with the time t appended as a constant channel."""

    def __init__(self, dim_in: int, dim_out: int, ksize: int = 3, stride: int = 1, padding: int = 1, bias: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(dim_in + 1, dim_out, ksize, stride=stride, padding=padding, bias=bias)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        tt = torch.ones_like(h[:, :1, :, :]) * t
        return self.conv(torch.cat([tt, h], dim=1))


class ConvField(nn.Module):
    """The paper's MNIST vector field on feature maps of ``width`` channels."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.norm1 = norm(width)
        self.conv1 = ConcatConv2d(width, width, 3, 1, 1)
        self.norm2 = norm(width)
        self.conv2 = ConcatConv2d(width, width, 3, 1, 1)
        self.norm3 = norm(width)
        self.relu = nn.ReLU()

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(h))
        out = self.conv1(t, out)
        out = self.relu(self.norm2(out))
        out = self.conv2(t, out)
        return self.norm3(out)


class MLPField(nn.Module):
    """A small MLP field on flat states: [h, t] -> hidden (tanh) -> ... -> dh/dt."""

    def __init__(self, dim: int, hidden: int = 50, layers: int = 2):
        super().__init__()
        mods: list[nn.Module] = []
        width_in = dim + 1
        for _ in range(layers - 1):
            mods += [nn.Linear(width_in, hidden), nn.Tanh()]
            width_in = hidden
        mods.append(nn.Linear(width_in, dim))
        self.net = nn.Sequential(*mods)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        tt = torch.ones_like(h[:, :1]) * t
        return self.net(torch.cat([h, tt], dim=1))


class SpiralField(nn.Module):
    """The field of torchdiffeq's ``examples/ode_demo.py``: MLP on y**3 (2 -> 50 -> 2, tanh).

    It is autonomous (ignores t), as the true spiral dynamics dy/dt = (y**3) A are.
    """

    def __init__(self, hidden: int = 50):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 2))

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.net(h**3)
