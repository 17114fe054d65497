"""The whole ODE-Net as one TFLite file, stitched from the converted parts: the solve is a ``WHILE``.

Converting an unrolled solve with litert-torch traces and lowers the field once per Runge–Kutta
stage of every step (40 copies for 10 RK4 steps): the paper's MNIST ODE-Net took 34.7 s to convert
and its file grew with the step count. Here the encoder, field and head files that litert-torch
already converted (and the parity gate already passed) are composed at the flatbuffer level, in
well under a second:

* subgraph 0 (main): the encoder's operators, ``WHILE(i, t, h)``, the head's operators;
* subgraph 1 (cond): ``i < steps``;
* subgraph 2 (body): one RK step, the field's operators inlined once per stage::

      k_i = f(t + c_i dt, h + dt Σ_j a_ij k_j),     h' = h + dt Σ_i b_i k_i,     t' = t + dt,  i' = i + 1

  (Butcher 2016, §23), as :mod:`edgeode.export.fused_onnx` builds it for ONNX.

Every constant buffer of a part (the weights) is stored once, shared by the stage copies, so the
file's size does not depend on the number of steps. The step count is a constant of the cond
subgraph (TFLite files have fixed shapes and a fixed solve; ONNX's fused graph takes ``steps``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeode.errors import ExportError
from edgeode.tableaus import ButcherTableau

__all__ = ["build_fused_classifier_tflite", "fused_classifier_tflite"]

SIGNATURE_KEY = b"serving_default"


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


@dataclass
class _Part:
    """One converted TFLite file: its model, main subgraph and signature tensor indices by name."""

    model: object
    inputs: dict[str, int]
    outputs: dict[str, int]

    @property
    def graph(self):
        return self.model.subgraphs[0]

    @classmethod
    def load(cls, path: Path) -> _Part:
        from edgeode.export.tflite_file import read_model

        model = read_model(Path(path).read_bytes())
        if len(model.subgraphs or []) != 1 or len(model.signatureDefs or []) != 1:
            raise ExportError(f"{Path(path).name}: expected one subgraph and one signature to stitch into the fused "
                              "TFLite file; report this bug")
        sig = model.signatureDefs[0]
        return cls(model, {m.name.decode(): m.tensorIndex for m in sig.inputs},
                   {m.name.decode(): m.tensorIndex for m in sig.outputs})


class _Builder:
    """A TFLite model under construction: buffers and operator codes shared by all subgraphs."""

    def __init__(self) -> None:
        schema = _schema()
        self.schema = schema
        self.model = schema.ModelT()
        self.model.version = 3
        self.model.description = b"edgeode fused (stitched)"
        self.model.buffers = [schema.BufferT()]  # buffer 0: the empty sentinel
        self.model.operatorCodes = []
        self.model.subgraphs = []
        self._buffers: dict[tuple[int, int], int] = {}
        self._codes: dict[tuple, int] = {}

    def subgraph(self, name: str) -> _Graph:
        sub = self.schema.SubGraphT()
        sub.name, sub.tensors, sub.operators, sub.inputs, sub.outputs = name.encode(), [], [], [], []
        self.model.subgraphs.append(sub)
        return _Graph(self, sub, len(self.model.subgraphs) - 1)

    def buffer_of(self, part: _Part, index: int) -> int:
        """The buffer index for ``part``'s buffer ``index`` (copied once; an empty buffer is buffer 0)."""
        key = (id(part), index)
        if key not in self._buffers:
            buf = part.model.buffers[index]
            if buf.data is None or not len(buf.data):
                self._buffers[key] = 0
            else:
                new = self.schema.BufferT()
                new.data = buf.data
                self.model.buffers.append(new)
                self._buffers[key] = len(self.model.buffers) - 1
        return self._buffers[key]

    def constant_buffer(self, array: np.ndarray) -> int:
        new = self.schema.BufferT()
        new.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
        self.model.buffers.append(new)
        return len(self.model.buffers) - 1

    def opcode(self, code) -> int:
        """The index of operator code ``code`` (an ``OperatorCodeT``) in this model."""
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        key = (builtin, code.customCode, code.version)
        if key not in self._codes:
            new = self.schema.OperatorCodeT()
            new.builtinCode, new.deprecatedBuiltinCode = builtin, min(builtin, 127)
            new.customCode, new.version = code.customCode, code.version
            self.model.operatorCodes.append(new)
            self._codes[key] = len(self.model.operatorCodes) - 1
        return self._codes[key]

    def builtin(self, builtin: int, version: int = 1) -> int:
        code = self.schema.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), version
        return self.opcode(code)


