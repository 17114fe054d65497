"""Writing files and directories so that nothing half-written is ever left behind.

One owner for the pattern every command follows: a file is written under a temporary name in the
same directory and renamed over the target (``os.replace`` is atomic on POSIX within one file
system); a directory (a run, a bundle, a package, a report) is built in a temporary directory
beside its destination and renamed into place only when complete, replacing an old one only then.

Killed at any instant (SIGKILL, power cut aside), nothing is lost and nothing is left for ever:

- ``--overwrite`` never leaves the destination missing. On Linux the finished directory and the
  old destination are swapped in one ``renameat2(RENAME_EXCHANGE)`` call; elsewhere (or where the
  file system refuses it) the old destination is renamed aside and the new one renamed in, and a
  kill between the two is repaired by the next :func:`make_staging_dir` beside it, which renames
  the old directory back.
- Every staging directory (``.NAME.tmp-*``) and aside directory (``.NAME.old-*``) is held with an
  exclusive ``flock`` by the process that made it while that process lives; the kernel drops the
  lock when it dies, however it dies. :func:`make_staging_dir` first removes the ones beside its
  destination whose lock it can take (dead owners), so a live concurrent export's staging
  directory survives and a killed one's does not stay for ever.

Standard library only: the torch-free runtime and device side use it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["is_file", "umask", "atomic_write_text", "atomic_write_json", "make_staging_dir", "commit_dir",
           "discard_dir", "clean_stale_staging", "STALE_AFTER_S"]

STALE_AFTER_S = 2.0
"""A staging directory younger than this is never removed by :func:`clean_stale_staging` (it may be
between its creation and its owner's lock)."""

_held: dict[str, int] = {}  # staging / aside directory -> the fd whose lock marks it as in use by this process
_held_lock = threading.Lock()


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


def _hold(path: Path) -> None:
    """Take the exclusive lock that marks ``path`` as in use by this process (kept until :func:`_release`)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    with _held_lock:
        _held[str(path)] = fd


def _release(path: Path) -> None:
    with _held_lock:
        fd = _held.pop(str(path), None)
    if fd is not None:
        os.close(fd)


def _leftovers(out_dir: Path) -> list[Path]:
    """Staging and aside directories of earlier runs beside ``out_dir`` (any owner, live or dead)."""
    parent = out_dir.absolute().parent
    prefixes = (f".{out_dir.name}.tmp-", f".{out_dir.name}.old-")
    try:
        return sorted(p for p in parent.iterdir() if p.name.startswith(prefixes) and str(p) not in _held)
    except OSError:
        return []


def clean_stale_staging(out_dir: str | Path) -> list[Path]:
    """Remove the staging / aside directories of dead runs beside ``out_dir``; return what was removed.

    A directory is dead when its lock can be taken (its owner has exited) and it is older than
    :data:`STALE_AFTER_S`. If ``out_dir`` is missing because a run was killed between renaming the
    old destination aside and the new one in, the old one is renamed back first.
    """
    out_dir = Path(out_dir).expanduser()
    removed = []
    for path in _leftovers(out_dir):
        try:
            if time.time() - path.lstat().st_mtime < STALE_AFTER_S or path.is_symlink() or not path.is_dir():
                continue
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live run holds it
            aside = path / "x"
            if path.name.startswith(f".{out_dir.name}.old-") and aside.is_dir() and not os.path.lexists(out_dir):
                os.replace(aside, out_dir)  # recovery: the kill came between "old aside" and "new in"
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


def make_staging_dir(out_dir: str | Path) -> Path:
    """Create an empty temporary directory beside ``out_dir`` (same file system, so it can be renamed).

    Creates the parent directories if needed, and first removes dead runs' leftovers beside
    ``out_dir`` (:func:`clean_stale_staging`). The directory stays locked by this process until
    :func:`commit_dir` or :func:`discard_dir`. Raises ``OSError`` when the parent cannot be written;
    callers turn that into a :class:`~edgeode.errors.ConfigError` that names their option.
    """
    if "\0" in str(out_dir):
        raise OSError(errno.EINVAL, "the path contains a NUL byte", str(out_dir).replace("\0", "\\0"))
    out_dir = Path(out_dir).expanduser()
    parent = out_dir.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=parent))
    try:
        _hold(tmp)
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it private; the result is an ordinary directory
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def discard_dir(tmp_dir: str | Path) -> None:
    """Remove a staging directory that will not be committed (a failed run) and drop its lock."""
    shutil.rmtree(tmp_dir, ignore_errors=True)
    _release(Path(tmp_dir))


_RENAME_EXCHANGE = 2  # linux/fs.h
USE_EXCHANGE = True
"""Swap directories with ``renameat2(RENAME_EXCHANGE)`` where available; False forces the rename-aside path (tests)."""


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap the directories ``a`` and ``b`` (Linux ``renameat2``); False where that is not available."""
    if not USE_EXCHANGE:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):  # kernel or file system without it
        return False
    raise OSError(err, os.strerror(err), str(b))


def commit_dir(tmp_dir: str | Path, out_dir: str | Path) -> Path:
    """Put the finished ``tmp_dir`` at ``out_dir``; an existing ``out_dir`` is replaced, never left missing.

    The caller decides beforehand whether replacing ``out_dir`` is allowed.
    """
    tmp_dir, out_dir = Path(tmp_dir), Path(out_dir).expanduser()
    try:
        if not out_dir.exists():
            os.replace(tmp_dir, out_dir)
        elif _exchange(tmp_dir, out_dir):
            shutil.rmtree(tmp_dir, ignore_errors=True)  # now the old destination; if killed here, cleaned next time
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.absolute().parent))
            _hold(old)
            try:
                os.replace(out_dir, old / "x")
                os.replace(tmp_dir, out_dir)  # a kill before this line is undone by the next make_staging_dir
                shutil.rmtree(old, ignore_errors=True)
            finally:
                _release(old)
    finally:
        _release(tmp_dir)
    return out_dir
