"""Shared machinery of the benchmark scripts: fresh-process workers, timing, memory, machine limits, tables.

Every measured configuration runs in its own fresh Python process (a *worker*: the script re-invoked
with ``--worker SPEC``), so that each one's peak resident memory (``ru_maxrss``, read by the worker
itself just before it exits) belongs to that configuration alone: the peer's process imports torch
and torchdiffeq, ours imports only ``edgeode.runtime`` and its backend. Workers pin every thread
pool to one thread through the environment before anything numeric is imported.

This module imports only the standard library (workers that must stay torch- and numpy-free import it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeode.devices.hostinfo import cpu_model
from edgeode.fsutil import atomic_write_text

__all__ = [
    "BENCH_DIR",
    "REPO_ROOT",
    "RESULTS_DIR",
    "DEFAULT_MNIST",
    "BenchmarkError",
    "Timing",
    "Target",
    "single_thread_env",
    "run_worker",
    "emit",
    "worker_spec",
    "start_main",
    "peak_rss_mb",
    "current_rss_mb",
    "time_call",
    "training_step_memory",
    "machine_info",
    "machine_markdown",
    "markdown_table",
    "targets_markdown",
    "write_results",
    "fmt",
    "log",
    "HelpFormatter",
]

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
#: The official 10k MNIST test set beside the checkout (see DESIGN.md, "Data without downloads").
DEFAULT_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"

_RESULT_TAG = "@@EDGEODE-BENCH-RESULT@@ "
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                "NUMEXPR_NUM_THREADS", "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default, except flags and options whose default is "not given"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action)


class BenchmarkError(RuntimeError):
    """A worker failed, or a precondition of a measurement (equal outputs, a file) does not hold."""


@dataclass
class Timing:
    """Wall-clock samples of one repeated call (seconds)."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def iqr(self) -> float:
        """Inter-quartile range: the spread a reader should compare ratios against."""
        if len(self.samples) < 4:
            return max(self.samples) - min(self.samples)
        q = statistics.quantiles(self.samples, n=4)
        return q[2] - q[0]

    def to_dict(self) -> dict:
        return {"median_s": self.median, "iqr_s": self.iqr, "min_s": min(self.samples), "n": len(self.samples)}


@dataclass
class Target:
    """One performance goal: ``measured <op> threshold`` (op is ``>=`` or ``<=``)."""

    figure: str
    op: str
    threshold: float
    measured: float | None
    note: str = ""
    met: bool | None = field(init=False)

    def __post_init__(self) -> None:
        if self.op not in (">=", "<="):
            raise ValueError(f"Target.op must be '>=' or '<=', got {self.op!r}")
        if self.measured is None:
            self.met = None
        else:
            self.met = self.measured >= self.threshold if self.op == ">=" else self.measured <= self.threshold

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------- workers


