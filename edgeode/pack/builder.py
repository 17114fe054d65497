"""``pack``: turn a bundle into something a user copies to a device and runs there.

Three kinds of device, told apart by their profile (:mod:`edgeode.devices`):

* a Linux board with CPython (``profile.python``: Raspberry Pi, Jetson): the package holds a verified
  copy of the bundle, a wheelhouse for the device's pip platforms (numpy, psutil, the chosen
  backends and their dependencies, edgeode itself as a pure wheel; never torch), a README and
  ``run.sh``. On the device: ``pip install --no-index --find-links wheels 'edgeode[...]'``.
* an Android phone (LiteRT in an app): the fused ``.tflite`` file, its manifest (the directory is a
  one-artifact bundle) and an integration note; no wheels.
* a microcontroller (TFLite Micro only): a PlatformIO firmware project from the bundle's full-int8 files
  (:mod:`edgeode.firmware.project`: models as C arrays, the solver loop as generated C), for the boards
  that have a template (Arduino Nano 33 BLE Sense, ESP32-S3); others are refused naming those.

The package is built in a hidden temporary directory beside the output and renamed into place only
when complete, so a failed download leaves no half-filled package directory.

No torch (pip runs as a subprocess; numpy comes in through edgeode.runtime).
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from edgeode.errors import ConfigError, PackError
from edgeode.fsutil import commit_dir, discard_dir, make_staging_dir, umask
from edgeode.pack import notes, wheelhouse
from edgeode.runtime.bundle import Bundle, read_bundle
from edgeode.runtime.manifest import MANIFEST_NAME, Artifact

__all__ = ["BACKENDS", "DEFAULT_PYTHON", "PackResult", "pack", "select_backends", "requirements_for"]

# What each backend needs on the device (pip requirements) and which bundle format it runs.
BACKENDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "onnxruntime": ("onnx", ("onnxruntime>=1.17",)),
    "litert": ("tflite", ("ai-edge-litert>=1.2",)),
    # Legacy: the last release (2.14, 2023) is built against numpy 1.x.
    "tflite-runtime": ("tflite", ("tflite-runtime>=2.13", "numpy<2")),
}
BASE_REQUIREMENTS = ("numpy>=1.23", "psutil>=5.9", "pillow>=9.1")  # as in pyproject's runtime extras
# Raspberry Pi OS 64-bit (Bookworm, Debian 12) ships CPython 3.11; profiles do not record a version.
DEFAULT_PYTHON = "3.11"
_PYTHON_RE = re.compile(r"^3\.\d{1,2}$")
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class PackResult:
    """What :func:`pack` wrote.

    ``kind`` is ``"python"`` (bundle + wheels), ``"android"`` (a .tflite file + note) or ``"firmware"``
    (a PlatformIO project for a microcontroller, :mod:`edgeode.firmware.project`).
    ``wheels`` are file names inside ``out_dir/wheels`` (empty for Android); ``install_args`` are the
    arguments after ``pip install --no-index --find-links wheels`` on the device.
    """

    out_dir: Path
    device: str
    kind: str
    backends: tuple[str, ...]
    python: str | None
    platforms: tuple[str, ...]
    wheels: tuple[str, ...]
    install_args: tuple[str, ...]
    tarball: Path | None
    size_bytes: int


def _req_name(req: str) -> str:
    match = _REQ_NAME.match(req)
    if not match:
        raise ConfigError(f"--pin {req!r} is not a pip requirement (expected e.g. numpy==1.26.4)")
    return match.group(1).lower().replace("_", "-").replace(".", "-")


def requirements_for(backends: Sequence[str], pins: Sequence[str] = ()) -> list[str]:
    """pip requirements for the device: numpy, psutil, each backend's packages; ``pins`` replace same-named ones."""
    reqs: dict[str, list[str]] = {}
    for req in (*BASE_REQUIREMENTS, *(r for b in backends for r in BACKENDS[b][1])):
        reqs.setdefault(_req_name(req), []).append(req)
    pinned: dict[str, list[str]] = {}
    for pin in pins:
        pinned.setdefault(_req_name(pin), []).append(pin)
    reqs.update(pinned)
    return [r for group in reqs.values() for r in group]


