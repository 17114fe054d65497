"""Export: time-channel rewrite, the fused ONNX Loop graph, the bundle writer and its parity gate.

Everything runs for real: torch.onnx (dynamo) and litert-torch write files that onnxruntime and
the LiteRT interpreter execute; results are compared with the torch model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgeode.errors import ConfigError, ParityError
from edgeode.runtime.digest import verify_bundle
from edgeode.runtime.manifest import Manifest
from edgeode.tableaus import TABLEAUS, get_tableau
from edgeode.train.fields import ConvField
from edgeode.train.models import ModelConfig, build_model
from edgeode.train.solver import solve

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run exported ONNX files")
onnx = pytest.importorskip("onnx", reason="onnx is needed for export")


def _odenet(solver: str = "rk4", steps: int = 3, width: int = 8) -> tuple[torch.nn.Module, ModelConfig]:
    cfg = ModelConfig(arch="odenet", image_size=8, width=width, downsample=1, steps=steps, solver=solver, adjoint=False)
    torch.manual_seed(0)
    return build_model(cfg).eval(), cfg


def _session(path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------------------------- rewrite


def test_time_channel_rewrite_equals_concat_conv_with_exact_borders():
    from edgeode.export.rewrite import TimeMapConv2d, max_rewrite_error, rewrite_time_channel

    torch.manual_seed(1)
    field = ConvField(16).eval()
    h = torch.randn(5, 16, 7, 7)
    new, count = rewrite_time_channel(field, tuple(h.shape))
    assert count == 2
    assert isinstance(new.conv1, TimeMapConv2d) and new.conv1.conv.in_channels == 16
    assert max_rewrite_error(field, new, h, (0.0, 0.37, 1.0, -2.5)) < 1e-5
    # The zero padding makes the border of the t-map differ from its interior: a constant map would be wrong.
    tmap = new.conv1.tmap[0]
    assert not torch.allclose(tmap[:, 0, 0], tmap[:, 3, 3])
    # The original field is untouched (deep copy).
    assert field.conv1.conv.in_channels == 17


def test_rewrite_leaves_fields_without_concat_conv_alone():
    from edgeode.export.rewrite import rewrite_time_channel
    from edgeode.train.fields import SpiralField

    new, count = rewrite_time_channel(SpiralField(), (3, 2))
    assert count == 0 and isinstance(new, SpiralField)


# ----------------------------------------------------------------------------------------------- fused ONNX Loop


@pytest.fixture(scope="module")
def onnx_parts(tmp_path_factory):
    """encoder / field / head of one small ODE-Net exported once (dynamic batch)."""
    from edgeode.export.onnx_export import export_onnx, load_inlined
    from edgeode.export.rewrite import rewrite_time_channel

    model, _ = _odenet()
    d = tmp_path_factory.mktemp("parts")
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        h = model.encoder(x)
    field, _ = rewrite_time_channel(model.block.field, tuple(h.shape))
    export_onnx(model.encoder, (x,), ["x"], ["h"], d / "encoder.onnx", ("x",))
    export_onnx(field, (torch.tensor(0.0), h), ["t", "h"], ["dh"], d / "field.onnx", ("h",))
    export_onnx(model.head, (h,), ["h"], ["logits"], d / "head.onnx", ("h",))
    return model, {k: load_inlined(d / f"{k}.onnx") for k in ("encoder", "field", "head")}, d


def test_exported_groupnorm_affine_is_one_batchnorm_and_exact(onnx_parts):
    """export_onnx's CPU passes: GroupNorm's Mul + Add is one BatchNormalization, no Shape node; same numbers."""
    from collections import Counter

    model, parts, d = onnx_parts
    ops = Counter(node.op_type for node in parts["field"].graph.node)
    assert ops["BatchNormalization"] == ops["InstanceNormalization"] == 3, ops
    assert ops["Shape"] == 0 and ops["Mul"] == ops["Add"] == 2, ops  # left: t * tmap and its Add, twice
    with torch.no_grad():
        h = model.encoder(torch.randn(5, 1, 8, 8))
        ref = model.block.field(torch.tensor(0.37), h).numpy()
    got = _session(d / "field.onnx").run(None, {"t": np.array(0.37, np.float32), "h": h.numpy()})[0]
    np.testing.assert_allclose(got, ref, atol=2e-5, rtol=0)


def test_cpu_passes_leave_other_products_alone():
    """A Mul whose constant is not per channel, or whose product has a second user, is not rewritten."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeode.export.onnx_passes import optimize_for_cpu

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 3, 3])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 4, 3, 3])
    inits = [numpy_helper.from_array(np.full((1, 4, 3, 3), 2.0, np.float32), "pixel"),
             numpy_helper.from_array(np.full((4, 1, 1), 3.0, np.float32), "chan"),
             numpy_helper.from_array(np.ones((4, 1, 1), np.float32), "beta")]
    nodes = [helper.make_node("Mul", ["x", "pixel"], ["a"]), helper.make_node("Add", ["a", "beta"], ["y"]),
             helper.make_node("Mul", ["x", "chan"], ["b"]), helper.make_node("Add", ["b", "beta"], ["c"]),
             helper.make_node("Add", ["b", "c"], ["z"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y, z], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 20)])
    before = [n.op_type for n in model.graph.node]
    assert [n.op_type for n in optimize_for_cpu(model).graph.node] == before


