"""`edgeode compare --mcu` end to end on a tiny configuration: real training, real int8 exports measured in
TFLM, the microcontroller section of the report, and the memory plot's microcontroller cells from those files."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("ai_edge_quantizer", reason="int8 export needs ai-edge-quantizer")
pytest.importorskip("tflite_micro", reason="int8 bundles are measured in tflite-micro: pip install 'edgeode[mcu]'")

from edgeode.compare.mcu import MCU_BOARDS  # noqa: E402
from edgeode.devices.profiles import load_profile  # noqa: E402
from edgeode.firmware.fit import mcu_fit  # noqa: E402
from edgeode.runtime.manifest import Manifest  # noqa: E402


@pytest.mark.slow
def test_compare_mcu_tiny_end_to_end(quick_compare):
    # tests/conftest.py: `compare --quick --mcu` run once for this test and tests/test_compare.py
    out, proc = quick_compare.out, quick_compare.proc
    assert quick_compare.mcu and proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    rows = report["mcu"]
    assert [(r["model"], r["mode"], r["device"]) for r in rows] == [
        (m, mode, b) for m, modes in (("odenet", ("loop", "fused")), ("resnet", ("single",)), ("vgg", ("single",)))
        for b in MCU_BOARDS for mode in modes]
    for r in rows:
        bundle = out / "bundles" / f"{r['model']}-int8"
        man = Manifest.read(bundle)
        # the figures are the exported int8 files' own: sizes on disk, arenas and accuracy the export measured
        # in TFLM (a network without an ODE is one file, its accuracy recorded under "fused")
        mode = "fused" if r["mode"] == "fused" else "loop"
        assert r["accuracy_int8"] == man.mcu.accuracy["int8"]["loop" if r["mode"] == "loop" else "fused"]
        assert 0.0 <= r["accuracy_int8"] <= 1.0
        fit = mcu_fit(man, load_profile(r["device"]), mode)
        assert fit.model_flash_bytes == sum((bundle / n.path).stat().st_size for n in fit.nets) == r["model_flash_bytes"]
        assert (r["ram_needed_bytes"], r["fits"]) == (fit.ram_needed_bytes, fit.fits)
        assert all(n.arena_measured_bytes == man.find(n.role, "tflite", "int8").tflm.arena_bytes > 0 for n in fit.nets)
    # memory_per_device: each microcontroller cell of an MNIST-scale model is the int8 loop's fit, not the
    # float32 ONNX estimate; RK-Net has the ODE-Net's files
    loop = {(r["model"], r["device"]): r for r in rows if r["mode"] in ("loop", "single")}
    for row in report["mnist_scale"]:
        arch = "odenet" if row["model"] == "rknet" else row["model"]
        for board in MCU_BOARDS:
            cell, want = row["per_device"][board], loop[arch, board]
            assert cell["int8"] and cell["ram_needed_mb"] * 2**20 == pytest.approx(want["ram_needed_bytes"])
            assert cell["ram_available_mb"] * 2**20 == pytest.approx(want["ram_board_bytes"])
            assert cell["fits"] == want["fits"]
    for name in ("mcu_boards.png", "memory_per_device.png"):
        assert (out / name).stat().st_size > 10_000, name
    md = (out / "report.md").read_text()
    assert "## Microcontrollers: full-int8 models in TensorFlow Lite Micro" in md
    assert md.count("| odenet | loop |") == len(MCU_BOARDS) and "ODE-Net (loop) model flash / ResNet model flash" in md
    ratio = loop["odenet", MCU_BOARDS[0]]["model_flash_bytes"] / loop["resnet", MCU_BOARDS[0]]["model_flash_bytes"]
    assert f"ResNet model flash: {ratio:.2f}." in md
