"""Typed errors shared by every part of edgeode.

Every error a user can cause carries the problem *and* the fix in its message, and is a subclass
of :class:`EdgeodeError` so a caller (or the CLI) can catch them all at once. User input is never
checked with ``assert`` (asserts vanish under ``python -O``).

This module imports only the standard library: the torch-free runtime uses it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "did_you_mean",
    "EdgeodeError",
    "ConfigError",
    "TableauError",
    "DataError",
    "ShapeError",
    "CheckpointError",
    "ExportError",
    "ParityError",
    "BundleError",
    "BackendError",
    "SolverError",
    "Interrupted",
    "RunTimeout",
    "DeviceError",
    "PackError",
    "InputWarning",
]


class EdgeodeError(Exception):
    """Base class of every error edgeode raises on purpose."""


class ConfigError(EdgeodeError, ValueError):
    """An argument or option has a wrong value (unknown name, steps <= 0, unwritable path, ...)."""


class TableauError(ConfigError):
    """A Butcher tableau is malformed or its name is unknown."""


class DataError(EdgeodeError, ValueError):
    """A data set is missing, truncated or malformed."""


class ShapeError(EdgeodeError, ValueError):
    """An array has the wrong shape, rank or dtype for the model."""


class CheckpointError(EdgeodeError):
    """A run directory or weights file is missing, corrupt or from another model."""


class ExportError(EdgeodeError):
    """A model could not be exported."""


class ParityError(ExportError):
    """An exported artifact disagrees with torch by more than the tolerance."""


class BundleError(EdgeodeError):
    """A bundle on disk is missing files, corrupt, or from an unknown format version."""


class BackendError(EdgeodeError):
    """An inference backend is not installed, cannot work here, or refused the model."""


class SolverError(EdgeodeError, FloatingPointError):
    """The solver state became NaN or Inf (the message names the step)."""


class Interrupted(EdgeodeError):
    """A run was stopped on request (``Model.interrupt()``: Ctrl-C or ``--timeout`` in the CLI)."""


class RunTimeout(Interrupted, TimeoutError):
    """A run took longer than its timeout (``--timeout``) and was stopped."""


class DeviceError(EdgeodeError, ValueError):
    """A device profile is unknown or malformed."""


class PackError(EdgeodeError):
    """A device package could not be built."""


class InputWarning(UserWarning):
    """An input is accepted but looks wrong for the model (e.g. an image drawn inverted); the message says the fix."""


def _folded(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


def did_you_mean(word: object, names: Iterable[str]) -> str:
    """A " (did you mean 'x'?)" suffix naming the known name closest to ``word``, or "" if none is close.

    Names are compared case-, dash- and underscore-insensitively (``pi4b`` -> ``pi-4b``); then a word
    that starts exactly one name is taken as its prefix (``onnx`` -> ``onnxruntime``); then the most
    similar names by :func:`difflib.SequenceMatcher` ratio >= 0.6 (Ratcliff/Obershelp), keeping
    only those within 0.05 of the best, so ``profle`` -> ``profile`` and ``pi4`` -> ``pi-4b``.
    Error messages and the CLI's argument parser share it.
    """
    names = [n for n in names if isinstance(n, str)]
    if not isinstance(word, str) or not word or not names:
        return ""
    by_fold: dict[str, str] = {}
    for n in names:
        by_fold.setdefault(_folded(n), n)
    folded = _folded(word)
    if not folded:
        return ""
    prefixed = [n for f, n in by_fold.items() if f.startswith(folded)]
    if folded in by_fold:
        close = [by_fold[folded]]
    elif len(prefixed) == 1:
        close = prefixed
    else:
        scored = sorted(((difflib.SequenceMatcher(None, folded, f).ratio(), n) for f, n in by_fold.items()),
                        key=lambda sn: -sn[0])
        best = scored[0][0]
        close = [n for r, n in scored if r >= 0.6 and r >= best - 0.05][:3]
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"

