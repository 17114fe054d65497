"""The bundle manifest: the one contract between export (torch side) and the device runtime.

A bundle is a directory::

    BUNDLE/
      manifest.json
      onnx/encoder.onnx  onnx/field.onnx  onnx/head.onnx  onnx/fused.onnx   (roles, see below)
      tflite/...

``manifest.json`` says everything a device needs and nothing it must guess. It is parsed strictly:
missing keys, unknown keys, a newer format version, or a file path that escapes the bundle
directory are each a :class:`~edgeode.errors.BundleError` naming the key and the fix.

Artifact roles:
    ``encoder``  x -> h0 (the downsampling layers of an ODE-Net)
    ``field``    (t, h) -> dh/dt, the learned vector field f, for the device's own solver loop
    ``head``     h(t1) -> class scores
    ``fused``    the whole model, solve included, in one graph (ONNX: a ``Loop`` whose trip count is
                 the optional input ``steps``; TFLite: the solve unrolled for ``solver.steps``)
    ``model``    a network without an ODE (ResNet / VGG baselines)
    ``cell``     (x, h) -> h', the GRU update of an ODE-RNN at an observation (kind ``series``, with a
                 ``field`` f(h) for the gaps and a ``head``; the ``series`` section gives the observation layout)

This module imports only the standard library.
"""

from __future__ import annotations

import json
import math
import posixpath
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeode.errors import BundleError
from edgeode.jsonfile import read_json
from edgeode.runtime.limits import MAX_STEPS, describe_int
from edgeode.tableaus import TABLEAUS, ButcherTableau

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "MODEL_KINDS",
    "ROLES",
    "FORMATS",
    "PRECISIONS",
    "TensorSpec",
    "Preprocess",
    "InputSpec",
    "OutputSpec",
    "SolverSpec",
    "Quantization",
    "TFLMInfo",
    "McuInfo",
    "TunedSpec",
    "SeriesSpec",
    "Artifact",
    "Manifest",
]

FORMAT_NAME = "edgeode-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MODEL_KINDS = ("classifier", "dynamics", "series")
ROLES = ("encoder", "field", "head", "fused", "model", "cell", "observe")
FORMATS = ("onnx", "tflite")
PRECISIONS = ("float32", "float16", "int8-dynamic", "int8-weight", "int8")
DTYPES = ("float32", "float16", "int64", "int32", "uint8", "int8")


def _check_keys(data: Any, where: str, required: set[str], optional: set[str] = frozenset()) -> dict:
    if not isinstance(data, dict):
        raise BundleError(f"manifest {where}: expected a JSON object, got {type(data).__name__}; re-export the bundle")
    missing = required - set(data)
    if missing:
        raise BundleError(
            f"manifest {where}: missing key(s) {sorted(missing)}; the manifest is incomplete or "
            "from another tool: re-export the bundle with `edgeode export`"
        )
    unknown = set(data) - required - set(optional)
    if unknown:
        raise BundleError(
            f"manifest {where}: unknown key(s) {sorted(unknown)}; this runtime knows "
            f"{sorted(required | set(optional))}. Upgrade edgeode or re-export the bundle"
        )
    return data


def _shape(value: Any, where: str) -> tuple[int | None, ...]:
    if not isinstance(value, list) or not all(v is None or (isinstance(v, int) and v >= 0) for v in value):
        raise BundleError(f"manifest {where}: shape must be a list of non-negative ints or null (dynamic), got {value!r}")
    return tuple(value)


def _dtype(value: Any, where: str) -> str:
    if value not in DTYPES:
        raise BundleError(f"manifest {where}: unknown dtype {value!r}; expected one of {DTYPES}")
    return value


def _number(value: Any, where: str, kind: type = float, minimum: float | None = None) -> Any:
    ok = not isinstance(value, bool) and isinstance(value, (int, float) if kind is float else int)
    if not ok or (kind is float and not math.isfinite(value)) or (minimum is not None and value < minimum):
        what = "a finite number" if kind is float else "an integer"
        bound = f" >= {minimum}" if minimum is not None else ""
        raise BundleError(f"manifest {where}: expected {what}{bound}, got {value!r}; re-export the bundle")
    return kind(value)


