"""Exact ONNX graph rewrites that make the exported parts cheaper for onnxruntime's CPU kernels.

The dynamo exporter lowers ``nn.GroupNorm`` to six nodes: ``Reshape [B, G, -1]``,
``InstanceNormalization`` (unit scale, zero bias), ``Shape``, ``Reshape`` back, and the per-channel
affine as ``Mul(x, gamma[C, 1, 1])`` then ``Add(., beta[C, 1, 1])``. Profiled at batch 32 in the fused
MNIST ODE-Net (benchmarks/inference.py's profile), the affine's two full-tensor passes cost about as
much as the InstanceNormalization itself. Measured alternatives (onnxruntime 1.32, one thread):

* ONNX ``GroupNormalization`` (opset 21) in one node: slower than the decomposition (no dedicated CPU
  kernel; the op is expanded), so it is not used;
* the affine as one ``BatchNormalization`` (mean 0, variance 1, epsilon 0: exactly ``gamma x + beta``,
  one pass): used (:func:`channel_affine_to_batchnorm`);
* the ``Shape`` -> ``Reshape`` pair with a constant target where the shape is static but for the
  batch: used (:func:`static_reshape_targets`), one kernel call fewer per GroupNorm.

Both passes keep the numbers: every file still goes through the export's parity gate.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["optimize_for_cpu", "channel_affine_to_batchnorm", "static_reshape_targets"]


def optimize_for_cpu(model: onnx.ModelProto) -> onnx.ModelProto:
    """Apply every pass of this module to ``model`` (in place) and return it."""
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks, shapes = _shapes(inferred.graph)
    channel_affine_to_batchnorm(model.graph, ranks)
    static_reshape_targets(model.graph, shapes)
    return model


def _shapes(graph: onnx.GraphProto) -> tuple[dict[str, int], dict[str, list[int | None]]]:
    """Rank and dims (``None`` where symbolic) of every value whose shape inference knows them."""
    ranks: dict[str, int] = {}
    shapes: dict[str, list[int | None]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        ranks[vi.name] = len(dims)
        shapes[vi.name] = dims
    return ranks, shapes


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _graph_outputs(graph: onnx.GraphProto) -> set[str]:
    return {o.name for o in graph.output}


def _channel_vector(init: onnx.TensorProto | None, rank: int) -> np.ndarray | None:
    """The per-channel values of a ``[C, 1, ..., 1]`` float initializer broadcast against a rank-``rank`` tensor."""
    if init is None or init.data_type != onnx.TensorProto.FLOAT or rank < 3:
        return None
    dims = list(init.dims)
    if len(dims) != rank - 1 or any(d != 1 for d in dims[1:]):
        return None
    return numpy_helper.to_array(init).reshape(-1)


def channel_affine_to_batchnorm(graph: onnx.GraphProto, ranks: dict[str, int]) -> int:
    """``Add(Mul(x, gamma), beta)`` with ``[C, 1, .., 1]`` constants -> one inference ``BatchNormalization``.

    ``x`` must be of known rank >= 3 (N, C, spatial...), the Mul's output used only by the Add and not
    a graph output. BatchNormalization with mean 0, variance 1 and epsilon 0 computes
    ``gamma * x + beta``. Returns the number of rewrites.
    """
    inits = {init.name: init for init in graph.initializer}
    consumers = _consumers(graph)
    outputs = _graph_outputs(graph)
    drop: set[int] = set()
    replace: dict[int, onnx.NodeProto] = {}
    new_inits: list[onnx.TensorProto] = []
    count = 0
    for node in graph.node:
        if node.op_type != "Mul" or len(node.input) != 2:
            continue
        users = consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "Add" or node.output[0] in outputs:
            continue
        add = users[0]
        x, s = (node.input[0], node.input[1]) if node.input[1] in inits else (node.input[1], node.input[0])
        b = add.input[1] if add.input[0] == node.output[0] else add.input[0]
        rank = ranks.get(x)
        if rank is None or x in inits:
            continue
        gamma, beta = _channel_vector(inits.get(s), rank), _channel_vector(inits.get(b), rank)
        if gamma is None or beta is None or gamma.shape != beta.shape:
            continue
        stem = f"{node.name or node.output[0]}/bn_"
        params = {"scale": gamma, "bias": beta, "mean": np.zeros_like(gamma), "var": np.ones_like(gamma)}
        names = []
        for key, value in params.items():
            init = numpy_helper.from_array(value.astype(np.float32), stem + key)
            new_inits.append(init)
            names.append(init.name)
        bn = helper.make_node("BatchNormalization", [x, *names], [add.output[0]], name=stem + "node", epsilon=0.0)
        replace[id(node)] = bn
        drop.add(id(add))
        count += 1
    if count:
        nodes = [replace.get(id(n), n) for n in graph.node if id(n) not in drop]
        del graph.node[:]
        graph.node.extend(nodes)
        graph.initializer.extend(new_inits)
        _drop_unused_initializers(graph)
    return count


def static_reshape_targets(graph: onnx.GraphProto, shapes: dict[str, list[int | None]]) -> int:
    """``Reshape(y, Shape(x))`` -> ``Reshape(y, [-1, d1, ..., dk])`` where only x's first dim is symbolic.

    The dynamo exporter restores GroupNorm's input shape this way; with the constant target the
    ``Shape`` node (one kernel call per GroupNorm per field evaluation) disappears. Returns the count.
    """
    producers = {o: n for n in graph.node for o in n.output}
    count = 0
    targets: dict[str, str] = {}
    new_inits: list[onnx.TensorProto] = []
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        shape_node = producers.get(node.input[1])
        if shape_node is None or shape_node.op_type != "Shape" or not _whole_shape(shape_node):
            continue
        dims = shapes.get(shape_node.input[0])
        if not dims or len(dims) < 2 or any(d is None or d <= 0 for d in dims[1:]):
            continue
        key = shape_node.input[0]
        if key not in targets:
            init = numpy_helper.from_array(np.array([-1, *dims[1:]], dtype=np.int64), f"{shape_node.output[0]}/static")
            new_inits.append(init)
            targets[key] = init.name
        node.input[1] = targets[key]
        count += 1
    if count:
        graph.initializer.extend(new_inits)
        used = {name for n in graph.node for name in n.input} | _graph_outputs(graph)
        nodes = [n for n in graph.node if n.op_type != "Shape" or any(o in used for o in n.output)]
        del graph.node[:]
        graph.node.extend(nodes)
        _drop_stale_value_info(graph)
    return count


def _whole_shape(node: onnx.NodeProto) -> bool:
    """A ``Shape`` node that returns every dim (no ``end``, ``start`` absent or 0)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return "end" not in attrs and attrs.get("start", 0) == 0


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for n in graph.node for name in n.input} | _graph_outputs(graph) | {i.name for i in graph.input}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    _drop_stale_value_info(graph)


def _drop_stale_value_info(graph: onnx.GraphProto) -> None:
    """Forget the shapes of values no node produces any more (and of initializers that were dropped)."""
    live = {o for n in graph.node for o in n.output} | {i.name for i in graph.initializer} | {i.name for i in graph.input}
    keep = [vi for vi in graph.value_info if vi.name in live]
    del graph.value_info[:]
    graph.value_info.extend(keep)
