"""Quantized variants of the float32 artifacts (``edgeode export --quantize``).

* ONNX ``int8-dynamic``: ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, activations
  quantized on the fly).
* TFLite ``int8-dynamic`` / ``int8-weight`` / ``float16``: ai-edge-quantizer recipes
  ``dynamic_wi8_afp32`` / ``weight_only_wi8_afp32`` / fp16 weight casting.

Each variant is a new :class:`~edgeode.export.plan.Job` built from the float file already in the
bundle, with the same parity cases as the float file and the looser tolerance of its precision.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgeode.errors import ConfigError, ExportError
from edgeode.export.plan import Job
from edgeode.export.quiet import quiet

__all__ = ["SUPPORTED", "quantized_jobs", "check_quantize", "write_quantized"]

#: precision -> formats that can produce it
SUPPORTED = {"int8-dynamic": ("onnx", "tflite"), "int8-weight": ("tflite",), "float16": ("tflite",), "int8": ("tflite",)}


def check_quantize(quantize: tuple[str, ...], formats: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` for a precision that none of ``formats`` can produce."""
    for q in quantize:
        if not set(SUPPORTED[q]) & set(formats):
            raise ConfigError(f"--quantize {q} needs format(s) {', '.join(SUPPORTED[q])}, but only "
                              f"{', '.join(formats)} are exported; add them to --formats")


def _quant_path(path: str, precision: str) -> str:
    stem, dot, ext = path.rpartition(".")
    return f"{stem}.{precision}{dot}{ext}"


def quantized_jobs(jobs: list[Job], quantize: tuple[str, ...], bundle: Path) -> list[Job]:
    """One job per (float job, requested precision) that its format supports (``int8``: :mod:`edgeode.export.int8`)."""
    out = []
    for precision in quantize:
        if precision == "int8":
            continue
        for job in jobs:
            if job.precision != "float32" or job.format not in SUPPORTED[precision]:
                continue
            source = bundle / job.path
            builder = _onnx_builder(source) if job.format == "onnx" else _tflite_builder(source, precision)
            out.append(replace(job, path=_quant_path(job.path, precision), build=builder, precision=precision))
    return out


def _onnx_builder(source: Path):
    def build(path: Path) -> None:
        try:
            from onnxruntime.quantization import QuantType, quantize_dynamic
        except ImportError:
            raise ExportError("ONNX quantization needs onnxruntime: pip install onnxruntime") from None
        tmp = path.with_name(path.name + ".tmp")
        try:
            with quiet():
                quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8)
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise ExportError(f"onnxruntime could not quantize {source.name}: {type(exc).__name__}: {exc}") from exc
        os.replace(tmp, path)
    return build


def _tflite_builder(source: Path, precision: str):
    def build(path: Path) -> None:
        try:
            with quiet():
                from ai_edge_quantizer import quantizer, recipe
        except ImportError:
            raise ExportError("TFLite quantization needs ai-edge-quantizer: pip install ai-edge-quantizer") from None
        qt = quantizer.Quantizer(str(source))
        if precision == "int8-dynamic":
            qt.load_quantization_recipe(recipe.dynamic_wi8_afp32())
        elif precision == "int8-weight":
            qt.load_quantization_recipe(recipe.weight_only_wi8_afp32())
        else:
            qt.add_weight_only_config(regex=".*", operation_name=recipe.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                                      algorithm_key=recipe.AlgorithmName.FLOAT_CASTING)
        write_quantized(source, path, precision,
                        lambda: qt.quantize(enable_progress_bar=False, enable_progress_report=False))
    return build


def write_quantized(source: Path, path: Path, precision: str, quantize: Callable[[], Any]) -> None:
    """Run ``quantize()`` (an ai-edge-quantizer call returning a result) quietly and write its model to ``path``
    atomically; any failure is an :class:`ExportError` naming ``source`` and ``precision``."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with quiet():
            result = quantize()
        if result.quantized_model is None:
            raise ExportError(f"ai-edge-quantizer returned no model for {source.name} ({precision})")
        tmp.write_bytes(bytes(result.quantized_model))
    except ExportError:
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"ai-edge-quantizer could not quantize {source.name} to {precision}: "
                          f"{type(exc).__name__}: {exc}") from exc
    os.replace(tmp, path)
