"""Fixed-step explicit Runge–Kutta integration in PyTorch, driven by :mod:`edgeode.tableaus`.

Gradients flow by ordinary backprop through every stage ("RK-Net" in Chen et al. 2018, §3); the
adjoint alternative is :func:`edgeode.train.adjoint.odeint_adjoint`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from edgeode.errors import ConfigError
from edgeode.tableaus import ButcherTableau, get_tableau

__all__ = ["VectorField", "rk_step", "odeint", "solve", "check_steps", "time_grid"]

#: f(t, h) -> dh/dt, with t a 0-dim tensor of h's dtype.
VectorField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: A solver state: one tensor, or a tuple of tensors (an augmented system such as the adjoint's).
State = torch.Tensor | tuple[torch.Tensor, ...]


def check_steps(steps: int, name: str = "steps") -> int:
    """Validate a step count (a positive int) and return it."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"{name} must be a positive integer (number of solver steps), got {steps!r}")
    return steps


def _axpy(y, c: torch.Tensor, k):
    """``y + c * k`` for a tensor state or, element by element, a tuple state."""
    if isinstance(y, tuple):
        return tuple(y_i + c * k_i for y_i, k_i in zip(y, k, strict=True))
    return y + c * k


def rk_step(field: VectorField, t: torch.Tensor, h: State, dt: torch.Tensor, tableau: ButcherTableau) -> State:
    """One explicit Runge–Kutta step from (t, h) of size dt (Butcher 2016, §23).

    ``h`` is a tensor, or a tuple of tensors for an augmented system (the adjoint's backward solve,
    :mod:`edgeode.train.adjoint`); ``field`` then returns a tuple of the same structure. The one RK
    step of the solver, the adjoint and the export (which traces :func:`solve`).
    """
    ks: list[State] = []
    for a_row, c_i in zip(tableau.a, tableau.c, strict=False):
        y = h
        for a_ij, k_j in zip(a_row, ks, strict=False):
            if a_ij != 0.0:
                y = _axpy(y, dt * a_ij, k_j)
        ks.append(field(t + c_i * dt, y))
    out = h
    for b_i, k_i in zip(tableau.b, ks, strict=False):
        if b_i != 0.0:
            out = _axpy(out, dt * b_i, k_i)
    return out


def time_grid(t0: float, t1: float, steps: int, *, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """The ``steps + 1`` uniform grid points from t0 to t1."""
    return torch.linspace(float(t0), float(t1), check_steps(steps) + 1, dtype=dtype, device=device)


def odeint(
    field: VectorField,
    h0: torch.Tensor,
    times: torch.Tensor | Sequence[float],
    tableau: ButcherTableau | str = "rk4",
    steps_per_interval: int = 1,
) -> torch.Tensor:
    """Integrate dh/dt = f(t, h) from ``h0`` at ``times[0]`` and return h at every entry of ``times``.

    Each interval ``[times[i], times[i+1]]`` is split into ``steps_per_interval`` equal steps.
    Returns a tensor of shape ``[len(times), *h0.shape]`` (``times`` may decrease: reverse-time solve).
    """
    tableau = get_tableau(tableau)
    check_steps(steps_per_interval, "steps_per_interval")
    times = torch.as_tensor(times, dtype=h0.dtype, device=h0.device)
    if times.ndim != 1 or times.numel() < 2:
        raise ConfigError(f"times must be a 1-D sequence of at least 2 time points, got shape {tuple(times.shape)}")
    out = [h0]
    h = h0
    for i in range(times.numel() - 1):
        dt = (times[i + 1] - times[i]) / steps_per_interval
        t = times[i]
        for j in range(steps_per_interval):
            h = rk_step(field, t + j * dt, h, dt, tableau)
        out.append(h)
    return torch.stack(out)


def solve(
    field: VectorField,
    h0: torch.Tensor,
    tableau: ButcherTableau | str,
    t0: float = 0.0,
    t1: float = 1.0,
    steps: int = 10,
    trajectory: bool = False,
) -> torch.Tensor:
    """Integrate over [t0, t1] in ``steps`` equal steps.

    Returns h(t1) (``trajectory=False``, for classification) or the states at all ``steps + 1`` grid
    points stacked on a new leading axis (``trajectory=True``, for dynamics).
    """
    tableau = get_tableau(tableau)
    check_steps(steps)
    dt = (float(t1) - float(t0)) / steps
    dt_t = torch.tensor(dt, dtype=h0.dtype, device=h0.device)
    h = h0
    states = [h0] if trajectory else None
    for n in range(steps):
        t = torch.tensor(float(t0) + n * dt, dtype=h0.dtype, device=h0.device)
        h = rk_step(field, t, h, dt_t, tableau)
        if states is not None:
            states.append(h)
    return torch.stack(states) if states is not None else h
