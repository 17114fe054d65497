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

:func:`tflite_graph` reads the first subgraph (the one TFLM runs): ``SubGraph.tensors`` (field 0;
``Tensor.shape`` is field 0) and ``SubGraph.operators`` (field 3; ``Operator.opcode_index``,
``inputs``, ``outputs`` are fields 0-2), enough to count an int8 model's MACs
(:mod:`edgeode.devices.mcu_estimate`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from edgeode.errors import PackError
from edgeode.runtime.flatbuf import FlatBuffer

__all__ = ["OpUse", "GraphOp", "TfliteGraph", "resolver_method", "tflite_ops", "tflite_graph"]

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


@dataclass(frozen=True)
class GraphOp:
    """One operator node: its op name and the shapes of its input and output tensors (``None`` for an
    omitted optional input, index -1 in the file)."""

    op: str
    inputs: tuple[tuple[int, ...] | None, ...]
    outputs: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class TfliteGraph:
    """The operators of a model's first subgraph, in execution order."""

    ops: tuple[GraphOp, ...]


def _open(path: Path, data: bytes | None = None) -> tuple[FlatBuffer, int]:
    """The file's buffer and its root table (``data``: the file's bytes when the caller has read them)."""
    data = path.read_bytes() if data is None else data
    if len(data) < 8 or data[4:8] != _IDENT:
        raise PackError(f"{path}: not a .tflite file (no TFL3 identifier); re-export the bundle")
    buf = FlatBuffer(data, str(path), PackError)
    return buf, buf.u32(0)


def tflite_graph(path: str | Path) -> TfliteGraph:
    """Operators and tensor shapes of the first subgraph of the ``.tflite`` file at ``path``.

    Raises:
        PackError: not a TFLite flatbuffer (or a damaged one), no subgraph, a custom op.
    """
    path = Path(path)
    data = path.read_bytes()
    codes = tflite_ops(path, data)
    buf, model = _open(path, data)
    subgraphs = buf.table_vector(model, 2, "subgraphs")
    if not subgraphs:
        raise PackError(f"{path}: holds no subgraph; re-export the bundle")
    sub = subgraphs[0]
    shapes = [buf.int_vector(t, 0, "shape dimensions") for t in buf.table_vector(sub, 0, "tensors")]

    def shape(i: int) -> tuple[int, ...] | None:
        if i == -1:
            return None
        if not 0 <= i < len(shapes):
            raise PackError(f"{path}: an operator names tensor {i} of {len(shapes)}; re-export the bundle")
        return shapes[i]

    ops = []
    for op in buf.table_vector(sub, 3, "operators"):
        index = buf.scalar(op, 0, "<I", 0)
        if index >= len(codes):
            raise PackError(f"{path}: an operator uses operator code {index} of {len(codes)}; re-export the bundle")
        outs = tuple(shape(i) for i in buf.int_vector(op, 2, "outputs"))
        ops.append(GraphOp(codes[index].name, tuple(shape(i) for i in buf.int_vector(op, 1, "inputs")),
                           tuple(s for s in outs if s is not None)))
    return TfliteGraph(tuple(ops))


def tflite_ops(path: str | Path, data: bytes | None = None) -> list[OpUse]:
    """The operators of the ``.tflite`` file at ``path``, in the file's order (``data``: its bytes, if read already).

    Raises:
        PackError: not a TFLite flatbuffer, or a custom op (TFLM firmware built here has none).
    """
    path = Path(path)
    buf, model = _open(path, data)
    by_code = {entry["code"]: name for name, entry in _table().items()}
    ops = []
    for table in buf.table_vector(model, 1, "operator codes"):
        if buf.field_pos(table, 1) is not None:
            raise PackError(f"{path}: uses a custom operator; edgeode's firmware registers builtin TFLM ops only")
        code = max(buf.scalar(table, 0, "<b", 0), buf.scalar(table, 3, "<i", 0))
        name = by_code.get(code, f"BUILTIN_{code}")
        ops.append(OpUse(name, code, buf.scalar(table, 2, "<i", 1)))
    return ops