def select_backends(requested: Sequence[str] | None, runtimes: Sequence[str], formats: Sequence[str],
                    device: str) -> tuple[str, ...]:
    """The backends to pack: the requested ones (checked), else onnxruntime and LiteRT where device and bundle allow."""
    if requested:
        chosen = tuple(dict.fromkeys(requested))
        for b in chosen:
            if b not in BACKENDS:
                raise ConfigError(f"unknown backend {b!r} in --backends; choose from {', '.join(BACKENDS)}")
            if b not in runtimes:
                raise PackError(f"device {device!r} does not list the {b} runtime (it has: {', '.join(runtimes)}); "
                                f"choose --backends from those")
            if BACKENDS[b][0] not in formats:
                raise PackError(
                    f"backend {b} runs {BACKENDS[b][0]} models but the bundle holds only {', '.join(formats)}; "
                    f"re-export with that format or choose another backend"
                )
        return chosen
    chosen = tuple(b for b in ("onnxruntime", "litert") if b in runtimes and BACKENDS[b][0] in formats)
    if not chosen:
        chosen = tuple(b for b in ("tflite-runtime",) if b in runtimes and BACKENDS[b][0] in formats)
    if not chosen:
        raise PackError(
            f"no backend of device {device!r} ({', '.join(runtimes)}) can run this bundle's formats ({', '.join(formats)}); "
            "re-export the bundle with `edgeode export` for both onnx and tflite"
        )
    return chosen


def _install_args(backends: tuple[str, ...], pins: Sequence[str]) -> tuple[str, ...]:
    """The requirement arguments of the device's pip install, using edgeode's extras where they fit."""
    extras = {("onnxruntime",): "onnx", ("litert",): "tflite", ("litert", "onnxruntime"): "device"}
    modern = tuple(sorted(b for b in backends if b != "tflite-runtime"))
    extra = extras.get(modern)
    args = [f"edgeode[{extra}]" if extra else "edgeode"]
    if "tflite-runtime" in backends:
        args += list(BACKENDS["tflite-runtime"][1])
        if not extra:
            args += list(BASE_REQUIREMENTS)
    args += list(pins)
    return tuple(args)


def _edgeode_version() -> str:
    from edgeode import __version__

    return __version__


@contextmanager
def _staging(out_dir: Path, force: bool) -> Iterator[Path]:
    """A temporary directory beside ``out_dir`` that becomes ``out_dir`` only if the block succeeds."""
    if out_dir.exists() and not force and not (out_dir.is_dir() and not any(out_dir.iterdir())):
        raise ConfigError(f"output directory {out_dir} already exists; choose another -o or pass --overwrite to replace it")
    try:
        tmp = make_staging_dir(out_dir)
    except OSError as exc:
        raise ConfigError(f"cannot write the package under {out_dir.parent} ({exc.strerror or exc}); "
                          "choose another -o") from None
    try:
        yield tmp
        commit_dir(tmp, out_dir)
    except BaseException:
        discard_dir(tmp)
        raise


def _copy_bundle(bundle: Bundle, dest: Path) -> Bundle:
    """Copy the whole bundle directory and verify the copy (sizes and SHA-256 of every artifact)."""
    shutil.copytree(bundle.root, dest, ignore=shutil.ignore_patterns("__pycache__", ".*.tmp*"))
    return read_bundle(dest)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _write_tar(out_dir: Path) -> Path:
    """``OUT.tar.gz`` beside ``OUT`` (top-level folder ``OUT``), written to a temporary name first."""
    target = out_dir.with_name(out_dir.name + ".tar.gz")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=out_dir.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(out_dir, arcname=out_dir.name)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


class _Progress:
    """Stage-by-stage progress on stderr: a live bar on a terminal, one line per stage in a log."""

    def __init__(self, total: int, enabled: bool):
        from edgeode.progress import Stages

        self.bar = Stages("pack", total, enabled=enabled, unit="stage")
        self.started = False

    def stage(self, name: str) -> None:
        if self.started:
            self.bar.update(1)
        self.started = True
        self.bar.set_description(name)

    def close(self) -> None:
        self.bar.close()


