"""torch -> ONNX for one artifact, with ``torch.onnx.export(..., dynamo=True)`` and a dynamic batch."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from edgeode.errors import ExportError
from edgeode.export.onnx_passes import optimize_for_cpu
from edgeode.export.quiet import quiet

__all__ = ["OPSET", "export_onnx", "load_inlined", "strip_metadata"]

#: ONNX opset of every exported graph (>= 18 needed for the dynamo exporter's GroupNorm lowering).
OPSET = 20


def export_onnx(module: nn.Module, args: tuple[torch.Tensor, ...], input_names: list[str], output_names: list[str],
                path: str | Path, batch_inputs: tuple[str, ...]) -> Path:
    """Export ``module(*args)`` to ``path`` (opset :data:`OPSET`), with dim 0 of ``batch_inputs`` dynamic.

    The returned file has no local functions (they are inlined), so that graphs can be composed
    into the fused ``Loop`` graph, and is rewritten for onnxruntime's CPU kernels
    (:func:`edgeode.export.onnx_passes.optimize_for_cpu`: exact, checked by the parity gate).
    Raises :class:`ExportError` with the exporter's message on failure.
    """
    from torch.export import Dim

    batch = Dim("batch")
    dynamic = tuple({0: batch} if name in batch_inputs else None for name in input_names)
    path = Path(path)
    try:
        with quiet():
            program = torch.onnx.export(
                module.eval(), args, dynamo=True, input_names=input_names, output_names=output_names,
                dynamic_shapes=dynamic, opset_version=OPSET, verbose=False, optimize=True,
            )
    except Exception as exc:  # the exporter raises many types; report them as one
        raise ExportError(f"torch.onnx.export failed for {path.name}: {type(exc).__name__}: {exc}") from exc
    tmp = path.with_name(path.name + ".tmp")
    program.save(str(tmp))
    model = optimize_for_cpu(strip_metadata(load_inlined(tmp)))
    import onnx

    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    return path


def load_inlined(path: str | Path):
    """Load an ONNX model with its local functions inlined (plain node list, no function calls)."""
    import onnx
    from onnx import inliner

    model = onnx.load(str(path))
    if model.functions:
        model = inliner.inline_local_functions(model)
    return model


def strip_metadata(model):
    """Drop per-node doc strings and metadata (the exporter's stack traces): smaller files, same graph."""
    for node in model.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    for value in (*model.graph.value_info, *model.graph.input, *model.graph.output):
        del value.metadata_props[:]
    return model
