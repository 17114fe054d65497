"""Multiply-accumulates per inference, counted from an ONNX graph.

Counted operators (one MAC = one multiply and one add):

* ``Conv``: ``prod(output shape) * (C_in / group) * prod(kernel)``
* ``ConvTranspose``: ``prod(input shape) * (C_out / group) * prod(kernel)``
* ``Gemm``: ``M * N * K``
* ``MatMul``: ``prod(output shape) * K`` (broadcast batch dimensions included)

Everything else (normalisation, activations, additions) is cheap next to these and not counted, as is
usual for MAC/FLOP tables of CNNs. A ``Loop`` body is counted once per iteration: the trip count is
read from the graph when it is a constant, else taken from ``loop_trips`` (for a fused ODE solve the
trip count is the number of solver steps, a runtime input, so the profiler passes the manifest's
``solver.steps``). Shapes come from ONNX shape inference after fixing the dynamic batch dimension of
the graph inputs to ``batch``; a node whose shapes stay unknown is listed in ``unknown`` rather than
guessed.

Needs the ``onnx`` package (a host-side dependency, installed with ``edgeode[train]``); the rest of
the profiler works without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeode.errors import BackendError, BundleError

__all__ = ["MacCount", "count_macs"]

COUNTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class MacCount:
    """MACs of one graph: ``total``, per operator type, the Loops met (name -> trip count) and the
    counted nodes whose shapes were unknown (their MACs are missing from ``total``)."""

    total: int = 0
    by_op: dict[str, int] = field(default_factory=dict)
    peak_activation_bytes: int = 0
    loops: dict[str, int] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    """``peak_activation_bytes``: the largest sum of one node's non-constant inputs and outputs
    (float32, 4 bytes per element): a lower bound for the tensor arena an interpreter such as
    TFLite Micro needs, whose weights stay in flash."""

    @property
    def complete(self) -> bool:
        return not self.unknown

    def add(self, op: str, macs: int) -> None:
        self.total += macs
        self.by_op[op] = self.by_op.get(op, 0) + macs

    def to_dict(self) -> dict:
        return {"total": self.total, "by_op": dict(self.by_op), "loops": dict(self.loops),
                "peak_activation_bytes": self.peak_activation_bytes,
                "unknown_nodes": list(self.unknown), "complete": self.complete}


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise BackendError("counting MACs needs the onnx package: pip install onnx (or 'edgeode[train]')") from None
    return onnx


def _prod(values: Any) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def _dims(type_proto: Any) -> list[int] | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims = []
    for d in type_proto.tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(d.dim_value)
        else:
            return None
    return dims


def _shapes(graph: Any, outer: dict[str, list[int]]) -> dict[str, list[int]]:
    shapes = dict(outer)
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        dims = _dims(vi.type)
        if dims is not None:
            shapes[vi.name] = dims
    for node in graph.node:  # Constant nodes carry their shape in the attribute
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = list(attr.t.dims)
    return shapes


def _constants(graph: Any, onnx: Any) -> dict[str, Any]:
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _node_macs(node: Any, shapes: dict[str, list[int]]) -> int | None:
    op = node.op_type
    if op == "Conv":
        out, w = shapes.get(node.output[0]), shapes.get(node.input[1])
        if out is None or w is None:
            return None
        return _prod(out) * _prod(w[1:])
    if op == "ConvTranspose":
        x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
        if x is None or w is None:
            return None
        return _prod(x) * _prod(w[1:])
    if op == "Gemm":
        a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
        if a is None or b is None or len(a) != 2 or len(b) != 2:
            return None
        m, k = (a[1], a[0]) if _attr(node, "transA", 0) else (a[0], a[1])
        n = b[0] if _attr(node, "transB", 0) else b[1]
        return m * n * k
    if op == "MatMul":
        a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
        if a is None or out is None:
            return None
        return _prod(out) * a[-1]
    return 0


def _infer_body(body: Any, node: Any, outer: dict[str, list[int]], opsets: Any, onnx: Any) -> Any:
    """Shape-infer a Loop body as a stand-alone graph: its loop-carried inputs take the shapes of the
    Loop's inputs and names it reads from the enclosing scope become inputs of known shape."""
    from onnx import helper

    g = onnx.GraphProto()
    g.CopyFrom(body)
    carried = list(node.input[2:])
    for vi, outer_name in zip(list(g.input)[2:], carried, strict=False):
        dims = outer.get(outer_name)
        if dims is not None and _dims(vi.type) is None:
            elem = vi.type.tensor_type.elem_type or onnx.TensorProto.FLOAT
            vi.CopyFrom(helper.make_tensor_value_info(vi.name, elem, dims))
    defined = {i.name for i in g.input} | {i.name for i in g.initializer}
    for n in g.node:
        defined.update(n.output)
    extra = []
    for n in g.node:
        for name in n.input:
            if name and name not in defined and name in outer:
                extra.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, outer[name]))
                defined.add(name)
    g.input.extend(extra)
    try:
        model = helper.make_model(g, opset_imports=opsets)
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    except Exception:
        return body
    out = onnx.GraphProto()
    out.CopyFrom(body)
    del out.value_info[:]
    out.value_info.extend(list(inferred.value_info) + list(inferred.input) + list(inferred.output))
    return out