class _Graph:
    """One subgraph being filled: tensors, operators, and the parts inlined into it."""

    def __init__(self, builder: _Builder, sub, index: int):
        self.b, self.sub, self.index = builder, sub, index
        self._constants: dict[tuple[int, int], int] = {}  # (part, tensor) -> tensor here, shared by copies

    def tensor(self, shape, dtype: int, buffer: int = 0) -> int:
        t = self.b.schema.TensorT()
        t.shape = np.asarray(shape, np.int32)
        t.type, t.buffer = dtype, buffer
        t.name = f"{self.index}.{len(self.sub.tensors)}".encode()  # unique in the file; compact_tflite renames
        self.sub.tensors.append(t)
        return len(self.sub.tensors) - 1

    def like(self, part: _Part, index: int) -> int:
        """A new non-constant tensor with the shape and type of ``part``'s tensor ``index``."""
        src = part.graph.tensors[index]
        t = self.tensor(src.shape, src.type)
        self.sub.tensors[t].shapeSignature = src.shapeSignature
        return t

    def constant(self, value, dtype: int) -> int:
        np_type = {self.b.schema.TensorType.FLOAT32: np.float32, self.b.schema.TensorType.INT32: np.int32}[dtype]
        array = np.asarray(value, np_type)
        return self.tensor(array.shape, dtype, self.b.constant_buffer(array))

    def op(self, opcode: int, inputs: list[int], outputs: list[int], options_type: int = 0, options=None) -> None:
        op = self.b.schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = opcode, np.asarray(inputs, np.int32), np.asarray(outputs, np.int32)
        op.builtinOptionsType, op.builtinOptions = options_type, options
        self.sub.operators.append(op)

    def inline(self, part: _Part, inputs: dict[str, int]) -> dict[str, int]:
        """Copy ``part``'s operators here with its signature inputs bound to ``inputs``; returns its outputs."""
        if set(inputs) != set(part.inputs):
            raise ExportError(f"stitching the fused TFLite file: inputs {sorted(inputs)} given for a part that takes "
                              f"{sorted(part.inputs)}; report this bug")
        names = {part.inputs[k]: v for k, v in inputs.items()}
        src = part.graph
        for i, t in enumerate(src.tensors):
            if i in names:
                continue
            buf = self.b.buffer_of(part, t.buffer)
            if buf:  # a constant: one tensor here for every copy of the part
                key = (id(part), i)
                if key not in self._constants:
                    self._constants[key] = self.tensor(t.shape, t.type, buf)
                    new = self.sub.tensors[self._constants[key]]
                    new.quantization, new.shapeSignature = t.quantization, t.shapeSignature
                names[i] = self._constants[key]
        for op in src.operators:
            if op.intermediates is not None and len(op.intermediates):
                raise ExportError("stitching the fused TFLite file: an operator with intermediate tensors; report this bug")
            ins = []
            for i in op.inputs:
                i = int(i)
                if i >= 0 and i not in names:
                    names[i] = self.like(part, i)
                ins.append(names[i] if i >= 0 else -1)
            outs = []
            for i in op.outputs:
                i = int(i)
                if i not in names:
                    names[i] = self.like(part, i)
                outs.append(names[i])
            new = self.b.schema.OperatorT()
            for key, value in vars(op).items():
                setattr(new, key, value)
            new.opcodeIndex = self.b.opcode(part.model.operatorCodes[op.opcodeIndex])
            new.inputs, new.outputs = np.asarray(ins, np.int32), np.asarray(outs, np.int32)
            self.sub.operators.append(new)
        return {name: names[i] for name, i in part.outputs.items()}


def _binary(g: _Graph, builtin: int, a: int, b: int, like: int) -> int:
    """``a (op) b`` into a new tensor shaped like tensor ``like`` (ADD / MUL, no fused activation)."""
    s = g.b.schema
    out = g.tensor(g.sub.tensors[like].shape, g.sub.tensors[like].type)
    if builtin == s.BuiltinOperator.ADD:
        g.op(g.b.builtin(builtin), [a, b], [out], s.BuiltinOptions.AddOptions, s.AddOptionsT())
    else:
        g.op(g.b.builtin(builtin), [a, b], [out], s.BuiltinOptions.MulOptions, s.MulOptionsT())
    return out


def _loop_vars(g: _Graph, field: _Part) -> tuple[int, int, int]:
    s = g.b.schema
    i = g.tensor([], s.TensorType.INT32)
    t = g.tensor([], s.TensorType.FLOAT32)
    h = g.like(field, field.inputs["h"])
    g.sub.inputs = np.asarray([i, t, h], np.int32)
    return i, t, h


def _cond(b: _Builder, field: _Part, steps: int) -> int:
    s = b.schema
    g = b.subgraph("cond")
    i, _, _ = _loop_vars(g, field)
    out = g.tensor([], s.TensorType.BOOL)
    g.op(b.builtin(s.BuiltinOperator.LESS), [i, g.constant(steps, s.TensorType.INT32)], [out],
         s.BuiltinOptions.LessOptions, s.LessOptionsT())
    g.sub.outputs = np.asarray([out], np.int32)
    return g.index


