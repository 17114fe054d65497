"""The adjoint method for fixed-step solves (Chen et al. 2018, arXiv 1806.07366, Algorithm 1).

Training an ODE block by backprop through the solver stores every stage of every step, so memory
grows linearly with ``steps``. The adjoint method instead

1. solves ``dh/dt = f(t, h, θ)`` forward from ``t0`` to ``t1`` **without** building a graph, and
2. solves ONE augmented system backwards in time, from ``t1`` to ``t0``::

       dh/dt      =  f(t, h, θ)                      (re-solving the state backwards)
       da/dt      = -a(t)^T ∂f/∂h                    (a = dL/dh, the adjoint state)
       d(dL/dθ)/dt = -a(t)^T ∂f/∂θ

   starting from ``h(t1)``, ``a(t1) = dL/dh(t1)``, ``dL/dθ = 0``, on the same tableau and the same
   ``steps`` as the forward solve. The vector-Jacobian products come from ``torch.autograd.grad``
   on one evaluation of f at a time (``create_graph=False``), so memory does not grow with steps.

What it computes: the gradient of the *continuous* problem, discretised by re-solving backwards
(the "optimise-then-discretise" gradient). It is not the exact gradient of the discrete forward
scheme (that is what backprop through :func:`edgeode.train.solver.solve` gives, the
"discretise-then-optimise" gradient); the two differ by O(dt**order) and agree as ``steps`` grows.
The backward re-solve of h starts from the forward h(t1) and may drift away from the forward
trajectory when the dynamics are not reversible (e.g. strongly contracting fields), which makes
the adjoint gradient less accurate; store-and-backprop does not have this problem.

With ``trajectory=True`` the output is every grid state; the loss may depend on all of them, and
their incoming adjoints ``dL/dh(t_n)`` are added to ``a`` as the reverse sweep passes each grid
point (as torchdiffeq's ``odeint_adjoint`` does).

Quadratures (:func:`odeint_adjoint_quadratures`, the ``--reg`` penalties with ``--adjoint``): integrals
``q_i = ∫ g_i(t, h) dt`` solved with the state as ``(h, q_1, ..., q_k)`` (Finlay et al. 2020, §4, who
train their regularised FFJORD models this way). Since no ``g_i`` depends on any ``q``, the adjoints of
the ``q_i`` are constant, ``dL/dq_i``, and they enter the backward sweep only through the
vector-Jacobian product ``a^T ∂f/∂(h, θ) + Σ_i (dL/dq_i) ∂g_i/∂(h, θ)`` of one augmented evaluation.
An integrand that itself contains a derivative of f (the Jacobian term) is built with
``create_graph=True`` there, so that product is its exact second derivative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from edgeode.errors import ConfigError
from edgeode.tableaus import ButcherTableau, get_tableau
from edgeode.train.solver import VectorField, check_steps, rk_step, solve

__all__ = ["odeint_adjoint", "odeint_adjoint_quadratures", "AugmentedField"]

_State = tuple[torch.Tensor, ...]
#: ``(t, (h, q_1..q_k)) -> (f, g_1..g_k)`` with every ``g_i`` of shape ``[B]`` and independent of the ``q``.
AugmentedField = Callable[[torch.Tensor, _State], _State]


def _params_of(field: VectorField) -> list[torch.Tensor]:
    if isinstance(field, nn.Module):
        return [p for p in field.parameters() if p.requires_grad]
    return []


class _OdeintAdjoint(torch.autograd.Function):
    """The adjoint solve of ``aug`` from ``(h0, 0, ..., 0)``: returns h(t1) (or every grid h) and the
    ``n_quad`` quadratures at t1. With ``n_quad == 0`` ``aug`` is the plain field ``(t, h) -> f``."""

    @staticmethod
    def forward(ctx: Any, aug: Callable, n_quad: int, tableau: ButcherTableau, t0: float, t1: float, steps: int,
                trajectory: bool, h0: torch.Tensor, *params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if n_quad == 0:
            with torch.no_grad():
                out = solve(aug, h0, tableau, t0, t1, steps, trajectory=trajectory)
            quads: tuple[torch.Tensor, ...] = ()
        else:
            out, quads = _solve_quadratures(aug, n_quad, h0, tableau, t0, t1, steps, trajectory)
        ctx.aug, ctx.n_quad, ctx.tableau, ctx.t0, ctx.t1, ctx.steps = aug, n_quad, tableau, t0, t1, steps
        ctx.trajectory = trajectory
        ctx.save_for_backward(out[-1] if trajectory else out, *params)
        return (out, *quads)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor, *grad_quads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        h1, *params = ctx.saved_tensors
        aug, n_quad, tableau, steps = ctx.aug, ctx.n_quad, ctx.tableau, ctx.steps
        n_params = len(params)
        zeros = h1.new_zeros(h1.shape[0])
        g_q = tuple(g if g is not None else zeros for g in grad_quads)

        def augmented(t: torch.Tensor, state: _State) -> _State:
            h, a = state[0], state[1]
            with torch.enable_grad():
                h_in = h.detach().requires_grad_(True)
                outs = aug(t, (h_in, *(zeros,) * n_quad)) if n_quad else (aug(t, h_in),)
                pairs = [(o, g) for o, g in zip(outs, (a, *g_q), strict=True) if o.requires_grad]
                grads = torch.autograd.grad([o for o, _ in pairs], (h_in, *params), grad_outputs=[g for _, g in pairs],
                                            allow_unused=True, create_graph=False) if pairs else (None,) * (1 + n_params)
            vjp_h = grads[0] if grads[0] is not None else torch.zeros_like(h)
            vjp_p = tuple(-g if g is not None else torch.zeros_like(p) for g, p in zip(grads[1:], params, strict=False))
            return (outs[0].detach(), -vjp_h, *vjp_p)

        dtype, device = h1.dtype, h1.device
        dt = (float(ctx.t1) - float(ctx.t0)) / steps
        neg_dt = torch.tensor(-dt, dtype=dtype, device=device)
        a = grad_out[-1] if ctx.trajectory else grad_out
        state: _State = (h1, a, *(torch.zeros_like(p) for p in params))
        with torch.no_grad():
            for n in range(steps, 0, -1):
                t = torch.tensor(float(ctx.t0) + n * dt, dtype=dtype, device=device)
                state = rk_step(augmented, t, state, neg_dt, tableau)
                if ctx.trajectory:
                    state = (state[0], state[1] + grad_out[n - 1], *state[2:])
        grad_h0 = state[1]
        grad_params = state[2 : 2 + n_params]
        return (None, None, None, None, None, None, None, grad_h0, *grad_params)


def _solve_quadratures(aug: AugmentedField, n_quad: int, h0: torch.Tensor, tableau: ButcherTableau, t0: float,
                       t1: float, steps: int, trajectory: bool) -> tuple[torch.Tensor, _State]:
    """The forward solve of ``(h, q)`` keeping no graph: each evaluation of ``aug`` is built with gradients
    (an integrand may differentiate f) and detached."""

    def stage(t: torch.Tensor, state: _State) -> _State:
        with torch.enable_grad():
            outs = aug(t, (state[0].detach().requires_grad_(True), *state[1:]))
        return tuple(o.detach() for o in outs)

    dt = (float(t1) - float(t0)) / steps
    dt_t = torch.tensor(dt, dtype=h0.dtype, device=h0.device)
    zeros = h0.new_zeros(h0.shape[0])
    state: _State = (h0.detach(), *(zeros,) * n_quad)
    states = [state[0]] if trajectory else None
    with torch.no_grad():
        for n in range(steps):  # the same step times as solve()
            t = torch.tensor(float(t0) + n * dt, dtype=h0.dtype, device=h0.device)
            state = rk_step(stage, t, state, dt_t, tableau)
            if states is not None:
                states.append(state[0])
    return (torch.stack(states) if states is not None else state[0]), state[1:]


def odeint_adjoint(
    field: VectorField,
    h0: torch.Tensor,
    tableau: ButcherTableau | str,
    t0: float = 0.0,
    t1: float = 1.0,
    steps: int = 10,
    trajectory: bool = False,
) -> torch.Tensor:
    """Solve like :func:`edgeode.train.solver.solve`, but differentiate with the adjoint method.

    Gradients flow to ``h0`` and to the parameters of ``field`` (an ``nn.Module``; a plain function
    has no parameters). Returns h(t1), or all ``steps + 1`` grid states if ``trajectory``.
    The time passed to ``field`` is a 0-dim tensor of ``h0``'s dtype.
    """
    tableau = get_tableau(tableau)
    check_steps(steps)
    if not float(t1) > float(t0):
        raise ConfigError(f"t1 must be greater than t0, got t0={t0}, t1={t1}")
    return _OdeintAdjoint.apply(field, 0, tableau, float(t0), float(t1), steps, bool(trajectory), h0,
                                *_params_of(field))[0]


def odeint_adjoint_quadratures(field: VectorField, aug: AugmentedField, n_quad: int, h0: torch.Tensor,
                               tableau: ButcherTableau | str, t0: float = 0.0, t1: float = 1.0, steps: int = 10,
                               trajectory: bool = False) -> tuple[torch.Tensor, ...]:
    """:func:`odeint_adjoint` of ``field`` together with ``n_quad`` integrals ``∫ g_i dt`` (module docstring):
    ``aug`` evaluates ``(f, g_1..g_k)`` and ``field`` (an ``nn.Module``) holds the parameters the gradients go
    to. Returns h(t1) (or every grid state) followed by the ``n_quad`` integrals ``[B]``."""
    tableau = get_tableau(tableau)
    check_steps(steps)
    if not float(t1) > float(t0):
        raise ConfigError(f"t1 must be greater than t0, got t0={t0}, t1={t1}")
    if isinstance(n_quad, bool) or not isinstance(n_quad, int) or n_quad < 1:
        raise ConfigError(f"n_quad must be a positive integer (the number of integrals), got {n_quad!r}")
    return _OdeintAdjoint.apply(aug, n_quad, tableau, float(t0), float(t1), steps, bool(trajectory), h0,
                                *_params_of(field))
