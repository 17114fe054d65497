"""The parity gate: every artifact is run by the runtime a device will use and compared with torch.

Nothing enters a bundle that was not run, on sample inputs (real test samples and random ones), by
the same code that runs it on a device -- a :class:`~edgeode.runtime.backends.Session` of
:mod:`edgeode.runtime.backends` (onnxruntime for ONNX files, LiteRT for TFLite files, TensorFlow
Lite Micro for full-int8 ones; fed in chunks of a fixed batch by
:func:`~edgeode.runtime.backends.run_chunked` as ``Model`` feeds them) -- and found within
tolerance of the torch model it came from. The max abs difference goes into the manifest. The
check exists because converters can be silently wrong (DESIGN.md: litert-torch once produced a
0-op model with a constant output).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeode.errors import BackendError, ParityError
from edgeode.runtime.backends import BACKEND_FORMAT, BACKENDS, TFLM_ONLY, Session, open_session, run_chunked
from edgeode.runtime.manifest import Artifact

__all__ = ["DEFAULT_TOLERANCE", "INT8_TOLERANCE_REASON", "ParityCase", "ParityResult", "tolerance_for", "gate_backend",
           "open_gate_session", "check_parity"]

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


def gate_backend(fmt: str, precision: str = "float32") -> str:
    """The backend the gate runs a ``fmt`` file of ``precision`` with, as a device runs it: ``tflm``
    (TensorFlow Lite Micro, a board's interpreter) for the full-integer microcontroller build, else
    the first of the runtime's :data:`~edgeode.runtime.backends.BACKENDS` for that format (what
    ``load(backend="auto")`` picks where it is installed: onnxruntime, LiteRT)."""
    if precision in TFLM_ONLY:
        return "tflm"
    return next(name for name in BACKENDS if BACKEND_FORMAT[name] == fmt)


def open_gate_session(path: str | Path, artifact: Artifact) -> Session:
    """Open the file at ``path`` (described by ``artifact``) as a device would, with one thread and one engine
    (a ``tflm`` session with the arena ``artifact.tflm`` states). Raises :class:`BackendError` with the install hint.
    """
    backend = gate_backend(artifact.format, artifact.precision)
    try:
        return open_session(backend, path, artifact, threads=1, engines=1)
    except BackendError as exc:
        raise BackendError(f"the parity gate runs {artifact.format} files with {backend}: {exc}") from None


@dataclass
class ParityCase:
    """Inputs for one run of an artifact and the torch output they must reproduce.

    ``batched`` names the input whose axis 0 is the batch (a 1-tuple: every case has one; the others,
    such as a field's ``t``, are fed whole to every chunk); ``out_batch_axis`` is the batch axis of
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


def check_parity(session: Session, cases: Sequence[ParityCase], bound_scale: float) -> ParityResult:
    """Run ``cases`` through ``session`` (in chunks of its file's fixed batch, if it has one); the bound
    is ``bound_scale * max(1, max|expected|)``."""
    name = session.artifact.path
    worst = 0.0
    scale = 1.0
    details = []
    count = 0
    for i, case in enumerate(cases):
        (batched,) = case.batched  # one batched input per case (the plan's cases have exactly one)
        fixed = {k: v for k, v in case.feeds.items() if k != batched}
        got = run_chunked(lambda part, fixed=fixed, batched=batched: session.run({**fixed, batched: part})[0],
                          case.feeds[batched], session.artifact.batch, case.out_batch_axis)
        count += case.expected.shape[case.out_batch_axis] if case.expected.ndim else 1
        if got.shape != case.expected.shape:
            raise ParityError(
                f"{name}: output shape {got.shape} from the runtime differs from torch's {case.expected.shape} "
                f"(case {i}); the converter produced a wrong model. Export without this format (--formats) and report it"
            )
        diff = float(np.max(np.abs(got.astype(np.float64) - case.expected))) if got.size else 0.0
        if not math.isfinite(diff):
            diff = math.inf
        details.append(f"case {i}: max abs {diff:.3g}")
        worst = max(worst, diff)
        scale = max(scale, float(np.max(np.abs(case.expected))) if case.expected.size else 1.0)
    return ParityResult(name, worst, bound_scale * scale, count, details)
