"""Run a model call so that Ctrl-C and a deadline stop it within a second, whatever the backend.

Python runs signal handlers only in the main thread, between bytecodes: while the main thread sits
inside one long backend call (a fused onnxruntime ``Loop`` of a million steps, a LiteRT ``invoke``)
Ctrl-C does nothing until that call returns. :func:`call_bounded` therefore runs the call in a
worker thread and keeps the calling thread in Python, waiting. On Ctrl-C (``KeyboardInterrupt``) or
at the deadline it calls :meth:`Model.interrupt` (onnxruntime: ``RunOptions.terminate``; the numpy
loop: stop before the next step), gives the worker ``grace`` seconds to finish, and raises. A
worker that is still inside a call no backend can stop (a TFLite ``invoke``) is reported by
:attr:`BoundedCall.stuck`; a command line tool then ends the process (``os._exit``), the only way
to stop such a call.

A command line tool (``edgeode run``) also calls :func:`watch_ctrl_c` first: its SIGINT handler leaves a mark as well
as raising ``KeyboardInterrupt``, and :meth:`BoundedCall.run` checks the mark, so a Ctrl-C pressed
while the command was loading still stops the run even if some library code swallowed the
exception (an ``except BaseException``, a finalizer whose errors are ignored).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from edgeode.errors import ConfigError, RunTimeout

__all__ = ["BoundedCall", "call_bounded", "check_timeout", "watch_ctrl_c"]

_POLL = 0.05  # seconds between checks of the deadline while waiting
_ctrl_c = threading.Event()  # set by watch_ctrl_c's handler on every SIGINT


def _on_sigint(signum: int, frame: Any) -> None:
    _ctrl_c.set()
    raise KeyboardInterrupt


def watch_ctrl_c() -> None:
    """Mark every later Ctrl-C (SIGINT) for :meth:`BoundedCall.run`, and raise ``KeyboardInterrupt`` as
    Python's default handler does. For a process that runs one command (the CLI); main thread only."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)


def check_timeout(timeout: object) -> float | None:
    """``timeout`` as positive finite seconds or None, else a :class:`ConfigError`."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


class BoundedCall:
    """One call of ``fn(*args)`` in a worker thread, stoppable through ``model.interrupt()``."""

    def __init__(self, model: Any, fn: Callable[..., Any], *args: Any):
        self.model = model
        self._fn, self._args = fn, args
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="edgeode-bounded-call", daemon=True)

    def _work(self) -> None:
        try:
            self._result = self._fn(*self._args)
        except BaseException as exc:  # handed to the waiting thread
            self._error = exc
        finally:
            self._done.set()

    @property
    def stuck(self) -> bool:
        """True if the call was stopped but its worker is still inside the backend."""
        return not self._done.is_set()

    def run(self, timeout: float | None = None, grace: float = 0.5, since: float | None = None) -> Any:
        """Start the call and wait for it; its result, or its exception.

        ``timeout`` counts from ``since`` (a ``time.monotonic()`` value, e.g. when a command started
        loading the model), or from now.

        Raises:
            RunTimeout: ``timeout`` seconds passed (the call was interrupted).
            KeyboardInterrupt: Ctrl-C while waiting (the call was interrupted).
        """
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else (time.monotonic() if since is None else since) + timeout
        if _ctrl_c.is_set():  # pressed while loading, and the KeyboardInterrupt was swallowed: do not start
            raise KeyboardInterrupt
        self._thread.start()
        try:
            while not self._done.wait(_POLL):
                if _ctrl_c.is_set():
                    raise KeyboardInterrupt
                if deadline is not None and time.monotonic() >= deadline:
                    self._stop(grace)
                    raise RunTimeout(
                        f"the run took longer than the timeout of {timeout:g} s and was stopped; pass a longer "
                        "--timeout, fewer --steps or a smaller batch"
                    )
        except KeyboardInterrupt:
            self._stop(grace)
            raise
        if self._error is not None:
            raise self._error
        return self._result

    def _stop(self, grace: float) -> None:
        self.model.interrupt()
        self._done.wait(grace)


def call_bounded(model: Any, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
    """``fn(*args)`` (a call on ``model``) stopped by Ctrl-C or after ``timeout`` seconds; see the module docstring."""
    return BoundedCall(model, fn, *args).run(timeout)
