"""Inference backends: ONNX Runtime, LiteRT, the legacy tflite-runtime and TensorFlow Lite Micro
(``tflm``, :mod:`edgeode.runtime.tflm`), behind one small interface.

Every backend is imported lazily, when a session is opened, so a device needs only the one it uses;
a missing one is a :class:`~edgeode.errors.BackendError` with the install command.

A :class:`Session` runs one artifact: ``run(feeds)`` takes arrays keyed by the manifest's input
names and returns the outputs in the manifest's order.

Numbers behind the defaults (DESIGN.md, measured on 2 cores):

* ONNX Runtime's intra-op threads spin while idle; CPU time is then ~2x wall time and a Python
  solver loop around ``run`` gets slower (batch-32 loop 113 -> 60 ms without spinning), so spinning
  is switched off.
* Threads: an ``onnxruntime.InferenceSession`` may be run from many threads at once (onnxruntime
  documents ``run`` as thread-safe), so one is shared. A TFLite interpreter holds its tensors and is
  not reentrant, so a :class:`TFLiteSession` keeps a pool of interpreters, one per concurrent caller
  up to the number of CPUs (README, *Reliability*: measured against one interpreter behind a lock).
  The rule for any backend: :meth:`Session.run` is safe from any number of threads; a backend whose
  engine is not reentrant pools engines (:class:`EnginePool`).
* tflite-runtime (last release 2.14, 2023) is built against the numpy 1.x ABI and gave wrong results
  for dynamic-range int8 models here; it is refused under numpy >= 2 and for ``int8-dynamic`` artifacts.
* Full-int8 (``int8``) files take quantized inputs and are the microcontroller build: only ``tflm``
  runs them (it quantizes at the boundary); ``tflm`` runs float32 TFLite files too.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeode.errors import BackendError, BundleError, ConfigError, Interrupted, ShapeError, did_you_mean
from edgeode.runtime.chatter import filtered_stderr
from edgeode.runtime.manifest import Artifact, Manifest, TensorSpec

__all__ = [
    "BACKENDS",
    "BACKEND_FORMAT",
    "INSTALL_HINTS",
    "EnginePool",
    "Session",
    "OnnxSession",
    "TFLiteSession",
    "TFLM_ONLY",
    "backend_available",
    "check_backend",
    "choose_backend",
    "open_interpreter",
    "open_session",
    "numpy_dtype",
    "run_chunked",
]

#: Backend names accepted by :func:`edgeode.runtime.load` (plus ``"auto"``), in auto-selection order.
BACKENDS = ("onnxruntime", "litert", "tflite-runtime", "tflm")
#: The artifact format each backend runs.
BACKEND_FORMAT = {"onnxruntime": "onnx", "litert": "tflite", "tflite-runtime": "tflite", "tflm": "tflite"}
INSTALL_HINTS = {
    "onnxruntime": "pip install 'edgeode[onnx]' (or: pip install onnxruntime)",
    "litert": "pip install 'edgeode[tflite]' (or: pip install ai-edge-litert)",
    "tflite-runtime": "pip install 'tflite-runtime==2.14.0' 'numpy<2' (legacy; prefer LiteRT: pip install ai-edge-litert)",
    "tflm": "pip install 'edgeode[mcu]' (or: pip install tflite-micro)",
}
_MODULES = {"onnxruntime": "onnxruntime", "litert": "ai_edge_litert.interpreter", "tflite-runtime": "tflite_runtime.interpreter",
            "tflm": "tflite_micro.python.tflite_micro.runtime"}
_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "uint8": np.uint8,
           "int8": np.int8}
#: Precisions that only the tflm backend runs (their inputs are quantized at the file's boundary).
TFLM_ONLY = ("int8",)


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a manifest dtype name."""
    return np.dtype(_DTYPES[name])


def _numpy_major() -> int:
    return int(np.__version__.split(".")[0])


