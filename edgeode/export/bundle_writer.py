"""Build a bundle: export every artifact, pass each through the parity gate, write the manifest.

The bundle is built in a temporary directory beside the destination and renamed into place only
when every artifact has passed, so a failed export (a :class:`~edgeode.errors.ParityError`, a
converter crash, Ctrl-C) leaves nothing at the destination, and ``overwrite`` keeps the old bundle
until the new one is complete.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeode.errors import ConfigError, DataError, ParityError
from edgeode.export.decomp_cache import cached_cia_ops, cached_onnx_registry
from edgeode.export.parity import check_parity, open_gate_session, tolerance_for
from edgeode.export.plan import Job, plan_jobs, prepare
from edgeode.export.record import write_record
from edgeode.export.specs import onnx_specs, tflite_specs
from edgeode.export.tflite_file import compact_tflite_file
from edgeode.fsutil import commit_dir, discard_dir, make_staging_dir
from edgeode.runtime.bundle import sha256_file
from edgeode.runtime.contract import contract_json
from edgeode.runtime.digest import verify_bundle, write_seal
from edgeode.runtime.manifest import (
    MANIFEST_NAME,
    Artifact,
    InputSpec,
    Manifest,
    OutputSpec,
    Preprocess,
    SolverSpec,
    TensorSpec,
)
from edgeode.train.data import Dataset, dataset_for
from edgeode.train.models import ModelConfig, count_parameters

__all__ = ["ExportSource", "BundleBuild", "conversion_session", "export_model", "export_run", "staged_bundle", "check_options",
           "tool_versions", "FORMATS", "QUANTIZATIONS"]

FORMATS = ("onnx", "tflite")
QUANTIZATIONS = ("int8-dynamic", "int8-weight", "float16", "int8")
#: int8 export: calibration images taken from the end of the training split (never the test split)
CALIBRATION_SAMPLES = 256
#: int8 export: held-out (test split) samples on which float32 and int8 accuracy are measured in TFLM
EVAL_SAMPLES = 1000
_TOOLS = ("edgeode", "torch", "onnx", "onnxscript", "onnxruntime", "litert-torch", "ai-edge-litert",
          "ai-edge-quantizer", "tflite-micro", "numpy")


@dataclass
class ExportSource:
    """A trained model and what the bundle must say about its input and output.

    ``samples`` are a few real inputs (test set) for the parity gate; random inputs are added.
    ``calibration`` (images from a split other than the test split) and ``heldout`` (test images and
    labels) are needed for ``int8``: the first calibrates the activation ranges, the second measures
    float32 and int8 accuracy in TensorFlow Lite Micro.
    """

    model: nn.Module
    config: ModelConfig
    input_shape: tuple[int, ...]
    preprocess: dict = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    samples: torch.Tensor | None = None
    info: dict = field(default_factory=dict)
    calibration: torch.Tensor | None = None
    heldout: tuple[torch.Tensor, torch.Tensor] | None = None
    calibration_split: str = "train"


def check_options(formats, tflite_batch, quantize, tolerance) -> tuple[tuple[str, ...], tuple[str, ...]]:
    formats = tuple(dict.fromkeys(formats))
    if not formats:
        raise ConfigError(f"no export format given; choose from {', '.join(FORMATS)}")
    for fmt in formats:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)} (e.g. --formats onnx,tflite)")
    quantize = tuple(dict.fromkeys(quantize))
    for q in quantize:
        if q not in QUANTIZATIONS:
            raise ConfigError(f"unknown quantization {q!r}; choose from {', '.join(QUANTIZATIONS)}")
    if isinstance(tflite_batch, bool) or not isinstance(tflite_batch, int) or tflite_batch < 1:
        raise ConfigError(f"tflite batch must be a positive integer (the fixed batch of the TFLite files), got {tflite_batch!r}")
    if tolerance is not None and not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise ConfigError(f"tolerance must be a positive number (max abs difference from torch), got {tolerance!r}")
    return formats, quantize


def _prepare_destination(out_dir: Path, overwrite: bool) -> Path:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ConfigError(f"bundle destination {out_dir} exists and is not a directory; choose another -o path")
        if any(out_dir.iterdir()) and not overwrite:
            raise ConfigError(f"bundle destination {out_dir} exists and is not empty; pass --overwrite "
                              "(overwrite=True) to replace it, or choose another -o path")
    try:
        return make_staging_dir(out_dir)
    except OSError as exc:
        raise ConfigError(f"cannot write the bundle beside {out_dir} ({exc}); choose a writable -o path") from None


def tool_versions() -> dict:
    from importlib import metadata

    tools = {"python": sys.version.split()[0]}
    for name in _TOOLS:
        try:
            tools[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return tools


def _sample_inputs(source: ExportSource, n_real: int = 4, n_random: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    parts = []
    if source.samples is not None and len(source.samples):
        parts.append(source.samples[:n_real].to(torch.float32))
    parts.append(torch.randn(n_random, *source.input_shape, generator=gen))
    return torch.cat(parts).contiguous()


def _build_artifact(job: Job, tmp: Path, bound_scale: float, timings: dict, skeleton: Manifest | None = None) -> Artifact:
    """Build one file, write the computation-defining record into it (``skeleton``: the manifest without its
    artifacts; None writes none), describe it, and pass it through the parity gate: the file as written, run
    by the runtime's own session for it (onnxruntime, LiteRT, or TFLM with the recorded arena for int8)."""
    path = tmp / job.path
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    job.build(path)
    if job.format == "tflite":  # tensor names (module paths) out: flash no interpreter reads
        compact_tflite_file(path)
    timings[job.path] = round(time.perf_counter() - start, 2)
    if job.format == "onnx":
        inputs, outputs, opset = onnx_specs(path)
    else:  # a full-int8 file lists its tensors in index order, as TFLM addresses them
        inputs, outputs = tflite_specs(path, index_order=job.precision == "int8")
        opset = None
    art = Artifact(path=job.path, role=job.role, format=job.format, precision=job.precision, sha256="0" * 64, size=0,
                   batch=job.batch, inputs=inputs, outputs=outputs, opset=opset, parity_max_abs=0.0, parity_tolerance=0.0)
    if skeleton is not None:
        write_record(path, job.format, contract_json(skeleton, art))
    if job.precision == "int8":  # measured and gated in TensorFlow Lite Micro, the interpreter a board runs
        from edgeode.export.int8 import tflm_info

        art = replace(art, tflm=tflm_info(path))
    session = open_gate_session(path, art)
    try:
        result = check_parity(session, job.cases, bound_scale)
    finally:
        session.close()
    if not result.ok:
        raise ParityError(
            f"parity gate failed for {job.path} (role {job.role}, {job.format}, {job.precision}): the runtime's output "
            f"differs from torch by {result.max_abs:.3g}, more than the tolerance {result.bound:.3g} "
            f"({'; '.join(result.details)}). The converted model is wrong or too imprecise: export without this format "
            "(--formats) or precision, or pass a larger --tolerance if the difference is acceptable"
        )
    return replace(art, sha256=sha256_file(path), size=path.stat().st_size, parity_max_abs=result.max_abs,
                   parity_tolerance=result.bound)


