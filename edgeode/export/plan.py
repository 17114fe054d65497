"""Which artifacts a model gets, how each is built, and the torch outputs each must reproduce.

A :class:`Job` is one file of the bundle: role, format, path, a ``build`` function writing the file,
and the parity cases (inputs + torch outputs) the gate runs it on.

* ODE-Net / RK-Net (``classifier`` with a solver): ``encoder``, ``field``, ``head`` (the device's
  own solver loop, "loop" mode) and ``fused`` (the whole model, solve included).
* ResNet / VGG: one ``model``.
* Spiral (``dynamics``): ``field`` and ``fused`` (y0 -> the whole trajectory).

The vector field is exported after the time-channel rewrite (:mod:`edgeode.export.rewrite`);
torch references come from the original model, so the gate checks the rewrite too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgeode.export.modules import Field, UnrolledTrajectory
from edgeode.export.parity import ParityCase
from edgeode.train.solver import solve

__all__ = ["Job", "Prepared", "prepare", "plan_jobs"]


@dataclass
class Job:
    """One artifact to build and check."""

    role: str
    format: str
    path: str  # relative to the bundle
    build: Callable[[Path], None]
    cases: list[ParityCase]
    batch: int | None
    precision: str = "float32"


@dataclass
class Prepared:
    """The model split into its export modules, with the sample inputs and torch outputs."""

    kind: str  # classifier | dynamics
    arch: str
    model: nn.Module
    x: torch.Tensor  # sample inputs [N, ...]: real test samples first, then random ones
    encoder: nn.Module | None = None
    field: nn.Module | None = None  # rewritten field
    head: nn.Module | None = None
    tableau: object = None
    t0: float = 0.0
    t1: float = 1.0
    steps: int = 1
    state_shape: tuple[int, ...] = ()
    rewrites: int = 0
    rewrite_max_abs: float = 0.0
    refs: dict = dc_field(default_factory=dict)


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy())


def prepare(model: nn.Module, arch: str, x: torch.Tensor) -> Prepared:
    """Split ``model`` into export modules and compute the torch references on ``x``."""
    from edgeode.export.rewrite import max_rewrite_error, rewrite_time_channel

    model = model.eval()
    with torch.no_grad():
        if arch in ("resnet", "vgg"):
            p = Prepared("classifier", arch, model, x)
            p.refs["logits"] = model(x)
            return p
        block = model.block
        p = Prepared("dynamics" if arch == "spiral" else "classifier", arch, model, x,
                     tableau=block.tableau, t0=block.t0, t1=block.t1, steps=block.steps)
        h0 = x if arch == "spiral" else model.encoder(x)
        p.state_shape = tuple(h0.shape[1:])
        rewritten, p.rewrites = rewrite_time_channel(block.field, tuple(h0.shape))
        p.field = Field(rewritten).eval()
        mid = 0.5 * (p.t0 + p.t1)
        p.rewrite_max_abs = max_rewrite_error(block.field, rewritten, h0, (p.t0, mid, p.t1))
        p.refs["h0"] = h0
        p.refs["field_t"] = [p.t0, mid]
        p.refs["field"] = [block.field(torch.tensor(t, dtype=h0.dtype), h0) for t in p.refs["field_t"]]
        if arch == "spiral":
            p.refs["states"] = solve(block.field, h0, block.tableau, p.t0, p.t1, p.steps, trajectory=True)
            p.refs["states_alt"] = solve(block.field, h0, block.tableau, p.t0, p.t1, p.steps + 3, trajectory=True)
        else:
            p.encoder, p.head = model.encoder.eval(), model.head.eval()
            hT = solve(block.field, h0, block.tableau, p.t0, p.t1, p.steps)
            p.refs["hT"] = hT
            p.refs["head"] = model.head(hT)
            p.refs["logits"] = model(x)
            alt = solve(block.field, h0, block.tableau, p.t0, p.t1, p.steps + 3)
            p.refs["logits_alt"] = model.head(alt)
    return p


def _field_cases(p: Prepared) -> list[ParityCase]:
    h0 = _np(p.refs["h0"])
    return [ParityCase({"t": np.array(t, np.float32), "h": h0}, _np(ref), ("h",))
            for t, ref in zip(p.refs["field_t"], p.refs["field"], strict=True)]


def plan_jobs(p: Prepared, formats: tuple[str, ...], tflite_batch: int) -> list[Job]:
    """The float32 artifacts of ``p`` in the given formats, in build order."""
    from edgeode.export.onnx_export import export_onnx

    x = p.x
    jobs: list[Job] = []
    xb = x[:2].contiguous()  # ONNX export sample: batch >= 2 keeps the batch dim symbolic
    tb = tflite_batch
    if "onnx" in formats:
        if p.arch in ("resnet", "vgg"):
            jobs.append(Job("model", "onnx", "onnx/model.onnx",
                            lambda path: export_onnx(p.model, (xb,), ["x"], ["logits"], path, ("x",)),
                            [ParityCase({"x": _np(x)}, _np(p.refs["logits"]), ("x",))], None))
        else:
            h0 = p.refs["h0"][:2].contiguous()
            jobs.append(Job("field", "onnx", "onnx/field.onnx",
                            lambda path: export_onnx(p.field, (torch.tensor(p.t0), h0), ["t", "h"], ["dh"], path, ("h",)),
                            _field_cases(p), None))
            if p.kind == "dynamics":
                jobs.append(Job("fused", "onnx", "onnx/fused.onnx", _fused_trajectory_builder(p), [
                    ParityCase({"y0": _np(x)}, _np(p.refs["states"]), ("y0",), out_batch_axis=1),
                    ParityCase({"y0": _np(x), "steps": np.array(p.steps + 3, np.int64)}, _np(p.refs["states_alt"]),
                               ("y0",), out_batch_axis=1),
                ], None))
            else:
                hT = p.refs["hT"][:2].contiguous()
                jobs.append(Job("encoder", "onnx", "onnx/encoder.onnx",
                                lambda path: export_onnx(p.encoder, (xb,), ["x"], ["h"], path, ("x",)),
                                [ParityCase({"x": _np(x)}, _np(p.refs["h0"]), ("x",))], None))
                jobs.append(Job("head", "onnx", "onnx/head.onnx",
                                lambda path: export_onnx(p.head, (hT,), ["h"], ["logits"], path, ("h",)),
                                [ParityCase({"h": _np(p.refs["hT"])}, _np(p.refs["head"]), ("h",))], None))
                jobs.append(Job("fused", "onnx", "onnx/fused.onnx", _fused_classifier_builder(p), [
                    ParityCase({"x": _np(x)}, _np(p.refs["logits"]), ("x",)),
                    ParityCase({"x": _np(x), "steps": np.array(p.steps + 3, np.int64)}, _np(p.refs["logits_alt"]), ("x",)),
                ], None))
    if "tflite" in formats:
        from edgeode.export.tflite_export import convert_tflite

        xt = x[:1].expand(tb, *x.shape[1:]).contiguous()
        if p.arch in ("resnet", "vgg"):
            jobs.append(Job("model", "tflite", "tflite/model.tflite",
                            lambda path: convert_tflite(p.model, {"x": xt}, "logits", path),
                            [ParityCase({"x": _np(x)}, _np(p.refs["logits"]), ("x",))], tb))
        else:
            h0 = p.refs["h0"][:1].expand(tb, *p.state_shape).contiguous()
            jobs.append(Job("field", "tflite", "tflite/field.tflite",
                            lambda path: convert_tflite(p.field, {"t": torch.tensor(p.t0), "h": h0}, "dh", path),
                            _field_cases(p), tb))
            if p.kind == "dynamics":
                traj = UnrolledTrajectory(p.field, p.tableau, p.t0, p.t1, p.steps).eval()
                jobs.append(Job("fused", "tflite", "tflite/fused.tflite",
                                lambda path: convert_tflite(traj, {"y0": h0}, "states", path),
                                [ParityCase({"y0": _np(x)}, _np(p.refs["states"]), ("y0",), out_batch_axis=1)],
                                tb))
            else:
                hT = p.refs["hT"][:1].expand(tb, *p.state_shape).contiguous()
                jobs.append(Job("encoder", "tflite", "tflite/encoder.tflite",
                                lambda path: convert_tflite(p.encoder, {"x": xt}, "h", path),
                                [ParityCase({"x": _np(x)}, _np(p.refs["h0"]), ("x",))], tb))
                jobs.append(Job("head", "tflite", "tflite/head.tflite",
                                lambda path: convert_tflite(p.head, {"h": hT}, "logits", path),
                                [ParityCase({"h": _np(p.refs["hT"])}, _np(p.refs["head"]), ("h",))], tb))
                jobs.append(Job("fused", "tflite", "tflite/fused.tflite", _fused_tflite_builder(p, xt, h0, hT),
                                [ParityCase({"x": _np(x)}, _np(p.refs["logits"]), ("x",))], tb))
    return jobs


def _part(path: Path, tmp: Path, name: str, export: Callable[[Path], object]):
    """The split ONNX part ``name`` beside ``path`` if already built (it passed the gate), else a fresh export."""
    from edgeode.export.onnx_export import load_inlined

    sibling = path.parent / name
    if not sibling.is_file():
        sibling = tmp / name
        export(sibling)
    return load_inlined(sibling)


def _fused_tflite_builder(p: Prepared, xt: torch.Tensor, h0: torch.Tensor, hT: torch.Tensor) -> Callable[[Path], None]:
    """The fused TFLite file stitched from the encoder, field and head files (:mod:`edgeode.export.fused_tflite`):
    the ones beside ``path`` when already built (they passed the gate), else fresh conversions."""
    def build(path: Path) -> None:
        import tempfile

        from edgeode.export.fused_tflite import fused_classifier_tflite
        from edgeode.export.tflite_export import convert_tflite

        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            tmp = Path(tmp)
            parts = {"encoder.tflite": lambda f: convert_tflite(p.encoder, {"x": xt}, "h", f),
                     "field.tflite": lambda f: convert_tflite(p.field, {"t": torch.tensor(p.t0), "h": h0}, "dh", f),
                     "head.tflite": lambda f: convert_tflite(p.head, {"h": hT}, "logits", f)}
            files = []
            for name, convert in parts.items():
                sibling = path.parent / name
                if not sibling.is_file():
                    sibling = tmp / name
                    convert(sibling)
                files.append(sibling)
            fused_classifier_tflite(*files, p.tableau, p.t0, p.t1, p.steps, path)
    return build


def _fused_classifier_builder(p: Prepared) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        import tempfile

        from edgeode.export.fused_onnx import build_fused_classifier
        from edgeode.export.onnx_export import export_onnx

        x2 = p.x[:2].contiguous()
        h0 = p.refs["h0"][:2].contiguous()
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            tmp = Path(tmp)
            enc = _part(path, tmp, "encoder.onnx", lambda f: export_onnx(p.encoder, (x2,), ["x"], ["h"], f, ("x",)))
            fld = _part(path, tmp, "field.onnx",
                        lambda f: export_onnx(p.field, (torch.tensor(p.t0), h0), ["t", "h"], ["dh"], f, ("h",)))
            head = _part(path, tmp, "head.onnx", lambda f: export_onnx(p.head, (h0,), ["h"], ["logits"], f, ("h",)))
            _save(build_fused_classifier(enc, fld, head, p.tableau, p.t0, p.t1, p.steps), path)
    return build


def _fused_trajectory_builder(p: Prepared) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        import tempfile

        from edgeode.export.fused_onnx import build_fused_trajectory
        from edgeode.export.onnx_export import export_onnx

        h0 = p.refs["h0"][:2].contiguous()
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            fld = _part(path, Path(tmp), "field.onnx",
                        lambda f: export_onnx(p.field, (torch.tensor(p.t0), h0), ["t", "h"], ["dh"], f, ("h",)))
            _save(build_fused_trajectory(fld, p.tableau, p.t0, p.t1, p.steps, p.state_shape[0]), path)
    return build


def _save(model, path: Path) -> None:
    import os

    import onnx

    tmp = path.with_name(path.name + ".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
