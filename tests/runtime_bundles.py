"""Tiny real bundles for the runtime tests, built with torch (tests only; the runtime never imports torch).

Each builder exports small torch modules to real ONNX (``torch.onnx.export``, TorchScript exporter:
fast) and/or TFLite (litert-torch) files, writes ``manifest.json`` with the manifest dataclasses,
and saves reference inputs/outputs computed by torch next to the bundle (``<bundle>.ref.npz``) so
environments without torch (tflite-runtime CI venv, no-torch subprocess) can check numbers.

Run as a script to build fixtures for another environment::

    python3 tests/runtime_bundles.py OUT_DIR        # writes OUT_DIR/{classifier,dynamics,int8}
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeode.runtime.bundle import sha256_file  # noqa: E402
from edgeode.runtime.manifest import (  # noqa: E402
    Artifact,
    InputSpec,
    Manifest,
    OutputSpec,
    Preprocess,
    SolverSpec,
    TensorSpec,
)
from edgeode.tableaus import get_tableau  # noqa: E402

IMG = (1, 6, 6)
STATE = 8
CLASSES = 3


@dataclass
class Built:
    path: Path
    x: np.ndarray  # reference input (batch 5)
    y: np.ndarray  # torch output for x (scores, or trajectory [T, B, D] for dynamics)


def _torch():
    import torch

    warnings.filterwarnings("ignore")
    return torch


def _modules(seed: int = 0):
    torch = _torch()
    from torch import nn

    torch.manual_seed(seed)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(IMG)), STATE), nn.Tanh())

        def forward(self, x):
            return self.net(x)

    class Field(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = nn.Linear(STATE + 1, 16)
            self.l2 = nn.Linear(16, STATE)

        def forward(self, t, h):
            return self.l2(torch.tanh(self.l1(torch.cat([h, torch.ones_like(h[:, :1]) * t], 1))))

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(STATE, CLASSES)

        def forward(self, h):
            return self.l(h)

    return Encoder().eval(), Field().eval(), Head().eval()


def _dtype(np_dtype) -> str:
    return {np.float32: "float32", np.int64: "int64", np.float16: "float16", np.int32: "int32"}[np.dtype(np_dtype).type]


def _onnx(module, args, path: Path, names: list[str], out: str, dynamic_batch: bool = True) -> tuple:
    torch = _torch()
    import onnx

    dyn = {n: {0: "batch"} for n, a in zip(names, args, strict=True) if a.ndim > 0} if dynamic_batch else None
    if dyn is not None:
        dyn[out] = {0: "batch"} if out != "trajectory" else {1: "batch"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(module, args, str(path), input_names=names, output_names=[out], dynamo=False,
                          opset_version=17, dynamic_axes=dyn)
    graph = onnx.load(str(path)).graph
    elem = {1: "float32", 7: "int64"}

    def specs(values):
        return tuple(TensorSpec(v.name, tuple((d.dim_value if d.HasField("dim_value") else None) for d in
                                              v.type.tensor_type.shape.dim), elem[v.type.tensor_type.elem_type])
                     for v in values)

    return specs(graph.input), specs(graph.output)


def _tflite(module, args, path: Path, names: list[str] | None, out: str) -> tuple:
    """Convert with litert-torch. ``names=None``: the manifest uses the signature's own names (as
    ``edgeode.export`` does); else ``names`` in argument order (the runtime then matches by order)."""
    import litert_torch

    path.parent.mkdir(parents=True, exist_ok=True)
    litert_torch.convert(module, tuple(args)).export(str(path))
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    if names is None:
        (key, sig), = it.get_signature_list().items()
        runner = it.get_signature_runner(key)
        ind, outd = runner.get_input_details(), runner.get_output_details()
        ins = tuple(TensorSpec(n, tuple(int(s) for s in ind[n]["shape"]), _dtype(ind[n]["dtype"])) for n in sig["inputs"])
        outs = tuple(TensorSpec(n, tuple(int(s) for s in outd[n]["shape"]), _dtype(outd[n]["dtype"])) for n in sig["outputs"])
        return ins, outs
    ins = tuple(TensorSpec(n, tuple(int(s) for s in d["shape"]), _dtype(d["dtype"]))
                for n, d in zip(names, it.get_input_details(), strict=False))
    outs = tuple(TensorSpec(out, tuple(int(s) for s in d["shape"]), _dtype(d["dtype"])) for d in it.get_output_details())
    return ins, outs


def artifact(root: Path, rel: str, role: str, fmt: str, ins, outs, batch=None, precision="float32") -> Artifact:
    p = root / rel
    return Artifact(path=rel, role=role, format=fmt, precision=precision, sha256=sha256_file(p), size=p.stat().st_size,
                    batch=batch, inputs=ins, outputs=outs, opset=17 if fmt == "onnx" else None,
                    parity_max_abs=0.0, parity_tolerance=1e-4)


def write_manifest(root: Path, kind: str, arch: str, input_spec: InputSpec, output_spec: OutputSpec,
                   solver: SolverSpec | None, artifacts: list[Artifact]) -> Manifest:
    """Write ``manifest.json`` as ``edgeode export`` does: each file first gets its computation-defining record
    (so checksums are of the final files), the seal last."""
    from edgeode.export.record import write_record
    from edgeode.runtime.contract import contract_json
    from edgeode.runtime.digest import write_seal

    man = Manifest(kind=kind, model={"arch": arch, "parameters": 0, "config": {}}, input=input_spec, output=output_spec,
                   solver=solver, artifacts=tuple(artifacts), tools={"test": "runtime_bundles"},
                   created="2026-01-01T00:00:00Z")
    final = []
    for art in artifacts:
        write_record(root / art.path, art.format, contract_json(man, art))
        final.append(replace(art, sha256=sha256_file(root / art.path), size=(root / art.path).stat().st_size))
    man = replace(man, artifacts=tuple(final))
    (root / "manifest.json").write_text(man.to_json())
    write_seal(root)
    return man


class _Fused:
    """encoder -> unrolled fixed-step solve (edgeode.train.solver) -> head, as one torch module."""

    def __new__(cls, encoder, field, head, tableau, steps, t0=0.0, t1=1.0, trajectory=False):
        torch = _torch()
        from edgeode.train.solver import solve

        class Fused(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder, self.field, self.head = encoder, field, head

            def forward(self, x):
                h = self.encoder(x) if self.encoder is not None else x
                h = solve(self.field, h, tableau, t0, t1, steps, trajectory=trajectory)
                return self.head(h) if self.head is not None else h

        return Fused().eval()


def build_classifier(root: Path, formats=("onnx",), tflite_batch: int = 2, steps: int = 4, tableau: str = "rk4",
                     seed: int = 0, head_gain: float | None = None) -> Built:
    """A tiny ODE classifier: [B,1,6,6] -> encoder -> RK solve of an MLP field f(t, h) -> head -> [B,3].

    ``head_gain``: the head's logits are multiplied by it twice (``1e30``: they overflow float32 to
    Inf/NaN while the solver state stays finite, the case of a model far outside its range)."""
    torch = _torch()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    enc, field, head = _modules(seed)
    if head_gain is not None:
        class Gain(torch.nn.Module):
            def __init__(self, inner, gain):
                super().__init__()
                self.inner, self.gain = inner, gain

            def forward(self, h):
                return self.inner(h) * self.gain * self.gain

        head = Gain(head, head_gain).eval()
    tab = get_tableau(tableau)
    fused = _Fused(enc, field, head, tab, steps)
    arts = []
    for fmt in formats:
        b = 3 if fmt == "onnx" else tflite_batch
        x = torch.randn(b, *IMG)
        h = enc(x)
        t = torch.tensor(0.25)
        export = _onnx if fmt == "onnx" else _tflite
        ext = "onnx" if fmt == "onnx" else "tflite"
        batch = None if fmt == "onnx" else tflite_batch
        for role, mod, args, names, out in (
            ("encoder", enc, (x,), ["x"], "h"),
            ("field", field, (t, h), ["t", "h"], "dh"),
            ("head", head, (h,), ["h"], "scores"),
            ("fused", fused, (x,), ["x"], "scores"),
        ):
            rel = f"{ext}/{role}.{ext}"
            ins, outs = export(mod, args, root / rel, names, out)
            arts.append(artifact(root, rel, role, fmt, ins, outs, batch=batch))
    pre = Preprocess(scale=1 / 255, mean=0.5, std=0.25, image_size=(6, 6), raw_max=255.0, invert=False)
    write_manifest(root, "classifier", "odenet", InputSpec(TensorSpec("x", (None, *IMG)), pre),
                   OutputSpec(TensorSpec("scores", (None, CLASSES)), ("zero", "one", "two")),
                   SolverSpec(tab, 0.0, 1.0, steps, (None, STATE)), arts)
    rng = np.random.default_rng(seed)
    xr = rng.standard_normal((5, *IMG)).astype(np.float32)
    with torch.no_grad():
        yr = fused(torch.from_numpy(xr)).numpy()
    np.savez(str(root) + ".ref.npz", x=xr, y=yr)
    return Built(root, xr, yr)


def spiral_field(seed: int = 1, hidden: int = 16):
    """The tiny autonomous MLP field on h**3 (the paper's spiral form) that the dynamics bundles export."""
    torch = _torch()
    from torch import nn

    torch.manual_seed(seed)

    class Spiral(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 2))

        def forward(self, t, h):
            return self.net(h**3)

    return Spiral().eval()


