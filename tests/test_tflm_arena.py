"""The TFLM arena search's failure paths: each ends in a BackendError that says what happened."""

from __future__ import annotations

import pytest

pytest.importorskip("tflite_micro", reason="tflite-micro is not installed (pip install -e '.[mcu]')")

from edgeode.errors import BackendError  # noqa: E402
from edgeode.runtime.tflm_arena import find_arena  # noqa: E402


@pytest.fixture()
def junk(tmp_path):
    path = tmp_path / "junk.tflite"
    path.write_bytes(b"\0" * 4096)  # not a flatbuffer model: no arena makes it run
    return path


def test_a_file_no_arena_runs_is_named_as_such(junk):
    with pytest.raises(BackendError, match=r"junk\.tflite does not run in TFLM with any arena up to 64 MiB"):
        find_arena(junk)


def test_a_child_timing_out_before_its_first_probe_is_reported(junk):
    # A child killed before it printed one candidate used to leave the search without an error to
    # raise (UnboundLocalError); it must say that the child timed out.
    with pytest.raises(BackendError, match="stopped without an answer.*timed out after"):
        find_arena(junk, timeout=0.001)
