"""The whole ODE-Net (or a dynamics trajectory) as one ONNX graph: the solve is an ONNX ``Loop``.

The exported field graph f(t, h) is inlined once per Runge–Kutta stage into the body of a ``Loop``
whose trip count is the graph input ``steps`` (int64 scalar). ``steps`` is also an initializer
holding the trained step count, so it is *optional*: a caller that does not feed it gets the
manifest's solve, one that does gets a finer or coarser one (``dt = (t1 - t0) / steps`` is computed
in the graph). ``t`` is loop state. One step with tableau ``(a, b, c)`` (Butcher 2016, §23)::

    k_i = f(t + c_i dt, h + dt Σ_j a_ij k_j),     h' = h + dt Σ_i b_i k_i,     t' = t + dt

Encoder and head graphs are inlined before and after the loop (classifier), or the loop emits every
state as a scan output and the graph returns ``[steps + 1, B, D]`` (dynamics), or a GRU cell is inlined
after the loop (a series bundle's ``observe``: the solve across one gap, then the update at the
observation; ``dt`` and ``steps`` are inputs there, the field autonomous). The field's weights
are initializers of the loop body (stored once however many stages the tableau has; kept out of the
outer scope so that onnxruntime can treat them as constants and pre-pack the convolution weights).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeode.errors import ExportError
from edgeode.tableaus import ButcherTableau

__all__ = ["build_fused_classifier", "build_fused_observe", "build_fused_trajectory"]


class _Inliner:
    """Copies a graph's nodes into another graph under fresh names."""

    def __init__(self) -> None:
        self.initializers: list[onnx.TensorProto] = []
        self._init_names: dict[str, dict[str, str]] = {}

    def take_initializers(self, prefix: str) -> list[onnx.TensorProto]:
        """Remove and return the initializers registered under ``prefix`` (to store them in a subgraph)."""
        taken = [init for init in self.initializers if init.name.startswith(prefix)]
        self.initializers = [init for init in self.initializers if not init.name.startswith(prefix)]
        return taken

    def add_initializers(self, graph: onnx.GraphProto, prefix: str) -> dict[str, str]:
        """Register ``graph``'s initializers (once per ``prefix``) under ``prefix``; returns old -> new names."""
        key = prefix
        if key not in self._init_names:
            names = {}
            for init in graph.initializer:
                new = onnx.TensorProto()
                new.CopyFrom(init)
                new.name = prefix + init.name
                names[init.name] = new.name
                self.initializers.append(new)
            self._init_names[key] = names
        return self._init_names[key]

    def inline(self, graph: onnx.GraphProto, prefix: str, init_prefix: str, inputs: dict[str, str]) -> tuple[list, list[str]]:
        """Nodes of ``graph`` with graph inputs renamed by ``inputs``, intermediates prefixed.

        Returns the nodes and the new names of the graph outputs (in order).
        """
        if graph.sparse_initializer:
            raise ExportError("cannot inline an ONNX graph with sparse initializers")
        names = dict(self.add_initializers(graph, init_prefix))
        for inp in graph.input:
            if inp.name in names:
                continue  # an initializer that is also a graph input: keep its default
            if inp.name not in inputs:
                raise ExportError(f"inlining {prefix!r}: no value given for graph input {inp.name!r}")
            names[inp.name] = inputs[inp.name]
        nodes = []
        for node in graph.node:
            if any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for attr in node.attribute):
                raise ExportError(f"cannot inline node {node.op_type} with a subgraph; export the field without control flow")
            new = onnx.NodeProto()
            new.CopyFrom(node)
            new.name = prefix + (node.name or node.op_type)
            new.doc_string = ""
            del new.metadata_props[:]
            del new.input[:]
            del new.output[:]
            for name in node.input:
                new.input.append(names.get(name, prefix + name) if name else "")
            for name in node.output:
                if name:
                    names[name] = prefix + name
                new.output.append(names.get(name, "") if name else "")
            nodes.append(new)
        return nodes, [names[o.name] for o in graph.output]


def _const(name: str, value: float) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=name, value=helper.make_tensor(name, TensorProto.FLOAT, [], [value]))


def _coef(key: str, value: float) -> str:
    """Name of the value ``value * dt`` (``dt`` itself for 1: no Mul-by-one for onnxruntime to rewrite)."""
    return "dt" if value == 1.0 else f"coef_{key}"