def build_dynamics(root: Path, formats=("onnx",), tflite_batch: int = 2, steps: int = 8, tableau: str = "rk4",
                   seed: int = 1, hidden: int = 16) -> Built:
    """A tiny dynamics model: y0 [B, 2] -> trajectory [steps+1, B, 2] of an MLP field on y**3 (autonomous)."""
    torch = _torch()

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    field = spiral_field(seed, hidden)
    tab = get_tableau(tableau)
    fused = _Fused(None, field, None, tab, steps, 0.0, 2.0, trajectory=True)
    arts = []
    for fmt in formats:
        b = 3 if fmt == "onnx" else tflite_batch
        y0 = torch.randn(b, 2)
        export = _onnx if fmt == "onnx" else _tflite
        ext = "onnx" if fmt == "onnx" else "tflite"
        batch = None if fmt == "onnx" else tflite_batch
        for role, mod, args, names, out in (
            ("field", field, (torch.tensor(0.0), y0), ["t", "h"], "dh"),
            ("fused", fused, (y0,), ["y0"], "trajectory"),
        ):
            rel = f"{ext}/{role}.{ext}"
            # TFLite: the signature's names (args_0, ...), matched by name as for edgeode.export bundles
            ins, outs = export(mod, args, root / rel, names if fmt == "onnx" else None, out)
            arts.append(artifact(root, rel, role, fmt, ins, outs, batch=batch))
    write_manifest(root, "dynamics", "spiral", InputSpec(TensorSpec("y0", (None, 2))),
                   OutputSpec(TensorSpec("trajectory", (steps + 1, None, 2))),
                   SolverSpec(tab, 0.0, 2.0, steps, (None, 2)), arts)
    rng = np.random.default_rng(seed)
    xr = (0.5 * rng.standard_normal((5, 2))).astype(np.float32)
    with torch.no_grad():
        yr = fused(torch.from_numpy(xr)).numpy()
    np.savez(str(root) + ".ref.npz", x=xr, y=yr)
    return Built(root, xr, yr)


