"""ODE-RNN against GRU-dt and GRU on the smartwatch IMU with 0%, 50% and 80% of the points dropped (issue 18).

    nice -n 10 python benchmarks/series_compare.py --epochs 8 --seeds 0 1 [--work DIR] [--out DIR]

Trains every model (``odernn``, ``gru-dt``, ``gru``: the recipe of ``edgeode train --data watch``, the
baselines' hidden size matched so that the ODE-RNN never has more parameters) at every dropped
fraction and seed, one thread each, one after the other. Each run keeps the weights of its epoch with
the best accuracy on the validation subject (7) and is then measured once on the test subjects (8-10);
nothing is chosen on the test subjects. The dropped points are drawn from the run's seed. Run
directories land in ``--work`` and are reused when a run with the same config is already there (a
stopped sweep resumes).

Then, for the ODE-RNN (the model that streams; the baselines have no streaming bundle):

* flash: ``edgeode export`` of the seed-0 run at the middle dropped fraction, the float32 files' sizes;
* host time per observation of the exported bundle through the runtime (``predict_series`` = ``observe``
  per sample, one thread pinned to the quietest CPU) on the test series at each dropped fraction, and its
  Raspberry Pi 4 estimate through the profiler's own scaling (:func:`edgeode.devices.profiler.host_basis`,
  :func:`~edgeode.devices.profiler.device_timings`);
* multiply-accumulates per observation for all three models (from their shapes and the real gaps).
* int8 for a microcontroller: ``edgeode export --quantize int8`` of that run, its accuracy on the held-out
  series in TensorFlow Lite Micro (the manifest's ``mcu`` section) and the Nano 33 BLE Sense fit by the
  firmware's rule (:func:`int8_nano`).

Writes ``series_compare.json`` / ``.md`` (table) and ``series_compare.png`` (accuracy against the dropped
fraction, one line per model through the seed means, each seed a point) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_DIR, fmt, log, machine_info, machine_markdown, markdown_table, write_results  # noqa: E402

ARCHS = ("odernn", "gru-dt", "gru")
LABELS = {"odernn": "ODE-RNN", "gru-dt": "GRU-dt", "gru": "GRU (resampled)"}
NAME = "series_compare"
#: (backend, fused) timed per observation: onnxruntime with its observe file and with the separate files, LiteRT
LATENCY_PATHS = (("onnxruntime", True), ("onnxruntime", False), ("litert", True))


@dataclass
class RunResult:
    """One trained model: what it is and what it scored (``val``: subject 7, picks the epoch; ``test``: 8-10)."""

    arch: str
    drop: float
    seed: int
    epochs: int
    kept_epoch: int
    val_accuracy: float
    test_accuracy: float
    parameters: int
    hidden: int
    train_time_s: float
    cpu_time_s: float
    run_dir: str


def series_config(arch: str, drop: float, seed: int, epochs: int | None):
    """The SeriesTrainConfig ``edgeode train --model ARCH --data watch --drop DROP --seed SEED`` builds."""
    from edgeode.commands.train import add_parser, build_series_config

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    argv = ["train", "--model", arch, "--data", "watch", "--drop", str(drop), "--seed", str(seed),
            "--threads", "1", "-o", "unused"]
    if epochs is not None:
        argv += ["--epochs", str(epochs)]
    return build_series_config(parser.parse_args(argv))


def _finished(run_dir: Path, config) -> dict | None:
    """metrics.json of a complete run at ``run_dir`` trained with exactly ``config``, else None."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if saved == config.to_dict() else None


