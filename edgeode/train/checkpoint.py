"""Run directories: what a training run leaves behind, and how to load it again.

A run directory holds::

    config.json    the TrainConfig (model config included) -- enough to rebuild the model
    metrics.json   test_accuracy (classifiers, 0..1) or test_loss (dynamics), train time, parameters, ...
    dataset.json   the data set summary: labels, preprocessing, input shape, split (Dataset.describe())
    weights.pt     the model's state_dict (loaded with torch.load(..., weights_only=True))

Runs are written atomically: everything goes into a temporary directory beside the target, which
is renamed into place only when complete (:func:`save_run`), so a crash never leaves half a run.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeode.errors import CheckpointError, ConfigError, ShapeError, did_you_mean
from edgeode.fsutil import atomic_write_json, commit_dir, discard_dir, make_staging_dir
from edgeode.names import SCHEDULES
from edgeode.train.data import DATASETS
from edgeode.train.models import ModelConfig, build_model
from edgeode.train.options import checked_options
from edgeode.train.random_steps import StepRange
from edgeode.train.regularisers import Regularisation

__all__ = [
    "TrainConfig",
    "TrainedRun",
    "save_run",
    "load_run",
    "prepare_run_dir",
    "commit_run_dir",
    "write_run_files",
    "CONFIG_NAME",
    "METRICS_NAME",
    "DATASET_NAME",
    "WEIGHTS_NAME",
]

CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.json"
DATASET_NAME = "dataset.json"
WEIGHTS_NAME = "weights.pt"


@dataclass
class TrainConfig:
    """A training run: the model, the data and the optimisation settings.

    ``threads`` is the number of torch intra-op threads (``None``: all cores, divided among the
    processes of a distributed run); it does not change results and is recorded for reference.
    ``train_limit`` trains on only the first N examples of the (seeded) training split, for smoke
    tests and quick looks; the test split is unchanged.
    ``schedule`` is the learning-rate schedule: ``constant`` (``lr`` throughout) or ``onecycle``
    (Smith & Topin 2017, arXiv 1708.07120: warm up to ``lr`` over the first 15% of the steps, then
    cosine-anneal to ``lr / 1e4``). The annealing ends training at a settled point instead of
    wherever the last constant-rate step left it, so the result moves less with seed and float
    rounding (see README, Quickstart).
    ``reg_kinetic`` / ``reg_jacobian`` weight the kinetic-energy and Jacobian-norm penalties of the ODE
    block's solve (Finlay et al. 2020, :mod:`edgeode.train.regularisers`; 0: off; backprop or adjoint).
    ``random_steps`` ``[LO, HI]``: each training batch solves with a step count drawn from LO..HI
    (:mod:`edgeode.train.random_steps`); ``model.steps`` stays the nominal count used by evaluation and export.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: str = "digits"
    data_path: str | None = None
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    weight_decay: float = 0.0
    threads: int | None = None
    train_limit: int | None = None
    schedule: str = "constant"
    reg_kinetic: float = 0.0
    reg_jacobian: float = 0.0
    random_steps: list[int] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        reg = self.regularisation  # validates the weights
        if reg.active:
            if self.model.arch not in ("odenet", "rknet", "spiral"):
                raise ConfigError(f"--reg penalises an ODE block's solve; --model {self.model.arch} has none "
                                  "(use odenet, rknet or spiral, or drop --reg)")
        if self.random_steps is not None:
            self.random_steps = self.step_range.to_list()
            if self.model.arch not in ("odenet", "rknet"):
                raise ConfigError(f"--random-steps varies an image ODE-Net's solve; --model {self.model.arch} "
                                  + ("has its targets on the grid of --steps" if self.model.arch == "spiral"
                                     else "has no ODE block") + " (use odenet or rknet, or drop --random-steps)")
        if self.data not in DATASETS:
            raise ConfigError(f"unknown data set {self.data!r}; choose one of: {', '.join(DATASETS)}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0 or self.lr != self.lr:
            raise ConfigError(f"lr (learning rate) must be a positive number, got {self.lr!r}")
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be a non-negative number, got {self.weight_decay!r}")
        if self.train_limit is not None and (not isinstance(self.train_limit, int) or self.train_limit < 1):
            raise ConfigError(f"train_limit must be a positive integer (or omitted for all), got {self.train_limit!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}{did_you_mean(self.schedule, SCHEDULES)}; choose "
                              f"one of: {', '.join(SCHEDULES)}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads must be a positive integer (or omitted for all cores), got {self.threads!r}")

    @property
    def regularisation(self) -> Regularisation:
        """The :class:`~edgeode.train.regularisers.Regularisation` of ``reg_kinetic`` / ``reg_jacobian``."""
        return Regularisation(self.reg_kinetic, self.reg_jacobian)

    @property
    def step_range(self) -> StepRange | None:
        """The :class:`~edgeode.train.random_steps.StepRange` of ``random_steps`` (``None``: the nominal steps)."""
        if self.random_steps is None:
            return None
        rs = self.random_steps
        if isinstance(rs, (str, bytes)) or not isinstance(rs, (list, tuple)) or len(rs) != 2:
            raise ConfigError(f"random_steps must be [LO, HI], got {rs!r} (e.g. --random-steps 2:8)")
        return StepRange(*rs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = checked_options(cls, data, "train")
        if "model" in data:
            data["model"] = ModelConfig.from_dict(data["model"])
        return cls(**data)


@dataclass
class TrainedRun:
    """A loaded run directory.

    ``model`` is in eval mode on the CPU. ``dataset_info`` is the data set summary written at
    training time (labels, preprocess, input_shape, ...); ``load_dataset(config.data,
    config.data_path, config.seed)`` rebuilds the data itself.
    """

    run_dir: Path
    model: nn.Module
    config: TrainConfig
    metrics: dict
    dataset_info: dict

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape, (C, H, W) or (D,)."""
        return tuple(self.dataset_info["input_shape"])

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Run the model on a batch ``x`` of shape ``[B, *input_shape]`` without gradients."""
        check_input_shape(x, self.input_shape)
        with torch.no_grad():
            return self.model(x)


def check_input_shape(x: torch.Tensor, expected: tuple[int, ...], where: str = "input") -> None:
    """Raise :class:`ShapeError` unless ``x`` is ``[B, *expected]``."""
    got = tuple(x.shape)
    if len(got) != len(expected) + 1 or got[1:] != tuple(expected):
        raise ShapeError(
            f"{where} has shape {list(got)}; the model expects [batch, {', '.join(map(str, expected))}]. "
            "Preprocess the data to the shape the model was trained on"
        )


def write_run_files(directory: str | Path, model: nn.Module, config: TrainConfig, metrics: dict,
                    dataset_info: dict | None = None) -> None:
    """Write the run files into an existing (temporary) directory."""
    directory = Path(directory)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = directory / f".{WEIGHTS_NAME}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, directory / WEIGHTS_NAME)
    atomic_write_json(directory / CONFIG_NAME, config.to_dict(), sort_keys=True)
    atomic_write_json(directory / METRICS_NAME, metrics, sort_keys=True)
    atomic_write_json(directory / DATASET_NAME, dataset_info or {}, sort_keys=True)


def prepare_run_dir(run_dir: str | Path, overwrite: bool = False) -> Path:
    """Check that ``run_dir`` may be written and create an empty temporary directory beside it.

    Called before training so that a bad output path fails in a second, not after the training.

    Raises:
        ConfigError: ``run_dir`` exists and is not empty (and ``overwrite`` is false), is a file,
            or its parent cannot be created or written.
    """
    run_dir = Path(run_dir).expanduser()
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"-o/--out {run_dir} is a file; give a directory path for the run")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
        raise ConfigError(
            f"-o/--out {run_dir} exists and is not empty; choose a new directory or pass --overwrite "
            "(the old run is replaced only after the new one succeeded)"
        )
    try:
        return make_staging_dir(run_dir)
    except OSError as exc:
        raise ConfigError(
            f"-o/--out {run_dir}: cannot create the run directory in {run_dir.absolute().parent} "
            f"({exc.strerror or exc}); choose a writable location"
        ) from None


def commit_run_dir(tmp_dir: str | Path, run_dir: str | Path, overwrite: bool = False) -> Path:
    """Move the finished temporary run directory into place (replacing an old run only if ``overwrite``)."""
    tmp_dir, run_dir = Path(tmp_dir), Path(run_dir).expanduser()
    if run_dir.exists() and not (run_dir.is_dir() and (overwrite or not any(run_dir.iterdir()))):
        discard_dir(tmp_dir)
        raise ConfigError(f"-o/--out {run_dir} appeared while training; pass --overwrite or choose a new directory")
    return commit_dir(tmp_dir, run_dir)


def save_run(run_dir: str | Path, model: nn.Module, config: TrainConfig, metrics: dict,
             dataset_info: dict | None = None, overwrite: bool = False) -> Path:
    """Write a run directory atomically (temporary directory beside it, then rename).

    Raises:
        ConfigError: ``run_dir`` exists and is not empty and ``overwrite`` is false, or is not writable.
    """
    tmp = prepare_run_dir(run_dir, overwrite)
    try:
        write_run_files(tmp, model, config, metrics, dataset_info)
        return commit_run_dir(tmp, run_dir, overwrite)
    except BaseException:
        discard_dir(tmp)
        raise


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(
            f"run directory {path.parent} has no {path.name}; it is not a complete edgeode run "
            "(train one with `edgeode train -o DIR`)"
        ) from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path} ({exc}); the run is corrupt: train it again") from None


