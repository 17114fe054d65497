"""The sweep behind ``edgeode tune``: every tableau x steps x precision of a bundle, measured as deployed.

An ODE-Net's compute is a knob set at test time (Chen et al. 2018, arXiv 1806.07366, §3: fewer solver
steps trade accuracy for speed without retraining). For each configuration the sweep loads the bundle
with :func:`edgeode.runtime.load` exactly as a tuned bundle will run it (:func:`deploy_mode`: the fused
graph where it can run that solve, else the numpy loop around the field) and measures:

* **accuracy** on held-out samples (classifiers: the fraction classified right; dynamics: the RMS
  trajectory error at the configuration's grid points against a fine reference solve of the same field,
  RK4 at :data:`REFERENCE_STEPS` steps, lower is better), twice: on the validation set (``val_accuracy``,
  what pruning, the frontier and the pick use) and on the test set (``accuracy``, what is reported for
  the chosen configuration: it played no part in choosing it; :mod:`edgeode.tune.heldout`);
* **host latency** of batch-1 inferences, timed in this process for about ``seconds`` per configuration,
  reduced to the profiler's basis (:func:`edgeode.devices.profiler.host_basis`: the host's undisturbed
  latency and CPU time);
* the **device estimate**: that basis scaled to the device and its energy by the profiler's own code
  (:func:`edgeode.devices.profiler.device_timings`, :func:`edgeode.devices.scaling.decide_scaling`), and
  whether it **fits** (:func:`edgeode.devices.profiler.fit_verdict` on the measured runtime floor plus the
  files the configuration loads, and the bundle's size).

Pruning: steps grow from 1 for each (tableau, precision) and stop once validation accuracy has saturated
(the best figure did not improve by more than ``saturation`` over the last :data:`PATIENCE` steps): more
steps only cost time from there. ``prune=False`` measures every step count up to ``max_steps`` (the whole
accuracy-vs-evaluations curve). Torch-free (numpy and the runtime's backends).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeode.errors import ConfigError, SolverError
from edgeode.runtime.manifest import Manifest
from edgeode.tableaus import TABLEAUS
from edgeode.tune.heldout import HeldOut, Split

__all__ = ["Config", "Measured", "Sweep", "deploy_mode", "measure_accuracy", "sweep", "REFERENCE_STEPS", "PATIENCE",
           "DEFAULT_MAX_STEPS", "SWEPT_PRECISIONS", "ACCURACY_BATCH"]

#: Why a series (ODE-RNN) bundle or run is not tuned: it has no fixed [t0, t1] solve to sweep.
SERIES_REFUSAL = ("tune sweeps the steps of a fixed [t0, t1] solve (an ODE-Net or a dynamics model); a series model "
                  "(an ODE-RNN run or bundle) solves each gap between observations in steps of at most its max_step, set at training: "
                  "train with another `edgeode train --model odernn --max-step SECONDS`, and time an observation with "
                  "`edgeode profile BUNDLE --device NAME`")

#: Steps of the RK4 reference solve that dynamics trajectories are compared with.
REFERENCE_STEPS = 256
#: Steps without a gain above ``saturation`` after which a (tableau, precision) stops growing its steps.
PATIENCE = 2
DEFAULT_MAX_STEPS = 16
#: Precisions a CPU-class device runs (full int8 is for microcontrollers: ``edgeode profile`` on one of those).
SWEPT_PRECISIONS = ("float32", "float16", "int8-dynamic", "int8-weight")
ACCURACY_BATCH = 256  # accuracy is measured in batches of this many samples (dynamic-batch files)


@dataclass(frozen=True)
class Config:
    """One configuration: the solver, its steps, the files' precision, and how the runtime runs it."""

    tableau: str
    steps: int
    precision: str
    mode: str
    backend: str

    @property
    def field_evaluations(self) -> int:
        return TABLEAUS[self.tableau].stages * self.steps

    def label(self) -> str:
        return f"{self.tableau} x {self.steps} {self.precision} ({self.mode})"