@pytest.mark.parametrize("name", list(TABLEAUS))
def test_fused_loop_graph_matches_torch_for_every_tableau(onnx_parts, name, tmp_path):
    from edgeode.export.fused_onnx import build_fused_classifier

    model, parts, _ = onnx_parts
    tab = get_tableau(name)
    fused = build_fused_classifier(parts["encoder"], parts["field"], parts["head"], tab, 0.0, 1.0, 3)
    onnx.save(fused, tmp_path / "fused.onnx")
    sess = _session(tmp_path / "fused.onnx")
    x = torch.randn(7, 1, 8, 8)
    with torch.no_grad():
        h0 = model.encoder(x)
        for steps in (None, 1, 5):  # None: the default from the initializer
            ref = model.head(solve(model.block.field, h0, tab, 0.0, 1.0, steps or 3)).numpy()
            feeds = {"x": x.numpy()}
            if steps is not None:
                feeds["steps"] = np.array(steps, np.int64)
            got = sess.run(None, feeds)[0]
            np.testing.assert_allclose(got, ref, atol=2e-5, rtol=0)
    # The loop body stores the field weights once, however many stages the tableau has.
    (loop,) = [node for node in fused.graph.node if node.op_type == "Loop"]
    body = loop.attribute[0].g
    names = [init.name for init in body.initializer]
    assert len(names) == len(set(names)) == len(parts["field"].graph.initializer)


def test_fused_trajectory_graph_matches_torch(tmp_path):
    from edgeode.export.fused_onnx import build_fused_trajectory
    from edgeode.export.onnx_export import export_onnx, load_inlined

    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="spiral", steps=6, solver="rk4_38", t1=0.5, adjoint=False)).eval()
    y0 = torch.randn(4, 2)
    export_onnx(model.block.field, (torch.tensor(0.0), y0[:2]), ["t", "h"], ["dh"], tmp_path / "f.onnx", ("h",))
    fused = build_fused_trajectory(load_inlined(tmp_path / "f.onnx"), get_tableau("rk4_38"), 0.0, 0.5, 6, 2)
    onnx.save(fused, tmp_path / "traj.onnx")
    sess = _session(tmp_path / "traj.onnx")
    with torch.no_grad():
        ref = model(y0).numpy()
        ref9 = solve(model.block.field, y0, "rk4_38", 0.0, 0.5, 9, trajectory=True).numpy()
    got = sess.run(None, {"y0": y0.numpy()})[0]
    assert got.shape == (7, 4, 2)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    got9 = sess.run(None, {"y0": y0.numpy(), "steps": np.array(9, np.int64)})[0]
    np.testing.assert_allclose(got9, ref9, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------- bundles


def _source(model, cfg, samples=None):
    from edgeode.export import ExportSource

    pre = {"scale": 1 / 16, "mean": 0.3, "std": 0.4, "image_size": [8, 8], "raw_max": 16.0, "invert": False}
    return ExportSource(model, cfg, (1, 8, 8), pre, [str(i) for i in range(10)], samples, {"data": "digits"})


@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory):
    from edgeode.export import export_model

    model, cfg = _odenet("midpoint", 3)
    out = tmp_path_factory.mktemp("b") / "bundle"
    manifest = export_model(_source(model, cfg, torch.randn(3, 1, 8, 8)), out, formats=("onnx",),
                            quantize=("int8-dynamic",), progress=False)
    return model, cfg, out, manifest


