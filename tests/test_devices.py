"""Device profiles: every shipped profile loads and is complete; bad names and files fail clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeode.devices import list_profiles, load_profile
from edgeode.devices.profiles import SOURCED_FIELDS, builtin_dir, parse_profile
from edgeode.errors import DeviceError

REQUIRED = ("pi-zero-2w", "pi-3b-plus", "pi-4b", "pi-5", "jetson-nano")


def test_required_devices_ship():
    names = {p.name for p in list_profiles()}
    assert set(REQUIRED) <= names
    assert {p.device_class for p in list_profiles()} >= {"sbc", "phone", "mcu", "jetson"}


@pytest.mark.parametrize("path", sorted(builtin_dir().glob("*.json")), ids=lambda p: p.stem)
def test_every_shipped_profile_loads_and_is_complete(path):
    p = load_profile(path.stem)
    for key in SOURCED_FIELDS:
        assert p.sources[key].strip(), key
        # a source is a URL, a named document, or says it is an estimate
        src = p.sources[key].lower()
        assert "http" in src or "estimate" in src or "datasheet" in src or "guide" in src or "measured" in src, (key, src)
    assert p.cpu.cores >= 1 and p.cpu.clock_ghz > 0 and p.cpu.gflops_1t > 0
    assert 0 <= p.os_reserved_mb < p.ram_mb and p.storage_mb > 0
    assert 0 < p.power.idle_w <= p.power.load_w
    assert p.runtimes and (p.pip_platforms or not p.python)
    assert p.os_notes


def test_issue_figures():
    zero = load_profile("pi-zero-2w")
    assert (zero.cpu.cores, zero.cpu.clock_ghz, zero.ram_mb) == (4, 1.0, 512)
    assert (zero.power.idle_w, zero.power.load_w) == (0.6, 1.8)
    pi4 = load_profile("pi-4b")
    assert pi4.cpu.clock_ghz == 1.5 and 2.7 <= pi4.power.idle_w <= 3.1 and 6.3 <= pi4.power.load_w <= 6.4
    p3 = load_profile("pi-3b-plus")
    assert (p3.power.idle_w, p3.power.load_w) == (1.9, 5.1)
    assert load_profile("jetson-nano").power.load_w == 10
    nano = load_profile("nano-33-ble-sense")
    assert nano.ram_mb == 0.25 and nano.storage_mb == 1 and nano.runtimes == ("tflite-micro",)
    assert load_profile("pi-4b:8gb").ram_mb == 8192


def test_unknown_device_lists_valid_ones():
    with pytest.raises(DeviceError) as err:
        load_profile("pi-42")
    assert "pi-42" in str(err.value) and "pi-zero-2w" in str(err.value) and "jetson-nano" in str(err.value)
    with pytest.raises(DeviceError, match="variant"):
        load_profile("pi-4b:3gb")


def _good() -> dict:
    return json.loads((builtin_dir() / "pi-4b.json").read_text())


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("ram_mb"), "ram_mb"),
    (lambda d: d["cpu"].pop("cores"), "cpu.cores"),
    (lambda d: d["power"].update(idle_w="lots"), "power.idle_w"),
    (lambda d: d.update(runtimes=["pytorch"]), "runtimes"),
    (lambda d: d["sources"].pop("power.load_w"), "sources['power.load_w']"),
    (lambda d: d.update(colour="red"), "colour"),
    (lambda d: d["power"].update(load_w=0.5), "power.load_w"),
])
def test_malformed_profile_names_file_and_field(tmp_path, monkeypatch, mutate, field):
    data = _good()
    data["name"] = "bad-board"
    mutate(data)
    (tmp_path / "bad-board.json").write_text(json.dumps(data))
    monkeypatch.setenv("EDGEODE_DEVICES_DIR", str(tmp_path))
    with pytest.raises(DeviceError) as err:
        load_profile("bad-board")
    assert "bad-board.json" in str(err.value) and field in str(err.value)


def test_invalid_json_names_the_file(tmp_path, monkeypatch):
    (tmp_path / "broken.json").write_text("{not json")
    monkeypatch.setenv("EDGEODE_DEVICES_DIR", str(tmp_path))
    with pytest.raises(DeviceError, match="broken.json.*not valid JSON"):
        load_profile("broken")


def test_parse_roundtrip():
    p = load_profile("pi-5")
    again = parse_profile(p.to_dict(), "roundtrip")
    assert again.to_dict() == p.to_dict()


def test_cli_devices_json_and_show():
    out = subprocess.run([sys.executable, "-m", "edgeode", "devices", "--json"], capture_output=True, text=True, check=True)
    names = [d["name"] for d in json.loads(out.stdout)]
    assert set(REQUIRED) <= set(names)
    show = subprocess.run([sys.executable, "-m", "edgeode", "devices", "show", "pi-zero-2w"], capture_output=True,
                          text=True, check=True)
    assert "512 MB" in show.stdout and "cnx-software" in show.stdout
    bad = subprocess.run([sys.executable, "-m", "edgeode", "devices", "show", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "known devices" in bad.stderr


def test_calibrate_saves_a_valid_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEODE_DEVICES_DIR", str(tmp_path))
    from edgeode.devices.calibrate import calibrate, save_profile

    p = calibrate("my-host", like="pi-4b", seconds=0.2)
    assert p.calibrated and p.cpu.gflops_1t > 0 and p.ram_mb > 100
    assert "measured" in p.sources["cpu.gflops_1t"]
    path = save_profile(p)
    assert path == tmp_path / "my-host.json"
    again = load_profile("my-host")
    assert again.calibrated and again.measured_on["hostname"] == p.measured_on["hostname"]


def test_devices_package_never_imports_torch(tmp_path):
    """edgeode.devices (profiles, profiler, calibrate) works where importing torch fails."""
    blocker = tmp_path / "torch"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    code = ("import edgeode.devices, edgeode.devices.profiler, edgeode.devices.calibrate, edgeode.devices.child, "
            "edgeode.devices.macs, edgeode.commands.devices, edgeode.commands.profile; "
            "from edgeode.devices import list_profiles; assert list_profiles(); import sys; "
            "assert 'torch' not in sys.modules")
    env = {"PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parents[1]}", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


@pytest.mark.parametrize("args, match", [
    (["--output", "prof.txt"], "must end in .json"),
    (["--save", "x", "--seconds", "0"], "--seconds must be a positive"),
    (["--save", "x", "--like", "pi-6"], "known devices"),
])
def test_calibrate_checks_its_options_before_measuring(tmp_path, args, match):
    env = {**os.environ, "EDGEODE_DEVICES_DIR": str(tmp_path / "profiles")}
    proc = subprocess.run([sys.executable, "-m", "edgeode", "devices", "calibrate", *args], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 2 and match in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "measuring" not in proc.stderr  # refused before the measurement, not after it
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written