def _loop_body(field: onnx.GraphProto, inl: _Inliner, tableau: ButcherTableau, scan: bool) -> onnx.GraphProto:
    """The body of one step: inputs (iter, cond, t, h), outputs (cond, t', h'[, h' as scan output])."""
    nodes = [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="cond_id")]
    ks: list[str] = []
    for i, (row, c_i) in enumerate(zip(tableau.a, tableau.c, strict=True)):
        p = f"s{i}/"
        y = "h_in"
        for j, a_ij in enumerate(row):
            if a_ij == 0.0:
                continue
            nodes += [helper.make_node("Mul", [_coef(f"a{i}_{j}", a_ij), ks[j]], [p + f"ak{j}"], name=p + f"mul_a{j}"),
                      helper.make_node("Add", [y, p + f"ak{j}"], [p + f"y{j}"], name=p + f"add_a{j}")]
            y = p + f"y{j}"
        t = "t_in"
        if c_i != 0.0:
            nodes.append(helper.make_node("Add", ["t_in", _coef(f"c{i}", c_i)], [p + "t"], name=p + "add_t"))
            t = p + "t"
        # f(t, h), or an autonomous f(h) (a series field): the state is the last input
        feeds = {field.input[-1].name: y, **({field.input[0].name: t} if len(field.input) > 1 else {})}
        stage_nodes, (k,) = inl.inline(field, p, "field/", feeds)
        nodes += stage_nodes
        ks.append(k)
    h = "h_in"
    for i, (b_i, k) in enumerate(zip(tableau.b, ks, strict=True)):
        if b_i == 0.0:
            continue
        nodes += [helper.make_node("Mul", [_coef(f"b{i}", b_i), k], [f"bk{i}"], name=f"mul_b{i}"),
                  helper.make_node("Add", [h, f"bk{i}"], [f"h_acc{i}"], name=f"add_b{i}")]
        h = f"h_acc{i}"
    nodes.append(helper.make_node("Identity", [h], ["h_out"], name="h_out_id"))
    nodes.append(helper.make_node("Add", ["t_in", "dt"], ["t_out"], name="t_next"))
    outputs = [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
               helper.make_tensor_value_info("t_out", TensorProto.FLOAT, []),
               helper.make_tensor_value_info("h_out", TensorProto.FLOAT, None)]
    if scan:
        nodes.append(helper.make_node("Identity", ["h_out"], ["h_scan"], name="h_scan_id"))
        outputs.append(helper.make_tensor_value_info("h_scan", TensorProto.FLOAT, None))
    inputs = [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
              helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
              helper.make_tensor_value_info("t_in", TensorProto.FLOAT, []),
              helper.make_tensor_value_info("h_in", TensorProto.FLOAT, None)]
    # The field's weights live in the body graph itself: onnxruntime treats only a graph's own
    # initializers as constants (pre-packed conv weights, NCHWc layout); outer-scope values are not.
    return helper.make_graph(nodes, "rk_step", inputs, outputs, initializer=inl.take_initializers("field/"))


def _solver_nodes(tableau: ButcherTableau, t0: float, t1: float) -> list[onnx.NodeProto]:
    """dt = (t1 - t0) / steps and the per-step coefficients a_ij dt, b_i dt, c_i dt (outer scope)."""
    nodes = [_const("t0", t0), _const("span", t1 - t0),
             helper.make_node("Cast", ["steps"], ["steps_f"], to=TensorProto.FLOAT, name="steps_f"),
             helper.make_node("Div", ["span", "steps_f"], ["dt"], name="dt")]
    return nodes + _coef_nodes(tableau)


def _coef_nodes(tableau: ButcherTableau) -> list[onnx.NodeProto]:
    """The per-step coefficients a_ij dt, b_i dt, c_i dt of the value ``dt`` (outer scope)."""
    nodes = []
    coefs = {f"a{i}_{j}": a for i, row in enumerate(tableau.a) for j, a in enumerate(row) if a != 0.0}
    coefs.update({f"b{i}": b for i, b in enumerate(tableau.b) if b != 0.0})
    coefs.update({f"c{i}": c for i, c in enumerate(tableau.c) if c != 0.0})
    for key, value in coefs.items():
        if value == 1.0:
            continue
        nodes += [_const(f"{key}_val", value), helper.make_node("Mul", [f"{key}_val", "dt"], [f"coef_{key}"], name=f"coef_{key}")]
    return nodes


def _finish(nodes, inl: _Inliner, inputs, outputs, steps: int | None, parts: list[onnx.ModelProto],
            name: str) -> onnx.ModelProto:
    """The checked model; ``steps`` the default of the ``steps`` input (None: the caller must feed it)."""
    defaults = [] if steps is None else [numpy_helper.from_array(np.array(steps, dtype=np.int64), "steps")]
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=[*inl.initializers, *defaults])
    opsets: dict[str, int] = {}
    for part in parts:
        for op in part.opset_import:
            opsets[op.domain] = max(opsets.get(op.domain, 0), op.version)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                              producer_name="edgeode")
    model.ir_version = max(part.ir_version for part in parts)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ExportError(f"the fused ONNX graph {name!r} is invalid: {exc}") from exc
    return model


