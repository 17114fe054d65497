"""Training loop of the series classifiers (:mod:`edgeode.train.series_models`) and their run directories.

A series run directory has the files of every run (:mod:`edgeode.train.checkpoint`: config.json,
metrics.json, dataset.json, weights.pt, written atomically); its ``config.json`` carries
``"task": "series"`` so that ``edgeode export`` knows which exporter it needs (:func:`is_series_run`).

* Deterministic: torch is seeded with ``seed`` before the model is built; batches are drawn in a
  seeded order each epoch; the dropped points come from the same seed (``load_series_dataset``).
* Adam, cross-entropy. Where the data set has a validation split (watch: a held-out subject), the
  weights of the epoch with the best validation accuracy are kept; test accuracy is measured once, at the end.
* Backprop through the solver (not the adjoint): ``metrics["backprop"]`` records what it cost on the
  first training batch -- the bytes of the tensors autograd saved for the backward pass and the
  forward + backward time.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgeode.errors import CheckpointError, ConfigError, SolverError
from edgeode.fsutil import discard_dir
from edgeode.train.checkpoint import (
    CONFIG_NAME,
    DATASET_NAME,
    METRICS_NAME,
    WEIGHTS_NAME,
    _load_weights,
    _read_json,
    commit_run_dir,
    prepare_run_dir,
    write_run_files,
)
from edgeode.train.options import checked_options
from edgeode.train.series_data import SERIES_DATASETS, Series, SeriesDataset, load_series_dataset
from edgeode.train.series_models import SeriesModelConfig, build_series_model, make_batch, resample_regular

__all__ = ["SeriesTrainConfig", "SeriesRun", "train_series", "evaluate_series", "load_series_run", "is_series_run",
           "model_inputs", "TASK"]

TASK = "series"


@dataclass
class SeriesTrainConfig:
    """A series training run: model, data set, irregularity and optimisation settings."""

    model: SeriesModelConfig = field(default_factory=SeriesModelConfig)
    data: str = "basicmotions"
    drop: float = 0.0
    burst: bool = False
    epochs: int = 20
    batch_size: int = 20
    lr: float = 1e-2
    seed: int = 0
    threads: int | None = 1
    train_limit: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, SeriesModelConfig):  # from config.json: a JSON object, checked
            self.model = SeriesModelConfig.from_dict(self.model)
        if self.data not in SERIES_DATASETS:
            raise ConfigError(f"unknown series data set {self.data!r}; choose one of: {', '.join(SERIES_DATASETS)}")
        if not (isinstance(self.drop, (int, float)) and 0.0 <= self.drop < 1.0):
            raise ConfigError(f"--drop must be a fraction in [0, 1) of the time points to remove, got {self.drop!r}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr (learning rate) must be a positive number, got {self.lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("threads", "train_limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer (or omitted), got {value!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return {"task": TASK, **d}

    @classmethod
    def from_dict(cls, data: dict) -> SeriesTrainConfig:
        if not isinstance(data, dict) or data.get("task") != TASK:
            raise ConfigError("not a series training config (no \"task\": \"series\")")
        return cls(**checked_options(cls, {k: v for k, v in data.items() if k != "task"}, "series train"))

    def load_data(self) -> SeriesDataset:
        return load_series_dataset(self.data, self.drop, self.burst, self.seed)


@dataclass
class SeriesRun:
    """A loaded series run directory (model in eval mode, on the CPU)."""

    run_dir: Path
    model: nn.Module
    config: SeriesTrainConfig
    metrics: dict
    dataset_info: dict


def model_inputs(cfg: SeriesModelConfig, series: list[Series], interval: float) -> list[Series]:
    """What ``cfg.arch`` reads: the observed points, or (gru) the series resampled every ``interval`` s."""
    return [resample_regular(s, interval) for s in series] if cfg.arch == "gru" else series


def evaluate_series(model: nn.Module, series: list[Series], max_step: float, batch_size: int = 256) -> dict:
    """Loss and accuracy of ``model`` on ``series`` (already in the model's input form), without gradients."""
    was = model.training
    model.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(series), batch_size):
            batch = make_batch(series[i:i + batch_size], max_step)
            logits = model(batch)
            total += float(F.cross_entropy(logits, batch.labels, reduction="sum"))
            correct += int((logits.argmax(1) == batch.labels).sum())
    model.train(was)
    n = max(len(series), 1)
    return {"loss": total / n, "accuracy": correct / n}