def train_all(drops, seeds, epochs, work: Path) -> list[RunResult]:
    """Train (or reuse) every (drop, seed, arch) run; one data set per (drop, seed), shared by the three models."""
    from edgeode.train.series_data import load_series_dataset
    from edgeode.train.series_trainer import train_series

    results = []
    for seed in seeds:  # seed by seed: a stopped sweep has every dropped fraction of its first seeds
        for drop in drops:
            data = None
            for arch in ARCHS:
                config = series_config(arch, drop, seed, epochs)
                run_dir = work / f"{arch}-drop{drop:g}-seed{seed}"
                metrics = _finished(run_dir, config)
                cpu = None
                if metrics is None:
                    data = data or load_series_dataset("watch", drop, False, seed)
                    log(f"train {run_dir.name} ({config.epochs} epochs)")
                    start = time.process_time()
                    metrics = train_series(config, run_dir, progress=False, overwrite=True, data=data).metrics
                    cpu = time.process_time() - start
                    (run_dir / "cpu_time_s.txt").write_text(f"{cpu:.1f}\n")
                else:
                    try:
                        cpu = float((run_dir / "cpu_time_s.txt").read_text())
                    except (OSError, ValueError):
                        cpu = float("nan")
                r = RunResult(arch, drop, seed, config.epochs, metrics["kept_epoch"], metrics["val_accuracy"],
                              metrics["test_accuracy"], metrics["parameters"], metrics["hidden"],
                              metrics["train_time_s"], round(cpu, 1), str(run_dir))
                log(f"  {arch} drop {drop:g} seed {seed}: test {r.test_accuracy:.4f} (val {r.val_accuracy:.4f}, "
                    f"epoch {r.kept_epoch}), {r.parameters} parameters, {r.train_time_s:.0f} s")
                results.append(r)
    return results


def macs_per_series(arch: str, hidden: int, config, series: list) -> dict:
    """Multiply-accumulates of ``arch`` (state ``hidden``) on ``series``, per series and per observation (mean).

    ODE-RNN: ``stages x steps(gap)`` field evaluations across each gap (2 dense layers, H x W and W x H) and one
    GRU cell per observation (3 H (C + H)); GRU-dt: one cell of C + 1 inputs per observation; GRU: one cell per
    point of the regular grid the series is resampled to (what it runs, whatever was dropped). Head: once."""
    from edgeode.runtime.loop import interval_steps
    from edgeode.tableaus import get_tableau
    from edgeode.train.series_models import resample_regular

    cfg = config.model
    c, k = cfg.channels, cfg.num_classes
    head = hidden * k
    total = obs = 0
    for s in series:
        n = len(s)
        obs += n
        if arch == "odernn":
            steps = sum(interval_steps(float(g), cfg.max_step) for g in (s.times[1:] - s.times[:-1]))
            stages = get_tableau(cfg.solver).stages
            total += steps * stages * 2 * hidden * cfg.field_hidden + n * 3 * hidden * (c + hidden) + head
        elif arch == "gru-dt":
            total += n * 3 * hidden * (c + 1 + hidden) + head
        else:
            total += len(resample_regular(s, cfg.max_step)) * 3 * hidden * (c + hidden) + head
    return {"per_series": total / len(series), "per_observation": total / obs}


def export_bundle(run: RunResult, work: Path) -> tuple[Path, dict]:
    """``edgeode export`` of the ODE-RNN run (reused when already there); the float32 files' sizes by role."""
    from edgeode.export.series_export import export_series_run
    from edgeode.runtime.bundle import read_bundle

    bundle = work / f"bundle-{Path(run.run_dir).name}"
    try:
        manifest = read_bundle(bundle).manifest
    except Exception:  # noqa: BLE001 - absent or incomplete: export it
        log(f"export {run.run_dir} -> {bundle}")
        manifest = export_series_run(run.run_dir, bundle, progress=False, overwrite=True)
    sizes: dict[str, dict[str, int]] = {}
    for art in manifest.artifacts:
        sizes.setdefault(art.format, {})[art.role] = art.size
    return bundle, sizes


