"""Butcher tableaus: declared order = observed convergence order; malformed tableaus refused; no torch/numpy needed."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgeode.errors import TableauError
from edgeode.tableaus import TABLEAUS, ButcherTableau, get_tableau, tableau_names

ROOT = Path(__file__).resolve().parents[1]


def _solve_scalar(tab: ButcherTableau, steps: int) -> float:
    """Pure-Python fixed-step solve of y' = -2ty + cos t, y(0) = 1, returning y(1.5)."""

    def f(t: float, y: float) -> float:
        return -2.0 * t * y + math.cos(t)  # non-autonomous, so the nodes c matter

    t, y, dt = 0.0, 1.0, 1.5 / steps
    for n in range(steps):
        t = n * dt
        ks: list[float] = []
        for row, c in zip(tab.a, tab.c, strict=True):
            ks.append(f(t + c * dt, y + dt * sum(a * k for a, k in zip(row, ks, strict=False))))
        y = y + dt * sum(b * k for b, k in zip(tab.b, ks, strict=True))
    return y


def _exact() -> float:
    # y' = -2ty + cos t, y(0) = 1  =>  y(T) = e^{-T^2} (1 + int_0^T e^{s^2} cos s ds); integral by composite Simpson.
    T, n = 1.5, 20000
    h = T / n
    g = [math.exp(s * s) * math.cos(s) for s in (i * h for i in range(n + 1))]
    integral = h / 3 * (g[0] + g[-1] + 4 * sum(g[1:-1:2]) + 2 * sum(g[2:-1:2]))
    return math.exp(-T * T) * (1.0 + integral)


def _slope(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


@pytest.mark.parametrize("name", tableau_names())
def test_observed_order_matches_declared(name: str) -> None:
    tab = get_tableau(name)
    exact = _exact()
    steps = [16, 32, 64, 128]
    log_dt = [math.log(1.5 / n) for n in steps]
    log_err = [math.log(abs(_solve_scalar(tab, n) - exact)) for n in steps]
    order = _slope(log_dt, log_err)
    assert abs(order - tab.order) <= 0.3, f"{name}: observed order {order:.2f}, declared {tab.order}"


def test_registry_and_lookup() -> None:
    assert set(TABLEAUS) == {"euler", "midpoint", "heun", "rk4", "rk4_38"}
    assert get_tableau(TABLEAUS["rk4"]) is TABLEAUS["rk4"]
    with pytest.raises(TableauError, match="rk4_38"):
        get_tableau("dopri5")
    for tab in TABLEAUS.values():
        assert ButcherTableau.from_dict(tab.to_dict()) == tab


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"a": ((),), "b": (0.5,), "c": (0.0,), "order": 1}, "sum to"),
        ({"a": ((), (0.3,)), "b": (0.5, 0.5), "c": (0.0, 0.5), "order": 2}, "row 1"),
        ({"a": ((0.5,),), "b": (1.0,), "c": (0.0,), "order": 1}, "explicit"),
        ({"a": ((),), "b": (1.0,), "c": (0.0, 1.0), "order": 1}, "one entry per stage"),
        ({"a": ((),), "b": (), "c": (), "order": 1}, "at least one stage"),
        ({"a": ((),), "b": (1.0,), "c": (0.0,), "order": 0}, "order"),
        ({"a": ((),), "b": (float("nan"),), "c": (0.0,), "order": 1}, "finite"),
        ({"a": ((),), "b": ("x",), "c": (0.0,), "order": 1}, "numbers"),
    ],
)
def test_malformed_tableaus_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(TableauError, match=message):
        ButcherTableau("bad", **kwargs)


def test_import_without_torch_or_numpy(tmp_path: Path) -> None:
    """edgeode.tableaus must work in a Python where importing torch or numpy fails."""
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent("""
        import sys

        class _Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "numpy"):
                    raise ImportError(f"blocked for this test: {name}")
                return None

        sys.meta_path.insert(0, _Block())
    """))
    code = textwrap.dedent("""
        import sys
        try:
            import numpy  # noqa: F401
        except ImportError:
            pass
        else:
            raise SystemExit("numpy import was not blocked")
        import edgeode.tableaus as t
        assert t.get_tableau("rk4").stages == 4
        assert "torch" not in sys.modules and "numpy" not in sys.modules
        print("ok")
    """)
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
