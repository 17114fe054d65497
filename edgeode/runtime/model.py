"""``load(bundle) -> Model``: the torch-free inference API used on devices.

Two ways to run an ODE model (``mode``):

* ``"fused"``: one call of the ``fused`` artifact, the whole solve inside one graph (ONNX: a ``Loop``
  whose optional int64 input ``steps`` sets the number of steps; TFLite: unrolled, steps fixed).
  Fastest (one backend call; DESIGN.md: ~3x faster than a Python loop for an MLP field).
* ``"loop"``: ``encoder`` -> numpy RK loop around the ``field`` artifact (:mod:`edgeode.runtime.loop`)
  -> ``head``. Any tableau, any number of steps, any output times (for dynamics).

Networks without an ODE (ResNet / VGG baselines) have a single ``model`` artifact.

TFLite files have a fixed batch: a larger batch is run in chunks of that size, the last chunk
padded by repeating its last sample (outputs of the padding are dropped).

Threads: one ``Model`` may be shared by any number of threads; ``predict`` and ``solve`` return
bit-identical results to serial calls on every backend and mode. The solver loop keeps its buffers
per thread, and each backend session is safe to run concurrently (onnxruntime's session is
reentrant; TFLite interpreters are pooled, one per concurrent caller up to the CPU count; see
:mod:`edgeode.runtime.backends`). Work per call is bounded (:mod:`edgeode.runtime.limits`), and
:meth:`Model.interrupt` stops runs in progress from another thread.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeode.errors import ConfigError, ShapeError, SolverError
from edgeode.runtime.backends import BACKEND_FORMAT, Session, choose_backend, open_session, run_chunked
from edgeode.runtime.bundle import Bundle, read_bundle
from edgeode.runtime.contract import check_contract
from edgeode.runtime.limits import MAX_STEPS, check_steps, check_work
from edgeode.runtime.loop import FieldLoop, interval_steps
from edgeode.runtime.manifest import Artifact, Manifest, TensorSpec
from edgeode.tableaus import ButcherTableau, get_tableau

__all__ = ["MODES", "Model", "load"]

MODES = ("fused", "loop")
STEPS_INPUT = "steps"


def _check_threads(threads: int | None) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive integer (CPU threads for the backend) or None, got {threads!r}")
    most = max_threads()
    if threads > most:
        shown = threads if threads.bit_length() < 64 else f"an integer of {threads.bit_length()} bits"
        raise ConfigError(
            f"threads = {shown} is more than {most} (4 x this machine's {os.cpu_count() or 1} CPUs): more threads than "
            "cores only slow a run down, and thousands take minutes to start; pass at most the number of cores"
        )
    return threads


def max_threads() -> int:
    """The most backend threads a :class:`Model` accepts: 4 x the CPUs (at least 8)."""
    return max(8, 4 * (os.cpu_count() or 1))


def _select(bundle: Bundle, role: str, fmt: str, precision: str, batch: int | None) -> Artifact | None:
    cands = bundle.artifacts(role=role, format=fmt, precision=precision)
    if not cands:
        return None
    if batch is not None:
        ok = [a for a in cands if a.batch in (None, batch)]
        if not ok:
            raise ConfigError(
                f"the bundle's {fmt} {role} artifacts are built for batch {sorted(a.batch for a in cands)}, not {batch}; "
                "pass one of those (or batch=None), or re-export with that batch"
            )
        cands = sorted(ok, key=lambda a: a.batch is None)  # an exact fixed batch first
        return cands[0]
    dynamic = [a for a in cands if a.batch is None]
    return dynamic[0] if dynamic else cands[0]


def _data_inputs(art: Artifact) -> list[TensorSpec]:
    return [s for s in art.inputs if s.name != STEPS_INPUT]


def _shape_text(spec: TensorSpec) -> str:
    """``[B, 1, 28, 28]``: a spec's shape as error messages write it (built only when one is raised)."""
    return "[" + ", ".join("B" if d is None else str(d) for d in spec.shape) + "]"


