"""Regularisers that keep a learned field cheap to solve with few fixed steps (``edgeode train --reg``).

Finlay, Jacobsen, Nurbekyan & Oberman 2020, "How to Train Your Neural ODE: the World of Jacobian and
Kinetic Regularization" (arXiv 2002.02798, §3, eqs. 5-7): penalise

* the **kinetic energy** of the flow, ``∫ ||f(t, h)||² dt`` (optimal-transport-like straight paths), and
* the **Jacobian Frobenius norm**, ``∫ ||∇_h f(t, h)||_F² dt`` (a smooth field: few steps suffice),
  estimated without forming the Jacobian by Hutchinson's trick: ``E_ε ||εᵀ ∇_h f||² = ||∇_h f||_F²``
  for a probe ε with zero mean and identity covariance (here Gaussian, one probe per solve, as in the
  paper), the vector-Jacobian product ``εᵀ ∇_h f`` from one ``torch.autograd.grad`` call.

Both integrals are computed on the very solve the model trains with: the state is augmented to
``(h, E, J)`` with ``dE/dt = ||f||²``, ``dJ/dt = ||εᵀ∇f||²`` and stepped by the same
:func:`edgeode.train.solver.rk_step`, tableau and steps, so the integrals are that tableau's quadrature
over its own stages (for Euler ``Σ dt ||f(t_n, h_n)||²``). Each term is averaged over the state's
dimensions (so a weight means the same at any width or image size) and returned per sample.

Gradients: by backprop through the solver (the Jacobian term needs ``create_graph=True``, a second
derivative of the field), or with ``adjoint=True`` by the adjoint method with the two integrals as
quadratures of the augmented state (:func:`edgeode.train.adjoint.odeint_adjoint_quadratures`; memory
constant in the steps; the optimise-then-discretise gradient, which approaches backprop's as the steps grow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from edgeode.errors import ConfigError
from edgeode.tableaus import ButcherTableau, get_tableau
from edgeode.train.solver import VectorField, check_steps, rk_step

__all__ = ["Regularisation", "RegTerms", "parse_reg", "regularised_solve", "TERMS"]

#: The penalty names ``--reg`` takes.
TERMS = ("kinetic", "jacobian")


@dataclass(frozen=True)
class Regularisation:
    """Weights of the two penalties (0: off). ``active`` when either is positive."""

    kinetic: float = 0.0
    jacobian: float = 0.0

    def __post_init__(self) -> None:
        for name in TERMS:
            w = getattr(self, name)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ConfigError(f"the {name} regulariser's weight must be a finite number >= 0, got {w!r} "
                                  "(e.g. --reg kinetic=0.01,jacobian=0.01)")

    @property
    def active(self) -> bool:
        return self.kinetic > 0 or self.jacobian > 0


@dataclass
class RegTerms:
    """The two integrals of one solve, per sample ``[B]`` (zeros where a term is off)."""

    kinetic: torch.Tensor
    jacobian: torch.Tensor

    def penalty(self, reg: Regularisation) -> torch.Tensor:
        """``w_K * mean(kinetic) + w_J * mean(jacobian)``: what is added to the loss."""
        return reg.kinetic * self.kinetic.mean() + reg.jacobian * self.jacobian.mean()


def parse_reg(spec: str) -> Regularisation:
    """``"kinetic=0.01,jacobian=0.01"`` (either term alone too) -> :class:`Regularisation`.

    Raises:
        ConfigError: an unknown term, a term without ``=WEIGHT``, a weight that is not a number >= 0, or a
            term given twice; the message shows the syntax.
    """
    hint = "write --reg kinetic=W,jacobian=W (either alone, W a number >= 0, e.g. --reg kinetic=0.01)"
    weights: dict[str, float] = {}
    for part in (p.strip() for p in str(spec).split(",")):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not part or not eq:
            raise ConfigError(f"--reg {spec!r}: {part!r} has no weight; {hint}")
        if name not in TERMS:
            raise ConfigError(f"--reg {spec!r}: unknown regulariser {name!r}; the terms are {', '.join(TERMS)}; {hint}")
        if name in weights:
            raise ConfigError(f"--reg {spec!r}: {name} is given twice; {hint}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ConfigError(f"--reg {spec!r}: the weight of {name} is {value.strip()!r}, not a number; {hint}") from None
    return Regularisation(**weights)


def _augmented(field: VectorField, reg: Regularisation, probe: torch.Tensor | None):
    def f_aug(t: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        h = state[0]
        if probe is not None and not h.requires_grad:  # a leaf input (the spiral's y0): no history to lose
            h = h.detach().requires_grad_(True)
        f = field(t, h)
        kinetic = f.pow(2).flatten(1).mean(1) if reg.kinetic > 0 else torch.zeros_like(state[1])
        if probe is None or not f.requires_grad:  # off, or a field that does not depend on h (or anything)
            jac = torch.zeros_like(state[2])
        else:
            (vjp,) = torch.autograd.grad(f, h, probe, create_graph=True, allow_unused=True)
            jac = vjp.pow(2).flatten(1).mean(1) if vjp is not None else torch.zeros_like(state[2])
        return f, kinetic, jac

    return f_aug


def regularised_solve(field: VectorField, h0: torch.Tensor, tableau: ButcherTableau | str, reg: Regularisation,
                      t0: float = 0.0, t1: float = 1.0, steps: int = 10, trajectory: bool = False,
                      generator: torch.Generator | None = None, adjoint: bool = False) -> tuple[torch.Tensor, RegTerms]:
    """:func:`edgeode.train.solver.solve` with the state augmented by the two integrals; returns what ``solve``
    returns (h(t1), or every grid state) and the :class:`RegTerms`. The Hutchinson probe is drawn once per
    call from ``generator`` (torch's default generator when ``None``); ``adjoint``: gradients by the adjoint
    method (the same probe in the forward and the backward sweep)."""
    tableau = get_tableau(tableau)
    check_steps(steps)
    batch = h0.shape[0]
    probe = None
    if reg.jacobian > 0:
        probe = torch.randn(h0.shape, dtype=h0.dtype, device=h0.device, generator=generator)
    f_aug = _augmented(field, reg, probe)
    if adjoint:
        from edgeode.train.adjoint import odeint_adjoint_quadratures

        out, kinetic, jacobian = odeint_adjoint_quadratures(field, f_aug, 2, h0, tableau, t0, t1, steps, trajectory)
        return out, RegTerms(kinetic, jacobian)
    zeros = torch.zeros(batch, dtype=h0.dtype, device=h0.device)
    dt = (float(t1) - float(t0)) / steps
    dt_t = torch.tensor(dt, dtype=h0.dtype, device=h0.device)
    state: tuple[torch.Tensor, ...] = (h0, zeros, zeros)
    states = [h0] if trajectory else None
    for n in range(steps):  # the same step times as solve()
        t = torch.tensor(float(t0) + n * dt, dtype=h0.dtype, device=h0.device)
        state = rk_step(f_aug, t, state, dt_t, tableau)
        if states is not None:
            states.append(state[0])
    out = torch.stack(states) if states is not None else state[0]
    return out, RegTerms(state[1], state[2])
