"""Read the input / output tensor specs of an exported file, as the manifest records them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeode.runtime.manifest import TensorSpec
from edgeode.runtime.tflm import tensor_quantization

__all__ = ["onnx_specs", "tflite_specs"]

_ONNX_DTYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 2: "uint8"}


def _onnx_tensor(value) -> TensorSpec:
    ttype = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim)
    return TensorSpec(value.name, shape, _ONNX_DTYPES.get(ttype.elem_type, "float32"))


def onnx_specs(path: str | Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...], int]:
    """Graph inputs (an initializer that is also an input, like ``steps``, included), outputs, opset."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    opset = next((op.version for op in model.opset_import if op.domain in ("", "ai.onnx")), None)
    inputs = tuple(_onnx_tensor(v) for v in model.graph.input)
    outputs = tuple(_onnx_tensor(v) for v in model.graph.output)
    return inputs, outputs, opset


def tflite_specs(path: str | Path, index_order: bool = False) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Signature inputs and outputs of a TFLite file, from the LiteRT interpreter.

    Inputs are listed in the signature's order (litert-torch sorts them by name: ``h`` before ``t``),
    so a reader matching manifest inputs to the signature by position also gets them right; with
    ``index_order`` they are listed in the model's tensor index order instead (how TFLM addresses
    them). int8 tensors carry their (per-tensor) scale and zero point.
    """
    from edgeode.runtime.backends import open_interpreter

    interpreter = open_interpreter("litert", path)
    (key, sig), = interpreter.get_signature_list().items()
    runner = interpreter.get_signature_runner(key)
    ins, outs = runner.get_input_details(), runner.get_output_details()

    def spec(name: str, d: dict) -> TensorSpec:
        # the runtime's reader of the same details: what the tflm session checks the manifest against
        return TensorSpec(name, tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]).name, tensor_quantization(d))

    def ordered(names: list[str], details: dict, model_details: list[dict]) -> list[str]:
        if not index_order:
            return names
        position = {d["index"]: i for i, d in enumerate(model_details)}
        return sorted(names, key=lambda n: position[details[n]["index"]])

    return (tuple(spec(n, ins[n]) for n in ordered(sig["inputs"], ins, interpreter.get_input_details())),
            tuple(spec(n, outs[n]) for n in ordered(sig["outputs"], outs, interpreter.get_output_details())))
