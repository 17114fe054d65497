"""The generated solver (and the series observation step) compiled for the host and driven through ctypes.

The field is any Python callable ``f(t, h) -> dh`` on float32 arrays (an onnxruntime or TFLM session,
for instance), passed to C as a ``field(t, h, out, ctx)`` callback; a series step's GRU cell likewise as
``cell(x, h, out, ctx)``. This is how the generated C is tested against
:class:`edgeode.runtime.loop.FieldLoop` and :class:`edgeode.runtime.series.SeriesModel` on the same
model: same bits expected in float32.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeode.errors import ConfigError, DataError, SolverError
from edgeode.firmware.series_c import SeriesSource
from edgeode.firmware.solver_c import SolverSource
from edgeode.firmware.toolchain import compile_host_library

__all__ = ["HostSeries", "HostSolver"]

FieldCallable = Callable[[float, np.ndarray], np.ndarray]
CellCallable = Callable[[np.ndarray, np.ndarray], np.ndarray]
_FP = ctypes.POINTER(ctypes.c_float)
_FIELD = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_float, _FP, _FP, ctypes.c_void_p)
_CELL = ctypes.CFUNCTYPE(ctypes.c_int, _FP, _FP, _FP, ctypes.c_void_p)
_ERRORS = {1: "bad arguments", 2: "the field failed", 3: "the state became NaN/Inf", 10: "time not increasing",
           11: "NaN/Inf sample", 12: "gap too long", 13: "the cell failed"}


def _field_callback(field: FieldCallable, shape: tuple[int, ...], failure: list[BaseException]) -> Any:
    """``field`` as the C ``field(t, h, out, ctx)`` callback on a state of ``shape``; an exception in it returns 1
    (the C side stops) and is kept in ``failure`` for the caller to raise once the C call returns."""
    n = int(np.prod(shape))

    def callback(t, h_ptr, out_ptr, _ctx):
        try:
            h = np.ctypeslib.as_array(h_ptr, (n,)).reshape(shape).copy()
            np.ctypeslib.as_array(out_ptr, (n,))[:] = np.asarray(field(float(t), h), dtype=np.float32).reshape(n)
            return 0
        except BaseException as exc:  # noqa: BLE001 - re-raised after the C call returns
            failure.append(exc)
            return 1

    return _FIELD(callback)


class HostSolver:
    """``generated`` compiled with the host C compiler into ``directory`` and loaded with ctypes."""

    def __init__(self, generated: SolverSource, directory: str | Path):
        self.generated = generated
        self.library_path = compile_host_library(generated.files(), Path(directory), generated.prefix)
        self._lib = ctypes.CDLL(str(self.library_path))
        fn = getattr(self._lib, f"{generated.prefix}_solve")
        fp = ctypes.POINTER(ctypes.c_float)
        fn.argtypes = [_FIELD, ctypes.c_void_p, fp, ctypes.c_double, ctypes.c_double, ctypes.c_int, fp, fp,
                       ctypes.POINTER(ctypes.c_int)]
        fn.restype = ctypes.c_int
        self._solve = fn

    def solve(self, field: FieldCallable, h0: np.ndarray, t0: float, dt: float, steps: int) -> np.ndarray:
        """The trajectory ``[steps, *h0.shape]`` (state after every step) of the C solver around ``field``.

        ``field`` gets the state as a float32 array of ``h0``'s shape. An exception in it stops the solve
        and is raised again here; a NaN/Inf state raises :class:`SolverError` naming the step.
        """
        shape = h0.shape
        n = self.generated.state_size
        if int(np.prod(shape)) != n:
            raise ValueError(f"h0 has {int(np.prod(shape))} values; this solver was generated for {n}")
        failure: list[BaseException] = []
        cb = _field_callback(field, shape, failure)
        h0c = np.ascontiguousarray(h0, dtype=np.float32).reshape(n)
        out = np.empty(n, np.float32)
        traj = np.empty((max(steps, 0), n), np.float32)
        done = ctypes.c_int(0)
        fp = ctypes.POINTER(ctypes.c_float)
        rc = self._solve(cb, None, h0c.ctypes.data_as(fp), t0, dt, steps, out.ctypes.data_as(fp),
                         traj.ctypes.data_as(fp), ctypes.byref(done))
        if failure:
            raise failure[0]
        if rc == 3:
            raise SolverError(f"the C solver's state became NaN/Inf at step {done.value + 1}")
        if rc != 0:
            raise RuntimeError(f"{self.generated.prefix}_solve returned {rc} ({_ERRORS.get(rc, 'unknown')})")
        return traj.reshape((steps, *shape))


class HostSeries:
    """``generated`` (a series observation step and its solver) compiled into ``directory``, loaded with ctypes."""

    def __init__(self, generated: SeriesSource, directory: str | Path):
        self.generated = generated
        prefix = generated.prefix
        self.library_path = compile_host_library(generated.files(), Path(directory), f"{prefix}_series")
        self._lib = ctypes.CDLL(str(self.library_path))
        hidden = generated.spec.hidden

        class Stream(ctypes.Structure):
            _fields_ = [("h", ctypes.c_float * hidden), ("t", ctypes.c_double), ("observations", ctypes.c_long)]

        self._stream_type = Stream
        self._reset = getattr(self._lib, f"{prefix}_series_reset")
        self._reset.argtypes = [ctypes.POINTER(Stream)]
        self._reset.restype = None
        fn = getattr(self._lib, f"{prefix}_series_observe")
        fn.argtypes = [ctypes.POINTER(Stream), ctypes.c_double, _FP, _FIELD, _CELL, ctypes.c_void_p,
                       ctypes.POINTER(ctypes.c_int)]
        fn.restype = ctypes.c_int
        self._observe = fn
        self._lock = threading.Lock()  # the C step's buffers are static: one call at a time

    def run(self, field: FieldCallable, cell: CellCallable, times: np.ndarray, values: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
        """The hidden state after each observation ``[n, hidden]`` and the solver steps taken before each ``[n]``,
        for ``times`` [n] seconds and raw float32 ``values`` [n, channels] fed one at a time to the C step.

        An exception in a callback is raised again here; the C step's refusals raise what the Python
        runtime raises for the same input (:class:`DataError`, :class:`ConfigError`, :class:`SolverError`).
        """
        spec = self.generated.spec
        hidden, channels = spec.hidden, len(spec.channels)
        values = np.ascontiguousarray(values, np.float32)
        if values.ndim != 2 or values.shape[1] != channels or len(values) != len(times):
            raise ValueError(f"values must be [{len(times)}, {channels}], got {list(values.shape)}")
        failure: list[BaseException] = []

        def on_cell(x_ptr, h_ptr, out_ptr, _ctx):
            try:
                x = np.ctypeslib.as_array(x_ptr, (channels,)).reshape(1, channels).copy()
                h = np.ctypeslib.as_array(h_ptr, (hidden,)).reshape(1, hidden).copy()
                np.ctypeslib.as_array(out_ptr, (hidden,))[:] = np.asarray(cell(x, h), np.float32).reshape(hidden)
                return 0
            except BaseException as exc:  # noqa: BLE001
                failure.append(exc)
                return 1

        f_cb, c_cb = _field_callback(field, (1, hidden), failure), _CELL(on_cell)
        stream = self._stream_type()
        self._reset(ctypes.byref(stream))
        states = np.empty((len(times), hidden), np.float32)
        steps = np.zeros(len(times), np.int64)
        taken = ctypes.c_int(0)
        for i, t in enumerate(np.asarray(times, np.float64).tolist()):
            with self._lock:
                rc = self._observe(ctypes.byref(stream), t, values[i].ctypes.data_as(_FP), f_cb, c_cb, None,
                                   ctypes.byref(taken))
            if failure:
                raise failure[0]
            if rc in (10, 11):
                raise DataError(f"observation {i} (t = {t:.6g} s): {_ERRORS[rc]}")
            if rc == 12:
                raise ConfigError(f"observation {i} (t = {t:.6g} s): {_ERRORS[rc]}")
            if rc == 3:
                raise SolverError(f"the C step's state became NaN/Inf at observation {i} (t = {t:.6g} s)")
            if rc != 0:
                raise RuntimeError(f"{self.generated.prefix}_series_observe returned {rc} ({_ERRORS.get(rc, 'unknown')})")
            states[i] = np.ctypeslib.as_array(stream.h)
            steps[i] = taken.value
        return states, steps
