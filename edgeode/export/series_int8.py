"""Full-int8 field, cell and head of an ODE-RNN series bundle, for a microcontroller (``--quantize int8``).

The project's int8 path (:mod:`edgeode.export.int8`) on the three float32 TFLite files of a series bundle:
each file quantized by :func:`~edgeode.export.int8.quantize_int8` (ai-edge-quantizer, static int8, min-max
merge, per-tensor FULLY_CONNECTED weights), calibrated on the states the torch model reaches while reading
the run's *training* series (never the test subjects), gated in TensorFlow Lite Micro on held-out states
at the int8 tolerance, and the arena of each measured in TFLM (:func:`~edgeode.export.int8.tflm_info`, by
the bundle writer). Then the bundle as written is run as a user would (``SeriesModel`` on the ``tflm``
backend, float32 and int8 files) over the held-out series: their accuracies and agreement go into the
manifest's ``mcu`` section, which ``edgeode profile BUNDLE --device nano-33-ble-sense`` reports with the
fit (:func:`edgeode.firmware.fit.mcu_fit`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from edgeode.export.int8 import AGREEMENT_MIN, FIELD_SAMPLES, MERGE, int8_sources, quantize_int8
from edgeode.export.parity import ParityCase
from edgeode.export.plan import Job
from edgeode.runtime.manifest import Manifest, McuInfo
from edgeode.train.series_models import ODERNN

__all__ = ["CALIBRATION_SERIES", "SeriesCalibration", "series_calibration", "series_int8_jobs", "series_mcu_info"]

#: Why the series int8 files pass at the ODE-Net's int8 tolerance, and what decides (the manifest says it).
SERIES_INT8_TOLERANCE_REASON = (
    "the int8 tolerance of the ODE-Net files (edgeode.export.parity.INT8_TOLERANCE_REASON); on the 8-epoch watch "
    "ODE-RNN (--drop 0.5) the int8 field, cell and head measured max abs error 0.030 / 0.055 / 0.057 against "
    "tolerances 0.5 / 1.6 / 3.0 (2-core AMD EPYC, 2026-12-04). What decides is the agreement gate: the int8 "
    "classes of the held-out series, run in TFLM, must agree with float32 on agreement_min of them")

#: training series whose hidden states calibrate the int8 files (every observation's state)
CALIBRATION_SERIES = 32


@dataclass
class SeriesCalibration:
    """Calibration feeds per role (one dict per TFLM invocation, batch 1) and where they came from."""

    feeds: dict[str, list[dict[str, np.ndarray]]]
    series: int
    states: int


def series_calibration(model: ODERNN, train: list) -> SeriesCalibration:
    """The calibration of ``model``'s int8 files: the states it reaches on the first :data:`CALIBRATION_SERIES`
    training series (before and after each observation's update) and their samples."""
    from edgeode.export.series_export import hidden_states

    series = train[:CALIBRATION_SERIES]
    h, x = hidden_states(model, series)
    with torch.no_grad():
        h_next = model.cell(x, h)
    h, x, h_next = (np.ascontiguousarray(t.numpy().astype(np.float32)) for t in (h, x, h_next))
    # the field sees the states after an update (a solve starts there) and before the next (it ends there)
    states = np.concatenate([h, h_next])
    stride = max(1, math.ceil(len(states) / FIELD_SAMPLES))
    feeds = {"field": [{"h": states[i:i + 1]} for i in range(0, len(states), stride)],
             "cell": [{"x": x[i:i + 1], "h": h[i:i + 1]} for i in range(len(h))],
             "head": [{"h": h_next[i:i + 1]} for i in range(len(h_next))]}
    return SeriesCalibration(feeds, len(series), len(h))


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().numpy().astype(np.float32))


