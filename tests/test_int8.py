"""Full-int8 bundles (``edgeode export --quantize int8``) run in the real TensorFlow Lite Micro interpreter.

The session's trained digits ODE-Net (tests/conftest.py), exported with ``--quantize int8``, is
shared by every test: the files must load in ``tflite_micro`` with the arena the manifest states
(and not with 16 bytes less), the calibration must cover the whole solve (the trap of the
quantizer's moving-average merge), FULLY_CONNECTED weights must be per tensor (the CMSIS-NN trap),
and ``edgeode run --backend tflm`` must run the loop in TFLM without torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tflite_micro", reason="int8 bundles are measured in tflite-micro: pip install 'edgeode[mcu]'")
pytest.importorskip("ai_edge_quantizer", reason="int8 export needs ai-edge-quantizer")
pytest.importorskip("litert_torch", reason="int8 export converts with litert-torch")

from edgeode.errors import BackendError, BundleError, ConfigError  # noqa: E402
from edgeode.runtime import load, read_bundle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def int8_bundle(digits_int8_bundle) -> Path:
    """The session's digits ODE-Net (16 channels, RK4 x 2 steps) with --formats tflite --quantize int8."""
    return digits_int8_bundle


def _int8(bundle: Path):
    return [a for a in read_bundle(bundle).manifest.artifacts if a.precision == "int8"]


def test_manifest_records_what_a_board_needs(int8_bundle):
    man = read_bundle(int8_bundle).manifest
    arts = {a.role: a for a in _int8(int8_bundle)}
    assert set(arts) == {"encoder", "field", "head", "fused"}
    for art in arts.values():
        assert art.tflm is not None and art.tflm.arena_bytes > 0 and art.tflm.arena_bytes % 16 == 0
        assert "CONV_2D" in art.tflm.ops or "FULLY_CONNECTED" in art.tflm.ops
        for spec in (*art.inputs, *art.outputs):
            assert spec.dtype == "int8" and spec.quantization is not None and spec.quantization.scale > 0
    # the field's inputs in TFLM index order: the scalar t first, then h (litert-torch's graph order)
    assert [len(s.shape) for s in arts["field"].inputs] == [0, 4]
    # RK4 keeps h, the stage input and 4 stage slopes of 16 x 3 x 3 float32 values
    assert man.mcu.rk_state_bytes == (4 + 2) * 16 * 3 * 3 * 4
    acc = man.mcu.accuracy
    assert acc["samples"] == 360 and set(acc["int8"]) == {"loop", "fused"}
    assert acc["agreement_with_float32"]["loop"] >= man.mcu.parity["agreement_min"]
    assert man.mcu.calibration["split"].startswith("train") and man.mcu.calibration["merge"] == "min-max"


PROBE = """
import sys
from tflite_micro.python.tflite_micro import runtime
it = runtime.Interpreter.from_bytes(open(sys.argv[1], "rb").read(), arena_size=int(sys.argv[2]))
it.invoke()
"""


def _runs_with(path: Path, arena: int) -> bool:
    """allocate + invoke in a fresh process (too small an arena can crash tflite-micro)."""
    proc = subprocess.run([sys.executable, "-c", PROBE, str(path), str(arena)], capture_output=True, timeout=120)
    return proc.returncode == 0


def test_files_run_in_tflite_micro_with_exactly_the_manifest_arena(int8_bundle):
    for art in _int8(int8_bundle):
        path = int8_bundle / art.path
        assert _runs_with(path, art.tflm.arena_bytes), art.path
        assert not _runs_with(path, art.tflm.arena_bytes - 16), f"{art.path}: the stated arena is not the smallest"