def _walk(graph: Any, outer: dict[str, list[int]], scale: int, result: MacCount, loop_trips: int | None,
          prefix: str, onnx: Any, opsets: Any) -> None:
    shapes = _shapes(graph, outer)
    consts = _constants(graph, onnx)
    for i, node in enumerate(graph.node):
        name = prefix + (node.name or f"{node.op_type}_{i}")
        live = [shapes.get(n) for n in list(node.input) + list(node.output) if n and n not in consts]
        result.peak_activation_bytes = max(result.peak_activation_bytes,
                                           4 * sum(_prod(s) for s in live if s is not None))
        if node.op_type == "Loop":
            trips = None
            if node.input and node.input[0] and node.input[0] in consts:
                trips = int(consts[node.input[0]].reshape(-1)[0])
            elif loop_trips is not None:
                trips = int(loop_trips)
            if trips is None:
                result.unknown.append(f"{name} (Loop trip count is a runtime input; pass loop_trips)")
                trips = 1
            result.loops[name] = trips
            body = _infer_body(_attr(node, "body", None), node, shapes, opsets, onnx)
            _walk(body, shapes, scale * trips, result, loop_trips, name + "/", onnx, opsets)
            continue
        if node.op_type in ("If", "Scan"):
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:  # count the first branch only
                    _walk(attr.g, shapes, scale, result, loop_trips, name + "/", onnx, opsets)
                    break
            continue
        if node.op_type not in COUNTED:
            continue
        macs = _node_macs(node, shapes)
        if macs is None:
            result.unknown.append(name)
        else:
            result.add(node.op_type, macs * scale)


def _pin_loop_outputs(proto: Any, onnx: Any) -> bool:
    """Give each top-level ``Loop``'s final loop-carried values the shape of their initial values.

    ONNX shape inference leaves them unknown when the body's shapes are symbolic, and everything
    after the solve (the classifier head) then has no shapes to count MACs from. A loop-carried
    value of a fixed-step solve keeps its shape across iterations, so the initial value's shape is
    the final one. Returns whether any shape was added (then inference is run again).
    """
    from onnx import helper

    shapes = _shapes(proto.graph, {})
    changed = False
    for node in proto.graph.node:
        if node.op_type != "Loop":
            continue
        for i, name in enumerate(node.output[: max(0, len(node.input) - 2)]):
            dims = shapes.get(node.input[2 + i])
            if not name or dims is None or shapes.get(name) == dims:
                continue
            old = [vi for vi in proto.graph.value_info if vi.name == name]
            elem = old[0].type.tensor_type.elem_type if old and old[0].type.tensor_type.elem_type else onnx.TensorProto.FLOAT
            for vi in old:
                proto.graph.value_info.remove(vi)
            proto.graph.value_info.append(helper.make_tensor_value_info(name, elem, dims))
            changed = True
    return changed


def count_macs(model: str | Path | Any, batch: int = 1, loop_trips: int | None = None) -> MacCount:
    """Count MACs of one inference of ``model`` (a path or an ``onnx.ModelProto``) at ``batch``."""
    onnx = _import_onnx()
    if isinstance(model, (str, Path)):
        try:
            proto = onnx.load(str(model))
        except Exception as exc:
            raise BundleError(f"{model}: cannot read the ONNX file ({exc}); re-export the bundle") from None
    else:
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
    init_names = {i.name for i in proto.graph.initializer}
    for inp in proto.graph.input:  # fix a dynamic batch dimension
        if inp.name in init_names or not inp.type.HasField("tensor_type"):
            continue
        dims = inp.type.tensor_type.shape.dim
        if len(dims) and not (dims[0].HasField("dim_value") and dims[0].dim_value > 0):
            dims[0].Clear()
            dims[0].dim_value = batch
    try:
        proto = onnx.shape_inference.infer_shapes(proto, data_prop=True)
        if _pin_loop_outputs(proto, onnx):
            proto = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:  # inference is best effort: unknown shapes are reported per node
        pass
    result = MacCount()
    _walk(proto.graph, {}, 1, result, loop_trips, "", onnx, list(proto.opset_import))
    return result