def test_onnx_bundle_manifest_is_complete_and_verifiable(onnx_bundle):
    import hashlib

    model, cfg, out, manifest = onnx_bundle
    assert Manifest.read(out) == manifest
    assert manifest.kind == "classifier"
    assert manifest.model["arch"] == "odenet" and manifest.model["config"] == cfg.to_dict()
    assert manifest.model["parameters"] == sum(p.numel() for p in model.parameters())
    assert manifest.input.tensor.shape == (None, 1, 8, 8) and manifest.input.preprocess.raw_max == 16.0
    assert manifest.output.labels == tuple(str(i) for i in range(10))
    assert manifest.solver.tableau == get_tableau("midpoint") and manifest.solver.steps == 3
    assert manifest.solver.state_shape == (None, 8, 3, 3)
    assert {"torch", "onnx", "onnxruntime", "edgeode"} <= set(manifest.tools)
    floats = [a for a in manifest.artifacts if a.precision == "float32"]
    assert sorted(a.role for a in floats) == ["encoder", "field", "fused", "head"]
    for art in manifest.artifacts:
        data = (out / art.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == art.sha256 and len(data) == art.size
        assert art.batch is None and art.opset >= 18
        assert 0 <= art.parity_max_abs <= art.parity_tolerance
        assert all(s.shape[0] is None for s in art.inputs if s.name not in ("t", "steps"))
    field = manifest.find("field", "onnx")
    assert [(s.name, s.shape) for s in field.inputs] == [("t", ()), ("h", (None, 8, 3, 3))]
    assert field.outputs[0].name == "dh"
    fused = manifest.find("fused", "onnx")
    assert [s.name for s in fused.inputs] == ["x", "steps"] and fused.inputs[1].dtype == "int64"
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".bundle")]  # no temp dirs left
    check = verify_bundle(out)  # sealed, and every file (quantized ones too) records what it computes
    assert check.unrecorded == () and len(check.recorded) == len(manifest.artifacts)


def test_onnx_int8_dynamic_variants_pass_a_looser_gate(onnx_bundle):
    model, _, out, manifest = onnx_bundle
    quant = {a.role: a for a in manifest.artifacts if a.precision == "int8-dynamic"}
    assert sorted(quant) == ["encoder", "field", "fused", "head"]
    assert quant["fused"].path == "onnx/fused.int8-dynamic.onnx"
    assert quant["fused"].parity_tolerance > manifest.find("fused", "onnx").parity_tolerance
    graph = onnx.load(str(out / quant["field"].path)).graph
    assert any(init.data_type == onnx.TensorProto.INT8 for init in graph.initializer)
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        ref = model(x).numpy()
    got = _session(out / quant["fused"].path).run(None, {"x": x.numpy()})[0]
    assert np.abs(got - ref).max() <= quant["fused"].parity_tolerance


def test_onnx_bundle_runs_with_dynamic_batch(onnx_bundle):
    model, _, out, _ = onnx_bundle
    sess = _session(out / "onnx" / "fused.onnx")
    for batch in (1, 7):
        x = torch.randn(batch, 1, 8, 8)
        with torch.no_grad():
            ref = model(x).numpy()
        np.testing.assert_allclose(sess.run(None, {"x": x.numpy()})[0], ref, atol=1e-5, rtol=0)


def test_parity_failure_leaves_nothing_at_destination(tmp_path):
    from edgeode.export import export_model

    model, cfg = _odenet("euler", 2)
    out = tmp_path / "bundle"
    with pytest.raises(ParityError) as info:
        export_model(_source(model, cfg), out, formats=("onnx",), tolerance=1e-15, progress=False)
    message = str(info.value)
    assert "onnx/" in message and "tolerance" in message and "--tolerance" in message
    assert list(tmp_path.iterdir()) == []


def test_gate_rejects_a_file_that_computes_something_else(tmp_path):
    # What the gate exists for: a converter that writes a valid file with the wrong numbers.
    import copy

    from edgeode.export.bundle_writer import _build_artifact
    from edgeode.export.onnx_export import export_onnx
    from edgeode.export.parity import ParityCase
    from edgeode.export.plan import Job

    model, _ = _odenet("euler", 1)
    wrong = copy.deepcopy(model)
    with torch.no_grad():
        wrong.head[-1].bias += 0.01
        x = torch.randn(4, 1, 8, 8)
        ref = model(x).numpy()
    job = Job("model", "onnx", "onnx/model.onnx",
              lambda path: export_onnx(wrong, (x[:2],), ["x"], ["logits"], path, ("x",)),
              [ParityCase({"x": x.numpy()}, ref, ("x",))], None)
    with pytest.raises(ParityError, match=r"onnx/model.onnx .*differs from torch by 0.01"):
        _build_artifact(job, tmp_path, 1e-3, {})


