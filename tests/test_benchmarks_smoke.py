"""The benchmark scripts run end to end (tiny --quick configurations; nothing here is timed or judged).

Each script is started as a user would start it, in a fresh process, and must write its JSON and
Markdown results; the figures themselves are what ``benchmarks/README.md`` is about, not this test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _run(script: str, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(ROOT))


@pytest.mark.parametrize("script", ["inference.py", "training.py", "table1.py", "fuzz.py", "soak.py", "kill_export.py",
                                    "interrupt.py"])
def test_help(script: str) -> None:
    proc = _run(script, "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--quick" in proc.stdout


def test_training_quick(tmp_path: Path) -> None:
    proc = _run("training.py", "--quick", "--steps", "2", "--methods", "edgeode-adjoint", "torchdiffeq-adjoint",
                "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "training-quick.json").read_text())
    rows = {r["method"]: r for r in data["rows"]}
    assert set(rows) == {"edgeode-adjoint", "torchdiffeq-adjoint"}
    # Same weights, data and scheme: both methods see the same first loss.
    assert rows["edgeode-adjoint"]["first_loss"] == pytest.approx(rows["torchdiffeq-adjoint"]["first_loss"], abs=1e-5)
    assert rows["edgeode-adjoint"]["peak_rss_mb"] > 0
    assert (tmp_path / "training-quick.md").read_text().startswith("# Training")


def test_inference_quick_spiral(tmp_path: Path) -> None:
    proc = _run("inference.py", "--quick", "--models", "spiral", "--formats", "onnx", "--backends", "onnxruntime",
                "--modes", "fused", "--no-limits", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "inference-quick.json").read_text())
    ours = [r for r in data["rows"] if r["impl"] == "edgeode"]
    assert ours and all("error" not in r for r in ours), ours
    # The edgeode worker matched torchdiffeq's output and never imported torch.
    assert all(r["check"]["equal"] and not r["imported_torch"] for r in ours)
    # Every figure of issue 16's table is a target with its goal; what this run did not measure is null.
    targets = {t["figure"]: t for t in data["targets"]}
    b32 = next(t for f, t in targets.items() if "batch 32 latency" in f and "best backend" in f)
    assert (b32["op"], b32["threshold"], b32["measured"], b32["met"]) == (">=", 1.6, None, None)
    spiral = next(t for f, t in targets.items() if f.startswith("spiral"))
    assert spiral["measured"] > 0 and spiral["met"] in (True, False)
    assert any("edgeode export" in f for f in targets) and any("ExecuTorch" in f for f in targets)


def test_table1_memory_only(tmp_path: Path) -> None:
    mnist = ROOT.parent / "shared" / "data" / "mnist"
    if not mnist.is_dir():
        pytest.skip(f"MNIST test set not found at {mnist} (table1 takes --mnist-path)")
    proc = _run("table1.py", "--quick", "--archs", "odenet", "--no-train", "--mnist-path", str(mnist),
                "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "table1-quick.json").read_text())
    assert len(data["memory"]) == 2 and all("peak_rss_mb" in m for m in data["memory"])
