"""The ``tflm`` backend: bundle files run by TensorFlow Lite for Microcontrollers on the host.

``pip install tflite-micro`` is the real TFLM interpreter (the C++ library a board runs, built for
x86-64 with a Python wrapper): inputs and outputs are addressed by index, the tensor arena has a
fixed size given when the interpreter is made, and there is no signature runner. A
:class:`TFLMSession` therefore

* opens the file with the arena the manifest states (``artifact.tflm.arena_bytes``; the contract of
  an int8 bundle is that its files run with exactly that arena),
* maps the manifest's inputs and outputs to the model's tensor indices by position (the exporter
  lists them in index order) and checks shape, dtype and quantization against the file,
* quantizes float inputs and dequantizes int8 outputs at the boundary
  (``q = clip(round(x / scale) + zero_point, -128, 127)``, ``x = scale * (q - zero_point)``), so the
  numpy solver loop of :mod:`edgeode.runtime.loop` runs unchanged around an int8 field, as the
  firmware's float32 C loop does.

TFLM interpreters keep their tensors in the arena and are not reentrant: as for LiteRT, concurrent
callers each borrow one from an :class:`~edgeode.runtime.backends.EnginePool` (at most one per CPU
by default, each with its own arena), so :meth:`TFLMSession.run` is safe from any number of threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeode.errors import BackendError, BundleError, ShapeError
from edgeode.runtime.backends import EnginePool, Session, check_backend, default_pool_limit
from edgeode.runtime.manifest import Artifact, Quantization, TensorSpec

__all__ = ["TFLMSession", "quantize", "dequantize", "tensor_quantization", "DEFAULT_FLOAT_ARENA"]

#: Arena for a file without a measured one (float32 files): generous, the host has memory to spare.
DEFAULT_FLOAT_ARENA = 4 << 20


def quantize(x: np.ndarray, q: Quantization) -> np.ndarray:
    """float -> int8 with the tensor's affine parameters (round half to even, as numpy rounds)."""
    return np.clip(np.round(np.asarray(x, np.float32) / np.float32(q.scale)) + q.zero_point, -128, 127).astype(np.int8)


def dequantize(y: np.ndarray, q: Quantization) -> np.ndarray:
    """int8 -> float32: ``scale * (y - zero_point)``."""
    return (np.float32(q.scale) * (y.astype(np.float32) - np.float32(q.zero_point))).astype(np.float32)


def tensor_quantization(details: dict) -> Quantization | None:
    """The per-tensor quantization in TFLM tensor details, ``None`` for a float tensor."""
    params = details.get("quantization_parameters") or {}
    scales = list(params.get("scales", []))
    if np.dtype(details["dtype"]) != np.int8 or not scales:
        return None
    return Quantization(float(scales[0]), int(list(params.get("zero_points", [0]))[0]))


def _details(interpreter: Any, kind: str, count: int, path: str) -> list[dict]:
    get = interpreter.get_input_details if kind == "inputs" else interpreter.get_output_details
    try:  # TFLM's Python API has no tensor count: ask for the ones the manifest lists
        return [get(i) for i in range(count)]
    except (IndexError, RuntimeError, ValueError):
        raise BundleError(f"{path}: the model has fewer {kind} than the {count} the manifest lists; re-export the bundle") from None


_Tensor = tuple  # (dtype, Quantization | None, shape[, index in the model])


