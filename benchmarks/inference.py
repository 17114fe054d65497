"""Inference vs the peer (torchdiffeq) and against the machine's limit (issue 5, items 1 and 2).

Models: the paper's MNIST ODE-Net (``ModelConfig(arch="odenet")``: 28x28, width 64), the 8x8 digits
ODE-Net (width 16, batch 1 only) and the spiral MLP field (``SpiralField``), all solved with 10 steps
of Kutta's 3/8 rule (our ``rk4_38``, which is exactly torchdiffeq's fixed-grid ``"rk4"``), batch 1
and 32, one thread everywhere. Weights are
random (seed 0, PyTorch default initialisation): latency does not depend on the values.

For every configuration a fresh process is started:

* **peer**: imports torch + torchdiffeq, loads the run directory and runs the model with
  ``torchdiffeq.odeint(field, h0, t, method="rk4", options={"step_size": dt})`` in eager PyTorch
  (``torch.set_num_threads(1)``, inference mode).
* **ExecuTorch** (digits, batch 1, optional: ``pip install 'edgeode[bench]'``): the same weights with the
  solve unrolled, ``torch.export`` -> XNNPACK delegate -> ExecuTorch's runtime, one CPU; skipped with
  the reason when not installed.
* **edgeode**: imports only ``edgeode.runtime`` + numpy + the backend and runs
  ``edgeode.runtime.load(bundle, backend, mode, threads=1).predict`` / ``.solve`` for every
  installed backend x {fused, loop}.

Each worker reports its median latency and its own peak RSS (``ru_maxrss``); outputs of every
edgeode configuration are checked against the peer's (allclose) before its timing is accepted.

Against the limit: single-thread SGEMM FLOP/s (numpy and torch) at 1024^3 and at the conv's GEMM
shape; multiply-accumulates per inference counted from the ONNX graphs (Conv / Gemm / MatMul);
achieved FLOP/s = 2 x MACs / latency. The solver loop's overhead is loop-mode time / (field
evaluations x one field call), one field call timed alone with the same backend settings.

Also timed: ``edgeode export`` of the MNIST run with the default formats (a fresh process, every
core, wall clock). ``inference.json``'s ``targets`` hold every figure of issue 16's table with its
goal (:data:`GOALS`) and whether this run met it (``null`` where the run did not measure it).

    python3 benchmarks/inference.py --out DIR  # full run (~5 min on 2 cores): DIR/inference.json, .md
    python3 benchmarks/inference.py --quick    # a few seconds per configuration, for a smoke test
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from common import (
    DEFAULT_MNIST,
    REPO_ROOT,
    BenchmarkError,
    HelpFormatter,
    Target,
    emit,
    fmt,
    log,
    machine_info,
    machine_markdown,
    markdown_table,
    run_worker,
    single_thread_env,
    start_main,
    targets_markdown,
    time_call,
    write_results,
)

SCRIPT = Path(__file__).resolve()
KINDS = ("mnist", "spiral", "digits")
#: Image classifiers (encoder -> solve -> head); the others are trajectories.
CLASSIFIERS = ("mnist", "digits")
BACKENDS = ("onnxruntime", "litert", "tflite-runtime")
MODES = ("fused", "loop")
BACKEND_MODULES = {"onnxruntime": "onnxruntime", "litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime"}
SGEMM_SHAPES = ((1024, 1024, 1024), (64, 576, 1152), (64, 576, 36))


# =============================================================================================== workers
# Each worker runs in its own process; imports are inside so that an edgeode worker never sees torch.


def _work_prepare(spec: dict) -> dict:
    """Build the two models (random weights, seed 0), save run directories, export bundles, save inputs."""
    import numpy as np
    import torch

    from edgeode.export import export_run
    from edgeode.train.checkpoint import TrainConfig, save_run
    from edgeode.train.data import load_dataset
    from edgeode.train.models import ModelConfig, build_model

    work = Path(spec["work"])
    work.mkdir(parents=True, exist_ok=True)
    made = {}
    for kind in spec["models"]:
        run_dir = work / f"run-{kind}"
        if kind == "mnist":
            cfg = ModelConfig(arch="odenet", solver="rk4_38", steps=spec["steps"])
            data, path = "mnist", spec["mnist_path"]
        elif kind == "digits":  # the 8x8 digits ODE-Net of the tests (width 16, no downsampling)
            cfg = ModelConfig(arch="odenet", image_size=8, width=16, downsample=1, solver="rk4_38", steps=spec["steps"])
            data, path = "digits", None
        else:
            cfg = ModelConfig(arch="spiral", solver="rk4_38", steps=spec["steps"])
            data, path = "spiral", None
        if not (run_dir / "weights.pt").exists():
            torch.manual_seed(0)
            model = build_model(cfg).eval()
            info = load_dataset(data, path, 0).describe()
            tcfg = TrainConfig(model=cfg, data=data, data_path=path, epochs=1)
            save_run(run_dir, model, tcfg, {"note": "random weights (seed 0) for latency benchmarks"}, info)
        bundles = {}
        for b in spec["batches"]:
            bdir = work / f"bundle-{kind}-b{b}-{'-'.join(sorted(spec['formats']))}"
            if not (bdir / "manifest.json").exists():
                export_run(run_dir, bdir, formats=tuple(spec["formats"]), tflite_batch=b, progress=False)
            bundles[str(b)] = str(bdir)
        rng = np.random.default_rng(0)
        b_max = max(spec["batches"])
        if kind in CLASSIFIERS:
            size = 28 if kind == "mnist" else 8
            x = rng.standard_normal((b_max, 1, size, size)).astype(np.float32)
        else:
            x = rng.uniform(-2.0, 2.0, (b_max, 2)).astype(np.float32)
        np.save(work / f"input-{kind}.npy", x)
        made[kind] = {"run": str(run_dir), "bundles": bundles, "input": str(work / f"input-{kind}.npy")}
    return made


def _work_peer(spec: dict) -> dict:
    """torchdiffeq in eager PyTorch, same weights and scheme."""
    import numpy as np
    import torch
    from torchdiffeq import odeint

    from edgeode.train.checkpoint import load_run

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    model = load_run(spec["run"]).model.eval()
    block = model.block
    field = block.field
    if block.tableau.name != "rk4_38":
        raise BenchmarkError(f"peer needs the rk4_38 tableau (torchdiffeq's 'rk4'), model has {block.tableau.name}")

    def func(t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return field(t, h)

    x = torch.from_numpy(np.load(spec["input"])[: spec["batch"]].copy())
    dt = (block.t1 - block.t0) / block.steps
    if spec["kind"] in CLASSIFIERS:
        span = torch.tensor([block.t0, block.t1])

        def forward() -> torch.Tensor:
            h = model.encoder(x)
            h = odeint(func, h, span, method="rk4", options={"step_size": dt})[-1]
            return model.head(h)
    else:
        grid = torch.linspace(block.t0, block.t1, block.steps + 1)

        def forward() -> torch.Tensor:
            return odeint(func, x, grid, method="rk4")

    calls = [0]
    counting_field = field.forward

    def counted(t, h):
        calls[0] += 1
        return counting_field(t, h)

    with torch.inference_mode():
        field.forward = counted
        out = forward()
        evals = calls[0]
        field.forward = counting_field
        timing = time_call(forward, warmup=spec["warmup"], min_repeats=spec["repeats"], budget_s=spec["budget_s"])
    np.save(spec["output"], out.numpy())
    return {"timing": timing.to_dict(), "field_evaluations": evals}


def _work_edgeode(spec: dict) -> dict:
    """edgeode's runtime: only edgeode.runtime + numpy + the backend are imported."""
    import numpy as np

    from edgeode.runtime import load

    x = np.load(spec["input"])[: spec["batch"]].copy()
    model = load(spec["bundle"], backend=spec["backend"], mode=spec["mode"], threads=1, batch=spec["batch"])
    fn = (lambda: model.predict(x)) if spec["kind"] in CLASSIFIERS else (lambda: model.solve(x))
    out = fn()
    timing = time_call(fn, warmup=spec["warmup"], min_repeats=spec["repeats"], budget_s=spec["budget_s"])
    np.save(spec["output"], np.asarray(out))
    try:
        describe = model.describe()
    except Exception as exc:  # describe is informational only
        describe = {"error": str(exc)}
    result = {"timing": timing.to_dict(), "field_evaluations": int(model.field_evaluations), "describe": describe}
    model.close()
    return result


