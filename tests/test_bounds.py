"""Bounded, interruptible work (issue 11, Build 2): step bounds are typed errors, Ctrl-C and --timeout stop a
long real run in a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime_bundles as rb  # noqa: E402

from edgeode.errors import BundleError, ConfigError  # noqa: E402
from edgeode.runtime import load, read_bundle  # noqa: E402
from edgeode.runtime.backends import backend_available  # noqa: E402
from edgeode.runtime.limits import MAX_SAMPLE_STEPS, MAX_STEPS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def edgeode(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeode", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def built(onnx_bundles, tmp_path_factory):
    root = tmp_path_factory.mktemp("bounds")
    cls = onnx_bundles.classifier  # the session's (read only here)
    dyn = rb.build_loop_dynamics(root / "dynamics")  # fused ONNX Loop with a `steps` input
    np.save(root / "x.npy", cls.x)
    np.save(root / "y0.npy", dyn.x)
    return cls, dyn, root


@pytest.mark.parametrize("steps", [MAX_STEPS + 1, 10**12, 2**63, 10**5000, 0, -3, True],
                         ids=["bound+1", "1e12", "2**63", "5000-digits", "0", "-3", "True"])
def test_steps_out_of_bounds_is_a_config_error(built, steps):
    cls, _, _ = built
    with pytest.raises(ConfigError, match="steps"):
        load(cls.path, mode="loop", steps=steps)


def test_batch_times_steps_is_bounded(built):
    cls, _, _ = built
    model = load(cls.path, mode="loop", steps=MAX_STEPS)
    x = np.zeros((MAX_SAMPLE_STEPS // MAX_STEPS + 1, 1, 6, 6), np.float32)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="sample-steps"):
        model.predict(x)
    assert time.perf_counter() - start < 1.0  # refused before any work


def test_solve_times_spanning_too_many_steps(built):
    _, dyn, _ = built
    with pytest.raises(ConfigError, match="MAX_STEPS"):
        load(dyn.path, mode="loop").solve(dyn.x, times=[0.0, 1e9])


def test_manifest_steps_above_the_bound_is_refused(built, tmp_path):
    import shutil

    cls, _, _ = built
    dst = tmp_path / "b"
    shutil.copytree(cls.path, dst)
    data = json.loads((dst / "manifest.json").read_text())
    data["solver"]["steps"] = 10**12
    (dst / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"solver.steps.*bound"):
        read_bundle(dst)


@pytest.mark.parametrize("steps", [str(10**12), str(2**63)])
def test_cli_steps_above_the_bound_exits_fast_without_traceback(built, steps):
    cls, _, root = built
    start = time.perf_counter()
    proc = edgeode("run", str(cls.path), str(root / "x.npy"), "--steps", steps, "--json")
    assert proc.returncode != 0 and time.perf_counter() - start < 30
    assert "Traceback" not in proc.stderr and "bound" in proc.stderr and proc.stdout == ""


# ------------------------------------------------------------------ Ctrl-C and --timeout on a long real run

@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    """A dynamics bundle with a wide field (512 hidden) whose fused ONNX ``Loop`` takes ``steps``: with
    --steps 100000 and batch 100 one run is 10**7 sample-steps, tens of seconds of real work."""
    pytest.importorskip("torch", reason="building the test bundles needs torch")
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("slow")
    built = rb.build_loop_dynamics(root / "slow", hidden=512)
    np.save(root / "y0.npy", np.full((100, 2), 0.1, np.float32))
    return built.path, root / "y0.npy"


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgeode", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _long_run(slow, mode: str, *extra: str) -> list[str]:
    bundle, y0 = slow
    return ["run", str(bundle), str(y0), "--mode", mode, "--steps", "100000", "--threads", "1", "--json", *extra]


def _assert_ctrl_c_stops(args: list[str]) -> None:
    """Start ``edgeode ARGS``, SIGINT it 6 s later (imports and load done; the run takes far longer):
    exit 130 with one line, within a second."""
    import signal

    proc = _start(*args)
    try:
        time.sleep(6.0)
        assert proc.poll() is None, proc.communicate()
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        took = time.perf_counter() - sent
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["edgeode run: interrupted"] and out == ""
    assert took < 1.5, f"exited {took:.2f} s after SIGINT"  # goal 1 s; 0.5 s slack for a loaded 2-core machine


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fused", "loop"])
def test_ctrl_c_stops_a_long_run_within_a_second(slow, mode):
    _assert_ctrl_c_stops(_long_run(slow, mode))


@pytest.mark.slow
def test_ctrl_c_stops_a_long_litert_loop_run(spiral_bundle, tmp_path):
    """LiteRT: 100 samples x 100,000 steps of the spiral field, one interpreter invoke per stage (minutes)."""
    if not backend_available("litert"):
        pytest.skip("LiteRT (ai-edge-litert) is not installed")
    np.save(tmp_path / "y0.npy", np.full((100, 2), 0.1, np.float32))
    _assert_ctrl_c_stops(["run", str(spiral_bundle), str(tmp_path / "y0.npy"), "--backend", "litert", "--mode", "loop",
                          "--steps", "100000", "--threads", "1", "--json"])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fused", "loop"])
def test_timeout_stops_a_long_run(slow, mode):
    start = time.perf_counter()
    proc = edgeode(*_long_run(slow, mode, "--timeout", "3"), timeout=60)
    took = time.perf_counter() - start
    assert proc.returncode == 124, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "timeout of 3 s" in proc.stderr
    assert took < 3 + 10  # the timeout, plus interpreter start-up and imports on a loaded machine


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_timeout_must_be_positive_and_finite(built, value):
    cls, _, root = built
    proc = edgeode("run", str(cls.path), str(root / "x.npy"), "--timeout", value)
    assert proc.returncode == 2 and "timeout must be a positive number" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_profile_timeout_and_ctrl_c_leave_no_child(slow):
    import signal

    psutil = pytest.importorskip("psutil")
    bundle, _ = slow
    args = ["profile", str(bundle), "-d", "pi-4b", "--mode", "loop", "--batch", "100", "--runs", "100000", "--no-macs"]
    proc = edgeode(*args, "--timeout", "4", timeout=120)
    assert proc.returncode == 2 and "ran past 4 s" in proc.stderr and "Traceback" not in proc.stderr
    proc = _start(*args)
    try:
        time.sleep(6.0)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "edgeode profile: interrupted"
    assert "Traceback" not in err
    assert children and not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)


def test_a_ctrl_c_swallowed_while_loading_still_stops_the_run():
    """A real SIGINT whose KeyboardInterrupt library code swallowed (``except BaseException``) before the run
    started: with ``edgeode run``'s watch_ctrl_c the run does not start (it once ran on for minutes)."""
    code = f"""
import os, signal, sys, time
sys.path.insert(0, {str(ROOT)!r})
from edgeode.runtime.bounded import BoundedCall, watch_ctrl_c
watch_ctrl_c()
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(1)
except BaseException:
    pass  # swallowed, as while the model loads
ran = []
try:
    BoundedCall(None, lambda: ran.append(1)).run()
    print("ran", ran)
except KeyboardInterrupt:
    print("stopped", ran)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "stopped []", (proc.stdout, proc.stderr)
