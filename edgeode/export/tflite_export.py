"""torch -> TFLite for one artifact with litert-torch (the maintained PyTorch-to-LiteRT converter).

Shapes are fixed at conversion (the batch included): litert-torch can silently produce a wrong
model with dynamic shapes (DESIGN.md), and every artifact goes through the parity gate anyway.
Signature inputs are named after the keyword arguments (``x``, ``t``, ``h``, ``y0``) and outputs
after the :class:`~edgeode.export.modules.Named` wrapper (``logits``, ``dh``, ...).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from edgeode.errors import ExportError
from edgeode.export.modules import named
from edgeode.export.quiet import quiet

__all__ = ["convert_tflite", "import_litert_torch"]

INSTALL_HINT = "pip install 'edgeode[train]' (it installs litert-torch)"


def import_litert_torch():
    """Import litert_torch or raise :class:`ExportError` with the install hint."""
    try:
        with quiet():
            import litert_torch
    except ImportError as exc:
        raise ExportError(f"TFLite export needs litert-torch, which is not installed ({exc}): {INSTALL_HINT}; "
                          "or export only ONNX with --formats onnx") from None
    return litert_torch


def convert_tflite(module: nn.Module, sample_kwargs: dict[str, torch.Tensor], output_name: str, path: str | Path) -> Path:
    """Convert ``module(**sample_kwargs)`` to a TFLite flatbuffer at ``path`` (written atomically).

    The shapes of ``sample_kwargs`` become the fixed input shapes of the model.
    """
    litert_torch = import_litert_torch()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    wrapped = named(module, tuple(sample_kwargs), output_name).eval()
    try:
        with quiet():
            converted = litert_torch.convert(wrapped, sample_kwargs=sample_kwargs)
            converted.export(str(tmp))
    except Exception as exc:  # the converter raises many types; report them as one
        tmp.unlink(missing_ok=True)
        raise ExportError(f"litert-torch could not convert {path.name}: {type(exc).__name__}: {exc}") from exc
    os.replace(tmp, path)
    return path
