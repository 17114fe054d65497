"""Progress on stderr that reads well on a terminal and in a log.

Every command that takes more than a couple of seconds reports its stages through :class:`Stages`:

* on a terminal, a live tqdm bar (``name: stage  n/total  elapsed``) that is redrawn every second
  even while a long stage makes no countable progress, so a user can see the command is alive;
* when stderr is not a terminal (a pipe, a CI log, ``2> file``), one plain line per stage
  (``name: [2/5] export onnx/field.onnx (12 s)``) and a final ``name: done in 40 s``: no carriage
  returns, no bar fragments;
* nothing when disabled (``-q/--quiet``).

The API is the small subset of tqdm's that the callers used (``set_description``,
``set_postfix_str``, ``update``, ``close``), so a bar can be swapped for it. Standard library only;
tqdm is used when it is installed.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

__all__ = ["Stages", "is_terminal"]


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default stderr) is an interactive terminal."""
    stream = stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Stages:
    """A stage-by-stage progress report named ``name`` with ``total`` steps (see the module doc)."""

    def __init__(self, name: str, total: int, enabled: bool = True, stream: TextIO | None = None,
                 unit: str = "step", leave: bool = False):
        self.name, self._total, self.enabled = name, total, enabled
        self.stream = stream or sys.stderr
        self.n = 0
        self.text = ""
        self.start = time.monotonic()
        self._bar: Any = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if enabled and is_terminal(self.stream):
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=name, unit=unit, leave=leave, file=self.stream,
                                 bar_format="{desc} {n_fmt}/{total_fmt} |{bar:20}| {elapsed}")
                self._ticker = threading.Thread(target=self._tick, name=f"progress-{name}", daemon=True)
                self._ticker.start()

    @property
    def total(self) -> int:
        """Steps in all (may grow while running, e.g. when quantized files are added)."""
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        self._total = value
        if self._bar is not None:
            self._bar.total = value
            self._bar.refresh()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            bar = self._bar
            if bar is not None:
                bar.refresh()

    def _line(self, text: str) -> None:
        if self.enabled and self._bar is None:
            elapsed = time.monotonic() - self.start
            print(f"{self.name}: [{min(self.n + 1, self.total)}/{self.total}] {text} ({elapsed:.0f} s)",
                  file=self.stream, flush=True)

    def set_description(self, text: str) -> None:
        """Start the stage called ``text``."""
        self.text = text
        if self._bar is not None:
            self._bar.set_description_str(f"{self.name}: {text}")
        self._line(text)

    set_postfix_str = set_description
    stage = set_description

    def update(self, n: int = 1) -> None:
        """Count ``n`` finished steps."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)

    def close(self, ok: bool | None = None) -> None:
        """End the report: stop the ticker and the bar; on a log, one ``done`` line when the work
        succeeded (``ok``), none when it failed (the error says what happened). ``ok=None``: failed when
        an exception is propagating, as in the ``finally:`` clause the callers close from."""
        if ok is None:
            ok = sys.exc_info()[0] is None
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2.0)
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self.total and ok:
            print(f"{self.name}: done in {time.monotonic() - self.start:.0f} s", file=self.stream, flush=True)
        self.enabled = False

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(ok=exc_type is None)
