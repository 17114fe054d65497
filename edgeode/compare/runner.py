"""``edgeode compare``: ODE-Net vs RK-Net vs ResNet vs VGG on a device profile, at two scales.

1. **MNIST scale** (the paper's experiment, Chen et al. 2018 §7.1 / Table 1): the four models are
   trained on the same data (scikit-learn digits by default, MNIST from a path), exported to ONNX
   bundles, and profiled with :func:`edgeode.devices.profiler.profile_bundle` for the device:
   accuracy, parameters, bundle size, peak memory, latency, energy proxy. The host measurements
   are then turned into figures for every shipped device (verdict, latency and energy estimates).
2. **ImageNet scale** (224x224): ResNet-18, ResNet-50, VGG-16 and their ODE counterparts
   (:mod:`edgeode.compare.imagenet`), random weights, footprint only: parameters, ONNX size, MACs,
   peak memory (measured in a child process running the exported ONNX file with onnxruntime, or
   estimated with ``--quick``), and a fits verdict per device.
3. **Microcontrollers** (``mcu=True``, ``--mcu``): the ODE-Net, ResNet and VGG runs exported as
   full-int8 bundles measured in TFLM, on the Nano 33 BLE Sense and the ESP32-S3
   (:mod:`edgeode.compare.mcu`): flash, RAM, fit, accuracy in TFLM, estimated latency and energy.

Writes ``report.md``, ``report.json`` and PNG plots (:mod:`edgeode.compare.report`).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeode.compare.mcu import MCU_ARCHS, MCU_NOTE, export_int8, int8_device_figures, mcu_rows
from edgeode.devices.hostinfo import cpu_count, cpu_model, host_reference
from edgeode.devices.profiler import device_timings, fit_verdict, profile_bundle, ram_need
from edgeode.devices.profiles import DeviceProfile, list_profiles, load_profile
from edgeode.devices.scaling import decide_scaling
from edgeode.errors import ConfigError
from edgeode.fsutil import commit_dir, discard_dir, make_staging_dir

__all__ = ["CompareConfig", "run_compare", "device_figures", "MNIST_ARCHS"]

MNIST_ARCHS = ("odenet", "rknet", "resnet", "vgg")


@dataclass
class CompareConfig:
    """What ``edgeode compare`` runs. ``quick`` is a tiny configuration (tests, smoke runs)."""

    device: str = "pi-zero-2w"
    out_dir: str = "compare-report"
    data: str = "digits"
    data_path: str | None = None
    epochs: int | None = None
    quick: bool = False
    width: int | None = None
    steps: int | None = None
    runs: int | None = None
    imagenet: bool = True
    imagenet_measure: bool | None = None
    mcu: bool = False
    seed: int = 0
    progress: bool = True

    def resolved(self) -> CompareConfig:
        q = self.quick
        c = CompareConfig(**asdict(self))
        c.epochs = self.epochs if self.epochs is not None else (1 if q else 8)
        c.width = self.width if self.width is not None else (8 if q else 16)
        c.steps = self.steps if self.steps is not None else (2 if q else 4)
        c.runs = self.runs if self.runs is not None else (5 if q else 30)
        c.imagenet_measure = self.imagenet_measure if self.imagenet_measure is not None else not q
        for name in ("epochs", "width", "steps", "runs"):
            v = getattr(c, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if c.data not in ("digits", "mnist"):
            raise ConfigError(f"compare trains image classifiers: --data must be digits or mnist, got {c.data!r}")
        return c


def _model_config(cfg: CompareConfig, arch: str, image_size: int):
    from edgeode.train.models import ModelConfig

    small = image_size <= 8
    return ModelConfig(
        arch=arch, in_channels=1, image_size=image_size, num_classes=10, width=cfg.width,
        downsample=1 if small else 2, res_blocks=2 if cfg.quick else 4,
        vgg_widths=((cfg.width, 2 * cfg.width) if small else (cfg.width, 2 * cfg.width, 4 * cfg.width)),
        solver="rk4", steps=cfg.steps, adjoint=(arch == "odenet"))


def _bar(enabled: bool, total: int, desc: str):
    """Live bar on a terminal, one line per stage in a log (edgeode.progress)."""
    from edgeode.progress import Stages

    return Stages(desc, total, enabled=enabled, unit="stage")


def device_figures(prof: dict[str, Any], profiles: list[DeviceProfile]) -> dict[str, Any]:
    """Per device: the fits verdict and the time figures, from one host profile (``profile_bundle``).

    Each device's figures come from :func:`edgeode.devices.scaling.decide_scaling` and
    :func:`edgeode.devices.profiler.device_timings`, exactly as ``edgeode profile --device`` gives
    them: measured on a device calibrated on this host, refused under emulation, else estimates.
    """
    out = {}
    for p in profiles:
        need, basis = ram_need(p, prof["peak_rss_mb"], prof["runtime_floor_mb"],
                               (prof.get("macs") or {}).get("peak_activation_mb"))
        v = fit_verdict(p, need, prof["bundle_size_mb"], basis)
        row: dict[str, Any] = {"fits": v.fits, "message": v.message, "ram_needed_mb": need,
                               "ram_available_mb": v.ram_available_mb}
        basis = prof.get("host_basis")
        if basis is not None:
            scaling = decide_scaling(p)
            t = device_timings(p, scaling, basis["latency_ms"], basis["cpu_ms"] / 1e3)
            row.update({"figures": scaling.label, "estimate": not scaling.on_device, "scale_factor": scaling.factor,
                        "latency_p50_ms": t.latency_ms["p50"] if t.latency_ms else None,
                        "energy_proxy_mj": t.energy.dynamic_mj if t.energy else None})
        out[p.name] = row
    return out


def _mnist_scale(cfg: CompareConfig, out: Path, profile: DeviceProfile,
                 profiles: list[DeviceProfile]) -> tuple[list[dict], dict, list[dict]]:
    from edgeode.export import export_run
    from edgeode.train.checkpoint import TrainConfig
    from edgeode.train.data import load_dataset
    from edgeode.train.trainer import train

    data = load_dataset(cfg.data, cfg.data_path, cfg.seed)  # once, for every model's train and export
    image_size = int(data.input_shape[-1])
    rows = []
    int8_bundles: dict[str, Path] = {}
    bar = _bar(cfg.progress, 3 * len(MNIST_ARCHS) + (len(MCU_ARCHS) if cfg.mcu else 0), "compare")
    for arch in MNIST_ARCHS:
        bar.set_description(f"{arch}: train {cfg.epochs} epoch(s)")
        run_dir, bundle_dir = out / "runs" / arch, out / "bundles" / arch
        mc = _model_config(cfg, arch, image_size)
        tc = TrainConfig(model=mc, data=cfg.data, data_path=cfg.data_path, epochs=cfg.epochs, batch_size=64,
                         lr=1e-2, seed=cfg.seed)
        t0 = time.perf_counter()
        result = train(tc, run_dir, progress=False, overwrite=True, data=data)
        train_s = time.perf_counter() - t0
        bar.update(1)
        bar.set_description(f"{arch}: export to ONNX")
        export_run(run_dir, bundle_dir, formats=("onnx",), progress=False, overwrite=True, data=data)
        bar.update(1)
        bar.set_description(f"{arch}: profile for {profile.name}")
        prof = profile_bundle(bundle_dir, profile, runs=cfg.runs, warmup=2, progress=False).to_dict()
        if cfg.mcu and arch in MCU_ARCHS:
            bar.set_description(f"{arch}: int8 export, measured in TFLM")
            int8_bundles[arch] = export_int8(run_dir, out / "bundles" / f"{arch}-int8", data)
            bar.update(1)
        metrics = result.metrics
        params = metrics.get("parameters")
        if params is None:
            from edgeode.train.models import count_parameters

            params = count_parameters(result.model)
        rows.append({
            "model": arch,
            "accuracy": metrics.get("test_accuracy"),
            "parameters": params,
            "train_time_s": train_s,
            "epochs": cfg.epochs,
            "solver": f"rk4 x {cfg.steps} steps" if arch in ("odenet", "rknet") else None,
            "training": "adjoint" if arch == "odenet" else "backprop",
            "bundle_size_mb": prof["bundle_size_mb"],
            "peak_rss_mb": prof["peak_rss_mb"],
            "model_added_mb": prof.get("model_added_mb"),
            "runtime_floor_mb": prof["runtime_floor_mb"],
            "latency_ms": prof["latency_ms"],
            "host_latency_ms": prof["host_latency_ms"],
            "cpu_ms_per_inference": prof.get("cpu_ms_per_inference"),
            "host_cpu_ms_per_inference": prof.get("host_cpu_ms_per_inference"),
            "energy_proxy_mj": prof.get("energy_proxy_mj"),
            "macs_per_inference": prof.get("macs_per_inference"),
            "field_evaluations": prof.get("field_evaluations"),
            "fits": prof["fits"],
            "figures": prof["figures"],
            "per_device": device_figures(prof, profiles),
        })
        bar.update(1)
    bar.close()
    info = {"data": cfg.data, "train_examples": int(len(data.y_train)), "test_examples": int(len(data.y_test)),
            "input_shape": list(data.input_shape)}
    _rate_mcus_by_int8(rows, int8_bundles, profiles)
    return rows, info, mcu_rows(int8_bundles) if int8_bundles else []


def _rate_mcus_by_int8(rows: list[dict[str, Any]], int8_bundles: dict[str, Path], profiles: list[DeviceProfile]) -> None:
    """Replace each row's microcontroller verdicts by the fit of its int8 bundle (``--mcu``): the files a board
    runs, with their arenas measured in TFLM, instead of the float32 ONNX graph's activation estimate. RK-Net
    has the ODE-Net's architecture (the same int8 files), so it takes the ODE-Net's figures."""
    for row in rows:
        bundle = int8_bundles.get("odenet" if row["model"] == "rknet" else row["model"])
        if bundle is not None:
            for name, fig in int8_device_figures(bundle, profiles).items():
                row["per_device"][name].update(fig)


def _imagenet_scale(cfg: CompareConfig, profiles: list[DeviceProfile], floor_mb: float) -> list[dict]:
    import torch

    from edgeode.compare.imagenet import IMAGENET_MODELS, ODE_SCHEME, build_imagenet, count_macs_torch
    from edgeode.devices.measure import ChildFailed, ChildTimeout, run_child

    rows = []
    bar = _bar(cfg.progress, len(IMAGENET_MODELS), "compare: ImageNet footprints")
    for spec in IMAGENET_MODELS:
        if bar is not None:
            bar.set_postfix_str(spec.name)
        model = build_imagenet(spec.name)
        fp = count_macs_torch(model)
        row: dict[str, Any] = {
            "model": spec.name, "family": spec.family, "ode": spec.ode,
            "solver": f"{ODE_SCHEME[0]} x {ODE_SCHEME[1]} steps per ODE block" if spec.ode else None,
            "weights": "random (footprint only, not trained)",
            "parameters": fp.parameters, "weights_mb": fp.weights_mb, "macs_per_inference": fp.macs,
            "largest_activation_mb": fp.largest_activation_mb,
        }
        # estimate: runtime floor + weights + onnxruntime's pre-packed copies of conv/gemm weights (~1x)
        # + a few live activations of the largest size
        row["peak_rss_mb_estimate"] = floor_mb + 2 * fp.weights_mb + 4 * fp.largest_activation_mb
        row["onnx_size_mb"] = None
        row["peak_rss_mb"] = None
        if cfg.imagenet_measure:
            with tempfile.TemporaryDirectory(prefix="edgeode-imagenet-") as tmp:
                path = Path(tmp) / f"{spec.name}.onnx"
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False,
                                      input_names=["x"], output_names=["scores"], opset_version=17)
                row["onnx_size_mb"] = path.stat().st_size / 2**20
                del model
                try:
                    run = run_child(["onnx", "--model", str(path), "--shape", "1,3,224,224", "--runs", "1",
                                     "--warmup", "0", "--threads", str(cpu_count())], timeout=600)
                    row["peak_rss_mb"] = run.peak_rss_mb
                    row["host_latency_ms"] = run.result["latencies_ms"][0]
                except (ChildFailed, ChildTimeout) as exc:
                    row["measure_error"] = str(exc)
        need = row["peak_rss_mb"] if row["peak_rss_mb"] is not None else row["peak_rss_mb_estimate"]
        row["memory_basis"] = "measured (onnxruntime, host)" if row["peak_rss_mb"] is not None else "estimate"
        storage = row["onnx_size_mb"] if row["onnx_size_mb"] is not None else fp.weights_mb
        row["per_device"] = {}
        for p in profiles:
            dev_need, basis = ram_need(p, need, floor_mb, 2 * fp.largest_activation_mb)
            v = fit_verdict(p, dev_need, storage, f"{row['memory_basis']}: {basis}")
            row["per_device"][p.name] = {"fits": v.fits, "message": v.message, "ram_needed_mb": dev_need,
                                         "ram_available_mb": v.ram_available_mb}
        rows.append(row)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return rows


def _train_memory() -> dict[str, Any]:
    """Training memory vs depth/steps from the benchmarks, if they have been run."""
    root = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    for name in ("train_memory.json", "training.json"):
        path = root / name
        if path.is_file():
            try:
                return {"source": str(path), "data": json.loads(path.read_text())}
            except (OSError, json.JSONDecodeError):
                continue
    return {"source": None, "data": None,
            "note": "benchmarks/results/train_memory.json (or training.json) not found: run `python3 benchmarks/training.py` "
                    "to measure training memory vs solver steps; the plot is omitted"}


def _check_report_dir(out: Path) -> None:
    """Refuse an output path that is a file, or a non-empty directory that is not an earlier report.

    The report is built beside ``out`` and renamed into place, replacing an earlier report there;
    a directory holding anything else (``-o .`` by mistake) is never replaced.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out} is a file; give a directory path for the report")
    if out.is_dir() and any(out.iterdir()) and not (out / "report.json").is_file():
        raise ConfigError(f"-o {out} exists, is not empty and holds no earlier compare report (report.json); "
                          "choose a new directory")


