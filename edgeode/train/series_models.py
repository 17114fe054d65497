"""Recurrent classifiers of irregularly sampled series: the ODE-RNN and two GRU baselines of the same size.

* **ODE-RNN** (Rubanova et al. 2019, arXiv 1907.03907, Algorithm 1): the hidden state h starts at 0 at
  the first observation; across each gap to the next observation it evolves by dh/dt = f(h), a learned
  MLP field (autonomous, as in the paper), solved with the project's fixed-step solver
  (:func:`edgeode.train.solver.rk_step`, a tableau of :mod:`edgeode.tableaus`) in
  ``interval_steps(gap, max_step)`` equal steps (the device's rule, :func:`edgeode.runtime.loop.interval_steps`);
  at each observation a GRU cell (Cho et al. 2014) updates h from the standardised sample; a linear
  head classifies the final h.
* **GRU-dt**: a GRU cell fed the sample and the gap since the previous observation (in units of
  ``max_step``) -- the usual way to hand a plain RNN irregular times.
* **GRU**: a GRU cell over the series resampled to the regular grid (linear interpolation between the
  observed points; :func:`resample_regular`).

The baselines' hidden size is the smallest whose parameter count is at least the ODE-RNN's
(:func:`matched_hidden`), so the ODE-RNN never has more parameters than the baseline it is compared with.
Gradients flow by backprop through the solver (see README, *Sensor time series*, for the measured cost).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from edgeode.errors import ConfigError
from edgeode.names import SERIES_ARCHS
from edgeode.runtime.loop import interval_steps
from edgeode.tableaus import get_tableau
from edgeode.train.options import checked_options
from edgeode.train.series_data import Series
from edgeode.train.solver import rk_step

__all__ = ["SERIES_MODELS", "SeriesModelConfig", "SeriesBatch", "MLPField", "ODERNN", "GRUDt", "GRURegular",
           "build_series_model", "matched_hidden", "make_batch", "resample_regular"]

SERIES_MODELS = SERIES_ARCHS


@dataclass
class SeriesModelConfig:
    """Everything needed to rebuild a series model (saved in the run's ``config.json``).

    ``hidden`` is the ODE-RNN's state size; ``field_hidden`` the width of its field's MLP; the baselines
    get ``matched_hidden(...)`` units. ``max_step`` (seconds) is the largest solver step across a gap.
    """

    arch: str = "odernn"
    channels: int = 6
    num_classes: int = 4
    hidden: int = 32
    field_hidden: int = 32
    solver: str = "rk4"
    max_step: float = 0.1

    def __post_init__(self) -> None:
        if self.arch not in SERIES_MODELS:
            raise ConfigError(f"unknown series model {self.arch!r}; choose one of: {', '.join(SERIES_MODELS)}")
        get_tableau(self.solver)
        for name in ("channels", "num_classes", "hidden", "field_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"series model option {name} must be a positive integer, got {value!r}")
        if not (isinstance(self.max_step, (int, float)) and math.isfinite(self.max_step) and self.max_step > 0):
            raise ConfigError(f"max_step must be a positive number of seconds, got {self.max_step!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SeriesModelConfig:
        return cls(**checked_options(cls, data, "series model"))


@dataclass
class SeriesBatch:
    """Series padded to one length L (the longest): ``values`` [B, L, C], ``gaps`` [B, L] (s, 0 before the
    first observation), ``steps`` [B, L] solver steps per gap (0 for the first point and for padding),
    ``mask`` [B, L] real observations, ``labels`` [B]."""

    values: torch.Tensor
    gaps: torch.Tensor
    steps: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor


def make_batch(series: list[Series], max_step: float) -> SeriesBatch:
    """Pad ``series`` into a :class:`SeriesBatch`; step counts follow the device's ``interval_steps``."""
    length = max(len(s) for s in series)
    channels = series[0].values.shape[1]
    values = np.zeros((len(series), length, channels), np.float32)
    gaps = np.zeros((len(series), length), np.float64)
    steps = np.zeros((len(series), length), np.int64)
    mask = np.zeros((len(series), length), bool)
    for b, s in enumerate(series):
        n = len(s)
        values[b, :n] = s.values
        gaps[b, 1:n] = np.diff(s.times)
        steps[b, 1:n] = [interval_steps(float(g), max_step) for g in gaps[b, 1:n]]
        mask[b, :n] = True
    return SeriesBatch(torch.from_numpy(values), torch.from_numpy(gaps), torch.from_numpy(steps),
                       torch.from_numpy(mask), torch.tensor([s.label for s in series], dtype=torch.long))


def resample_regular(series: Series, interval: float) -> Series:
    """``series`` linearly interpolated onto the regular grid of ``interval`` seconds over its time span
    (the GRU baseline's input: what a plain RNN needs)."""
    n = int(math.floor((series.times[-1] - series.times[0]) / interval + 1e-9)) + 1
    grid = series.times[0] + interval * np.arange(n)
    values = np.stack([np.interp(grid, series.times, series.values[:, c]) for c in range(series.values.shape[1])],
                      axis=1).astype(np.float32)
    return Series(grid, values, series.label)


class MLPField(nn.Module):
    """dh/dt = f(h): Linear -> tanh -> Linear -> tanh (bounded, so a long gap cannot blow h up)."""

    def __init__(self, hidden: int, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, width), nn.Tanh(), nn.Linear(width, hidden), nn.Tanh())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class ODERNN(nn.Module):
    """The ODE-RNN classifier (module docstring). ``forward(batch) -> logits [B, classes]``."""

    def __init__(self, cfg: SeriesModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tableau = get_tableau(cfg.solver)
        self.field = MLPField(cfg.hidden, cfg.field_hidden)
        self.cell = nn.GRUCell(cfg.channels, cfg.hidden)
        self.head = nn.Linear(cfg.hidden, cfg.num_classes)

    def evolve(self, h: torch.Tensor, gap: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """h after ``gap`` seconds [B] in ``steps`` [B] equal steps each (0 steps: unchanged). A batch runs
        the most steps any of its rows needs; a row that needs fewer keeps its state after its last step."""
        most = int(steps.max()) if steps.numel() else 0
        if most == 0:
            return h
        dt = torch.where(steps > 0, gap / steps.clamp(min=1), torch.zeros_like(gap)).to(h.dtype)[:, None]
        zero = torch.zeros((), dtype=h.dtype)
        uniform = bool((steps == most).all())  # the common case (regular rows): no masking needed
        for j in range(most):
            stepped = rk_step(lambda _t, y: self.field(y), zero, h, dt, self.tableau)
            h = stepped if uniform else torch.where((steps > j)[:, None], stepped, h)
        return h

    def forward(self, batch: SeriesBatch) -> torch.Tensor:
        h = torch.zeros(batch.values.shape[0], self.cfg.hidden)
        for k in range(batch.values.shape[1]):
            h = self.evolve(h, batch.gaps[:, k], batch.steps[:, k])
            h = _masked(batch.mask[:, k], self.cell(batch.values[:, k], h), h)
        return self.head(h)


def _masked(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``new`` where ``mask`` (rows with an observation here), else ``old`` (padding after a shorter series)."""
    return new if bool(mask.all()) else torch.where(mask[:, None], new, old)


class _GRUBaseline(nn.Module):
    def __init__(self, cfg: SeriesModelConfig, inputs: int):
        super().__init__()
        self.cfg = cfg
        self.hidden = matched_hidden(cfg, cfg.arch)
        self.cell = nn.GRUCell(inputs, self.hidden)
        self.head = nn.Linear(self.hidden, cfg.num_classes)

    def _run(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], self.hidden)
        for k in range(x.shape[1]):
            h = _masked(mask[:, k], self.cell(x[:, k], h), h)
        return self.head(h)


class GRUDt(_GRUBaseline):
    """GRU cell over [sample, gap / max_step] at each observation."""

    def __init__(self, cfg: SeriesModelConfig):
        super().__init__(cfg, cfg.channels + 1)

    def forward(self, batch: SeriesBatch) -> torch.Tensor:
        dt = (batch.gaps / self.cfg.max_step).to(batch.values.dtype)[..., None]
        return self._run(torch.cat([batch.values, dt], dim=-1), batch.mask)


class GRURegular(_GRUBaseline):
    """GRU cell over the regularly resampled series (the batch must come from :func:`resample_regular`)."""

    def __init__(self, cfg: SeriesModelConfig):
        super().__init__(cfg, cfg.channels)

    def forward(self, batch: SeriesBatch) -> torch.Tensor:
        return self._run(batch.values, batch.mask)


def _gru_parameters(inputs: int, hidden: int, classes: int) -> int:
    return 3 * hidden * (inputs + hidden + 2) + classes * (hidden + 1)


def _odernn_parameters(cfg: SeriesModelConfig) -> int:
    h, w = cfg.hidden, cfg.field_hidden
    return _gru_parameters(cfg.channels, h, cfg.num_classes) + (h * w + w) + (w * h + h)


def matched_hidden(cfg: SeriesModelConfig, arch: str) -> int:
    """Hidden units of baseline ``arch`` (gru-dt or gru): the fewest whose parameters reach the ODE-RNN's."""
    if arch == "odernn":
        return cfg.hidden
    inputs = cfg.channels + (1 if arch == "gru-dt" else 0)
    target = _odernn_parameters(cfg)
    hidden = cfg.hidden
    while _gru_parameters(inputs, hidden, cfg.num_classes) < target:
        hidden += 1
    return hidden


def build_series_model(cfg: SeriesModelConfig) -> nn.Module:
    """The model ``cfg.arch`` names, freshly initialised (seed torch first for reproducibility)."""
    return {"odernn": ODERNN, "gru-dt": GRUDt, "gru": GRURegular}[cfg.arch](cfg)