def build_diverging(root: Path, steps: int = 6) -> Built:
    """A dynamics bundle whose field 1e30 * h**2 overflows float32 at Euler step 2 (h0 = 1): NaN/Inf test."""
    torch = _torch()
    from torch import nn

    class Blow(nn.Module):
        def forward(self, t, h):
            return 1e30 * h * h + 0.0 * t

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ins, outs = _onnx(Blow().eval(), (torch.tensor(0.0), torch.ones(1, 1)), root / "onnx/field.onnx", ["t", "h"], "dh")
    arts = [artifact(root, "onnx/field.onnx", "field", "onnx", ins, outs)]
    ins, outs = fused_loop_onnx(root / "onnx/field.onnx", root / "onnx/fused.onnx", get_tableau("euler"), 0.0, 1.0, steps)
    arts.append(artifact(root, "onnx/fused.onnx", "fused", "onnx", ins, outs))
    write_manifest(root, "dynamics", "spiral", InputSpec(TensorSpec("y0", (None, 1))),
                   OutputSpec(TensorSpec("trajectory", (steps + 1, None, 1))),
                   SolverSpec(get_tableau("euler"), 0.0, 1.0, steps, (None, 1)), arts)
    x = np.ones((1, 1), np.float32)
    return Built(root, x, x)