def check_backend(name: str, precision: str = "float32") -> Any:
    """Import the backend's module and return it, or raise :class:`BackendError` saying why it cannot run.

    Refuses tflite-runtime under numpy >= 2 and for ``int8-dynamic`` artifacts (see module docstring).
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}{did_you_mean(name, ('auto', *BACKENDS))}; choose one of: auto, {', '.join(BACKENDS)}")
    if precision in TFLM_ONLY and name != "tflm":
        raise BackendError(
            f"{precision} files are the full-integer microcontroller build (int8 inputs and outputs); run them with "
            f"the tflm backend (--backend tflm; {INSTALL_HINTS['tflm']}), or pick a float32 / int8-dynamic precision "
            f"for {name}"
        )
    if name == "tflite-runtime":
        if precision == "int8-dynamic":
            raise BackendError(
                "tflite-runtime gives wrong results for dynamic-range int8 (int8-dynamic) models (measured on "
                "tflite-runtime 2.14); use the LiteRT backend (pip install ai-edge-litert; --backend litert) "
                "or a float32 / int8-weight / float16 artifact"
            )
        if _numpy_major() >= 2:
            raise BackendError(
                f"tflite-runtime cannot run under numpy {np.__version__}: its wheels (last release 2.14) are built "
                "against the numpy 1.x ABI. Install numpy<2 in this environment "
                "(pip install 'numpy<2' 'tflite-runtime==2.14.0') or use the LiteRT backend "
                "(pip install ai-edge-litert; --backend litert)"
            )
    try:
        return importlib.import_module(_MODULES[name])
    except ImportError as exc:
        raise BackendError(f"backend {name!r} is not installed ({exc}); install it: {INSTALL_HINTS[name]}") from None


def backend_available(name: str, precision: str = "float32") -> bool:
    """True if :func:`check_backend` succeeds (imports the backend's module)."""
    try:
        check_backend(name, precision)
    except BackendError:
        return False
    return True


def choose_backend(manifest: Manifest, backend: str = "auto", precision: str = "float32") -> str:
    """Resolve ``backend`` ("auto" or a name) against what the bundle holds and what is installed.

    The one place a backend is chosen: :func:`edgeode.runtime.load` and ``edgeode profile`` (before
    any child process starts) both call it. "auto" takes the first of :data:`BACKENDS` whose format
    the bundle has at ``precision`` and that can run here.

    Raises:
        ConfigError: the bundle has no artifacts of ``precision``; unknown backend; or a backend for
            a format the bundle lacks.
        BackendError: the backend (or, for "auto", every candidate) is not installed or cannot work
            here; the message has the install hint.
    """
    formats = {a.format for a in manifest.artifacts if a.precision == precision}
    if not formats:
        have = sorted({(a.format, a.precision) for a in manifest.artifacts})
        raise ConfigError(
            f"the bundle has no {precision} artifacts; it has (format, precision) {have}: pass one of those precisions"
        )
    if backend != "auto":
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}{did_you_mean(backend, ('auto', *BACKENDS))}; choose one of: auto, {', '.join(BACKENDS)}")
        if BACKEND_FORMAT[backend] not in formats:
            raise ConfigError(
                f"backend {backend!r} runs {BACKEND_FORMAT[backend]} files but the bundle has only {sorted(formats)} "
                f"artifacts at precision {precision}; pick a backend for those (or re-export with that format)"
            )
        check_backend(backend, precision)
        return backend
    reasons = []
    for name in BACKENDS:
        if BACKEND_FORMAT[name] not in formats:
            continue
        try:
            check_backend(name, precision)
        except BackendError as exc:
            reasons.append(f"{name}: {exc}")
            continue
        return name
    raise BackendError(
        f"no installed backend can run this bundle ({sorted(formats)} files, {precision}):\n  " + "\n  ".join(reasons)
    )


def run_chunked(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, size: int | None,
                out_axis: int = 0) -> np.ndarray:
    """``fn(x)`` for a file with a fixed batch ``size``: ``x`` in chunks of ``size`` along axis 0.

    The last chunk is padded by repeating its last sample and the padding's outputs (along
    ``out_axis``: 1 for a trajectory ``[T, B, ...]``) are dropped. ``size`` None (a dynamic batch)
    or equal to the batch: one call. Used by :class:`~edgeode.runtime.model.Model` and by the export
    parity gate, so both feed a fixed-batch file the same way.
    """
    n = x.shape[0]
    if size is None or n == size:
        return fn(x)
    outs = []
    for start in range(0, n, size):
        part = x[start:start + size]
        real = part.shape[0]
        if real < size:
            part = np.concatenate([part, np.repeat(part[-1:], size - real, axis=0)])
        outs.append(np.take(fn(part), np.arange(real), axis=out_axis))
    return np.concatenate(outs, axis=out_axis)


