"""``edgeode train --random-steps LO:HI`` (the fixed-step analogue of STEER, Ghosh et al. 2020): the seeded
per-batch draw, one real tiny training run that records it and keeps the nominal steps, the config
round-trip, and typed errors for bad specs."""

from __future__ import annotations

import json

import pytest
import torch

from edgeode.cli import main
from edgeode.errors import ConfigError
from edgeode.train.checkpoint import TrainConfig, load_run
from edgeode.train.models import ModelConfig
from edgeode.train.random_steps import MAX_RANDOM_STEPS, StepRange, parse_step_range


def test_draws_are_seeded_and_cover_the_range():
    r = parse_step_range("2:5")
    assert r == StepRange(2, 5) and parse_step_range("3") == StepRange(3, 3)
    gen1, gen2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    seq1, seq2 = [r.draw(gen1) for _ in range(200)], [r.draw(gen2) for _ in range(200)]
    assert seq1 == seq2 and seq1[0] == r.draw(torch.Generator().manual_seed(7))
    assert set(seq1) == {2, 3, 4, 5}  # 200 uniform draws of 4 values: each missing has probability < 1e-24


@pytest.mark.parametrize("spec, words", [("5:2", "greater than HI"), ("0:3", ">= 1"), ("-1:3", ">= 1"),
                                         (f"1:{10**12}", f"above {MAX_RANDOM_STEPS}"), ("a:b", "two integers"),
                                         ("1:2:3", "more than one"), ("", "two integers")])
def test_bad_specs_are_typed_errors(spec, words):
    with pytest.raises(ConfigError, match=words):
        parse_step_range(spec)


def test_config_checks_and_round_trip():
    cfg = TrainConfig(model=ModelConfig(arch="rknet"), random_steps=(2, 6))
    assert cfg.random_steps == [2, 6] and cfg.step_range == StepRange(2, 6)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert TrainConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k != "random_steps"}).random_steps is None
    for bad, words in (([3, 1], "greater than HI"), ([1, 2, 3], r"\[LO, HI\]"), ("2:6", r"\[LO, HI\]")):
        with pytest.raises(ConfigError, match=words):
            TrainConfig(model=ModelConfig(arch="rknet"), random_steps=bad)
    for arch in ("resnet", "spiral"):
        with pytest.raises(ConfigError, match="drop --random-steps"):
            TrainConfig(model=ModelConfig(arch=arch), data="spiral" if arch == "spiral" else "digits",
                        random_steps=[1, 2])
    assert main(["train", "-o", "/nonexistent/x", "--random-steps", "9:1", "-q"]) == 2
    assert main(["train", "-o", "/nonexistent/x", "--model", "odernn", "--random-steps", "1:2", "-q"]) == 2


def test_train_with_random_steps(tmp_path, capsys):
    """A real tiny run: config.json records the range, each epoch's mean drawn count lies in it (and is not the
    nominal count alone, 16 batches over 1..3), the saved model solves with the nominal --steps."""
    out = tmp_path / "run"
    code = main(["train", "-o", str(out), "--model", "rknet", "--random-steps", "1:3", "--steps", "7", "--epochs", "1",
                 "--train-limit", "256", "--batch-size", "16", "--width", "8", "--threads", "1", "-q"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["random_steps"] == [1, 3]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["random_steps"] == [1, 3]
    assert 1 < metrics["history"][0]["train_steps_mean"] < 3
    run = load_run(out)
    assert run.model.block.steps == 7 and run.config.model.steps == 7
