"""The ODE-RNN observation step as generated C99, from a series bundle's manifest.

What :meth:`edgeode.runtime.series.SeriesModel.observe` does, in the same order of operations, so that
around the same field and cell it gives the same bits (compiled with ``-ffp-contract=off``; measured in
``tests/test_firmware_series.py``): normalise the raw sample per channel in double, solve the state across
the gap with the generated fixed-step loop (:mod:`edgeode.firmware.solver_c`, the bundle's tableau) in
``interval_steps(gap, max_step)`` equal steps, then the GRU cell (Rubanova et al. 2019, arXiv 1907.03907,
Algorithm 1). The channel means and deviations are C99 hexadecimal literals: exactly the manifest's doubles.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeode.firmware.solver_c import SolverSource, generate_solver
from edgeode.firmware.templates_io import render
from edgeode.runtime.limits import MAX_STEPS
from edgeode.runtime.manifest import SeriesSpec
from edgeode.tableaus import ButcherTableau

__all__ = ["SeriesSource", "generate_series"]


@dataclass(frozen=True)
class SeriesSource:
    """The generated observation step (``<prefix>_series.{h,c}``) and the solver it calls."""

    prefix: str
    spec: SeriesSpec
    solver: SolverSource
    header: str
    source: str

    @property
    def state_size(self) -> int:
        return self.spec.hidden

    def files(self) -> dict[str, str]:
        """File name -> text of the solver and the series step, for writing into a project."""
        return {**self.solver.files(), f"{self.prefix}_series.h": self.header, f"{self.prefix}_series.c": self.source}


def _hex(x: float) -> str:
    return float(x).hex()


def generate_series(spec: SeriesSpec, tableau: str | ButcherTableau, *, prefix: str = "edgeode") -> SeriesSource:
    """C99 source of the observation step for ``spec`` (a manifest's ``series``) with ``tableau``'s loop.

    Raises:
        ConfigError: a bad prefix or state size (from :func:`~edgeode.firmware.solver_c.generate_solver`).
    """
    from edgeode import __version__

    solver = generate_solver(tableau, spec.hidden, prefix=prefix)
    values = dict(prefix=prefix, PREFIX=prefix.upper(), version=__version__, tableau_name=solver.tableau.name,
                  channels=len(spec.channels), channel_names=", ".join(spec.channels), hidden=spec.hidden,
                  max_step=_hex(spec.max_step), max_step_doc=f"{spec.max_step:g}", max_gap_steps=MAX_STEPS)
    header = render("series.h.in", **values)
    source = render("series.c.in", **values, mean=", ".join(_hex(m) for m in spec.mean),
                    std=", ".join(_hex(s) for s in spec.std))
    return SeriesSource(prefix, spec, solver, header, source)
