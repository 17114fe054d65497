"""Upper bounds on the work one call may ask for, so that no number in a file or a flag runs for ever.

The cost of an ODE inference is ``batch x steps x stages`` field evaluations. Two documented
bounds keep it finite (README, *Reliability*):

* :data:`MAX_STEPS` solver steps per solve: checked when a manifest is read (``solver.steps``),
  on ``load(..., steps=)`` / ``--steps``, and on the total of a multi-interval ``solve(times=...)``.
* :data:`MAX_SAMPLE_STEPS` = batch x steps per ``predict`` / ``solve`` call.

Both sit far above any trained model here (the paper's MNIST ODE-Net: 10 RK4 steps), so they only
refuse values that are mistakes. A large but legal run is stopped with Ctrl-C or ``--timeout``.

Standard library only.
"""

from __future__ import annotations

from edgeode.errors import ConfigError

__all__ = ["MAX_STEPS", "MAX_SAMPLE_STEPS", "check_steps", "check_work", "describe_int"]

#: Most solver steps of one solve over [t0, t1].
MAX_STEPS = 100_000
#: Most batch x steps of one ``predict`` / ``solve`` call.
MAX_SAMPLE_STEPS = 10_000_000


def check_steps(steps: object, what: str = "steps") -> int:
    """``steps`` as an int in ``1..MAX_STEPS``, else :class:`ConfigError` naming ``what`` and the bound."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"{what} must be a positive integer (solver steps over [t0, t1]), got {steps!r}")
    if steps > MAX_STEPS:
        raise ConfigError(
            f"{what} = {describe_int(steps)} is above the bound of {MAX_STEPS:,} solver steps per solve "
            "(edgeode.runtime.limits.MAX_STEPS); use fewer steps"
        )
    return steps


def check_work(batch: int, steps: int) -> None:
    """Refuse a call of ``batch`` samples x ``steps`` steps above :data:`MAX_SAMPLE_STEPS`."""
    if batch * steps > MAX_SAMPLE_STEPS:
        raise ConfigError(
            f"batch {batch:,} x {steps:,} steps = {batch * steps:,} sample-steps is above the bound of "
            f"{MAX_SAMPLE_STEPS:,} per call (edgeode.runtime.limits.MAX_SAMPLE_STEPS); split the batch into "
            "smaller calls or use fewer steps"
        )


def describe_int(n: int) -> str:
    """A huge integer as a few digits and its length (a 5,000-digit number is not echoed whole)."""
    return str(n) if n.bit_length() < 200 else f"an integer of {n.bit_length():,} bits"
