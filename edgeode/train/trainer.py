"""Training loop: one function, :func:`train`, from a :class:`TrainConfig` to a run directory.

* Deterministic: ``torch.manual_seed(config.seed)`` before the model is built, and the data order of
  every epoch comes from a ``DistributedSampler`` seeded with ``config.seed`` (also in a single
  process), so the same config gives the same weights.
* Classifiers minimise cross-entropy and report ``test_accuracy`` (0..1); the spiral dynamics model
  minimises the mean absolute error between predicted and true window trajectories (the loss of
  torchdiffeq's ``examples/ode_demo.py``) and reports ``test_loss``.
* With ``reg_kinetic`` / ``reg_jacobian`` the loss adds the kinetic-energy and Jacobian-norm penalties
  of the ODE block's own solve (Finlay et al. 2020, :mod:`edgeode.train.regularisers`); the epoch
  history records their means.
* With ``random_steps`` each batch solves with a step count drawn from LO..HI (a generator seeded with
  ``config.seed``; :mod:`edgeode.train.random_steps`); the epoch history records the mean drawn count and
  the block is left at the nominal ``model.steps``.
* Optimiser: Adam (Kingma & Ba 2015) with learning rate ``config.lr``, constant or on the one-cycle
  schedule (``config.schedule``, stepped once per batch).
* Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in
  ``DistributedDataParallel`` (gloo), ``batch_size`` is the *global* batch (each of K processes takes
  ``batch_size // K``), only rank 0 writes, and rank 0 checks that all ranks end with identical
  weights (recorded as ``metrics["distributed"]``).
* The run directory is built in a temporary directory beside ``out_dir`` that is created before
  training (so a bad path fails at once) and renamed into place at the end.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from edgeode.errors import ConfigError, EdgeodeError, ShapeError, SolverError
from edgeode.fsutil import discard_dir
from edgeode.train.checkpoint import (
    TrainConfig,
    check_input_shape,
    commit_run_dir,
    prepare_run_dir,
    write_run_files,
)
from edgeode.train.data import Dataset, dataset_for
from edgeode.train.distributed import DistContext, gather_hashes, init_distributed, local_threads
from edgeode.train.models import ModelConfig, build_model, count_parameters

__all__ = ["TrainResult", "train", "evaluate", "expected_input_shape", "check_config_fits_data"]

_EVAL_BATCH = 500


@dataclass
class TrainResult:
    """What :func:`train` returns. ``run_dir`` is ``None`` on the non-writing ranks of a distributed run."""

    run_dir: Path | None
    model: nn.Module
    config: TrainConfig
    metrics: dict


def expected_input_shape(cfg: ModelConfig) -> tuple[int, ...]:
    """The shape of one example the model takes."""
    if cfg.arch == "spiral":
        return (2,)
    return (cfg.in_channels, cfg.image_size, cfg.image_size)


def check_config_fits_data(cfg: ModelConfig, data: Dataset) -> None:
    """Raise a typed error if the model config cannot take this data set's examples."""
    if (cfg.arch == "spiral") != (data.kind == "dynamics"):
        raise ConfigError(
            f"model {cfg.arch!r} does not fit data set {data.name!r} ({data.kind}); "
            "use --model spiral with --data spiral, and an image model with digits or mnist"
        )
    expected = expected_input_shape(cfg)
    if tuple(data.input_shape) != expected:
        raise ShapeError(
            f"data set {data.name!r} gives examples of shape {list(data.input_shape)} but the model config expects "
            f"{list(expected)}; set in_channels / image_size to match the data (the CLI does this for you)"
        )
    if data.kind == "classifier":
        if cfg.num_classes != data.num_classes:
            raise ShapeError(f"data set {data.name!r} has {data.num_classes} classes but the model has "
                             f"{cfg.num_classes}; set num_classes={data.num_classes}")
        if cfg.arch in ("odenet", "rknet", "resnet"):
            size = cfg.image_size - 2  # first 3x3 conv, no padding
            for _ in range(cfg.downsample):
                size //= 2  # 4x4 stride 2 padding 1
            if size < 1:
                raise ConfigError(f"downsample={cfg.downsample} shrinks {cfg.image_size}x{cfg.image_size} inputs "
                                  "to nothing; use --downsample 1 for 8x8 digits, 2 for 28x28 MNIST")
    else:
        window = len(data.times) - 1
        span = float(data.times[-1])
        if abs((cfg.t1 - cfg.t0) - span) > 1e-6 * max(1.0, span) or cfg.steps % window:
            raise ConfigError(
                f"the {data.name} windows span {span:g} time units in {window} intervals; the model must solve over "
                f"t1 - t0 = {span:g} (got {cfg.t1 - cfg.t0:g}) with --steps a multiple of {window} (got {cfg.steps})"
            )