def test_calibration_covers_every_stage_time(int8_bundle):
    """Min-max merging keeps t's range [t0, t1]; the quantizer's moving average clipped it to [0, 0.57]."""
    man = read_bundle(int8_bundle).manifest
    field = next(a for a in _int8(int8_bundle) if a.role == "field")
    q = next(s for s in field.inputs if s.name == "t").quantization
    lo, hi = q.scale * (-128 - q.zero_point), q.scale * (127 - q.zero_point)
    assert lo <= man.solver.t0 + q.scale / 2 and hi >= man.solver.t1 - q.scale / 2


def _weight_scales(path: Path) -> dict[str, list[int]]:
    """Number of weight scales of each CONV_2D / FULLY_CONNECTED operator in a TFLite file."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAsModel(path.read_bytes(), 0)
    sub = model.Subgraphs(0)
    out: dict[str, list[int]] = {}
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        if name in ("CONV_2D", "FULLY_CONNECTED"):
            out.setdefault(name, []).append(sub.Tensors(op.Inputs(1)).Quantization().ScaleLength())
    return out


def test_fully_connected_weights_are_per_tensor_convs_per_channel(int8_bundle):
    head = _weight_scales(int8_bundle / "tflite/head.int8.tflite")
    assert head["FULLY_CONNECTED"] == [1]
    field = _weight_scales(int8_bundle / "tflite/field.int8.tflite")
    assert all(n == 16 for n in field["CONV_2D"])  # one scale per output channel


def test_tflm_float_files_match_litert(int8_bundle):
    """The tflm backend maps manifest inputs to TFLM's indices (the field's h and t are swapped)."""
    x = np.random.default_rng(0).normal(size=(3, 1, 8, 8)).astype(np.float32)
    with load(int8_bundle, backend="tflm", mode="loop", precision="float32") as tflm, \
            load(int8_bundle, backend="litert", mode="loop") as litert:
        np.testing.assert_allclose(tflm.predict(x), litert.predict(x), rtol=0, atol=1e-4)


def test_run_cli_tflm_backend_without_torch(int8_bundle, tmp_path):
    from test_no_torch import BLOCK_TORCH

    man = read_bundle(int8_bundle).manifest
    from conftest import SEED

    from edgeode.train.data import load_dataset

    data = load_dataset("digits", seed=SEED)
    x, y = data.x_test[:40].numpy(), data.y_test[:40].numpy()
    np.save(tmp_path / "x.npy", x)
    code = BLOCK_TORCH + textwrap.dedent(f"""
        import sys
        from edgeode.cli import main
        sys.exit(main(["run", {str(int8_bundle)!r}, {str(tmp_path / 'x.npy')!r}, "--backend", "tflm", "--json"]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert (out["backend"], out["mode"], out["precision"]) == ("tflm", "loop", "int8")
    pred = np.array([p["class"] for p in out["predictions"]])
    with load(int8_bundle, backend="tflm", mode="loop") as model:  # the same numbers in process
        np.testing.assert_array_equal(pred, model.predict(x).argmax(1))
    with load(int8_bundle, backend="litert", mode="loop") as model:
        agree = float((pred == model.predict(x).argmax(1)).mean())
    assert agree >= man.mcu.parity["agreement_min"] - 0.05  # 40 samples: a little looser than the 360-sample gate
    assert float((pred == y).mean()) >= man.mcu.accuracy["int8"]["loop"] - 0.2


def test_int8_needs_tflm_and_a_checked_manifest(int8_bundle, tmp_path):
    with pytest.raises(BackendError, match="tflm"):
        load(int8_bundle, backend="litert", precision="int8", mode="loop")
    # a manifest whose quantization does not belong to the file is refused when opened
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(int8_bundle, copy)
    data = json.loads((copy / "manifest.json").read_text())
    field = next(a for a in data["artifacts"] if a["role"] == "field" and a["precision"] == "int8")
    field["inputs"][1]["quantization"]["zero_point"] += 1
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="quantization"):
        load(copy, backend="tflm", mode="loop")


def test_export_int8_needs_tflite(tmp_path):
    from edgeode.export import export_model
    from edgeode.export.bundle_writer import ExportSource
    from edgeode.train.models import ModelConfig, build_model

    cfg = ModelConfig(arch="odenet", image_size=8, width=4, downsample=1, steps=1)
    source = ExportSource(build_model(cfg), cfg, (1, 8, 8))
    with pytest.raises(ConfigError, match="tflite"):
        export_model(source, tmp_path / "b", formats=("onnx",), quantize=("int8",), progress=False)
    with pytest.raises(ConfigError, match="calibration"):
        export_model(source, tmp_path / "b", formats=("tflite",), quantize=("int8",), progress=False)


def test_export_int8_of_a_dynamics_run_is_a_typed_error(spiral_run, tmp_path):
    """A spiral run has no encoder or head: the CLI refuses --quantize int8 in one line, writes nothing."""
    out = tmp_path / "b"
    proc = subprocess.run([sys.executable, "-m", "edgeode", "export", str(spiral_run.path), "-o", str(out),
                           "--formats", "tflite", "--quantize", "int8"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "dynamics" in proc.stderr and "float16" in proc.stderr
    assert not out.exists()


# ------------------------------------------------------------------ smaller TFLite files (issue 13, item 6)


def _anatomy(data: bytes) -> tuple[list[str], list[int], list[int]]:
    """Tensor names, constant buffer sizes and their offsets in the file (TFLite's own schema reader)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(data, 0)
    sub = model.Subgraphs(0)
    names = [sub.Tensors(i).Name().decode() for i in range(sub.TensorsLength())]
    bufs = [model.Buffers(i) for i in range(model.BuffersLength())]
    sizes = [b.DataLength() for b in bufs]
    starts = [b._tab.Vector(b._tab.Offset(4)) for b in bufs if b.DataLength()]
    return names, sizes, starts


def test_bundle_tflite_files_hold_no_module_path_names(int8_bundle):
    """Every exported file (float32 and int8) names its tensors by index; constants stay 16-aligned."""
    files = sorted((int8_bundle / "tflite").glob("*.tflite"))
    assert len(files) == 8
    for path in files:
        names, _, starts = _anatomy(path.read_bytes())
        assert names == [str(i) for i in range(len(names))], path.name
        assert all(s % 16 == 0 for s in starts), path.name


def _convert(module, sample: dict, out: str, path: Path) -> bytes:
    from edgeode.export.tflite_export import convert_tflite

    convert_tflite(module, sample, out, path)
    return path.read_bytes()


def test_compact_tflite_changes_no_output(digits_run, tmp_path):
    """A freshly converted head, compacted: a quarter of its size, the same bits in LiteRT and in TFLM."""
    import torch
    from ai_edge_litert.interpreter import Interpreter
    from tflite_micro.python.tflite_micro import runtime

    from edgeode.export.tflite_file import compact_tflite
    from edgeode.train.checkpoint import load_run

    model = load_run(digits_run.path).model.eval()
    h = torch.from_numpy(np.random.default_rng(3).normal(size=(1, 16, 3, 3)).astype(np.float32))
    data = _convert(model.head, {"h": h}, "logits", tmp_path / "head.tflite")
    small = compact_tflite(data)
    names, _, _ = _anatomy(data)
    assert max(map(len, names)) > 40  # litert-torch's module paths (what is stripped)
    assert len(small) < 0.8 * len(data)
    outs = []
    for blob in (data, small):
        lite = Interpreter(model_content=blob).get_signature_runner()(h=h.numpy())["logits"]
        micro = runtime.Interpreter.from_bytes(blob, arena_size=1 << 16)
        micro.set_input(h.numpy(), 0)
        micro.invoke()
        outs.append((lite, micro.get_output(0)))
    for a, b in zip(*outs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_fused_constants_do_not_grow_with_steps(tmp_path):
    """The time term t * M is computed in the graph: one more step adds no copy of M.

    A field of one time-channel conv (4 -> 4 channels on 3 x 3, rewritten as at export), unrolled by
    RK4 for 1 and 2 steps. Folded per stage time (litert-torch, before
    edgeode.export.modules.graph_zero), x 2 has 2 stage times more than x 1, so 2 more copies of M
    (4 x 3 x 3 float32 = 144 B); now only scalars are added. The solve still matches torch.
    """
    import torch
    from ai_edge_litert.interpreter import Interpreter

    from edgeode.export.modules import Field, UnrolledTrajectory
    from edgeode.export.rewrite import rewrite_time_channel
    from edgeode.train.fields import ConcatConv2d
    from edgeode.train.solver import solve

    class OneConv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = ConcatConv2d(4, 4)

        def forward(self, t, h):
            return self.conv(t, h)

    torch.manual_seed(0)
    conv = OneConv().eval()
    field, rewrites = rewrite_time_channel(conv, (1, 4, 3, 3))
    assert rewrites == 1
    y0 = torch.randn(1, 4, 3, 3)
    totals = []
    for steps in (1, 2):
        traj = UnrolledTrajectory(Field(field), "rk4", 0.0, 1.0, steps).eval()
        data = _convert(traj, {"y0": y0}, "states", tmp_path / f"f{steps}.tflite")
        totals.append(sum(_anatomy(data)[1]))
        got = Interpreter(model_content=data).get_signature_runner()(y0=y0.numpy())["states"]
        with torch.no_grad():
            want = solve(conv, y0, "rk4", 0.0, 1.0, steps, trajectory=True).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert 0 <= totals[1] - totals[0] < 4 * 3 * 3 * 4, totals


def test_int8_file_with_constants_after_the_flatbuffer_is_rewritten_inline(tmp_path):
    """ai-edge-quantizer writes a model whose constants pack to >= 256 KB with them *after* the flatbuffer
    (Buffer.offset / size: the MNIST ResNet's int8 file). The project's one TFLite writer moves them inline
    (it refused such a file, so that export failed); the rewritten file gives in TFLM the bits LiteRT gives
    on the quantizer's file."""
    import torch
    from ai_edge_litert import schema_py_generated as schema
    from tflite_micro.python.tflite_micro import runtime

    from edgeode.export.int8 import quantize_int8
    from edgeode.export.tflite_file import read_model, write_model

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(640, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10)).eval()
    x = torch.randn(1, 640)
    src, q = tmp_path / "mlp.tflite", tmp_path / "mlp.int8.tflite"
    _convert(net, {"x": x}, "logits", src)
    feeds = [{"x": np.random.default_rng(i).normal(size=(1, 640)).astype(np.float32)} for i in range(8)]
    quantize_int8(src, q, feeds)
    data = q.read_bytes()

    def offsets(blob: bytes) -> list[int]:
        m = schema.Model.GetRootAsModel(blob, 0)
        return [m.Buffers(i).Offset() for i in range(m.BuffersLength())]

    assert any(offsets(data)), "the quantizer wrote this file inline: the case under test did not arise"
    out = tmp_path / "rewritten.tflite"
    write_model(out, read_model(data))
    assert not any(offsets(out.read_bytes()))
    # the reference: LiteRT on the quantizer's own file (it reads constants after the flatbuffer right; the host
    # tflite-micro copies them into its arena, 336,000 B asked here, and its outputs came out wrong, measured)
    from ai_edge_litert.interpreter import Interpreter

    xq = np.full((1, 640), 3, np.int8)
    lite = Interpreter(model_content=data)
    lite.allocate_tensors()
    lite.set_tensor(lite.get_input_details()[0]["index"], xq)
    lite.invoke()
    want = lite.get_tensor(lite.get_output_details()[0]["index"])
    micro = runtime.Interpreter.from_bytes(out.read_bytes(), arena_size=1 << 16)  # no arena for the constants
    micro.set_input(xq, 0)
    micro.invoke()
    np.testing.assert_array_equal(micro.get_output(0), want)