def single_thread_env(threads: int = 1) -> dict[str, str]:
    """The environment for a worker: every BLAS / OpenMP pool capped at ``threads``."""
    env = dict(os.environ)
    for var in _THREAD_VARS:
        env[var] = str(threads)
    # The worker must import this checkout (and ``common``) whatever the caller's cwd is.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), str(BENCH_DIR), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def run_worker(script: str | Path, spec: dict, *, threads: int = 1, timeout: float = 1800.0,
               show_stderr: bool = False) -> dict:
    """Run ``python SCRIPT --worker JSON(spec)`` in a fresh process and return the dict it emitted.

    The worker reports its own peak RSS (see :func:`emit`). Raises :class:`BenchmarkError` with the
    tail of the worker's stderr if it fails. ``show_stderr`` lets the worker's stderr (progress bars)
    through to ours instead of capturing it.
    """
    cmd = [sys.executable, str(Path(script).resolve()), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if show_stderr else subprocess.PIPE, text=True,
                              env=single_thread_env(threads), timeout=timeout, cwd=str(REPO_ROOT))
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"worker {spec} ran past {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:]) if proc.stderr else "(its stderr is above)"
        raise BenchmarkError(f"worker {spec} failed (exit {proc.returncode}):\n{tail}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT_TAG):
            return json.loads(line[len(_RESULT_TAG):])
    raise BenchmarkError(f"worker {spec} printed no result; stdout tail: {proc.stdout[-2000:]}")


def worker_spec(argv: Sequence[str]) -> dict | None:
    """The spec if this process was started as a worker (``--worker JSON``), else ``None``."""
    argv = list(argv)
    if len(argv) >= 2 and argv[0] == "--worker":
        return json.loads(argv[1])
    return None


def start_main(argv: Sequence[str] | None, parser: argparse.ArgumentParser,
               worker_main: Callable[[dict], int]) -> argparse.Namespace | int:
    """The opening of a benchmark's ``main``: in a worker process (``--worker JSON``, see :func:`run_worker`)
    run ``worker_main(spec)`` and return its exit code; otherwise the parsed arguments, with the command
    line kept as ``args.argv`` (the results record how they were made)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    spec = worker_spec(argv)
    if spec is not None:
        return worker_main(spec)
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports ru_maxrss in KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def current_rss_mb() -> float:
    """Resident set size now, in MiB (``/proc/self/statm``; falls back to the peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024.0 * 1024.0)
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def emit(result: dict) -> None:
    """Print a worker's result (with its peak RSS and which heavy modules it imported) for the parent."""
    result = dict(result)
    result["peak_rss_mb"] = peak_rss_mb()
    result["imported_torch"] = "torch" in sys.modules
    result["imported_numpy"] = "numpy" in sys.modules
    sys.stdout.write(_RESULT_TAG + json.dumps(result) + "\n")
    sys.stdout.flush()


def time_call(fn: Callable[[], Any], *, warmup: int = 3, min_repeats: int = 10, max_repeats: int = 200,
              budget_s: float = 3.0) -> Timing:
    """Median-ready wall-clock samples of ``fn()``: ``warmup`` untimed calls, then at least
    ``min_repeats`` timed calls, more while the budget lasts (up to ``max_repeats``)."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < min_repeats or (len(samples) < max_repeats and time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return Timing(samples)


def training_step_memory(model_config: Any, batch: int, threads: int = 1, adam: bool = False) -> dict:
    """Build ``model_config`` (an ``edgeode.train.models.ModelConfig``) and run ONE training step on a
    random batch of 28x28 images in this process; return what memory that step needed.

    For a worker that reports its own peak RSS (:func:`emit`): ``peak_before_mb`` / ``peak_after_mb``
    are ``ru_maxrss`` around the forward + backward pass (``adam``: and an Adam update),
    ``rss_before_mb`` the resident size just before it. The data do not matter for memory.
    Imports torch (only the workers that measure training call this).
    """
    import torch
    from torch import nn

    from edgeode.train.models import build_model, count_parameters

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(model_config).train()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3) if adam else None
    rss_before, peak_before = current_rss_mb(), peak_rss_mb()
    start = time.perf_counter()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    if opt is not None:
        opt.step()
    seconds = time.perf_counter() - start
    return {"parameters": count_parameters(model), "rss_before_mb": rss_before, "peak_before_mb": peak_before,
            "peak_after_mb": peak_rss_mb(), "step_s": seconds}


# --------------------------------------------------------------------------------------------- machine


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                have = set(line.split(":", 1)[1].split())
                return [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "asimd", "sve") if f in have]
    except OSError:
        pass
    return []


def machine_info() -> dict:
    """What the numbers were measured on (CPU model, cores, versions); no heavy imports."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cpu": cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in
                     ("torch", "torchdiffeq", "numpy", "onnxruntime", "onnx", "ai-edge-litert", "tflite-runtime", "edgeode")},
        "loadavg_at_start": load,
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def machine_markdown(info: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    flags = f" ({', '.join(info['cpu_flags'])})" if info.get("cpu_flags") else ""
    load = info.get("loadavg_at_start")
    load_s = f"; load average at start {load[0]:.2f}" if load else ""
    return (f"Machine: {info['cpu']}{flags}, {info['cores']} cores, {info['os']} {info['machine']}, "
            f"Python {info['python']}; {versions}{load_s}; {info['date_utc']}.")


# --------------------------------------------------------------------------------------------- output


def log(msg: str) -> None:
    """A progress line on stderr (stdout is the worker's result channel)."""
    print(msg, file=sys.stderr, flush=True)


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a table: ``n/a`` for None, otherwise ``digits`` significant figures."""
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    if abs(value) >= 10**digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def targets_markdown(targets: Sequence[Target]) -> str:
    rows = []
    for t in targets:
        verdict = "n/a" if t.met is None else ("**met**" if t.met else "**missed**")
        rows.append([t.figure, f"{t.op} {t.threshold:g}", fmt(t.measured), verdict, t.note])
    return markdown_table(["figure", "target", "measured", "verdict", "note"], rows)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def write_results(name: str, payload: dict, markdown: str, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``NAME.json`` and ``NAME.md`` (atomically) and return their paths."""
    out = Path(out_dir) if out_dir is not None else RESULTS_DIR
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    _atomic_write(json_path, json.dumps(payload, indent=2, default=str) + "\n")
    _atomic_write(md_path, markdown.rstrip() + "\n")
    return json_path, md_path
