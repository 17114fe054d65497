"""Cross-runtime conformance: bundles exported from trained runs give torch's outputs on every backend.

One suite (in the manner of ONNX's backend tests) runs the same cases against onnxruntime, LiteRT
(ai-edge-litert) and the legacy tflite-runtime, in fused mode (the whole solve in one graph) and
loop mode (the runtime's numpy solver around the exported field), for models trained with each
Butcher tableau. A backend that is not installed is skipped with the reason, never passed.

Tolerance: max abs difference <= ATOL * max(1, max |torch output|) in float32 (measured here:
~1e-6; the parity gate at export allows 1e-3).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

TABLEAUS = ("euler", "midpoint", "rk4", "rk4_38")
BACKENDS = {"onnxruntime": "onnxruntime", "litert": "ai_edge_litert.interpreter", "tflite-runtime": "tflite_runtime.interpreter"}
ATOL = 1e-4


def _need_backend(backend: str) -> None:
    pytest.importorskip(BACKENDS[backend], reason=f"backend {backend!r} is not installed ({BACKENDS[backend]})")


def _close(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert got.shape == ref.shape, what
    bound = ATOL * max(1.0, float(np.abs(ref).max()))
    diff = float(np.abs(got.astype(np.float64) - ref).max())
    assert diff <= bound, f"{what}: max abs difference {diff:.3g} > {bound:.3g}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny ODE-Net per tableau (1 epoch on 64 digits) and the spiral model, trained and exported once."""
    pytest.importorskip("litert_torch", reason="litert-torch is needed to export TFLite")
    from edgeode.export import export_run
    from edgeode.train.checkpoint import TrainConfig, load_run
    from edgeode.train.data import load_dataset
    from edgeode.train.models import ModelConfig
    from edgeode.train.trainer import train

    root = tmp_path_factory.mktemp("conformance")
    digits = load_dataset("digits")
    x = digits.x_test[:7].numpy()
    out = {"x": x}
    for name in TABLEAUS:
        cfg = TrainConfig(model=ModelConfig(arch="odenet", image_size=8, width=8, downsample=1, steps=2, solver=name),
                          data="digits", epochs=1, batch_size=32, lr=3e-3, train_limit=64, threads=1)
        train(cfg, root / f"run-{name}", progress=False)
        quantize = ("int8-dynamic", "float16") if name == "rk4" else ()
        export_run(root / f"run-{name}", root / f"bundle-{name}", quantize=quantize, progress=False)
        with torch.no_grad():
            ref = load_run(root / f"run-{name}").model(torch.from_numpy(x)).numpy()
        out[name] = (root / f"bundle-{name}", ref)
    # The spiral data fixes 20 steps per window; euler keeps the unrolled TFLite solve small.
    cfg = TrainConfig(model=ModelConfig(arch="spiral", steps=20, solver="euler", t0=0.0, t1=0.5, image_size=1,
                                        in_channels=1, num_classes=1),
                      data="spiral", epochs=1, batch_size=16, train_limit=32, threads=1)
    train(cfg, root / "run-spiral", progress=False)
    export_run(root / "run-spiral", root / "bundle-spiral", progress=False)
    spiral = load_run(root / "run-spiral")
    y0 = load_dataset("spiral").x_test[:5]
    with torch.no_grad():
        out["spiral"] = (root / "bundle-spiral", y0.numpy(), spiral.model(y0).numpy())
    return out


