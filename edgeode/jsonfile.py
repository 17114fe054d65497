"""Reading a JSON file that may be hostile (a bundle's manifest, a device profile) without a traceback.

``json.loads`` alone turns bad files into errors that are no part of a JSON syntax error: a
5,000-digit integer raises ``ValueError`` (Python's int-string conversion limit), a deeply nested
array ``RecursionError``, and ``NaN`` / ``1e999`` are accepted as floats that no field can use. Here
every such file is refused with the caller's typed error, naming the file and the fix; a file larger
than ``max_bytes`` is refused before it is read.

Standard library only: the torch-free runtime uses it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["MAX_JSON_BYTES", "MAX_INT_DIGITS", "read_json"]

MAX_JSON_BYTES = 16 << 20
"""The largest JSON file read (16 MiB); a manifest is a few KB."""

MAX_INT_DIGITS = 19
"""Integers with more digits than a 64-bit integer can hold are refused (no field needs them)."""


class _Refused(ValueError):
    """Raised inside the parser hooks; turned into the caller's error with its message."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer with {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS} are accepted)")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} is out of the float range")
    return value


def _parse_constant(name: str) -> float:
    raise _Refused(f"{name} is not a JSON number (a field needs a finite value)")


def read_json(path: str | Path, error: type[Exception], fix: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse the JSON file at ``path``; any problem raises ``error(message)`` where the message ends with ``fix``.

    Refused: a file over ``max_bytes``, bytes that are not UTF-8, invalid JSON, integers over
    :data:`MAX_INT_DIGITS` digits, ``NaN`` / ``Infinity`` / out-of-range floats, and nesting deeper
    than the parser's recursion limit.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{path} is {size:,} bytes, more than the {max_bytes:,} a JSON file here may hold; {fix}")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); {fix}") from None
    except OSError as exc:
        raise error(f"cannot read {path} ({exc.strerror or exc}); {fix}") from None
    try:
        return json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not valid JSON ({exc}); the file is truncated or corrupt: {fix}") from None
    except _Refused as exc:
        raise error(f"{path} holds {exc}; {fix}") from None
    except RecursionError:
        raise error(f"{path} is nested too deeply to parse (a manifest is a few levels deep); {fix}") from None
    except (ValueError, MemoryError) as exc:
        raise error(f"{path} cannot be parsed ({type(exc).__name__}: {str(exc)[:200]}); {fix}") from None
