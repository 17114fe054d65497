"""The torch fixed-step solver: exactness on a known problem, trajectories, time dtype, torchdiffeq parity."""

from __future__ import annotations

import math

import pytest
import torch

from edgeode.errors import ConfigError, TableauError
from edgeode.tableaus import TORCHDIFFEQ_NAMES, tableau_names
from edgeode.train.fields import MLPField
from edgeode.train.solver import odeint, solve


def _decay(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -y


@pytest.mark.parametrize("name", tableau_names())
def test_solve_matches_exact_solution(name: str) -> None:
    y0 = torch.ones(3, 2, dtype=torch.float64)
    out = solve(_decay, y0, name, 0.0, 1.0, steps=200)
    assert torch.allclose(out, y0 * math.exp(-1.0), atol=5e-3)


def test_trajectory_and_odeint_agree() -> None:
    torch.manual_seed(0)
    field = MLPField(3, 8).double()
    y0 = torch.randn(4, 3, dtype=torch.float64)
    traj = solve(field, y0, "rk4", 0.0, 2.0, steps=8, trajectory=True)
    assert traj.shape == (9, 4, 3)
    assert torch.equal(traj[0], y0)
    final = solve(field, y0, "rk4", 0.0, 2.0, steps=8)
    assert torch.allclose(traj[-1], final, atol=1e-12)
    grid = odeint(field, y0, torch.linspace(0, 2, 5, dtype=torch.float64), "rk4", steps_per_interval=2)
    assert torch.allclose(grid, traj[::2], atol=1e-12)


def test_reverse_time_odeint_returns_to_start() -> None:
    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    there = odeint(_decay, y0, [0.0, 1.0], "rk4", 100)[-1]
    back = odeint(_decay, there, [1.0, 0.0], "rk4", 100)[-1]
    assert torch.allclose(back, y0, atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_time_is_a_tensor_of_the_state_dtype(dtype: torch.dtype) -> None:
    seen: list[torch.Tensor] = []

    def field(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(t)
        return -y

    solve(field, torch.ones(2, 2, dtype=dtype), "rk4", 0.0, 1.0, steps=3)
    assert len(seen) == 12
    assert all(isinstance(t, torch.Tensor) and t.dtype == dtype and t.ndim == 0 for t in seen)
    assert [round(float(t), 6) for t in seen[:4]] == [0.0, round(1 / 6, 6), round(1 / 6, 6), round(1 / 3, 6)]


@pytest.mark.parametrize("ours", sorted(TORCHDIFFEQ_NAMES))
def test_matches_torchdiffeq_fixed_grid(ours: str) -> None:
    torchdiffeq = pytest.importorskip("torchdiffeq", reason="torchdiffeq (dev extra) not installed")
    torch.manual_seed(1)
    field = MLPField(3, 8).double()
    y0 = torch.randn(5, 3, dtype=torch.float64)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    theirs = torchdiffeq.odeint(field, y0, t, method=TORCHDIFFEQ_NAMES[ours])
    mine = odeint(field, y0, t, ours, steps_per_interval=1)
    assert torch.allclose(mine, theirs, atol=1e-12)


def test_bad_arguments() -> None:
    y0 = torch.ones(1, 2)
    with pytest.raises(ConfigError, match="positive integer"):
        solve(_decay, y0, "rk4", steps=0)
    with pytest.raises(ConfigError, match="positive integer"):
        solve(_decay, y0, "rk4", steps=2.5)  # type: ignore[arg-type]
    with pytest.raises(TableauError, match="choose one of: euler"):
        solve(_decay, y0, "dopri5")
    with pytest.raises(ConfigError, match="1-D"):
        odeint(_decay, y0, [0.0])
