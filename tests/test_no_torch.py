"""``edgeode.runtime`` imports and runs a real bundle in a process where ``import torch`` fails."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

BLOCK_TORCH = """
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "torchdiffeq", "litert_torch"):
            raise ImportError(f"import of {name} blocked: the runtime must not need torch")
        return None
sys.meta_path.insert(0, _NoTorch())
try:
    import torch  # noqa
    raise SystemExit("the blocker failed")
except ImportError:
    pass
"""


def _run(body: str) -> subprocess.CompletedProcess:
    code = BLOCK_TORCH + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=180)


@pytest.fixture(scope="module")
def bundles(onnx_bundles):
    """The shared hand-built ONNX classifier and dynamics bundles (tests/conftest.py)."""
    return onnx_bundles.classifier, onnx_bundles.dynamics


def test_runtime_runs_without_torch(bundles, tmp_path):
    cls, dyn = bundles
    np.save(tmp_path / "x.npy", cls.x)
    proc = _run(f"""
        import json, sys
        import numpy as np
        import edgeode.runtime as rt
        from edgeode.runtime import load, read_bundle
        import edgeode.commands.run
        out = {{}}
        for mode in ("fused", "loop"):
            out["cls_" + mode] = load({str(cls.path)!r}, mode=mode).predict(np.load({str(tmp_path / 'x.npy')!r})).tolist()
            out["dyn_" + mode] = load({str(dyn.path)!r}, mode=mode).solve(np.array({dyn.x.tolist()!r}, np.float32)).tolist()
        from edgeode.cli import main
        rc = main(["run", {str(cls.path)!r}, {str(tmp_path / 'x.npy')!r}, "--json"])
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "litert_torch", "torchdiffeq"))
        trained = [m for m in sys.modules if m.startswith(("edgeode.train", "edgeode.export"))]
        print("RESULT", json.dumps({{"out": out, "rc": rc, "heavy": heavy, "trained": trained}}))
        """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    result = json.loads(line[len("RESULT "):])
    assert result["rc"] == 0
    assert result["heavy"] == [] and result["trained"] == []
    for mode in ("fused", "loop"):
        np.testing.assert_allclose(result["out"]["cls_" + mode], cls.y, atol=2e-5)
        np.testing.assert_allclose(result["out"]["dyn_" + mode], dyn.y, atol=2e-5)
    cli_json = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("{")))
    np.testing.assert_allclose([p["logits"] for p in cli_json["predictions"]], cls.y, atol=2e-5)


def test_importing_runtime_pulls_no_heavy_modules():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, edgeode.runtime, edgeode.commands.run, edgeode.firmware.host, edgeode.firmware.qemu, "
         "edgeode.firmware.field_c; "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnxruntime', 'ai_edge_litert', 'onnx')))"],
        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", "edgeode.runtime and edgeode.firmware must import backends lazily"