def build_baseline(root: Path, formats=("onnx",), tflite_batch: int = 2, seed: int = 2) -> Built:
    """A network without an ODE (role ``model``), like the ResNet / VGG baselines."""
    torch = _torch()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    enc, _, head = _modules(seed)
    net = torch.nn.Sequential(enc, head).eval()
    arts = []
    for fmt in formats:
        b = 3 if fmt == "onnx" else tflite_batch
        export = _onnx if fmt == "onnx" else _tflite
        ext = "onnx" if fmt == "onnx" else "tflite"
        rel = f"{ext}/model.{ext}"
        ins, outs = export(net, (torch.randn(b, *IMG),), root / rel, ["x"], "scores")
        arts.append(artifact(root, rel, "model", fmt, ins, outs, batch=None if fmt == "onnx" else tflite_batch))
    write_manifest(root, "classifier", "resnet", InputSpec(TensorSpec("x", (None, *IMG))),
                   OutputSpec(TensorSpec("scores", (None, CLASSES)), ("zero", "one", "two")), None, arts)
    rng = np.random.default_rng(seed)
    xr = rng.standard_normal((5, *IMG)).astype(np.float32)
    with torch.no_grad():
        yr = net(torch.from_numpy(xr)).numpy()
    return Built(root, xr, yr)


def add_int8_dynamic(root: Path) -> Path:
    """Add a dynamic-range int8 copy of the bundle's TFLite ``fused`` artifact (ai-edge-quantizer)."""
    from ai_edge_quantizer import quantizer, recipe

    man = Manifest.read(root)
    src = next(a for a in man.artifacts if a.format == "tflite" and a.role == "fused")
    qt = quantizer.Quantizer(str(root / src.path))
    qt.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    rel = "tflite/fused_int8_dynamic.tflite"
    qt.quantize().export_model(str(root / rel), overwrite=True)
    art = artifact(root, rel, "fused", "tflite", src.inputs, src.outputs, batch=src.batch, precision="int8-dynamic")
    write_manifest(root, man.kind, man.model["arch"], man.input, man.output, man.solver, [*man.artifacts, art])
    return root


