"""The parity gate: every artifact is run by its real runtime and compared with torch.

Nothing enters a bundle that was not run by the runtime a device will use (onnxruntime, or the
LiteRT interpreter from ai-edge-litert) on sample inputs — real test samples and random ones — and
found within tolerance of the torch model it came from. The max abs difference goes into the
manifest. The check exists because converters can be silently wrong (DESIGN.md: litert-torch once
produced a 0-op model with a constant output).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeode.errors import BackendError, ParityError

__all__ = ["DEFAULT_TOLERANCE", "INT8_TOLERANCE_REASON", "ParityCase", "ParityResult", "tolerance_for", "run_onnx", "run_tflite", "check_parity"]

#: Max abs difference allowed per precision, relative to ``max(1, max |torch output|)``.
DEFAULT_TOLERANCE = {"float32": 1e-3, "float16": 2e-2, "int8-weight": 0.1, "int8-dynamic": 0.25, "int8": 0.5}
#: Why full-int8 files get 0.5: measured in TFLM on real held-out digits (ODE-Net, 32 channels, RK4 x 4),
#: relative max abs error: field 0.28, encoder 0.02, head 0.02, fused 0.02. The field's per-channel
#: GroupNorm over 3x3 pixels amplifies int8 rounding; the bound catches a broken file (wrong op,
#: clipped range: errors of the order of the output itself), and the accuracy gate does the rest.
INT8_TOLERANCE_REASON = ("relative max abs error measured in TFLM on held-out digits: field 0.28, encoder/head/fused "
                         "0.02; the field's GroupNorm over few pixels amplifies int8 rounding. Predictions must also "
                         "agree with float32 on agreement_min of the held-out split")


def tolerance_for(precision: str, override: float | None = None) -> float:
    """The float32 tolerance ``override`` (if given) scaled to ``precision``, else the default."""
    if override is None:
        return DEFAULT_TOLERANCE[precision]
    return override * DEFAULT_TOLERANCE[precision] / DEFAULT_TOLERANCE["float32"]


@dataclass
class ParityCase:
    """Inputs for one run of an artifact and the torch output they must reproduce.

    ``batched`` names the inputs whose axis 0 is the batch; ``out_batch_axis`` is the batch axis of
    the output (1 for a trajectory ``[T, B, D]``).
    """

    feeds: dict[str, np.ndarray]
    expected: np.ndarray
    batched: tuple[str, ...]
    out_batch_axis: int = 0


@dataclass
class ParityResult:
    """What the gate measured for one artifact."""

    path: str
    max_abs: float
    bound: float
    samples: int
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return math.isfinite(self.max_abs) and self.max_abs <= self.bound


def run_onnx(path: str | Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Run an ONNX file with onnxruntime (CPU, 1 thread) and return its first output."""
    return _onnx_session(path).run(None, feeds)[0]


def _onnx_session(path: str | Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendError("the parity gate needs onnxruntime: pip install onnxruntime") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _interpreter(path: str | Path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise BackendError("the parity gate for TFLite needs ai-edge-litert: pip install ai-edge-litert") from None
    from edgeode.export.quiet import quiet

    with quiet():  # "Created TensorFlow Lite XNNPACK delegate" on stderr
        interpreter = Interpreter(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
    return interpreter


def run_tflite(path: str | Path, feeds: dict[str, np.ndarray], batch: int, batched: Sequence[str],
               out_batch_axis: int = 0) -> np.ndarray:
    """Run a fixed-batch TFLite file with the LiteRT interpreter in chunks of ``batch`` (last one padded)."""
    return _run_tflite(_interpreter(path).get_signature_runner(), feeds, batch, batched, out_batch_axis)


def _run_tflite(runner, feeds: dict[str, np.ndarray], batch: int, batched: Sequence[str],
                out_batch_axis: int = 0) -> np.ndarray:
    n = next(iter(feeds[name].shape[0] for name in batched)) if batched else batch
    outs = []
    for start in range(0, n, batch):
        chunk = {}
        for name, value in feeds.items():
            if name in batched:
                part = value[start:start + batch]
                if part.shape[0] < batch:
                    pad = np.zeros((batch - part.shape[0], *part.shape[1:]), dtype=part.dtype)
                    part = np.concatenate([part, pad])
                chunk[name] = np.ascontiguousarray(part)
            else:
                chunk[name] = value
        result = runner(**chunk)
        out = next(iter(result.values()))
        take = min(batch, n - start)
        outs.append(np.take(out, np.arange(take), axis=out_batch_axis))
    return np.concatenate(outs, axis=out_batch_axis)


def check_parity(path: Path, bundle_path: str, fmt: str, cases: Sequence[ParityCase], bound_scale: float,
                 batch: int | None, runner=None) -> ParityResult:
    """Run ``cases`` through the artifact at ``path``; the bound is ``bound_scale * max(1, max|expected|)``.

    ``runner`` replaces the LiteRT signature runner of a TFLite file (a callable taking the inputs
    as keywords and returning ``{name: output}``; the TFLM gate of int8 files passes one).
    """
    worst = 0.0
    scale = 1.0
    details = []
    count = 0
    # one session / interpreter per artifact, shared by its cases
    if fmt == "onnx":
        session = _onnx_session(path)
    else:
        session = runner if runner is not None else _interpreter(path).get_signature_runner()
    for i, case in enumerate(cases):
        if fmt == "onnx":
            got = session.run(None, case.feeds)[0]
        else:
            got = _run_tflite(session, case.feeds, batch or 1, case.batched, case.out_batch_axis)
        count += case.expected.shape[case.out_batch_axis] if case.expected.ndim else 1
        if got.shape != case.expected.shape:
            raise ParityError(
                f"{bundle_path}: output shape {got.shape} from the runtime differs from torch's {case.expected.shape} "
                f"(case {i}); the converter produced a wrong model. Export without this format (--formats) and report it"
            )
        diff = float(np.max(np.abs(got.astype(np.float64) - case.expected))) if got.size else 0.0
        if not math.isfinite(diff):
            diff = math.inf
        details.append(f"case {i}: max abs {diff:.3g}")
        worst = max(worst, diff)
        scale = max(scale, float(np.max(np.abs(case.expected))) if case.expected.size else 1.0)
    return ParityResult(bundle_path, worst, bound_scale * scale, count, details)
