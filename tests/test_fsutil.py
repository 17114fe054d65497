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
