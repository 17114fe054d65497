"""The device-side fixed-step Runge–Kutta loop in numpy around an exported vector field.

It runs the same :class:`~edgeode.tableaus.ButcherTableau` the model was trained with (or another
one the user picks), calling the exported ``field`` artifact once per stage::

    k_i = f(t + c_i dt, h + dt * sum_{j<i} a_ij k_j),   h' = h + dt * sum_i b_i k_i

(Butcher 2016, §23; the same update as :func:`edgeode.train.solver.rk_step`.) The stage buffers
are allocated once per state shape and thread, and reused across steps and calls (so one loop
may run in many threads at once, each on its own buffers). After every step the state
is checked for NaN/Inf, so a diverging solve stops with a :class:`~edgeode.errors.SolverError`
that names the step and the time instead of returning garbage.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from edgeode.errors import BundleError, Interrupted, SolverError
from edgeode.runtime.backends import Session
from edgeode.tableaus import ButcherTableau

__all__ = ["FieldLoop", "interval_steps"]


def interval_steps(length: float, dt: float) -> int:
    """Number of equal steps that cover ``length`` with steps no larger than ``dt`` (at least 1)."""
    return max(1, math.ceil(length / dt - 1e-9))


@dataclass
class _Buffers:
    h: np.ndarray  # the state
    y: np.ndarray  # the stage input
    tmp: np.ndarray
    ks: np.ndarray  # [stages, *shape]


class FieldLoop:
    """Integrates dh/dt = f(t, h) with a fixed-step explicit RK scheme, f being an exported artifact.

    The field artifact's inputs are found from its tensor specs: the rank-0 input is the time ``t``
    (float32 scalar; absent for an autonomous field whose exporter dropped the unused input), the
    other one the state ``h``; the first output is dh/dt.
    """

    def __init__(self, field: Session, tableau: ButcherTableau):
        self.field = field
        self.tableau = tableau
        time_inputs = [s for s in field.inputs if len(s.shape) == 0]
        state_inputs = [s for s in field.inputs if len(s.shape) != 0]
        if len(state_inputs) != 1 or len(time_inputs) > 1:
            raise BundleError(
                f"{field.artifact.path}: a field artifact takes a scalar time t and one state h, but the manifest lists "
                f"inputs {[(s.name, list(s.shape)) for s in field.inputs]}; re-export the bundle"
            )
        self.t_name = time_inputs[0].name if time_inputs else None
        self.h_name = state_inputs[0].name
        self._a = [[(j, a) for j, a in enumerate(row) if a != 0.0] for row in tableau.a]
        self._b = [(i, b) for i, b in enumerate(tableau.b) if b != 0.0]
        self._local = threading.local()  # per thread: {state shape: _Buffers}
        self._calls = 0
        self._calls_lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def calls(self) -> int:
        """Field calls made since construction, all threads together (for profiling)."""
        return self._calls

    def interrupt(self) -> None:
        """Make every integration in progress (any thread) and every later one raise :class:`Interrupted`
        before its next step."""
        self._stop.set()

    def _buffers_for(self, shape: tuple[int, ...]) -> _Buffers:
        buffers = self._local.__dict__.setdefault("by_shape", {})
        buf = buffers.get(shape)
        if buf is None:
            buf = _Buffers(
                h=np.empty(shape, np.float32),
                y=np.empty(shape, np.float32),
                tmp=np.empty(shape, np.float32),
                ks=np.empty((self.tableau.stages, *shape), np.float32),
            )
            buffers[shape] = buf
        return buf

    def _f(self, t: float, h: np.ndarray) -> np.ndarray:
        feeds = {self.h_name: h}
        if self.t_name is not None:
            feeds[self.t_name] = np.array(t, dtype=np.float32)
        with self._calls_lock:
            self._calls += 1
        return self.field.run(feeds)[0]

    def integrate(self, h0: np.ndarray, t_start: float, dt: float, steps: int, out: list[np.ndarray] | None = None,
                  step_offset: int = 0) -> np.ndarray:
        """``steps`` steps of size ``dt`` from ``(t_start, h0)``; returns the final state (a new array).

        If ``out`` is a list, the state after every step is appended to it (a copy).
        ``step_offset`` only shifts the step numbers reported in errors (for multi-interval solves).
        """
        shape = tuple(h0.shape)
        buf = self._buffers_for(shape)
        h, y, tmp, ks = buf.h, buf.y, buf.tmp, buf.ks
        np.copyto(h, h0, casting="same_kind")
        # coefficients times dt, as float32 scalars, computed once per call
        a_dt = [[(j, np.float32(dt * a)) for j, a in row] for row in self._a]
        b_dt = [(i, np.float32(dt * b)) for i, b in self._b]
        c_dt = [c * dt for c in self.tableau.c]
        with np.errstate(over="ignore", invalid="ignore"):
            for n in range(steps):
                if self._stop.is_set():
                    raise Interrupted(f"the solve was interrupted at step {step_offset + n + 1} of {self.tableau.name}")
                t = t_start + n * dt
                for i, row in enumerate(a_dt):
                    if row:
                        np.copyto(y, h)
                        for j, a in row:
                            np.multiply(ks[j], a, out=tmp)
                            y += tmp
                        stage_in = y
                    else:
                        stage_in = h
                    k = self._f(t + c_dt[i], stage_in)
                    if k.shape != shape:
                        raise BundleError(
                            f"{self.field.artifact.path}: the field returned shape {k.shape} for a state of shape {shape}; "
                            "dh/dt must have the state's shape: re-export the bundle"
                        )
                    ks[i] = k
                for i, b in b_dt:
                    np.multiply(ks[i], b, out=tmp)
                    h += tmp
                # one reduction; a float64 sum of float32 values cannot overflow, NaN/Inf propagate
                if not math.isfinite(h.sum(dtype=np.float64)):
                    raise SolverError(
                        f"the solver state became NaN/Inf at step {step_offset + n + 1} (t = {t + dt:.6g}, "
                        f"{self.tableau.name}, dt = {dt:.6g}); the input is far outside what the model was trained on, "
                        "or the solve is unstable: try more steps (--steps), another solver, or float32 precision"
                    )
                if out is not None:
                    out.append(h.copy())
        return h.copy()
