"""Just enough of the FlatBuffers binary format to follow a ``.tflite`` file's tables, vectors and strings.

One reader for the two places that read TFLite files without TFLite's own schema classes: the
contract record in a file's metadata (:mod:`edgeode.runtime.contract`, torch- and LiteRT-free) and the
operators and tensor shapes a firmware needs (:mod:`edgeode.firmware.tflite_ops`). Every read is
bounds-checked: a position outside the file raises the caller's error type naming the file, never
``struct.error``. Layout as in the FlatBuffers format's documentation: a table starts with the signed
offset back to its vtable; the vtable holds its own size, then one 16-bit offset per field (0: absent);
a vector or string is a 32-bit count followed by its items. Standard library only.
"""

from __future__ import annotations

import struct

__all__ = ["FlatBuffer", "MAX_ITEMS"]

#: most items a vector may hold (no file edgeode writes comes near; a damaged count is refused)
MAX_ITEMS = 100_000


class FlatBuffer:
    """The flatbuffer ``data`` (from ``where``, for messages); damage raises ``error`` (an exception type)."""

    def __init__(self, data: bytes, where: str, error: type[Exception] = ValueError):
        self.data, self.where, self.error = data, where, error

    def unpack(self, fmt: str, pos: int):
        try:
            if pos < 0:
                raise struct.error("negative offset")
            return struct.unpack_from(fmt, self.data, pos)[0]
        except struct.error:
            raise self.error(f"{self.where}: not a valid .tflite flatbuffer (offset {pos} outside the file); "
                             "re-export the bundle") from None

    def u32(self, pos: int) -> int:
        return self.unpack("<I", pos)

    def root(self) -> int:
        """Position of the root table."""
        return self.u32(0)

    def field_pos(self, table: int, index: int) -> int | None:
        """Absolute position of field ``index`` of the table at ``table``, or None if absent."""
        vtable = table - self.unpack("<i", table)
        slot = 4 + 2 * index
        if slot >= self.unpack("<H", vtable):
            return None
        off = self.unpack("<H", vtable + slot)
        return table + off if off else None

    def scalar(self, table: int, index: int, fmt: str, default: int) -> int:
        pos = self.field_pos(table, index)
        return default if pos is None else self.unpack(fmt, pos)

    def ref(self, table: int, index: int) -> int | None:
        """Position of the table, vector or string field ``index`` refers to, or None if absent."""
        pos = self.field_pos(table, index)
        return None if pos is None else pos + self.u32(pos)

    def vector(self, table: int, index: int, what: str = "items") -> tuple[int, int] | None:
        """(position of the first item, count) of a vector field, or None if absent."""
        vec = self.ref(table, index)
        if vec is None:
            return None
        n = self.u32(vec)
        if n > MAX_ITEMS:
            raise self.error(f"{self.where}: {n} {what}; not a model file edgeode wrote")
        return vec + 4, n

    def table_vector(self, table: int, index: int, what: str = "tables") -> list[int]:
        found = self.vector(table, index, what)
        if found is None:
            return []
        start, n = found
        return [start + 4 * i + self.u32(start + 4 * i) for i in range(n)]

    def int_vector(self, table: int, index: int, what: str) -> tuple[int, ...]:
        found = self.vector(table, index, what)
        if found is None:
            return ()
        start, n = found
        return tuple(self.unpack("<i", start + 4 * i) for i in range(n))

    def bytes_at(self, table: int, index: int) -> bytes:
        """A ``[ubyte]`` vector or string field's bytes (empty if absent)."""
        vec = self.ref(table, index)  # no item limit: a constant buffer holds many bytes
        if vec is None:
            return b""
        start, n = vec + 4, self.u32(vec)
        if start + n > len(self.data):
            raise self.error(f"{self.where}: not a valid .tflite flatbuffer ({n} bytes at {start} run past the end); "
                             "re-export the bundle")
        return self.data[start:start + n]
