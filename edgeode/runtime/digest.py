"""One digest over a whole bundle, a seal that records it, and the check behind ``edgeode verify``.

The digest is SHA-256 over the ``sha256sum``-style lines ``"<sha256 of the file>  <relative path>\\n"``
of every regular file in the bundle directory (``manifest.json`` included, the seal excluded), sorted
by path: any changed, added, removed or renamed byte changes it. ``edgeode verify BUNDLE`` prints it;
a fleet pins the bundle it tested with ``load(..., expect_digest=...)`` / ``--expect-digest``.

The exporter writes the digest into ``BUNDLE/SEAL`` as the last step, so :func:`verify_bundle`
also knows, without being told, whether anything changed since the export (a manifest edit that the
runtime tolerates, such as an informational field, still breaks the seal).

Standard library only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from edgeode.errors import BundleError, ConfigError
from edgeode.runtime.bundle import Bundle, read_bundle, sha256_file
from edgeode.runtime.contract import check_contract

__all__ = ["SEAL_NAME", "BundleCheck", "bundle_digest", "check_digest", "normalize_digest", "verify_bundle", "write_seal"]

SEAL_NAME = "SEAL"
_PREFIX = "sha256:"


def _files(root: Path) -> list[tuple[str, Path]]:
    """(relative POSIX path, real path) of every file under ``root`` but the seal; symlinks must stay inside."""
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(root) or not target.is_file():
                raise BundleError(f"bundle entry {rel!r} is a symlink to {target}, not to a file inside the bundle; "
                                  "copy the real file into the bundle or re-export it")
        elif path.is_dir():
            continue
        elif not path.is_file():
            raise BundleError(f"bundle entry {rel!r} is not a regular file; remove it or re-export the bundle")
        if rel != SEAL_NAME:
            found.append((rel, path))
    return found


def bundle_digest(bundle_dir: str | Path) -> str:
    """``"sha256:<64 hex>"`` over every file of the bundle directory (see the module docstring)."""
    root = Path(bundle_dir).resolve()
    if not root.is_dir():
        raise BundleError(f"bundle directory {bundle_dir} does not exist or is not a directory")
    digest = hashlib.sha256()
    for rel, path in _files(root):
        digest.update(f"{sha256_file(path)}  {rel}\n".encode())
    return _PREFIX + digest.hexdigest()


def normalize_digest(value: object) -> str:
    """A digest as ``"sha256:<lowercase hex>"`` (the prefix is optional on input), else :class:`ConfigError`."""
    text = value.strip().lower() if isinstance(value, str) else ""
    hexpart = text.removeprefix(_PREFIX)
    if len(hexpart) != 64 or any(ch not in "0123456789abcdef" for ch in hexpart):
        raise ConfigError(f"expected digest must be 'sha256:' and 64 hex digits, as `edgeode verify BUNDLE` prints; got {value!r}")
    return _PREFIX + hexpart


def check_digest(bundle_dir: str | Path, expected: object) -> str:
    """The bundle's digest if it equals ``expected``; else :class:`BundleError` (another or a changed bundle)."""
    want = normalize_digest(expected)
    have = bundle_digest(bundle_dir)
    if have != want:
        raise BundleError(
            f"bundle {bundle_dir} has digest {have}, not the expected {want}: it is another bundle or it changed "
            "since it was pinned; copy the pinned bundle again (`edgeode verify BUNDLE` prints a bundle's digest)"
        )
    return have


def write_seal(bundle_dir: str | Path) -> str:
    """Write the bundle's digest into ``BUNDLE/SEAL`` (the exporter's last step) and return it."""
    digest = bundle_digest(bundle_dir)
    (Path(bundle_dir) / SEAL_NAME).write_text(digest + "\n", encoding="ascii")
    return digest


@dataclass(frozen=True)
class BundleCheck:
    """What :func:`verify_bundle` found: the digest, the files covered, and which artifacts carry a record."""

    bundle: Bundle
    digest: str
    files: int
    recorded: tuple[str, ...]
    unrecorded: tuple[str, ...]


def verify_bundle(bundle_dir: str | Path, expect_digest: object = None) -> BundleCheck:
    """Everything a device can check about a bundle without running it.

    The strict manifest, every artifact's size and SHA-256 (:func:`read_bundle`), the manifest against
    the record inside each artifact (:func:`~edgeode.runtime.contract.check_contract`), the seal, and
    ``expect_digest`` if given.

    Raises:
        BundleError: the first problem found, naming the file or field and the fix.
    """
    bundle = read_bundle(bundle_dir)
    recorded, unrecorded = [], []
    for art in bundle.manifest.artifacts:
        (recorded if check_contract(bundle.manifest, art, bundle.path(art)) else unrecorded).append(art.path)
    digest = bundle_digest(bundle.root)
    seal = bundle.root / SEAL_NAME
    if not seal.is_file():
        raise BundleError(f"{bundle.root} has no {SEAL_NAME} file (the exporter writes one; it was removed or the bundle "
                          f"was not made by `edgeode export`); its digest now is {digest}: re-export to seal it")
    sealed = seal.read_text(encoding="ascii", errors="replace").strip()
    if sealed != digest:
        raise BundleError(f"{bundle.root} changed since it was exported: its files give digest {digest} but its {SEAL_NAME} "
                          f"says {sealed}; copy the bundle again or re-export it")
    if expect_digest is not None:
        check_digest(bundle.root, expect_digest)
    return BundleCheck(bundle, digest, len(_files(bundle.root)), tuple(recorded), tuple(unrecorded))
