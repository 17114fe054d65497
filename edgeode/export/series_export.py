"""A trained ODE-RNN run -> a streaming series bundle: ``field``, ``cell`` and ``head`` files, each gated.

The three parts of :class:`edgeode.train.series_models.ODERNN` become separate files, because a device
runs them at different moments: the field f(h) (``h -> dh``) between observations, as many times as the
gap needs (the runtime's :class:`~edgeode.runtime.loop.FieldLoop`), the GRU cell (``x, h -> h``) once
per observation, the head (``h -> logits``) when a class is asked for. Beside them the ONNX ``observe`` file
(``x, h, dt, steps -> h_new``, :func:`edgeode.export.fused_onnx.build_fused_observe`) holds the solve across
one gap and the GRU update as one graph: one backend call per observation. Each file, ONNX (dynamic batch)
and TFLite (fixed batch 1, a device's one stream), passes the parity gate of
:mod:`edgeode.export.parity` on hidden states of real held-out series (the states the torch model
reaches while reading them) and on random ones. The manifest (kind ``series``) states the channels,
their normalisation, the maximum step and the tableau (:class:`~edgeode.runtime.manifest.SeriesSpec`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgeode.errors import ConfigError, DataError
from edgeode.export.bundle_writer import check_options, conversion_session, staged_bundle, tool_versions
from edgeode.export.parity import ParityCase
from edgeode.export.plan import Job
from edgeode.runtime.manifest import (
    InputSpec,
    Manifest,
    OutputSpec,
    SeriesSpec,
    SolverSpec,
    TensorSpec,
)
from edgeode.train.series_models import ODERNN, make_batch
from edgeode.train.series_trainer import SeriesRun, load_series_run

__all__ = ["export_series_run", "hidden_states"]

#: Held-out series whose hidden states feed the parity gate (all of their states, one per observation).
GATE_SERIES = 4


class _Cell(nn.Module):
    def __init__(self, cell: nn.GRUCell):
        super().__init__()
        self.cell = cell

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.cell(x, h)


def hidden_states(model: ODERNN, series) -> tuple[torch.Tensor, torch.Tensor]:
    """(the state before each observation, that observation's values) over ``series``, stacked: [N, H], [N, C]."""
    hs, xs = [], []
    with torch.no_grad():
        for s in series:
            b = make_batch([s], model.cfg.max_step)
            h = torch.zeros(1, model.cfg.hidden)
            for k in range(len(s)):
                h = model.evolve(h, b.gaps[:, k], b.steps[:, k])
                hs.append(h[0])
                xs.append(b.values[0, k])
                h = model.cell(b.values[:, k], h)
    return torch.stack(hs), torch.stack(xs)


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().numpy().astype(np.float32))


