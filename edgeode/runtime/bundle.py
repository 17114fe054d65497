"""Reading a bundle directory: the strict manifest plus a check of every file it lists.

:func:`read_bundle` is what a device does before it trusts a bundle: it parses ``manifest.json``
strictly (:mod:`edgeode.runtime.manifest`), then for every artifact checks that the file exists, stays
inside the bundle (symlinks resolved), has the size the manifest records (a short file is reported as
*truncated*) and the recorded SHA-256 (a changed file is reported as a *checksum mismatch*).

Standard library only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from edgeode.errors import BundleError
from edgeode.runtime.manifest import MANIFEST_NAME, Artifact, Manifest

__all__ = ["Bundle", "read_bundle", "sha256_file"]

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its directory, manifest and the absolute path of every artifact."""

    root: Path
    manifest: Manifest

    def path(self, artifact: Artifact) -> Path:
        """Absolute path of ``artifact`` (one of ``manifest.artifacts``)."""
        return self.root / artifact.path

    def artifacts(self, role: str | None = None, format: str | None = None, precision: str | None = None) -> list[Artifact]:
        """The artifacts matching every given filter, in manifest order."""
        return [
            a
            for a in self.manifest.artifacts
            if (role is None or a.role == role)
            and (format is None or a.format == format)
            and (precision is None or a.precision == precision)
        ]

    @property
    def formats(self) -> tuple[str, ...]:
        """The formats present in the bundle (manifest order, no repeats)."""
        return tuple(dict.fromkeys(a.format for a in self.manifest.artifacts))


def _check_artifact(root: Path, art: Artifact, verify: bool) -> None:
    candidate = root / art.path
    try:
        resolved = candidate.resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # symlink loop
        raise BundleError(f"bundle file {art.path!r} cannot be resolved ({exc}); re-export the bundle") from None
    if not resolved.is_relative_to(root):
        raise BundleError(
            f"bundle file {art.path!r} resolves to {resolved}, outside the bundle directory {root} "
            "(a symlink points out of the bundle); copy the real file into the bundle or re-export it"
        )
    if not resolved.exists():
        raise BundleError(
            f"bundle file {art.path!r} ({art.role}, {art.format}, {art.precision}) listed in {MANIFEST_NAME} is missing "
            f"from {root}; copy the whole bundle directory again or re-export it"
        )
    if not resolved.is_file():
        raise BundleError(f"bundle file {art.path!r} is not a regular file; re-export the bundle")
    if not verify:
        return
    size = resolved.stat().st_size
    if size != art.size:
        kind = "truncated" if size < art.size else "larger than recorded"
        raise BundleError(
            f"bundle file {art.path!r} is {kind}: expected {art.size} bytes, got {size}; "
            "the copy is incomplete or the file was changed: copy the bundle again or re-export it"
        )
    digest = sha256_file(resolved)
    if digest != art.sha256:
        raise BundleError(
            f"bundle file {art.path!r}: checksum mismatch (sha256 {digest[:12]}..., manifest says {art.sha256[:12]}...); "
            "the file is corrupt or was replaced: copy the bundle again or re-export it"
        )


def read_bundle(bundle_dir: str | Path, verify: bool = True) -> Bundle:
    """Parse and verify the bundle in ``bundle_dir``.

    Args:
        bundle_dir: the directory holding ``manifest.json`` and the model files.
        verify: check size and SHA-256 of every artifact (on by default; a device with a very slow
            disk may skip it after a first successful check). Existence and the path staying inside
            the bundle are always checked.

    Raises:
        BundleError: the manifest is malformed, newer than this runtime, or a file is missing,
            truncated, changed, or escapes the bundle. The message names the file and the fix.
    """
    root_given = Path(bundle_dir)
    if not root_given.is_dir():
        raise BundleError(
            f"bundle directory {bundle_dir} does not exist or is not a directory "
            "(make one with `edgeode export RUN_DIR -o BUNDLE`)"
        )
    root = root_given.resolve()
    manifest = Manifest.read(root)
    for art in manifest.artifacts:
        _check_artifact(root, art, verify)
    return Bundle(root=root, manifest=manifest)
