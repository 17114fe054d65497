"""The measured process of ``edgeode profile``: ``python -m edgeode.devices.child MODE ... --out FILE``.

The profiler runs every measurement in a fresh child process so that its peak resident memory is
the model's and the runtime's alone (not the parent's, which may hold torch), and so that a model
too large for the machine kills a child, not the host command. Modes:

``run``    load a bundle with :func:`edgeode.runtime.load`, warm up, time ``--runs`` inferences (more, up to
           ``--max-runs``, until ``--min-seconds`` of timed runs have passed); ``--pin-cpu N`` keeps the
           process on CPU N, ``--pin-cpu N,M`` moves it between those CPUs every ``--turn-seconds``
           and records each run's CPU (single-thread estimate timings, see :mod:`edgeode.devices.profiler`)
``floor``  import the backend and open a trivial session: the runtime's own memory floor
``alloc``  allocate and touch ``--mb`` MiB with numpy (tests check the profiler against it)
``onnx``   run a bare ONNX file (``--model``, input shape ``--shape``) with onnxruntime: footprint
           measurements of models that are not bundles (``edgeode compare``'s ImageNet scale)

The result is one JSON object written atomically to ``--out``; on failure it holds ``error`` and
``error_type``. Imports only numpy, the standard library and :mod:`edgeode.runtime` (never torch).
"""

from __future__ import annotations

import argparse
import base64
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

# A 1x1 float32 Identity graph (opset 13, IR 7), built once with onnx.helper: the floor session.
_IDENTITY_ONNX = base64.b64decode(
    "CAcSB2VkZ2VvZGU6PwoQCgF4EgF5IghJZGVudGl0eRIBZ1oTCgF4Eg4KDAgBEggKAggBCgIIAWITCgF5Eg4KDAgBEggKAggBCgIIAUIECgAQDQ=="
)


def _mb(nbytes: float) -> float:
    return nbytes / 2**20


