"""``edgeode.fsutil``: files and directories appear whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeode.fsutil import atomic_write_json, atomic_write_text, commit_dir, make_staging_dir


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_text("old")
    atomic_write_json(target, {"b": 1, "a": [1, 2]}, sort_keys=True)
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    assert target.read_text().endswith("\n") and target.read_text().index('"a"') < target.read_text().index('"b"')
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_json(target, {"x": object()})  # not JSON-serialisable: fails before the rename
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new"


def test_staging_dir_commits_over_an_old_directory(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "out"
    stage = make_staging_dir(out)  # creates the parents
    assert stage.parent == out.absolute().parent and stage.is_dir() and not any(stage.iterdir())
    (stage / "new.txt").write_text("new")
    out.mkdir()
    (out / "old.txt").write_text("old")
    assert commit_dir(stage, out) == out
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in out.parent.iterdir()] == ["out"]  # neither the staging nor the old copy is left


def test_staging_dir_in_an_unwritable_place_raises_oserror() -> None:
    with pytest.raises(OSError):
        make_staging_dir("/proc/edgeode-test/out")


# ------------------------------------------------------------------ killed runs: nothing lost, nothing left

import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from edgeode import fsutil  # noqa: E402
from edgeode.fsutil import STALE_AFTER_S, clean_stale_staging  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FILES = 8

# A writer that replaces `dest` over and over, as `export --overwrite` does: stage, write, commit.
WRITER = f"""
import sys
from pathlib import Path
from edgeode import fsutil
fsutil.USE_EXCHANGE = sys.argv[2] == "exchange"
dest = Path(sys.argv[1])
version = 0
while True:
    version += 1
    stage = fsutil.make_staging_dir(dest)
    for i in range({FILES}):
        (stage / f"part{{i}}").write_text(str(version) * 1000)
    fsutil.commit_dir(stage, dest)
    if version == 1:
        print("ready", flush=True)
"""


def _age(paths) -> None:
    """Make leftovers look older than STALE_AFTER_S (instead of waiting)."""
    old = time.time() - STALE_AFTER_S - 1
    for p in paths:
        os.utime(p, (old, old))


def _leftovers(parent: Path, name: str) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def _check_whole(dest: Path) -> str:
    """dest exists and holds one complete version: every part, all the same."""
    parts = sorted(p.name for p in dest.iterdir())
    assert parts == [f"part{i}" for i in range(FILES)], parts
    texts = {(dest / p).read_text() for p in parts}
    assert len(texts) == 1 and len(next(iter(texts))) % 1000 == 0, "a mixed or partial version"
    return next(iter(texts))


@pytest.mark.parametrize("how", ["exchange", "aside"])
def test_sigkill_at_random_times_never_loses_the_destination(tmp_path, how):
    """Real SIGKILLs at random instants of a real writer process; after each one the destination is whole
    (old or new version) and nothing is left once the dead run's leftovers are cleaned."""
    dest = tmp_path / "bundle"
    rng = random.Random(11)
    trials, missing = 12, 0
    for _ in range(trials):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(dest), how], stdout=subprocess.PIPE, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if how == "exchange":
            _check_whole(dest)  # never missing, not even for an instant
        elif not dest.exists():
            missing += 1  # killed between "old aside" and "new in": repaired just below
        _age(_leftovers(tmp_path, "bundle"))
        clean_stale_staging(dest)
        _check_whole(dest)
        assert _leftovers(tmp_path, "bundle") == []
    assert missing < trials, missing


def test_live_staging_survives_cleanup_and_dead_one_is_removed(tmp_path):
    dest = tmp_path / "out"
    code = "import sys, time; from edgeode import fsutil; print(fsutil.make_staging_dir(sys.argv[1]), flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(dest)], stdout=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        live = Path(proc.stdout.readline().decode().strip())
        assert live.is_dir() and live.name.startswith(".out.tmp-")
        _age([live])
        mine = make_staging_dir(dest)  # cleans beside dest first: the live one must stay
        assert live.is_dir() and mine.is_dir()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _age([live])
    assert clean_stale_staging(dest) == [live]  # its owner is dead now; ours is still held
    assert not live.exists() and mine.is_dir()
    fsutil.discard_dir(mine)
    assert _leftovers(tmp_path, "out") == []


def test_recent_leftover_is_kept_until_stale(tmp_path):
    dead = tmp_path / ".out.tmp-abc"
    dead.mkdir()
    assert clean_stale_staging(tmp_path / "out") == []  # could be a run between mkdtemp and its lock
    _age([dead])
    assert clean_stale_staging(tmp_path / "out") == [dead]


def test_kill_between_aside_and_in_is_repaired_by_the_next_run(tmp_path):
    """The rename-aside path's one window (old renamed aside, new not yet in): the next run renames the old back."""
    aside = tmp_path / ".out.old-xyz"
    (aside / "x").mkdir(parents=True)
    (aside / "x" / "manifest.json").write_text("old")
    (tmp_path / ".out.tmp-abc").mkdir()  # the killed run's finished staging directory
    _age([aside, tmp_path / ".out.tmp-abc"])
    stage = make_staging_dir(tmp_path / "out")
    assert (tmp_path / "out" / "manifest.json").read_text() == "old"
    assert _leftovers(tmp_path, "out") == [stage]
    fsutil.discard_dir(stage)