def _jobs(model: ODERNN, h: torch.Tensor, x: torch.Tensor, formats: tuple[str, ...]) -> list[Job]:
    from edgeode.export.onnx_export import export_onnx

    cell = _Cell(model.cell).eval()
    with torch.no_grad():
        dh, h_new, logits = model.field(h), cell(x, h), model.head(h)
    field_case = [ParityCase({"h": _np(h)}, _np(dh), ("h",))]
    head_case = [ParityCase({"h": _np(h)}, _np(logits), ("h",))]
    # the cell has two batched inputs: one case per row, each fed whole (a fixed-batch-1 file takes them as they are)
    cell_cases = [ParityCase({"x": _np(x[i:i + 1]), "h": _np(h[i:i + 1])}, _np(h_new[i:i + 1]), ("h",))
                  for i in range(0, len(h), max(1, len(h) // 16))]
    h2, x2 = h[:2].contiguous(), x[:2].contiguous()
    export_field = lambda p: export_onnx(model.field, (h2,), ["h"], ["dh"], p, ("h",))  # noqa: E731
    export_cell = lambda p: export_onnx(cell, (x2, h2), ["x", "h"], ["h_new"], p, ("x", "h"))  # noqa: E731
    jobs = []
    if "onnx" in formats:
        jobs += [
            Job("field", "onnx", "onnx/field.onnx", export_field, field_case, None),
            Job("cell", "onnx", "onnx/cell.onnx", export_cell, cell_cases, None),
            Job("head", "onnx", "onnx/head.onnx",
                lambda p: export_onnx(model.head, (h2,), ["h"], ["logits"], p, ("h",)), head_case, None),
            Job("observe", "onnx", "onnx/observe.onnx", _observe_builder(model, export_field, export_cell),
                _observe_cases(model, cell, h, x), None),
        ]
    if "tflite" in formats:
        from edgeode.export.tflite_export import convert_tflite

        h1, x1 = h[:1].contiguous(), x[:1].contiguous()
        jobs += [
            Job("field", "tflite", "tflite/field.tflite",
                lambda p: convert_tflite(model.field, {"h": h1}, "dh", p), field_case, 1),
            Job("cell", "tflite", "tflite/cell.tflite",
                lambda p: convert_tflite(cell, {"x": x1, "h": h1}, "h_new", p), cell_cases, 1),
            Job("head", "tflite", "tflite/head.tflite",
                lambda p: convert_tflite(model.head, {"h": h1}, "logits", p), head_case, 1),
        ]
    return jobs


#: (steps, step as a fraction of max_step) of the observe file's parity cases: the first observation (no
#: solve), one step, and several shorter ones
OBSERVE_CASES = ((0, 1.0), (1, 1.0), (3, 0.7))


def _observe_cases(model: ODERNN, cell: nn.Module, h: torch.Tensor, x: torch.Tensor) -> list[ParityCase]:
    """Torch's ``evolve`` (the training code) then the cell, on every state, for each of :data:`OBSERVE_CASES`."""
    cases = []
    for steps, fraction in OBSERVE_CASES:
        dt = np.float32(fraction * model.cfg.max_step)
        n = torch.full((len(h),), steps, dtype=torch.int64)
        with torch.no_grad():
            ref = cell(x, model.evolve(h, torch.full((len(h),), float(dt) * steps, dtype=torch.float64), n))
        cases.append(ParityCase({"x": _np(x), "h": _np(h), "dt": np.array(dt, np.float32),
                                 "steps": np.array(steps, np.int64)}, _np(ref), ("h",)))
    return cases


def _observe_builder(model: ODERNN, export_field, export_cell):
    """The fused observe graph from the field and cell ONNX files beside it (they passed the gate), else fresh ones."""
    def build(path: Path) -> None:
        import tempfile

        from edgeode.export.fused_onnx import build_fused_observe
        from edgeode.export.plan import _part, _save

        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            field = _part(path, Path(tmp), "field.onnx", export_field)
            cell = _part(path, Path(tmp), "cell.onnx", export_cell)
            _save(build_fused_observe(field, cell, model.tableau), path)
    return build


def _manifest(run: SeriesRun, timings: dict) -> Manifest:
    cfg = run.config.model
    info = run.dataset_info
    spec = SeriesSpec(tuple(info["channels"]), tuple(info["mean"]), tuple(info["std"]), float(cfg.max_step), cfg.hidden)
    from edgeode.tableaus import get_tableau

    return Manifest(
        kind="series",
        model={"arch": cfg.arch, "parameters": sum(p.numel() for p in run.model.parameters()),
               "config": run.config.to_dict(), "data": run.config.data, "metrics": run.metrics,
               "export": {"seconds": timings}},
        input=InputSpec(TensorSpec("x", (None, cfg.channels))),
        output=OutputSpec(TensorSpec("logits", (None, cfg.num_classes)), tuple(info["labels"])),
        # one step of max_step: (t1 - t0) / steps is the largest step the device takes across a gap
        solver=SolverSpec(get_tableau(cfg.solver), 0.0, float(cfg.max_step), 1, (None, cfg.hidden)),
        artifacts=(), tools=tool_versions(), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        series=spec,
    )


@conversion_session  # the same conversion settings and caches as export_model
def export_series_run(run_dir: str | Path, out_dir: str | Path, formats: tuple[str, ...] = ("onnx", "tflite"),
                      tolerance: float | None = None, progress: bool = True, overwrite: bool = False,
                      quantize: tuple[str, ...] = ()) -> Manifest:
    """Export the ODE-RNN run ``run_dir`` (``edgeode train --model odernn``) to a checked bundle at ``out_dir``.

    Raises:
        ConfigError: a baseline run (only the ODE-RNN streams), a quantization other than int8, bad options.
        ParityError: a file disagrees with torch. ExportError: a converter failed.
    """
    formats, quantize = check_options(formats, 1, quantize, tolerance)
    if set(quantize) - {"int8"}:
        raise ConfigError(f"--quantize {','.join(quantize)}: a series bundle is float32, or full int8 for a "
                          "microcontroller (--quantize int8); export with one of those")
    if quantize and "tflite" not in formats:
        raise ConfigError("--quantize int8 quantizes the TFLite field, cell and head: add tflite to --formats")
    run = load_series_run(run_dir)
    if not isinstance(run.model, ODERNN):
        raise ConfigError(f"{run_dir} is a {run.config.model.arch} baseline; only the ODE-RNN exports to a streaming "
                          "bundle (train one with --model odernn)")
    rng = torch.Generator().manual_seed(0)
    try:
        data = run.config.load_data()
        h_real, x_real = hidden_states(run.model, data.test[:GATE_SERIES])
    except DataError as exc:
        if quantize:
            raise ConfigError(f"--quantize int8 calibrates on the run's training series and measures accuracy on its "
                              f"held-out ones, but its data could not be loaded ({exc})") from None
        data = None
        h_real, x_real = torch.zeros(0, run.config.model.hidden), torch.zeros(0, run.config.model.channels)
    h = torch.cat([h_real, torch.randn(8, run.config.model.hidden, generator=rng)])
    x = torch.cat([x_real, torch.randn(8, run.config.model.channels, generator=rng)])
    timings: dict[str, float] = {}
    skeleton = _manifest(run, timings)
    jobs = _jobs(run.model, h, x, formats)
    with staged_bundle(out_dir, overwrite, skeleton, timings, tolerance, progress) as bundle:
        if quantize:
            from edgeode.export.int8 import int8_sources
            from edgeode.runtime.series import SERIES_ROLES

            bundle.expect(len(jobs) + len(int8_sources(jobs, SERIES_ROLES)))
        bundle.build(jobs)
        if quantize:
            from edgeode.export.series_int8 import series_calibration, series_int8_jobs, series_mcu_info

            cal = series_calibration(run.model, data.train)
            bundle.build(series_int8_jobs(jobs, run.model, cal, h_real, x_real, bundle.tmp))
            manifest = bundle.write_manifest()
            bundle.write_manifest(replace(manifest, mcu=series_mcu_info(bundle.tmp, manifest, run.model, cal, data)))
    return bundle.manifest
