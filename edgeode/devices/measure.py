"""Run a child process and measure it from outside: peak resident memory, CPU time, wall time.

Peak memory is taken two ways and the larger is reported:

* **sampled**: the parent reads the child's RSS with psutil every ``interval`` seconds (default
  2 ms) until it exits; a short spike between two samples can be missed;
* **kernel**: the kernel's high-water mark of the child's resident set, which misses nothing:
  ``VmHWM`` from ``/proc/self/status``, read by the child as it finishes (Linux). ``ru_maxrss``
  from ``wait4`` is the fallback elsewhere; it is not used when VmHWM exists because Linux carries
  the *parent's* RSS at ``fork`` time into the child's ``ru_maxrss`` (measured here: a 30 MB child
  of a 55 MB pytest process reported 55 MB), while ``exec`` resets VmHWM.

The child gets a hard ``timeout``; after it the child is killed and :class:`ChildTimeout` raised,
so a hung or swapping model never hangs the host command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeode.errors import BackendError, EdgeodeError

__all__ = ["ChildRun", "ChildTimeout", "ChildFailed", "run_child"]


class ChildTimeout(EdgeodeError):
    """The measured child process ran past its time limit and was killed."""


class ChildFailed(BackendError):
    """The measured child process failed (its message names the error it hit)."""

    def __init__(self, message: str, error_type: str = "", killed_by: int | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.killed_by = killed_by


@dataclass
class ChildRun:
    """What a child reported (``result``) and what the parent measured about it."""

    result: dict[str, Any]
    peak_rss_sampled_mb: float
    peak_rss_kernel_mb: float | None
    user_s: float
    system_s: float
    wall_s: float
    samples: int
    rss_trace_mb: list[float] = field(default_factory=list)

    @property
    def peak_rss_mb(self) -> float:
        """The larger of the sampled and the kernel's peak."""
        return max(self.peak_rss_sampled_mb, self.peak_rss_kernel_mb or 0.0)


def _rss(proc: Any) -> float | None:
    try:
        return proc.memory_info().rss / 2**20
    except Exception:  # the process exited between samples
        return None


def _hold_ctrl_c() -> bool:
    """Hold SIGINT back (main thread only) while a child starts, so that a Ctrl-C between ``Popen`` returning
    and the guard that kills the child on any exception cannot leave the child running after the parent
    exited 130 (after a failure of tests/test_bounds.py's profile Ctrl-C test under load 10 an orphaned
    child was found timing its 100,000 runs; this window is one way to get there). The child inherits the
    blocked mask and unblocks it first thing (:mod:`edgeode.devices.child`)."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        return False
    return signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def _release_ctrl_c(held: bool) -> None:
    """Unblock SIGINT if :func:`_hold_ctrl_c` blocked it; one pressed meanwhile is raised now."""
    if held:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def run_child(args: list[str], timeout: float = 300.0, interval: float = 0.002, env: dict | None = None) -> ChildRun:
    """Run ``python -m edgeode.devices.child ARGS --out TMP`` and measure it.

    Raises:
        ChildTimeout: it ran past ``timeout`` seconds (it is killed).
        ChildFailed: it exited non-zero (the message says why, e.g. out of memory).
    """
    try:
        import psutil
    except ImportError:
        raise BackendError("the profiler needs psutil: pip install psutil (or 'edgeode[device]')") from None
    with tempfile.TemporaryDirectory(prefix="edgeode-child-") as tmp:
        out = Path(tmp) / "result.json"
        errlog = Path(tmp) / "stderr.txt"
        cmd = [sys.executable, "-m", "edgeode.devices.child", *args, "--out", str(out)]
        with open(errlog, "wb") as err:
            start = time.perf_counter()
            held = _hold_ctrl_c()
            try:
                popen = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
            except BaseException:
                _release_ctrl_c(held)
                raise
            peak, samples, trace = 0.0, 0, []
            status = rusage = None
            deadline = start + timeout
            try:
                _release_ctrl_c(held)  # a Ctrl-C pressed while the child started is raised here, where it is killed
                proc = psutil.Process(popen.pid)
                while True:
                    pid, status, rusage = os.wait4(popen.pid, os.WNOHANG)
                    if pid == popen.pid:
                        break
                    rss = _rss(proc)
                    if rss is not None:
                        peak = max(peak, rss)
                        samples += 1
                        if samples % 50 == 1:
                            trace.append(round(rss, 2))
                    if time.perf_counter() > deadline:
                        popen.kill()
                        os.wait4(popen.pid, 0)
                        popen.returncode = -signal.SIGKILL
                        raise ChildTimeout(
                            f"the measured process ran past {timeout:.0f} s and was killed; use fewer --runs, a smaller "
                            "--batch, or a longer --timeout"
                        )
                    time.sleep(interval)
            except BaseException:  # Ctrl-C (or any error) here: the child must not outlive us
                if popen.returncode is None:
                    popen.kill()
                    popen.wait()
                raise
            wall = time.perf_counter() - start
            popen.returncode = os.waitstatus_to_exitcode(status)
        result: dict[str, Any] = {}
        if out.is_file():
            result = json.loads(out.read_text())
        kernel_peak = result.get("vmhwm_mb") or rusage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024.0)
        if popen.returncode != 0:
            stderr = errlog.read_text(errors="replace")[-1500:]
            if popen.returncode < 0:
                sig = -popen.returncode
                raise ChildFailed(
                    f"the measured process was killed by signal {sig}"
                    + (" (SIGKILL: most likely the kernel's out-of-memory killer)" if sig == signal.SIGKILL else "")
                    + f"; peak memory seen {max(peak, kernel_peak):.0f} MB", "Killed", sig)
            raise ChildFailed(result.get("error") or f"the measured process failed:\n{stderr}",
                              result.get("error_type", ""))
    return ChildRun(result, peak, kernel_peak, rusage.ru_utime, rusage.ru_stime, wall, samples, trace)
