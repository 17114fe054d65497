"""Full-integer (int8 weights, activations, inputs and outputs) TFLite files for microcontrollers.

``edgeode export --quantize int8`` turns each float32 TFLite file of the bundle (encoder, field,
head, fused; ``model`` for ResNet / VGG) into a full-int8 file with ai-edge-quantizer's static
recipe, calibrated on real data from a calibration split that is not the test split:

* encoder, fused, model: the calibration images;
* field: its real inputs, the pair (t, h) at *every stage* of real solves started from the encoder's
  output on those images (the state drifts over the solve; the encoder's output alone under-covers it);
* head: the final states of those solves.

Two choices, each measured here (DESIGN.md, *Microcontrollers*):

* Per-sample activation ranges are merged by min/max (``qsv_utils.min_max_update``), not by the
  quantizer's default moving average (0.95), which clipped the field's t input to [0, 0.57] so that
  later stage times saturated.
* FULLY_CONNECTED weights are quantized per tensor: the CMSIS-NN kernel of the Arduino TFLM library
  runs per-channel FC silently wrong (the head lost 9 points); per tensor is exact there and costs
  nothing in accuracy. Convolutions keep per-channel weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from edgeode.errors import ExportError
from edgeode.export.parity import ParityCase
from edgeode.export.plan import Job, Prepared
from edgeode.export.quantize import write_quantized
from edgeode.export.quiet import quiet
from edgeode.runtime.manifest import Manifest, McuInfo, TFLMInfo
from edgeode.train.solver import solve

__all__ = ["MERGE", "Calibration", "calibration_sets", "int8_jobs", "quantize_int8", "rk_state_bytes", "tflm_info",
           "FIELD_SAMPLES"]

MERGE = "min-max"
#: at most this many (t, h) samples calibrate the field (spread over all stages and images)
FIELD_SAMPLES = 512
#: calibration images of the fused (unrolled) graph: it calibrates slowly (every tensor of every
#: unrolled stage is read back; 256 images took minutes for the digits model here)
FUSED_IMAGES = 32
_ROLES = ("encoder", "field", "head", "fused", "model")


@dataclass
class Calibration:
    """Calibration feeds per role (one dict per TFLite invocation) and where they came from."""

    feeds: dict[str, list[dict[str, np.ndarray]]]
    images: int
    field_stages: int
    t_range: tuple[float, float]


class _Recorder(torch.nn.Module):
    """Wraps a field and records every (t, h) it is called with (the stage inputs of a solve)."""

    def __init__(self, field: torch.nn.Module):
        super().__init__()
        self.field = field
        self.calls: list[tuple[float, torch.Tensor]] = []

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        self.calls.append((float(t), h.detach().clone()))
        return self.field(t, h)


def _singles(x: torch.Tensor, batch: int, key: str) -> list[dict[str, np.ndarray]]:
    n = x.shape[0] // batch * batch
    return [{key: np.ascontiguousarray(x[i:i + batch].numpy())} for i in range(0, n, batch)]


def calibration_sets(p: Prepared, x_cal: torch.Tensor, batch: int) -> Calibration:
    """The calibration feeds of every artifact of ``p`` from the calibration images ``x_cal``."""
    x_cal = x_cal.to(torch.float32)
    if x_cal.shape[0] < batch:
        raise ExportError(f"int8 calibration needs at least {batch} calibration samples, got {x_cal.shape[0]}")
    feeds = {"encoder": _singles(x_cal, batch, "x"), "fused": _singles(x_cal[:max(batch, FUSED_IMAGES)], batch, "x"),
             "model": _singles(x_cal, batch, "x")}
    if p.field is None:
        return Calibration(feeds, int(x_cal.shape[0]), 0, (0.0, 0.0))
    rec = _Recorder(p.field)
    with torch.no_grad():
        h0 = p.encoder(x_cal)
        hT = solve(rec, h0, p.tableau, p.t0, p.t1, p.steps)
    n = h0.shape[0] // batch * batch
    total = len(rec.calls) * (n // batch)
    stride = max(1, math.ceil(total / FIELD_SAMPLES))
    field = []
    for k, (t, h) in enumerate(rec.calls):  # every stage; images rotate across stages
        for i in range((k % stride) * batch, n, stride * batch):
            field.append({"t": np.array(t, np.float32), "h": np.ascontiguousarray(h[i:i + batch].numpy())})
    feeds["field"] = field
    feeds["head"] = _singles(hT, batch, "h")
    times = [t for t, _ in rec.calls]
    return Calibration(feeds, int(x_cal.shape[0]), len(rec.calls), (min(times), max(times)))


def _recipe():
    from ai_edge_quantizer import qtyping, recipe_manager

    rm = recipe_manager.RecipeManager()
    rm.add_static_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                         activation_num_bits=8, weight_num_bits=8)
    # the later entry wins for FULLY_CONNECTED: per-tensor weights (see the module docstring)
    rm.add_static_config(regex=".*", operation_name=qtyping.TFLOperationName.FULLY_CONNECTED,
                         activation_num_bits=8, weight_num_bits=8,
                         weight_granularity=qtyping.QuantGranularity.TENSORWISE)
    return rm


def quantize_int8(source: Path, path: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    """Write the full-int8 version of the float TFLite file ``source`` to ``path``, calibrated on ``feeds``."""
    try:
        with quiet():
            from ai_edge_quantizer import calibrator, quantizer
            from ai_edge_quantizer.utils import qsv_utils
    except ImportError:
        raise ExportError("int8 export needs ai-edge-quantizer: pip install 'edgeode[train]'") from None
    if not feeds:
        raise ExportError(f"no calibration data for {source.name}")
    data = source.read_bytes()
    rm = _recipe()

    def run():
        cal = calibrator.Calibrator(data, num_threads=1, qsv_update_func=qsv_utils.min_max_update)
        cal.calibrate({"serving_default": feeds}, rm)
        return quantizer.Quantizer(data, rm.get_quantization_recipe()).quantize(
            cal.get_model_qsvs(), enable_progress_bar=False, enable_progress_report=False)

    write_quantized(source, path, "int8", run)


def rk_state_bytes(p: Prepared) -> int | None:
    """float32 bytes of the device loop's buffers: h, the stage input, one k per stage (batch 1)."""
    if p.tableau is None:
        return None
    return (p.tableau.stages + 2) * int(np.prod(p.state_shape)) * 4


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().numpy())


