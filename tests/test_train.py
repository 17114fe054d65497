"""Training end to end: determinism, run directories, load_run round trip, CLI errors, and digits accuracy."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgeode.cli import main
from edgeode.errors import CheckpointError, ConfigError, ShapeError
from edgeode.train.checkpoint import TrainConfig, load_run, save_run
from edgeode.train.data import load_dataset
from edgeode.train.distributed import state_hash
from edgeode.train.models import ModelConfig
from edgeode.train.trainer import train

TINY = {"arch": "odenet", "image_size": 8, "width": 8, "downsample": 1, "steps": 2, "solver": "rk4"}


def _tiny(**over) -> TrainConfig:
    model = ModelConfig(**{**TINY, **over.pop("model", {})})
    return TrainConfig(**{"model": model, "data": "digits", "epochs": 1, "batch_size": 32, "lr": 3e-3,
                          "threads": 1, "train_limit": 256, **over})


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_same_seed_same_weights_and_run_files(tmp_path: Path) -> None:
    a = train(_tiny(), tmp_path / "a", progress=False)
    # a data set loaded by the caller (quickstart, compare) trains the same weights, and is left as it was
    digits = load_dataset("digits", seed=0)
    full = digits.x_train.shape[0]
    b = train(_tiny(), tmp_path / "b", progress=False, data=digits)
    assert digits.x_train.shape[0] == full > _tiny().train_limit
    c = train(_tiny(seed=1), tmp_path / "c", progress=False)
    assert state_hash(a.model) == state_hash(b.model) != state_hash(c.model)
    with pytest.raises(ConfigError, match="seed 0, but the run needs 'digits' with seed 1"):
        train(_tiny(seed=1), tmp_path / "d", progress=False, data=digits)
    assert not (tmp_path / "d").exists()
    wa = torch.load(tmp_path / "a" / "weights.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "weights.pt", weights_only=True)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["config.json", "dataset.json", "metrics.json",
                                                                  "weights.pt"]
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["parameters"] > 0 and metrics["train_time_s"] > 0 and metrics["gradient"] == "adjoint"
    assert metrics["weights_sha256"] == state_hash(a.model)
    assert _leftovers(tmp_path) == []


def test_load_run_round_trip(tmp_path: Path) -> None:
    result = train(_tiny(model={"arch": "rknet", "adjoint": False}), tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    assert run.config == result.config and run.config.model.arch == "rknet"
    assert not run.model.training
    data = load_dataset(run.config.data, run.config.data_path, run.config.seed)
    assert run.dataset_info["preprocess"] == data.preprocess and run.input_shape == (1, 8, 8)
    assert run.dataset_info["labels"] == data.labels
    with torch.no_grad():
        expected = result.model(data.x_test)
    assert torch.equal(run.predict(data.x_test), expected)
    accuracy = int((expected.argmax(1) == data.y_test).sum()) / len(data.y_test)
    assert abs(accuracy - run.metrics["test_accuracy"]) < 1e-9
    with pytest.raises(ShapeError, match=r"expects \[batch, 1, 8, 8\]"):
        run.predict(torch.zeros(2, 1, 28, 28))


def test_save_run_is_atomic_and_refuses_to_clobber(digits_run, tmp_path: Path) -> None:
    run = load_run(digits_run.path)
    save_run(tmp_path / "run", run.model, run.config, run.metrics, run.dataset_info)
    with pytest.raises(ConfigError, match="--overwrite"):
        save_run(tmp_path / "run", run.model, run.config, {"x": 1})
    save_run(tmp_path / "run", run.model, run.config, {"x": 1}, overwrite=True)
    assert load_run(tmp_path / "run").metrics == {"x": 1}
    assert _leftovers(tmp_path) == []
    (tmp_path / "run" / "weights.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_run(tmp_path / "run")
    torch.save(run.model, tmp_path / "run" / "weights.pt")  # the whole module, pickled, not a state dict
    with pytest.raises(CheckpointError, match=r"contains pickled Python objects.*weights_only=True.*state_dict\(\)"):
        load_run(tmp_path / "run")
    (tmp_path / "run" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        load_run(tmp_path / "run")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_run(tmp_path / "missing")


def test_spiral_and_resnet_train(spiral_run, tmp_path: Path) -> None:
    spiral = load_run(spiral_run.path)  # the shared spiral run (tests/conftest.py)
    assert spiral.metrics["test_loss"] > 0 and "test_accuracy" not in spiral.metrics
    assert spiral.dataset_info["kind"] == "dynamics"
    resnet = _tiny(model={"arch": "resnet", "res_blocks": 2})
    assert train(resnet, tmp_path / "resnet", progress=False).metrics["gradient"] == "backprop"
    bad = TrainConfig(model=ModelConfig(arch="spiral", steps=30, t1=0.5), data="spiral", threads=1)
    with pytest.raises(ConfigError, match="multiple of 20"):
        train(bad, tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists() and _leftovers(tmp_path) == []


def test_shape_mismatch_is_a_shape_error(tmp_path: Path) -> None:
    with pytest.raises(ShapeError, match=r"\[1, 8, 8\].*\[1, 28, 28\]"):
        train(_tiny(model={"image_size": 28}), tmp_path / "run", progress=False)
    assert list(tmp_path.iterdir()) == []


def _cli(capsys, *args: str) -> tuple[int, str]:
    code = main(["train", *args])
    return code, capsys.readouterr().err


def test_cli_bad_inputs(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "run")
    cases = [
        (["--solver", "dopri5"], "choose one of: euler, midpoint, heun, rk4, rk4_38"),
        (["--model", "transformer"], "choose one of: odenet, rknet, resnet, vgg, spiral"),
        (["--data", "cifar"], "choose one of: digits, mnist, spiral"),
        (["--steps", "0"], "steps must be a positive integer"),
        (["--epochs", "-1"], "epochs must be a positive integer"),
        (["--data", "mnist"], "--data-path"),
        (["--data", "mnist", "--data-path", str(tmp_path / "nope")], "does not exist"),
        (["--data-path", str(tmp_path / "nope")], "--data-path is read only with --data mnist"),
        (["--model", "rknet", "--adjoint"], "--model odenet"),
        (["--model", "spiral", "--data", "digits"], "does not fit"),
        (["--width", "48"], "--width 32 or 64"),  # GroupNorm's groups (was a ValueError traceback)
    ]
    for extra, message in cases:
        code, err = _cli(capsys, "-o", out, "-q", *extra)
        assert code == 2, (extra, err)
        assert message in err, (extra, err)
        assert not Path(out).exists() and _leftovers(tmp_path) == [], extra


def test_cli_output_dir_checks(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = _cli(capsys, "-o", str(blocker / "run"), "-q")
    assert code == 2 and "choose a writable location" in err
    code, err = _cli(capsys, "-o", str(blocker), "-q")
    assert code == 2 and "is a file" in err
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("old")
    code, err = _cli(capsys, "-o", str(full), "-q")
    assert code == 2 and "--overwrite" in err and (full / "keep.txt").exists()
    # a failing run with --overwrite leaves the old directory untouched
    code, err = _cli(capsys, "-o", str(full), "-q", "--overwrite", "--data", "mnist")
    assert code == 2 and (full / "keep.txt").exists()
    code, _ = _cli(capsys, "-o", str(full), "-q", "--overwrite", "--width", "8", "--steps", "1", "--epochs", "1",
                   "--train-limit", "64", "--threads", "1")
    assert code == 0 and not (full / "keep.txt").exists() and (full / "weights.pt").exists()
    assert _leftovers(tmp_path) == []


def test_cli_defaults_per_model(tmp_path: Path, capsys) -> None:
    code, _ = _cli(capsys, "-o", str(tmp_path / "rk"), "-q", "--model", "rknet", "--width", "8", "--steps", "1",
                   "--epochs", "1", "--train-limit", "64", "--solver", "euler")
    assert code == 0
    cfg = json.loads((tmp_path / "rk" / "config.json").read_text())
    assert cfg["model"]["adjoint"] is False and cfg["model"]["solver"] == "euler"
    assert cfg["model"]["image_size"] == 8 and cfg["model"]["downsample"] == 1 and cfg["data"] == "digits"


@pytest.mark.slow
def test_odenet_digits_reaches_90_percent(tmp_path: Path, capsys) -> None:
    """The README's default: ODE-Net (adjoint, RK4) on 8x8 digits reaches >= 90% test accuracy in about a minute."""
    start = time.perf_counter()
    code, err = _cli(capsys, "-o", str(tmp_path / "run"), "-q")
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    print(f"digits ODE-Net: {metrics['test_accuracy']:.3f} in {time.perf_counter() - start:.1f} s")
    assert metrics["test_accuracy"] >= 0.90
    assert metrics["gradient"] == "adjoint"


def test_cli_module_does_not_import_torch() -> None:
    """`edgeode --help` must work without loading torch: the train command imports it only when it runs."""
    code = ("import argparse, sys, edgeode.commands.train as t; t.add_parser(argparse.ArgumentParser().add_subparsers()); "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'heavy import at module level'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
