"""Explicit Runge–Kutta schemes as data: Butcher tableaus.

One tableau object drives both the PyTorch solver used in training (:mod:`edgeode.train.solver`)
and the numpy / ONNX / TFLite solver loop on the device (:mod:`edgeode.runtime`), so what runs on
the device is exactly the scheme that was trained.

A step of size ``dt`` from ``(t, y)`` with tableau ``(a, b, c)``::

    k_i = f(t + c_i dt, y + dt * sum_{j<i} a_ij k_j)      i = 1..s
    y'  = y + dt * sum_i b_i k_i

(Butcher, "Numerical Methods for Ordinary Differential Equations", 3rd ed., 2016, §23.)

This module imports only the standard library so that the device runtime, and a Python with
neither torch nor numpy, can use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeode.errors import TableauError, did_you_mean

__all__ = [
    "ButcherTableau",
    "EULER",
    "MIDPOINT",
    "HEUN",
    "RK4",
    "RK4_38",
    "TABLEAUS",
    "TORCHDIFFEQ_NAMES",
    "get_tableau",
    "tableau_names",
]

_TOL = 1e-12


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta scheme.

    Attributes:
        name: short identifier used on the command line and in bundle manifests.
        a: stage coefficients as a tuple of rows; row ``i`` holds ``a[i][0..i-1]`` (explicit: the
           diagonal and above are zero and are not stored). Row 0 is empty.
        b: weights of the stages in the update; they sum to 1.
        c: nodes (stage times as fractions of the step); ``c[i] == sum(a[i])``.
        order: the classical order of accuracy (global error ``O(dt**order)``).

    Construction validates the tableau (diffrax's ``ButcherTableau.__post_init__`` does the same)
    and raises :class:`~edgeode.errors.TableauError` naming what is wrong.
    """

    name: str
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int

    def __post_init__(self) -> None:
        # Normalise lists to tuples of floats so that equal tableaus compare and hash equal.
        try:
            a = tuple(tuple(float(x) for x in row) for row in self.a)
            b = tuple(float(x) for x in self.b)
            c = tuple(float(x) for x in self.c)
        except (TypeError, ValueError) as exc:
            raise TableauError(f"tableau {self.name!r}: a, b and c must hold numbers ({exc})") from None
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "c", c)

        s = len(b)
        if not isinstance(self.name, str) or not self.name:
            raise TableauError("a tableau needs a non-empty string name")
        if s == 0:
            raise TableauError(f"tableau {self.name!r}: b is empty; a scheme needs at least one stage")
        if len(c) != s or len(a) != s:
            raise TableauError(
                f"tableau {self.name!r}: a has {len(a)} rows, b {s} weights and c {len(c)} nodes; "
                "all three must have one entry per stage"
            )
        for i, row in enumerate(a):
            if len(row) > i:
                nonzero = any(abs(x) > 0.0 for x in row[i:])
                if nonzero:
                    raise TableauError(
                        f"tableau {self.name!r}: row {i} of a has entries on or above the diagonal; "
                        "only explicit schemes are supported (a[i][j] = 0 for j >= i)"
                    )
                row = row[:i]
                a = a[:i] + (row,) + a[i + 1 :]
            elif len(row) < i:
                row = row + (0.0,) * (i - len(row))
                a = a[:i] + (row,) + a[i + 1 :]
        object.__setattr__(self, "a", a)
        for x in (*b, *c, *(v for row in a for v in row)):
            if not math.isfinite(x):
                raise TableauError(f"tableau {self.name!r}: entries must be finite, got {x}")
        if abs(math.fsum(b) - 1.0) > _TOL:
            raise TableauError(
                f"tableau {self.name!r}: the weights b sum to {math.fsum(b)!r}, not 1; "
                "a consistent scheme needs sum(b) == 1"
            )
        for i, row in enumerate(a):
            if abs(math.fsum(row) - c[i]) > _TOL:
                raise TableauError(
                    f"tableau {self.name!r}: row {i} of a sums to {math.fsum(row)!r} but c[{i}] = {c[i]!r}; "
                    "each row of a must sum to its node c[i]"
                )
        if not isinstance(self.order, int) or self.order < 1:
            raise TableauError(f"tableau {self.name!r}: order must be a positive integer, got {self.order!r}")

    @property
    def stages(self) -> int:
        """Number of stages, i.e. vector-field evaluations per step."""
        return len(self.b)

    def to_dict(self) -> dict:
        """A JSON-ready description (written into bundle manifests)."""
        return {
            "name": self.name,
            "a": [list(row) for row in self.a],
            "b": list(self.b),
            "c": list(self.c),
            "order": self.order,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ButcherTableau:
        """Rebuild (and re-validate) a tableau written by :meth:`to_dict`."""
        missing = {"name", "a", "b", "c", "order"} - set(data)
        if missing:
            raise TableauError(f"tableau description is missing {sorted(missing)}")
        return cls(name=data["name"], a=data["a"], b=data["b"], c=data["c"], order=data["order"])


EULER = ButcherTableau("euler", a=((),), b=(1.0,), c=(0.0,), order=1)
MIDPOINT = ButcherTableau("midpoint", a=((), (0.5,)), b=(0.0, 1.0), c=(0.0, 0.5), order=2)
#: Heun's second-order method (the explicit trapezoidal rule).
HEUN = ButcherTableau("heun", a=((), (1.0,)), b=(0.5, 0.5), c=(0.0, 1.0), order=2)
#: The classic fourth-order Runge–Kutta method.
RK4 = ButcherTableau(
    "rk4",
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    c=(0.0, 0.5, 0.5, 1.0),
    order=4,
)
#: Kutta's 3/8 rule, fourth order. This is what torchdiffeq calls ``"rk4"``.
RK4_38 = ButcherTableau(
    "rk4_38",
    a=((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
    b=(1 / 8, 3 / 8, 3 / 8, 1 / 8),
    c=(0.0, 1 / 3, 2 / 3, 1.0),
    order=4,
)

TABLEAUS: dict[str, ButcherTableau] = {t.name: t for t in (EULER, MIDPOINT, HEUN, RK4, RK4_38)}

#: torchdiffeq fixed-grid method name for each of our tableaus (for side-by-side benchmarks).
TORCHDIFFEQ_NAMES: dict[str, str] = {"euler": "euler", "midpoint": "midpoint", "rk4_38": "rk4"}


def tableau_names() -> list[str]:
    """Names accepted by :func:`get_tableau`."""
    return list(TABLEAUS)


def get_tableau(name: str | ButcherTableau) -> ButcherTableau:
    """Look a tableau up by name (a :class:`ButcherTableau` is returned unchanged).

    Raises:
        TableauError: the name is unknown; the message lists the valid names.
    """
    if isinstance(name, ButcherTableau):
        return name
    try:
        return TABLEAUS[name]
    except (KeyError, TypeError):
        raise TableauError(
            f"unknown solver {name!r}{did_you_mean(name, TABLEAUS)}; choose one of: {', '.join(TABLEAUS)} "
            "(torchdiffeq's 'rk4' is our 'rk4_38')"
        ) from None