def _cases(p: Prepared, role: str, x_ref: torch.Tensor) -> list[ParityCase]:
    """Parity cases on real held-out samples (random inputs fall outside the calibrated ranges)."""
    with torch.no_grad():
        if role in ("model", "fused"):
            return [ParityCase({"x": _np(x_ref)}, _np(p.model(x_ref)), ("x",))]
        h0 = p.encoder(x_ref)
        if role == "encoder":
            return [ParityCase({"x": _np(x_ref)}, _np(h0), ("x",))]
        if role == "field":
            mid = 0.5 * (p.t0 + p.t1)
            return [ParityCase({"t": np.array(t, np.float32), "h": _np(h0)}, _np(p.field(torch.tensor(t), h0)), ("h",))
                    for t in (p.t0, mid)]
        hT = solve(p.field, h0, p.tableau, p.t0, p.t1, p.steps)
        return [ParityCase({"h": _np(hT)}, _np(p.head(hT)), ("h",))]


def int8_sources(jobs: list[Job], roles: tuple[str, ...] = _ROLES) -> list[Job]:
    """The float32 TFLite jobs of ``jobs`` that get a full-int8 twin (one each), in order."""
    return [j for j in jobs if j.format == "tflite" and j.precision == "float32" and j.role in roles]


def int8_jobs(jobs: list[Job], p: Prepared, calibration: Calibration, x_ref: torch.Tensor, bundle: Path) -> list[Job]:
    """One full-int8 job per float32 TFLite job of ``jobs`` (built from the file already in ``bundle``)."""
    out = []
    for job in int8_sources(jobs):
        source = bundle / job.path
        feeds = calibration.feeds.get(job.role, [])

        def build(path: Path, _source: Path = source, _feeds=feeds, _role: str = job.role) -> None:
            if _role == "fused" and p.field is not None:  # the WHILE file has subgraphs the quantizer cannot calibrate
                _quantize_unrolled(bundle / "tflite", p, path, _feeds)
            else:
                quantize_int8(_source, path, _feeds)

        stem = job.path.rsplit(".", 1)[0]
        out.append(replace(job, path=f"{stem}.int8.tflite", build=build, precision="int8",
                           cases=_cases(p, job.role, x_ref)))
    return out


