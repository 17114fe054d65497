"""The export's caches of torch's registries: one build per export, a private copy per call, torch restored."""

from __future__ import annotations

import pytest

pytest.importorskip("onnxscript", reason="the ONNX exporter's registry needs onnxscript")

from torch.onnx._internal.exporter import _registration  # noqa: E402

from edgeode.export.decomp_cache import cached_onnx_registry  # noqa: E402


def test_onnx_registry_is_built_once_and_copied_per_call():
    original = _registration.ONNXRegistry.__dict__["from_torchlib"]
    with cached_onnx_registry():
        first = _registration.ONNXRegistry.from_torchlib()
        second = _registration.ONNXRegistry.from_torchlib()
        assert first is not second and first.functions.keys() == second.functions.keys() and first.functions
        assert first.opset_version == second.opset_version
        name = next(iter(first.functions))
        first.functions[name].insert(0, "custom")  # what a custom_translation_table does to its registry
        first.functions["made:up"] = []
        assert "custom" not in second.functions[name] and "made:up" not in second.functions
        third = _registration.ONNXRegistry.from_torchlib()
        assert "custom" not in third.functions[name] and "made:up" not in third.functions
    assert _registration.ONNXRegistry.__dict__["from_torchlib"] is original