@dataclass
class BundleBuild:
    """A bundle being written in its staging directory ``tmp`` (see :func:`staged_bundle`).

    ``skeleton`` is the manifest without its artifacts (each file records it about itself); ``timings``
    receives each file's build seconds (the dict the skeleton's model section shows).
    """

    tmp: Path
    skeleton: Manifest
    timings: dict
    tolerance: float | None
    bar: Any
    artifacts: list[Artifact] = field(default_factory=list)
    manifest: Manifest | None = None

    def expect(self, files: int) -> None:
        """Announce that the export writes ``files`` files in all, so the progress count says N/files from the
        first one (later :meth:`build` calls would otherwise raise the total as they come: 7/7, then 8/10)."""
        self.bar.total = max(self.bar.total, files)

    def build(self, jobs: list[Job]) -> None:
        """Build, record and gate each of ``jobs`` (each at its precision's tolerance) into the bundle."""
        self.bar.total = max(self.bar.total, len(self.artifacts) + len(jobs))
        for job in jobs:
            self.bar.set_postfix_str(job.path)
            self.artifacts.append(_build_artifact(job, self.tmp, tolerance_for(job.precision, self.tolerance),
                                                  self.timings, self.skeleton))
            self.bar.update()

    def write_manifest(self, manifest: Manifest | None = None) -> Manifest:
        """Write ``manifest`` (default: the skeleton with the files built so far) as the bundle's manifest.json."""
        self.manifest = manifest or replace(self.skeleton, artifacts=tuple(self.artifacts))
        (self.tmp / MANIFEST_NAME).write_text(self.manifest.to_json(), encoding="utf-8")
        return self.manifest


