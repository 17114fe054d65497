"""The bundle manifest is parsed strictly: every malformed manifest is a BundleError naming the problem."""

from __future__ import annotations

import copy
import json

import pytest

from edgeode.errors import BundleError
from edgeode.runtime.manifest import FORMAT_VERSION, Manifest
from edgeode.tableaus import RK4


def _spec(name, shape, dtype="float32"):
    return {"name": name, "shape": shape, "dtype": dtype}


def _artifact(path="onnx/field.onnx", role="field"):
    return {
        "path": path, "role": role, "format": "onnx", "precision": "float32", "sha256": "0" * 64, "size": 10,
        "batch": None, "inputs": [_spec("t", []), _spec("h", [None, 8])], "outputs": [_spec("dh", [None, 8])],
        "opset": 17, "parity_max_abs": 1e-7, "parity_tolerance": 1e-4,
    }


def valid() -> dict:
    return {
        "format": "edgeode-bundle",
        "format_version": FORMAT_VERSION,
        "kind": "classifier",
        "model": {"arch": "odenet", "parameters": 123, "config": {}},
        "input": {**_spec("x", [None, 1, 28, 28]), "preprocess": {"scale": 1 / 255, "mean": 0.1307, "std": 0.3081,
                                                                  "image_size": [28, 28], "raw_max": 255, "invert": False}},
        "output": {**_spec("scores", [None, 10]), "labels": [str(i) for i in range(10)]},
        "solver": {"tableau": RK4.to_dict(), "t0": 0.0, "t1": 1.0, "steps": 10, "state_shape": [None, 64, 7, 7]},
        "artifacts": [_artifact(), _artifact("onnx/fused.onnx", "fused")],
        "tools": {"edgeode": "0.1.0"},
        "created": "2026-11-30T00:00:00Z",
    }


def test_valid_manifest_round_trips():
    man = Manifest.from_dict(valid())
    assert man.solver.tableau == RK4
    assert man.input.preprocess.image_size == (28, 28)
    assert man.find("fused", "onnx").path == "onnx/fused.onnx"
    assert man.find("fused", "tflite") is None
    again = Manifest.from_dict(json.loads(man.to_json()))
    assert again == man


@pytest.mark.parametrize("where, key", [
    ((), "solver"), ((), "artifacts"), (("input",), "preprocess"), (("input", "preprocess"), "raw_max"),
    (("artifacts", 0), "sha256"), (("artifacts", 0, "inputs", 0), "dtype"), (("solver",), "steps"),
])
def test_missing_key_is_named(where, key):
    data = valid()
    node = data
    for k in where:
        node = node[k]
    del node[key]
    with pytest.raises(BundleError, match=key):
        Manifest.from_dict(data)


@pytest.mark.parametrize("where", [(), ("input",), ("artifacts", 1), ("solver",), ("output",)])
def test_unknown_key_is_rejected(where):
    data = valid()
    node = data
    for k in where:
        node = node[k]
    node["surprise"] = 1
    with pytest.raises(BundleError, match="unknown key.*surprise"):
        Manifest.from_dict(data)


def test_newer_format_version_asks_to_upgrade():
    data = valid()
    data["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(BundleError, match="newer than this runtime.*upgrade"):
        Manifest.from_dict(data)


@pytest.mark.parametrize("bad", [0, "1", None])
def test_bad_format_version(bad):
    data = valid()
    data["format_version"] = bad
    with pytest.raises(BundleError, match="format.version"):
        Manifest.from_dict(data)


def test_not_an_edgeode_manifest():
    data = valid()
    data["format"] = "something-else"
    with pytest.raises(BundleError, match="not an edgeode bundle"):
        Manifest.from_dict(data)


@pytest.mark.parametrize("path", ["../outside.onnx", "/etc/passwd", "onnx/../../x.onnx", "C:/x.onnx", "onnx\\x.onnx"])
def test_escaping_path_is_rejected(path):
    data = valid()
    data["artifacts"][0]["path"] = path
    with pytest.raises(BundleError, match="escapes the bundle"):
        Manifest.from_dict(data)


@pytest.mark.parametrize("field, value, match", [
    ("sha256", "XYZ", "sha256"), ("size", -1, "size"), ("batch", 0, "batch"), ("role", "decoder", "role"),
    ("format", "tf", "format"), ("precision", "int4", "precision"), ("inputs", [], "inputs"),
    ("opset", "17", "opset"), ("parity_max_abs", "small", "parity_max_abs"), ("parity_tolerance", None, "parity_tolerance"),
])
def test_bad_artifact_values(field, value, match):
    data = valid()
    data["artifacts"][0][field] = value
    with pytest.raises(BundleError, match=match):
        Manifest.from_dict(data)


def test_bad_tableau_and_steps():
    data = valid()
    data["solver"]["tableau"]["b"] = [0.5, 0.5, 0.5, 0.5]
    with pytest.raises(BundleError, match="solver.tableau"):
        Manifest.from_dict(data)
    data = valid()
    data["solver"]["steps"] = 0
    with pytest.raises(BundleError, match="steps"):
        Manifest.from_dict(data)


def test_bad_shapes_dtypes_and_preprocess():
    for mutate, match in [
        (lambda d: d["input"].__setitem__("shape", [None, -1]), "shape"),
        (lambda d: d["input"].__setitem__("dtype", "float64"), "dtype"),
        (lambda d: d["input"]["preprocess"].__setitem__("std", 0), "std"),
        (lambda d: d["input"]["preprocess"].__setitem__("image_size", [28]), "image_size"),
        (lambda d: d["output"].__setitem__("labels", [1, 2]), "labels"),
        (lambda d: d.__setitem__("kind", "regressor"), "kind"),
        (lambda d: d.__setitem__("artifacts", []), "artifacts"),
    ]:
        data = copy.deepcopy(valid())
        mutate(data)
        with pytest.raises(BundleError, match=match):
            Manifest.from_dict(data)


def test_duplicate_artifact_path():
    data = valid()
    data["artifacts"][1]["path"] = data["artifacts"][0]["path"]
    with pytest.raises(BundleError, match="listed twice"):
        Manifest.from_dict(data)


def test_read_missing_and_corrupt_json(tmp_path):
    with pytest.raises(BundleError, match="not a bundle directory"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "edgeode-bundle", ')
    with pytest.raises(BundleError, match="not valid JSON"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(valid()))
    assert Manifest.read(tmp_path).kind == "classifier"