def _status_mb(key: str) -> float | None:
    """A kB field of ``/proc/self/status`` in MiB (``VmHWM``: the kernel's peak resident set; ``VmRSS``), Linux only."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _ru_maxrss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB on Linux


def _memory() -> dict[str, Any]:
    return {"ru_maxrss_mb": _ru_maxrss_mb(), "vmhwm_mb": _status_mb("VmHWM"), "rss_end_mb": _status_mb("VmRSS")}


def _floor(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    backend = args.backend
    if backend == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads or 0
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(_IDENTITY_ONNX, sess_options=opts, providers=["CPUExecutionProvider"])
        sess.run(None, {"x": np.ones((1, 1), np.float32)})
        what = "numpy + onnxruntime + a 1x1 Identity session"
    else:
        module = "ai_edge_litert.interpreter" if backend == "litert" else "tflite_runtime.interpreter"
        __import__(module)
        what = f"numpy + {module} imported (no session: no trivial TFLite model ships)"
    return {"floor": what, **_memory()}


def _alloc(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    before = _status_mb("VmRSS")
    block = np.ones(int(args.mb * 2**20) // 8, dtype=np.float64)  # np.ones writes every page
    touched = float(block[:: 4096 // 8].sum())
    time.sleep(args.hold)
    return {"allocated_mb": _mb(block.nbytes), "rss_before_mb": before, "checksum": touched, **_memory()}


def _onnx_file(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads or 0
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    t0 = time.perf_counter()
    sess = ort.InferenceSession(args.model, sess_options=opts, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t0
    shape = [int(v) for v in args.shape.split(",")]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    name = sess.get_inputs()[0].name
    for _ in range(args.warmup):
        sess.run(None, {name: x})
    latencies = []
    cpu0 = time.process_time()
    for _ in range(args.runs):
        start = time.perf_counter()
        sess.run(None, {name: x})
        latencies.append((time.perf_counter() - start) * 1e3)
    return {"load_s": load_s, "latencies_ms": latencies, "timed_cpu_s": time.process_time() - cpu0, **_memory()}


def _pin(cpu: int | None) -> int | None:
    """Keep this process (and the threads it starts) on CPU ``cpu``; returns the CPU, or ``None`` if not pinned."""
    if cpu is None or cpu < 0 or not hasattr(os, "sched_setaffinity"):
        return None
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:  # not allowed here (container cpuset changed since the parent chose)
        return None
    return cpu


def _cpu_list(text: str | None) -> list[int]:
    """``--pin-cpu`` as a list of CPUs: ``"1"`` or ``"1,0"``; empty when not given."""
    return [int(c) for c in text.split(",") if c.strip()] if text else []


def _run(args: argparse.Namespace) -> dict[str, Any]:
    cpus = _cpu_list(args.pin_cpu)
    pinned = _pin(cpus[0] if cpus else None)  # before the backend starts any thread
    # taking turns needs the first pin to have worked, and one backend thread (the caller's): only it moves
    turns = cpus if pinned is not None and len(cpus) > 1 else []
    import numpy as np

    from edgeode.devices.power import rapl_delta_uj, read_rapl_uj
    from edgeode.runtime import load

    t0 = time.perf_counter()
    model = load(args.bundle, backend=args.backend, mode=args.mode, threads=args.threads, precision=args.precision,
                 batch=args.batch_artifact)
    load_s = time.perf_counter() - t0
    rss_after_load = _status_mb("VmRSS")
    if model.manifest.kind == "series":
        call, shape, evaluations, extra = _observation(model, args.gap)
    else:
        spec = model.manifest.input.tensor
        shape = [args.batch if d is None else d for d in spec.shape]
        shape[0] = args.batch
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        call, extra = (lambda: model.predict(x)), {}
    for _ in range(args.warmup):
        call()
    latencies, cpu_ms, run_cpus = [], [], []
    energy0 = read_rapl_uj()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    # at least --runs runs and --min-seconds of them, at most --max-runs (an explicit --runs N alone: exactly N)
    until, turn, turn_end = wall0 + args.min_seconds, 0, wall0 + args.turn_seconds
    while len(latencies) < args.runs or (time.perf_counter() < until and len(latencies) < args.max_runs):
        if turns and time.perf_counter() >= turn_end:
            turn += 1
            if _pin(turns[turn % len(turns)]) is None:  # the cpuset changed under us: stay where we are
                turns = []
            turn_end = time.perf_counter() + args.turn_seconds
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        latencies.append((time.perf_counter() - start) * 1e3)
        cpu_ms.append((time.process_time() - start_cpu) * 1e3)
        run_cpus.append(turns[turn % len(turns)] if turns else pinned)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    energy1 = read_rapl_uj()
    describe = {**model.describe(), **extra}
    if model.manifest.kind != "series":
        evaluations = model.field_evaluations
    model.close()
    rapl = None
    if energy0 is not None and energy1 is not None:
        rapl = rapl_delta_uj(energy0, energy1)
    return {
        "load_s": load_s,
        "rss_after_load_mb": rss_after_load,
        "latencies_ms": latencies,
        "cpu_ms": cpu_ms,
        "timed_wall_s": wall,
        "timed_cpu_s": cpu,
        "rapl_uj": rapl,
        "input_shape": shape,
        "field_evaluations": evaluations,
        "describe": describe,
        "pinned_cpu": pinned,
        "run_cpus": run_cpus if len(set(run_cpus)) > 1 else None,
        **_memory(),
    }


def _observation(model: Any, gap: float | None) -> tuple[Any, list[int], int, dict[str, Any]]:
    """A series model's timed unit: one observation ``gap`` seconds (default: its max_step) after another.

    Every call observes the same sample (the manifest's channel means, a typical raw reading) from the same
    state, one observation into a stream, so each timed run does the same work: the solve across the gap
    (``interval_steps(gap, max_step)`` steps) and the GRU update. Returns the call, the sample's shape, the
    field evaluations per call and what describe() lacks (steps, gap).
    """
    import numpy as np

    from edgeode.runtime.loop import interval_steps

    spec = model.spec
    gap = spec.max_step if gap is None else gap
    x = np.asarray(spec.mean, np.float64)
    first = model.observe(model.init_state(), 0.0, x)
    model.observe(first, gap, x)  # checks the gap against the step bound before any timing
    steps = interval_steps(gap, spec.max_step)
    return (lambda: model.observe(first, gap, x)), [len(spec.channels)], steps * model.tableau.stages, \
        {"steps": steps, "gap_s": gap}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edgeode.devices.child", description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("run", "floor", "alloc", "onnx"))
    p.add_argument("--model")
    p.add_argument("--shape", default="1,3,224,224")
    p.add_argument("--out", required=True)
    p.add_argument("--bundle")
    p.add_argument("--backend", default="auto")
    p.add_argument("--mode", default="fused")
    p.add_argument("--precision", default="float32")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--min-seconds", type=float, default=0.0)
    p.add_argument("--max-runs", type=int, default=0)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--batch-artifact", type=int, default=None)
    p.add_argument("--gap", type=float, default=None, help="series bundles: seconds between the timed observations")
    p.add_argument("--pin-cpu", default=None, help="CPU N, or CPUs N,M,... to take turns on")
    p.add_argument("--turn-seconds", type=float, default=0.25)
    p.add_argument("--mb", type=float, default=0.0)
    p.add_argument("--hold", type=float, default=0.2)
    return p


def _die_with_parent() -> None:
    """End this process when the profiler that started it dies, however it dies.

    The parent kills its child on a timeout, an error or a Ctrl-C, but a parent that is SIGKILLed (the
    out-of-memory killer, ``kill -9``, a CI runner's cancel) runs no code: the child used to go on timing
    for up to ``--timeout`` seconds, an orphan holding a CPU. On Linux the kernel delivers SIGKILL to us
    when the parent's thread ends (``prctl(PR_SET_PDEATHSIG)``; the thread that started us waits for us
    in :func:`edgeode.devices.measure.run_child`, so it outlives us); elsewhere a daemon thread checks
    the parent twice a second. A parent already gone before we got here is caught by the ppid check.
    """
    parent = os.getppid()
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent or parent == 1:
        os._exit(1)  # re-parented already: the profiler is gone
    if not armed:
        import threading

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, name="edgeode-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    _die_with_parent()
    if hasattr(signal, "pthread_sigmask"):  # the parent blocks SIGINT while it starts us (edgeode.devices.measure)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    args = _parser().parse_args(argv)
    try:
        result = {"floor": _floor, "alloc": _alloc, "run": _run, "onnx": _onnx_file}[args.what](args)
        code = 0
    except MemoryError:
        result, code = {"error": "out of memory while loading or running the model", "error_type": "MemoryError"}, 3
    except Exception as exc:  # reported to the parent, which raises a typed error
        result, code = {"error": str(exc), "error_type": type(exc).__name__}, 3
    from edgeode.fsutil import atomic_write_json  # here, not at import: the floor child stays minimal

    atomic_write_json(args.out, result)
    return code


if __name__ == "__main__":
    sys.exit(main())