def _work_executorch(spec: dict) -> dict:
    """ExecuTorch 1.5 with the XNNPACK delegate: the same weights, the solve unrolled, one CPU.

    The program is what an Android user would ship: ``torch.export`` of encoder -> ``steps`` RK
    steps -> head, lowered with ``XnnpackPartitioner`` and run by ExecuTorch's own runtime
    (``executorch.runtime``). XNNPACK's thread pool is reset to one thread and the process is
    pinned to one CPU, as every other configuration runs on one thread.
    """
    import numpy as np
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    from edgeode.train.checkpoint import load_run
    from edgeode.train.solver import solve

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    torch.set_num_threads(1)
    try:
        from executorch.extension.pybindings import portable_lib

        portable_lib._unsafe_reset_threadpool(1)
    except (ImportError, AttributeError):  # older layouts: the CPU pin above still holds it to one core
        pass
    model = load_run(spec["run"]).model.eval()
    block = model.block

    class Unrolled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.field, self.head = model.encoder, block.field, model.head

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = solve(self.field, self.encoder(x), block.tableau, block.t0, block.t1, block.steps)
            return self.head(h)

    x = torch.from_numpy(np.load(spec["input"])[: spec["batch"]].copy())
    with torch.no_grad():
        program = torch.export.export(Unrolled().eval(), (x,))
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    pte = Path(spec["output"]).with_suffix(".pte")
    pte.write_bytes(lowered.buffer)
    method = Runtime.get().load_program(pte).load_method("forward")

    def fn():
        return method.execute([x])

    out = fn()[0]
    timing = time_call(fn, warmup=spec["warmup"], min_repeats=spec["repeats"], budget_s=spec["budget_s"])
    np.save(spec["output"], out.numpy())
    return {"timing": timing.to_dict(), "field_evaluations": block.steps * len(block.tableau.b),
            "pte_bytes": pte.stat().st_size}


