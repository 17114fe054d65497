"""`edgeode pack`: device packages from a real exported bundle (a tiny ODE-Net trained on the digits).

The wheelhouse tests download real aarch64 wheels with pip (the host-side step of `pack`); the
arm64 run of such a package is tests/test_aarch64.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edgeode.cli import main  # noqa: E402
from edgeode.errors import ConfigError, PackError  # noqa: E402
from edgeode.pack import pack, requirements_for, select_backends  # noqa: E402
from edgeode.pack.wheelhouse import parse_wheel_name  # noqa: E402
from edgeode.runtime import load, read_bundle  # noqa: E402

ARCH_TAGS = ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")


@pytest.fixture(scope="module")
def bundle(digits_bundle) -> Path:
    """A real bundle: the shared digits ODE-Net (tests/conftest.py), exported to ONNX and TFLite."""
    return digits_bundle


@pytest.fixture(scope="module")
def pi_package(bundle, tmp_path_factory) -> Path:
    """`edgeode pack BUNDLE --device pi-4b -o DIR --tar`, through the CLI (the acceptance command)."""
    out = tmp_path_factory.mktemp("pi") / "pi4-package"
    assert main(["pack", str(bundle), "--device", "pi-4b", "-o", str(out), "--tar", "-q"]) == 0
    return out


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_pi_package_has_bundle_aarch64_wheels_readme(pi_package, bundle):
    out = pi_package
    copied = read_bundle(out / "bundle")  # verifies every checksum of the copy
    assert copied.manifest.to_dict() == read_bundle(bundle).manifest.to_dict()
    wheels = sorted(p.name for p in (out / "wheels").iterdir())
    assert wheels and all(w.endswith(".whl") for w in wheels)
    parsed = [parse_wheel_name(w) for w in wheels]
    names = {w.name for w in parsed}
    assert {"numpy", "psutil", "pillow", "onnxruntime", "ai-edge-litert", "ml-dtypes", "edgeode"} <= names
    assert not any(n.startswith(("torch", "nvidia")) for n in names), names
    for w in parsed:  # every binary wheel is for aarch64, nothing for x86
        assert w.pure or any(t in ARCH_TAGS for t in w.platform_tags), w.filename
        assert not any("x86" in t or "amd64" in t for t in w.platform_tags), w.filename
        assert set(w.python_tags) & {"cp311", "cp36", "cp310", "py3", "py2"}, w.filename
    edgeode_wheel = next(w for w in parsed if w.name == "edgeode")
    assert edgeode_wheel.pure
    readme = (out / "README.md").read_text()
    assert "pip install --no-index --find-links wheels 'edgeode[device]'" in readme
    assert "edgeode profile bundle --device pi-4b" in readme and "edgeode run bundle" in readme
    assert "x` [N, 1, 8, 8] float32" in readme  # the model's input, from the manifest
    run_sh = out / "run.sh"
    assert os.access(run_sh, os.X_OK) and "--no-index --find-links wheels" in run_sh.read_text()
    assert subprocess.run(["sh", "-n", str(run_sh)]).returncode == 0  # valid POSIX sh
    assert _leftovers(out.parent) == []
    with tarfile.open(out.with_name(out.name + ".tar.gz")) as tar:
        members = tar.getnames()
    assert f"{out.name}/bundle/manifest.json" in members
    assert f"{out.name}/wheels/{wheels[0]}" in members


@pytest.mark.slow
def test_existing_output_is_kept_unless_force(pi_package, bundle):
    with pytest.raises(ConfigError, match="already exists"):
        pack(bundle, "pi-4b", pi_package, progress=False)
    assert (pi_package / "README.md").is_file()


@pytest.mark.slow
def test_onnx_only_pack_uses_the_onnx_extra(bundle, tmp_path):
    result = pack(bundle, "pi-5", tmp_path / "pkg", backends=["onnxruntime"], progress=False)
    assert result.install_args == ("edgeode[onnx]",)
    names = {parse_wheel_name(w).name for w in result.wheels}
    assert "onnxruntime" in names and "ai-edge-litert" not in names
    assert "'edgeode[onnx]'" in (tmp_path / "pkg" / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("device", ["esp32-s3", "nano-33-ble-sense"])
def test_microcontroller_needs_a_full_int8_bundle(bundle, tmp_path, device, capsys):
    """A float bundle has nothing a microcontroller can run: refused, naming the export that makes one."""
    out = tmp_path / "mcu"
    with pytest.raises(PackError, match="--quantize int8") as err:
        pack(bundle, device, out, progress=False)
    assert "TFLM" in str(err.value)
    assert not out.exists() and not any(tmp_path.iterdir())  # no staging directory left behind
    assert main(["pack", str(bundle), "--device", device, "-o", str(out), "-q"]) == 2
    assert "--quantize int8" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(PackError, match="do not apply"):
        pack(bundle, device, out, backends=["litert"], progress=False)


@pytest.mark.slow
def test_microcontroller_without_a_firmware_template_is_refused(bundle, tmp_path):
    with pytest.raises(PackError, match="no firmware template") as err:
        pack(bundle, "coral-dev-board-micro", tmp_path / "coral", progress=False)
    assert "esp32-s3" in str(err.value) and "nano-33-ble-sense" in str(err.value)


@pytest.mark.slow
def test_android_pack_writes_tflite_manifest_and_note(bundle, tmp_path):
    out = tmp_path / "android"
    result = pack(bundle, "pixel-6a", out, progress=False)
    assert result.kind == "android" and result.wheels == ()
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "manifest.json", "model.tflite"]
    own = read_bundle(out)  # the directory is a one-artifact bundle whose checksum verifies
    (art,) = own.manifest.artifacts
    assert (art.path, art.role, art.format, art.batch) == ("model.tflite", "fused", "tflite", 1)
    # The packed file computes what the original bundle computes.
    x = np.random.default_rng(1).standard_normal((2, 1, 8, 8)).astype(np.float32)
    got = load(out, backend="litert", mode="fused").predict(x)
    want = load(bundle, backend="onnxruntime", mode="fused").predict(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    note = (out / "README.md").read_text()
    for text in ("`x` | [1, 1, 8, 8] | float32", "`logits` | [1, 10] | float32", "interpreter.run(input, output)",
                 "Interpreter(model)", "Array(1) { Array(1) { Array(8) { FloatArray(8) } } }", "new float[1][1][8][8]",
                 "com.google.ai.edge.litert:litert", "resize to 8 x 8", "rk4, 2 fixed steps"):
        assert text in note, text
    pre = own.manifest.input.preprocess
    assert f"(raw * {pre.scale:g} - {pre.mean:g}) / {pre.std:g}" in note
    assert not list(out.rglob("*.whl"))
    with pytest.raises(PackError, match="Android phone"):  # no Python wheels on a phone
        pack(bundle, "pixel-6a", tmp_path / "android2", backends=["onnxruntime"], progress=False)
    assert not (tmp_path / "android2").exists()


@pytest.mark.slow
def test_failed_download_names_package_and_platform_and_leaves_nothing(bundle, tmp_path):
    out = tmp_path / "pkg"
    with pytest.raises(PackError) as err:
        pack(bundle, "pi-4b", out, pins=["numpy==0.0.1"], progress=False)
    msg = str(err.value)
    assert "numpy==0.0.1" in msg and "manylinux_2_28_aarch64" in msg and "CPython 3.11" in msg
    assert not out.exists() and _leftovers(tmp_path) == []


@pytest.mark.slow
def test_impossible_python_names_package_and_leaves_nothing(bundle, tmp_path):
    out = tmp_path / "pkg"
    with pytest.raises(PackError, match=r"no wheel of \S+ for CPython 3\.99 on manylinux_2_28_aarch64"):
        pack(bundle, "pi-4b", out, python="3.99", progress=False)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_bad_options_are_named(tmp_path):
    with pytest.raises(ConfigError, match="--python"):
        pack(tmp_path, "pi-4b", tmp_path / "o", python="three", progress=False)
    with pytest.raises(ConfigError, match="unknown backend 'tensorrt'"):
        select_backends(["tensorrt"], ("onnxruntime",), ("onnx",), "pi-4b")
    with pytest.raises(PackError, match="does not list the litert runtime"):
        select_backends(["litert"], ("onnxruntime", "tflite-runtime"), ("onnx", "tflite"), "jetson-nano")
    with pytest.raises(PackError, match="holds only onnx"):
        select_backends(["litert"], ("onnxruntime", "litert"), ("onnx",), "pi-4b")
    assert select_backends(None, ("onnxruntime", "litert", "tflite-runtime"), ("onnx", "tflite"), "pi-4b") == (
        "onnxruntime", "litert")
    assert select_backends(None, ("onnxruntime", "litert"), ("tflite",), "pi-4b") == ("litert",)


def test_requirements_and_pins():
    assert requirements_for(["onnxruntime"]) == ["numpy>=1.23", "psutil>=5.9", "pillow>=9.1", "onnxruntime>=1.17"]
    reqs = requirements_for(["litert", "tflite-runtime"], pins=["numpy==1.26.4"])
    assert reqs.count("numpy==1.26.4") == 1 and not any(r.startswith("numpy>") or r == "numpy<2" for r in reqs)
    assert "ai-edge-litert>=1.2" in reqs and "tflite-runtime>=2.13" in reqs
    with pytest.raises(ConfigError, match="not a pip requirement"):
        requirements_for([], pins=["==1"])


def test_wheel_names_are_parsed():
    w = parse_wheel_name("psutil-7.2.2-cp36-abi3-manylinux2014_aarch64.manylinux_2_17_aarch64.whl")
    assert (w.name, w.version, w.abi_tags, w.pure) == ("psutil", "7.2.2", ("abi3",), False)
    assert w.platform_tags == ("manylinux2014_aarch64", "manylinux_2_17_aarch64")
    assert parse_wheel_name("ai_edge_litert-2.3.0-cp311-cp311-manylinux_2_27_aarch64.whl").name == "ai-edge-litert"
    assert parse_wheel_name("edgeode-0.1.0-py3-none-any.whl").pure
    with pytest.raises(PackError):
        parse_wheel_name("numpy-2.0.tar.gz")


def test_unknown_device_lists_the_known_ones(tmp_path):
    from edgeode.errors import DeviceError

    with pytest.raises(DeviceError, match="pi-4b"):
        pack(tmp_path, "pi-9", tmp_path / "o", progress=False)


def test_an_existing_empty_output_directory_is_used(bundle, tmp_path):
    out = tmp_path / "made-by-the-user"
    out.mkdir()
    pack(bundle, "pixel-6a", out, progress=False)
    assert (out / "model.tflite").is_file() and (out / "README.md").is_file()
    assert _leftovers(tmp_path) == []
