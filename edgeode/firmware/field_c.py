"""A small float field model written out as plain C, from its ONNX file: for a core without TFLM.

This translates the ops an MLP field exports to (``Gemm``/``MatMul``, elementwise ``Add``/``Sub``/
``Mul``/``Div``, ``Pow`` by a constant, ``Tanh``/``Relu``/``Sigmoid``, ``Concat``) for batch 1 into one
C function with the solver's field signature ``int f(float t, const float *h, float *out, void *ctx)``.
The weights become ``static const float`` arrays written as C99 hex-float literals, so they hold exactly
the file's float32 values. It is what the Cortex-M4F proof runs (the spiral bundle's field, a
dependency-free firmware): a conv field or an int8 model goes through TFLM instead.

Reading the ONNX file needs the ``onnx`` package (``pip install 'edgeode[train]'`` or ``pip install onnx``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeode.errors import ExportError

__all__ = ["SUPPORTED_OPS", "FieldSource", "onnx_field_to_c"]

SUPPORTED_OPS = ("Constant", "Identity", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Pow", "Tanh", "Relu",
                 "Sigmoid", "Neg", "Concat")
_BINARY = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/"}
_UNARY = {"Tanh": "tanhf({x})", "Relu": "({x} > 0.0f ? {x} : 0.0f)", "Sigmoid": "1.0f / (1.0f + expf(-{x}))",
          "Neg": "-{x}", "Identity": "{x}"}


@dataclass(frozen=True)
class FieldSource:
    """The field as C: ``header`` to ``<name>.h``, ``source`` to ``<name>.c``; ``function`` is its symbol."""

    name: str
    function: str
    state_size: int
    header: str
    source: str
    #: bytes of constant weights (flash)
    weight_bytes: int
    ops: tuple[str, ...]

    def files(self) -> dict[str, str]:
        return {f"{self.name}.h": self.header, f"{self.name}.c": self.source}


def _hex(x: np.floating) -> str:
    return float(x).hex() + "f"


def _const_array(name: str, values: np.ndarray) -> str:
    flat = [_hex(v) for v in np.asarray(values, np.float32).reshape(-1)]
    rows = [", ".join(flat[i:i + 6]) for i in range(0, len(flat), 6)]
    return f"static const float {name}[{len(flat)}] = {{\n    " + ",\n    ".join(rows) + "\n};"


@dataclass
class _Emitter:
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict[str, tuple[str, int]] = field(default_factory=dict)  # tensor -> (C expression base, size)
    decls: list[str] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    n_const: int = 0
    n_buf: int = 0
    weight_bytes: int = 0

    def const(self, arr: np.ndarray) -> str:
        name = f"w{self.n_const}"
        self.n_const += 1
        self.decls.append(_const_array(name, arr))
        self.weight_bytes += arr.size * 4
        return name

    def buffer(self, size: int) -> str:
        name = f"v{self.n_buf}"
        self.n_buf += 1
        self.decls.append(f"static float {name}[{size}];")
        return name

    def operand(self, name: str, where: str) -> tuple[str, int, bool]:
        """(C array name, size, is_const) of a tensor."""
        if name in self.values:
            base, size = self.values[name]
            return base, size, False
        if name in self.consts:
            arr = self.consts[name]
            return self.const(arr), arr.size, True
        raise ExportError(f"{where}: input {name!r} is neither a graph input, a constant nor computed before")


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _gemm(em: _Emitter, node, where: str) -> None:
    attrs = _attrs(node)
    transpose_b = node.op_type == "Gemm" and attrs.get("transB", 0) == 1
    if node.op_type == "Gemm" and (attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
        raise ExportError(f"{where}: Gemm with transA, alpha or beta other than defaults is not supported")
    x, k, _ = em.operand(node.input[0], where)
    if node.input[1] not in em.consts:
        raise ExportError(f"{where}: the weight of {node.op_type} must be a constant")
    w = em.consts[node.input[1]]
    if w.ndim != 2:
        raise ExportError(f"{where}: {node.op_type} weight of shape {w.shape}; expected a matrix")
    w = w.T if transpose_b else w  # [K, M]
    if w.shape[0] != k:
        raise ExportError(f"{where}: {node.op_type} input has {k} values but the weight expects {w.shape[0]}")
    m = w.shape[1]
    wname = em.const(np.ascontiguousarray(w.T))  # row m holds the weights of output m
    bias = None
    if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
        b = em.consts.get(node.input[2])
        if b is None or b.size != m:
            raise ExportError(f"{where}: Gemm bias must be a constant of {m} values")
        bias = em.const(b.reshape(-1))
    out = em.buffer(m)
    init = f"{bias}[o]" if bias else "0.0f"
    em.body += [f"    for (o = 0; o < {m}; ++o) {{",
                f"        float acc = {init};",
                f"        for (i = 0; i < {k}; ++i) acc += {x}[i] * {wname}[o * {k} + i];",
                f"        {out}[o] = acc;",
                "    }"]
    em.values[node.output[0]] = (out, m)


def _elementwise(em: _Emitter, node, where: str) -> None:
    op = node.op_type
    if op == "Pow":
        exp = em.consts.get(node.input[1])
        if exp is None or exp.size != 1:
            raise ExportError(f"{where}: Pow needs a constant scalar exponent")
        x, n, _ = em.operand(node.input[0], where)
        e = float(exp.reshape(-1)[0])
        expr = " * ".join([f"{x}[i]"] * int(e)) if e in (1.0, 2.0, 3.0, 4.0) else f"powf({x}[i], {_hex(np.float32(e))})"
        out = em.buffer(n)
        em.body.append(f"    for (i = 0; i < {n}; ++i) {out}[i] = {expr};")
    elif op in _UNARY:
        x, n, _ = em.operand(node.input[0], where)
        out = em.buffer(n)
        em.body.append(f"    for (i = 0; i < {n}; ++i) {out}[i] = {_UNARY[op].format(x=f'{x}[i]')};")
    else:
        a, na, _ = em.operand(node.input[0], where)
        b, nb, _ = em.operand(node.input[1], where)
        n = max(na, nb)
        if {na, nb} - {1, n}:
            raise ExportError(f"{where}: {op} of {na} and {nb} values; only equal sizes or a scalar broadcast")
        ia = "[i]" if na == n else "[0]"
        ib = "[i]" if nb == n else "[0]"
        out = em.buffer(n)
        em.body.append(f"    for (i = 0; i < {n}; ++i) {out}[i] = {a}{ia} {_BINARY[op]} {b}{ib};")
    em.values[node.output[0]] = (out, n)


def _concat(em: _Emitter, node, where: str) -> None:
    if _attrs(node).get("axis") not in (1, -1):
        raise ExportError(f"{where}: Concat only along the feature axis (1)")
    parts = [em.operand(name, where) for name in node.input]
    n = sum(p[1] for p in parts)
    out = em.buffer(n)
    offset = 0
    for base, size, _ in parts:
        em.body.append(f"    for (i = 0; i < {size}; ++i) {out}[{offset} + i] = {base}[i];")
        offset += size
    em.values[node.output[0]] = (out, n)


def onnx_field_to_c(path: str | Path, name: str = "field_model", function: str = "field_model_eval") -> FieldSource:
    """C for the ONNX field at ``path`` (inputs ``t`` scalar, optional, and ``h`` ``[batch, N]``; output dh).

    Raises:
        ExportError: the graph uses an op outside :data:`SUPPORTED_OPS` (named), or a shape this
            translator does not handle; use a TFLM firmware for such models.
        BackendError: the ``onnx`` package is not installed.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        from edgeode.errors import BackendError

        raise BackendError("reading an ONNX field for C generation needs the onnx package: "
                           "pip install 'edgeode[train]' (or pip install onnx)") from None
    path = Path(path)
    model = onnx.load(str(path))
    graph = model.graph
    where = str(path)
    em = _Emitter()
    for init in graph.initializer:
        em.consts[init.name] = numpy_helper.to_array(init).astype(np.float32)
    inits = set(em.consts)
    state_size = None
    for inp in graph.input:
        if inp.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        if len(dims) == 0:
            em.values[inp.name] = ("t_value", 1)
        elif len(dims) == 2 and dims[1]:
            state_size = int(dims[1])
            em.values[inp.name] = ("h", state_size)
        else:
            raise ExportError(f"{where}: input {inp.name!r} has shape {dims}; expected t (scalar) and h [batch, N]")
    if state_size is None:
        raise ExportError(f"{where}: no state input h [batch, N] found")
    ops = []
    for node in graph.node:
        here = f"{where}: node {node.name or node.op_type}"
        ops.append(node.op_type)
        if node.op_type == "Constant":
            em.consts[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"]).astype(np.float32)
        elif node.op_type in ("Gemm", "MatMul"):
            _gemm(em, node, here)
        elif node.op_type == "Concat":
            _concat(em, node, here)
        elif node.op_type in _BINARY or node.op_type in _UNARY or node.op_type == "Pow":
            _elementwise(em, node, here)
        else:
            raise ExportError(f"{here}: op {node.op_type} has no C translation (supported: {', '.join(SUPPORTED_OPS)}); "
                              "run this model with TFLM instead (edgeode pack --device ...)")
    out_name = graph.output[0].name
    if out_name not in em.values or em.values[out_name][1] != state_size:
        raise ExportError(f"{where}: the output {out_name!r} must be computed and have the state's {state_size} values")
    result = em.values[out_name][0]
    header = (f"/* {name}.h: the field of {path.name} as C, generated by edgeode. */\n"
              f"#ifndef {name.upper()}_H\n#define {name.upper()}_H\n\n#define {name.upper()}_STATE_SIZE {state_size}\n\n"
              f"/* dh/dt = f(t, h) for batch 1: the solver's field signature; always returns 0. */\n"
              f"int {function}(float t, const float *h, float *out, void *ctx);\n\n#endif\n")
    source = "\n".join([
        f"/* {name}.c: the field of {path.name} ({', '.join(dict.fromkeys(ops))}) as C, generated by edgeode.",
        " * Weights as hex-float literals: exactly the file's float32 values. */",
        f'#include "{name}.h"', "", "#include <math.h>", "", *em.decls, "",
        f"int {function}(float t, const float *h, float *out, void *ctx)", "{",
        "    int i, o;", "    const float t_value[1] = {t};", "    (void)ctx; (void)t_value; (void)o;",
        *em.body,
        f"    for (i = 0; i < {state_size}; ++i) out[i] = {result}[i];",
        "    return 0;", "}", "",
    ])
    return FieldSource(name, function, state_size, header, source, em.weight_bytes, tuple(dict.fromkeys(ops)))
