"""``edgeode profile BUNDLE --device esp32-s3 | nano-33-ble-sense | coral-dev-board-micro`` on a real full-int8 bundle.

The session's trained digits ODE-Net exported with ``--quantize int8`` (tests/conftest.py): the fit
must use the arenas and sizes the export measured in TFLM, be the very computation ``edgeode pack``
refuses a bundle with, say by how much a bundle does not fit and what would make it fit; MACs come from
the ``.tflite`` graphs (checked against tflite-micro's own flatbuffer reader); a float bundle is a
typed error naming ``--quantize int8``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tflite_micro", reason="int8 bundles are measured in tflite-micro: pip install 'edgeode[mcu]'")
pytest.importorskip("ai_edge_quantizer", reason="int8 export needs ai-edge-quantizer")
pytest.importorskip("litert_torch", reason="int8 export converts with litert-torch")

from edgeode.devices import load_profile, parse_profile  # noqa: E402
from edgeode.devices.mcu_estimate import count_tflite  # noqa: E402
from edgeode.devices.profiler import profile_bundle  # noqa: E402
from edgeode.errors import BundleError, DeviceError  # noqa: E402
from edgeode.firmware.fit import ARENA_MARGIN, mcu_fit  # noqa: E402
from edgeode.runtime.manifest import Manifest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BOARDS = ("nano-33-ble-sense", "esp32-s3", "coral-dev-board-micro")
pytestmark = pytest.mark.slow


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "edgeode", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env={**os.environ, **(env or {})})


def _user_board(tmp_path: Path, name: str, **mcu) -> Path:
    """A user profile: the Nano 33 BLE Sense with other SRAM (the 'board with less memory' case)."""
    data = json.loads((ROOT / "edgeode/devices/profiles/nano-33-ble-sense.json").read_text())
    data["name"], data["display_name"] = name, f"test board {name}"
    data["mcu"].update(mcu)
    (tmp_path / f"{name}.json").write_text(json.dumps(data))
    return tmp_path


def test_contract_nano_json_reports_fit_from_the_measured_figures(digits_int8_bundle):
    out = _cli("profile", str(digits_int8_bundle), "--device", "nano-33-ble-sense", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    d = json.loads(out.stdout)
    man = Manifest.read(digits_int8_bundle)
    arts = {a.role: a for a in man.artifacts if a.precision == "int8"}
    loop = [arts[r] for r in ("encoder", "field", "head")]
    assert d["mode"] == "loop" and d["fits"]["fits"] is True and d["fits"]["message"].startswith("fits nano-33-ble-sense")
    # the figures are the manifest's measurements: arenas (+ the firmware's margin), RK state, file sizes
    assert d["arena_measured_bytes"] == sum(a.tflm.arena_bytes for a in loop)
    assert d["arena_bytes"] == sum(16 * math.ceil(a.tflm.arena_bytes * (1 + ARENA_MARGIN) / 16) for a in loop)
    assert d["rk_state_bytes"] == man.mcu.rk_state_bytes == (4 + 2) * 16 * 3 * 3 * 4  # RK4: h, stage input, 4 k
    nano = load_profile("nano-33-ble-sense")
    assert d["model_flash_bytes"] == sum(a.size for a in loop)
    assert d["flash_bytes"] == d["model_flash_bytes"] + nano.mcu.runtime_flash_bytes
    f = d["mcu_fit"]
    assert f["ram_needed_bytes"] == d["arena_bytes"] + d["rk_state_bytes"] + f["buffer_bytes"] + f["runtime_ram_bytes"]
    assert f["ram_board_bytes"] == 256 * 1024 and f["flash_board_bytes"] == 1024 * 1024
    # accuracy is the one the export measured in TFLM; latency and energy are labelled estimates with sources
    assert d["accuracy"]["int8"] == man.mcu.accuracy["int8"]["loop"]
    est = d["mcu_estimate"]
    assert est["estimate"] is True and "MLPerf Tiny" in est["sources"]["mcu.cycles_per_mac"]
    assert d["latency_ms"]["low"] < d["latency_ms"]["typical"] <= d["latency_ms"]["high"]
    assert any("2% less" in n for n in d["notes"])  # the 64-bit host arena correction is stated
    # human-readable form of the same
    text = _cli("profile", str(digits_int8_bundle), "--device", "nano-33-ble-sense")
    assert text.returncode == 0 and "[ESTIMATE]" in text.stdout and "verdict            fits" in text.stdout


def test_macs_match_tflite_micros_own_reader(digits_int8_bundle):
    """The flatbuffer reader's MACs against the same formulas on tflite-micro's generated schema reader."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    for role in ("encoder", "field", "head", "fused"):
        path = digits_int8_bundle / "tflite" / f"{role}.int8.tflite"
        model = schema.Model.GetRootAsModel(path.read_bytes(), 0)
        sub = model.Subgraphs(0)
        macs = 0
        for i in range(sub.OperatorsLength()):
            op = sub.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
            out = math.prod(sub.Tensors(op.Outputs(0)).ShapeAsNumpy().tolist())
            w = sub.Tensors(op.Inputs(1)).ShapeAsNumpy().tolist() if op.InputsLength() > 1 else []
            if name == "CONV_2D":
                macs += out * w[1] * w[2] * w[3]
            elif name == "DEPTHWISE_CONV_2D":
                macs += out * w[1] * w[2]
            elif name == "FULLY_CONNECTED":
                macs += out * w[1]
        assert count_tflite(path).macs == macs > 0, role
    # the fused file unrolls the loop's calls: its MACs are encoder + 8 field calls + head
    calls = {"encoder": 1, "field": 4 * 2, "head": 1}
    loop = sum(count_tflite(digits_int8_bundle / "tflite" / f"{r}.int8.tflite").macs * n for r, n in calls.items())
    assert count_tflite(digits_int8_bundle / "tflite" / "fused.int8.tflite").macs == loop