def _load_weights(weights: Path) -> dict:
    """``torch.load(weights, weights_only=True)``, with a message that says why a file is refused."""
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors
        pickled = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if pickled:
            raise CheckpointError(
                f"{weights} contains pickled Python objects (the first is {pickled.group(1)}), not only tensors. "
                "edgeode loads weights only (torch.load(..., weights_only=True)), because unpickling can run any code. "
                "Re-save the weights as a state dict: torch.save(model.state_dict(), 'weights.pt')"
            ) from None
        first = next((line.strip() for line in str(exc).splitlines() if "error" in line.lower()), str(exc)[:200])
        raise CheckpointError(f"cannot load {weights} ({first}); the file is corrupt or truncated: train the run again "
                              "(or re-save it with torch.save(model.state_dict(), path))") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{weights} holds a {type(state).__name__}, not a state dict of tensors; re-save the weights with "
            "torch.save(model.state_dict(), 'weights.pt')"
        )
    return state


def load_run(run_dir: str | Path) -> TrainedRun:
    """Load a run directory: config, metrics, data set summary and the model (eval mode, CPU).

    Raises:
        CheckpointError: a file is missing or corrupt, or the weights do not fit the config's model.
    """
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist; train one with `edgeode train -o {run_dir}`")
    try:
        config = TrainConfig.from_dict(_read_json(run_dir / CONFIG_NAME))
    except ConfigError as exc:
        raise CheckpointError(f"{run_dir / CONFIG_NAME} is invalid: {exc}") from None
    metrics = _read_json(run_dir / METRICS_NAME)
    dataset_info = _read_json(run_dir / DATASET_NAME) if (run_dir / DATASET_NAME).exists() else {}
    weights = run_dir / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"run directory {run_dir} has no {WEIGHTS_NAME}; the run is incomplete: train it again")
    state = _load_weights(weights)
    model = build_model(config.model)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise CheckpointError(
            f"{weights} does not fit the model in {CONFIG_NAME} ({str(exc).splitlines()[0]}); "
            "the files come from different runs: train again"
        ) from None
    model.eval()
    return TrainedRun(run_dir=run_dir, model=model, config=config, metrics=metrics, dataset_info=dataset_info)