@pytest.mark.parametrize("tableau", TABLEAUS)
@pytest.mark.parametrize("mode", ["fused", "loop"])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_classifier_matches_torch(trained, backend, mode, tableau):
    _need_backend(backend)
    from edgeode.runtime import load

    bundle, ref = trained[tableau]
    with load(bundle, backend=backend, mode=mode) as model:
        assert model.manifest.solver.tableau.name == tableau
        _close(model.predict(trained["x"]), ref, f"{backend}/{mode}/{tableau}")
        stages = len(model.manifest.solver.tableau.b)
        assert model.field_evaluations == stages * model.manifest.solver.steps


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_loop_mode_equals_fused_mode(trained, backend):
    _need_backend(backend)
    from edgeode.runtime import load

    bundle, _ = trained["rk4"]
    with load(bundle, backend=backend, mode="fused") as fused, load(bundle, backend=backend, mode="loop") as loop:
        a, b = fused.predict(trained["x"]), loop.predict(trained["x"])
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend, precision", [("onnxruntime", "int8-dynamic"), ("litert", "int8-dynamic"),
                                                ("litert", "float16")])
@pytest.mark.parametrize("mode", ["fused", "loop"])
def test_quantized_variants_stay_close_to_torch(trained, backend, precision, mode):
    _need_backend(backend)
    from edgeode.runtime import load
    from edgeode.runtime.manifest import Manifest

    bundle, ref = trained["rk4"]
    fmt = "onnx" if backend == "onnxruntime" else "tflite"
    bound = Manifest.read(bundle).find("fused", fmt, precision).parity_tolerance
    with load(bundle, backend=backend, mode=mode, precision=precision) as model:
        got = model.predict(trained["x"])
    assert float(np.abs(got - ref).max()) <= bound
    assert (got.argmax(axis=1) == ref.argmax(axis=1)).mean() >= 5 / 7


@pytest.mark.parametrize("batch", [1, 7])
def test_onnx_dynamic_batch(trained, batch):
    _need_backend("onnxruntime")
    from edgeode.runtime import load

    bundle, ref = trained["midpoint"]
    with load(bundle, backend="onnxruntime", mode="fused") as model:
        assert model.manifest.find("fused", "onnx").batch is None
        _close(model.predict(trained["x"][:batch]), ref[:batch], f"onnx batch {batch}")


def test_tflite_files_have_the_fixed_batch(trained):
    _need_backend("litert")
    from edgeode.runtime import load

    bundle, ref = trained["rk4_38"]
    with load(bundle, backend="litert", mode="fused") as model:
        assert {a.batch for a in model.manifest.artifacts if a.format == "tflite"} == {1}
        # 7 samples through a batch-1 file: the runtime feeds them one by one
        _close(model.predict(trained["x"]), ref, "tflite batch 1")


@pytest.mark.parametrize("mode", ["fused", "loop"])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_spiral_solve_matches_torch_trajectory(trained, backend, mode):
    _need_backend(backend)
    from edgeode.runtime import load

    bundle, y0, ref = trained["spiral"]
    with load(bundle, backend=backend, mode=mode) as model:
        assert model.manifest.kind == "dynamics"
        got = model.solve(y0)
    assert got.shape == ref.shape == (21, 5, 2)
    _close(got, ref, f"spiral {backend}/{mode}")


def test_every_artifact_passed_the_parity_gate(trained):
    from edgeode.runtime.manifest import Manifest

    for key in (*TABLEAUS, "spiral"):
        manifest = Manifest.read(trained[key][0])
        assert {a.format for a in manifest.artifacts} == {"onnx", "tflite"}
        assert {a.role for a in manifest.artifacts} == ({"field", "fused"} if key == "spiral" else
                                                          {"encoder", "field", "head", "fused"})
        for art in manifest.artifacts:
            assert art.parity_max_abs <= art.parity_tolerance, art.path


def test_run_command_prints_json_predictions(trained, tmp_path, capsys):
    _need_backend("onnxruntime")
    from edgeode.cli import main

    bundle, ref = trained["rk4"]
    np.save(tmp_path / "x.npy", trained["x"][:3])
    assert main(["run", str(bundle), str(tmp_path / "x.npy"), "--backend", "onnxruntime", "--mode", "loop", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [p["class"] for p in result["predictions"]] == [int(i) for i in ref[:3].argmax(axis=1)]
    assert result["mode"] == "loop" and result["backend"] == "onnxruntime"