def _ort_session(path: str, profile: bool = False):
    """An onnxruntime session configured as a one-thread device would run it."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile:
        opts.enable_profiling = True
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _feeds(sess, batch: int, t_value: float = 0.5) -> dict:
    """Inputs for a session: float32 zeros/ones of the declared shape, dynamic dims = batch; t = t_value."""
    import numpy as np

    feeds = {}
    rng = np.random.default_rng(1)
    for inp in sess.get_inputs():
        shape = [d if isinstance(d, int) else batch for d in inp.shape]
        if "int64" in inp.type:
            feeds[inp.name] = np.full(shape, 10, dtype=np.int64)
        elif len(shape) <= 1 and (not shape or shape[0] == 1) and inp.name.lower().startswith("t"):
            feeds[inp.name] = np.full(shape, t_value, dtype=np.float32)
        else:
            feeds[inp.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _onnx_artifacts(bundle: str) -> dict[str, str]:
    from edgeode.runtime import read_bundle

    b = read_bundle(bundle)
    return {a.role: str(b.path(a)) for a in b.manifest.artifacts if a.format == "onnx" and a.precision == "float32"}


def _work_parts(spec: dict) -> dict:
    """One call of each float32 ONNX part (encoder, field, head, fused) timed alone in onnxruntime."""
    arts = _onnx_artifacts(spec["bundle"])
    out = {}
    for role, path in arts.items():
        sess = _ort_session(path)
        feeds = _feeds(sess, spec["batch"])
        t = time_call(lambda s=sess, f=feeds: s.run(None, f), warmup=spec["warmup"], min_repeats=spec["repeats"],
                      budget_s=spec["budget_s"])
        out[role] = t.to_dict()
    return out


def _work_profile(spec: dict) -> dict:
    """Per-operator times from onnxruntime's own profiler for each float32 ONNX part."""
    import json
    import os

    arts = _onnx_artifacts(spec["bundle"])
    result = {}
    for role in spec["roles"]:
        if role not in arts:
            continue
        sess = _ort_session(arts[role], profile=True)
        feeds = _feeds(sess, spec["batch"])
        for _ in range(spec["runs"]):
            sess.run(None, feeds)
        prof = sess.end_profiling()
        events = json.loads(Path(prof).read_text())
        os.unlink(prof)
        per_op: dict[str, float] = {}
        per_node: dict[str, list] = {}
        total = 0.0
        loop_total = 0.0
        for ev in events:
            if ev.get("cat") != "Node" or not ev.get("name", "").endswith("_kernel_time"):
                continue
            op = ev.get("args", {}).get("op_name", "?")
            dur = float(ev.get("dur", 0))
            if op in ("Loop", "Scan", "If"):
                # A control-flow node's time includes its body's nodes, which are listed too: count once.
                loop_total += dur
                continue
            per_op[op] = per_op.get(op, 0.0) + dur
            node = ev["name"][: -len("_kernel_time")]
            rec = per_node.setdefault(node, [op, 0.0, ev.get("args", {}).get("provider", "")])
            rec[1] += dur
            total += dur
        runs = spec["runs"]
        ops = sorted(per_op.items(), key=lambda kv: -kv[1])
        nodes = sorted(per_node.items(), key=lambda kv: -kv[1][1])[:12]
        result[role] = {
            "kernel_us_per_run": total / runs,
            "loop_us_per_run": loop_total / runs,
            "ops": [{"op": k, "us_per_run": v / runs, "share": v / total if total else 0.0} for k, v in ops],
            "top_nodes": [{"node": k, "op": v[0], "us_per_run": v[1] / runs} for k, v in nodes],
        }
    return result


def _work_macs(spec: dict) -> dict:
    """Multiply-accumulates per call of each float32 ONNX part at batch ``spec['batch']``.

    Counted by :func:`edgeode.devices.macs.count_macs` (it also walks the fused graph's Loop body,
    ``steps`` trips). A part whose count is incomplete (a node of unknown shape) fails the worker;
    an incomplete fused count is left out.
    """
    from edgeode.devices.macs import count_macs

    arts = _onnx_artifacts(spec["bundle"])
    out: dict = {"counter": "edgeode.devices.macs"}
    for role in ("encoder", "field", "head", "model", "fused"):
        if role not in arts:
            continue
        res = count_macs(arts[role], batch=spec["batch"], loop_trips=spec["steps"] if role == "fused" else None)
        if res.complete:
            out[role] = int(res.total)
        elif role != "fused":
            raise BenchmarkError(f"{arts[role]}: cannot infer the shapes around {', '.join(res.unknown)}")
    return out