def run_compare(config: CompareConfig) -> dict[str, Any]:
    """Run the comparison and write the report; returns the report's JSON data.

    Everything (runs, bundles, report, plots) is built in a temporary directory beside ``out_dir``
    and renamed into place when complete, so a failed or interrupted run leaves nothing behind.
    """
    cfg = config.resolved()
    profile = load_profile(cfg.device)
    profiles = list_profiles()
    out = Path(cfg.out_dir).expanduser()
    _check_report_dir(out)
    try:
        stage = make_staging_dir(out)
    except OSError as exc:
        raise ConfigError(f"-o {out}: cannot create the report directory in {out.absolute().parent} "
                          f"({exc.strerror or exc}); choose a writable location") from None
    try:
        report = _build_report(cfg, stage, profile, profiles)
        commit_dir(stage, out)
    except BaseException:
        discard_dir(stage)
        raise
    return report


def _build_report(cfg: CompareConfig, out: Path, profile: DeviceProfile,
                  profiles: list[DeviceProfile]) -> dict[str, Any]:
    t0 = time.perf_counter()
    mnist, data_info, mcu = _mnist_scale(cfg, out, profile, profiles)
    # the runtime floor each profile measured (python + numpy + onnxruntime with a trivial session)
    floor = min(r["runtime_floor_mb"] for r in mnist)
    imagenet = _imagenet_scale(cfg, profiles, floor) if cfg.imagenet else []
    report: dict[str, Any] = {
        "device": profile.name,
        "device_display_name": profile.display_name,
        "config": asdict(cfg),
        "host": {"cpu": cpu_model(), "cores": cpu_count(), "sgemm_gflops_1t": host_reference().gflops},
        "data": data_info,
        "runtime_floor_mb": floor,
        "mnist_scale": mnist,
        "imagenet_scale": imagenet,
        "mcu": mcu,
        "devices": {p.name: {"display_name": p.display_name, "ram_mb": p.ram_mb,
                             "available_ram_mb": p.available_ram_mb, "storage_mb": p.storage_mb,
                             "gflops_1t": p.cpu.gflops_1t} for p in profiles},
        "train_memory": _train_memory(),
        "elapsed_s": None,
        "notes": [
            "Latency, CPU time and energy for a device are ESTIMATES unless the device profile was calibrated on this "
            "machine: host measurements scaled by host/device single-thread SGEMM throughput (edgeode.devices.scaling).",
            "Energy is a proxy: CPU-seconds x (load_w - idle_w) / cores of the device's power model (edgeode.devices.power).",
            "Peak memory is the whole process (python + numpy + onnxruntime + model) measured on the host.",
            "ImageNet-scale models have random weights: footprint only, no accuracy.",
        ] + ([MCU_NOTE] if mcu else []),
    }
    vgg = next((r for r in imagenet if r["model"] == "vgg16"), None)
    if vgg is not None:
        report["answers"] = {"vgg16_on_pi_zero_2w": vgg["per_device"]["pi-zero-2w"]}
    report["elapsed_s"] = time.perf_counter() - t0
    from edgeode.compare.report import write_report

    report["files"] = write_report(report, out)
    return report
