"""The legacy tflite-runtime backend, tested for real in its own environment.

tflite-runtime 2.14 (the last release) needs numpy < 2, while the main environment has numpy 2, so
``.ci/tflite-runtime.sh`` builds fixture bundles here, creates a clean venv with numpy<2 and
tflite-runtime==2.14.0, and runs the tflite-runtime conformance tests there. This test runs that
script so that the README's single test command covers the legacy backend too.

It needs the package registry (pip install into the venv). Outside CI it is skipped when the
registry cannot be reached; in CI (CI=true) it must run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tflite_runtime_backend_in_numpy1_env(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "tflite-runtime.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 and os.environ.get("CI") != "true" and "pip" in out and (
        "Could not find a version" in out or "No matching distribution" in out or "connection" in out.lower()
    ):
        pytest.skip(f"tflite-runtime could not be installed from the registry here:\n{out[-2000:]}")
    assert proc.returncode == 0, out[-6000:]
    assert " passed" in out and " failed" not in out, out[-3000:]
