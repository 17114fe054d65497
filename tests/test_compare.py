"""`edgeode compare` end to end on a tiny configuration: real training, export, profiling, report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("matplotlib")


@pytest.mark.slow
def test_compare_quick_writes_report_with_measured_numbers(quick_compare):
    out, proc = quick_compare.out, quick_compare.proc  # tests/conftest.py: one run, also read by test_compare_mcu
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("report.md", "report.json", "memory_per_device.png", "accuracy_vs_energy.png", "latency_per_device.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert report["device"] == "pi-zero-2w"
    models = [r["model"] for r in report["mnist_scale"]]
    assert models == ["odenet", "rknet", "resnet", "vgg"]
    md = (out / "report.md").read_text()
    for r in report["mnist_scale"]:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["parameters"] > 0
        assert r["peak_rss_mb"] > r["runtime_floor_mb"] * 0.9 and r["latency_ms"]["p50"] > 0
        assert r["energy_proxy_mj"] > 0 and r["macs_per_inference"] > 0
        assert "estimate" in r["figures"]
        # the markdown table holds the measured numbers
        assert f"| {r['model']} | {100 * r['accuracy']:.1f}% | {r['parameters']:,} |" in md
        assert f"{r['peak_rss_mb']:.1f}" in md
    ode, rk = report["mnist_scale"][0], report["mnist_scale"][1]
    assert ode["field_evaluations"] == rk["field_evaluations"] == 4 * 2  # rk4, 2 steps in --quick
    imagenet = {r["model"]: r for r in report["imagenet_scale"]}
    assert imagenet["resnet18"]["parameters"] == 11_689_512
    assert imagenet["resnet50"]["parameters"] == 25_557_032
    assert imagenet["vgg16"]["parameters"] == 138_357_544
    assert imagenet["ode-resnet50"]["parameters"] < imagenet["resnet50"]["parameters"]
    # the question the issue asks, answered in the report
    ans = report["answers"]["vgg16_on_pi_zero_2w"]
    assert ans["fits"] is False and ans["message"].startswith("does not fit pi-zero-2w: needs")
    assert "Does VGG-16 fit a Raspberry Pi Zero 2 W?" in md and "**No.**" in md
    assert "estimate" in md.lower() and "![Memory per model per device](memory_per_device.png)" in md


def test_compare_rejects_unknown_device(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgeode", "compare", "--device", "pi-6", "-o", str(tmp_path / "r"),
                           "--quick"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "known devices" in proc.stderr


def test_train_memory_plot_reads_the_benchmark_layout(tmp_path):
    from edgeode.compare.report import _plot_train_memory, _train_memory_series

    data = {"meta": {"batch": 32}, "rows": [
        {"method": "adjoint", "steps": 10, "peak_mb": 317.5, "before_mb": 224.6},
        {"method": "adjoint", "steps": 160, "peak_mb": 319.0, "before_mb": 224.8},
        {"method": "backprop", "steps": 10, "peak_mb": 418.0, "before_mb": 224.9},
        {"method": "backprop", "steps": 160, "peak_mb": 2532.1, "before_mb": 224.7},
        {"method": "resnet", "blocks": 6, "peak_mb": 287.3, "before_mb": 226.3}]}
    series = _train_memory_series(data)
    assert series["adjoint (x = steps)"] == [(10.0, 317.5), (160.0, 319.0)]
    assert series["backprop (x = steps)"][-1] == (160.0, 2532.1)
    assert series["resnet (x = blocks)"] == [(6.0, 287.3)]
    png = tmp_path / "train_memory.png"
    assert _plot_train_memory({"train_memory": {"source": "train_memory.json", "data": data}}, png)
    assert png.stat().st_size > 1000
    assert not _plot_train_memory({"train_memory": {"source": None, "data": None}}, tmp_path / "none.png")


@pytest.mark.parametrize("setup", ["file", "foreign-dir"])
def test_compare_refuses_an_output_it_would_clobber_before_any_work(tmp_path, setup):
    out = tmp_path / "out"
    if setup == "file":
        out.write_text("not a directory")
    else:
        out.mkdir()
        (out / "mine.txt").write_text("user data")
    proc = subprocess.run([sys.executable, "-m", "edgeode", "compare", "--device", "pi-4b", "-o", str(out), "--quick"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "edgeode compare: error: -o" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging directory left beside it
    if setup == "foreign-dir":
        assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_compare_device_figures_follow_calibration_and_emulation_exactly_as_profile(onnx_bundles, tmp_path, monkeypatch):
    """compare's per-device figures come from the same scaling as `edgeode profile`: a profile calibrated on
    this host gives the host figures (factor 1), a shipped one the estimate, emulation none at all."""
    monkeypatch.setenv("EDGEODE_DEVICES_DIR", str(tmp_path))
    from edgeode.compare.runner import device_figures
    from edgeode.devices.calibrate import calibrate, save_profile
    from edgeode.devices.profiler import profile_bundle
    from edgeode.devices.profiles import load_profile

    save_profile(calibrate("here", seconds=0.1))
    bundle = onnx_bundles.classifier.path

    def both(device):
        prof = profile_bundle(bundle, device, runs=3, warmup=1, progress=False, count_macs=False).to_dict()
        return prof, device_figures(prof, [load_profile(device)])[device]

    for device in ("here", "pi-4b"):
        prof, row = both(device)
        assert (row["figures"], row["estimate"], row["scale_factor"]) == (prof["figures"], prof["estimate"],
                                                                          prof["scaling"]["factor"])
        assert row["latency_p50_ms"] == prof["latency_ms"]["p50"] and row["energy_proxy_mj"] == prof["energy_proxy_mj"]
        if device == "here":
            assert row["estimate"] is False and row["scale_factor"] == 1.0
            assert row["latency_p50_ms"] == prof["host_basis"]["latency_ms"]["p50"]
        else:
            assert row["estimate"] is True and row["scale_factor"] != 1.0
    monkeypatch.setenv("EDGEODE_EMULATED", "1")
    prof, row = both("pi-4b")
    assert prof["latency_ms"] is None and row["latency_p50_ms"] is None and row["energy_proxy_mj"] is None
    assert row["figures"] == prof["figures"] and "emulation" in row["figures"]
