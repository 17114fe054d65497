"""End to end on real MNIST: train briefly (2,000 images, one epoch), export, run with the torch-free runtime, same accuracy.

Uses the official 10,000-image MNIST test set (t10k IDX files) at ``../shared/data/mnist`` beside the
checkout; skipped with the reason where it is absent. The data split is 8,000 train / 2,000 test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mnist_bundle(tmp_path_factory):
    if not (MNIST / "t10k-images-idx3-ubyte.gz").exists() and not (MNIST / "t10k-images-idx3-ubyte").exists():
        pytest.skip(f"MNIST test files not found in {MNIST} (t10k-images-idx3-ubyte[.gz]); put them there to run this test")
    pytest.importorskip("litert_torch", reason="litert-torch is needed to export TFLite")
    from edgeode.export import export_run
    from edgeode.train.checkpoint import TrainConfig, load_run
    from edgeode.train.data import load_dataset
    from edgeode.train.models import ModelConfig
    from edgeode.train.trainer import train

    root = tmp_path_factory.mktemp("mnist")
    # The paper's architecture at a small width; 2 RK4 steps keep the unrolled TFLite solve small.
    model = ModelConfig(arch="odenet", image_size=28, width=16, downsample=2, steps=2, solver="rk4")
    config = TrainConfig(model=model, data="mnist", data_path=str(MNIST), epochs=1, batch_size=32, lr=3e-3,
                         train_limit=2000, threads=1)
    train(config, root / "run", progress=False)
    manifest = export_run(root / "run", root / "bundle", progress=False)
    data = load_dataset("mnist", str(MNIST), config.seed)
    with torch.no_grad():
        torch_scores = load_run(root / "run").model(data.x_test).numpy()
    return root / "bundle", manifest, data.x_test.numpy(), data.y_test.numpy(), torch_scores


@pytest.mark.parametrize("backend, mode", [("onnxruntime", "fused"), ("onnxruntime", "loop"), ("litert", "fused")])
def test_runtime_accuracy_equals_torch_accuracy(mnist_bundle, backend, mode):
    pytest.importorskip({"onnxruntime": "onnxruntime", "litert": "ai_edge_litert.interpreter"}[backend],
                        reason=f"backend {backend} is not installed")
    from edgeode.runtime import load

    bundle, manifest, x, y, torch_scores = mnist_bundle
    assert manifest.input.preprocess.raw_max == 255.0 and manifest.input.tensor.shape == (None, 1, 28, 28)
    n = len(x) if backend == "onnxruntime" else 300  # batch-1 TFLite: a subset keeps the test quick
    with load(bundle, backend=backend, mode=mode) as model:
        scores = model.predict(x[:n])
    from margins import assert_same_class_where_decided

    ref = torch_scores[:n]
    bound = 1e-4 * max(1.0, float(np.abs(torch_scores).max()))
    assert float(np.abs(scores - ref).max()) <= bound
    # Same class as torch on every image whose torch margin exceeds 2 x bound; the accuracy may then
    # differ by at most the near-tied images (how those fall depends on the CPU's rounding).
    decided = assert_same_class_where_decided(scores, ref, bound, f"{backend}/{mode}", min_decided=0.9)
    torch_acc = float((ref.argmax(axis=1) == y[:n]).mean())
    acc = float((scores.argmax(axis=1) == y[:n]).mean())
    assert abs(acc - torch_acc) <= (n - decided) / n + 1e-12, f"{backend}/{mode}: accuracy {acc:.4f} vs torch {torch_acc:.4f}"
    assert torch_acc > 0.15  # one short epoch: it learned something (chance is 0.1; ~0.24 measured)
