"""Silence the converters' console chatter (Python warnings, logging, and C++ logs on fd 1/2).

litert-torch, TensorFlow Lite's MLIR passes and the torch.onnx exporter print progress and
warnings that would bury the CLI's own progress bar; errors still surface as exceptions.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator

__all__ = ["quiet"]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Run the body with warnings, logging below ERROR and the process's stdout/stderr silenced."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    saved: list[tuple[int, int]] = []
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
            try:
                stream.flush()
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
            except (OSError, ValueError, AttributeError):
                continue
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)
        logging.disable(previous)