def _same(a: Quantization | None, b: Quantization | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.zero_point == b.zero_point and bool(np.isclose(a.scale, b.scale, rtol=1e-6, atol=0))


class TFLMSession(Session):
    """One bundle file opened in TensorFlow Lite Micro; ``run`` takes and returns float arrays.

    ``arena_bytes`` is the arena it was opened with.
    """

    def __init__(self, path: Path, artifact: Artifact, arena_bytes: int | None = None, engines: int | None = None):
        super().__init__("tflm", artifact, artifact.inputs, artifact.outputs)
        self._runtime = check_backend("tflm", artifact.precision)
        if arena_bytes is None:
            arena_bytes = artifact.tflm.arena_bytes if artifact.tflm is not None else DEFAULT_FLOAT_ARENA
        self.arena_bytes = int(arena_bytes)
        self._data = Path(path).read_bytes()
        self._it = self._new_interpreter()
        self._in = self._check(self.inputs, "inputs")
        self._out = self._check(self.outputs, "outputs")
        self._pool: EnginePool | None = EnginePool(self._new_interpreter, engines or default_pool_limit(), self._it)

    def _new_interpreter(self) -> Any:
        try:
            return self._runtime.Interpreter.from_bytes(self._data, arena_size=self.arena_bytes)
        except (RuntimeError, ValueError) as exc:
            raise BackendError(
                f"TFLM could not open {self.artifact.path} with a {self.arena_bytes}-byte arena ({exc}); the arena in "
                "the manifest is too small for this tflite-micro build or the file is corrupt: re-export the bundle"
            ) from None

    def _check(self, specs: tuple[TensorSpec, ...], what: str) -> list[_Tensor]:
        """Each manifest spec's tensor in the file: by position (the exporter lists int8 files in index
        order), else the one tensor of the same shape and dtype (float files list the signature's order)."""
        path = self.artifact.path
        details = _details(self._it, what, len(specs), path)
        found = [(np.dtype(d["dtype"]), tensor_quantization(d), tuple(int(s) for s in d["shape"])) for d in details]

        def fits(spec: TensorSpec, tensor: _Tensor) -> bool:
            dtype, _, shape = tensor
            return dtype.name == spec.dtype and len(shape) == len(spec.shape) and all(
                w is None or w == s for w, s in zip(spec.shape, shape, strict=True))

        out: list[_Tensor] = []
        for pos, spec in enumerate(specs):
            matches = [i for i, t in enumerate(found) if fits(spec, t)]
            index = pos if pos in matches else (matches[0] if len(matches) == 1 else None)
            if index is None:
                raise BundleError(
                    f"{path}: {what[:-1]} {spec.name!r} ({spec.dtype} {list(spec.shape)}) matches no single tensor of the "
                    f"file ({[(t[0].name, list(t[2])) for t in found]}); the manifest does not belong to this file: "
                    "re-export the bundle"
                )
            if not _same(found[index][1], spec.quantization):
                raise BundleError(
                    f"{path}: {what[:-1]} {spec.name!r} has quantization {found[index][1]} in the file but "
                    f"{spec.quantization} in the manifest; re-export the bundle"
                )
            out.append(found[index] + (index,))
        return out

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Quantize ``feeds`` (float, keyed by manifest input name), invoke, dequantize the outputs."""
        arrays = []
        for spec, (dtype, quant, shape, index) in zip(self.inputs, self._in, strict=True):
            if spec.name not in feeds:
                raise ShapeError(f"{self.artifact.path}: input {spec.name!r} is missing (inputs: {[s.name for s in self.inputs]})")
            x = np.asarray(feeds[spec.name])
            if tuple(x.shape) != shape:
                raise ShapeError(f"{self.artifact.path}: input {spec.name!r} must have shape {list(shape)} "
                                 f"(TFLM files have a fixed shape), got {list(x.shape)}")
            arrays.append((index, np.array(quantize(x, quant) if quant is not None else x, dtype=dtype, order="C")))
        if self._pool is None:
            raise BackendError(f"{self.artifact.path}: the TFLM session is closed")
        with self._pool.engine() as it:
            try:
                for index, arr in arrays:
                    it.set_input(arr, index)
                it.invoke()
                raw = [(np.array(it.get_output(index)), quant) for _, quant, _, index in self._out]
            except RuntimeError as exc:
                raise BackendError(f"TFLM failed running {self.artifact.path}: {exc}") from None
        return [dequantize(y, quant) if quant is not None else y for y, quant in raw]

    def close(self) -> None:
        """Drop the interpreters (their arenas are freed)."""
        if self._pool is not None:
            self._pool.close()
        self._pool = self._it = None
