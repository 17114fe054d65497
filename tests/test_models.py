"""Models: the paper's parameter counts, output shapes, config round trip, spiral field, bad configs."""

from __future__ import annotations

import pytest
import torch

from edgeode.errors import ConfigError, TableauError
from edgeode.train.models import (
    VGG,
    ModelConfig,
    ODEBlock,
    ODENet,
    ResNet,
    SpiralODE,
    build_model,
    count_parameters,
)


def test_paper_parameter_counts_on_28x28() -> None:
    # torchdiffeq examples/odenet_mnist.py layout; the paper's 0.22M / 0.60M use residual downsampling (see README).
    assert count_parameters(build_model(ModelConfig(arch="odenet"))) == 208_266
    assert count_parameters(build_model(ModelConfig(arch="rknet"))) == 208_266
    assert count_parameters(build_model(ModelConfig(arch="resnet", res_blocks=6))) == 576_778


@pytest.mark.parametrize("arch, cls", [("odenet", ODENet), ("rknet", ODENet), ("resnet", ResNet), ("vgg", VGG)])
def test_classifier_shapes(arch: str, cls: type) -> None:
    cfg = ModelConfig(arch=arch, image_size=8, width=8, downsample=1, steps=2, vgg_widths=(8, 16))
    model = build_model(cfg)
    assert isinstance(model, cls)
    out = model(torch.randn(3, 1, 8, 8))
    assert out.shape == (3, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    if arch in ("odenet", "rknet"):
        assert isinstance(model.block, ODEBlock)
        assert model.block.adjoint is (arch == "odenet")
        assert model.block.tableau.name == "rk4"


def test_spiral_model_trajectory_and_field() -> None:
    model = build_model(ModelConfig(arch="spiral", steps=20, t1=0.5))
    assert isinstance(model, SpiralODE)
    y0 = torch.randn(5, 2)
    out = model(y0)
    assert out.shape == (21, 5, 2)
    assert torch.equal(out[0], y0)
    # autonomous field on y**3
    t = torch.tensor(0.3)
    assert torch.equal(model.field(t, y0), model.field(torch.tensor(0.0), y0))


def test_config_round_trip_and_errors() -> None:
    cfg = ModelConfig(arch="vgg", vgg_widths=[8, 16])
    again = ModelConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.vgg_widths == (8, 16)
    with pytest.raises(ConfigError, match="choose one of: odenet"):
        ModelConfig(arch="transformer")
    with pytest.raises(TableauError, match="choose one of"):
        ModelConfig(solver="dopri5")
    with pytest.raises(ConfigError, match="steps must be a positive integer"):
        ModelConfig(steps=0)
    with pytest.raises(ConfigError, match="unknown model option"):
        ModelConfig.from_dict({"arch": "odenet", "depth": 3})
    with pytest.raises(ConfigError, match="too many"):
        build_model(ModelConfig(arch="vgg", image_size=8, vgg_widths=(8, 8, 8, 8)))