def _mcu_message(profile) -> str:
    from edgeode.firmware.project import BOARDS

    return (
        f"device {profile.name!r} ({profile.display_name}) is a microcontroller without a Python runtime "
        f"(runtimes: {', '.join(profile.runtimes)}) and edgeode has no firmware template for it; `edgeode pack` "
        f"writes firmware projects for {', '.join(BOARDS)}, and Python packages for Linux boards (pi-zero-2w, "
        "pi-3b-plus, pi-4b, pi-5, jetson-nano) and Android phones"
    )


def _pack_firmware(bundle: Bundle, profile, stage: Path, progress: _Progress, samples) -> tuple[str, ...]:
    """The PlatformIO project of :mod:`edgeode.firmware.project`; returns the TFLM ops it registers."""
    from edgeode.firmware.project import build_project

    progress.stage("firmware")
    project = build_project(bundle, profile, samples)
    project.write(stage)
    return project.ops


def _pick_android_artifact(bundle: Bundle) -> Artifact:
    tflite = [a for a in bundle.manifest.artifacts if a.format == "tflite" and a.role in ("fused", "model")]
    if not tflite:
        raise PackError(
            "an Android app runs one TFLite file, but this bundle has no fused (whole-model) .tflite artifact; "
            "re-export with TFLite included (edgeode export RUN -o BUNDLE, formats onnx and tflite)"
        )
    float32 = [a for a in tflite if a.precision == "float32"]
    return (float32 or tflite)[0]


