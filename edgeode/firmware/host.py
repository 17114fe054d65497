"""The generated solver compiled for the host and driven from Python through ctypes.

The field is any Python callable ``f(t, h) -> dh`` on float32 arrays (an onnxruntime or TFLM session,
for instance), passed to C as a ``field(t, h, out, ctx)`` callback. This is how the generated C is
tested against :class:`edgeode.runtime.loop.FieldLoop` on the same model: same bits expected in float32.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeode.errors import SolverError
from edgeode.firmware.solver_c import SolverSource
from edgeode.firmware.toolchain import compile_host_library

__all__ = ["HostSolver"]

FieldCallable = Callable[[float, np.ndarray], np.ndarray]
_FIELD = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_float, ctypes.POINTER(ctypes.c_float),
                          ctypes.POINTER(ctypes.c_float), ctypes.c_void_p)
_ERRORS = {1: "bad arguments", 2: "the field failed", 3: "the state became NaN/Inf"}


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

        def callback(t, h_ptr, out_ptr, _ctx):
            try:
                h = np.ctypeslib.as_array(h_ptr, (n,)).reshape(shape).copy()
                dh = np.asarray(field(float(t), h), dtype=np.float32).reshape(n)
                np.ctypeslib.as_array(out_ptr, (n,))[:] = dh
                return 0
            except BaseException as exc:  # noqa: BLE001 - re-raised after the C call returns
                failure.append(exc)
                return 1

        cb = _FIELD(callback)
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
