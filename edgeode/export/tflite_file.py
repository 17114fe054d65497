"""Rewriting an exported ``.tflite`` flatbuffer so that it holds only what an interpreter needs.

litert-torch stores each tensor's full module path as its name (``serving_default_x:0``,
``...;model/block/field/net/2/conv/Conv2D;...``): over half of a small file, and several hundred KB
in an unrolled (``fused``) graph, all of it flash on a microcontroller. No interpreter reads those
names: LiteRT addresses a model's inputs and outputs through its SignatureDef (whose own names,
``x``, ``t``, ``h``, ``logits``..., are kept), TFLM by index. :func:`compact_tflite` renames every
tensor to its index (short and still unique, as ai-edge-quantizer needs when it quantizes the file
later: it keys activation ranges by tensor name; in a file with several subgraphs, the fused
``WHILE`` of :mod:`edgeode.export.fused_tflite`, the subgraph's index is a prefix).

The file is re-serialised with TFLite's own schema classes (``schema_py_generated`` from
ai-edge-litert). ``schema.fbs`` asks for constant buffers aligned to 16 bytes (``Buffer.data``,
``force_align: 16``), so that int32 biases and float weights can be read in place on a Cortex-M; the
Python flatbuffers builder aligns a ``[ubyte]`` vector to 1 byte only (and the files litert-torch and
ai-edge-quantizer write here had buffers 4-byte aligned, measured): they are written 16-aligned here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeode.errors import ExportError

__all__ = ["BUFFER_ALIGN", "compact_tflite", "compact_tflite_file", "pack_model", "read_model", "write_model"]

#: alignment of each constant buffer's bytes in the file (``force_align: 16`` in TFLite's schema.fbs)
BUFFER_ALIGN = 16
_IDENT = b"TFL3"


def read_model(data: bytes):
    """``data`` (a TFLite flatbuffer) as TFLite's object API ``ModelT``, to edit and :func:`pack_model`.

    Raises:
        ExportError: ``data`` is not a TFLite flatbuffer.
    """
    from ai_edge_litert import schema_py_generated as schema

    if len(data) < 8 or data[4:8] != _IDENT:
        raise ExportError("not a TFLite flatbuffer (no TFL3 identifier); report this bug")
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    for buf in model.buffers or []:
        _inline(buf, data)
    return model


def _inline(buf, data: bytes) -> None:
    """Move a constant stored after the flatbuffer (``Buffer.offset`` / ``size``, from the start of the file)
    into the buffer itself. ai-edge-quantizer writes every model whose constants pack to 256 KB or more
    that way (``model_modifier._serialize_model``; the MNIST ResNet's int8 file, measured); the rewritten
    file holds its constants inline, as litert-torch's do (they must stay under the flatbuffer's 2 GB)."""
    if not buf.offset:
        return
    end = buf.offset + buf.size
    if buf.offset < 8 or end > len(data):
        raise ExportError(f"a TFLite constant at bytes {buf.offset}..{end} lies outside the {len(data):,}-byte file; "
                          "the file is truncated: export again")
    buf.data = np.frombuffer(data, np.uint8, buf.size, buf.offset)
    buf.offset = buf.size = 0


def _pack_buffer(builder, buf) -> int:
    """``BufferT.Pack`` with the data vector aligned to :data:`BUFFER_ALIGN` bytes."""
    from ai_edge_litert import schema_py_generated as schema

    data = None
    if buf.data is not None and len(buf.data):
        raw = np.asarray(buf.data, np.uint8).tobytes()
        builder.StartVector(1, len(raw), BUFFER_ALIGN)
        builder.head -= len(raw)
        builder.Bytes[builder.head:builder.head + len(raw)] = raw
        data = builder.EndVector()
    schema.BufferStart(builder)
    if data is not None:
        schema.BufferAddData(builder, data)
    schema.BufferAddOffset(builder, buf.offset)
    schema.BufferAddSize(builder, buf.size)
    return schema.BufferEnd(builder)


def pack_model(model) -> bytes:
    """Serialise a ``ModelT`` as a TFLite file, constant buffers :data:`BUFFER_ALIGN`-aligned.

    Raises:
        ExportError: its constants still live outside the flatbuffer (:func:`read_model` inlines them).
    """
    import flatbuffers

    for buf in model.buffers or []:
        if buf.offset:
            raise ExportError("a TFLite file with constants outside the flatbuffer cannot be rewritten; read it "
                              "with read_model, which moves them inline")
        buf.Pack = lambda builder, _buf=buf: _pack_buffer(builder, _buf)
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(model.Pack(builder), file_identifier=_IDENT)
    return bytes(builder.Output())


def write_model(path: str | Path, model) -> int:
    """:func:`pack_model` written to ``path`` atomically (temp file + rename); returns the new size."""
    path = Path(path)
    out = pack_model(model)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(out)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(out)


def _names_by_index(model):
    """Each tensor named by its index (``"7"``), prefixed by its subgraph's after the first (``"2.7"``):
    unique in the whole file, as ai-edge-quantizer requires of a file with a ``WHILE`` loop."""
    for k, sub in enumerate(model.subgraphs or []):
        prefix = f"{k}." if k else ""
        for i, tensor in enumerate(sub.tensors or []):
            tensor.name = f"{prefix}{i}".encode()
    return model


def compact_tflite(data: bytes) -> bytes:
    """``data`` (a TFLite flatbuffer) with every tensor named by its index, constant buffers 16-aligned."""
    return pack_model(_names_by_index(read_model(data)))


def compact_tflite_file(path: str | Path) -> int:
    """Rewrite the TFLite file at ``path`` as :func:`compact_tflite` does (atomically); returns the bytes saved."""
    path = Path(path)
    before = path.stat().st_size
    return before - write_model(path, _names_by_index(read_model(path.read_bytes())))
