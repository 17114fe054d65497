"""Model files as aligned ``const`` C arrays in flash, and the way back (to prove the bytes are the file's).

TFLM reads a model in place (``tflite::GetModel(ptr)``), so the array must be 16-byte aligned (the
flatbuffer's buffers are aligned relative to its start) and ``const`` so the linker keeps it in flash
rather than copying it to RAM. The array is C++ (``alignas``), as the TFLM code around it.
"""

from __future__ import annotations

import re

from edgeode.errors import PackError

__all__ = ["ALIGN", "c_array_declaration", "c_array_definition", "parse_c_array"]

ALIGN = 16
_PER_LINE = 16


def c_array_declaration(name: str) -> str:
    """The ``extern`` lines for a header."""
    return f"extern const unsigned char {name}[];\nextern const unsigned int {name}_len;"


def c_array_definition(name: str, data: bytes) -> str:
    """``alignas(16) const unsigned char NAME[] = {...}; const unsigned int NAME_len = N;`` holding ``data``."""
    lines = []
    for i in range(0, len(data), _PER_LINE):
        lines.append("    " + ", ".join(f"0x{b:02x}" for b in data[i:i + _PER_LINE]) + ",")
    body = "\n".join(lines)
    return (f"alignas({ALIGN}) extern const unsigned char {name}[] = {{\n{body}\n}};\n"
            f"extern const unsigned int {name}_len = {len(data)};\n")


def parse_c_array(text: str, name: str) -> bytes:
    """The bytes of array ``name`` in C source ``text`` (as written by :func:`c_array_definition`), checked
    against its ``_len``."""
    m = re.search(rf"\b{re.escape(name)}\[\]\s*=\s*\{{(.*?)\}};", text, re.S)
    n = re.search(rf"\b{re.escape(name)}_len\s*=\s*(\d+)\s*;", text)
    if not m or not n:
        raise PackError(f"no array {name} with its {name}_len in the source")
    data = bytes(int(tok, 16) for tok in re.findall(r"0x([0-9a-fA-F]{2})", m.group(1)))
    if len(data) != int(n.group(1)):
        raise PackError(f"array {name} holds {len(data)} bytes but {name}_len says {n.group(1)}")
    return data