def test_existing_destination_needs_overwrite_and_survives_a_failed_overwrite(tmp_path):
    from edgeode.export import export_model

    model, cfg = _odenet("euler", 1)
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(ConfigError, match="--overwrite"):
        export_model(_source(model, cfg), out, formats=("onnx",), progress=False)
    with pytest.raises(ParityError):
        export_model(_source(model, cfg), out, formats=("onnx",), tolerance=1e-15, progress=False, overwrite=True)
    assert (out / "keep.txt").read_text() == "old"
    export_model(_source(model, cfg), out, formats=("onnx",), progress=False, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


@pytest.mark.parametrize("kwargs, match", [
    ({"formats": ("onnx", "pt")}, "unknown export format"),
    ({"formats": ()}, "no export format"),
    ({"tflite_batch": 0}, "tflite batch"),
    ({"quantize": ("int4",)}, "unknown quantization"),
    ({"tolerance": -1.0}, "tolerance"),
    ({"formats": ("onnx",), "quantize": ("float16",)}, "needs format"),
])
def test_bad_options_are_config_errors(tmp_path, kwargs, match):
    from edgeode.export import export_model

    model, cfg = _odenet("euler", 1)
    with pytest.raises(ConfigError, match=match):
        export_model(_source(model, cfg), tmp_path / "b", progress=False, **kwargs)
    assert not (tmp_path / "b").exists()


def test_baseline_gets_one_model_artifact(tmp_path):
    from edgeode.export import export_model

    cfg = ModelConfig(arch="resnet", image_size=8, width=8, downsample=1, res_blocks=1)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    manifest = export_model(_source(model, cfg), tmp_path / "b", formats=("onnx",), progress=False)
    assert [(a.role, a.path) for a in manifest.artifacts] == [("model", "onnx/model.onnx")]
    assert manifest.solver is None
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        ref = model(x).numpy()
    got = _session(tmp_path / "b" / "onnx" / "model.onnx").run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_tflite_bundle_with_fixed_batch(tmp_path):
    pytest.importorskip("litert_torch", reason="litert-torch is needed for TFLite export")
    interp = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert runs TFLite files")
    from edgeode.export import export_model

    model, cfg = _odenet("rk4", 2)
    manifest = export_model(_source(model, cfg), tmp_path / "b", formats=("tflite",), tflite_batch=2,
                            quantize=("int8-dynamic", "int8-weight", "float16"), progress=False)
    floats = [a for a in manifest.artifacts if a.precision == "float32"]
    assert sorted(a.role for a in floats) == ["encoder", "field", "fused", "head"]
    assert all(a.batch == 2 and a.format == "tflite" and a.opset is None for a in manifest.artifacts)
    for precision in ("int8-dynamic", "int8-weight", "float16"):
        variants = [a for a in manifest.artifacts if a.precision == precision]
        assert len(variants) == 4 and all(a.parity_max_abs <= a.parity_tolerance for a in variants)
        assert manifest.find("fused", "tflite", precision).size < manifest.find("fused", "tflite").size
    fused = manifest.find("fused", "tflite")
    assert fused.inputs[0].shape == (2, 1, 8, 8) and fused.outputs[0].name == "logits"
    assert verify_bundle(tmp_path / "b").unrecorded == ()  # every TFLite file holds its record
    runner = interp.Interpreter(model_path=str(tmp_path / "b" / fused.path)).get_signature_runner()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(runner(x=x.numpy())["logits"], ref, atol=1e-5, rtol=0)


def test_export_run_takes_the_loaded_data_set(digits_run, digits_bundle, tmp_path):
    # quickstart and compare hand export_run the data set they loaded; the bundle is the one it loads itself
    from edgeode.export import export_run
    from edgeode.train.checkpoint import load_run
    from edgeode.train.data import load_dataset

    seed = load_run(digits_run.path).config.seed
    manifest = export_run(digits_run.path, tmp_path / "b", formats=("onnx",), progress=False,
                          data=load_dataset("digits", seed=seed))
    own = Manifest.read(digits_bundle)
    for art in manifest.artifacts:  # the same real test samples reached the gate: the same measured parity
        assert art.parity_max_abs == pytest.approx(own.find(art.role, "onnx").parity_max_abs, rel=1e-6, abs=1e-9)
    with pytest.raises(ConfigError, match=f"the run needs 'digits' with seed {seed}"):
        export_run(digits_run.path, tmp_path / "c", formats=("onnx",), progress=False,
                   data=load_dataset("digits", seed=seed + 1))
    assert not (tmp_path / "c").exists()


def test_export_command_writes_a_bundle_from_a_run_dir(tmp_path, capsys):
    from edgeode.cli import main
    from edgeode.train.checkpoint import TrainConfig, save_run
    from edgeode.train.data import load_dataset

    model, cfg = _odenet("rk4", 2)
    run = tmp_path / "run"
    save_run(run, model, TrainConfig(model=cfg, data="digits", epochs=1), {"test_accuracy": 0.1},
             load_dataset("digits").describe())
    assert main(["export", str(run), "-o", str(tmp_path / "b"), "--formats", "onnx", "-q"]) == 0
    out = capsys.readouterr().out
    assert "onnx/fused.onnx" in out and "parity" in out
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["input"]["preprocess"]["raw_max"] == 16.0 and manifest["model"]["data"] == "digits"
    assert manifest["model"]["metrics"] == {"test_accuracy": 0.1}
    # a second export to the same place needs --overwrite: a clean error, exit status 2
    assert main(["export", str(run), "-o", str(tmp_path / "b"), "--formats", "onnx", "-q"]) == 2
    assert "--overwrite" in capsys.readouterr().err