def _rk_step(g: _Graph, field: _Part, tableau: ButcherTableau, dt: float, t: int, h: int) -> int:
    """One RK step of ``field`` from (t, h) into ``g`` (t a float32 scalar tensor); returns h'."""
    s = g.b.schema
    add, mul = s.BuiltinOperator.ADD, s.BuiltinOperator.MUL
    coefs: dict[float, int] = {}

    def coef(value: float) -> int:  # value * dt as a scalar constant (float32 of the float64 product, as torch)
        if value not in coefs:
            coefs[value] = g.constant(np.float32(value * dt), s.TensorType.FLOAT32)
        return coefs[value]

    ks: list[int] = []
    for row, c_i in zip(tableau.a, tableau.c, strict=True):
        y = h
        for a_ij, k_j in zip(row, ks, strict=False):
            if a_ij != 0.0:
                y = _binary(g, add, y, _binary(g, mul, k_j, coef(a_ij), h), h)
        t_i = _binary(g, add, t, coef(c_i), t) if c_i != 0.0 else t
        ks.append(g.inline(field, {"t": t_i, "h": y})["dh"])
    out = h
    for b_i, k_i in zip(tableau.b, ks, strict=True):
        if b_i != 0.0:
            out = _binary(g, add, out, _binary(g, mul, k_i, coef(b_i), h), h)
    return out


def _body(b: _Builder, field: _Part, tableau: ButcherTableau, dt: float) -> int:
    s = b.schema
    g = b.subgraph("rk_step")
    i, t, h = _loop_vars(g, field)
    out = _rk_step(g, field, tableau, dt, t, h)
    t_next = _binary(g, s.BuiltinOperator.ADD, t, g.constant(np.float32(dt), s.TensorType.FLOAT32), t)
    i_next = _binary(g, s.BuiltinOperator.ADD, i, g.constant(1, s.TensorType.INT32), i)
    g.sub.outputs = np.asarray([i_next, t_next, out], np.int32)
    return g.index


def _while_solve(b: _Builder, main: _Graph, field: _Part, tableau: ButcherTableau, t0: float, dt: float,
                 steps: int, h0: int) -> int:
    s = b.schema
    cond = _cond(b, field, steps)
    body = _body(b, field, tableau, dt)
    outs = [main.tensor([], s.TensorType.INT32), main.tensor([], s.TensorType.FLOAT32), main.like(field, field.inputs["h"])]
    options = s.WhileOptionsT()
    options.condSubgraphIndex, options.bodySubgraphIndex = cond, body
    main.op(b.builtin(s.BuiltinOperator.WHILE), [main.constant(0, s.TensorType.INT32),
                                                 main.constant(np.float32(t0), s.TensorType.FLOAT32), h0],
            outs, s.BuiltinOptions.WhileOptions, options)
    return outs[2]


def _unrolled_solve(main: _Graph, field: _Part, tableau: ButcherTableau, t0: float, dt: float, steps: int,
                    h0: int) -> int:
    h = h0
    for n in range(steps):  # step times as torch's solve computes them: float32(t0 + n dt)
        t = main.constant(np.float32(float(t0) + n * dt), main.b.schema.TensorType.FLOAT32)
        h = _rk_step(main, field, tableau, dt, t, h)
    return h


def build_fused_classifier_tflite(encoder: _Part, field: _Part, head: _Part, tableau: ButcherTableau,
                                  t0: float, t1: float, steps: int, unroll: bool = False):
    """x -> encoder -> ``steps`` RK steps of ``field`` -> head -> logits, as a TFLite ``ModelT``.

    The steps are a ``WHILE`` loop, or with ``unroll`` inlined one after the other in the main
    subgraph (one subgraph: what ai-edge-quantizer can calibrate, for the int8 file; it grows with
    the steps by the operators and activations, the weights are still stored once).
    """
    b = _Builder()
    s = b.schema
    main = b.subgraph("main")
    dt = (float(t1) - float(t0)) / steps
    x = main.like(encoder, encoder.inputs["x"])
    h0 = main.inline(encoder, {"x": x})["h"]
    solve = _unrolled_solve if unroll else functools.partial(_while_solve, b)
    hT = solve(main, field, tableau, t0, dt, steps, h0)
    logits = main.inline(head, {"h": hT})["logits"]
    main.sub.inputs, main.sub.outputs = np.asarray([x], np.int32), np.asarray([logits], np.int32)
    sig = s.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = SIGNATURE_KEY, 0
    sig.inputs, sig.outputs = [_tensor_map("x", x)], [_tensor_map("logits", logits)]
    b.model.signatureDefs = [sig]
    return b.model


def _tensor_map(name: str, index: int):
    m = _schema().TensorMapT()
    m.name, m.tensorIndex = name.encode(), index
    return m


def fused_classifier_tflite(encoder: Path, field: Path, head: Path, tableau: ButcherTableau, t0: float, t1: float,
                            steps: int, path: Path, unroll: bool = False) -> Path:
    """:func:`build_fused_classifier_tflite` of the TFLite files ``encoder``, ``field``, ``head`` written to ``path``."""
    from edgeode.export.tflite_file import write_model

    parts = [_Part.load(p) for p in (encoder, field, head)]
    write_model(path, build_fused_classifier_tflite(*parts, tableau, t0, t1, steps, unroll))
    return Path(path)
