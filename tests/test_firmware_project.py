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


# ------------------------------------------------------------------ projects from a real full-int8 bundle


def _cli(*args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "edgeode", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=900)


@pytest.fixture(scope="module")
def int8_bundle(digits_int8_bundle) -> Path:
    """The session's digits ODE-Net (tests/conftest.py: trained for real, exported with --quantize int8), not a
    second training and export of its own (that cost ~55 s of the suite; the CLI path of the int8 export is
    tested in tests/test_int8.py)."""
    pytest.importorskip("edgeode.runtime.tflm", reason="the host tflm backend (issue 13) is not on this branch")
    return digits_int8_bundle


def _sample_arrays(text: str, name: str) -> np.ndarray:
    import re

    body = re.search(rf"{name}\[EDGEODE_SAMPLES\]\[\w+\] = \{{(.*?)\n\}};", text, re.S).group(1)
    rows = re.findall(r"\{([^}]*)\}", body)
    return np.array([[float.fromhex(v.strip().rstrip("f")) for v in row.split(",")] for row in rows], np.float32)


@pytest.mark.slow
def test_esp32_project_holds_exactly_the_bundle(int8_bundle, tmp_path):
    """The contract: platformio.ini, and C arrays holding exactly the bundle's .tflite bytes; the rest consistent."""
    import json
    import math

    from edgeode.cli import main
    from edgeode.firmware.carray import parse_c_array
    from edgeode.firmware.project import ARENA_MARGIN
    from edgeode.firmware.tflite_ops import tflite_ops
    from edgeode.runtime import load, read_bundle

    out = tmp_path / "esp"
    assert main(["pack", str(int8_bundle), "--device", "esp32-s3", "-o", str(out), "-q"]) == 0
    ini = (out / "platformio.ini").read_text()
    assert "board = esp32-s3-devkitc-1" in ini and "framework = espidf" in ini
    assert 'espressif/esp-tflite-micro: "^1.4"' in (out / "src" / "idf_component.yml").read_text()
    record = json.loads((out / "edgeode-pack.json").read_text())
    bundle = read_bundle(int8_bundle)
    arts = {a.role: a for a in bundle.manifest.artifacts if a.precision == "int8" and a.role != "fused"}
    models_cpp = (out / "src" / "edgeode_models.cpp").read_text()
    assert {m["role"] for m in record["models"]} == set(arts) == {"encoder", "field", "head"}
    for m in record["models"]:
        assert parse_c_array(models_cpp, m["symbol"]) == (int8_bundle / m["path"]).read_bytes()
        assert m["arena_measured"] == arts[m["role"]].tflm.arena_bytes
        assert m["arena"] == 16 * math.ceil(m["arena_measured"] * (1 + ARENA_MARGIN) / 16)
        # the ops read here from the flatbuffer are the ones the exporter recorded from TFLM
        assert set(m["ops"]) == set(arts[m["role"]].tflm.ops)
    ops = sorted({op.name for a in arts.values() for op in tflite_ops(bundle.path(a))})
    assert record["ops"] == ops
    firmware = (out / "src" / "edgeode_firmware.cpp").read_text()
    assert [f"resolver.{m}();" for m in record["resolver"]] == [ln.strip() for ln in firmware.splitlines()
                                                                if ln.strip().startswith("resolver.")]
    assert f"#define EDGEODE_OP_COUNT {len(ops)}" in (out / "src" / "edgeode_config.h").read_text()
    srcs = (out / "src" / "CMakeLists.txt").read_text()
    for name in ("main.cpp", "edgeode_firmware.cpp", "edgeode_models.cpp", "edgeode_solver.c", "edgeode_quant.c"):
        assert f'"{name}"' in srcs and (out / "src" / name).is_file()
    assert f"from the {bundle.manifest.solver.tableau.name} tableau" in (out / "src" / "edgeode_solver.c").read_text()
    # the expected outputs are the host TFLM loop's on the packed inputs
    sample = (out / "src" / "edgeode_sample.h").read_text()
    x = _sample_arrays(sample, "edgeode_sample_inputs")
    expected = _sample_arrays(sample, "edgeode_sample_expected")
    with load(int8_bundle, backend="tflm", mode="loop", precision="int8") as model:
        host = np.concatenate([model.predict(xi.reshape(1, 1, 8, 8)) for xi in x])
    np.testing.assert_array_equal(expected, host)
    assert record["sample_classes"] == host.argmax(1).tolist()
    assert "pio run -t upload" in (out / "README.md").read_text()


