"""The streaming API of a series bundle (an ODE-RNN): one observation at a time, as a sensor delivers them.

    >>> from edgeode.runtime import load
    >>> model = load("bundle/")                 # a kind-"series" bundle gives a SeriesModel
    >>> state = model.init_state()
    >>> for t, x in stream:                     # t in seconds, x the raw sample [channels]
    ...     state = model.observe(state, t, x)
    >>> scores = model.classify(state)          # class scores [classes]

``observe`` solves the state from the previous observation's time to ``t`` with the runtime's
:class:`~edgeode.runtime.loop.FieldLoop` around the ``field`` artifact -- the tableau of the manifest,
``interval_steps(gap, max_step)`` equal steps, the rule training used -- then applies the GRU ``cell``
artifact to the normalised sample (Rubanova et al. 2019, arXiv 1907.03907, Algorithm 1). Where the bundle
has an ``observe`` file for the backend's format (ONNX: the solve and the cell as one graph), each
observation is one call of it instead (``fused=False`` keeps the separate files). States are
immutable values (:class:`SeriesState`), so one model serves any number of streams and threads.
``predict_series`` runs a whole recorded series the same way.

Bad input is refused before any work, with typed errors: times that do not increase
(:class:`~edgeode.errors.DataError`), NaN / Inf samples (``DataError``), a wrong channel count
(:class:`~edgeode.errors.ShapeError`), a gap needing more solver steps than
:data:`edgeode.runtime.limits.MAX_STEPS` (:class:`~edgeode.errors.ConfigError`). No torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeode.errors import ConfigError, DataError, ShapeError, SolverError
from edgeode.runtime.backends import BACKEND_FORMAT, Session, open_session
from edgeode.runtime.bundle import Bundle
from edgeode.runtime.contract import check_contract
from edgeode.runtime.limits import MAX_STEPS
from edgeode.runtime.loop import FieldLoop, interval_steps
from edgeode.runtime.manifest import Artifact, SeriesSpec

__all__ = ["SeriesModel", "SeriesState", "SERIES_ROLES", "gap_steps"]

SERIES_ROLES = ("field", "cell", "head")


@dataclass(frozen=True)
class SeriesState:
    """Where one stream stands: the hidden state ``h`` [hidden] (float32) after ``observations`` samples,
    the last of them at time ``t`` (``None`` before the first)."""

    h: np.ndarray
    t: float | None
    observations: int


def _pick(bundle: Bundle, role: str, fmt: str, precision: str) -> Artifact:
    arts = bundle.artifacts(role=role, format=fmt, precision=precision)
    if not arts:
        have = sorted({(a.role, a.format, a.precision) for a in bundle.manifest.artifacts})
        raise ConfigError(f"the series bundle has no {fmt} {precision} {role!r} file (it has {have}); pick another "
                          "backend or precision, or re-export the bundle")
    return arts[0]


def gap_steps(gap: float, max_step: float, what: str, fix: str) -> int:
    """``interval_steps(gap, max_step)``, the solver steps across a gap, or a :class:`ConfigError` naming ``what``
    and ``fix`` when they are above :data:`~edgeode.runtime.limits.MAX_STEPS` (also for a gap so long that the
    count overflows: 1e308 s)."""
    ratio = gap / max_step - 1e-9  # interval_steps is ceil(this): above the bound exactly when this is
    if not ratio <= MAX_STEPS:  # also inf and NaN, before math.ceil could overflow
        steps = f"{math.ceil(ratio):,}" if math.isfinite(ratio) else "more than 10^308"
        raise ConfigError(f"{what} needs {steps} solver steps of at most {max_step:g} s, above the bound of "
                          f"{MAX_STEPS:,} (edgeode.runtime.limits.MAX_STEPS); {fix}")
    return interval_steps(gap, max_step)


class SeriesModel:
    """A series bundle opened for streaming inference. Make one with :func:`edgeode.runtime.load`."""

    def __init__(self, bundle: Bundle, backend: str, threads: int | None = None, precision: str = "float32",
                 engines: int | None = None, fused: bool = True):
        man = bundle.manifest
        if man.kind != "series" or man.series is None or man.solver is None:
            raise ConfigError(f"{bundle.root} is a {man.kind} bundle, not a series one; use edgeode.runtime.load")
        self.bundle, self.manifest, self.backend, self.precision = bundle, man, backend, precision
        self.spec: SeriesSpec = man.series
        self.tableau = man.solver.tableau
        fmt = BACKEND_FORMAT[backend]
        arts = {role: _pick(bundle, role, fmt, precision) for role in SERIES_ROLES}
        observe = bundle.artifacts(role="observe", format=fmt, precision=precision) if fused else []
        if observe:
            arts["observe"] = observe[0]
        self.sessions: dict[str, Session] = {}
        try:
            for role, art in arts.items():
                self.sessions[role] = open_session(backend, bundle.path(art), art, threads, engines)
            checked = [check_contract(man, art, bundle.path(art)) for art in arts.values()]
        except BaseException:
            self.close()
            raise
        self.contract = "checked" if all(checked) else "unchecked (artifacts without a record)"
        self._loop = FieldLoop(self.sessions["field"], self.tableau)
        self._observe = self.sessions.get("observe")
        self._mean = np.asarray(self.spec.mean, np.float64)
        self._std = np.asarray(self.spec.std, np.float64)

    # ----------------------------------------------------------------- info
    @property
    def channels(self) -> tuple[str, ...]:
        return self.spec.channels

    @property
    def labels(self) -> tuple[str, ...] | None:
        return self.manifest.output.labels

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary of what runs."""
        return {"kind": "series", "arch": self.manifest.model.get("arch"), "bundle": str(self.bundle.root),
                "backend": self.backend, "format": BACKEND_FORMAT[self.backend], "precision": self.precision,
                "tableau": self.tableau.name, "stages": self.tableau.stages, "max_step": self.spec.max_step,
                "mode": "fused" if self._observe else "loop",  # the observe file, or the field and cell files
                "calls_per_observation": "1 (observe)" if self._observe else "stages x steps + 1 (field, cell)",
                "hidden": self.spec.hidden, "channels": list(self.spec.channels), "contract": self.contract,
                "artifacts": {role: s.artifact.path for role, s in self.sessions.items()},
                "labels": list(self.labels) if self.labels else None}

    def __repr__(self) -> str:
        return f"SeriesModel({self.manifest.model.get('arch')}, {self.backend}, {self.tableau.name}, max_step={self.spec.max_step})"

    # ----------------------------------------------------------------- checks
    def _sample(self, x: Any, where: str) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise ShapeError(f"{where} must be numbers, got dtype {x.dtype}")
        if x.shape != (len(self.spec.channels),):
            raise ShapeError(f"{where} has shape {list(x.shape)}; the model reads {len(self.spec.channels)} channels "
                             f"({', '.join(self.spec.channels)}) per sample, in that order")
        if not np.isfinite(x).all():
            bad = [self.spec.channels[i] for i in np.flatnonzero(~np.isfinite(x))]
            raise DataError(f"{where} has NaN/Inf in channel(s) {bad}; leave a missing sample out (the ODE-RNN "
                            "bridges the gap) instead of sending NaN")
        return ((x.astype(np.float64) - self._mean) / self._std).astype(np.float32)

    def _gap_steps(self, t0: float, t: float) -> int:
        return gap_steps(t - t0, self.spec.max_step, f"the gap from t = {t0:.6g} s to {t:.6g} s",
                         "start a new stream (init_state()) after a gap this long")

    @staticmethod
    def _time(t: Any, last: float | None, where: str) -> float:
        if isinstance(t, bool) or not isinstance(t, (int, float, np.floating, np.integer)) or not math.isfinite(t):
            raise DataError(f"{where} must be a finite number of seconds, got {t!r}")
        t = float(t)
        if last is not None and not t > last:
            raise DataError(f"{where} = {t:.6g} s does not come after the previous observation at {last:.6g} s; "
                            "times must increase (sort the samples, and drop duplicates)")
        return t

    # ----------------------------------------------------------------- streaming
    def init_state(self) -> SeriesState:
        """The state of a new stream: zeros, no observation yet."""
        return SeriesState(np.zeros(self.spec.hidden, np.float32), None, 0)

    def _advance(self, state: SeriesState, t: float, x: np.ndarray, steps: int) -> SeriesState:
        h = state.h[None]
        dt = (t - state.t) / steps if state.t is not None else 0.0
        if self._observe is not None:
            h = self._observe.run({"x": x[None], "h": h, "dt": np.array(dt, np.float32),
                                   "steps": np.array(steps, np.int64)})[0]
        else:
            if steps:
                h = self._loop.integrate(h, 0.0, dt, steps)
            h = self.sessions["cell"].run({"x": x[None], "h": np.ascontiguousarray(h, np.float32)})[0]
        if not np.isfinite(h).all():
            raise SolverError(f"the hidden state became NaN/Inf at the observation at t = {t:.6g} s; the sample is far "
                              "outside what the model was trained on: check its units against the manifest's series.mean/std")
        return SeriesState(np.ascontiguousarray(h[0], np.float32), t, state.observations + 1)

    def observe(self, state: SeriesState, t: float, x: Any) -> SeriesState:
        """The state after the raw sample ``x`` [channels] observed at time ``t`` (seconds): the solve across the
        gap since the last observation (none before the first), then the GRU update. ``state`` is not changed."""
        if not isinstance(state, SeriesState):
            raise ConfigError(f"state must come from init_state() or observe(), got {type(state).__name__}")
        t = self._time(t, state.t, "t")
        xs = self._sample(x, "x")
        steps = self._gap_steps(state.t, t) if state.t is not None else 0
        return self._advance(state, t, xs, steps)

    def classify(self, state: SeriesState) -> np.ndarray:
        """Class scores (logits) [classes] of the stream so far."""
        if not isinstance(state, SeriesState) or state.observations == 0:
            raise ConfigError("classify() needs a state that has seen at least one observation (observe(...) first)")
        return np.asarray(self.sessions["head"].run({"h": state.h[None]})[0][0], np.float32)

    def predict_series(self, times: Any, values: Any) -> np.ndarray:
        """Class scores [classes] of one recorded series: ``times`` [n] increasing seconds, raw ``values``
        [n, channels]. Every sample is checked before any is run; the result equals feeding them to ``observe``."""
        times = np.asarray(times)
        values = np.asarray(values)
        if times.ndim != 1 or times.size == 0:
            raise ShapeError(f"times must be a 1-D array of at least one time, got shape {list(times.shape)}")
        if values.ndim != 2 or values.shape[0] != times.size:
            raise ShapeError(f"values must have shape [{times.size}, {len(self.spec.channels)}] (one row per time), "
                             f"got {list(values.shape)}")
        if times.dtype.kind not in "fiu":
            raise DataError(f"times must be numbers of seconds, got dtype {times.dtype}")
        xs, steps, last = [], [0], None
        for i, t in enumerate(times.tolist()):
            t = self._time(t, last, f"times[{i}]")
            xs.append(self._sample(values[i], f"values[{i}]"))
            if last is not None:
                steps.append(self._gap_steps(last, t))
            last = t
        state = self.init_state()
        for t, x, n in zip(times.tolist(), xs, steps, strict=True):
            state = self._advance(state, float(t), x, n)
        return self.classify(state)

    def interrupt(self) -> None:
        """Stop solves in progress (from another thread); later calls raise :class:`~edgeode.errors.Interrupted`."""
        self._loop.interrupt()

    def close(self) -> None:
        for sess in self.sessions.values():
            sess.close()
        self.sessions = {}

    def __enter__(self) -> SeriesModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
