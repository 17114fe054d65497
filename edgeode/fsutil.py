"""Writing files and directories so that nothing half-written is ever left behind.

One owner for the pattern every command follows: a file is written under a temporary name in the
same directory and renamed over the target (``os.replace`` is atomic on POSIX within one file
system); a directory (a run, a bundle, a package, a report) is built in a temporary directory
beside its destination and renamed into place only when complete, replacing an old one only then.

Standard library only: the torch-free runtime and device side use it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["is_file", "umask", "atomic_write_text", "atomic_write_json", "make_staging_dir", "commit_dir"]


def is_file(path: str | Path) -> bool:
    """Whether ``path`` is a regular file; ``False`` also for a path the OS cannot look up (a NUL byte, a too-long name)."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def umask() -> int:
    """The process's current umask (read without changing it for longer than one call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` via a temporary file in the same directory, then rename it.

    A reader sees either the old file or the whole new one; on any error the temporary file is removed.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it private; these are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, data: Any, *, sort_keys: bool = False, default: Any = None) -> Path:
    """:func:`atomic_write_text` of ``data`` as indented JSON with a final newline."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys, default=default) + "\n")


def make_staging_dir(out_dir: str | Path) -> Path:
    """Create an empty temporary directory beside ``out_dir`` (same file system, so it can be renamed).

    Creates the parent directories if needed. Raises ``OSError`` when the parent cannot be written;
    callers turn that into a :class:`~edgeode.errors.ConfigError` that names their option.
    """
    if "\0" in str(out_dir):
        raise OSError(errno.EINVAL, "the path contains a NUL byte", str(out_dir).replace("\0", "\\0"))
    out_dir = Path(out_dir).expanduser()
    parent = out_dir.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=parent))
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it private; the result is an ordinary directory
    return tmp


def commit_dir(tmp_dir: str | Path, out_dir: str | Path) -> Path:
    """Rename the finished ``tmp_dir`` to ``out_dir``; an existing ``out_dir`` is removed only after that.

    The caller decides beforehand whether replacing ``out_dir`` is allowed.
    """
    tmp_dir, out_dir = Path(tmp_dir), Path(out_dir).expanduser()
    old: Path | None = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.absolute().parent))
        os.replace(out_dir, old / "x")
    os.replace(tmp_dir, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out_dir