@pytest.mark.slow
def test_nano_project_uses_the_arduino_library_and_refuses_what_does_not_fit(int8_bundle, tmp_path):
    from dataclasses import replace

    from edgeode.devices.profiles import load_profile
    from edgeode.errors import PackError
    from edgeode.firmware.project import build_project
    from edgeode.pack import pack
    from edgeode.runtime import read_bundle

    x = np.random.default_rng(1).uniform(0, 1, (3, 1, 8, 8)).astype(np.float32)
    result = pack(int8_bundle, "nano-33-ble-sense", tmp_path / "nano", samples=x, progress=False)
    assert result.kind == "firmware"
    out = result.out_dir
    assert "lib_deps = spaziochirale/Chirale_TensorFLowLite@2.0.0" in (out / "platformio.ini").read_text()
    assert "#include <Chirale_TensorFlowLite.h>" in (out / "src" / "edgeode_firmware.cpp").read_text()
    np.testing.assert_array_equal(_sample_arrays((out / "src" / "edgeode_sample.h").read_text(),
                                                 "edgeode_sample_inputs"), x.reshape(3, -1))
    with pytest.raises(PackError, match=r"sample inputs must be \[S, 1, 8, 8\]"):
        pack(int8_bundle, "nano-33-ble-sense", tmp_path / "bad", samples=x[:, 0], progress=False)
    assert not (tmp_path / "bad").exists()
    tiny = replace(load_profile("nano-33-ble-sense"), ram_mb=0.04)
    with pytest.raises(PackError, match=r"does not fit the Arduino Nano 33 BLE Sense: RAM [\d,]+ B \(arenas encoder"):
        build_project(read_bundle(int8_bundle), tiny)


@pytest.mark.slow
@pytest.mark.parametrize("tableau", ["euler", "midpoint", "heun", "rk4", "rk4_38"])
def test_host_c_solver_around_the_int8_tflm_field_equals_the_python_loop(int8_bundle, tableau, tmp_path):
    """The generated C loop driven through a ctypes callback by the real TFLM int8 field: the Python loop's bits."""
    from edgeode.firmware import generate_solver
    from edgeode.firmware.host import HostSolver
    from edgeode.runtime import load, read_bundle
    from edgeode.runtime.loop import FieldLoop
    from edgeode.tableaus import get_tableau

    cc, why = host_cc()
    if cc is None:
        pytest.skip(why)
    bundle = read_bundle(int8_bundle)
    art = next(a for a in bundle.manifest.artifacts if a.role == "field" and a.precision == "int8")
    sol = bundle.manifest.solver
    with load(int8_bundle, backend="tflm", mode="loop", precision="int8") as model:
        enc = model.sessions["encoder"]
        h0 = enc.run({enc.inputs[0].name: np.random.default_rng(2).uniform(0, 1, (1, 1, 8, 8)).astype(np.float32)})[0]
    tflm = pytest.importorskip("edgeode.runtime.tflm")
    loop = FieldLoop(tflm.TFLMSession(bundle.path(art), art), get_tableau(tableau))
    expected: list[np.ndarray] = []
    dt = (sol.t1 - sol.t0) / sol.steps
    loop.integrate(h0, sol.t0, dt, sol.steps, out=expected)
    solver = HostSolver(generate_solver(tableau, h0.size), tmp_path)
    got = solver.solve(lambda t, h: loop._f(t, h), h0, sol.t0, dt, sol.steps)
    np.testing.assert_array_equal(got, np.stack(expected))