def fused_loop_onnx(field_path: Path, out_path: Path, tableau, t0: float, t1: float, steps: int) -> tuple:
    """A whole fixed-step solve as one ONNX graph: a ``Loop`` around the inlined field graph.

    Input ``y0`` [B, D] and the optional int64 scalar ``steps`` (an initializer holds the default,
    so onnxruntime lists it as overridable); output ``trajectory`` [steps + 1, B, D].
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    fm = onnx.load(str(field_path))
    fg = fm.graph
    init_names = {i.name for i in fg.initializer}
    f_inputs = [i.name for i in fg.input if i.name not in init_names]
    h_in = next(n for n in f_inputs if n != "t")
    t_in = "t" if "t" in f_inputs else None
    f_out = fg.output[0].name
    body, inits = [], list(fg.initializer)

    def const(name, value, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.array(value, dtype), name))
        return name

    def node(op, inputs, out, **attrs):
        body.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def inline(prefix, t_name, h_name):
        mapping = {h_in: h_name, **({t_in: t_name} if t_in else {})}
        for n in fg.node:
            m = onnx.NodeProto()
            m.CopyFrom(n)
            m.name = prefix + n.name
            m.input[:] = [mapping.get(x, x if (x in init_names or x == "") else prefix + x) for x in n.input]
            m.output[:] = [prefix + x for x in n.output]
            body.append(m)
        return prefix + f_out

    ks = []
    for i, (row, c) in enumerate(zip(tableau.a, tableau.c, strict=True)):
        t_i = "t" if c == 0 else node("Add", ["t", node("Mul", [const(f"c{i}", c), "dt"], f"cdt{i}")], f"t{i}")
        y = "h"
        for j, a in enumerate(row):
            if a != 0:
                y = node("Add", [y, node("Mul", [node("Mul", [ks[j], const(f"a{i}_{j}", a)], f"ak{i}_{j}"), "dt"],
                                          f"akdt{i}_{j}")], f"y{i}_{j}")
        ks.append(inline(f"s{i}_", t_i, y))
    h = "h"
    for i, b in enumerate(tableau.b):
        if b != 0:
            h = node("Add", [h, node("Mul", [node("Mul", [ks[i], const(f"b{i}", b)], f"bk{i}"), "dt"], f"bkdt{i}")], f"h{i}")
    node("Identity", [h], "h_out")
    node("Identity", [h], "h_scan")
    node("Add", ["t", "dt"], "t_out")
    node("Identity", ["cond_in"], "cond_out")
    dim = [None] + list(fg.input[f_inputs.index(h_in)].type.tensor_type.shape.dim[1:])
    dims = [None] + [d.dim_value for d in dim[1:]]
    body_graph = helper.make_graph(
        body, "rk_step",
        [helper.make_tensor_value_info("iter", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, dims), helper.make_tensor_value_info("t", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("h_out", TensorProto.FLOAT, dims),
         helper.make_tensor_value_info("t_out", TensorProto.FLOAT, []), helper.make_tensor_value_info("h_scan", TensorProto.FLOAT, dims)])
    main = [
        helper.make_node("Cast", ["steps"], ["steps_f"], to=TensorProto.FLOAT),
        helper.make_node("Div", [const("span", t1 - t0), "steps_f"], ["dt"]),
        helper.make_node("Loop", ["steps", const("true_c", True, np.bool_), "y0", const("t_start", t0)],
                         ["h_final", "t_final", "states"], body=body_graph),
        helper.make_node("Unsqueeze", ["y0", const("axis0", [0], np.int64)], ["y0u"]),
        helper.make_node("Concat", ["y0u", "states"], ["trajectory"], axis=0),
    ]
    inits.append(numpy_helper.from_array(np.array(steps, np.int64), "steps"))
    graph = helper.make_graph(
        main, "fused_solve",
        [helper.make_tensor_value_info("y0", TensorProto.FLOAT, ["batch", *dims[1:]]),
         helper.make_tensor_value_info("steps", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("trajectory", TensorProto.FLOAT, [None, "batch", *dims[1:]])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=list(fm.opset_import))
    model.ir_version = fm.ir_version
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    ins = (TensorSpec("y0", (None, *dims[1:])), TensorSpec("steps", (), "int64"))
    return ins, (TensorSpec("trajectory", (None, None, *dims[1:])),)


def build_loop_dynamics(root: Path, steps: int = 8, seed: int = 1, hidden: int = 16) -> Built:
    """Like :func:`build_dynamics` (ONNX only) but the fused artifact is a ``Loop`` with a ``steps`` input."""
    built = build_dynamics(root, formats=("onnx",), steps=steps, seed=seed, hidden=hidden)
    man = Manifest.read(root)
    tab = man.solver.tableau
    ins, outs = fused_loop_onnx(root / "onnx/field.onnx", root / "onnx/fused.onnx", tab, man.solver.t0, man.solver.t1, steps)
    arts = [a if a.role != "fused" else artifact(root, a.path, "fused", "onnx", ins, outs) for a in man.artifacts]
    write_manifest(root, man.kind, man.model["arch"], man.input, man.output, man.solver, arts)
    return built


if __name__ == "__main__":
    out = Path(sys.argv[1])
    import shutil

    build_classifier(out / "classifier", formats=("tflite",))
    build_dynamics(out / "dynamics", formats=("tflite",))
    shutil.copytree(out / "classifier", out / "int8")  # the same bundle, not a second conversion of it
    add_int8_dynamic(out / "int8")
    print(out)
