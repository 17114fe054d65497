"""Which operators a ``.tflite`` file uses, read from the flatbuffer itself (standard library only).

The one reader of a file's ops: the int8 exporter records them in the manifest (``tflm.ops``) and
the firmware project registers them. A TFLM firmware registers exactly these in its ``MicroMutableOpResolver`` (one ``AddXxx()`` call per
op, the template size equal to their count), so the list must come from the files, not from a fixed
guess. The reader follows the TFLite schema (``schema.fbs``): ``Model.operator_codes`` (field 1) is a
vector of ``OperatorCode`` tables whose op is ``max(deprecated_builtin_code, builtin_code)`` (fields 0
and 3; the int8 field holds codes < 127 in old files, the int32 field all codes in new ones), with
``custom_code`` (field 1) for custom ops and ``version`` (field 2). The flatbuffer layout is
FlatBuffers' binary format: little-endian offsets, a table starts with a signed offset to its vtable.
The op-name table ships as ``tflm_ops.json`` (codes from the schema, resolver methods from TFLM).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from edgeode.errors import PackError

__all__ = ["OpUse", "resolver_method", "tflite_ops"]

_IDENT = b"TFL3"


@dataclass(frozen=True)
class OpUse:
    """One operator a model uses: its schema name (``FULLY_CONNECTED``), builtin code and version."""

    name: str
    code: int
    version: int


@lru_cache(maxsize=1)
def _table() -> dict:
    text = resources.files("edgeode.firmware").joinpath("tflm_ops.json").read_text(encoding="utf-8")
    return json.loads(text)["ops"]


def resolver_method(op: str) -> str:
    """The ``MicroMutableOpResolver`` method that registers ``op`` (``"FULLY_CONNECTED"`` -> ``"AddFullyConnected"``).

    Raises:
        PackError: TFLM has no kernel for this op (the message names it).
    """
    entry = _table().get(op)
    if entry is None:
        raise PackError(f"TensorFlow Lite Micro has no kernel for op {op}; re-export the model without it "
                        "(edgeode's int8 export uses only TFLM ops)")
    return entry["resolver"]


class _Buffer:
    def __init__(self, data: bytes, where: str):
        self.data, self.where = data, where

    def _unpack(self, fmt: str, pos: int):
        try:
            return struct.unpack_from(fmt, self.data, pos)[0]
        except struct.error:
            raise PackError(f"{self.where}: not a valid .tflite flatbuffer (offset {pos} outside the file); "
                            "re-export the bundle") from None

    def u32(self, pos: int) -> int:
        return self._unpack("<I", pos)

    def field_pos(self, table: int, index: int) -> int | None:
        """Absolute position of field ``index`` of the table at ``table``, or None if absent."""
        vtable = table - self._unpack("<i", table)
        vsize = self._unpack("<H", vtable)
        slot = 4 + 2 * index
        if slot >= vsize:
            return None
        off = self._unpack("<H", vtable + slot)
        return table + off if off else None

    def scalar(self, table: int, index: int, fmt: str, default: int) -> int:
        pos = self.field_pos(table, index)
        return default if pos is None else self._unpack(fmt, pos)

    def table_vector(self, table: int, index: int) -> list[int]:
        pos = self.field_pos(table, index)
        if pos is None:
            return []
        vec = pos + self.u32(pos)
        n = self.u32(vec)
        if n > 10_000:
            raise PackError(f"{self.where}: {n} operator codes; not a model file edgeode wrote")
        return [vec + 4 + 4 * i + self.u32(vec + 4 + 4 * i) for i in range(n)]


def tflite_ops(path: str | Path) -> list[OpUse]:
    """The operators of the ``.tflite`` file at ``path``, in the file's order.

    Raises:
        PackError: not a TFLite flatbuffer, or a custom op (TFLM firmware built here has none).
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != _IDENT:
        raise PackError(f"{path}: not a .tflite file (no TFL3 identifier); re-export the bundle")
    buf = _Buffer(data, str(path))
    model = buf.u32(0)
    by_code = {entry["code"]: name for name, entry in _table().items()}
    ops = []
    for table in buf.table_vector(model, 1):
        if buf.field_pos(table, 1) is not None:
            raise PackError(f"{path}: uses a custom operator; edgeode's firmware registers builtin TFLM ops only")
        code = max(buf.scalar(table, 0, "<b", 0), buf.scalar(table, 3, "<i", 0))
        name = by_code.get(code, f"BUILTIN_{code}")
        ops.append(OpUse(name, code, buf.scalar(table, 2, "<i", 1)))
    return ops
