"""The profiler on real bundles through the real runtime, in real child processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgeode.devices.measure import ChildTimeout, run_child  # noqa: E402
from edgeode.devices.profiler import percentiles, profile_bundle  # noqa: E402
from edgeode.errors import EdgeodeError  # noqa: E402
from edgeode.runtime.bundle import sha256_file  # noqa: E402
from edgeode.runtime.manifest import Artifact, InputSpec, Manifest, OutputSpec, TensorSpec  # noqa: E402

# Conv 1->4 (3x3, pad 1) on 8x8, flatten, Gemm 256->10. MACs per sample: 4*8*8*9 + 256*10 = 4864.
HAND_MACS = 4 * 8 * 8 * 9 + 256 * 10


def build_bundle(root: Path) -> Path:
    """A real ONNX classifier bundle (no ODE, role ``model``) built with onnx.helper."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "W")
    g = numpy_helper.from_array(rng.standard_normal((10, 256)).astype(np.float32) * 0.05, "G")
    shape = numpy_helper.from_array(np.array([-1, 256], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Reshape", ["r", "shape"], ["f"]), helper.make_node("Gemm", ["f", "G"], ["scores"], transB=1)],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10])], [w, g, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (root / "onnx").mkdir(parents=True)
    path = root / "onnx" / "model.onnx"
    onnx.save(model, str(path))
    art = Artifact("onnx/model.onnx", "model", "onnx", "float32", sha256_file(path), path.stat().st_size, None,
                   (TensorSpec("x", (None, 1, 8, 8)),), (TensorSpec("scores", (None, 10)),), 17, 0.0, 1e-4)
    man = Manifest("classifier", {"arch": "tiny", "parameters": 4 * 9 + 2560}, InputSpec(TensorSpec("x", (None, 1, 8, 8))),
                   OutputSpec(TensorSpec("scores", (None, 10)), tuple(str(i) for i in range(10))), None, (art,),
                   {"onnx": onnx.__version__}, "2026-01-01T00:00:00Z")
    (root / "manifest.json").write_text(man.to_json())
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("prof") / "tiny")


def test_known_allocation_shows_in_peak_memory():
    """A child that allocates and touches 200 MiB: the profiler's peak is 200 MiB above a 0 MiB child."""
    base = run_child(["alloc", "--mb", "0"])
    big = run_child(["alloc", "--mb", "200"])
    added = big.peak_rss_mb - base.peak_rss_mb
    assert 190 <= added <= 215, added
    # both methods see it: parent-side sampling and the kernel's high-water mark
    assert big.peak_rss_sampled_mb - base.peak_rss_sampled_mb > 190
    assert big.peak_rss_kernel_mb - base.peak_rss_kernel_mb > 190
    assert big.samples > 5


def test_child_timeout_never_hangs():
    with pytest.raises(ChildTimeout, match="killed"):
        run_child(["alloc", "--mb", "1", "--hold", "30"], timeout=1.0)


def test_a_killed_profiler_leaves_no_child():
    """SIGKILL the process that runs a measured child (as the OOM killer or ``kill -9`` would): the child, which
    would hold its CPU for 60 s, ends within seconds instead of living on as an orphan."""
    import signal
    import time

    psutil = pytest.importorskip("psutil")
    code = "from edgeode.devices.measure import run_child; run_child(['alloc', '--mb', '1', '--hold', '60'], timeout=120)"
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.monotonic() + 60
        while not (children := psutil.Process(parent.pid).children()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert children, "the measured child did not start"
        time.sleep(1.0)  # the child is past its start-up, holding
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        gone, alive = psutil.wait_procs(children, timeout=10)
    finally:
        parent.kill()
    assert not [c for c in alive if c.status() != psutil.STATUS_ZOMBIE], "the child outlived its killed parent"


def test_profile_reports_units_and_macs(bundle):
    d = profile_bundle(bundle, "pi-4b", runs=12, warmup=2, progress=False).to_dict()
    assert d["estimate"] is True and "estimate" in d["figures"]
    assert set(d["latency_ms"]) >= {"p50", "p95", "p99"}
    assert 0 < d["latency_ms"]["p50"] <= d["latency_ms"]["p95"] <= d["latency_ms"]["p99"]
    f = d["scaling"]["factor"]
    basis = d["host_basis"]["latency_ms"]["p50"]
    assert d["latency_ms"]["p50"] == pytest.approx(basis * f) and basis <= d["host_latency_ms"]["p50"]
    assert d["runtime_floor_mb"] > 20 and d["peak_rss_mb"] >= d["runtime_floor_mb"]
    assert d["model_added_mb"] == pytest.approx(d["peak_rss_mb"] - d["runtime_floor_mb"])
    assert d["macs_per_inference"] == HAND_MACS
    assert d["field_evaluations"] == 0
    assert d["cpu_ms_per_inference"] > 0 and d["energy_proxy_mj"] > 0
    # energy proxy = device CPU-seconds x (load - idle) / cores
    expected = d["cpu_ms_per_inference"] / 1e3 * (6.4 - 2.7) / 4 * 1e3
    assert d["energy_proxy_mj"] == pytest.approx(expected)
    assert d["fits"]["fits"] is True and d["fits"]["message"].startswith("fits pi-4b")
    assert d["bundle_size_mb"] > 0 and "spinning is off" in d["spinning"]
    assert d["threads"] == min(4, d["threads"])


def test_does_not_fit_is_a_verdict(bundle, tmp_path, monkeypatch):
    """A board with less RAM than python + onnxruntime + the model: a verdict, not a crash."""
    data = json.loads((Path(__file__).resolve().parents[1] / "edgeode/devices/profiles/pi-zero-2w.json").read_text())
    data.update(name="tiny-board", ram_mb=64, os_reserved_mb=40, storage_mb=0.01)
    (tmp_path / "tiny-board.json").write_text(json.dumps(data))
    monkeypatch.setenv("EDGEODE_DEVICES_DIR", str(tmp_path))
    d = profile_bundle(bundle, "tiny-board", runs=3, warmup=1, progress=False, count_macs=False).to_dict()
    v = d["fits"]
    assert v["fits"] is False and v["ram_needed_mb"] == d["peak_rss_mb"] and v["ram_available_mb"] == 24
    assert v["message"].startswith(f"does not fit tiny-board: needs {d['peak_rss_mb']:.1f} MB RAM, device has 24.0 MB")
    assert "storage, device has 10.2 KB" in v["message"]


def test_microcontroller_profile_refuses_a_float_bundle(bundle):
    """A microcontroller runs full-int8 files: a float bundle is a typed error naming the fix
    (full-int8 bundles on microcontrollers: tests/test_mcu_profile.py)."""
    from edgeode.errors import BundleError

    with pytest.raises(BundleError, match="--quantize int8"):
        profile_bundle(bundle, "nano-33-ble-sense", runs=3, warmup=1, progress=False)


def test_emulation_refuses_device_timings(bundle, monkeypatch):
    monkeypatch.setenv("EDGEODE_EMULATED", "1")
    d = profile_bundle(bundle, "pi-zero-2w", runs=3, warmup=1, progress=False, count_macs=False).to_dict()
    assert d["latency_ms"] is None and d["energy_proxy_mj"] is None and d["scaling"]["emulation"]
    assert d["host_latency_ms"]["p50"] > 0 and "emulation" in d["figures"]


def test_calibrated_profile_on_this_host_is_measured(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEODE_DEVICES_DIR", str(tmp_path))
    from edgeode.devices.calibrate import calibrate, save_profile

    save_profile(calibrate("here", seconds=0.1))
    d = profile_bundle(bundle, "here", runs=3, warmup=1, progress=False, count_macs=False).to_dict()
    assert d["estimate"] is False and d["scaling"]["factor"] == 1.0 and d["figures"] == "measured on this device"
    assert d["latency_ms"]["p50"] == d["host_basis"]["latency_ms"]["p50"]


def test_percentiles_nearest_rank():
    p = percentiles([float(i) for i in range(1, 101)])
    assert (p["p50"], p["p95"], p["p99"]) == (50.0, 95.0, 99.0)


def test_cli_profile_json(bundle):
    out = subprocess.run([sys.executable, "-m", "edgeode", "profile", str(bundle), "--device", "pi-4b", "--json",
                          "--runs", "5", "--warmup", "1"], capture_output=True, text=True, check=True)
    d = json.loads(out.stdout)
    assert "profile: [1/3]" in out.stderr and "\r" not in out.stderr  # stderr is a pipe: one line per stage
    assert d["peak_rss_mb"] > 0 and set(d["latency_ms"]) >= {"p50", "p95", "p99"} and d["estimate"] is True
    text = subprocess.run([sys.executable, "-m", "edgeode", "profile", str(bundle), "--device", "pi-zero-2w",
                           "--runs", "3", "--warmup", "1"], capture_output=True, text=True, check=True).stdout
    assert "ESTIMATE" in text and "verdict" in text
    bad = subprocess.run([sys.executable, "-m", "edgeode", "profile", str(bundle), "--device", "toaster"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "known devices" in bad.stderr
    notbundle = subprocess.run([sys.executable, "-m", "edgeode", "profile", str(bundle / "onnx"), "--device", "pi-4b"],
                               capture_output=True, text=True)
    assert notbundle.returncode == 2 and "not a bundle" in notbundle.stderr


@pytest.mark.slow
def test_fused_and_loop_macs_agree_on_an_ode_bundle(tmp_path):
    """MACs of the fused ODE graph = encoder + (stages x steps) x field + head of the loop mode."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    runtime_bundles = pytest.importorskip("runtime_bundles")
    pytest.importorskip("torch")
    root = runtime_bundles.build_classifier(tmp_path / "ode", steps=3).path
    fused = profile_bundle(root, "pi-5", mode="fused", runs=2, warmup=0, progress=False).to_dict()
    loop = profile_bundle(root, "pi-5", mode="loop", runs=2, warmup=0, progress=False).to_dict()
    assert fused["field_evaluations"] == loop["field_evaluations"] == 4 * 3
    parts = loop["macs"]["artifacts"]
    assert parts["field"]["calls_per_inference"] == 12
    assert loop["macs_per_inference"] == parts["encoder"]["macs"] + 12 * parts["field"]["macs"] + parts["head"]["macs"]
    assert fused["macs_per_inference"] == loop["macs_per_inference"] > 0


@pytest.mark.parametrize("kwargs, error, match", [
    ({"precision": "int8-dynamic"}, "ConfigError", "has no int8-dynamic artifacts"),
    ({"backend": "tensorrt"}, "ConfigError", "unknown backend"),
])
def test_bad_backend_or_precision_fails_before_any_measurement(bundle, monkeypatch, kwargs, error, match):
    import edgeode.devices.profiler as profiler

    def no_child(*args, **kw):
        raise AssertionError("a child process was started")

    monkeypatch.setattr(profiler, "run_child", no_child)
    with pytest.raises(EdgeodeError, match=match) as info:
        profile_bundle(bundle, "pi-4b", progress=False, **kwargs)
    assert type(info.value).__name__ == error