def _pack_android(bundle: Bundle, profile, stage: Path, progress: _Progress) -> None:
    progress.stage("tflite")
    art = _pick_android_artifact(bundle)
    filename = "model.tflite"
    shutil.copyfile(bundle.path(art), stage / filename)
    manifest = replace(bundle.manifest, artifacts=(replace(art, path=filename),))
    (stage / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    read_bundle(stage)  # the copy must verify: it is itself a one-artifact bundle
    progress.stage("note")
    note = notes.android_note(manifest, art, profile.name, profile.display_name, filename)
    (stage / "README.md").write_text(note, encoding="utf-8")


def pack(
    bundle_dir: str | Path,
    device: str,
    out_dir: str | Path,
    *,
    backends: Sequence[str] | None = None,
    python: str | None = None,
    pins: Sequence[str] = (),
    edgeode_wheel: str | Path | None = None,
    tar: bool = False,
    force: bool = False,
    progress: bool = True,
    samples=None,
) -> PackResult:
    """Build the device package for ``device`` from the bundle in ``bundle_dir`` into ``out_dir``.

    Args:
        bundle_dir: an exported bundle (verified before and after copying).
        device: a device profile name (``edgeode devices`` lists them), e.g. ``"pi-4b"``.
        out_dir: the package directory to create (must not exist unless ``force``).
        backends: runtimes to ship (``onnxruntime``, ``litert``, ``tflite-runtime``); default: onnxruntime
            and LiteRT where the device and the bundle's formats allow.
        python: the device's CPython version ``"3.X"`` (default 3.11, Raspberry Pi OS Bookworm).
        pins: extra or replacing pip requirements for the wheelhouse (``"numpy==1.26.4"``).
        edgeode_wheel: a pre-built pure edgeode wheel to ship instead of building one from the source tree.
        tar: also write ``out_dir.tar.gz``.
        samples: microcontrollers only: preprocessed inputs ``[S, ...]`` the firmware checks against the
            host's TFLM outputs (default: 4 fixed-seed inputs).
        force: replace an existing ``out_dir``.
        progress: show a stage progress bar on stderr.

    Raises:
        DeviceError: unknown device. ConfigError: bad option or existing output.
        BundleError: the bundle (or its copy) fails verification.
        PackError: the device cannot take this bundle (microcontroller, no matching backend), a
            package has no wheel for the device's platform (named), or a download failed. Nothing is
            left at ``out_dir`` then.
    """
    from edgeode.devices.profiles import load_profile

    profile = load_profile(device)
    out_dir = Path(out_dir).expanduser().absolute()
    if profile.device_class == "mcu" or (not profile.python and "litert" not in profile.runtimes):
        from edgeode.firmware.project import BOARDS

        if profile.name not in BOARDS:
            raise PackError(_mcu_message(profile))
        if pins or python or backends or edgeode_wheel:
            raise PackError(f"{profile.display_name} gets a firmware project (TFLM in C++), with no Python wheels: "
                            "--backends, --python, --pin and --edgeode-wheel do not apply; drop them")
        bundle = read_bundle(bundle_dir)
        bar = _Progress(total=1 + int(tar), enabled=progress)
        try:
            with _staging(out_dir, force) as stage:
                _pack_firmware(bundle, profile, stage, bar, samples)
            tarball = _write_tar(out_dir) if tar else None
        finally:
            bar.close()
        return PackResult(out_dir=out_dir, device=profile.name, kind="firmware", backends=("tflite-micro",), python=None,
                          platforms=(), wheels=(), install_args=(), tarball=tarball, size_bytes=_dir_size(out_dir))
    if samples is not None:
        raise PackError("--sample is for microcontroller firmware (esp32-s3, nano-33-ble-sense); drop it")
    if python is not None and not _PYTHON_RE.match(python):
        raise ConfigError(f"--python {python!r} is not a CPython version like 3.11")
    bundle = read_bundle(bundle_dir)
    android = not profile.python
    kind = "android" if android else "python"
    if android and (pins or python or (backends and tuple(backends) != ("litert",))):
        raise PackError(
            f"{profile.display_name} is an Android phone: its package is the fused TFLite model for LiteRT in an app, "
            "with no Python wheels, so --backends (other than litert), --python and --pin do not apply; drop them"
        )
    bar = _Progress(total=(2 if android else 5) + int(tar), enabled=progress)
    try:
        if android:
            with _staging(out_dir, force) as stage:
                _pack_android(bundle, profile, stage, bar)
            chosen: tuple[str, ...] = ("litert",)
            py, platforms, wheels, install = None, (), (), ()
        else:
            py = python or DEFAULT_PYTHON
            platforms = tuple(profile.pip_platforms)
            formats = bundle.formats
            chosen = select_backends(backends, profile.runtimes, formats, profile.name)
            reqs = requirements_for(chosen, pins)
            install = _install_args(chosen, pins)
            with _staging(out_dir, force) as stage:
                bar.stage("bundle")
                copied = _copy_bundle(bundle, stage / "bundle")
                bar.stage("wheels")
                wheel_dir = stage / "wheels"
                try:
                    fetched = wheelhouse.download_wheels(reqs, py, platforms, wheel_dir)
                except PackError as exc:
                    raise PackError(f"{exc}\ndevice notes ({profile.name}): {profile.os_notes}") from None
                bar.stage("edgeode wheel")
                own = wheelhouse.build_edgeode_wheel(wheel_dir, edgeode_wheel)
                all_wheels = [*fetched, own]
                wheelhouse.check_wheels(all_wheels, profile.cpu.arch, platforms)
                bar.stage("offline check")
                wheelhouse.check_offline_install(wheel_dir, list(install), py, platforms)
                bar.stage("readme")
                wheels = tuple(sorted(w.filename for w in all_wheels))
                info = notes.PythonPackInfo(
                    device=profile.name, display_name=profile.display_name, arch=profile.cpu.arch, python=py,
                    platforms=platforms, backends=chosen, install_args=install, wheels=wheels,
                    edgeode_version=_edgeode_version(), os_notes=profile.os_notes, package_name=out_dir.name,
                )
                (stage / "README.md").write_text(notes.python_readme(info, copied.manifest), encoding="utf-8")
                run_sh = stage / "run.sh"
                run_sh.write_text(notes.run_script(info), encoding="utf-8")
                run_sh.chmod(0o755)
                (stage / "PACKED").write_text(
                    f"device={profile.name}\npython={py}\nplatforms={' '.join(platforms)}\nbackends={' '.join(chosen)}\n"
                    f"edgeode={_edgeode_version()}\ncreated={datetime.now(timezone.utc).isoformat(timespec='seconds')}\n",
                    encoding="utf-8",
                )
        tarball = None
        if tar:
            bar.stage("tar")
            tarball = _write_tar(out_dir)
    finally:
        bar.close()
    return PackResult(
        out_dir=out_dir, device=profile.name, kind=kind, backends=chosen, python=py, platforms=platforms,
        wheels=wheels, install_args=install, tarball=tarball, size_bytes=_dir_size(out_dir),
    )