@contextlib.contextmanager
def staged_bundle(out_dir: str | Path, overwrite: bool, skeleton: Manifest, timings: dict,
                  tolerance: float | None = None, progress: bool = True) -> Iterator[BundleBuild]:
    """Write a bundle at ``out_dir`` in a staging directory beside it; the block builds the files
    (:meth:`BundleBuild.build`). When the block ends, the manifest is written (unless the block wrote its
    own), the bundle sealed, read back by the strict reader and renamed into place; if anything fails
    (a parity gate, a converter, Ctrl-C), nothing is left at ``out_dir`` and an old bundle there survives.

    Raises:
        ConfigError: ``out_dir`` is not a directory, is not empty and ``overwrite`` is false, or is unwritable.
    """
    from edgeode.progress import Stages

    out_dir = Path(out_dir).expanduser()
    tmp = _prepare_destination(out_dir, overwrite)
    bar = Stages("export", 0, enabled=progress, unit="file")
    try:
        bundle = BundleBuild(tmp, skeleton, timings, tolerance, bar)
        yield bundle
        bar.close()
        if bundle.manifest is None:
            bundle.write_manifest()
        write_seal(tmp)
        verify_bundle(tmp)  # the strict reader accepts what we wrote: checksums, records, seal
        commit_dir(tmp, out_dir)
    except BaseException:
        bar.close(ok=False)  # the ticker thread and a terminal bar stop with the failed export
        discard_dir(tmp)
        raise


