"""The adjoint method (Chen et al. 2018, Alg. 1) against backprop through the solver and finite differences, in float64."""

from __future__ import annotations

import pytest
import torch

from edgeode.errors import ConfigError
from edgeode.train.adjoint import odeint_adjoint
from edgeode.train.fields import MLPField
from edgeode.train.solver import solve


def _setup(seed: int = 0) -> tuple[MLPField, torch.Tensor]:
    torch.manual_seed(seed)
    field = MLPField(3, 12).double()
    h0 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    return field, h0


def _grads(fn, field, h0, steps, trajectory, weights, tableau="rk4"):
    out = fn(field, h0, tableau, 0.0, 1.0, steps, trajectory=trajectory)
    loss = (out * weights).sum() + (out**2).sum() * 0.1
    return torch.autograd.grad(loss, [h0, *field.parameters()])


def _max_diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("trajectory", [False, True])
def test_adjoint_matches_backprop_and_converges(trajectory: bool) -> None:
    field, h0 = _setup()
    diffs = []
    for steps in (4, 16, 64):
        shape = (steps + 1, *h0.shape) if trajectory else h0.shape
        w = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(steps))
        adj = _grads(odeint_adjoint, field, h0, steps, trajectory, w)
        bp = _grads(solve, field, h0, steps, trajectory, w)
        diffs.append(_max_diff(adj, bp))
    assert diffs[-1] < 1e-8, diffs
    # optimise-then-discretise vs discretise-then-optimise: O(dt^4) apart for RK4, shrinking with steps
    assert diffs[0] > diffs[1] > diffs[2], diffs
    assert diffs[0] / diffs[2] > 100, diffs


@pytest.mark.parametrize("tableau", ["euler", "midpoint", "rk4_38"])
def test_adjoint_difference_shrinks_for_every_tableau(tableau: str) -> None:
    field, h0 = _setup(3)
    w = torch.randn(h0.shape, dtype=torch.float64)
    d = [_max_diff(_grads(odeint_adjoint, field, h0, n, False, w, tableau), _grads(solve, field, h0, n, False, w, tableau))
         for n in (8, 64)]
    assert d[1] < d[0] / 4, d


def test_adjoint_matches_finite_differences() -> None:
    """Gradient of the continuous problem: for many steps it matches finite differences of the solve."""
    field, h0 = _setup(1)
    steps = 64

    def loss_of(h: torch.Tensor) -> torch.Tensor:
        return (solve(field, h, "rk4", 0.0, 1.0, steps) ** 2).sum()

    (g,) = torch.autograd.grad((odeint_adjoint(field, h0, "rk4", 0.0, 1.0, steps) ** 2).sum(), [h0])
    eps = 1e-6
    fd = torch.zeros_like(h0)
    with torch.no_grad():
        for idx in [(0, 0), (1, 2), (3, 1)]:
            hp, hm = h0.detach().clone(), h0.detach().clone()
            hp[idx] += eps
            hm[idx] -= eps
            fd[idx] = (loss_of(hp) - loss_of(hm)) / (2 * eps)
            assert abs(float(fd[idx] - g[idx])) < 1e-6 * max(1.0, abs(float(fd[idx])))
    # and for a parameter
    p = field.net[0].weight
    (gp,) = torch.autograd.grad((odeint_adjoint(field, h0, "rk4", 0.0, 1.0, steps) ** 2).sum(), [p])
    with torch.no_grad():
        orig = p[2, 1].item()
        p[2, 1] = orig + eps
        lp = loss_of(h0)
        p[2, 1] = orig - eps
        lm = loss_of(h0)
        p[2, 1] = orig
    assert abs(float((lp - lm) / (2 * eps)) - float(gp[2, 1])) < 1e-6


def test_gradcheck_tiny_problem() -> None:
    """torch.autograd.gradcheck on h0: with many steps the adjoint gradient is the solve's gradient to ~1e-8."""
    torch.manual_seed(2)
    field = MLPField(2, 4).double()
    h0 = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h: odeint_adjoint(field, h, "rk4", 0.0, 0.5, 32), (h0,), atol=1e-6)


def test_forward_equals_solve_and_time_dtype() -> None:
    field, h0 = _setup()
    seen: set[torch.dtype] = set()

    def spy(t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        seen.add(t.dtype)
        assert isinstance(t, torch.Tensor) and t.ndim == 0
        return field(t, h)

    out = odeint_adjoint(spy, h0, "rk4", 0.0, 1.0, 5)
    assert torch.equal(out, solve(field, h0.detach(), "rk4", 0.0, 1.0, 5))
    out.sum().backward()  # a plain function field: gradient flows to h0 only
    assert h0.grad is not None and seen == {torch.float64}


def test_adjoint_builds_no_graph_over_steps() -> None:
    """The forward pass keeps no per-step graph: only the output node and the saved final state."""
    field, h0 = _setup()
    out = odeint_adjoint(field, h0, "rk4", 0.0, 1.0, 50)
    assert type(out.grad_fn).__name__ == "_OdeintAdjointBackward"
    assert len(out.grad_fn.saved_tensors) == 1 + len(list(field.parameters()))


def test_bad_arguments() -> None:
    field, h0 = _setup()
    with pytest.raises(ConfigError, match="positive integer"):
        odeint_adjoint(field, h0, "rk4", 0.0, 1.0, 0)
    with pytest.raises(ConfigError, match="t1 must be greater"):
        odeint_adjoint(field, h0, "rk4", 1.0, 1.0, 4)