class EnginePool:
    """Engines of a backend that is not reentrant (a TFLite interpreter), one per concurrent caller.

    :meth:`engine` lends an idle engine, or builds a new one with ``factory`` while fewer than
    ``limit`` exist, or waits for one to come back. ``limit=1`` is one engine behind a lock.
    """

    def __init__(self, factory: Callable[[], Any], limit: int, first: Any = None):
        if limit < 1:
            raise ConfigError(f"an engine pool needs a limit of at least 1, got {limit}")
        self._factory = factory
        self.limit = limit
        self._idle: list[Any] = [] if first is None else [first]
        self._count = len(self._idle)
        self._cond = threading.Condition()

    @property
    def size(self) -> int:
        """Engines built so far (at most ``limit``)."""
        return self._count

    @contextmanager
    def engine(self) -> Iterator[Any]:
        """Borrow an engine for the duration of a ``with`` block."""
        with self._cond:
            while not self._idle and self._count >= self.limit:
                self._cond.wait()
            eng = self._idle.pop() if self._idle else None
            if eng is None:
                self._count += 1
        if eng is None:
            try:
                eng = self._factory()
            except BaseException:
                with self._cond:
                    self._count -= 1
                    self._cond.notify()
                raise
        try:
            yield eng
        finally:
            with self._cond:
                self._idle.append(eng)
                self._cond.notify()

    def close(self) -> None:
        """Drop the idle engines (one still lent is dropped when it comes back and the pool is gone)."""
        with self._cond:
            self._idle.clear()


def default_pool_limit() -> int:
    """Engines a non-reentrant backend builds at most: one per CPU (more callers than CPUs wait)."""
    return max(1, os.cpu_count() or 1)


@dataclass
class Session:
    """One opened artifact. Subclasses implement :meth:`run`.

    :meth:`run` is safe to call from any number of threads at once (see the module docstring).

    Attributes:
        backend: backend name.
        artifact: the manifest entry of the file.
        inputs: the input specs the session accepts (manifest order).
        outputs: the output specs (manifest order).
    """

    backend: str
    artifact: Artifact
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec | None:
        """The input spec called ``name``, if the artifact has one."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        return None

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def interrupt(self) -> bool:
        """Ask runs in progress to stop (from any thread); True if the backend can stop a run midway."""
        return False

    def close(self) -> None:
        """Release the backend's resources."""