def test_profile_and_pack_share_one_fit(digits_int8_bundle, tmp_path):
    from edgeode.firmware.project import build_project
    from edgeode.runtime import read_bundle

    bundle = read_bundle(digits_int8_bundle)
    for name in ("nano-33-ble-sense", "esp32-s3"):
        profile = load_profile(name)
        proj = build_project(bundle, profile)
        d = profile_bundle(digits_int8_bundle, profile).to_dict()
        record = json.loads(proj.files["edgeode-pack.json"])
        assert (record["ram_bytes"], record["flash_bytes"]) == (d["ram_bytes"], d["flash_bytes"])
        assert [m["arena"] for m in record["models"]] == [n["arena_bytes"] for n in d["mcu_fit"]["nets"]]


def test_a_bundle_that_does_not_fit_gets_by_how_much_and_what_would_fit(digits_int8_bundle, tmp_path):
    man = Manifest.read(digits_int8_bundle)
    nano = load_profile("nano-33-ble-sense")
    loop, fused = mcu_fit(man, nano, "loop"), mcu_fit(man, nano, "fused")
    assert fused.ram_needed_bytes > loop.ram_needed_bytes  # the unrolled graph's arena grows with its ops
    # a Nano whose SRAM holds the loop but not the fused file (a user profile overrides the shipped one)
    sram = (loop.ram_needed_bytes + fused.ram_needed_bytes) // 2
    env = {"EDGEODE_DEVICES_DIR": str(_user_board(tmp_path, "nano-33-ble-sense", sram_bytes=sram))}
    out = _cli("profile", str(digits_int8_bundle), "--device", "nano-33-ble-sense", "--mode", "fused", "--json", env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    d = json.loads(out.stdout)
    over = fused.ram_needed_bytes - sram
    assert d["fits"]["fits"] is False and d["fits"]["ram_fits"] is False and d["fits"]["flash_fits"] is True
    assert f"{over / 1024:,.1f} KiB over" in d["fits"]["message"]
    remedies = " | ".join(d["fits"]["remedies"])
    assert "loop mode fits" in remedies and "--mode loop" in remedies
    assert "esp32-s3" in remedies and "coral-dev-board-micro" in remedies  # the boards with more memory
    # a Nano too small for the loop too: pack refuses the bundle with the same figures profile reports
    small = loop.ram_needed_bytes - 1024
    env = {"EDGEODE_DEVICES_DIR": str(_user_board(tmp_path, "nano-33-ble-sense", sram_bytes=small))}
    d = json.loads(_cli("profile", str(digits_int8_bundle), "--device", "nano-33-ble-sense", "--json", env=env).stdout)
    assert d["fits"]["fits"] is False and "1.0 KiB over" in d["fits"]["message"]
    packed = _cli("pack", str(digits_int8_bundle), "--device", "nano-33-ble-sense", "-o", str(tmp_path / "fw"), env=env)
    assert packed.returncode != 0 and "Traceback" not in packed.stderr
    assert d["fits"]["detail"] in packed.stderr.replace("\n", " ")
    assert not (tmp_path / "fw").exists()


def test_every_mcu_board_profiles_and_a_float_bundle_names_the_fix(digits_int8_bundle, tmp_path):
    for name in BOARDS:
        d = profile_bundle(digits_int8_bundle, name).to_dict()
        assert d["fits"]["fits"] is True and d["latency_ms"]["typical"] > 0 and d["energy_mj"]["typical"] > 0
    # the same bundle without its int8 files (the float32 TFLite bundle an export without --quantize writes)
    data = json.loads((digits_int8_bundle / "manifest.json").read_text())
    data["artifacts"] = [a for a in data["artifacts"] if a["precision"] != "int8"]
    data.pop("mcu")
    (tmp_path / "float").mkdir()
    (tmp_path / "float" / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"--quantize int8"):
        profile_bundle(tmp_path / "float", "esp32-s3")
    out = _cli("profile", str(tmp_path / "float"), "--device", "nano-33-ble-sense")
    assert out.returncode != 0 and "--quantize int8" in out.stderr and "Traceback" not in out.stderr


def test_mcu_profiles_need_their_sourced_mcu_block():
    data = json.loads((ROOT / "edgeode/devices/profiles/esp32-s3.json").read_text())
    ok = parse_profile(data, "esp32-s3.json")
    assert ok.mcu.sram_bytes == 512 * 1024 and ok.mcu.cycles_per_mac[0] < ok.mcu.cycles_per_mac[2]
    bad = dict(data, mcu={k: v for k, v in data["mcu"].items() if k != "sram_bytes"})
    with pytest.raises(DeviceError, match="mcu.sram_bytes"):
        parse_profile(bad, "x.json")
    with pytest.raises(DeviceError, match="needs an mcu block"):
        parse_profile({k: v for k, v in data.items() if k != "mcu"}, "x.json")
    unsourced = dict(data, sources={k: v for k, v in data["sources"].items() if k != "mcu.cycles_per_mac"})
    with pytest.raises(DeviceError, match="sources\\['mcu.cycles_per_mac'\\] is missing"):
        parse_profile(unsourced, "x.json")
    with pytest.raises(DeviceError, match="ascending"):
        parse_profile(dict(data, mcu=dict(data["mcu"], cycles_per_mac=[3, 2, 1])), "x.json")


def test_compare_mcu_section_table_and_plot(digits_int8_bundle, tmp_path):
    """The compare report's microcontroller rows (``edgeode compare --mcu``) for the int8 ODE-Net, both modes."""
    from edgeode.compare.mcu import MCU_BOARDS, mcu_rows
    from edgeode.compare.report import _mcu_markdown, _plot_mcu

    rows = mcu_rows({"odenet": digits_int8_bundle})
    assert [(r["device"], r["mode"]) for r in rows] == [(b, m) for b in MCU_BOARDS for m in ("loop", "fused")]
    man = Manifest.read(digits_int8_bundle)
    for r in rows:
        d = profile_bundle(digits_int8_bundle, r["device"], mode=r["mode"]).to_dict()
        assert (r["flash_bytes"], r["ram_needed_bytes"], r["fits"]) == (d["flash_bytes"], d["fits"]["ram_needed_bytes"],
                                                                      d["fits"]["fits"])
        assert r["accuracy_int8"] == man.mcu.accuracy["int8"][r["mode"]]
    assert _plot_mcu({"mcu": rows}, tmp_path / "mcu.png") and (tmp_path / "mcu.png").stat().st_size > 10_000
    table = "\n".join(_mcu_markdown({"mcu": rows}))
    assert table.count("| odenet |") == 4 and "estimates" in table


def test_devices_show_states_the_mcu_cost_model():
    out = _cli("devices", "show", "esp32-s3")
    assert out.returncode == 0 and "cycles/MAC 0.81/2.38/6.35" in out.stdout and "mcu.cycles_per_mac: ESP-NN" in out.stdout
