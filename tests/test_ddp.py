"""Distributed data-parallel training: 2 CPU processes under torchrun (gloo) end with identical weights."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from edgeode.train.checkpoint import load_run
from edgeode.train.distributed import state_hash

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_training_gives_identical_weights(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}", "-m", "edgeode.cli", "train", "-o", str(out), "-q",
        "--width", "8", "--steps", "2", "--epochs", "1", "--train-limit", "128", "--batch-size", "32",
        "--threads", "1",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    dist = metrics["distributed"]
    assert dist["world_size"] == 2 and dist["backend"] == "gloo"
    # every rank hashed its own weights after training; rank 0 gathered them
    assert len(dist["weights_sha256"]) == 2 and len(set(dist["weights_sha256"])) == 1
    assert dist["weights_identical"] is True
    # what rank 0 wrote is those weights, and only rank 0 wrote (one run dir, nothing else)
    assert state_hash(load_run(out).model) == dist["weights_sha256"][0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    # the data was sharded: each rank took 64 of the 128 examples, in 4 batches of 16 (global batch 32)
    assert metrics["world_size"] == 2 and metrics["batch_per_process"] == 16 and metrics["batches_per_epoch"] == 4
