"""ImageNet-scale networks (224x224, 1000 classes) for footprint comparisons, random weights.

torchvision does not install beside our CPU torch, so the standard architectures are defined here:

* **ResNet-18 / ResNet-50** (He et al. 2016, "Deep Residual Learning for Image Recognition",
  Table 1): 7x7/2 stem + 3x3/2 max pool, four stages of BasicBlocks [2, 2, 2, 2] or Bottlenecks
  [3, 4, 6, 3] (widths 64-512, expansion 4 for Bottleneck, stride 2 in the first block of stages
  2-4, 1x1 projection shortcuts where the shape changes), global average pool, FC 1000.
  11,689,512 and 25,557,032 parameters, as torchvision's.
* **VGG-16** (Simonyan & Zisserman 2015, configuration D): 13 3x3 convs in five stages with 2x2 max
  pooling, then FC 4096-4096-1000 on 7x7x512. 138,357,544 parameters.
* **ODE counterparts** (in the spirit of Chen et al. 2018, §7.1, who replace the residual blocks of
  a ResNet by one ODE block): in every stage the first block (which changes resolution and width)
  is kept and the stage's remaining residual blocks are replaced by ONE ODE block whose vector
  field is one residual branch of that stage (the same layers as a block without its shortcut:
  ``f(h) = branch(h)``, autonomous), solved by a fixed-step scheme. ODE-ResNet-18 has the same
  parameters as ResNet-18 (one block per stage is replaced by one field) but ``stages x steps``
  field evaluations; ODE-ResNet-50 drops 2+3+5+2 = 12 bottlenecks' parameters.

These are for counting (parameters, MACs, ONNX size, memory), never trained here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from edgeode.tableaus import get_tableau
from edgeode.train.solver import solve

__all__ = ["IMAGENET_MODELS", "build_imagenet", "count_macs_torch", "ImagenetSpec"]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(cin, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width))
        self.shortcut = _shortcut(cin, width, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.branch(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        out = width * 4
        self.branch = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out))
        self.shortcut = _shortcut(cin, out, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.branch(x) + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BranchField(nn.Module):
    """f(t, h) = relu(branch(h)): one residual branch as an autonomous vector field."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.branch = block.branch

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.branch(h)


class StageODE(nn.Module):
    """One ODE block over [0, 1] with a fixed-step scheme (replaces a stage's identical blocks)."""

    def __init__(self, field: nn.Module, solver: str, steps: int):
        super().__init__()
        self.field = field
        self.tableau = get_tableau(solver)
        self.steps = steps

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return solve(self.field, h, self.tableau, 0.0, 1.0, self.steps)


class ResNetImagenet(nn.Module):
    def __init__(self, block: type, layers: tuple[int, ...], num_classes: int = 1000, ode: tuple[str, int] | None = None):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        stages, cin = [], 64
        for i, (n, width) in enumerate(zip(layers, (64, 128, 256, 512), strict=True)):
            blocks = [block(cin, width, 1 if i == 0 else 2)]
            cin = width * block.expansion
            if ode is None:
                blocks += [block(cin, width) for _ in range(n - 1)]
            elif n > 1:
                blocks.append(StageODE(BranchField(block(cin, width)), *ode))
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


class VGG16(nn.Module):
    CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in self.CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, 1, 1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                                        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                                        nn.Linear(4096, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class ODEVGG16(nn.Module):
    """VGG-16 with each stage's convs after the first replaced by one ODE block whose field is one
    3x3 conv + ReLU of the stage's width (stages 3-5 lose one conv each)."""

    def __init__(self, num_classes: int = 1000, ode: tuple[str, int] = ("rk4", 2)):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for stage in ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)):
            layers += [nn.Conv2d(c, stage[0], 3, 1, 1), nn.ReLU(inplace=True)]
            c = stage[0]
            field = _SeqField(nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.ReLU()))
            layers += [StageODE(field, *ode), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.classifier = VGG16(num_classes).classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _SeqField(nn.Module):
    def __init__(self, seq: nn.Module):
        super().__init__()
        self.seq = seq

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.seq(h)


@dataclass(frozen=True)
class ImagenetSpec:
    """One ImageNet-scale model: a name, a builder and what it is the counterpart of."""

    name: str
    build: Callable[[], nn.Module]
    family: str
    ode: bool


ODE_SCHEME = ("rk4", 2)  # 2 RK4 steps = 8 field evaluations per ODE block

IMAGENET_MODELS = (
    ImagenetSpec("resnet18", lambda: ResNetImagenet(BasicBlock, (2, 2, 2, 2)), "resnet18", False),
    ImagenetSpec("ode-resnet18", lambda: ResNetImagenet(BasicBlock, (2, 2, 2, 2), ode=ODE_SCHEME), "resnet18", True),
    ImagenetSpec("resnet50", lambda: ResNetImagenet(Bottleneck, (3, 4, 6, 3)), "resnet50", False),
    ImagenetSpec("ode-resnet50", lambda: ResNetImagenet(Bottleneck, (3, 4, 6, 3), ode=ODE_SCHEME), "resnet50", True),
    ImagenetSpec("vgg16", VGG16, "vgg16", False),
    ImagenetSpec("ode-vgg16", lambda: ODEVGG16(ode=ODE_SCHEME), "vgg16", True),
)


def build_imagenet(name: str) -> nn.Module:
    """The model called ``name`` (see ``IMAGENET_MODELS``), random weights, eval mode."""
    for spec in IMAGENET_MODELS:
        if spec.name == name:
            torch.manual_seed(0)
            return spec.build().eval()
    from edgeode.errors import ConfigError

    raise ConfigError(f"unknown ImageNet model {name!r}; choose one of {[s.name for s in IMAGENET_MODELS]}")


@dataclass
class TorchFootprint:
    parameters: int
    weights_mb: float
    macs: int
    largest_activation_mb: float


def count_macs_torch(model: nn.Module, size: int = 224) -> TorchFootprint:
    """Parameters, float32 weight MB, MACs (Conv2d and Linear, counted per call with forward hooks, so
    an ODE field counts once per evaluation) and the largest activation, for one 3x``size``^2 image."""
    macs = 0
    largest = 0

    def hook(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal macs, largest
        if isinstance(mod, nn.Conv2d):
            macs += out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, nn.Linear):
            macs += out.numel() * mod.in_features
        if isinstance(out, torch.Tensor):
            largest = max(largest, out.numel())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.ReLU,
                                                                                          nn.MaxPool2d))]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    return TorchFootprint(params, params * 4 / 2**20, macs, largest * 4 / 2**20)