@dataclass
class Measured:
    """What the sweep measured for one :class:`Config` (latency in ms, energy in mJ per inference)."""

    config: Config
    accuracy: float
    val_accuracy: float
    host_latency_ms: float
    host_cpu_ms: float
    latency_ms: float | None
    energy_mj: float | None
    energy_dynamic_mj: float | None
    fits: bool
    fit_message: str
    note: str = ""
    frontier: bool = False
    frontier_energy: bool = False

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        d = {"tableau": c.tableau, "steps": c.steps, "precision": c.precision, "mode": c.mode, "backend": c.backend,
             "field_evaluations": c.field_evaluations}
        d.update({k: v for k, v in asdict(self).items() if k != "config"})
        return d


@dataclass
class Sweep:
    """The whole sweep: every configuration measured, and what it was measured on and against."""

    results: list[Measured]
    metric: str  # "accuracy" (higher is better) or "trajectory_rmse" (lower is better)
    samples: int  # test samples (the reported figure)
    data: str
    device: str
    figures: str
    threads: int
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    val_samples: int = 0
    val_data: str = ""

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "accuracy"

    def better(self, a: float, b: float) -> bool:
        """Whether accuracy figure ``a`` is at least as good as ``b``."""
        return a >= b if self.higher_is_better else a <= b


def deploy_mode(manifest: Manifest, fmt: str, precision: str, tableau: str, steps: int) -> str | None:
    """How :func:`edgeode.runtime.load` runs this solve from this bundle: ``"fused"`` where the fused file of
    ``fmt``/``precision`` computes it (the exported tableau, and steps it has or can take as input), else
    ``"loop"`` where a field file exists, else ``None`` (the configuration cannot run)."""
    arts = [a for a in manifest.artifacts if a.format == fmt and a.precision == precision]
    solver = manifest.solver
    for a in arts:
        if a.role == "fused" and tableau == solver.tableau.name:
            if steps == solver.steps or any(s.name == "steps" for s in a.inputs):
                return "fused"
    return "loop" if any(a.role == "field" for a in arts) else None