def _work_sgemm(spec: dict) -> dict:
    """Single-thread SGEMM FLOP/s with numpy (its BLAS) and torch at a few shapes (best of repeats)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    out = []
    for m, k, n in spec["shapes"]:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        c = np.empty((m, n), dtype=np.float32)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        tc = torch.empty(m, n)
        flops = 2.0 * m * k * n
        t_np = time_call(lambda a=a, b=b, c=c: np.matmul(a, b, out=c), warmup=2, min_repeats=5,
                         budget_s=spec["budget_s"])
        t_th = time_call(lambda ta=ta, tb=tb, tc=tc: torch.mm(ta, tb, out=tc), warmup=2, min_repeats=5,
                         budget_s=spec["budget_s"])
        out.append({"m": m, "k": k, "n": n,
                    "numpy_gflops": flops / t_np.median / 1e9, "torch_gflops": flops / t_th.median / 1e9})
    return {"shapes": out, "numpy_config": _blas_name(np)}


def _blas_name(np) -> str:
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:
        return "?"


WORKERS = {"prepare": _work_prepare, "peer": _work_peer, "edgeode": _work_edgeode, "executorch": _work_executorch,
           "parts": _work_parts,
           "profile": _work_profile, "macs": _work_macs, "sgemm": _work_sgemm}


def _worker_main(spec: dict) -> int:
    emit(WORKERS[spec["worker"]](spec))
    return 0


# =============================================================================================== parent


def _export_timing(run_dir: str, out_dir: Path, log) -> dict:
    """Wall seconds of ``edgeode export RUN_DIR -o OUT`` (default formats, parity gate included) in a fresh process.

    The process gets every core (the issue's goal is "on 2 cores"); it starts from scratch, so the
    time includes importing torch and the converters, as a user's export does.
    """
    import subprocess
    import sys
    import time


    cmd = [sys.executable, "-m", "edgeode", "export", run_dir, "-o", str(out_dir), "--overwrite", "-q"]
    env = single_thread_env(os.cpu_count() or 1)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO_ROOT))
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not (out_dir / "manifest.json").is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        log(f"export timing FAILED (exit {proc.returncode}): {' / '.join(tail)}")
        return {"note": f"edgeode export failed (exit {proc.returncode}): {' / '.join(tail)}"}
    log(f"edgeode export (default formats, {os.cpu_count()} cores): {wall:.1f} s wall")
    return {"wall_s": wall, "cores": os.cpu_count(), "command": "edgeode export RUN -o OUT --overwrite -q",
            "note": f"wall clock of a fresh process, {os.cpu_count()} cores, parity gate passed"}



def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _compare(ref_path: str, out_path: str) -> dict:
    import numpy as np

    ref, out = np.load(ref_path), np.load(out_path)
    if ref.shape != out.shape:
        return {"equal": False, "max_abs": None, "why": f"shape {out.shape} vs peer {ref.shape}"}
    diff = float(np.max(np.abs(ref - out))) if ref.size else 0.0
    return {"equal": bool(np.allclose(out, ref, rtol=1e-3, atol=1e-4)), "max_abs": diff}


def _batches(args: argparse.Namespace, kind: str) -> list[int]:
    """The batch sizes measured for ``kind``: the digits model (the ExecuTorch comparison) at batch 1 only."""
    if kind == "digits" and 1 in args.batches:
        return [1]
    return list(args.batches)


def _measure(args: argparse.Namespace, work: Path, made: dict, log, extra: dict) -> list[dict]:
    """Every configuration, peer first, each in a fresh process. Returns one row per configuration.

    The digits model also runs in ExecuTorch (XNNPACK) where it is installed, else ``extra['executorch']``
    says why not.
    """
    rows = []
    backends = [b for b in args.backends if _installed(BACKEND_MODULES[b])]
    skipped = [b for b in args.backends if b not in backends]
    for b in skipped:
        log(f"backend {b}: not installed, skipped")
    timing = {"warmup": args.warmup, "repeats": args.repeats, "budget_s": args.budget}
    for kind in args.models:
        for batch in _batches(args, kind):
            base = {"kind": kind, "batch": batch, **timing}
            ref = str(work / f"out-{kind}-b{batch}-peer.npy")
            try:
                peer = run_worker(SCRIPT, {"worker": "peer", **base, "run": made[kind]["run"],
                                           "input": made[kind]["input"], "output": ref})
            except BenchmarkError as exc:
                log(f"peer {kind} b{batch} FAILED: {exc}")
                rows.append({"kind": kind, "batch": batch, "impl": "torchdiffeq", "error": str(exc)})
                continue
            log(f"{kind} b{batch} torchdiffeq: {peer['timing']['median_s'] * 1e3:.3f} ms, {peer['peak_rss_mb']:.0f} MB")
            rows.append({"kind": kind, "batch": batch, "impl": "torchdiffeq", "backend": "torch", "mode": "eager",
                         **peer})
            for backend in backends:
                for mode in args.modes:
                    out = str(work / f"out-{kind}-b{batch}-{backend}-{mode}.npy")
                    spec = {"worker": "edgeode", **base, "bundle": made[kind]["bundles"][str(batch)],
                            "backend": backend, "mode": mode, "input": made[kind]["input"], "output": out}
                    row = {"kind": kind, "batch": batch, "impl": "edgeode", "backend": backend, "mode": mode}
                    try:
                        res = run_worker(SCRIPT, spec)
                    except BenchmarkError as exc:
                        log(f"{kind} b{batch} {backend}/{mode} FAILED: {str(exc).splitlines()[-1]}")
                        rows.append({**row, "error": str(exc)})
                        continue
                    check = _compare(ref, out)
                    row.update(res)
                    row["check"] = check
                    row["speedup"] = peer["timing"]["median_s"] / res["timing"]["median_s"]
                    row["memory_ratio"] = res["peak_rss_mb"] / peer["peak_rss_mb"]
                    if res.get("imported_torch"):
                        row["note"] = "torch was imported by the edgeode process"
                    log(f"{kind} b{batch} {backend}/{mode}: {res['timing']['median_s'] * 1e3:.3f} ms "
                        f"({row['speedup']:.2f}x), {res['peak_rss_mb']:.0f} MB, max|diff| {check['max_abs']}")
                    rows.append(row)
            if kind == "digits" and batch == 1:
                row = _measure_executorch({**base, "run": made[kind]["run"], "input": made[kind]["input"],
                                           "output": str(work / f"out-{kind}-b{batch}-executorch.npy")}, ref, peer, log)
                if "note" in row:
                    extra["executorch"] = row
                else:
                    rows.append(row)
    return rows


def _measure_executorch(spec: dict, ref: str, peer: dict, log) -> dict:
    """The ExecuTorch row for one configuration, or ``{"note": why not}``."""
    if not _installed("executorch"):
        log("executorch: not installed, skipped (pip install executorch==1.5.1)")
        return {"note": "ExecuTorch not installed (pip install executorch==1.5.1): not measured"}
    try:
        res = run_worker(SCRIPT, {"worker": "executorch", **spec})
    except BenchmarkError as exc:
        last = str(exc).strip().splitlines()[-1]
        log(f"executorch FAILED: {last}")
        return {"note": f"ExecuTorch worker failed: {last[:200]}"}
    check = _compare(ref, spec["output"])
    row = {"kind": spec["kind"], "batch": spec["batch"], "impl": "executorch", "backend": "executorch-xnnpack",
           "mode": "unrolled", **res, "check": check,
           "speedup": peer["timing"]["median_s"] / res["timing"]["median_s"],
           "memory_ratio": res["peak_rss_mb"] / peer["peak_rss_mb"]}
    log(f"{spec['kind']} b{spec['batch']} executorch: {res['timing']['median_s'] * 1e3:.3f} ms, "
        f"max|diff| {check['max_abs']}")
    return row


def _best(rows: list[dict], kind: str, batch: int, key: str = "speedup", mode: str | None = None,
          backend: str | None = None) -> dict | None:
    """The edgeode row (outputs equal to the peer's) with the highest speed-up, or the lowest ``key`` otherwise."""
    cands = [r for r in rows if r["kind"] == kind and r["batch"] == batch and r["impl"] == "edgeode"
             and "error" not in r and r["check"]["equal"] and (mode is None or r["mode"] == mode)
             and (backend is None or r["backend"] == backend)]
    if not cands:
        return None
    return max(cands, key=lambda r: r[key]) if key == "speedup" else min(cands, key=lambda r: r[key])


def _limits(args, work: Path, made: dict, rows: list[dict], log) -> dict:
    """SGEMM peak, MACs, achieved fractions, loop overhead, and onnxruntime per-op profiles."""
    budget = 1.0 if args.quick else 3.0
    sgemm = run_worker(SCRIPT, {"worker": "sgemm", "shapes": [list(s) for s in SGEMM_SHAPES], "budget_s": budget})
    # The machine's limit: the best single-thread SGEMM rate seen at any shape, with either library.
    peak = max(max(s["numpy_gflops"], s["torch_gflops"]) for s in sgemm["shapes"]) * 1e9
    conv_shape = {f"{s['m']}x{s['k']}x{s['n']}": max(s["numpy_gflops"], s["torch_gflops"]) for s in sgemm["shapes"]}
    log(f"SGEMM single thread: best {peak / 1e9:.1f} GFLOP/s; {conv_shape}")
    out: dict = {"sgemm": sgemm, "peak_flops": peak, "per_config": [], "parts": {}, "profiles": {}}
    timing = {"warmup": args.warmup, "repeats": args.repeats, "budget_s": args.budget}
    for kind in args.models:
        for batch in _batches(args, kind):
            bundle = made[kind]["bundles"][str(batch)]
            try:
                macs = run_worker(SCRIPT, {"worker": "macs", "bundle": bundle, "batch": batch, "steps": args.steps})
                parts = run_worker(SCRIPT, {"worker": "parts", "bundle": bundle, "batch": batch, **timing})
                parts = {k: v for k, v in parts.items() if isinstance(v, dict)}
            except BenchmarkError as exc:
                log(f"limits {kind} b{batch} FAILED: {exc}")
                continue
            counter = macs.get("counter")
            macs = {k: v for k, v in macs.items() if isinstance(v, int) and k in ("encoder", "field", "head", "model", "fused")}
            out["parts"][f"{kind}-b{batch}"] = {"macs": macs, "times": parts, "counter": counter}
            for r in rows:
                if r["kind"] != kind or r["batch"] != batch or "error" in r:
                    continue
                evals = r.get("field_evaluations") or 0
                total_macs = macs.get("encoder", 0) + macs.get("head", 0) + macs.get("field", 0) * evals
                lat = r["timing"]["median_s"]
                achieved = 2.0 * total_macs / lat
                entry = {"impl": r["impl"], "backend": r["backend"], "mode": r["mode"], "kind": kind, "batch": batch,
                         "macs": total_macs, "field_evaluations": evals, "gflops": achieved / 1e9,
                         "fraction_of_sgemm": achieved / peak}
                if "field" in parts and evals and r["backend"] == "onnxruntime":
                    field_s = parts["field"]["median_s"]
                    entry["field_call_s"] = field_s
                    entry["overhead"] = lat / (evals * field_s)
                    rest = sum(parts[p]["median_s"] for p in ("encoder", "head") if p in parts)
                    entry["overhead_solver_only"] = (lat - rest) / (evals * field_s)
                out["per_config"].append(entry)
            if kind == "mnist" and args.profile:
                try:
                    prof = run_worker(SCRIPT, {"worker": "profile", "bundle": bundle, "batch": batch,
                                               "roles": ["fused", "field"], "runs": 5 if args.quick else 20})
                    out["profiles"][f"{kind}-b{batch}"] = {k: v for k, v in prof.items() if isinstance(v, dict)}
                except BenchmarkError as exc:
                    log(f"profile {kind} b{batch} FAILED: {exc}")
    return out


#: The goals of issue 16 (performance round 2), one per figure of its table.
GOALS = {
    "b1": 4.5,           # batch 1 latency, torchdiffeq / edgeode (best backend)
    "b32": 1.6,          # batch 32 latency, torchdiffeq / edgeode (best backend)
    "sgemm": 0.9,        # batch 32 fused, fraction of single-thread SGEMM FLOP/s
    "b32_litert": 1.4,   # batch 32 LiteRT fused, torchdiffeq / edgeode
    "memory": 0.15,      # peak RSS of the inference process, edgeode / torchdiffeq, each backend's best mode
    "export_s": 20.0,    # `edgeode export` of the paper MNIST ODE-Net, all default formats, wall seconds
    "executorch": 1.0,   # digits-size ODE-Net batch 1, ExecuTorch (XNNPACK) latency / edgeode latency
    "spiral": 20.0,      # spiral field batch 1, torchdiffeq / edgeode (issue 5, kept)
}


def _targets(rows: list[dict], limits: dict, extra: dict | None = None) -> list[Target]:
    """Every figure of issue 16's table with its goal; ``measured`` is ``None`` where this run did not measure it."""
    extra = extra or {}
    targets = []
    b1, b32 = _best(rows, "mnist", 1), _best(rows, "mnist", 32)
    targets.append(Target("MNIST ODE-Net batch 1 latency, torchdiffeq / edgeode (best backend)", ">=", GOALS["b1"],
                          b1["speedup"] if b1 else None, _which(b1)))
    targets.append(Target("MNIST ODE-Net batch 32 latency, torchdiffeq / edgeode (best backend), side by side",
                          ">=", GOALS["b32"], b32["speedup"] if b32 else None, _which(b32)))
    fr = [e for e in limits.get("per_config", []) if e["kind"] == "mnist" and e["impl"] == "edgeode"
          and e["mode"] == "fused" and e["batch"] == 32]
    peer_fr = [e for e in limits.get("per_config", []) if e["kind"] == "mnist" and e["impl"] == "torchdiffeq"
               and e["batch"] == 32]
    best_fr = max(fr, key=lambda e: e["fraction_of_sgemm"]) if fr else None
    note = f"{best_fr['backend']}" if best_fr else "limits not measured (--no-limits) or batch 32 not run"
    if best_fr and peer_fr:
        note += f"; torchdiffeq {peer_fr[0]['fraction_of_sgemm']:.2f}"
    targets.append(Target("MNIST ODE-Net batch 32 fused, fraction of single-thread SGEMM FLOP/s", ">=", GOALS["sgemm"],
                          best_fr["fraction_of_sgemm"] if best_fr else None, note))
    lt = _best(rows, "mnist", 32, backend="litert", mode="fused")
    targets.append(Target("MNIST ODE-Net batch 32 LiteRT fused latency, torchdiffeq / edgeode", ">=",
                          GOALS["b32_litert"], lt["speedup"] if lt else None,
                          _which(lt) if lt else "LiteRT fused at batch 32 not run"))
    backends = sorted({r["backend"] for r in rows if r["impl"] == "edgeode" and r["kind"] == "mnist"})
    for backend in backends or ["any backend"]:
        mem = _best(rows, "mnist", 1, key="memory_ratio", backend=backend)
        targets.append(Target(f"MNIST ODE-Net batch 1 peak RSS of the inference process, edgeode / torchdiffeq, "
                              f"{backend} (best mode)", "<=", GOALS["memory"],
                              mem["memory_ratio"] if mem else None, _which(mem)))
    exp = extra.get("export")
    targets.append(Target("`edgeode export` of the paper MNIST ODE-Net, default formats, wall seconds", "<=",
                          GOALS["export_s"], exp["wall_s"] if exp and "wall_s" in exp else None,
                          (exp or {}).get("note", "not measured in this run (--no-export-timing or --quick)")))
    et = next((r for r in rows if r["impl"] == "executorch" and r["kind"] == "digits" and r["batch"] == 1), None)
    ours = _best(rows, "digits", 1)
    if et and ours and et["check"]["equal"]:
        ratio = et["timing"]["median_s"] / ours["timing"]["median_s"]
        note = (f"{et['timing']['median_s'] * 1e3:.3f} ms vs {ours['timing']['median_s'] * 1e3:.3f} ms "
                f"({_which(ours)}), outputs equal")
    else:
        ratio = None
        note = (extra.get("executorch") or {}).get("note", "ExecuTorch or the digits model not run") if not et else \
            "ExecuTorch's output differs from torchdiffeq's" if not et["check"]["equal"] else "no edgeode digits row"
    targets.append(Target("digits ODE-Net batch 1, ExecuTorch (XNNPACK) latency / edgeode latency", ">=",
                          GOALS["executorch"], ratio, note))
    sp = _best(rows, "spiral", 1)
    targets.append(Target("spiral field batch 1, cost per RK4 step, torchdiffeq / edgeode", ">=", GOALS["spiral"],
                          sp["speedup"] if sp else None, _which(sp)))
    return targets


def _which(row: dict | None) -> str:
    return f"{row['backend']} / {row['mode']}" if row else "no edgeode configuration matched the peer"


def _markdown(info: dict, rows: list[dict], limits: dict, targets: list[Target], args) -> str:
    parts = [f"# Inference: edgeode vs torchdiffeq ({'quick' if args.quick else 'full'} run)", "",
             machine_markdown(info), "",
             "Command: `" + " ".join(["python3 benchmarks/inference.py", *getattr(args, "argv", [])]) + "`. "
             f"{args.steps} steps of rk4_38 (torchdiffeq 'rk4'), one thread, random weights (seed 0); "
             "median latency; peak RSS of each configuration's own fresh process. "
             "Ratios: torchdiffeq / edgeode for speed, edgeode / torchdiffeq for memory.", "",
             "## Targets", "", targets_markdown(targets), "", "## Latency and memory", ""]
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["kind"], r["batch"], r.get("backend", r["impl"]), r.get("mode", ""), "error", "", "", "", "",
                          r["error"].strip().splitlines()[-1][:80]])
            continue
        med = r["timing"]["median_s"]
        steps = args.steps
        peer = r["impl"] == "torchdiffeq"
        table.append([
            r["kind"], r["batch"], "torchdiffeq" if peer else r["backend"], r["mode"],
            f"{med * 1e3:.3f}", f"{med / steps * 1e6:.1f}", "1" if peer else fmt(r.get("speedup")),
            f"{r['peak_rss_mb']:.0f}", "1" if peer else fmt(r.get("memory_ratio")),
            (f"{r['check']['max_abs']:.1e}" + ("" if r["check"]["equal"] else " NOT EQUAL")) if "check" in r else "ref",
        ])
    parts.append(markdown_table(["model", "batch", "backend", "mode", "median ms", "µs / step", "speed-up",
                                 "peak RSS MB", "memory ratio", "max abs diff"], table))
    if limits:
        parts += ["", "## Against the limit", "",
                  f"Single-thread SGEMM: {limits['peak_flops'] / 1e9:.1f} GFLOP/s (the best of numpy "
                  f"[{limits['sgemm'].get('numpy_config', '?')}] and torch over the shapes M x K x N: "
                  + ", ".join(f"{s['m']}x{s['k']}x{s['n']} {max(s['numpy_gflops'], s['torch_gflops']):.1f}"
                              for s in limits["sgemm"]["shapes"]) + " GFLOP/s; 64 x 576 x N is the field's 3x3 "
                  "conv as a GEMM at batch 32 / 1).", "",
                  "MACs counted from the ONNX graphs (Conv/Gemm/MatMul): encoder + head + field x evaluations. "
                  "Loop overhead = latency / (field evaluations x one field call alone in onnxruntime); "
                  "'solver only' first subtracts the encoder and head calls.", ""]
        lt = []
        for e in limits["per_config"]:
            lt.append([e["kind"], e["batch"], "torchdiffeq" if e["impl"] == "torchdiffeq" else e["backend"], e["mode"],
                       fmt(e["macs"] / 1e6), fmt(e["gflops"]), fmt(e["fraction_of_sgemm"], 2),
                       fmt(e.get("overhead")), fmt(e.get("overhead_solver_only"))])
        parts.append(markdown_table(["model", "batch", "backend", "mode", "MMACs", "GFLOP/s", "fraction of SGEMM",
                                     "time / (evals x field call)", "solver only"], lt))
        if limits.get("parts"):
            parts += ["", "One call of each ONNX part alone (onnxruntime, one thread):", ""]
            pt = []
            for key, v in limits["parts"].items():
                for role, t in v["times"].items():
                    pt.append([key, role, f"{t['median_s'] * 1e6:.1f}", fmt(v["macs"].get(role, 0) / 1e6)])
            parts.append(markdown_table(["model-batch", "part", "median µs", "MMACs"], pt))
        for key, prof in limits.get("profiles", {}).items():
            for role, p in prof.items():
                loop = (f"; the Loop node, body included, {p['loop_us_per_run']:.0f} µs"
                        if p.get("loop_us_per_run") else "")
                parts += ["", f"onnxruntime profile, {key} `{role}` ({p['kernel_us_per_run']:.0f} µs in operator "
                              f"kernels per run{loop}; profiling adds per-node overhead):", ""]
                parts.append(markdown_table(["op", "µs / run", "share"],
                                            [[o["op"], f"{o['us_per_run']:.1f}", f"{o['share']:.0%}"] for o in p["ops"][:8]]))
    return "\n".join(parts)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Writes benchmarks/results/inference.json and inference.md (inference-quick.* with --quick).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--quick", action="store_true",
                   help="few repeats, batch 1, ONNX / onnxruntime only (unless --formats / --backends are given), "
                        "no profiles: a smoke run")
    p.add_argument("--mnist-path", default=str(DEFAULT_MNIST),
                   help="directory with the MNIST t10k IDX files (the bundle's preprocessing is taken from it)")
    p.add_argument("--work", default=None,
                   help="directory for run dirs, bundles and outputs (kept; reused if it holds them). "
                        "Default: a temporary directory, deleted at the end")
    p.add_argument("--out", default=None, help="results directory (default benchmarks/results)")
    p.add_argument("--models", nargs="+", choices=KINDS, default=list(KINDS), help="models to measure")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32], help="batch sizes")
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS),
                   help="edgeode backends (those not installed are skipped and reported)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="runtime modes")
    p.add_argument("--steps", type=int, default=10, help="solver steps (rk4_38)")
    p.add_argument("--formats", nargs="+", default=["onnx", "tflite"], help="bundle formats to export")
    p.add_argument("--repeats", type=int, default=30, help="minimum timed calls per configuration")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    p.add_argument("--budget", type=float, default=3.0, help="seconds of timed calls per configuration (at least --repeats)")
    p.add_argument("--no-limits", dest="limits", action="store_false", help="skip SGEMM / MACs / overhead")
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip the onnxruntime per-op profiles")
    p.add_argument("--no-export-timing", dest="export_timing", action="store_false",
                   help="skip timing `edgeode export` of the MNIST run (default formats, all cores)")
    p.add_argument("--render", metavar="JSON", default=None,
                   help="measure nothing: rewrite the Markdown tables from a results JSON file written earlier")
    return p


