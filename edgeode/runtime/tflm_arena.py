"""The smallest TFLM tensor arena a model runs with, found by allocate + invoke bisection.

``arena_used_bytes()`` understates what a model needs (DESIGN.md: a field reported 7,684 bytes and
needed 10,432), so the arena is *measured*: an interpreter is made with a candidate arena (which
allocates the tensors) and invoked once; the smallest size for which both succeed, to 16 bytes
(TFLM's alignment), is the answer.

An arena far too small does not fail cleanly in ``tflite-micro``: it can crash the process
(segmentation fault, measured here with 64 and 8,000 bytes for a field needing ~12 KB) or hang.
The probes therefore run in a child process (``python -m edgeode.runtime.tflm_arena``), which
reports each candidate before trying it; when the child dies or stops answering, the candidate it
was trying counts as too small and a fresh child continues the search. The number of children and
each one's time are bounded.

Needs only numpy and ``tflite-micro`` (no torch).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgeode.errors import BackendError

__all__ = ["ALIGN", "ArenaSearch", "find_arena"]

#: TFLM aligns arena allocations to 16 bytes; the search stops at that resolution.
ALIGN = 16
_MAX_ARENA = 64 << 20  # 64 MiB: no microcontroller model is near it
_MAX_CHILDREN = 24


@dataclass(frozen=True)
class ArenaSearch:
    """Result of :func:`find_arena`: the smallest working arena and how it was found."""

    arena_bytes: int
    largest_failing: int
    probes: int
    crashed_probes: int
    seconds: float


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def find_arena(path: str | Path, start: int = 4096, timeout: float = 60.0) -> ArenaSearch:
    """Bisect the smallest arena with which ``path`` allocates and invokes in TFLM.

    Args:
        path: a ``.tflite`` file.
        start: the first candidate (doubled until one works).
        timeout: seconds one child may take in all before it is killed (its current probe counts as failed).

    Raises:
        BackendError: tflite-micro is missing, or no arena up to 64 MiB works (the message names the file).
    """
    from edgeode.runtime.backends import check_backend

    check_backend("tflm", "int8")
    path = Path(path)
    lo, hi = 0, 0  # lo: largest size known to fail; hi: smallest known to work (0: none yet)
    probes = crashed = 0
    t0 = time.perf_counter()
    for _ in range(_MAX_CHILDREN):
        cmd = [sys.executable, "-m", "edgeode.runtime.tflm_arena", str(path), str(lo), str(hi), str(_align(start))]
        trying = None
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_child_env())
            lines, finished, err = proc.stdout.splitlines(), proc.returncode == 0, proc.stderr
        except subprocess.TimeoutExpired as exc:
            lines, finished = _text(exc.stdout).splitlines(), False
            err = f"the child timed out after {timeout:g} s; {_text(exc.stderr)}"
        for line in lines:
            word, _, value = line.partition(" ")
            if word == "try":
                trying = int(value)
                probes += 1
            elif word == "ok":
                hi, trying = int(value), None
            elif word == "fail":
                lo, trying = int(value), None
        if finished and hi and hi - lo <= ALIGN:
            return ArenaSearch(hi, lo, probes, crashed, round(time.perf_counter() - t0, 2))
        if finished and not hi:
            break  # the child doubled past _MAX_ARENA without one working candidate
        if trying is None:
            raise BackendError(f"the TFLM arena search for {path.name} stopped without an answer: {err[-500:]!r}")
        lo, crashed = trying, crashed + 1  # the child died (crash or hang) on this candidate: too small
        if lo >= _MAX_ARENA:
            break
    raise BackendError(f"{path.name} does not run in TFLM with any arena up to {_MAX_ARENA >> 20} MiB "
                       f"(largest failing {lo} bytes); the file is not a model TFLM can run")


def _text(out: bytes | str | None) -> str:
    """A TimeoutExpired's captured output as text (bytes even with ``text=True`` on some Pythons)."""
    if isinstance(out, bytes):
        return out.decode(errors="replace")
    return out or ""


def _works(runtime, data: bytes, arena: int) -> bool:
    try:
        interpreter = runtime.Interpreter.from_bytes(data, arena_size=arena)
        interpreter.invoke()  # zero inputs: the arena a model needs does not depend on the values
    except (RuntimeError, ValueError):
        return False
    return True


def _child(path: str, lo: int, hi: int, start: int) -> None:
    """Probe in this process, printing ``try N`` before and ``ok N`` / ``fail N`` after each candidate."""
    from edgeode.runtime.backends import check_backend

    runtime = check_backend("tflm", "int8")
    data = Path(path).read_bytes()

    def probe(n: int) -> bool:
        print(f"try {n}", flush=True)
        ok = _works(runtime, data, n)
        print(f"{'ok' if ok else 'fail'} {n}", flush=True)
        return ok

    while not hi:  # double until a candidate works
        n = max(start, _align(2 * lo))
        if n > _MAX_ARENA:
            return
        if probe(n):
            hi = n
        else:
            lo = n
    while hi - lo > ALIGN:
        mid = _align((lo + hi) // 2)
        if mid >= hi:
            mid = hi - ALIGN
        if probe(mid):
            hi = mid
        else:
            lo = mid


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
