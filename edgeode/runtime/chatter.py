"""Keep native libraries' informational chatter off the user's terminal.

LiteRT (and tflite-runtime) print ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` from
C++ straight to file descriptor 2 when an interpreter allocates its tensors; Python's
``sys.stderr`` never sees it, so it can only be caught at the descriptor. :func:`filtered_stderr`
sends fd 2 to a temporary file for the duration of the body and then writes back everything except
the known informational lines, so real warnings and errors from the library still reach the user.
Torch-free, standard library only.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

__all__ = ["filtered_stderr", "LITERT_INFO"]

#: Lines LiteRT prints on every interpreter it creates (not a problem, nothing to act on).
LITERT_INFO = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)

# fd 2 is process-wide: one redirection at a time (interpreters are created from several threads).
_LOCK = threading.Lock()


@contextlib.contextmanager
def filtered_stderr(drop: tuple[str, ...] = LITERT_INFO) -> Iterator[None]:
    """Run the body with fd 2 captured; re-emit what it wrote, minus lines starting with ``drop``."""
    with _LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable fd 2 (embedded interpreter): nothing to filter
            yield
            return
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                text = capture.read().decode("utf-8", "replace")
        kept = [line for line in text.splitlines(keepends=True) if not line.startswith(drop)]
        if kept:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