def _quantize_unrolled(tflite_dir: Path, p: Prepared, path: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    """The int8 fused file: the float fused graph with its steps unrolled (one subgraph, which ai-edge-quantizer
    calibrates; it does not see inside a ``WHILE``), stitched from the bundle's float encoder, field and head."""
    import tempfile

    from edgeode.export.fused_tflite import fused_classifier_tflite

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        source = Path(tmp) / "fused.tflite"
        fused_classifier_tflite(tflite_dir / "encoder.tflite", tflite_dir / "field.tflite", tflite_dir / "head.tflite",
                                p.tableau, p.t0, p.t1, p.steps, source, unroll=True)
        quantize_int8(source, path, feeds)


def tflm_info(path: Path) -> TFLMInfo:
    """The TFLM record of the int8 file at ``path``: the smallest arena that runs it, measured by
    allocate + invoke (DESIGN.md: ``arena_used_bytes`` understates it), and its ops. The parity gate
    then runs the file in the runtime's ``tflm`` session with exactly that arena."""
    from edgeode.firmware.tflite_ops import tflite_ops
    from edgeode.runtime.tflm_arena import find_arena

    return TFLMInfo(find_arena(path).arena_bytes, tuple(sorted({op.name for op in tflite_ops(path)})))


#: the int8 build must agree with the float32 build on at least this share of held-out predictions
AGREEMENT_MIN = 0.95


def mcu_info(bundle_dir: Path, manifest: Manifest, p: Prepared, cal: Calibration,
             heldout: tuple[torch.Tensor, torch.Tensor], split: str) -> McuInfo:
    """Accuracy of the float32 and int8 builds on ``heldout``, run by the runtime's ``tflm`` backend.

    ``manifest`` is the one just written to ``bundle_dir`` (its artifacts and the versions of its tools).

    Loads the bundle written so far at ``bundle_dir`` exactly as a user would
    (``load(bundle, backend="tflm")``): loop mode (numpy solver around the field) and, where the bundle
    has one, the fused int8 file. Raises :class:`~edgeode.errors.ParityError` when an int8 build
    agrees with the float32 one on fewer than ``AGREEMENT_MIN`` of the predictions.
    """
    from edgeode.errors import ParityError
    from edgeode.export.parity import DEFAULT_TOLERANCE, INT8_TOLERANCE_REASON
    from edgeode.runtime import load

    x = np.ascontiguousarray(heldout[0].to(torch.float32).numpy())
    y = heldout[1].numpy()
    with torch.no_grad():
        torch_acc = float((p.model(heldout[0].to(torch.float32)).argmax(1).numpy() == y).mean())
    ode = p.tableau is not None
    runs = [("float32", "loop" if ode else "fused"), ("int8", "loop" if ode else "fused")]
    if ode and any(a.role == "fused" and a.precision == "int8" for a in manifest.artifacts):
        runs.append(("int8", "fused"))
    preds: dict[tuple[str, str], np.ndarray] = {}
    for precision, mode in runs:
        with load(bundle_dir, backend="tflm", mode=mode, precision=precision) as model:
            preds[precision, mode] = model.predict(x).argmax(1)
    float_pred = preds[runs[0]]
    accuracy = {"split": "test", "samples": int(len(y)), "interpreter": f"tflite-micro {manifest.tools.get('tflite-micro', 'unknown')} (host)",
                "float32_torch": round(torch_acc, 4), "float32": {}, "int8": {}, "agreement_with_float32": {}}
    for (precision, mode), pred in preds.items():
        accuracy[precision][mode] = round(float((pred == y).mean()), 4)
        if precision == "int8":
            agree = float((pred == float_pred).mean())
            accuracy["agreement_with_float32"][mode] = round(agree, 4)
            if agree < AGREEMENT_MIN:
                raise ParityError(
                    f"the int8 build ({mode} mode, run in TFLM) agrees with the float32 build on only {agree:.1%} of "
                    f"{len(y)} held-out samples (at least {AGREEMENT_MIN:.0%} required; int8 accuracy "
                    f"{accuracy['int8'][mode]:.4f}, float32 {accuracy['float32'][runs[0][1]]:.4f}). The activation "
                    "ranges do not fit the data: export without int8, or retrain (more epochs, a wider model)"
                )
    calibration = {"split": split, "images": cal.images, "field_samples": len(cal.feeds.get("field", [])),
                   "field_stage_calls": cal.field_stages, "t_range": list(cal.t_range), "merge": MERGE,
                   "recipe": "ai-edge-quantizer static int8 (weights, activations, inputs, outputs)",
                   "weights": "per-channel; FULLY_CONNECTED per-tensor (CMSIS-NN per-channel FC is wrong on the Arduino library)"}
    parity = {"tolerance": DEFAULT_TOLERANCE["int8"], "relative_to": "max(1, max |torch output|)",
              "agreement_min": AGREEMENT_MIN, "reason": INT8_TOLERANCE_REASON}
    return McuInfo(rk_state_bytes(p), calibration, accuracy, parity)