@dataclass(frozen=True)
class Quantization:
    """Affine int8 quantization of one tensor: ``real = scale * (q - zero_point)`` (per tensor)."""

    scale: float
    zero_point: int

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Quantization:
        _check_keys(data, where, {"scale", "zero_point"})
        scale = _number(data["scale"], f"{where}.scale")
        if scale <= 0:
            raise BundleError(f"manifest {where}.scale: must be > 0, got {scale!r}; re-export the bundle")
        return cls(scale, _number(data["zero_point"], f"{where}.zero_point", int, -128))

    def to_dict(self) -> dict:
        return {"scale": self.scale, "zero_point": self.zero_point}


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (``None`` = dynamic, e.g. the batch) and dtype of one graph input or output.

    ``quantization`` is set for the int8 inputs and outputs of full-integer files.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"
    quantization: Quantization | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str) -> TensorSpec:
        _check_keys(data, where, {"name", "shape", "dtype"}, {"quantization"})
        if not isinstance(data["name"], str):
            raise BundleError(f"manifest {where}.name: expected a string")
        quant = data.get("quantization")
        return cls(data["name"], _shape(data["shape"], f"{where}.shape"), _dtype(data["dtype"], f"{where}.dtype"),
                   Quantization.from_dict(quant, f"{where}.quantization") if quant is not None else None)

    def to_dict(self) -> dict:
        d = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.quantization is not None:
            d["quantization"] = self.quantization.to_dict()
        return d


