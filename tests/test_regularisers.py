"""The kinetic-energy and Jacobian-norm regularisers (Finlay et al. 2020) on the fixed-step solve, and
``edgeode train --reg``: exact values on fields whose integrals are known, gradients, typed errors, and one
real training run that records them."""

from __future__ import annotations

import json

import pytest
import torch

from edgeode.cli import main
from edgeode.errors import ConfigError
from edgeode.tableaus import TABLEAUS
from edgeode.train.checkpoint import TrainConfig
from edgeode.train.fields import MLPField
from edgeode.train.models import ModelConfig
from edgeode.train.regularisers import Regularisation, parse_reg, regularised_solve
from edgeode.train.solver import solve

BOTH = Regularisation(kinetic=1.0, jacobian=1.0)


@pytest.mark.parametrize("tableau", sorted(TABLEAUS))
def test_terms_on_known_fields(tableau):
    """Zero field: both terms 0. Constant field c: kinetic = (t1 - t0) mean(c^2) for every tableau (its weights
    sum to 1), Jacobian 0. Linear field A h: the Hutchinson term is (t1 - t0) mean((A^T e)^2) for the probe e.
    The state is what solve() computes."""
    h0 = torch.randn(3, 4, dtype=torch.float64)
    _, zero = regularised_solve(lambda t, h: torch.zeros_like(h), h0, tableau, BOTH, 0.0, 2.0, 3)
    assert torch.count_nonzero(zero.kinetic) == 0 and torch.count_nonzero(zero.jacobian) == 0

    c = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    _, const = regularised_solve(lambda t, h: c.expand_as(h), h0, tableau, BOTH, 0.0, 2.0, 3)
    assert torch.allclose(const.kinetic, torch.full((3,), 2.0 * float((c**2).mean()), dtype=torch.float64))
    assert torch.count_nonzero(const.jacobian) == 0

    a = torch.randn(4, 4, dtype=torch.float64)
    field = lambda t, h: h @ a.T  # noqa: E731 - dh/dt = A h
    gen = torch.Generator().manual_seed(3)
    out, lin = regularised_solve(field, h0, tableau, BOTH, 0.0, 2.0, 3, generator=gen)
    probe = torch.randn(h0.shape, dtype=h0.dtype, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(lin.jacobian, 2.0 * ((probe @ a) ** 2).mean(1))
    assert torch.all(lin.kinetic > 0)
    assert torch.allclose(out, solve(field, h0, tableau, 0.0, 2.0, 3))


def test_gradients_flow_to_the_field():
    torch.manual_seed(0)
    field = MLPField(3, hidden=8)
    h0 = torch.randn(5, 3)
    for reg in (Regularisation(kinetic=1.0), Regularisation(jacobian=1.0)):
        field.zero_grad()
        traj, terms = regularised_solve(field, h0, "rk4", reg, steps=2, trajectory=True)
        assert traj.shape == (3, 5, 3)
        terms.penalty(reg).backward()
        grads = [p.grad for p in field.parameters()]
        assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)


def test_bad_specs_and_adjoint_are_typed_errors():
    assert parse_reg("kinetic=0.01, jacobian=0.5") == Regularisation(0.01, 0.5)
    assert parse_reg("jacobian=1e-3") == Regularisation(0.0, 1e-3)
    for spec, words in (("kinetic", "has no weight"), ("kinetc=1", "unknown regulariser"),
                        ("kinetic=x", "not a number"), ("kinetic=1,kinetic=2", "twice"), ("kinetic=-1", ">= 0"),
                        ("jacobian=nan", ">= 0"), ("", "has no weight")):
        with pytest.raises(ConfigError, match=words):
            parse_reg(spec)
    with pytest.raises(ConfigError, match="has none"):
        TrainConfig(model=ModelConfig(arch="resnet"), reg_jacobian=0.1)
    assert main(["train", "-o", "/nonexistent/x", "--reg", "kinetic=0.1,kinetic=1", "--adjoint", "-q"]) == 2


@pytest.mark.parametrize("trajectory", [False, True])
def test_adjoint_gradients_approach_backprop(trajectory):
    """--reg with the adjoint: the penalties' values equal backprop's solve (the same stages and probe), and the
    gradients of loss + both penalties (the Jacobian term: a second derivative) to h0 and to every parameter
    approach backprop's as the steps grow (the optimise-then-discretise gradient differs by O(dt^4) for RK4:
    measured max relative differences 3.9e-7 / 4.6e-7 at 4 steps, 1.6e-9 / 1.9e-9 at 16, a ratio ~250 = 4^4,
    float64; asserted: < 1e-4 at 4 steps and a ratio > 50)."""
    torch.manual_seed(0)
    field = MLPField(3, hidden=8).double()
    h0 = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    reg = Regularisation(kinetic=0.5, jacobian=0.5)
    diffs = []
    for steps in (4, 16):
        grads, terms_of = [], []
        for adjoint in (False, True):
            gen = torch.Generator().manual_seed(1)
            out, terms = regularised_solve(field, h0, "rk4", reg, steps=steps, trajectory=trajectory, generator=gen,
                                           adjoint=adjoint)
            loss = out.pow(2).sum() + terms.penalty(reg)
            grads.append(torch.autograd.grad(loss, (h0, *field.parameters())))
            terms_of.append(terms)
        backprop, adj = terms_of
        assert torch.allclose(adj.kinetic, backprop.kinetic) and torch.allclose(adj.jacobian, backprop.jacobian)
        diffs.append(max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(*grads, strict=True)))
    assert diffs[0] < 1e-4 and diffs[1] < diffs[0] / 50, diffs


def test_train_with_reg_records_it(tmp_path, capsys):
    """One real (tiny) training run with both penalties: backprop by default, weights in config.json, the
    epoch's mean penalties in metrics.json."""
    out = tmp_path / "run"
    code = main(["train", "-o", str(out), "--reg", "kinetic=0.01,jacobian=0.01", "--epochs", "1", "--train-limit",
                 "64", "--width", "8", "--steps", "2", "--threads", "1", "-q"])
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert (config["reg_kinetic"], config["reg_jacobian"], config["model"]["adjoint"]) == (0.01, 0.01, False)
    metrics = json.loads((out / "metrics.json").read_text())
    epoch = metrics["history"][0]
    assert epoch["train_kinetic"] > 0 and epoch["train_jacobian"] > 0
    assert metrics["regularisation"] == {"kinetic": 0.01, "jacobian": 0.01}
    adj = tmp_path / "adjoint"
    code = main(["train", "-o", str(adj), "--reg", "jacobian=0.01", "--adjoint", "--epochs", "1", "--train-limit",
                 "64", "--width", "8", "--steps", "2", "--threads", "1", "-q"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((adj / "config.json").read_text())["model"]["adjoint"] is True
    assert json.loads((adj / "metrics.json").read_text())["history"][0]["train_jacobian"] > 0
