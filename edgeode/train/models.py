"""The models of the paper's MNIST experiment and its baselines, and the spiral dynamics model.

Following Chen et al. 2018 (§7.1, Table 1) as implemented in torchdiffeq's ``examples/odenet_mnist.py``:

* **ODE-Net**: downsampling (Conv 1->w 3x3, GroupNorm, ReLU, [Conv w->w 4x4 stride 2, GroupNorm, ReLU]
  x (downsample-1), Conv w->w 4x4 stride 2) -> one :class:`ODEBlock` over [t0, t1] around
  :class:`~edgeode.train.fields.ConvField` -> GroupNorm, ReLU, global average pool, Linear w->classes.
  Trained with the adjoint method. With w=64 and 28x28 inputs: 208,266 parameters.
* **RK-Net**: the same network trained by backprop through the solver's operations.
* **ResNet**: the same downsampling and head around ``res_blocks`` pre-activation residual blocks
  (6 by default: 576,778 parameters). The paper's 0.22M / 0.60M counts use a residual downsampling
  variant; ours are the torchdiffeq example's plain-conv downsampling (see README).
* **VGG**: stages of two 3x3 conv + BatchNorm + ReLU, each followed by 2x2 max pooling, then
  flatten -> Linear -> ReLU -> Linear. Widths ``vgg_widths`` (default 64, 128, 256: 28->14->7->3).
* **Spiral**: y0 -> trajectory of dy/dt = f(y) with f an MLP on y**3 (torchdiffeq ``examples/ode_demo.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from edgeode.errors import ConfigError
from edgeode.names import ARCHS
from edgeode.tableaus import get_tableau
from edgeode.train.fields import ConvField, SpiralField, norm
from edgeode.train.options import checked_options
from edgeode.train.solver import VectorField, check_steps, solve

__all__ = ["ARCHS", "ModelConfig", "ODEBlock", "ODENet", "ResNet", "VGG", "SpiralODE", "build_model", "count_parameters"]


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model (saved as part of a run's ``config.json``)."""

    arch: str = "odenet"
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    width: int = 64
    downsample: int = 2
    res_blocks: int = 6
    vgg_widths: tuple[int, ...] = (64, 128, 256)
    solver: str = "rk4"
    steps: int = 10
    t0: float = 0.0
    t1: float = 1.0
    adjoint: bool = True
    hidden: int = 50

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown model {self.arch!r}; choose one of: {', '.join(ARCHS)}")
        get_tableau(self.solver)
        check_steps(self.steps)
        self.vgg_widths = tuple(self.vgg_widths)
        for name in ("in_channels", "image_size", "num_classes", "width", "downsample", "res_blocks", "hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model option {name} must be a positive integer, got {value!r}")
        if not self.vgg_widths or any((not isinstance(w, int)) or w < 1 for w in self.vgg_widths):
            raise ConfigError(f"vgg_widths must be positive integers, got {self.vgg_widths!r}")
        if not self.t1 > self.t0:
            raise ConfigError(f"t1 must be greater than t0, got t0={self.t0}, t1={self.t1}")
        if self.arch in ("odenet", "rknet", "resnet") and self.width > 32 and self.width % 32:
            raise ConfigError(f"width {self.width}: the GroupNorm layers use min(32, width) groups, so a width above "
                              f"32 must be a multiple of 32 (e.g. --width {32 * (self.width // 32)} or "
                              f"{32 * (self.width // 32 + 1)})")
        if self.arch == "rknet":
            self.adjoint = False  # RK-Net is the ODE-Net trained by backprop through the solver

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vgg_widths"] = list(self.vgg_widths)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return cls(**checked_options(cls, data, "model"))


