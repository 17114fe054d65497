"""LiteRT's per-interpreter INFO line is kept off the terminal; anything else on fd 2 still gets through."""

from __future__ import annotations

import os

from edgeode.runtime.chatter import LITERT_INFO, filtered_stderr


def test_filtered_stderr_drops_only_the_info_line(capfd):
    with filtered_stderr():
        os.write(2, (LITERT_INFO[0] + "\n").encode())
        os.write(2, b"ERROR: something real\n")
    err = capfd.readouterr().err
    assert "XNNPACK" not in err and "ERROR: something real" in err
