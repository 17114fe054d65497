"""Typed errors shared by every part of edgeode.

Every error a user can cause carries the problem *and* the fix in its message, and is a subclass
of :class:`EdgeodeError` so a caller (or the CLI) can catch them all at once. User input is never
checked with ``assert`` (asserts vanish under ``python -O``).

This module imports only the standard library: the torch-free runtime uses it.
"""

from __future__ import annotations

__all__ = [
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
    "DeviceError",
    "PackError",
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


class DeviceError(EdgeodeError, ValueError):
    """A device profile is unknown or malformed."""


class PackError(EdgeodeError):
    """A device package could not be built."""