@dataclass(frozen=True)
class Preprocess:
    """How raw input becomes the model's input: ``x = (raw * scale - mean) / std``.

    ``image_size`` is (height, width) that an image file is resized to; ``invert`` flips
    intensities (``raw -> max - raw``) for images drawn dark-on-light; ``raw_max`` is the full scale of
    raw pixel values the model was trained on (16 for scikit-learn digits, 255 for MNIST).
    """

    scale: float = 1.0
    mean: float = 0.0
    std: float = 1.0
    image_size: tuple[int, int] | None = None
    raw_max: float = 255.0
    invert: bool = False

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Preprocess:
        _check_keys(data, where, {"scale", "mean", "std", "image_size", "raw_max", "invert"})
        size = data["image_size"]
        if size is not None:
            size = tuple(_shape(size, f"{where}.image_size"))
            if len(size) != 2 or None in size:
                raise BundleError(f"manifest {where}.image_size: expected [height, width], got {data['image_size']!r}")
        for key in ("scale", "mean", "std", "raw_max"):
            if not isinstance(data[key], (int, float)) or not math.isfinite(data[key]):
                raise BundleError(f"manifest {where}.{key}: expected a finite number, got {data[key]!r}")
        if data["std"] == 0:
            raise BundleError(f"manifest {where}.std: must not be 0")
        return cls(
            float(data["scale"]), float(data["mean"]), float(data["std"]), size, float(data["raw_max"]), bool(data["invert"])
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_size"] = list(self.image_size) if self.image_size is not None else None
        return d


@dataclass(frozen=True)
class InputSpec:
    """The model input: tensor spec (batch dimension first, ``None`` if dynamic) and preprocessing."""

    tensor: TensorSpec
    preprocess: Preprocess = field(default_factory=Preprocess)

    @classmethod
    def from_dict(cls, data: Any) -> InputSpec:
        _check_keys(data, "input", {"name", "shape", "dtype", "preprocess"})
        tensor = TensorSpec.from_dict({k: data[k] for k in ("name", "shape", "dtype")}, "input")
        return cls(tensor, Preprocess.from_dict(data["preprocess"], "input.preprocess"))

    def to_dict(self) -> dict:
        return {**self.tensor.to_dict(), "preprocess": self.preprocess.to_dict()}


@dataclass(frozen=True)
class OutputSpec:
    """The model output: tensor spec and, for a classifier, one label per class."""

    tensor: TensorSpec
    labels: tuple[str, ...] | None = None

    @classmethod
    def from_dict(cls, data: Any) -> OutputSpec:
        _check_keys(data, "output", {"name", "shape", "dtype", "labels"})
        tensor = TensorSpec.from_dict({k: data[k] for k in ("name", "shape", "dtype")}, "output")
        labels = data["labels"]
        if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
            raise BundleError("manifest output.labels: expected a list of strings or null")
        return cls(tensor, tuple(labels) if labels is not None else None)

    def to_dict(self) -> dict:
        return {**self.tensor.to_dict(), "labels": list(self.labels) if self.labels is not None else None}


@dataclass(frozen=True)
class SolverSpec:
    """The fixed-step solve the model was trained with: tableau, time span, number of steps.

    ``state_shape`` is the ODE state h with the batch dimension first (``None`` if dynamic).
    """

    tableau: ButcherTableau
    t0: float
    t1: float
    steps: int
    state_shape: tuple[int | None, ...]

    @classmethod
    def from_dict(cls, data: Any) -> SolverSpec:
        _check_keys(data, "solver", {"tableau", "t0", "t1", "steps", "state_shape"})
        try:
            tableau = ButcherTableau.from_dict(data["tableau"])
        except Exception as exc:  # TableauError or a type error inside the dict
            raise BundleError(f"manifest solver.tableau: {exc}") from None
        steps = data["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise BundleError(f"manifest solver.steps: expected a positive integer, got {steps!r}")
        if steps > MAX_STEPS:
            raise BundleError(
                f"manifest solver.steps: {describe_int(steps)} is above the bound of "
                f"{MAX_STEPS:,} steps (edgeode.runtime.limits.MAX_STEPS); the manifest is corrupt or was edited: re-export"
            )
        for key in ("t0", "t1"):
            if not isinstance(data[key], (int, float)) or not math.isfinite(data[key]):
                raise BundleError(f"manifest solver.{key}: expected a finite number, got {data[key]!r}")
        return cls(tableau, float(data["t0"]), float(data["t1"]), data["steps"], _shape(data["state_shape"], "solver.state_shape"))

    def to_dict(self) -> dict:
        return {
            "tableau": self.tableau.to_dict(),
            "t0": self.t0,
            "t1": self.t1,
            "steps": self.steps,
            "state_shape": list(self.state_shape),
        }


@dataclass(frozen=True)
class TFLMInfo:
    """What TensorFlow Lite Micro needs to run one file, measured at export in the real interpreter.

    ``arena_bytes`` is the smallest tensor arena with which allocate + invoke succeed, found by
    bisection in 16-byte steps (``arena_used_bytes()`` understates it: DESIGN.md). It is measured by
    the 64-bit host build of ``tflite-micro``; a 32-bit Cortex-M build needs about 2% less.
    ``ops`` are the builtin operators the file uses (the firmware's op resolver registers them).
    The artifact's ``inputs`` and ``outputs`` are listed in the model's tensor index order, which is
    how TFLM addresses them (``input(i)``, ``output(i)``).
    """

    arena_bytes: int
    ops: tuple[str, ...]

    @classmethod
    def from_dict(cls, data: Any, where: str) -> TFLMInfo:
        _check_keys(data, where, {"arena_bytes", "ops"})
        ops = data["ops"]
        if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
            raise BundleError(f"manifest {where}.ops: expected a list of operator names")
        return cls(_number(data["arena_bytes"], f"{where}.arena_bytes", int, 1), tuple(ops))

    def to_dict(self) -> dict:
        return {"arena_bytes": self.arena_bytes, "ops": list(self.ops)}


@dataclass(frozen=True)
class McuInfo:
    """The microcontroller side of a bundle with full-int8 files (``edgeode export --quantize int8``).

    ``rk_state_bytes``: float32 buffers a device's solver loop keeps beside the field's arena (the state
    h, the stage input and one k per stage: ``(stages + 2) x state elements x 4``); ``None`` without an ODE.
    ``calibration``: the split and sample counts the activation ranges came from, and how they were merged.
    ``accuracy``: float32 and int8 accuracy on the held-out split, run in the TFLM interpreter.
    ``parity``: the int8 tolerance and the measurement behind it.
    """

    rk_state_bytes: int | None
    calibration: dict
    accuracy: dict
    parity: dict

    @classmethod
    def from_dict(cls, data: Any) -> McuInfo:
        _check_keys(data, "mcu", {"rk_state_bytes", "calibration", "accuracy", "parity"})
        state = data["rk_state_bytes"]
        for key in ("calibration", "accuracy", "parity"):
            if not isinstance(data[key], dict):
                raise BundleError(f"manifest mcu.{key}: expected an object; re-export the bundle")
        return cls(_number(state, "mcu.rk_state_bytes", int, 0) if state is not None else None,
                   data["calibration"], data["accuracy"], data["parity"])

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TunedSpec:
    """The configuration ``edgeode tune --apply`` chose: what :func:`edgeode.runtime.load` runs by default.

    ``tableau``, ``steps``, ``precision`` and ``mode`` are what runs when the caller asks for none of them;
    the solver the files were built with (``solver``) stays the computation-defining record
    (:mod:`edgeode.runtime.contract`): the tuned solve is a run-time choice, as ``load(steps=, tableau=)`` is.
    ``accuracy`` is the figure tune measured for it through the runtime (classifiers: the fraction right;
    dynamics: the trajectory error, lower is better: ``metric`` says which) on ``samples`` held-out samples;
    ``measured`` holds the rest of what tune reported (device, estimated latency and energy, data).
    """

    tableau: str
    steps: int
    precision: str
    mode: str
    accuracy: float
    metric: str
    samples: int
    measured: dict

    @classmethod
    def from_dict(cls, data: Any) -> TunedSpec:
        _check_keys(data, "tuned", {"tableau", "steps", "precision", "mode", "accuracy", "metric", "samples", "measured"})
        if data["tableau"] not in TABLEAUS:
            raise BundleError(f"manifest tuned.tableau: unknown solver {data['tableau']!r}; expected one of "
                              f"{sorted(TABLEAUS)}: run `edgeode tune --apply` again")
        steps = _number(data["steps"], "tuned.steps", int, 1)
        if steps > MAX_STEPS:
            raise BundleError(f"manifest tuned.steps: {describe_int(steps)} is above the bound of {MAX_STEPS:,} steps "
                              "(edgeode.runtime.limits.MAX_STEPS); run `edgeode tune --apply` again")
        if data["precision"] not in PRECISIONS:
            raise BundleError(f"manifest tuned.precision: unknown precision {data['precision']!r}; expected one of {PRECISIONS}")
        if data["mode"] not in ("fused", "loop"):
            raise BundleError(f"manifest tuned.mode: expected 'fused' or 'loop', got {data['mode']!r}")
        if not isinstance(data["metric"], str) or not isinstance(data["measured"], dict):
            raise BundleError("manifest tuned: metric must be a string and measured an object; run `edgeode tune --apply` again")
        return cls(data["tableau"], steps, data["precision"], data["mode"], _number(data["accuracy"], "tuned.accuracy"),
                   data["metric"], _number(data["samples"], "tuned.samples", int, 1), data["measured"])

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SeriesSpec:
    """How a streaming series model (kind ``series``, an ODE-RNN) reads its observations.

    An observation is one sample of ``channels`` (names, in order) at a time in ``time_unit`` (seconds);
    the model reads ``(raw - mean) / std`` per channel. Between two observations the state h evolves by the
    ``field`` artifact with the manifest's solver tableau in ``ceil(gap / max_step)`` equal steps
    (:func:`edgeode.runtime.loop.interval_steps`); the ``cell`` artifact updates h at each observation;
    h starts at zeros of ``hidden`` elements at the first observation, and the ``head`` classifies it.
    """

    channels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    max_step: float
    hidden: int
    time_unit: str = "s"

    @classmethod
    def from_dict(cls, data: Any) -> SeriesSpec:
        _check_keys(data, "series", {"channels", "mean", "std", "max_step", "hidden", "time_unit"})
        channels = data["channels"]
        if not isinstance(channels, list) or not channels or not all(isinstance(c, str) for c in channels):
            raise BundleError("manifest series.channels: expected a non-empty list of channel names; re-export the bundle")
        values = {}
        for key in ("mean", "std"):
            got = data[key]
            if not isinstance(got, list) or len(got) != len(channels):
                raise BundleError(f"manifest series.{key}: expected {len(channels)} numbers (one per channel), got {got!r}")
            values[key] = tuple(_number(v, f"series.{key}[{i}]") for i, v in enumerate(got))
        if any(v <= 0 for v in values["std"]):
            raise BundleError(f"manifest series.std: every channel's std must be > 0, got {list(values['std'])}")
        max_step = _number(data["max_step"], "series.max_step")
        if max_step <= 0:
            raise BundleError(f"manifest series.max_step: must be > 0 seconds, got {max_step!r}; re-export the bundle")
        if data["time_unit"] != "s":
            raise BundleError(f"manifest series.time_unit: {data['time_unit']!r} is not 's' (seconds); re-export")
        return cls(tuple(channels), values["mean"], values["std"], max_step,
                   _number(data["hidden"], "series.hidden", int, 1), "s")

    def to_dict(self) -> dict:
        return {"channels": list(self.channels), "mean": list(self.mean), "std": list(self.std),
                "max_step": self.max_step, "hidden": self.hidden, "time_unit": self.time_unit}


@dataclass(frozen=True)
class Artifact:
    """One model file in the bundle.

    ``path`` is relative to the bundle directory, POSIX separators, never escaping it.
    ``batch`` is the fixed batch size the file was built for, or ``None`` if the batch is dynamic.
    ``parity_max_abs`` is the max abs difference from torch measured by the real runtime at export,
    ``parity_tolerance`` the bound it had to meet. ``tflm`` is set for files measured in TensorFlow Lite
    Micro (the full-int8 ``int8`` precision).
    """

    path: str
    role: str
    format: str
    precision: str
    sha256: str
    size: int
    batch: int | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int | None
    parity_max_abs: float
    parity_tolerance: float
    tflm: TFLMInfo | None = None

    @classmethod
    def from_dict(cls, data: Any, index: int) -> Artifact:
        where = f"artifacts[{index}]"
        keys = {"path", "role", "format", "precision", "sha256", "size", "batch", "inputs", "outputs", "opset",
                "parity_max_abs", "parity_tolerance"}
        _check_keys(data, where, keys, {"tflm"})
        path = data["path"]
        if not isinstance(path, str) or not path:
            raise BundleError(f"manifest {where}.path: expected a relative file path")
        norm = posixpath.normpath(path)
        if path.startswith(("/", "\\")) or "\\" in path or norm.startswith("..") or ":" in path.split("/")[0]:
            raise BundleError(
                f"manifest {where}.path {path!r} escapes the bundle directory; paths must be relative and "
                "stay inside the bundle. The manifest was tampered with or corrupted: re-export the bundle"
            )
        if data["role"] not in ROLES:
            raise BundleError(f"manifest {where}.role: unknown role {data['role']!r}; expected one of {ROLES}")
        if data["format"] not in FORMATS:
            raise BundleError(f"manifest {where}.format: unknown format {data['format']!r}; expected one of {FORMATS}")
        if data["precision"] not in PRECISIONS:
            raise BundleError(f"manifest {where}.precision: unknown precision {data['precision']!r}; expected one of {PRECISIONS}")
        sha = data["sha256"]
        if not isinstance(sha, str) or len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha):
            raise BundleError(f"manifest {where}.sha256: expected 64 lowercase hex digits")
        if not isinstance(data["size"], int) or data["size"] < 0:
            raise BundleError(f"manifest {where}.size: expected a byte count")
        batch = data["batch"]
        if batch is not None and (not isinstance(batch, int) or batch < 1):
            raise BundleError(f"manifest {where}.batch: expected a positive integer or null (dynamic)")
        for key in ("inputs", "outputs"):
            if not isinstance(data[key], list) or not data[key]:
                raise BundleError(f"manifest {where}.{key}: expected a non-empty list of tensor specs")
        if data["opset"] is not None and (isinstance(data["opset"], bool) or not isinstance(data["opset"], int)):
            raise BundleError(f"manifest {where}.opset: expected an integer or null, got {data['opset']!r}")
        for key in ("parity_max_abs", "parity_tolerance"):
            if isinstance(data[key], bool) or not isinstance(data[key], (int, float)):
                raise BundleError(f"manifest {where}.{key}: expected a number, got {data[key]!r}")
        return cls(
            path=norm,
            role=data["role"],
            format=data["format"],
            precision=data["precision"],
            sha256=sha,
            size=data["size"],
            batch=batch,
            inputs=tuple(TensorSpec.from_dict(s, f"{where}.inputs[{i}]") for i, s in enumerate(data["inputs"])),
            outputs=tuple(TensorSpec.from_dict(s, f"{where}.outputs[{i}]") for i, s in enumerate(data["outputs"])),
            opset=data["opset"],
            parity_max_abs=float(data["parity_max_abs"]),
            parity_tolerance=float(data["parity_tolerance"]),
            tflm=TFLMInfo.from_dict(data["tflm"], f"{where}.tflm") if data.get("tflm") is not None else None,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["inputs"] = [s.to_dict() for s in self.inputs]
        d["outputs"] = [s.to_dict() for s in self.outputs]
        if self.tflm is None:
            del d["tflm"]
        else:
            d["tflm"] = self.tflm.to_dict()
        return d


@dataclass(frozen=True)
class Manifest:
    """Everything in ``manifest.json``.

    ``model`` holds ``arch`` (odenet, rknet, resnet, vgg, spiral, ...), ``parameters`` (count) and
    ``config`` (the training config's model section), for information; the runtime relies only on
    the typed fields.
    ``solver`` is ``None`` for networks without an ODE block.
    ``tools`` maps tool name -> version string for everything that made the bundle.
    ``mcu`` is set when the bundle has full-int8 files for microcontrollers.
    ``tuned`` is set by ``edgeode tune --apply``: the configuration the runtime runs by default.
    ``series`` is set for kind ``series`` (a streaming ODE-RNN): the observation layout and maximum step.
    """

    kind: str
    model: dict
    input: InputSpec
    output: OutputSpec
    solver: SolverSpec | None
    artifacts: tuple[Artifact, ...]
    tools: dict
    created: str
    format_version: int = FORMAT_VERSION
    mcu: McuInfo | None = None
    tuned: TunedSpec | None = None
    series: SeriesSpec | None = None

    _KEYS = frozenset({"format", "format_version", "kind", "model", "input", "output", "solver", "artifacts", "tools", "created"})

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise BundleError("manifest.json must hold a JSON object; re-export the bundle")
        if data.get("format") != FORMAT_NAME:
            raise BundleError(
                f"manifest.json has format {data.get('format')!r}, expected {FORMAT_NAME!r}: this is not an "
                "edgeode bundle (make one with `edgeode export RUN_DIR -o BUNDLE`)"
            )
        version = data.get("format_version")
        if not isinstance(version, int):
            raise BundleError(f"manifest format_version must be an integer, got {version!r}; re-export the bundle")
        if version > FORMAT_VERSION:
            raise BundleError(
                f"bundle format version {version} is newer than this runtime understands ({FORMAT_VERSION}); "
                "upgrade edgeode on the device (pip install -U edgeode[device])"
            )
        if version < 1:
            raise BundleError(f"unknown bundle format version {version}; re-export the bundle")
        _check_keys(data, "(top level)", set(cls._KEYS), {"mcu", "tuned", "series"})
        if data["kind"] not in MODEL_KINDS:
            raise BundleError(f"manifest kind: unknown model kind {data['kind']!r}; expected one of {MODEL_KINDS}")
        if not isinstance(data["model"], dict) or "arch" not in data["model"]:
            raise BundleError("manifest model: expected an object with at least 'arch'")
        if not isinstance(data["artifacts"], list) or not data["artifacts"]:
            raise BundleError("manifest artifacts: expected a non-empty list; the bundle holds no model file")
        artifacts = tuple(Artifact.from_dict(a, i) for i, a in enumerate(data["artifacts"]))
        seen = set()
        for art in artifacts:
            if art.path in seen:
                raise BundleError(f"manifest artifacts: path {art.path!r} is listed twice")
            seen.add(art.path)
        return cls(
            kind=data["kind"],
            model=data["model"],
            input=InputSpec.from_dict(data["input"]),
            output=OutputSpec.from_dict(data["output"]),
            solver=SolverSpec.from_dict(data["solver"]) if data["solver"] is not None else None,
            artifacts=artifacts,
            tools=dict(data["tools"]) if isinstance(data["tools"], dict) else {},
            created=str(data["created"]),
            format_version=version,
            mcu=McuInfo.from_dict(data["mcu"]) if data.get("mcu") is not None else None,
            tuned=TunedSpec.from_dict(data["tuned"]) if data.get("tuned") is not None else None,
            series=SeriesSpec.from_dict(data["series"]) if data.get("series") is not None else None,
        )

    def to_dict(self) -> dict:
        d = {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "kind": self.kind,
            "model": self.model,
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "solver": self.solver.to_dict() if self.solver is not None else None,
            "artifacts": [a.to_dict() for a in self.artifacts],
            "tools": self.tools,
            "created": self.created,
        }
        if self.mcu is not None:
            d["mcu"] = self.mcu.to_dict()
        if self.tuned is not None:
            d["tuned"] = self.tuned.to_dict()
        if self.series is not None:
            d["series"] = self.series.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def read(cls, bundle_dir: str | Path) -> Manifest:
        """Parse ``BUNDLE/manifest.json`` strictly (does not verify the files; see ``runtime.bundle``)."""
        path = Path(bundle_dir) / MANIFEST_NAME
        if not path.is_file():
            raise BundleError(
                f"{path} not found: {bundle_dir} is not a bundle directory (make one with `edgeode export RUN_DIR -o BUNDLE`)"
            )
        return cls.from_dict(read_json(path, BundleError, "re-export the bundle (`edgeode export RUN_DIR -o BUNDLE`)"))

    def find(self, role: str, format: str, precision: str = "float32") -> Artifact | None:
        """The artifact with this role, format and precision, if the bundle has one."""
        for art in self.artifacts:
            if art.role == role and art.format == format and art.precision == precision:
                return art
        return None