class OnnxSession(Session):
    """An ``onnxruntime.InferenceSession`` on the CPU, configured for small devices.

    Each run gets its own ``RunOptions``; :meth:`interrupt` sets ``terminate`` on those in
    progress, which stops even a fused whole-solve ``Loop`` between two of its nodes.
    """

    def __init__(self, path: Path, artifact: Artifact, threads: int | None):
        super().__init__("onnxruntime", artifact, artifact.inputs, artifact.outputs)
        ort = check_backend("onnxruntime", artifact.precision)
        self._ort = ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads) if threads else 0  # 0: onnxruntime's default (one per core)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        opts.log_severity_level = 3
        try:
            self._sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(
                f"onnxruntime could not load {artifact.path} ({type(exc).__name__}: {exc}); the file may need a newer "
                "onnxruntime (pip install -U onnxruntime) or the bundle is corrupt: re-export it"
            ) from None
        required = {i.name for i in self._sess.get_inputs()}
        optional = {i.name for i in self._sess.get_overridable_initializers()}
        declared = {s.name for s in artifact.inputs}
        if not required <= declared or not declared <= required | optional:
            raise BundleError(
                f"{artifact.path}: the manifest lists inputs {sorted(declared)} but the ONNX graph takes "
                f"{sorted(required)} (optional: {sorted(optional)}); the manifest does not belong to this file: re-export"
            )
        graph_outputs = {o.name for o in self._sess.get_outputs()}
        missing = [s.name for s in artifact.outputs if s.name not in graph_outputs]
        if missing:
            raise BundleError(f"{artifact.path}: outputs {missing} listed in the manifest are not in the ONNX graph {sorted(graph_outputs)}")
        self.required_inputs = frozenset(required)
        self._out_names = [s.name for s in artifact.outputs]
        self._dtypes = {s.name: numpy_dtype(s.dtype) for s in artifact.inputs}
        self._active: set[Any] = set()
        self._active_lock = threading.Lock()
        self._interrupted = False

    def metadata(self) -> dict[str, str]:
        """The ONNX file's ``metadata_props`` (key -> value)."""
        return dict(self._sess.get_modelmeta().custom_metadata_map)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        feeds = {k: np.asarray(v, dtype=self._dtypes[k]) for k, v in feeds.items()}
        opts = self._ort.RunOptions()
        opts.log_severity_level = 4  # a failure is raised as a BackendError below; no second report on stderr
        with self._active_lock:
            if self._interrupted:
                raise Interrupted(f"{self.artifact.path}: the run was interrupted")
            self._active.add(opts)
        try:
            return self._sess.run(self._out_names, feeds, opts)
        except Exception as exc:
            if opts.terminate:
                raise Interrupted(f"{self.artifact.path}: the run was interrupted") from None
            raise BackendError(f"onnxruntime failed running {self.artifact.path}: {type(exc).__name__}: {exc}") from None
        finally:
            with self._active_lock:
                self._active.discard(opts)

    def interrupt(self) -> bool:
        with self._active_lock:
            self._interrupted = True
            for opts in self._active:
                opts.terminate = True
        return True

    def close(self) -> None:
        self._sess = None


@dataclass
class _Interpreter:
    """One TFLite interpreter of a pool and the input shapes it is allocated for."""

    it: Any
    shapes: dict[int, tuple[int, ...]] = field(default_factory=dict)


class TFLiteSession(Session):
    """TFLite interpreters (LiteRT's ``ai_edge_litert`` or the legacy ``tflite_runtime``), pooled.

    Manifest inputs are matched to the interpreter's tensors by tensor name, else by signature
    name (litert-torch: the argument names; tensors are called ``serving_default_NAME``), else by
    the signature's order, else by position. An interpreter is not reentrant: concurrent callers
    each borrow one from an :class:`EnginePool` of at most ``pool_limit`` (default: one per CPU).
    """

    def __init__(self, backend: str, path: Path, artifact: Artifact, threads: int | None, pool_limit: int | None = None):
        super().__init__(backend, artifact, artifact.inputs, artifact.outputs)
        check_backend(backend, artifact.precision)
        self._path = path
        self._threads = int(threads) if threads else None
        first = self._new_interpreter()
        self._it = first.it
        self._in = self._match(artifact.inputs, self._it.get_input_details(), "inputs")
        self._out = self._match(artifact.outputs, self._it.get_output_details(), "outputs")
        self._pool = EnginePool(self._new_interpreter, pool_limit or default_pool_limit(), first)

    def _new_interpreter(self) -> _Interpreter:
        it = open_interpreter(self.backend, self._path, self._threads, self.artifact.path)
        return _Interpreter(it, {d["index"]: tuple(int(n) for n in d["shape"]) for d in it.get_input_details()})

    def _match(self, specs: tuple[TensorSpec, ...], details: list[dict], what: str) -> dict[str, dict]:
        if len(specs) != len(details):
            raise BundleError(
                f"{self.artifact.path}: the manifest lists {len(specs)} {what} but the TFLite model has "
                f"{len(details)} ({[d['name'] for d in details]}); re-export the bundle"
            )
        by_name = {d["name"]: d for d in details}
        if all(s.name in by_name for s in specs):
            return {s.name: by_name[s.name] for s in specs}
        ordered = details
        try:  # signature names (litert-torch: the argument names) -> tensor details
            sigs = self._it.get_signature_list()
            if len(sigs) == 1:
                runner = self._it.get_signature_runner(next(iter(sigs)))
                sig_details = runner.get_input_details() if what == "inputs" else runner.get_output_details()
                by_index = {d["index"]: d for d in details}
                by_sig = {n: by_index[d["index"]] for n, d in sig_details.items() if d["index"] in by_index}
                if all(s.name in by_sig for s in specs):
                    return {s.name: by_sig[s.name] for s in specs}
                names = next(iter(sigs.values())).get(what, [])
                if len(names) == len(details) and all(n in by_sig for n in names):
                    ordered = [by_sig[n] for n in names]  # signature order
        except Exception:  # an interpreter without signature support: fall back to tensor order
            pass
        return {s.name: d for s, d in zip(specs, ordered, strict=True)}

    @property
    def pool_size(self) -> int:
        """Interpreters built so far (one per peak concurrent caller, at most the pool limit)."""
        return self._pool.size

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        arrays = {}
        for name, value in feeds.items():
            det = self._in[name]
            arr = np.asarray(value, dtype=det["dtype"])
            sig = tuple(det.get("shape_signature", det["shape"]))
            if len(sig) != arr.ndim or any(s != -1 and s != n for s, n in zip(sig, arr.shape, strict=True)):
                raise ShapeError(
                    f"{self.artifact.path}: input {name!r} must have shape {tuple(int(s) for s in det['shape'])} "
                    f"(the TFLite file has a fixed shape), got {arr.shape}"
                )
            arrays[det["index"]] = arr
        with self._pool.engine() as eng:
            it = eng.it
            resize = {i: a.shape for i, a in arrays.items() if eng.shapes[i] != a.shape}
            if resize:
                for index, shape in resize.items():
                    it.resize_tensor_input(index, list(shape))
                it.allocate_tensors()
                eng.shapes.update(resize)
            for index, arr in arrays.items():
                it.set_tensor(index, arr)
            try:
                it.invoke()
            except Exception as exc:
                raise BackendError(f"{self.backend} failed running {self.artifact.path}: {type(exc).__name__}: {exc}") from None
            # get_tensor copies, so the interpreter can go back to the pool
            return [it.get_tensor(self._out[s.name]["index"]) for s in self.outputs]

    def close(self) -> None:
        self._pool.close()
        self._it = None