def time_observations(bundle: Path, drops, seed: int, backend: str, passes: int,
                      limit: int, fused: bool = True) -> tuple[list[dict], dict]:
    """Host time per observation of ``bundle`` on the first ``limit`` test series at each dropped fraction, and
    its Raspberry Pi 4 estimate through the profiler's own basis and scaling.

    One timed value per pass (all series through ``predict_series``, the same calls as ``observe`` per sample),
    one backend thread pinned to the quietest CPU (as ``edgeode profile`` times an estimate). ``fused``: one
    call of the bundle's ``observe`` file per observation where the backend has one; False: the separate
    field (per RK stage and step) and cell files."""
    from edgeode.devices.hostinfo import quietest_cpu
    from edgeode.devices.profiler import device_timings, host_basis
    from edgeode.devices.profiles import load_profile
    from edgeode.devices.scaling import decide_scaling
    from edgeode.runtime import SeriesModel, read_bundle
    from edgeode.train.series_data import load_series_dataset

    profile = load_profile("pi-4b")
    scaling = decide_scaling(profile)
    cpu = quietest_cpu()
    before = os.sched_getaffinity(0) if cpu is not None else None
    out = []
    try:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        with SeriesModel(read_bundle(bundle), backend, threads=1, fused=fused) as model:
            path = "observe" if "observe" in model.describe()["artifacts"] else "field+cell"
            for drop in drops:
                data = load_series_dataset("watch", drop, False, seed)
                series = [(s.times, data.raw(s)) for s in data.test[:limit]]
                n = sum(len(t) for t, _ in series)
                model.predict_series(*series[0])  # warm-up
                wall, cpu_ms = [], []
                for _ in range(passes):
                    w0, c0 = time.perf_counter(), time.process_time()
                    for times, values in series:
                        model.predict_series(times, values)
                    wall.append((time.perf_counter() - w0) * 1e3 / n)
                    cpu_ms.append((time.process_time() - c0) * 1e3 / n)
                basis = host_basis(wall, cpu_ms)
                dev = device_timings(profile, scaling, basis.latency_ms, (basis.cpu_ms or 0.0) / 1e3)
                out.append({"drop": drop, "backend": backend, "path": path, "series": len(series), "observations": n,
                            "passes": passes, "host_ms_per_observation": basis.latency_ms["p50"],
                            "host_cpu_ms_per_observation": basis.cpu_ms,
                            "host_basis": basis.basis, "pi_4b_ms_per_observation": (dev.latency_ms or {}).get("p50"),
                            "pi_4b_energy_mj_per_observation": dev.energy.dynamic_mj if dev.energy else None,
                            "pinned_cpu": cpu})
                log(f"  {backend} {path} drop {drop:g}: host {basis.latency_ms['p50']:.4f} ms/obs, pi-4b "
                    f"{out[-1]['pi_4b_ms_per_observation']} ms/obs")
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
    return out, scaling.to_dict()


