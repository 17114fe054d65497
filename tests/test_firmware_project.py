"""Firmware projects (`edgeode pack BUNDLE --device esp32-s3 | nano-33-ble-sense`) and their C parts on the host."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from edgeode.firmware.templates_io import render
from edgeode.firmware.toolchain import compile_host_library, host_cc


def _quant_library(tmp_path: Path) -> ctypes.CDLL:
    cc, why = host_cc()
    if cc is None:
        pytest.skip(why)
    lib = ctypes.CDLL(str(compile_host_library(
        {"edgeode_quant.h": render("project/edgeode_quant.h"), "edgeode_quant.c": render("project/edgeode_quant.c")},
        tmp_path, "quant")))
    fp, bp = ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int8)
    lib.edgeode_quantize.argtypes = [fp, bp, ctypes.c_int, ctypes.c_float, ctypes.c_int]
    lib.edgeode_dequantize.argtypes = [bp, fp, ctypes.c_int, ctypes.c_float, ctypes.c_int]
    return lib


def test_firmware_quantization_equals_the_host_tflm_backend(tmp_path):
    """The board's float <-> int8 code gives the bytes the host's tflm backend gives, ties included."""
    tflm = pytest.importorskip("edgeode.runtime.tflm", reason="the host tflm backend (issue 13) is not on this branch")
    from edgeode.runtime.manifest import Quantization

    lib = _quant_library(tmp_path)
    rng = np.random.default_rng(0)
    fp, bp = ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int8)
    for scale, zp in ((0.00392157, -128), (0.0480711, 2), (0.25, 0), (1.0, 127)):
        q = Quantization(float(np.float32(scale)), zp)
        # random values over and beyond the int8 range, and exact ties k + 0.5 steps (round half to even)
        x = np.concatenate([rng.uniform(-200, 200, 4000) * scale, (np.arange(-140, 140) + 0.5) * np.float32(scale)])
        x = x.astype(np.float32)
        got = np.empty(x.size, np.int8)
        lib.edgeode_quantize(x.ctypes.data_as(fp), got.ctypes.data_as(bp), x.size, np.float32(scale), zp)
        np.testing.assert_array_equal(got, tflm.quantize(x, q))
        back = np.empty(x.size, np.float32)
        lib.edgeode_dequantize(got.ctypes.data_as(bp), back.ctypes.data_as(fp), x.size, np.float32(scale), zp)
        np.testing.assert_array_equal(back, tflm.dequantize(got, q))