def main(argv: list[str] | None = None) -> int:
    args = start_main(argv, _parser(), _worker_main)
    if isinstance(args, int):
        return args
    if args.render:
        import json

        path = Path(args.render)
        return _render(json.loads(path.read_text()), path.stem, args.out or str(path.parent))
    if args.quick:
        args.repeats, args.warmup, args.budget = 3, 1, 0.2
        if args.batches == [1, 32]:
            args.batches = [1]
        if args.formats == ["onnx", "tflite"] and args.backends == list(BACKENDS):
            # TFLite conversion takes minutes; the smoke run exercises the ONNX path only.
            args.formats, args.backends = ["onnx"], ["onnxruntime"]
        args.profile = False
        args.export_timing = False
    import shutil
    import tempfile

    info = machine_info()
    tmp = None
    if args.work is None:
        tmp = tempfile.mkdtemp(prefix="edgeode-bench-")
        work = Path(tmp)
    else:
        work = Path(args.work)
    try:
        log(f"preparing models and bundles in {work} ...")
        made = run_worker(SCRIPT, {"worker": "prepare", "work": str(work), "steps": args.steps,
                                   "mnist_path": args.mnist_path, "batches": args.batches,
                                   "formats": args.formats, "models": args.models}, threads=2)
        made = {k: v for k, v in made.items() if isinstance(v, dict)}
        extra: dict = {}
        rows = _measure(args, work, made, log, extra)
        limits = _limits(args, work, made, rows, log) if args.limits else {}
        if args.export_timing and "mnist" in made:
            extra["export"] = _export_timing(made["mnist"]["run"], work / "bundle-export-timing", log)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    targets = _targets(rows, limits, extra)
    payload = {"machine": info, "args": vars(args), "rows": rows, "limits": limits, "extra": extra,
               "targets": [t.to_dict() for t in targets]}
    name = "inference-quick" if args.quick else "inference"
    write_results(name, payload, "(rendering failed; rerun with --render " + name + ".json)", args.out)
    return _render(payload, name, args.out)


def _render(payload: dict, name: str, out: str | None) -> int:
    """Write NAME.md from the measurements (also used by ``--render`` to redo tables from a JSON file)."""
    args = argparse.Namespace(**payload["args"])
    targets = _targets(payload["rows"], payload["limits"], payload.get("extra"))
    md = _markdown(payload["machine"], payload["rows"], payload["limits"], targets, args)
    write_results(name, {**payload, "targets": [t.to_dict() for t in targets]}, md, out)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
