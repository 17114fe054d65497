"""The fused TFLite file stitched from converted parts: a WHILE loop that LiteRT runs as torch does.

Real litert-torch conversions of a small ODE-Net's encoder, field and head (once per module), stitched
by :mod:`edgeode.export.fused_tflite` and run by the LiteRT interpreter against the torch model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeode.tableaus import TABLEAUS, get_tableau
from edgeode.train.models import ModelConfig, build_model
from edgeode.train.solver import solve

pytest.importorskip("litert_torch", reason="litert-torch is needed for TFLite export")
interp = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert runs TFLite files")

BATCH = 2


@pytest.fixture(scope="module")
def tflite_parts(tmp_path_factory):
    """encoder / field / head of one small ODE-Net converted once (fixed batch 2), and the model."""
    from edgeode.export.rewrite import rewrite_time_channel
    from edgeode.export.tflite_export import convert_tflite
    from edgeode.export.tflite_file import compact_tflite_file

    cfg = ModelConfig(arch="odenet", image_size=8, width=8, downsample=1, steps=3, solver="rk4", adjoint=False)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    d = tmp_path_factory.mktemp("tflite_parts")
    x = torch.randn(BATCH, 1, 8, 8)
    with torch.no_grad():
        h = model.encoder(x)
    field, _ = rewrite_time_channel(model.block.field, tuple(h.shape))
    convert_tflite(model.encoder, {"x": x}, "h", d / "encoder.tflite")
    convert_tflite(field, {"t": torch.tensor(0.0), "h": h}, "dh", d / "field.tflite")
    convert_tflite(model.head, {"h": h}, "logits", d / "head.tflite")
    for name in ("encoder", "field", "head"):
        compact_tflite_file(d / f"{name}.tflite")  # as the bundle writer leaves them
    return model, d


def _stitch(d, tmp_path, tableau: str, steps: int, unroll: bool = False):
    from edgeode.export.fused_tflite import fused_classifier_tflite

    path = tmp_path / f"fused_{tableau}_{steps}_{int(unroll)}.tflite"
    fused_classifier_tflite(d / "encoder.tflite", d / "field.tflite", d / "head.tflite", get_tableau(tableau),
                            0.0, 1.0, steps, path, unroll=unroll)
    return path


def _constant_bytes(path) -> int:
    from edgeode.export.tflite_file import read_model

    model = read_model(path.read_bytes())
    used = {t.buffer for sub in model.subgraphs for t in sub.tensors}  # tensor data, not metadata
    return sum(len(model.buffers[i].data) for i in used if model.buffers[i].data is not None)


def _run(path, x: np.ndarray) -> np.ndarray:
    runner = interp.Interpreter(model_path=str(path), num_threads=1).get_signature_runner()
    return runner(x=x)["logits"]


@pytest.mark.parametrize("name", list(TABLEAUS))
def test_stitched_while_matches_torch_for_every_tableau(tflite_parts, name, tmp_path):
    model, d = tflite_parts
    x = torch.randn(BATCH, 1, 8, 8)
    with torch.no_grad():
        ref = model.head(solve(model.block.field, model.encoder(x), name, 0.0, 1.0, 4)).numpy()
    # 2e-5: float32 rounding of ~3 x 4 stages of an 8-channel conv field, against torch (measured ~1e-6)
    np.testing.assert_allclose(_run(_stitch(d, tmp_path, name, 4), x.numpy()), ref, atol=2e-5, rtol=0)


def test_fused_size_does_not_grow_with_steps_and_unrolled_agrees(tflite_parts, tmp_path):
    model, d = tflite_parts
    sizes = {steps: _stitch(d, tmp_path, "rk4", steps).stat().st_size for steps in (1, 10, 100)}
    assert len(set(sizes.values())) == 1, sizes  # the step count is one int32 constant
    # the weights are stored once, not once per stage: constant bytes = the parts' + a few scalars
    parts = sum(_constant_bytes(d / f"{n}.tflite") for n in ("encoder", "field", "head"))
    assert parts <= _constant_bytes(tmp_path / "fused_rk4_100_0.tflite") <= parts + 64
    x = torch.randn(BATCH, 1, 8, 8)
    unrolled = _stitch(d, tmp_path, "rk4", 10, unroll=True)
    while_out = _run(_stitch(d, tmp_path, "rk4", 10), x.numpy())
    np.testing.assert_allclose(_run(unrolled, x.numpy()), while_out, atol=1e-6, rtol=0)
    with torch.no_grad():
        ref = model.head(solve(model.block.field, model.encoder(x), "rk4", 0.0, 1.0, 100)).numpy()
    np.testing.assert_allclose(_run(_stitch(d, tmp_path, "rk4", 100), x.numpy()), ref, atol=2e-5, rtol=0)
