"""Option dataclasses rebuilt from their JSON form (a run's ``config.json``), strictly.

A key the dataclass does not have is a :class:`~edgeode.errors.ConfigError` that lists the known ones,
never a silent drop or a ``TypeError`` traceback (STYLE.md: reject unknown keys).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from edgeode.errors import ConfigError

__all__ = ["checked_options"]


def checked_options(cls: type, data: Any, what: str) -> dict:
    """A copy of ``data`` after checking that it is a JSON object whose keys are all fields of dataclass ``cls``.

    ``what`` names the options in the error ("model", "series train"). The caller builds ``cls(**...)``.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{what} options must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown {what} option(s) {sorted(unknown)}; known: {sorted(known)}")
    return dict(data)
