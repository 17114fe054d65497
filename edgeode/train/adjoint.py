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
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgeode.errors import ConfigError
from edgeode.tableaus import ButcherTableau, get_tableau
from edgeode.train.solver import VectorField, check_steps, rk_step, solve

__all__ = ["odeint_adjoint"]

_State = tuple[torch.Tensor, ...]


def _params_of(field: VectorField) -> list[torch.Tensor]:
    if isinstance(field, nn.Module):
        return [p for p in field.parameters() if p.requires_grad]
    return []


class _OdeintAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, field: VectorField, tableau: ButcherTableau, t0: float, t1: float, steps: int,
                trajectory: bool, h0: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = solve(field, h0, tableau, t0, t1, steps, trajectory=trajectory)
        ctx.field, ctx.tableau, ctx.t0, ctx.t1, ctx.steps, ctx.trajectory = field, tableau, t0, t1, steps, trajectory
        ctx.save_for_backward(out[-1] if trajectory else out, *params)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        h1, *params = ctx.saved_tensors
        field, tableau, steps = ctx.field, ctx.tableau, ctx.steps
        n_params = len(params)

        def augmented(t: torch.Tensor, state: _State) -> _State:
            h, a = state[0], state[1]
            with torch.enable_grad():
                h_in = h.detach().requires_grad_(True)
                f = field(t, h_in)
                grads = torch.autograd.grad(f, (h_in, *params), grad_outputs=a, allow_unused=True,
                                            create_graph=False)
            vjp_h = grads[0] if grads[0] is not None else torch.zeros_like(h)
            vjp_p = tuple(-g if g is not None else torch.zeros_like(p) for g, p in zip(grads[1:], params, strict=False))
            return (f.detach(), -vjp_h, *vjp_p)

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
        return (None, None, None, None, None, None, grad_h0, *grad_params)


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
    return _OdeintAdjoint.apply(field, tableau, float(t0), float(t1), steps, bool(trajectory), h0,
                                *_params_of(field))