def _steps_input() -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("steps", TensorProto.INT64, [])


def build_fused_classifier(encoder: onnx.ModelProto, field: onnx.ModelProto, head: onnx.ModelProto,
                           tableau: ButcherTableau, t0: float, t1: float, steps: int) -> onnx.ModelProto:
    """x -> encoder -> Loop(steps) of RK steps of ``field`` -> head -> logits, as one checked model."""
    inl = _Inliner()
    x = encoder.graph.input[0]
    enc_nodes, (h0,) = inl.inline(encoder.graph, "enc/", "enc/", {x.name: "x"})
    body = _loop_body(field.graph, inl, tableau, scan=False)
    loop = helper.make_node("Loop", ["steps", "", "t0", h0], ["t_final", "h_final"], body=body, name="solve")
    head_nodes, (logits,) = inl.inline(head.graph, "head/", "head/", {head.graph.input[0].name: "h_final"})
    head_nodes.append(helper.make_node("Identity", [logits], ["logits"], name="logits"))
    x_in = onnx.ValueInfoProto()
    x_in.CopyFrom(x)
    x_in.name = "x"
    out = onnx.ValueInfoProto()
    out.CopyFrom(head.graph.output[0])
    out.name = "logits"
    nodes = [*enc_nodes, *_solver_nodes(tableau, t0, t1), loop, *head_nodes]
    return _finish(nodes, inl, [x_in, _steps_input()], [out], steps, [encoder, field, head], "odenet_fused")


def build_fused_trajectory(field: onnx.ModelProto, tableau: ButcherTableau, t0: float, t1: float,
                           steps: int, state_dim: int) -> onnx.ModelProto:
    """y0 [B, D] -> states [steps + 1, B, D] on the uniform grid, as one checked model."""
    inl = _Inliner()
    body = _loop_body(field.graph, inl, tableau, scan=True)
    loop = helper.make_node("Loop", ["steps", "", "t0", "y0"], ["t_final", "h_final", "scan"], body=body, name="solve")
    nodes = [*_solver_nodes(tableau, t0, t1), loop,
             helper.make_node("Constant", [], ["axis0"], value=helper.make_tensor("axis0", TensorProto.INT64, [1], [0])),
             helper.make_node("Unsqueeze", ["y0", "axis0"], ["y0_row"], name="y0_row"),
             helper.make_node("Concat", ["y0_row", "scan"], ["states"], axis=0, name="states")]
    y0 = helper.make_tensor_value_info("y0", TensorProto.FLOAT, ["batch", state_dim])
    states = helper.make_tensor_value_info("states", TensorProto.FLOAT, ["steps_plus_1", "batch", state_dim])
    return _finish(nodes, inl, [y0, _steps_input()], [states], steps, [field], "trajectory_fused")


def build_fused_observe(field: onnx.ModelProto, cell: onnx.ModelProto, tableau: ButcherTableau) -> onnx.ModelProto:
    """(x [B, C], h [B, H], dt, steps) -> h_new [B, H]: ``steps`` RK steps of ``dt`` of the autonomous ``field``
    f(h) (0 steps: none, the first observation), then the GRU ``cell`` (x, h) -> h_new, as one checked model.

    One backend call per observation of an ODE-RNN (Rubanova et al. 2019, arXiv 1907.03907, Algorithm 1)
    where the separate files take ``stages x steps + 1``. ``dt`` (float32 scalar, the step: gap / steps) and
    ``steps`` (int64 scalar) must be fed; the caller picks them by ``interval_steps(gap, max_step)``.
    """
    inl = _Inliner()
    body = _loop_body(field.graph, inl, tableau, scan=False)
    loop = helper.make_node("Loop", ["steps", "", "t0", "h"], ["t_final", "h_solved"], body=body, name="solve")
    x_name, h_name = (i.name for i in cell.graph.input[:2])
    cell_nodes, (h_new,) = inl.inline(cell.graph, "cell/", "cell/", {x_name: "x", h_name: "h_solved"})
    cell_nodes.append(helper.make_node("Identity", [h_new], ["h_new"], name="h_new"))
    inputs = []
    for src, name in ((cell.graph.input[0], "x"), (cell.graph.input[1], "h")):
        value = onnx.ValueInfoProto()
        value.CopyFrom(src)
        value.name = name
        inputs.append(value)
    inputs += [helper.make_tensor_value_info("dt", TensorProto.FLOAT, []), _steps_input()]
    out = onnx.ValueInfoProto()
    out.CopyFrom(cell.graph.output[0])
    out.name = "h_new"
    nodes = [_const("t0", 0.0), *_coef_nodes(tableau), loop, *cell_nodes]
    return _finish(nodes, inl, inputs, [out], None, [field, cell], "observe_fused")