def _predict_all(model: Any, x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "dynamics":
        return np.concatenate([model.solve(x[i:i + ACCURACY_BATCH]) for i in range(0, len(x), ACCURACY_BATCH)], axis=1)
    return np.concatenate([model.predict(x[i:i + ACCURACY_BATCH]) for i in range(0, len(x), ACCURACY_BATCH)])


def measure_accuracy(model: Any, data: HeldOut, reference: Callable[[int], np.ndarray] | None = None) -> float:
    """The accuracy figure of a loaded model on ``data``: for a classifier the fraction of labels predicted
    (argmax of the scores); for dynamics the RMS error of the trajectory against ``reference(steps)``
    (the reference states at the model's grid points, t0 excluded)."""
    if model.manifest.kind == "classifier":
        if data.y is None:
            raise ConfigError("a classifier's accuracy needs labels: the held-out data has no y (save it with "
                              "np.savez(path, x=inputs, y=labels))")
        pred = _predict_all(model, data.x, "classifier").argmax(axis=1)
        return float(np.mean(pred == data.y))
    states = _predict_all(model, data.x, "dynamics")[1:]
    ref = reference(model.steps)
    return float(np.sqrt(np.mean((states.astype(np.float64) - ref) ** 2)))


def _time_model(model: Any, x1: np.ndarray, seconds: float, min_runs: int = 20) -> tuple[list[float], list[float]]:
    for _ in range(3):
        model.predict(x1)
    wall, cpu = [], []
    until = time.perf_counter() + seconds
    while len(wall) < min_runs or time.perf_counter() < until:
        t0, c0 = time.perf_counter(), time.process_time()
        model.predict(x1)
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
        if len(wall) >= 20000:
            break
    return wall, cpu


class _Reference:
    """The dynamics reference: RK4 with :data:`REFERENCE_STEPS` steps in float32 loop mode, at any config's grid,
    for each held-out set (:meth:`on`)."""

    def __init__(self, bundle: Path, threads: int | None):
        from edgeode.runtime import load

        self.model = load(bundle, mode="loop", precision="float32", tableau="rk4", steps=REFERENCE_STEPS, threads=threads)
        self.cache: dict[tuple[int, int], np.ndarray] = {}
        sol = self.model.manifest.solver
        self.t0, self.t1 = sol.t0, sol.t1

    def on(self, data: HeldOut) -> Callable[[int], np.ndarray]:
        """``steps -> reference states`` for ``data`` (what :func:`measure_accuracy` takes)."""
        return lambda steps: self._states(data, steps)

    def _states(self, data: HeldOut, steps: int) -> np.ndarray:
        key = (id(data), steps)
        if key not in self.cache:
            grid = np.linspace(self.t0, self.t1, steps + 1)
            self.cache[key] = np.concatenate(
                [self.model.solve(data.x[i:i + ACCURACY_BATCH], times=grid)[1:] for i in range(0, len(data.x), ACCURACY_BATCH)],
                axis=1).astype(np.float64)
        return self.cache[key]

    def close(self) -> None:
        self.model.close()


def _floor_mb(backend: str, threads: int) -> float:
    from edgeode.devices.measure import run_child

    return run_child(["floor", "--backend", backend, "--threads", str(threads)], timeout=120).peak_rss_mb


def sweep(bundle: str | Path, device: str, data: Split, *, tableaus: tuple[str, ...] | None = None,
          max_steps: int = DEFAULT_MAX_STEPS, precisions: tuple[str, ...] | None = None, threads: int | None = None,
          seconds: float = 0.1, saturation: float | None = None, prune: bool = True, progress: bool = True) -> Sweep:
    """Measure every configuration of ``bundle`` for ``device`` on ``data.val`` (picking) and ``data.test``
    (reporting) (see the module docstring).

    ``saturation``: the smallest gain that counts (default: 0.25 point of accuracy for classifiers, 1% of
    the error for dynamics).

    Raises:
        ConfigError: a microcontroller profile, a bundle without an ODE, unknown tableaus, bad bounds, or
            no configuration the bundle can run. DeviceError: unknown device.
    """
    from edgeode.devices.hostinfo import cpu_count
    from edgeode.devices.profiler import device_timings, dir_size_mb, fit_verdict, host_basis
    from edgeode.devices.profiles import load_profile
    from edgeode.devices.scaling import decide_scaling
    from edgeode.progress import Stages
    from edgeode.runtime import load
    from edgeode.runtime.backends import BACKEND_FORMAT, choose_backend
    from edgeode.runtime.limits import MAX_STEPS

    start = time.perf_counter()
    bundle = Path(bundle)
    manifest = Manifest.read(bundle)
    profile = load_profile(device)
    if profile.device_class == "mcu":
        raise ConfigError(f"{profile.name} is a microcontroller: tune sweeps CPU-class devices (Linux boards, phones); "
                          f"for a board run `edgeode profile BUNDLE --device {profile.name}` on a --quantize int8 bundle")
    if manifest.solver is None:
        raise ConfigError(f"the {manifest.model.get('arch')} bundle has no ODE block: there is no solver to tune "
                          "(tune an ODE-Net or a dynamics bundle)")
    if manifest.kind == "series":
        raise ConfigError(SERIES_REFUSAL)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or not 1 <= max_steps <= MAX_STEPS:
        raise ConfigError(f"max steps must be an integer from 1 to {MAX_STEPS:,}, got {max_steps!r}")
    if not (isinstance(seconds, (int, float)) and 0 < seconds <= 60):
        raise ConfigError(f"seconds of timing per configuration must be in (0, 60], got {seconds!r}")
    tableaus = tuple(tableaus or TABLEAUS)
    unknown = [t for t in tableaus if t not in TABLEAUS]
    if unknown:
        raise ConfigError(f"unknown solver(s) {unknown}; choose from {', '.join(TABLEAUS)}")
    kind = manifest.kind
    metric = "accuracy" if kind == "classifier" else "trajectory_rmse"
    if kind == "classifier" and (data.val.y is None or data.test.y is None):
        raise ConfigError("a classifier's accuracy needs labels: the held-out data has no y")
    if saturation is None:
        saturation = 0.0025 if kind == "classifier" else 0.01
    threads = threads or max(1, min(profile.cpu.cores, cpu_count()))
    have = sorted({a.precision for a in manifest.artifacts})
    wanted = [p for p in (precisions or SWEPT_PRECISIONS) if p in have]
    skipped = [f"precision {p}: not in this bundle" for p in (precisions or ()) if p not in have]
    if "int8" in have:
        skipped.append("precision int8 (full integer, TensorFlow Lite Micro): for microcontroller profiles, see "
                       "`edgeode profile BUNDLE --device nano-33-ble-sense`")
    backends = {}
    for p in wanted:
        try:
            backends[p] = choose_backend(manifest, "auto", p)
        except Exception as exc:  # BackendError / ConfigError: that precision cannot run here
            skipped.append(f"precision {p}: {exc}")
    if not backends:
        raise ConfigError(f"no precision of this bundle can run here (it has {have}): " + "; ".join(skipped))
    scaling = decide_scaling(profile)
    bundle_mb = dir_size_mb(bundle)
    floors = {b: _floor_mb(b, threads) for b in set(backends.values())}
    reference = _Reference(bundle, threads) if kind == "dynamics" else None
    x1 = data.test.x[:1]
    results: list[Measured] = []
    bar = Stages("tune", len(backends) * len(tableaus), enabled=progress, unit="solver")
    try:
        for precision, backend in backends.items():
            fmt = BACKEND_FORMAT[backend]
            for name in tableaus:
                bar.set_description(f"{name} {precision}")
                best, since = None, 0
                for steps in range(1, max_steps + 1):
                    mode = deploy_mode(manifest, fmt, precision, name, steps)
                    if mode is None:
                        skipped.append(f"{name} {precision}: the bundle has no {fmt} {precision} field or fused file for it")
                        break
                    config = Config(name, steps, precision, mode, backend)
                    res = _measure(load(bundle, backend=backend, mode=mode, threads=threads, precision=precision,
                                        steps=steps, tableau=name), config, data, reference, x1, seconds)
                    if res is None:  # diverged: more steps may well converge
                        skipped.append(f"{config.label()}: the solve diverged (NaN/Inf)")
                        continue
                    val_acc, acc, wall, cpu = res
                    basis = host_basis(wall, cpu)
                    cpu_s = (basis.cpu_ms if basis.cpu_ms is not None else basis.latency_ms["p50"]) / 1e3
                    t = device_timings(profile, scaling, basis.latency_ms, cpu_s)
                    used_mb = sum(a.size for a in manifest.artifacts if a.format == fmt and a.precision == precision
                                  and a.role in (("fused",) if mode == "fused" else ("encoder", "field", "head"))) / 2**20
                    fit = fit_verdict(profile, floors[backend] + used_mb, bundle_mb,
                                      "static: the runtime floor (measured in a child process) + the files this "
                                      "configuration loads; storage: the whole bundle")
                    results.append(Measured(config, acc, val_acc, basis.latency_ms["p50"], cpu_s * 1e3,
                                            t.latency_ms["p50"] if t.latency_ms else None,
                                            t.energy.with_idle_mj if t.energy else None,
                                            t.energy.dynamic_mj if t.energy else None, fit.fits, fit.message))
                    if best is None:
                        best = val_acc
                        continue
                    gain = val_acc - best if metric == "accuracy" else (best - val_acc) / max(best, 1e-12)
                    best = max(best, val_acc) if metric == "accuracy" else min(best, val_acc)
                    since = 0 if gain > saturation else since + 1
                    if prune and since >= PATIENCE:
                        break
                bar.update()
    finally:
        bar.close()
        if reference is not None:
            reference.close()
    if not results:
        raise ConfigError("no configuration could be measured: " + "; ".join(skipped))
    return Sweep(results, metric, len(data.test.x), data.test.source, profile.name, scaling.label, threads, skipped,
                 time.perf_counter() - start, len(data.val.x), data.val.source)


def _measure(model: Any, config: Config, data: Split, reference: _Reference | None, x1: np.ndarray,
             seconds: float) -> tuple[float, float, list[float], list[float]] | None:
    """(validation figure, test figure, wall ms, CPU ms) of one loaded configuration; None where it diverged."""
    with model:
        try:
            val_acc, acc = (measure_accuracy(model, d, reference.on(d) if reference else None) for d in (data.val, data.test))
        except SolverError:
            return None
        wall, cpu = _time_model(model, x1, seconds)
    return val_acc, acc, wall, cpu
