"""The README's main command, end to end: train -> export -> run (torch-free runtime) -> profile."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quickstart_recipe_reaches_097_through_the_runtime(tmp_path):
    """The README's command with its own recipe (no shortened epochs): the guard of the quickstart's
    accuracy. One seed here; README shows all five (each >= 0.97 on its test split)."""
    out = tmp_path / "qs"
    proc = subprocess.run(
        [sys.executable, "-m", "edgeode.cli", "quickstart", "-o", str(out), "--seed", "3", "--device", "pi-zero-2w"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    torch_acc = summary["torch_test_accuracy"]
    assert summary["seed"] == 3 and summary["test_samples"] == 360
    measured = [r for r in summary["runtime"] if "accuracy" in r]
    assert {(r["backend"], r["mode"]) for r in measured} >= {("onnxruntime", "fused"), ("onnxruntime", "loop")}
    for r in measured:  # the bundle computes what torch computed, image for image
        assert abs(r["accuracy"] - torch_acc) <= 1 / 360 + 1e-9, r
        assert r["accuracy"] >= 0.97, r
    base = summary["baseline"]
    assert base["model"] == "resnet" and base["runtime"][0]["accuracy"] >= 0.95
    profile = summary["profile"]
    assert profile["device"] == "pi-zero-2w" and profile["estimate"] is True
    assert profile["peak_rss_mb"] > 0 and profile["latency_ms"]["p50"] > 0
    assert f"torch (training run)         accuracy {torch_acc:.4f}" in proc.stdout
    for name in ("run/metrics.json", "bundle/manifest.json", "resnet-run/metrics.json", "resnet-bundle/manifest.json"):
        assert (out / name).is_file(), name
    assert "XNNPACK" not in proc.stderr  # LiteRT's per-interpreter INFO line is filtered (edgeode.runtime.chatter)
    assert "\r" not in proc.stderr  # stderr is a pipe: stage lines, no bar fragments


def test_quickstart_refuses_to_overwrite(tmp_path):
    out = tmp_path / "qs"
    (out / "run").mkdir(parents=True)
    (out / "run" / "keep.txt").write_text("mine")
    proc = subprocess.run([sys.executable, "-m", "edgeode.cli", "quickstart", "-o", str(out), "-q"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--overwrite" in proc.stderr and "Traceback" not in proc.stderr
    assert (out / "run" / "keep.txt").read_text() == "mine"
