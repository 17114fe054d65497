"""``edgeode tune --apply -o BUNDLE``: a copy of the bundle that runs the chosen configuration by default.

The copy has every file of the source bundle and a manifest with a ``tuned`` record
(:class:`~edgeode.runtime.manifest.TunedSpec`: tableau, steps, precision, mode and the accuracy tune
measured for them), which :func:`edgeode.runtime.load` honours when the caller asks for no solve of its
own. The solver the files were built with stays as it was: the files' contract records
(:mod:`edgeode.runtime.contract`) still match, and no fused file is re-exported (the float fused
TFLite file is a WHILE loop with its steps fixed at export, the int8 one an unrolled solve; the fused
ONNX graph takes the steps as an input): where the fused file cannot run the tuned solve the record
says ``mode: loop``, the numpy solver loop around the field file. The copy is built in a staging directory, sealed like an export
(:func:`edgeode.runtime.digest.write_seal`), verified, and only then renamed into place.

Standard library only (with the runtime's bundle reader).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from edgeode.errors import ConfigError
from edgeode.fsutil import commit_dir, discard_dir, make_staging_dir
from edgeode.runtime.bundle import read_bundle
from edgeode.runtime.digest import SEAL_NAME, verify_bundle, write_seal
from edgeode.runtime.manifest import MANIFEST_NAME, Manifest, TunedSpec
from edgeode.tune.sweep import Measured, Sweep

__all__ = ["tuned_spec", "write_tuned_bundle"]


def tuned_spec(sweep: Sweep, chosen: Measured) -> TunedSpec:
    """The manifest record of ``chosen``, with what tune measured for it: ``accuracy`` is its test figure (the
    held-out samples it was not picked on); the validation figure it was picked by is in ``measured``."""
    c = chosen.config
    measured = {"device": sweep.device, "figures": sweep.figures, "data": sweep.data, "backend": c.backend,
                "threads": sweep.threads, "latency_ms": chosen.latency_ms, "energy_mj": chosen.energy_mj,
                "host_latency_ms": chosen.host_latency_ms, "field_evaluations": c.field_evaluations,
                "fits": chosen.fits, "val_accuracy": chosen.val_accuracy, "val_samples": sweep.val_samples,
                "val_data": sweep.val_data}
    return TunedSpec(c.tableau, c.steps, c.precision, c.mode, chosen.accuracy, sweep.metric, sweep.samples, measured)


def write_tuned_bundle(source: str | Path, out_dir: str | Path, spec: TunedSpec, overwrite: bool = False) -> Path:
    """Copy the bundle at ``source`` to ``out_dir`` with ``spec`` as its tuned configuration, sealed and verified.

    Raises:
        ConfigError: ``out_dir`` exists and ``overwrite`` is false, is the source itself, or cannot be written.
        BundleError: the source bundle is damaged (checked before anything is written).
    """
    source, out_dir = Path(source), Path(out_dir).expanduser()
    manifest = Manifest.read(source)
    if (source / SEAL_NAME).is_file():
        verify_bundle(source)
    else:
        read_bundle(source)  # an unsealed bundle (older exporter): checksums and records still hold
    if out_dir.exists():
        if out_dir.resolve() == source.resolve():
            raise ConfigError(f"-o {out_dir} is the bundle being tuned; write the tuned bundle to a new directory")
        if not overwrite:
            raise ConfigError(f"-o {out_dir} already exists; pass --overwrite to replace it (only after the new one is complete)")
    try:
        tmp = make_staging_dir(out_dir)
    except OSError as exc:
        raise ConfigError(f"-o {out_dir}: cannot write there ({exc.strerror or exc}); pick a writable directory") from None
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(SEAL_NAME))
        tuned = replace(manifest, tuned=spec)
        (tmp / MANIFEST_NAME).write_text(tuned.to_json(), encoding="utf-8")
        write_seal(tmp)
        verify_bundle(tmp)  # the strict reader accepts it: checksums, contract records, the new seal
        commit_dir(tmp, out_dir)
    except BaseException:
        discard_dir(tmp)
        raise
    return out_dir