def _dynamics_pred(model: nn.Module, x: torch.Tensor, stride: int) -> torch.Tensor:
    """Predicted window trajectory [B, T, D] at the data's target times."""
    return model(x)[::stride].transpose(0, 1)


def _loss_and_correct(model: nn.Module, data: Dataset, x: torch.Tensor, y: torch.Tensor,
                      stride: int) -> tuple[torch.Tensor, int]:
    if data.kind == "classifier":
        logits = model(x)
        return F.cross_entropy(logits, y), int((logits.argmax(1) == y).sum())
    pred = _dynamics_pred(model, x, stride)
    return (pred - y).abs().mean(), 0


def evaluate(model: nn.Module, data: Dataset, split: str = "test") -> dict:
    """Loss (and accuracy for classifiers) of ``model`` on the test (or train) split, without gradients."""
    x_all, y_all = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    stride = _stride(model, data)
    was_training = model.training
    model.eval()
    total, correct, n = 0.0, 0, x_all.shape[0]
    with torch.no_grad():
        for i in range(0, n, _EVAL_BATCH):
            x, y = x_all[i : i + _EVAL_BATCH], y_all[i : i + _EVAL_BATCH]
            loss, c = _loss_and_correct(model, data, x, y, stride)
            total += float(loss) * x.shape[0]
            correct += c
    model.train(was_training)
    out = {f"{split}_loss": total / max(n, 1)}
    if data.kind == "classifier":
        out[f"{split}_accuracy"] = correct / max(n, 1)
    return out


def _stride(model: nn.Module, data: Dataset) -> int:
    if data.kind != "dynamics":
        return 1
    inner = model.module if hasattr(model, "module") else model
    return inner.block.steps // (len(data.times) - 1)


def _field_evaluations(cfg: ModelConfig) -> int:
    from edgeode.tableaus import get_tableau

    if cfg.arch in ("odenet", "rknet", "spiral"):
        return cfg.steps * get_tableau(cfg.solver).stages
    return 0


def _broadcast_error(ctx: DistContext, error: EdgeodeError | None) -> None:
    """Make every rank raise if rank 0 failed a check (instead of hanging in the next collective)."""
    if not ctx.enabled:
        if error is not None:
            raise error
        return
    import torch.distributed as dist

    box = [None if error is None else (type(error).__name__, str(error))]
    dist.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    if box[0] is not None:
        raise ConfigError(f"rank 0 failed: {box[0][1]}")


def train(config: TrainConfig, out_dir: str | Path, progress: bool = True, overwrite: bool = False,
          data: Dataset | None = None) -> TrainResult:
    """Train the model ``config`` describes and write the run directory ``out_dir``.

    ``data``: the data set already loaded (``load_dataset(config.data, config.data_path, config.seed)``)
    by a caller that needs it for more than training; it is not modified (``train_limit`` trims a copy).

    Raises:
        ConfigError: bad option, or ``out_dir`` exists and is not empty (pass ``overwrite=True``) or
            cannot be written.
        DataError: the data set cannot be loaded.
        ShapeError: the data does not fit the model config.
        SolverError: the loss became NaN or infinite (lower the learning rate).
    """
    ctx = init_distributed()
    tmp_dir: Path | None = None
    try:
        error: EdgeodeError | None = None
        if ctx.is_main:
            try:
                tmp_dir = prepare_run_dir(out_dir, overwrite)
            except EdgeodeError as exc:
                error = exc
        _broadcast_error(ctx, error)

        data = dataset_for(config.data, config.data_path, config.seed, data)
        if config.train_limit is not None:
            data = replace(data, x_train=data.x_train[: config.train_limit], y_train=data.y_train[: config.train_limit])
        check_config_fits_data(config.model, data)
        torch.manual_seed(config.seed)
        model = build_model(config.model)
        torch.set_num_threads(local_threads(ctx, config.threads, count_parameters(model)))
        model.train()
        net: nn.Module = model
        if ctx.enabled:
            net = nn.parallel.DistributedDataParallel(model)
        metrics = _fit(net, model, config, data, ctx, progress)

        hashes = gather_hashes(ctx, model)
        if ctx.enabled:
            metrics["distributed"] = {"world_size": ctx.world_size, "backend": "gloo",
                                      "weights_sha256": hashes, "weights_identical": len(set(hashes)) == 1}
            if len(set(hashes)) != 1:
                raise SolverError(f"distributed ranks ended with different weights {hashes}; this is a bug, please report")
        metrics["weights_sha256"] = hashes[0]

        run_dir: Path | None = None
        if ctx.is_main:
            assert tmp_dir is not None  # internal invariant, not user input
            write_run_files(tmp_dir, model, config, metrics, data.describe())
            run_dir = commit_run_dir(tmp_dir, out_dir, overwrite)
            tmp_dir = None
        model.eval()
        return TrainResult(run_dir=run_dir, model=model, config=config, metrics=metrics)
    finally:
        if tmp_dir is not None:
            discard_dir(tmp_dir)
        ctx.close()


