"""A manifest that cannot lie (issue 11, Build 3), and the bundle digest behind ``edgeode verify``.

Every computation-defining field of manifest.json, edited, is refused in every mode and backend
with a BundleError naming the field and the value the file was built with (the record inside each
ONNX / TFLite file); informational fields change freely. ``edgeode verify`` exits 0 with the digest
on an intact bundle and non-zero after any byte of any file changes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime_bundles as rb  # noqa: E402

from edgeode.errors import BundleError, ConfigError  # noqa: E402
from edgeode.runtime import load  # noqa: E402
from edgeode.runtime.backends import backend_available  # noqa: E402
from edgeode.runtime.contract import CONTRACT_KEY, read_contract  # noqa: E402
from edgeode.runtime.digest import SEAL_NAME, bundle_digest, verify_bundle  # noqa: E402
from edgeode.tableaus import get_tableau  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = [b for b in ("onnxruntime", "litert") if backend_available(b)]


def edgeode(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeode", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("torch", reason="building the test bundles needs torch")
    pytest.importorskip("litert_torch", reason="building TFLite test bundles needs litert-torch")
    root = tmp_path_factory.mktemp("contract")
    cls = rb.build_classifier(root / "classifier", formats=("onnx", "tflite"), tflite_batch=2)
    np.save(root / "x.npy", cls.x)
    return cls, root / "x.npy"


@pytest.fixture
def bundle(built, tmp_path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(built[0].path, dst)
    return dst


def _edit(bundle: Path, change) -> None:
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def _set(*keys):
    def setter(value):
        def change(data):
            node = data
            for k in keys[:-1]:
                node = node[k]
            node[keys[-1]] = value
        return change
    return setter


# field -> (edit, the value the file was built with as the message shows it)
EDITS = {
    "solver.steps": (_set("solver", "steps")(8), "4"),
    "solver.t0": (_set("solver", "t0")(0.5), "0.0"),
    "solver.t1": (_set("solver", "t1")(2.0), "1.0"),
    "solver.tableau": (_set("solver", "tableau")(get_tableau("euler").to_dict()), '"rk4"'),
    "solver.state_shape": (_set("solver", "state_shape")([None, 9]), "[null, 8]"),
    "input.shape": (_set("input", "shape")([None, 1, 6, 7]), "[null, 1, 6, 6]"),
    "input.preprocess.mean": (_set("input", "preprocess", "mean")(0.25), "0.5"),
    "input.preprocess.std": (_set("input", "preprocess", "std")(0.5), "0.25"),
    "input.preprocess.scale": (_set("input", "preprocess", "scale")(1.0), str(1 / 255)),
    "input.preprocess.image_size": (_set("input", "preprocess", "image_size")([8, 8]), "[6, 6]"),
    "input.preprocess.invert": (_set("input", "preprocess", "invert")(True), "false"),
    "input.preprocess.raw_max": (_set("input", "preprocess", "raw_max")(16.0), "255.0"),
    "output.labels": (_set("output", "labels")(["two", "one", "zero"]), '["zero", "one", "two"]'),
    "output.shape": (_set("output", "shape")([None, 4]), "[null, 3]"),
}


@pytest.mark.parametrize("field", sorted(EDITS))
def test_every_computation_defining_edit_is_refused_in_every_mode(bundle, field):
    change, built_with = EDITS[field]
    _edit(bundle, change)
    for backend in BACKENDS:
        for mode in ("fused", "loop"):
            with pytest.raises(BundleError) as info:
                load(bundle, backend=backend, mode=mode)
            msg = str(info.value)
            assert f"manifest {field} is" in msg and f"built with {built_with}" in msg, msg


def test_artifact_fields_are_covered_too(bundle):
    def change(data):
        art = next(a for a in data["artifacts"] if a["path"] == "tflite/fused.tflite")
        art["batch"] = 3  # the file is built for batch 2
    _edit(bundle, change)
    with pytest.raises(BundleError, match=r"artifacts\[tflite/fused.tflite\].batch is 3 but .* built with 2"):
        load(bundle, backend="litert", mode="fused")
    load(bundle, backend="onnxruntime", mode="fused")  # files the edit does not describe still run


def test_informational_fields_change_freely(bundle, built):
    cls, _ = built

    def change(data):
        data["model"]["arch"] = "renamed"
        data["created"] = "1999-01-01T00:00:00Z"
        data["tools"] = {"someone": "else"}
        data["artifacts"][0]["parity_max_abs"] = 0.5
    _edit(bundle, change)
    for backend in BACKENDS:
        for mode in ("fused", "loop"):
            with load(bundle, backend=backend, mode=mode) as model:
                assert model.describe()["contract"] == "checked"
                np.testing.assert_allclose(model.predict(cls.x), cls.y, atol=2e-5)


def test_steps_edit_is_refused_by_the_cli_without_traceback(bundle, built):
    _, x = built
    _edit(bundle, EDITS["solver.steps"][0])
    for mode in ("fused", "loop"):
        proc = edgeode("run", str(bundle), str(x), "--steps", "8", "--mode", mode, "--json")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "solver.steps is 8" in proc.stderr and proc.stdout == ""
    proc = edgeode("run", str(built[0].path), str(x), "--steps", "8", "--mode", "loop", "--json")  # asked for: honoured
    assert proc.returncode == 0 and json.loads(proc.stdout)["steps"] == 8


def test_the_record_is_inside_each_file(built):
    cls, _ = built
    for rel in ("onnx/fused.onnx", "onnx/field.onnx", "tflite/fused.tflite", "tflite/head.tflite"):
        record = read_contract(cls.path / rel, rel.split("/")[0])
        assert record is not None and record["solver"]["steps"] == 4 and record["artifact"]["role"] in rel
    text = (cls.path / "tflite/fused.tflite").read_bytes()
    assert CONTRACT_KEY.encode() in text


# ------------------------------------------------------------------ digest, seal, verify

def test_verify_prints_the_digest_of_an_intact_bundle(built):
    cls, _ = built
    proc = edgeode("verify", str(cls.path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == bundle_digest(cls.path) and proc.stdout.startswith("sha256:")
    out = json.loads(edgeode("verify", str(cls.path), "--json").stdout)
    assert out["intact"] and out["digest"] == proc.stdout.strip() and out["artifacts_without_record"] == []


def test_verify_fails_after_any_byte_of_any_file_changes(built, tmp_path):
    cls, _ = built
    files = sorted(p.relative_to(cls.path).as_posix() for p in cls.path.rglob("*") if p.is_file())
    assert "manifest.json" in files and SEAL_NAME in files and len(files) == 10
    rng = np.random.default_rng(0)
    for rel in files:
        dst = tmp_path / rel.replace("/", "_")
        shutil.copytree(cls.path, dst)
        data = bytearray((dst / rel).read_bytes())
        i = int(rng.integers(len(data)))
        data[i] ^= 0x01  # one bit of one byte
        (dst / rel).write_bytes(bytes(data))
        with pytest.raises(BundleError):
            verify_bundle(dst)
        if rel == "manifest.json":  # and as a user sees it
            proc = edgeode("verify", str(dst))
            assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    (tmp_path / "extra").mkdir()
    shutil.copytree(cls.path, tmp_path / "extra" / "b")
    (tmp_path / "extra" / "b" / "notes.txt").write_text("an added file is a change too")
    with pytest.raises(BundleError, match="changed since it was exported"):
        verify_bundle(tmp_path / "extra" / "b")


def test_expect_digest_pins_the_bundle(bundle, built):
    cls, x = built
    digest = bundle_digest(cls.path)
    assert bundle_digest(bundle) == digest  # a copy is the same bundle
    assert verify_bundle(bundle, expect_digest=digest.removeprefix("sha256:").upper()).digest == digest
    load(bundle, expect_digest=digest).close()
    _edit(bundle, _set("created")("2000-01-01T00:00:00Z"))  # informational, but another bundle
    with pytest.raises(BundleError, match="not the expected"):
        load(bundle, expect_digest=digest)
    proc = edgeode("run", str(bundle), str(x), "--expect-digest", digest)
    assert proc.returncode == 2 and "not the expected" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(ConfigError, match="64 hex digits"):
        load(bundle, expect_digest="sha256:1234")


def test_int8_files_hold_their_record_and_refuse_an_edit(digits_int8_bundle, tmp_path):
    """Full-int8 files (measured in TFLM) carry the record too; TFLM runs them with it and refuses an edited manifest."""
    check = verify_bundle(digits_int8_bundle)
    int8 = [a.path for a in check.bundle.manifest.artifacts if a.precision == "int8"]
    assert int8 and check.unrecorded == () and set(int8) <= set(check.recorded)
    dst = tmp_path / "int8"
    shutil.copytree(digits_int8_bundle, dst)
    steps = check.bundle.manifest.solver.steps
    _edit(dst, _set("solver", "steps")(steps + 1))
    with pytest.raises(BundleError, match=rf"solver.steps is {steps + 1} but .* built with {steps}"):
        load(dst, backend="tflm", mode="loop")