def int8_nano(run: RunResult, work: Path) -> dict:
    """``edgeode export --quantize int8`` of the ODE-RNN run (reused when there) and what it takes on the Nano 33
    BLE Sense: the int8 field, cell and head (calibrated on training series, gated in TFLM), their accuracy on the
    held-out series run in TFLM by ``SeriesModel`` (the manifest's ``mcu`` section, float32 beside it), and RAM /
    flash by the firmware's rule (:func:`edgeode.firmware.fit.mcu_fit`, as ``edgeode profile BUNDLE --device
    nano-33-ble-sense`` reports it)."""
    from dataclasses import asdict

    from edgeode.devices.profiles import load_profile
    from edgeode.export.series_export import export_series_run
    from edgeode.firmware.fit import mcu_fit
    from edgeode.runtime.bundle import read_bundle

    bundle = work / f"bundle-{Path(run.run_dir).name}-int8"
    try:
        manifest = read_bundle(bundle).manifest
    except Exception:  # noqa: BLE001 - absent or incomplete: export it
        log(f"export --quantize int8 {run.run_dir} -> {bundle}")
        manifest = export_series_run(run.run_dir, bundle, quantize=("int8",), progress=False, overwrite=True)
    fit = mcu_fit(manifest, load_profile("nano-33-ble-sense"))
    return {"bundle": str(bundle), "accuracy": manifest.mcu.accuracy, "calibration": manifest.mcu.calibration,
            "fit": {**asdict(fit), "fits": fit.ram_fits and fit.flash_fits}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default: edgeode train's watch default)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--drops", type=float, nargs="+", default=[0.5, 0.8, 0.0])
    p.add_argument("--work", type=Path, default=Path("/tmp/edgeode-series-compare"), help="run directories")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--passes", type=int, default=10, help="timed passes over the test series per dropped fraction")
    p.add_argument("--time-series", type=int, default=40, help="test series per timed pass")
    p.add_argument("--train-only", action="store_true", help="train the runs, write nothing else")
    args = p.parse_args(argv)
    info = machine_info()
    args.work.mkdir(parents=True, exist_ok=True)
    runs = train_all(args.drops, args.seeds, args.epochs, args.work)
    if args.train_only:
        return 0
    drops = sorted({r.drop for r in runs})
    from edgeode.train.series_data import load_series_dataset

    macs = {}
    for drop in drops:
        test = load_series_dataset("watch", drop, False, args.seeds[0]).test
        for arch in ARCHS:
            r = next(r for r in runs if r.arch == arch and r.drop == drop)
            macs[f"{arch}@{drop:g}"] = macs_per_series(arch, r.hidden, series_config(arch, drop, r.seed, r.epochs), test)
    middle = drops[len(drops) // 2]
    source = next(r for r in runs if r.arch == "odernn" and r.drop == middle and r.seed == args.seeds[0])
    bundle, sizes = export_bundle(source, args.work)
    latency, scaling = [], None
    for backend, fused in LATENCY_PATHS:
        rows, scaling = time_observations(bundle, drops, args.seeds[0], backend, args.passes, args.time_series, fused)
        latency += rows
    nano = int8_nano(source, args.work)
    payload = {"machine": info, "machine_at_end_loadavg": list(os.getloadavg()), "command": " ".join(sys.argv),
               "runs": [asdict(r) for r in runs], "macs": macs, "bundle": {"run": source.run_dir, "sizes": sizes},
               "latency": latency, "scaling": scaling, "int8_nano": nano}
    write_results(NAME, payload, _markdown(payload), args.out)
    plot(runs, args.out / f"{NAME}.png")
    return 0


def plot(runs: list[RunResult], path: Path) -> Path:
    """Test accuracy against the dropped fraction: one line per model through its seed means, each seed a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    offsets = {"odernn": -0.015, "gru-dt": 0.0, "gru": 0.015}  # side by side, so that equal seeds do not hide
    for arch, marker in zip(ARCHS, "osD", strict=True):
        drops = sorted({r.drop for r in runs if r.arch == arch})
        means = [statistics.mean(r.test_accuracy for r in runs if r.arch == arch and r.drop == d) for d in drops]
        params = next(r.parameters for r in runs if r.arch == arch)
        line, = ax.plot([100 * d for d in drops], means, marker=marker, label=f"{LABELS[arch]} ({params:,} parameters)")
        pts = [(100 * (r.drop + offsets[arch]), r.test_accuracy) for r in runs if r.arch == arch]
        xs, ys = [x for x, _ in pts], [y for _, y in pts]
        ax.scatter(xs, ys, color=line.get_color(), alpha=0.45, s=18, marker=marker)
    seeds = len({r.seed for r in runs})
    ax.set_xlabel("points dropped at random per series (%)")
    ax.set_ylabel("test accuracy, held-out subjects 8-10")
    ax.set_title(f"Smartwatch IMU, 7 exercises: line = mean of {seeds} seeds, dots = seeds", fontsize=10)
    ax.set_ylim(0, 1)
    ax.set_xticks([100 * d for d in sorted({r.drop for r in runs})])
    ax.set_xlim(-5, 85)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _markdown(payload: dict) -> str:
    runs = [RunResult(**r) for r in payload["runs"]]
    drops = sorted({r.drop for r in runs})
    sizes = payload["bundle"]["sizes"]
    flash = sum(sizes.get("tflite", {}).values())
    lat = {(row["backend"], row.get("path", "field+cell"), row["drop"]): row for row in payload["latency"]}
    rows = []
    for arch in ARCHS:
        for drop in drops:
            mine = [r for r in runs if r.arch == arch and r.drop == drop]
            if not mine:
                continue
            accs = [r.test_accuracy for r in mine]
            m = payload["macs"].get(f"{arch}@{drop:g}", {})
            ort = lat.get(("onnxruntime", "observe", drop)) if arch == "odernn" else None
            rows.append([LABELS[arch], f"{drop:.0%}", fmt(statistics.mean(accs), 3), " / ".join(f"{a:.3f}" for a in accs),
                         f"{mine[0].parameters:,}", f"{4 * mine[0].parameters:,}",
                         f"{flash:,}" if arch == "odernn" else "-", f"{m.get('per_observation', 0):,.0f}",
                         f"{m.get('per_series', 0):,.0f}",
                         fmt(ort["host_ms_per_observation"], 3) if ort else "-",
                         fmt(ort["pi_4b_ms_per_observation"], 3) if ort and ort["pi_4b_ms_per_observation"] else "-"])
    epochs = sorted({r.epochs for r in runs})
    cpu = sum(r.cpu_time_s for r in runs if r.cpu_time_s == r.cpu_time_s)
    notes = [
        f"Each run: {', '.join(map(str, epochs))} epochs, the epoch with the best validation (subject 7) accuracy kept; "
        f"test = subjects 8-10. Training CPU time of the sweep: {cpu / 60:.1f} min.",
        f"Weights: float32 bytes of the parameters. Flash: the exported float32 TFLite files (field + cell + head) of "
        f"{Path(payload['bundle']['run']).name}; the baselines have no streaming bundle.",
        "MACs: multiply-accumulates per received observation and per series (test series of seed 0's thinning).",
        "Host / Pi 4: ms per observation of the exported ODE-RNN through the runtime (onnxruntime, its one-call "
        "observe file, one pinned thread); the Pi 4 figure is the profiler's estimate (host basis x the single-thread SGEMM ratio, an upper "
        "bound for a model this small: see `edgeode devices show pi-4b`).",
    ]
    ltable = markdown_table(["backend", "path", "dropped", "host ms/obs", "host CPU ms/obs", "Pi 4 ms/obs (estimate)",
                             "Pi 4 mJ/obs (proxy)"],
                            [[row["backend"], row.get("path", "field+cell"), f"{row['drop']:.0%}", fmt(row["host_ms_per_observation"], 4),
                              fmt(row["host_cpu_ms_per_observation"], 4),
                              fmt(row["pi_4b_ms_per_observation"], 4), fmt(row["pi_4b_energy_mj_per_observation"], 4)]
                             for row in payload["latency"]])
    for drop in (d for d in drops if d > 0):
        mean = {a: statistics.mean(r.test_accuracy for r in runs if r.arch == a and r.drop == drop) for a in ARCHS}
        params = {a: next(r.parameters for r in runs if r.arch == a) for a in ARCHS}
        met = mean["odernn"] >= mean["gru-dt"] and params["odernn"] <= params["gru-dt"]
        notes.insert(0, f"Goal at {drop:.0%} dropped (ODE-RNN >= GRU-dt, no more parameters): "
                        f"{mean['odernn']:.3f} vs {mean['gru-dt']:.3f}, {params['odernn']:,} vs {params['gru-dt']:,} "
                        f"parameters: {'met' if met else 'NOT met'}.")
    n = payload["int8_nano"]
    f, acc = n["fit"], n["accuracy"]
    nano = (f"`edgeode export --quantize int8` of that run: int8 field + cell + head calibrated on "
            f"{n['calibration']['series']} training series; on the {acc['samples']} held-out series run in "
            f"TFLM, accuracy int8 {acc['int8']['loop']:.4f} vs float32 {acc['float32']['loop']:.4f} (torch "
            f"{acc['float32_torch']:.4f}), agreement {acc['agreement_with_float32']['loop']:.4f}. On the "
            f"{f['display_name']}: arenas " + ", ".join(f"{m['role']} {m['arena_measured_bytes']:,} B" for m in f["nets"])
            + f" (measured in TFLM); by the firmware's rule it {f['message']}.")
    notes.append(nano)
    return "\n".join([f"# {NAME}", "", machine_markdown(payload["machine"]), "", f"Command: `{payload['command']}`", "",
                      markdown_table(["model", "dropped", "test acc. (mean)", "per seed", "parameters", "weights B",
                                      "flash B", "MACs/obs", "MACs/series", "host ms/obs", "Pi 4 ms/obs"], rows), "",
                      *[f"- {n}" for n in notes], "", ltable])


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