def _fit(net: nn.Module, model: nn.Module, config: TrainConfig, data: Dataset, ctx: DistContext,
         progress: bool) -> dict:
    from tqdm import tqdm

    from edgeode.progress import is_terminal

    n = data.x_train.shape[0]
    sampler = DistributedSampler(range(n), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=config.seed, drop_last=False)
    batch = max(1, config.batch_size // ctx.world_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = math.ceil(len(sampler) / batch)
    scheduler = None
    if config.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.epochs * per_epoch,
                                                        pct_start=0.15)
    stride = _stride(model, data)
    reg = config.regularisation
    block = getattr(model, "block", None)
    if block is not None:
        block.regularisation = reg if reg.active else None
    step_range = config.step_range
    step_gen = torch.Generator().manual_seed(config.seed) if step_range is not None else None
    check_input_shape(data.x_train[:1], tuple(data.input_shape), "training data")
    history: list[dict] = []
    start = time.perf_counter()
    for epoch in range(config.epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(iter(sampler)), dtype=torch.long)
        batches = [order[i : i + batch] for i in range(0, len(order), batch)]
        # the per-batch bar only on a terminal; in a log the per-epoch line below is the progress
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", file=sys.stderr, leave=False,
                   disable=not (progress and ctx.is_main and is_terminal()), unit="batch")
        total, correct, seen = 0.0, 0, 0
        reg_sums = {"kinetic": 0.0, "jacobian": 0.0}
        drawn: list[int] = []
        for idx in bar:
            x, y = data.x_train[idx], data.y_train[idx]
            if step_gen is not None:
                block.steps = step_range.draw(step_gen)
                drawn.append(block.steps)
            optimizer.zero_grad(set_to_none=True)
            loss, c = _loss_and_correct(net, data, x, y, stride)
            loss_value = float(loss.detach())
            if reg.active:  # the block's solve left its penalties in reg_terms (regularisers.py)
                terms = block.reg_terms
                loss = loss + terms.penalty(reg)
                reg_sums["kinetic"] += float(terms.kinetic.detach().sum())
                reg_sums["jacobian"] += float(terms.jacobian.detach().sum())
            if not math.isfinite(loss_value):
                raise SolverError(f"the training loss became {loss_value} in epoch {epoch + 1}; "
                                  f"lower --lr (now {config.lr}) or use more --steps")
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += loss_value * len(idx)
            correct += c
            seen += len(idx)
            post = {"loss": f"{total / seen:.4f}"}
            if data.kind == "classifier":
                post["acc"] = f"{correct / seen:.3f}"
            bar.set_postfix(post)
        bar.close()
        entry = {"epoch": epoch + 1, "train_loss": total / max(seen, 1)}
        if data.kind == "classifier":
            entry["train_accuracy"] = correct / max(seen, 1)
        if reg.active:
            entry.update({f"train_{k}": v / max(seen, 1) for k, v in reg_sums.items()})
        if drawn:
            entry["train_steps_mean"] = sum(drawn) / len(drawn)
        history.append(entry)
        if progress and ctx.is_main:
            extra = f" acc {entry['train_accuracy']:.3f}" if "train_accuracy" in entry else ""
            print(f"epoch {epoch + 1}/{config.epochs}: train loss {entry['train_loss']:.4f}{extra}", file=sys.stderr)
    train_time = time.perf_counter() - start
    if block is not None:
        block.regularisation = None
        block.steps = config.model.steps  # evaluation, the saved run and export use the nominal steps
    metrics = evaluate(model, data, "test")
    metrics.update({
        "train_time_s": round(train_time, 3),
        "parameters": count_parameters(model),
        "epochs": config.epochs,
        "schedule": config.schedule,
        "regularisation": {"kinetic": reg.kinetic, "jacobian": reg.jacobian},
        "random_steps": config.random_steps,
        "history": history,
        "field_evaluations_per_forward": _field_evaluations(config.model),
        "threads": torch.get_num_threads(),
        "world_size": ctx.world_size,
        "batch_per_process": batch,
        "batches_per_epoch": math.ceil(len(sampler) / batch),
        "data": data.name,
        "arch": config.model.arch,
        "gradient": ("adjoint" if config.model.adjoint else "backprop")
        if config.model.arch in ("odenet", "rknet", "spiral") else "backprop",
    })
    if progress and ctx.is_main:
        shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith("test_")}
        print(f"test: {shown}  ({train_time:.1f} s training)", file=sys.stderr)
    return metrics