def _backprop_cost(model: nn.Module, series: list[Series], max_step: float) -> dict:
    """Bytes autograd saves for backward on one batch (tensors counted once by storage) and its fwd+bwd time."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        return t

    batch = make_batch(series, max_step)
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(batch), batch.labels)
    loss.backward()
    seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return {"batch": len(series), "observations": int(batch.mask.sum()), "solver_steps": int(batch.steps.sum()),
            "saved_tensor_bytes": int(sum(seen.values())), "forward_backward_s": round(seconds, 4)}


def train_series(config: SeriesTrainConfig, out_dir: str | Path, progress: bool = True, overwrite: bool = False,
                 data: SeriesDataset | None = None) -> SeriesRun:
    """Train ``config``'s model and write the run directory ``out_dir`` (atomically).

    Raises:
        ConfigError: bad option or unwritable / non-empty ``out_dir``. DataError: the data package is missing.
        SolverError: the loss became NaN or infinite (lower --lr).
    """
    tmp = prepare_run_dir(out_dir, overwrite)
    try:
        data = data or config.load_data()
        cfg = config.model
        if cfg.channels != len(data.channels) or cfg.num_classes != data.num_classes:
            raise ConfigError(f"the model takes {cfg.channels} channels and {cfg.num_classes} classes, the {data.name} "
                              f"data has {len(data.channels)} and {data.num_classes}")
        torch.manual_seed(config.seed)
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        model = build_series_model(cfg)
        train = model_inputs(cfg, data.train, data.sample_interval)[: config.train_limit]
        val = model_inputs(cfg, data.val, data.sample_interval)
        metrics = _fit(model, config, train, val, progress)
        metrics["backprop"] = _backprop_cost(model, train[: config.batch_size], cfg.max_step)
        test = evaluate_series(model, model_inputs(cfg, data.test, data.sample_interval), cfg.max_step)
        metrics.update({"test_accuracy": test["accuracy"], "test_loss": test["loss"],
                        "parameters": sum(p.numel() for p in model.parameters()), "arch": cfg.arch,
                        "hidden": getattr(model, "hidden", cfg.hidden), "data": data.name, "drop": config.drop,
                        "burst": config.burst, "threads": torch.get_num_threads(),
                        "test_observations": int(sum(len(s) for s in data.test))})
        if progress:
            print(f"test: accuracy {test['accuracy']:.4f} loss {test['loss']:.4f}", file=sys.stderr)
        model.eval()
        write_run_files(tmp, model, config, metrics, data.describe())
        run_dir = commit_run_dir(tmp, out_dir, overwrite)
        tmp = None
        return SeriesRun(run_dir, model, config, metrics, data.describe())
    finally:
        if tmp is not None:
            discard_dir(tmp)


def _fit(model: nn.Module, config: SeriesTrainConfig, train: list[Series], val: list[Series], progress: bool) -> dict:
    cfg = config.model
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    history, best, best_state = [], -1.0, None
    start = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen).tolist()
        total, correct = 0.0, 0
        for i in range(0, len(order), config.batch_size):
            batch = make_batch([train[j] for j in order[i:i + config.batch_size]], cfg.max_step)
            optimizer.zero_grad(set_to_none=True)
            logits = model(batch)
            loss = F.cross_entropy(logits, batch.labels)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise SolverError(f"the training loss became {value} in epoch {epoch + 1}; lower --lr (now {config.lr})")
            loss.backward()
            optimizer.step()
            total += value * len(batch.labels)
            correct += int((logits.argmax(1) == batch.labels).sum())
        entry = {"epoch": epoch + 1, "train_loss": total / len(train), "train_accuracy": correct / len(train)}
        if val:
            entry["val_accuracy"] = evaluate_series(model, val, cfg.max_step)["accuracy"]
            if entry["val_accuracy"] > best:
                best = entry["val_accuracy"]
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                entry["kept"] = True
        history.append(entry)
        if progress:
            extra = f" val {entry['val_accuracy']:.3f}" if val else ""
            print(f"epoch {epoch + 1}/{config.epochs}: loss {entry['train_loss']:.4f} acc {entry['train_accuracy']:.3f}"
                  f"{extra}", file=sys.stderr)
    if best_state is not None:
        model.load_state_dict(best_state)
    metrics = {"train_time_s": round(time.perf_counter() - start, 3), "epochs": config.epochs, "history": history}
    if val:
        metrics["val_accuracy"] = best
        metrics["kept_epoch"] = max(e["epoch"] for e in history if e.get("kept"))
    return metrics


def is_series_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir``'s config.json is a series run's (reads JSON only, no torch work)."""
    path = Path(run_dir).expanduser() / CONFIG_NAME
    try:
        return json.loads(path.read_text()).get("task") == TASK
    except (OSError, ValueError, AttributeError):
        return False


def load_series_run(run_dir: str | Path) -> SeriesRun:
    """Load a series run directory written by :func:`train_series`.

    Raises:
        CheckpointError: a file is missing or corrupt, or the weights do not fit the config.
    """
    run_dir = Path(run_dir).expanduser()
    try:
        config = SeriesTrainConfig.from_dict(_read_json(run_dir / CONFIG_NAME))
    except ConfigError as exc:
        raise CheckpointError(f"{run_dir / CONFIG_NAME} is invalid: {exc}") from None
    metrics = _read_json(run_dir / METRICS_NAME)
    info = _read_json(run_dir / DATASET_NAME)
    model = build_series_model(config.model)
    try:
        model.load_state_dict(_load_weights(run_dir / WEIGHTS_NAME))
    except (RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{run_dir / WEIGHTS_NAME} does not fit the model in {CONFIG_NAME} "
                              f"({str(exc).splitlines()[0]}); train again") from None
    model.eval()
    return SeriesRun(run_dir, model, config, metrics, info)
