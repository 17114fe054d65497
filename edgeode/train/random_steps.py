"""Training with a randomly varied step count (``edgeode train --random-steps LO:HI``).

Ghosh, Behl, Dupont, Torr & Namboodiri 2020, "STEER: Simple Temporal Regularization For Neural ODEs"
(arXiv 2006.10711) draw the end time of the solve uniformly around its nominal value for every
batch, so that the field cannot rely on one exact integration and adaptive solvers take fewer steps.
With edgeode's fixed-step solvers the analogue is to vary the *step count*: every training batch
solves over the same [t0, t1] on the same tableau with ``n`` steps drawn uniformly from
``LO..HI`` (both included), so the field is trained to give the same answer at coarse and fine
discretisations -- the property a few-step solve on a device needs. The draws come from a
``torch.Generator`` seeded with the run's seed (the same sequence on every distributed rank, and in
a rerun); evaluation, the saved model and export use the run's nominal ``--steps``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgeode.errors import ConfigError

__all__ = ["StepRange", "parse_step_range", "MAX_RANDOM_STEPS"]

#: The largest HI accepted: more steps than any fixed-step training here would take (a typo guard).
MAX_RANDOM_STEPS = 1000

_HINT = f"write --random-steps LO:HI with 1 <= LO <= HI <= {MAX_RANDOM_STEPS} (e.g. --random-steps 2:8)"


@dataclass(frozen=True)
class StepRange:
    """The inclusive range ``lo..hi`` the per-batch step count is drawn from."""

    lo: int
    hi: int

    def __post_init__(self) -> None:
        for name in ("lo", "hi"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"random steps {name.upper()} must be an integer, got {value!r}; {_HINT}")
        if self.lo < 1:
            raise ConfigError(f"random steps LO must be >= 1 (a solve takes at least one step), got {self.lo}; {_HINT}")
        if self.lo > self.hi:
            raise ConfigError(f"random steps LO ({self.lo}) is greater than HI ({self.hi}); {_HINT}")
        if self.hi > MAX_RANDOM_STEPS:
            raise ConfigError(f"random steps HI ({self.hi}) is above {MAX_RANDOM_STEPS}: every batch would solve with "
                              f"up to that many steps; {_HINT}")

    def to_list(self) -> list[int]:
        """The JSON form kept in a run's ``config.json``: ``[lo, hi]``."""
        return [self.lo, self.hi]

    def draw(self, generator: torch.Generator) -> int:
        """One step count, uniform on ``lo..hi``, from ``generator``."""
        return int(torch.randint(self.lo, self.hi + 1, (1,), generator=generator))


def parse_step_range(spec: str) -> StepRange:
    """``"2:8"`` -> ``StepRange(2, 8)`` (``"4"`` alone: the fixed count 4).

    Raises:
        ConfigError: not ``LO:HI`` integers, LO < 1, LO > HI, or HI above :data:`MAX_RANDOM_STEPS`.
    """
    parts = str(spec).split(":")
    if len(parts) > 2:
        raise ConfigError(f"--random-steps {spec!r} has more than one ':'; {_HINT}")
    try:
        values = [int(p.strip()) for p in parts]
    except ValueError:
        raise ConfigError(f"--random-steps {spec!r} is not two integers LO:HI; {_HINT}") from None
    return StepRange(values[0], values[-1])