def _cases(model: ODERNN, role: str, h: torch.Tensor, x: torch.Tensor) -> list[ParityCase]:
    """Torch outputs on real held-out states only (random inputs fall outside the calibrated ranges)."""
    with torch.no_grad():
        h_next = model.cell(x, h)
        if role == "field":
            return [ParityCase({"h": _np(h)}, _np(model.field(h)), ("h",))]
        if role == "head":
            return [ParityCase({"h": _np(h_next)}, _np(model.head(h_next)), ("h",))]
        return [ParityCase({"x": _np(x[i:i + 1]), "h": _np(h[i:i + 1])}, _np(h_next[i:i + 1]), ("h",))
                for i in range(0, len(h), max(1, len(h) // 16))]


def series_int8_jobs(jobs: list[Job], model: ODERNN, cal: SeriesCalibration, h: torch.Tensor, x: torch.Tensor,
                     bundle: Path) -> list[Job]:
    """One full-int8 job per float32 TFLite field / cell / head job of ``jobs`` (from the file in ``bundle``);
    ``h``, ``x``: held-out states and samples for the gate."""
    out = []
    for job in int8_sources(jobs, tuple(cal.feeds)):

        def build(path: Path, _source: Path = bundle / job.path, _feeds=cal.feeds[job.role]) -> None:
            quantize_int8(_source, path, _feeds)

        stem = job.path.rsplit(".", 1)[0]
        out.append(replace(job, path=f"{stem}.int8.tflite", build=build, precision="int8",
                           cases=_cases(model, job.role, h, x)))
    return out


def series_mcu_info(bundle_dir: Path, manifest: Manifest, model: ODERNN, cal: SeriesCalibration, data) -> McuInfo:
    """Accuracy of the float32 and int8 files on the held-out series ``data.test``, run by ``SeriesModel`` on
    the ``tflm`` backend over the bundle written so far; torch's beside them.

    Raises:
        ParityError: the int8 build agrees with the float32 one on fewer than ``AGREEMENT_MIN`` of the series.
    """
    from edgeode.errors import ParityError
    from edgeode.export.parity import DEFAULT_TOLERANCE
    from edgeode.runtime import read_bundle
    from edgeode.runtime.series import SeriesModel
    from edgeode.train.series_models import make_batch

    series = data.test
    labels = np.array([s.label for s in series])
    with torch.no_grad():
        torch_pred = np.array([int(model(make_batch([s], model.cfg.max_step))[0].argmax()) for s in series])
    preds = {}
    for precision in ("float32", "int8"):
        with SeriesModel(read_bundle(bundle_dir), "tflm", precision=precision) as m:
            preds[precision] = np.array([int(m.predict_series(s.times, data.raw(s)).argmax()) for s in series])
    agree = float((preds["int8"] == preds["float32"]).mean())
    accuracy = {"split": "test", "samples": len(series), "unit": "series",
                "interpreter": f"tflite-micro {manifest.tools.get('tflite-micro', 'unknown')} (host)",
                "float32_torch": round(float((torch_pred == labels).mean()), 4),
                "float32": {"loop": round(float((preds["float32"] == labels).mean()), 4)},
                "int8": {"loop": round(float((preds["int8"] == labels).mean()), 4)},
                "agreement_with_float32": {"loop": round(agree, 4)}}
    if agree < AGREEMENT_MIN:
        raise ParityError(
            f"the int8 series build (run in TFLM) agrees with the float32 build on only {agree:.1%} of {len(series)} "
            f"held-out series (at least {AGREEMENT_MIN:.0%} required; int8 accuracy {accuracy['int8']['loop']:.4f}, "
            f"float32 {accuracy['float32']['loop']:.4f}): the hidden state's int8 rounding compounds over the "
            "observations. Export without --quantize int8, or retrain (more epochs, a wider model)")
    calibration = {"split": "train", "series": cal.series, "states": cal.states,
                   "field_samples": len(cal.feeds["field"]), "merge": MERGE,
                   "recipe": "ai-edge-quantizer static int8 (weights, activations, inputs, outputs)",
                   "weights": "per-channel; FULLY_CONNECTED per-tensor (CMSIS-NN per-channel FC is wrong on the Arduino library)"}
    parity = {"tolerance": DEFAULT_TOLERANCE["int8"], "relative_to": "max(1, max |torch output|)",
              "agreement_min": AGREEMENT_MIN, "reason": SERIES_INT8_TOLERANCE_REASON}
    rk_state = (manifest.solver.tableau.stages + 2) * model.cfg.hidden * 4
    return McuInfo(rk_state, calibration, accuracy, parity)
