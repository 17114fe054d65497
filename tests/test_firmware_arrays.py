"""Model bytes as C arrays (compiled by the real C++ compiler and read back) and the op list of .tflite files."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from edgeode.errors import PackError
from edgeode.firmware.carray import c_array_declaration, c_array_definition, parse_c_array
from edgeode.firmware.tflite_ops import resolver_method, tflite_ops


def _sample_tflite() -> Path:
    tflm = pytest.importorskip("tflite_micro", reason="the sample .tflite file ships with tflite-micro")
    path = Path(tflm.__file__).parent / "python" / "tflite_micro" / "sine_float.tflite"
    if not path.is_file():
        pytest.skip(f"{path} is not in this tflite-micro release")
    return path


def test_c_array_compiles_to_the_same_bytes(tmp_path):
    """g++ compiles the array; reading it back from the shared library gives the file's bytes and alignment."""
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler on PATH (apt-get install g++)")
    data = _sample_tflite().read_bytes() + bytes(range(256))
    src = tmp_path / "model.cpp"
    src.write_text(c_array_declaration("g_model") + "\n" + c_array_definition("g_model", data), encoding="utf-8")
    lib = tmp_path / "libmodel.so"
    subprocess.run([cxx, "-std=c++11", "-Wall", "-Werror", "-fPIC", "-shared", "-o", str(lib), str(src)], check=True)
    dll = ctypes.CDLL(str(lib))
    n = ctypes.c_uint.in_dll(dll, "g_model_len").value
    arr = (ctypes.c_ubyte * n).in_dll(dll, "g_model")
    assert n == len(data) and bytes(arr) == data
    assert ctypes.addressof(arr) % 16 == 0
    assert parse_c_array(src.read_text(encoding="utf-8"), "g_model") == data


def test_parse_c_array_notices_a_wrong_length():
    text = c_array_definition("m", b"\x01\x02\x03").replace("m_len = 3", "m_len = 4")
    with pytest.raises(PackError, match="holds 3 bytes but m_len says 4"):
        parse_c_array(text, "m")


def test_tflite_ops_agree_with_the_official_schema_reader():
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated", reason="ai-edge-litert's schema reader")
    path = _sample_tflite()
    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    expected = [(names[max(oc.deprecatedBuiltinCode, oc.builtinCode)], oc.version) for oc in model.operatorCodes]
    assert [(op.name, op.version) for op in tflite_ops(path)] == expected
    assert resolver_method("FULLY_CONNECTED") == "AddFullyConnected"
    assert resolver_method("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D"


def test_tflite_ops_refuses_other_files(tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(PackError, match="not a .tflite file"):
        tflite_ops(bad)
    with pytest.raises(PackError, match="no kernel for op HASHTABLE"):
        resolver_method("HASHTABLE")