@contextlib.contextmanager
def _torch_threads(n: int):
    """torch's intra-op thread count set to ``n`` for the block (then restored).

    The export runs torch only on a few samples (parity references, tracing): one thread is enough, and
    it keeps the export fast when the cores are busy. Measured on the shared 2-core Xeon at load 9.8:
    one field call of the MNIST ODE-Net at batch 7 took 3.0 ms with one thread, 47 ms with two (OpenMP
    threads spinning against other processes).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def conversion_session(fn):
    """What every exporter runs its conversions under: torch on one thread (:func:`_torch_threads`), one scan
    of torch's op registry and one ONNX torchlib translation table for all the files of the export
    (:mod:`edgeode.export.decomp_cache`)."""
    return _torch_threads(1)(cached_cia_ops()(cached_onnx_registry()(fn)))


@conversion_session
def export_model(source: ExportSource, out_dir: str | Path, formats: tuple[str, ...] = FORMATS, tflite_batch: int = 1,
                 quantize: tuple[str, ...] = (), tolerance: float | None = None, progress: bool = True,
                 overwrite: bool = False) -> Manifest:
    """Export ``source.model`` to a bundle at ``out_dir`` and return its manifest.

    Raises:
        ConfigError: bad option, or ``out_dir`` is not empty and ``overwrite`` is false.
        ExportError: a converter failed. ParityError: an artifact disagrees with torch.
    """
    formats, quantize = check_options(formats, tflite_batch, quantize, tolerance)
    if quantize:
        from edgeode.export.quantize import check_quantize

        check_quantize(quantize, formats)
    if "int8" in quantize and source.config.arch == "spiral":
        raise ConfigError("--quantize int8 makes full-integer classifiers for microcontrollers (encoder, field, head "
                          "in TensorFlow Lite Micro); a dynamics model's trajectory has no int8 path: export it in "
                          "float32, or with --quantize float16 / int8-dynamic")
    if "int8" in quantize and (source.calibration is None or source.heldout is None):
        raise ConfigError("--quantize int8 needs calibration images and a labelled held-out split (the run's data set); "
                          "it could not be loaded: give the data where the run recorded it (MNIST: --data-path)")
    out_dir = Path(out_dir).expanduser()
    cfg = source.config
    with torch.no_grad():
        prepared = prepare(source.model, cfg.arch, _sample_inputs(source))
    jobs = plan_jobs(prepared, formats, tflite_batch)
    timings: dict[str, float] = {}
    skeleton = _manifest(source, prepared, timings)  # what every file records about itself
    with staged_bundle(out_dir, overwrite, skeleton, timings, tolerance, progress) as bundle:
        from edgeode.export.int8 import int8_sources
        from edgeode.export.quantize import quantized_jobs

        bundle.expect(len(jobs) + len(quantized_jobs(jobs, quantize, bundle.tmp))
                      + (len(int8_sources(jobs)) if "int8" in quantize else 0))
        bundle.build(jobs)
        if quantize:
            bundle.build(quantized_jobs(jobs, quantize, bundle.tmp))
        calibration = None
        if "int8" in quantize:
            from edgeode.export.int8 import calibration_sets, int8_jobs

            calibration = calibration_sets(prepared, source.calibration, tflite_batch)
            bundle.build(int8_jobs(jobs, prepared, calibration, source.heldout[0][:8], bundle.tmp))
        manifest = bundle.write_manifest()
        if calibration is not None:  # accuracy through the runtime's tflm backend, on the bundle as written
            from edgeode.export.int8 import mcu_info

            manifest = bundle.write_manifest(replace(manifest, mcu=mcu_info(
                bundle.tmp, manifest, prepared, calibration, source.heldout, source.calibration_split)))
    return manifest


def _manifest(source: ExportSource, p, timings: dict) -> Manifest:
    cfg = source.config
    model_info = {
        "arch": cfg.arch,
        "parameters": count_parameters(source.model),
        "config": cfg.to_dict(),
        **source.info,
        "export": {"seconds": timings, "time_channel_rewrites": p.rewrites, "rewrite_max_abs": p.rewrite_max_abs},
    }
    pre = Preprocess.from_dict(source.preprocess, "input.preprocess") if source.preprocess else Preprocess()
    if p.kind == "dynamics":
        inp = InputSpec(TensorSpec("y0", (None, *source.input_shape)), pre)
        out = OutputSpec(TensorSpec("states", (p.steps + 1, None, *source.input_shape)), None)
    else:
        inp = InputSpec(TensorSpec("x", (None, *source.input_shape)), pre)
        out = OutputSpec(TensorSpec("logits", (None, cfg.num_classes)),
                         tuple(source.labels) if source.labels else tuple(str(i) for i in range(cfg.num_classes)))
    solver = None
    if p.tableau is not None:
        solver = SolverSpec(p.tableau, p.t0, p.t1, p.steps, (None, *p.state_shape))
    return Manifest(kind=p.kind, model=model_info, input=inp, output=out, solver=solver, artifacts=(),
                    tools=tool_versions(), created=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def export_run(run_dir: str | Path, out_dir: str | Path, formats: tuple[str, ...] = FORMATS, tflite_batch: int = 1,
               quantize: tuple[str, ...] = (), tolerance: float | None = None, progress: bool = True,
               overwrite: bool = False, data: Dataset | None = None) -> Manifest:
    """Export a trained run directory (``edgeode train -o RUN_DIR``) to a checked bundle at ``out_dir``.

    Real test samples for the parity gate come from the run's data set when it can be loaded
    (MNIST needs its files at the recorded path); random inputs are used in any case. ``data``: that
    data set already loaded by the caller (quickstart, compare), so it is not loaded again.
    """
    from edgeode.train.checkpoint import load_run

    run = load_run(run_dir)
    info = run.dataset_info or {}
    samples = None
    labels = list(info.get("labels") or [])
    preprocess = dict(info.get("preprocess") or {})
    input_shape = tuple(info.get("input_shape") or ())
    calibration = heldout = None
    try:
        data = dataset_for(run.config.data, run.config.data_path, run.config.seed, data)
        samples = data.x_test[:4]
        calibration = data.x_train[-CALIBRATION_SAMPLES:]
        heldout = (data.x_test[:EVAL_SAMPLES], data.y_test[:EVAL_SAMPLES])
        labels = labels or list(data.labels)
        preprocess = preprocess or dict(data.preprocess)
        input_shape = input_shape or tuple(data.input_shape)
    except DataError as exc:
        print(f"edgeode export: warning: data set {run.config.data!r} not available ({exc}); "
              "the parity gate uses random inputs only", file=sys.stderr)
    if not input_shape:
        from edgeode.train.trainer import expected_input_shape

        input_shape = expected_input_shape(run.config.model)
    source = ExportSource(run.model, run.config.model, input_shape, preprocess, labels, samples,
                          {"data": run.config.data, "metrics": run.metrics}, calibration, heldout,
                          f"train[-{CALIBRATION_SAMPLES}:]")
    return export_model(source, out_dir, formats, tflite_batch, quantize, tolerance, progress, overwrite)