def open_interpreter(backend: str, path: str | Path, threads: int | None = None, name: str | None = None) -> Any:
    """A TFLite interpreter of ``backend`` (``litert`` or ``tflite-runtime``) for the file at ``path``, tensors allocated.

    The one place a TFLite file is loaded: :class:`TFLiteSession` builds its engines with it, and the
    exporter reads a file's signature from it (:func:`edgeode.export.specs.tflite_specs`). ``name``
    is the file as error messages call it (the bundle-relative path; default ``path``).
    Raises :class:`BackendError` if the backend is missing or cannot load the file.
    """
    module = check_backend(backend)
    try:
        it = module.Interpreter(model_path=str(path), num_threads=int(threads) if threads else None)
        with filtered_stderr():  # LiteRT's "INFO: Created ... XNNPACK delegate" on every interpreter
            it.allocate_tensors()
    except Exception as exc:
        raise BackendError(
            f"{backend} could not load {name or path} ({type(exc).__name__}: {exc}); the file may need a "
            f"newer runtime ({INSTALL_HINTS['litert']}) or the bundle is corrupt: re-export it"
        ) from None
    return it


def open_session(backend: str, path: str | Path, artifact: Artifact, threads: int | None = None,
                 engines: int | None = None) -> Session:
    """Open ``artifact`` (stored at ``path``) with ``backend`` using ``threads`` CPU threads (None: the backend's default).

    ``engines``: most engines a non-reentrant backend keeps for concurrent callers (None: one per CPU).
    """
    if BACKEND_FORMAT.get(backend) != artifact.format:
        raise ConfigError(f"backend {backend!r} runs {BACKEND_FORMAT.get(backend)} files, not {artifact.format} ({artifact.path})")
    if backend == "onnxruntime":
        return OnnxSession(Path(path), artifact, threads)
    if backend == "tflm":
        from edgeode.runtime.tflm import TFLMSession

        return TFLMSession(Path(path), artifact, engines=engines)
    return TFLiteSession(backend, Path(path), artifact, threads, engines)