class ODEBlock(nn.Module):
    """h(t0) -> h(t1) by a fixed-step solve of dh/dt = field(t, h).

    ``adjoint=True`` trains with the adjoint method (:func:`edgeode.train.adjoint.odeint_adjoint`,
    memory constant in ``steps``); ``False`` backpropagates through the solver's operations.

    ``regularisation`` (set by the trainer, :mod:`edgeode.train.regularisers`): while training with
    gradients, the solve also integrates the kinetic / Jacobian penalties on the same steps and tableau and
    leaves them in ``reg_terms`` for the loss; evaluation and export solve as before.
    """

    def __init__(self, field: nn.Module, solver: str = "rk4", steps: int = 10, t0: float = 0.0, t1: float = 1.0,
                 adjoint: bool = True):
        super().__init__()
        self.field = field
        self.tableau = get_tableau(solver)
        self.steps = check_steps(steps)
        self.t0 = float(t0)
        self.t1 = float(t1)
        self.adjoint = bool(adjoint)
        self.regularisation = None  # a Regularisation while training with --reg
        self.reg_terms = None  # the RegTerms of the last regularised forward

    def forward(self, h0: torch.Tensor, trajectory: bool = False) -> torch.Tensor:
        reg = self.regularisation
        if reg is not None and reg.active and self.training and torch.is_grad_enabled():
            from edgeode.train.regularisers import regularised_solve

            out, self.reg_terms = regularised_solve(self.field, h0, self.tableau, reg, self.t0, self.t1, self.steps,
                                                    trajectory=trajectory, adjoint=self.adjoint)
            return out
        if self.adjoint and torch.is_grad_enabled():
            from edgeode.train.adjoint import odeint_adjoint

            return odeint_adjoint(self.field, h0, self.tableau, self.t0, self.t1, self.steps, trajectory=trajectory)
        return solve(self.field, h0, self.tableau, self.t0, self.t1, self.steps, trajectory=trajectory)


def _downsampling(in_channels: int, width: int, downsample: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, 1)]
    for _ in range(downsample - 1):
        layers += [norm(width), nn.ReLU(), nn.Conv2d(width, width, 4, 2, 1)]
    layers += [norm(width), nn.ReLU(), nn.Conv2d(width, width, 4, 2, 1)]
    return nn.Sequential(*layers)


def _head(width: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(norm(width), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(width, num_classes))


class ODENet(nn.Module):
    """encoder -> ODE block -> head. Attributes ``encoder``, ``block`` and ``head`` are what export splits."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.encoder = _downsampling(cfg.in_channels, cfg.width, cfg.downsample)
        self.block = ODEBlock(ConvField(cfg.width), cfg.solver, cfg.steps, cfg.t0, cfg.t1, adjoint=cfg.adjoint)
        self.head = _head(cfg.width, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.encoder(x)))


class ResBlock(nn.Module):
    """Pre-activation residual block (torchdiffeq's MNIST example): h + conv(relu(norm(conv(relu(norm(h))))))."""

    def __init__(self, width: int):
        super().__init__()
        self.norm1 = norm(width)
        self.conv1 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.norm2 = norm(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.relu = nn.ReLU()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.norm1(h)))
        out = self.conv2(self.relu(self.norm2(out)))
        return h + out


class ResNet(nn.Module):
    """The ODE-Net's downsampling and head around ``res_blocks`` residual blocks."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.encoder = _downsampling(cfg.in_channels, cfg.width, cfg.downsample)
        self.blocks = nn.Sequential(*[ResBlock(cfg.width) for _ in range(cfg.res_blocks)])
        self.head = _head(cfg.width, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.encoder(x)))


class VGG(nn.Module):
    """VGG-style baseline: per stage two (3x3 conv, BatchNorm, ReLU), then 2x2 max pool; then an MLP."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c, size = cfg.in_channels, cfg.image_size
        for w in cfg.vgg_widths:
            layers += [nn.Conv2d(c, w, 3, 1, 1), nn.BatchNorm2d(w), nn.ReLU(),
                       nn.Conv2d(w, w, 3, 1, 1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)]
            c, size = w, size // 2
        if size < 1:
            raise ConfigError(
                f"vgg_widths has {len(cfg.vgg_widths)} pooling stages, too many for {cfg.image_size}x{cfg.image_size} "
                "inputs; use fewer stages"
            )
        self.features = nn.Sequential(*layers)
        hidden = 2 * c
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c * size * size, hidden), nn.ReLU(),
                                        nn.Linear(hidden, cfg.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class SpiralODE(nn.Module):
    """Dynamics model: y0 [B, 2] -> states on the uniform grid [steps + 1, B, 2] over [t0, t1]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.block = ODEBlock(SpiralField(cfg.hidden), cfg.solver, cfg.steps, cfg.t0, cfg.t1, adjoint=cfg.adjoint)

    @property
    def field(self) -> VectorField:
        return self.block.field

    def forward(self, y0: torch.Tensor) -> torch.Tensor:
        return self.block(y0, trajectory=True)


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the model a config describes (``rknet`` is an ODE-Net with ``adjoint=False``)."""
    if cfg.arch in ("odenet", "rknet"):
        return ODENet(cfg)
    if cfg.arch == "resnet":
        return ResNet(cfg)
    if cfg.arch == "vgg":
        return VGG(cfg)
    return SpiralODE(cfg)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
