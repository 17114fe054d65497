"""``edgeode tune``: the sweep through the real runtime, the frontier and the pick, and the tuned bundle.

The contract test runs the command on a real trained run directory (exported to real ONNX files,
measured by onnxruntime) and checks that the applied bundle, loaded by ``edgeode.runtime`` with no
arguments, runs the picked configuration and reaches exactly the accuracy tune reported for it on the
test half of the held-out data (the pick used the validation half).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SEED

from edgeode.cli import main
from edgeode.errors import BundleError, ConfigError
from edgeode.runtime import load
from edgeode.runtime.digest import verify_bundle
from edgeode.runtime.manifest import Manifest, TunedSpec
from edgeode.tune import heldout
from edgeode.tune.frontier import Target, mark_frontiers, pick
from edgeode.tune.sweep import ACCURACY_BATCH, Config, Measured, Sweep

CONTRACT_KEYS = {"tableau", "steps", "precision", "accuracy", "val_accuracy", "latency_ms", "frontier"}


def _tune(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["tune", *args, "-q", "--seconds", "0.02"])
    out = capsys.readouterr()
    return code, out.out, out.err


def _accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """The fraction right, predicted by the runtime in the batches tune predicts in (batch size can move float
    rounding in a backend's kernels, and with it a near-tie's argmax)."""
    scores = np.concatenate([model.predict(x[i:i + ACCURACY_BATCH]) for i in range(0, len(x), ACCURACY_BATCH)])
    return float(np.mean(scores.argmax(axis=1) == y))


@pytest.mark.slow
def test_contract_run_dir_json_and_apply(digits_run, tmp_path, capsys):
    """`edgeode tune RUN_DIR --device pi-4b --min-accuracy A --apply -o BUNDLE --json`: the JSON contract, and a
    bundle whose accuracy measured by edgeode.runtime on the test half equals tune's figure for the picked
    configuration, picked by its validation figure."""
    out = tmp_path / "tuned"
    code, text, err = _tune(capsys, str(digits_run.path), "--device", "pi-4b", "--min-accuracy", "0.5", "--apply",
                            "-o", str(out), "--json", "--max-steps", "4")
    assert code == 0, err
    d = json.loads(text)
    configs = d["configs"]
    assert all(CONTRACT_KEYS <= set(c) for c in configs)
    assert {c["tableau"] for c in configs} == {"euler", "midpoint", "heun", "rk4", "rk4_38"}
    assert {c["precision"] for c in configs} == {"float32", "int8-dynamic"}
    assert any(c["frontier"] for c in configs) and any(c["frontier_energy"] for c in configs)
    for c in configs:  # a frontier configuration is dominated by none, on the validation figure it is chosen by
        if c["frontier"]:
            assert not any(o["val_accuracy"] >= c["val_accuracy"] and o["latency_ms"] < c["latency_ms"] for o in configs)
    picked = d["picked"]
    assert picked["val_accuracy"] >= 0.5  # picked on validation ...
    assert picked["latency_ms"] == min(c["latency_ms"] for c in configs if c["val_accuracy"] >= 0.5 and c["fits"])
    halves = heldout.split(heldout.from_dataset("digits", None, SEED, "classifier"))
    assert (d["val_samples"], d["samples"]) == (len(halves.val.x), len(halves.test.x)) == (180, 180)

    verify_bundle(out)  # the edited manifest is sealed again and every file's record still agrees
    x, y = halves.test.x, halves.test.y  # ... reported on the test half
    with load(out) as model:
        desc = model.describe()
        assert desc["tuned"] is True
        assert (desc["tableau"], desc["steps"], desc["precision"], desc["mode"]) == (
            picked["tableau"], picked["steps"], picked["precision"], picked["mode"])
        assert _accuracy(model, x, y) == picked["accuracy"]
    tuned = Manifest.read(out).tuned
    assert tuned.accuracy == picked["accuracy"] and tuned.samples == len(x)
    assert tuned.measured["val_accuracy"] == picked["val_accuracy"] and tuned.measured["val_samples"] == 180
    with load(out, steps=7) as model:  # an explicit solve wins over the tuned one
        assert (model.steps, model.tableau.name, model.describe()["tuned"]) == (7, "rk4", False)


def test_bundle_with_npz_apply_and_errors(onnx_bundles, tmp_path, capsys):
    """A bundle (torch-free path) measured on an .npz; a target nothing reaches is a typed error with the best
    figure; the tuned manifest verifies, and editing it after tune breaks the seal."""
    src = onnx_bundles.classifier.path
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, *load(src).manifest.input.tensor.shape[1:])).astype(np.float32)
    with load(src) as model:  # labels the float32 bundle's own rk4 x 4 solve gets right: a reachable 100%
        y = model.predict(x).argmax(axis=1)
    npz = tmp_path / "heldout.npz"
    np.savez(npz, x=x, y=y)

    code, _, err = _tune(capsys, str(src), "--device", "pi-4b")
    assert code == 2 and "--data FILE.npz" in err
    code, _, err = _tune(capsys, str(src), "--device", "nano-33-ble-sense", "--data", str(npz))
    assert code == 2 and "microcontroller" in err
    code, _, err = _tune(capsys, str(src), "--device", "pi-4b", "--data", str(npz), "--apply")
    assert code == 2 and "-o" in err

    code, text, err = _tune(capsys, str(src), "--device", "pi-4b", "--data", str(npz), "--max-steps", "4",
                            "--solvers", "euler,rk4", "--json")
    assert code == 0, err
    d = json.loads(text)
    assert (d["val_samples"], d["samples"], d["metric"]) == (20, 20, "accuracy")
    fused = Manifest.read(src).find("fused", "onnx")
    takes_steps = any(s.name == "steps" for s in fused.inputs)
    for c in d["configs"]:  # the fused graph where it computes the solve (its rk4, its steps or a steps input)
        can_fuse = c["tableau"] == "rk4" and (c["steps"] == 4 or takes_steps)
        assert c["mode"] == ("fused" if can_fuse else "loop"), c

    out = tmp_path / "tuned"
    code, text, err = _tune(capsys, str(src), "--device", "pi-4b", "--data", str(npz), "--max-steps", "3",
                            "--solvers", "euler,rk4", "--max-latency-ms", "1e6", "--apply", "-o", str(out))
    assert code == 0, err
    assert "picked:" in text and f"wrote {out}" in text
    man = json.loads((out / "manifest.json").read_text())
    verify_bundle(out)
    test = heldout.split(heldout.from_npz(npz)).test
    with load(out) as model:
        assert model.describe()["tuned"] and _accuracy(model, test.x, test.y) == man["tuned"]["accuracy"]
    man["tuned"]["steps"] += 1
    (out / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(BundleError, match="changed since it was exported"):
        verify_bundle(out)


def test_tuned_record_is_parsed_strictly(onnx_bundles):
    man = Manifest.read(onnx_bundles.classifier.path).to_dict()
    good = {"tableau": "heun", "steps": 3, "precision": "float32", "mode": "loop", "accuracy": 0.9, "metric": "accuracy",
            "samples": 10, "measured": {}}
    assert Manifest.from_dict({**man, "tuned": good}).tuned == TunedSpec(**good)
    for key, bad, words in (("tableau", "rk45", "unknown solver"), ("steps", 0, "tuned.steps"),
                            ("steps", 10**9, "above the bound"), ("mode", "both", "tuned.mode"),
                            ("precision", "int4", "unknown precision")):
        with pytest.raises(BundleError, match=words):
            Manifest.from_dict({**man, "tuned": {**good, key: bad}})


def _sweep(points: list[tuple[float, float, float]], fits: bool = True) -> Sweep:
    res = [Measured(Config("rk4", i + 1, "float32", "fused", "onnxruntime"), acc - 0.5, acc, lat / 10, lat / 10, lat,
                    en, en / 2,
                    fits, "fits" if fits else "does not fit pi-4b: needs 9 GB")
           for i, (acc, lat, en) in enumerate(points)]
    return mark_frontiers(Sweep(res, "accuracy", 100, "test", "pi-4b", "estimate", 1, val_samples=100))


def test_frontier_and_pick():
    s = _sweep([(0.90, 1.0, 5.0), (0.95, 2.0, 1.0), (0.94, 3.0, 6.0), (0.97, 4.0, 8.0), (0.97, 5.0, 2.0)])
    assert [m.frontier for m in s.results] == [True, True, False, True, False]
    assert [m.frontier_energy for m in s.results] == [False, True, False, False, True]
    assert pick(s, Target(min_accuracy=0.93)).config.steps == 2  # cheapest by latency that meets it
    assert pick(s, Target(max_latency_ms=3.5)).config.steps == 2  # most accurate within the bound
    assert pick(s, Target(max_energy_mj=2.0)).config.steps == 5
    with pytest.raises(ConfigError, match=r"best achievable is 97.00%"):
        pick(s, Target(min_accuracy=0.99))
    with pytest.raises(ConfigError, match=r"the lowest is 2 ms"):
        pick(s, Target(min_accuracy=0.95, max_latency_ms=1.5))
    with pytest.raises(ConfigError, match="does not fit"):
        pick(_sweep([(0.9, 1.0, 1.0)], fits=False), Target(min_accuracy=0.5))


def test_dynamics_trajectory_error(spiral_bundle, tmp_path, capsys):
    """Dynamics: the figure is the RMS trajectory error against the RK4 x 256 reference solve; a higher-order
    solver with more steps is closer; an unreachable error bound names the best achievable error."""
    code, text, err = _tune(capsys, str(spiral_bundle), "--device", "pi-4b", "--data", "spiral", "--seed", str(SEED),
                            "--solvers", "euler,rk4", "--max-steps", "3", "--json")
    assert code == 0, err
    d = json.loads(text)
    assert d["metric"] == "trajectory_rmse" and d["higher_is_better"] is False
    err_of = {(c["tableau"], c["steps"]): c["accuracy"] for c in d["configs"] if c["precision"] == "float32"}
    assert err_of[("rk4", 3)] < err_of[("euler", 1)]
    code, _, err = _tune(capsys, str(spiral_bundle), "--device", "pi-4b", "--data", "spiral", "--seed", str(SEED),
                         "--solvers", "euler", "--max-steps", "1", "--max-error", "1e-12")
    assert code == 2 and "best achievable is RMSE" in err
    code, _, err = _tune(capsys, str(spiral_bundle), "--device", "pi-4b", "--data", "spiral", "--min-accuracy", "0.9")
    assert code == 2 and "--max-error" in err


def test_tuned_copy_refuses_its_source(onnx_bundles, tmp_path):
    from edgeode.tune.apply import write_tuned_bundle

    src = tmp_path / "b"
    shutil.copytree(onnx_bundles.classifier.path, src)
    spec = TunedSpec("euler", 2, "float32", "loop", 0.5, "accuracy", 10, {})
    with pytest.raises(ConfigError, match="is the bundle being tuned"):
        write_tuned_bundle(src, src, spec)
    write_tuned_bundle(src, tmp_path / "t", spec)
    with pytest.raises(ConfigError, match="--overwrite"):
        write_tuned_bundle(src, tmp_path / "t", spec)
    assert not list(tmp_path.glob(".t.tmp-*"))  # nothing half-written left beside it
    with load(tmp_path / "t") as model:
        assert (model.mode, model.tableau.name, model.steps) == ("loop", "euler", 2)


def test_tune_library_is_torch_free():
    """The sweep, frontier, apply and plot modules run on a device without torch (a run directory is the
    only input that needs it, for its export)."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "import edgeode.tune.sweep, edgeode.tune.frontier, edgeode.tune.apply, edgeode.tune.heldout, edgeode.tune.plot\n"
            "import edgeode.commands.tune\n"
            "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_split_halves_are_disjoint_and_fixed(tmp_path, capsys, onnx_bundles):
    """The validation and test halves partition the held-out set, the same way every time; --val-data replaces
    the split (the whole --data is then the test set); too few samples is a typed error."""
    from edgeode.errors import DataError

    rng = np.random.default_rng(1)
    data = heldout.HeldOut(rng.standard_normal((11, 3)).astype(np.float32), np.arange(11), "synthetic")
    a, b = heldout.split(data), heldout.split(data)
    assert (len(a.val.x), len(a.test.x)) == (5, 6)
    assert sorted(np.concatenate([a.val.y, a.test.y]).tolist()) == list(range(11))
    assert np.array_equal(a.val.y, b.val.y) and np.all(np.diff(a.test.y) > 0)  # fixed, original order kept
    with pytest.raises(DataError, match="at least 2"):
        heldout.split(data.limit(1))

    src = onnx_bundles.classifier.path
    x = rng.standard_normal((12, *load(src).manifest.input.tensor.shape[1:])).astype(np.float32)
    with load(src) as model:
        y = model.predict(x).argmax(axis=1)
    np.savez(tmp_path / "test.npz", x=x, y=y)
    np.savez(tmp_path / "val.npz", x=x[:5], y=y[:5])
    np.savez(tmp_path / "bad.npz", x=x[:5, ..., :4].copy(), y=y[:5])
    base = [str(src), "--device", "pi-4b", "--data", str(tmp_path / "test.npz"), "--solvers", "euler",
            "--max-steps", "2", "--precisions", "float32", "--json"]
    code, text, err = _tune(capsys, *base, "--val-data", str(tmp_path / "val.npz"), "--no-prune")
    assert code == 0, err
    d = json.loads(text)
    assert (d["val_samples"], d["samples"]) == (5, 12) and [c["steps"] for c in d["configs"]] == [1, 2]
    code, _, err = _tune(capsys, *base, "--val-data", str(tmp_path / "bad.npz"))
    assert code == 2 and "same kind" in err