class Model:
    """A bundle opened for inference. Make one with :func:`load`.

    Attributes:
        manifest: the bundle's :class:`~edgeode.runtime.manifest.Manifest`.
        bundle: the verified :class:`~edgeode.runtime.bundle.Bundle`.
        backend, mode, precision, threads: what :func:`load` resolved.
        tableau, steps: the solve that runs (``None`` for networks without an ODE).
    """

    def __init__(self, bundle: Bundle, backend: str, mode: str, threads: int | None, precision: str,
                 steps: int | None, tableau: ButcherTableau | None, batch: int | None, engines: int | None = None):
        self.bundle = bundle
        self.manifest: Manifest = bundle.manifest
        self.backend = backend
        self.precision = precision
        self.threads = threads
        self.sessions: dict[str, Session] = {}
        #: whether this model runs a tuned bundle's configuration (set by :func:`load`)
        self.tuned = False
        self._loop: FieldLoop | None = None
        man = self.manifest
        fmt = BACKEND_FORMAT[backend]
        solver = man.solver

        def need(role: str) -> Artifact:
            art = _select(bundle, role, fmt, precision, batch)
            if art is None:
                have = sorted({a.role for a in bundle.artifacts(format=fmt, precision=precision)})
                raise ConfigError(
                    f"mode {mode!r} needs a {fmt} {precision} {role!r} artifact, but the bundle has only {have}; "
                    + ("use mode='loop' (--mode loop)" if role == "fused" else
                       "use mode='fused' (--mode fused)" if role in ("field", "encoder", "head") else "re-export the bundle")
                )
            return art

        if solver is None:
            if steps is not None or tableau is not None:
                raise ConfigError(f"the {man.model.get('arch')} bundle has no ODE block: steps and tableau do not apply")
            if mode == "loop":
                raise ConfigError(f"the {man.model.get('arch')} bundle has no ODE block to loop over; use mode='fused'")
            art = _select(bundle, "model", fmt, precision, batch) or need("fused")
            self.mode = "single"
            self.tableau, self.steps = None, None
            roles = {"model": art}
        else:
            if steps is not None:
                check_steps(steps)
            self.mode = mode
            self.tableau = get_tableau(tableau) if tableau is not None else solver.tableau
            self.steps = steps if steps is not None else solver.steps
            if mode == "fused":
                art = need("fused")
                if self.tableau != solver.tableau:
                    raise ConfigError(
                        f"the fused artifact runs the {solver.tableau.name} scheme it was exported with; to run "
                        f"{self.tableau.name} use mode='loop' (--mode loop)"
                    )
                has_steps = any(s.name == STEPS_INPUT for s in art.inputs)
                if self.steps != solver.steps and not has_steps:
                    raise ConfigError(
                        f"the fused {fmt} artifact is unrolled for {solver.steps} steps and cannot change them; "
                        f"use mode='loop' (--mode loop) to run {self.steps} steps"
                    )
                roles = {"fused": art}
            else:
                roles = {"field": need("field")}
                for role in ("encoder", "head"):
                    a = _select(bundle, role, fmt, precision, batch)
                    if a is not None:
                        roles[role] = a
                    elif man.kind == "classifier" and role == "head":
                        need(role)
        try:
            for role, art in roles.items():
                self.sessions[role] = open_session(backend, bundle.path(art), art, threads, engines)
        except BaseException:
            self.close()
            raise
        try:  # the manifest must say what each file was built for (edgeode.runtime.contract)
            checked = [check_contract(man, art, bundle.path(art)) for art in roles.values()]
        except BaseException:
            self.close()
            raise
        self.contract = "checked" if all(checked) else "unchecked (artifacts without a record)"
        if "field" in self.sessions:
            self._loop = FieldLoop(self.sessions["field"], self.tableau)
        # per-inference feed names, resolved once here rather than on every predict()
        self._in_name = {role: ins[0].name for role, sess in self.sessions.items() if (ins := _data_inputs(sess.artifact))}
        self._steps_feed: np.ndarray | None = None
        fused = self.sessions.get("fused")
        if fused is not None and fused.input(STEPS_INPUT) is not None:
            required = STEPS_INPUT in getattr(fused, "required_inputs", {STEPS_INPUT})
            if required or self.steps != solver.steps:
                self._steps_feed = np.array(self.steps, dtype=np.int64)
        fixed = {a.batch for a in roles.values() if a.batch is not None}
        if len(fixed) > 1:
            self.close()
            raise ConfigError(
                f"the {fmt} artifacts for mode {mode!r} are built for different batches {sorted(fixed)}; "
                "pass batch=N to pick one set"
            )
        self._chunk = fixed.pop() if fixed else None
        self._input_spec = man.input.tensor

    # ----------------------------------------------------------------- info
    @property
    def field_evaluations(self) -> int:
        """Vector-field evaluations per inference (stages x steps; 0 without an ODE)."""
        return self.tableau.stages * self.steps if self.tableau is not None else 0

    @property
    def batch(self) -> int | None:
        """The fixed batch the artifacts run at (larger batches are chunked), ``None`` if dynamic."""
        return self._chunk

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary: what runs, how, and on which files."""
        man = self.manifest
        sol = man.solver
        return {
            "kind": man.kind,
            "arch": man.model.get("arch"),
            "bundle": str(self.bundle.root),
            "backend": self.backend,
            "format": BACKEND_FORMAT[self.backend],
            "precision": self.precision,
            "mode": self.mode,
            "threads": self.threads,
            "batch": self.batch,
            "tableau": self.tableau.name if self.tableau is not None else None,
            "stages": self.tableau.stages if self.tableau is not None else 0,
            "steps": self.steps,
            "t0": sol.t0 if sol else None,
            "t1": sol.t1 if sol else None,
            "field_evaluations": self.field_evaluations,
            "contract": self.contract,
            "tuned": self.tuned,
            "artifacts": {role: s.artifact.path for role, s in self.sessions.items()},
            "input": man.input.tensor.to_dict(),
            "output": man.output.tensor.to_dict(),
            "labels": list(man.output.labels) if man.output.labels else None,
        }

    def __repr__(self) -> str:
        d = self.describe()
        return f"Model({d['arch']}, {d['backend']}, mode={d['mode']}, tableau={d['tableau']}, steps={d['steps']})"

    # ----------------------------------------------------------------- input checks
    def _check_input(self, x: Any, spec: TensorSpec, what: str) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise ShapeError(
                f"{what} must be a float32 array, got dtype {x.dtype}; scale raw values as the manifest's preprocess says "
                "(edgeode.runtime.preprocess_image does it for image files) and cast with .astype(np.float32)"
            )
        if x.ndim != len(spec.shape):
            hint = " (one sample: add the batch axis, x[None])" if x.ndim == len(spec.shape) - 1 else ""
            raise ShapeError(f"{what} must have rank {len(spec.shape)} with shape {_shape_text(spec)}, "
                             f"got shape {list(x.shape)}{hint}")
        for i, (want, got) in enumerate(zip(spec.shape, x.shape, strict=True)):
            if i > 0 and want is not None and want != got:
                raise ShapeError(f"{what} must have shape {_shape_text(spec)}, got {list(x.shape)} "
                                 f"(axis {i} is {got}, expected {want})")
        if x.shape[0] == 0:
            raise ShapeError(f"{what} is an empty batch (shape {list(x.shape)})")
        if x.dtype == np.float32 and x.flags.c_contiguous:
            return x  # the common case: no copy, no conversion (per-call overhead at batch 1)
        return np.ascontiguousarray(x, dtype=np.float32)

    # ----------------------------------------------------------------- running
    def _chunked(self, fn, x: np.ndarray, out_axis: int = 0) -> np.ndarray:
        return run_chunked(fn, x, self._chunk, out_axis)

    def _run_fused(self, x: np.ndarray) -> np.ndarray:
        out = self.sessions["fused"].run(self._fused_feeds(x))[0]
        if not np.isfinite(out).all():
            raise SolverError(
                f"the fused solve ({self.tableau.name}, {self.steps} steps) returned NaN/Inf; the input is far outside "
                "what the model was trained on, or the solve is unstable: run with mode='loop' (--mode loop) to see "
                "where it happens (the solver step, or the head after it), or try more steps"
            )
        return out

    def _fused_feeds(self, x: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {self._in_name["fused"]: x}
        if self._steps_feed is not None:
            feeds[STEPS_INPUT] = self._steps_feed
        return feeds

    def _run_single(self, role: str, x: np.ndarray) -> np.ndarray:
        return self.sessions[role].run({self._in_name[role]: x})[0]

    def _dt(self) -> float:
        sol = self.manifest.solver
        return (sol.t1 - sol.t0) / self.steps

    def _loop_final(self, x: np.ndarray) -> np.ndarray:
        h = self._run_single("encoder", x) if "encoder" in self.sessions else x
        h = self._loop.integrate(h, self.manifest.solver.t0, self._dt(), self.steps)
        return self._run_single("head", h) if "head" in self.sessions else h

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Run the model on a batch.

        Args:
            x: float array shaped like the manifest's input, batch first (e.g. ``[B, 1, 28, 28]``);
               float64 (or float16) is cast to float32.

        Returns:
            classifiers: class scores ``[B, classes]`` (logits, as the model outputs them);
            dynamics: the final state h(t1) ``[B, D]``.

        Raises:
            ShapeError: wrong rank, shape or dtype. SolverError: the state (loop mode), the fused solve or
            the output became NaN/Inf: a returned array is always finite.
        """
        spec = self._input_spec
        x = self._check_input(x, spec, "input x")
        if self.steps is not None:
            check_work(x.shape[0], self.steps)
        if self.mode == "single":
            out = self._chunked(lambda b: self._run_single("model", b), x)
        elif self.manifest.kind == "dynamics":
            out = self.solve(x)[-1]
        elif self.mode == "fused":
            out = self._chunked(self._run_fused, x)
        else:
            out = self._chunked(self._loop_final, x)
        out = np.asarray(out, dtype=np.float32)
        if not np.isfinite(out).all():  # fused and the loop's state are checked already; this is the head / model
            bad = np.flatnonzero(~np.isfinite(out.reshape(len(out), -1)).all(axis=1)).tolist()
            raise SolverError(
                f"the model's output is NaN/Inf for sample(s) {bad[:10]}{' ...' if len(bad) > 10 else ''} "
                f"({self.mode} mode, the {'head' if 'head' in self.sessions else 'model'} after a finite state); the "
                "input is far outside what the model was trained on: check its scale against the manifest's preprocess"
            )
        return out

    def solve(self, y0: np.ndarray, times: np.ndarray | list[float] | None = None) -> np.ndarray:
        """Integrate a dynamics model from ``y0`` (``[B, D]``) and return the states ``[T, B, D]``.

        ``times=None``: the ``steps + 1`` points of the uniform grid over the manifest's [t0, t1]
        (both modes). Loop mode also takes any increasing ``times`` (``times[0]`` is the time of
        ``y0``); each interval is integrated with steps no larger than the manifest's dt.
        """
        if self.manifest.kind != "dynamics":
            raise ConfigError(f"solve() is for dynamics bundles; this is a {self.manifest.kind}: use predict()")
        y0 = self._check_input(y0, self._input_spec, "y0")
        sol = self.manifest.solver
        check_work(y0.shape[0], self.steps)
        if times is not None:
            times = np.asarray(times, dtype=np.float64)
            if times.ndim != 1 or times.size < 2 or not np.all(np.isfinite(times)) or not np.all(np.diff(times) > 0):
                raise ConfigError(f"times must be a 1-D increasing sequence of at least 2 finite time points, got {times!r}")
            if self.mode == "fused":
                grid = np.linspace(sol.t0, sol.t1, self.steps + 1)
                if times.shape != grid.shape or not np.allclose(times, grid, rtol=0, atol=1e-6):
                    raise ConfigError(
                        f"the fused artifact returns the uniform grid of {self.steps + 1} points over [{sol.t0}, {sol.t1}]; "
                        "for other times use mode='loop' (--mode loop)"
                    )
                times = None
        if self.mode == "fused":
            return np.asarray(self._chunked(self._run_fused, y0, out_axis=1), dtype=np.float32)
        dt_max = self._dt()
        if times is not None:
            counts = [interval_steps(float(b - a), dt_max) for a, b in zip(times[:-1], times[1:], strict=True)]
            if sum(counts) > MAX_STEPS:
                raise ConfigError(
                    f"times span {sum(counts):,} steps of the manifest's dt {dt_max:.6g}, above the bound of {MAX_STEPS:,} "
                    "steps per solve (edgeode.runtime.limits.MAX_STEPS); integrate a shorter span or pass fewer steps"
                )
            check_work(y0.shape[0], sum(counts))

        def run(b: np.ndarray) -> np.ndarray:
            states = [b.copy()]
            if times is None:  # the uniform grid: one call, every step's state kept
                self._loop.integrate(b, sol.t0, dt_max, self.steps, out=states)
                return np.stack(states)
            offset, h = 0, b
            for t_a, t_b, n in zip(times[:-1], times[1:], counts, strict=True):
                h = self._loop.integrate(h, float(t_a), float(t_b - t_a) / n, n, step_offset=offset)
                offset += n
                states.append(h)
            return np.stack(states)

        return np.asarray(self._chunked(run, y0, out_axis=1), dtype=np.float32)

    def interrupt(self) -> bool:
        """Stop every ``predict`` / ``solve`` in progress on this model, from any thread (Ctrl-C, a timeout).

        Those calls, and any later ones, raise :class:`~edgeode.errors.Interrupted`: the model is spent
        (load it again to go on). Loop mode stops before its next step on every backend; a fused run
        stops midway on onnxruntime (``RunOptions.terminate``) and, on TFLite backends, which cannot
        stop an ``invoke``, when that call returns. Returns True if every session can stop midway.
        """
        if self._loop is not None:
            self._loop.interrupt()
        return all([sess.interrupt() for sess in self.sessions.values()])

    def close(self) -> None:
        """Release the backend sessions."""
        for sess in self.sessions.values():
            sess.close()
        self.sessions = {}

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(bundle_dir: str | Path, backend: str = "auto", mode: str | None = None, threads: int | None = None,
         precision: str | None = None, steps: int | None = None, tableau: str | ButcherTableau | None = None,
         batch: int | None = None, engines: int | None = None, expect_digest: str | None = None) -> Model:
    """Open a bundle for inference without torch.

    Args:
        bundle_dir: directory written by ``edgeode export`` (verified by :func:`read_bundle`).
        backend: ``"auto"`` (onnxruntime for ONNX if installed, else LiteRT for TFLite, else
            tflite-runtime), ``"onnxruntime"``, ``"litert"`` or ``"tflite-runtime"``.
        mode: ``"fused"`` (one graph call) or ``"loop"`` (numpy solver loop around the field); None: the
            tuned mode of a bundle from ``edgeode tune --apply`` (manifest ``tuned``), else ``"fused"``.
        threads: CPU threads for the backend (None: its default).
        precision: which artifacts: ``float32``, ``float16``, ``int8-dynamic``, ``int8-weight`` or ``int8``
            (full integer, run by the ``tflm`` backend). None: ``int8`` for ``backend="tflm"`` when the
            bundle has int8 files, else ``float32``.
        steps: solver steps over [t0, t1] (default: the manifest's). Fused mode can change them only
            for ONNX graphs with a ``steps`` input.
        tableau: solver name or tableau for loop mode (default: the manifest's).

            A tuned bundle (``edgeode tune --apply``) runs its tuned tableau and steps when neither
            ``steps`` nor ``tableau`` is given, in its tuned precision when ``precision`` is None and in its
            tuned mode when ``mode`` is None; ``describe()["tuned"]`` says whether the tuned solve runs.
        batch: pick artifacts built for this fixed batch (TFLite) when the bundle has several.
        engines: TFLite backends: most interpreters per artifact for threads calling at once (None:
            one per CPU; 1: one interpreter behind a lock, the least memory). onnxruntime shares one session.
        expect_digest: refuse any bundle whose digest (``edgeode verify BUNDLE`` prints it) is not this one,
            so a fleet runs exactly the bundle it tested.

    A ``series`` bundle (an ODE-RNN) gives a :class:`~edgeode.runtime.series.SeriesModel` (``init_state``,
    ``observe``, ``classify``, ``predict_series``) instead; ``mode="loop"`` runs its separate field and cell
    files even where an ``observe`` file (the solve and the cell in one graph) exists.

    Raises:
        BundleError: the bundle is damaged, its manifest disagrees with what a file was built for
            (:mod:`edgeode.runtime.contract`), or its digest is not ``expect_digest``.
        BackendError, ConfigError: the message says what is wrong and the fix.
    """
    if mode is not None and mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose 'fused' (one graph call) or 'loop' (numpy solver loop)")
    threads = _check_threads(threads)
    if engines is not None and (isinstance(engines, bool) or not isinstance(engines, int) or engines < 1):
        raise ConfigError(f"engines must be a positive integer (TFLite interpreters per artifact) or None, got {engines!r}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ConfigError(f"batch must be a positive integer or None, got {batch!r}")
    if expect_digest is not None:
        from edgeode.runtime.digest import check_digest

        check_digest(bundle_dir, expect_digest)
    bundle = read_bundle(bundle_dir)
    tuned = bundle.manifest.tuned
    runs_tuned = tuned is not None and steps is None and tableau is None and precision in (None, tuned.precision)
    if runs_tuned:
        steps, tableau, precision = tuned.steps, tuned.tableau, tuned.precision
        mode = mode or tuned.mode
    mode = mode or "fused"
    if precision is None:
        precision = "int8" if backend == "tflm" and bundle.artifacts(precision="int8") else "float32"
    name = choose_backend(bundle.manifest, backend, precision)
    if bundle.manifest.kind == "series":  # a streaming ODE-RNN: observe / classify (edgeode.runtime.series)
        if steps is not None or tableau is not None or batch is not None:
            raise ConfigError("a series bundle solves each gap in steps of its manifest's max_step with its tableau, "
                              "one stream at a time: steps, tableau and batch do not apply")
        from edgeode.runtime.series import SeriesModel

        return SeriesModel(bundle, name, threads, precision, engines, fused=mode != "loop")
    if tableau is not None:
        tableau = get_tableau(tableau)
    model = Model(bundle, name, mode, threads, precision, steps, tableau, batch, engines)
    model.tuned = runs_tuned
    return model
