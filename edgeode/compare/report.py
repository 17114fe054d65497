"""The comparison report: ``report.json``, ``report.md`` and PNG plots (matplotlib, Agg backend).

Plots (a user should rather look at these than read the tables):

* ``memory_per_device.png``: every model (both scales) against every device: the share of the
  device's available RAM the model needs; red cells do not fit. With ``--mcu`` a microcontroller's cells
  of the MNIST-scale models come from the int8 files (arenas measured in TFLM, marked "int8"), else from
  the float32 graph's activation estimate.
* ``accuracy_vs_energy.png``: MNIST-scale accuracy against the energy proxy per inference on the
  chosen device.
* ``latency_per_device.png``: estimated p50 latency of the MNIST-scale models on every device.
* ``mcu_boards.png`` (with ``--mcu``): the int8 models on each microcontroller board: RAM and flash
  as a share of the board's (measured arenas and file sizes; over 100% does not fit) and the estimated
  latency with its low-high range.
* ``train_memory.png``: training memory against solver steps from the adjoint benchmark, when
  ``benchmarks/results`` holds its results (otherwise omitted, with a note in the report).

Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from edgeode.fsutil import atomic_write_json, atomic_write_text

__all__ = ["write_report"]


def _save(fig: Any, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_memory(report: dict, path: Path) -> None:
    plt = _plt()
    import numpy as np

    rows = [(f"{r['model']} (MNIST scale)", r) for r in report["mnist_scale"]]
    rows += [(f"{r['model']} (224x224{', est.' if r.get('memory_basis') == 'estimate' else ''})", r)
             for r in report["imagenet_scale"]]
    devices = list(report["devices"])
    ratio = np.array([[r["per_device"][d]["ram_needed_mb"] / max(r["per_device"][d]["ram_available_mb"], 1e-9)
                       for d in devices] for _, r in rows])
    fig, ax = plt.subplots(figsize=(1.0 * len(devices) + 3, 0.5 * len(rows) + 2))
    shown = np.log10(np.clip(ratio, 1e-3, 1e3))
    im = ax.imshow(shown, cmap="RdYlGn_r", vmin=-3, vmax=3, aspect="auto")
    for i, (_, row) in enumerate(rows):
        for j, dev in enumerate(devices):
            r = ratio[i, j]
            text = f"{100 * r:.0f}%" if r < 10 else f"{r:.0f}x"
            cell = row["per_device"][dev]
            if not cell["fits"]:
                text += "\nno fit" if r > 1 else "\nno fit (storage)"
            if cell.get("int8"):
                text += "\nint8"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="black" if 0.05 < r < 20 else "white")
    ax.set_xticks(range(len(devices)), devices, rotation=40, ha="right")
    ax.set_yticks(range(len(rows)), [name for name, _ in rows])
    ax.set_title("Peak memory / device RAM available (over 100% = does not fit; storage checked too)"
                 + ("\nint8: a microcontroller rated by the int8 files' arenas measured in TFLM (--mcu)"
                    if any(c.get("int8") for _, r in rows for c in r["per_device"].values()) else ""))
    fig.colorbar(im, ax=ax, label="log10(needed / available)")
    _save(fig, path)
    plt.close(fig)


def _plot_accuracy_energy(report: dict, path: Path) -> bool:
    plt = _plt()
    pts = [(r["energy_proxy_mj"], r["accuracy"], r["model"]) for r in report["mnist_scale"]
           if r.get("energy_proxy_mj") is not None and r.get("accuracy") is not None]
    if not pts:
        return False
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for e, a, name in pts:
        ax.scatter([e], [100 * a], s=60)
        ax.annotate(f"{name} {100 * a:.1f}%", (e, 100 * a), textcoords="offset points", xytext=(6, 4))
    ax.set_xscale("log")
    # plain numbers on the decades only: log-scale minor labels (2x10^1, 3x10^1, ...) overlapped
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    lo, hi = min(e for e, _, _ in pts), max(e for e, _, _ in pts)
    ax.set_xlim(lo / 2, hi * 2)
    # an honest y axis: up to 100%, from at least 10 points below the worst model, so a 1-point gap
    # looks like one point and not like the whole plot
    worst = min(100 * a for _, a, _ in pts)
    ax.set_ylim(max(0.0, 10 * math.floor((worst - 10) / 10)), 100.5)
    ax.set_xlabel(f"energy proxy per inference on {report['device']} (mJ, estimate)")
    ax.set_ylabel(f"test accuracy on {report['data']['data']} (%)")
    ax.set_title("Accuracy vs energy per inference (upper left is better)")
    ax.grid(alpha=0.3)
    _save(fig, path)
    plt.close(fig)
    return True


def _plot_latency(report: dict, path: Path) -> bool:
    plt = _plt()
    import numpy as np

    rows = report["mnist_scale"]
    devices = [d for d in report["devices"] if all(r["per_device"][d].get("latency_p50_ms") is not None for r in rows)]
    if not rows or not devices:
        return False
    fig, ax = plt.subplots(figsize=(1.0 * len(devices) + 3, 4.2))
    width = 0.8 / len(rows)
    x = np.arange(len(devices))
    for k, r in enumerate(rows):
        ax.bar(x + k * width, [r["per_device"][d]["latency_p50_ms"] for d in devices], width, label=r["model"])
    ax.set_xticks(x + width * (len(rows) - 1) / 2, devices, rotation=40, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency per inference (ms, estimate)")
    ax.set_title("MNIST-scale latency per device (host p50 scaled by SGEMM throughput)")
    ax.legend()
    _save(fig, path)
    plt.close(fig)
    return True


def _plot_mcu(report: dict, path: Path) -> bool:
    rows = report.get("mcu") or []
    if not rows:
        return False
    plt = _plt()
    import numpy as np

    models = list(dict.fromkeys(f"{r['model']} ({r['mode']})" for r in rows))
    boards = list(dict.fromkeys(r["device"] for r in rows))
    cell = {(f"{r['model']} ({r['mode']})", r["device"]): r for r in rows}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    x = np.arange(len(models))
    width = 0.8 / len(boards)
    panels = (("RAM needed / board SRAM (%)", lambda r: 100 * r["ram_needed_bytes"] / r["ram_board_bytes"]),
              ("flash needed / board flash (%)", lambda r: 100 * r["flash_bytes"] / r["flash_board_bytes"]),
              ("latency per inference (ms, ESTIMATE)", lambda r: r["latency_ms"]["typical"]))
    for ax, (label, value) in zip(axes, panels, strict=True):
        for k, board in enumerate(boards):
            got = [cell.get((m, board)) for m in models]
            vals = [value(r) if r else 0.0 for r in got]
            bars = ax.bar(x + k * width, vals, width, label=board)
            for bar, r in zip(bars, got, strict=True):
                if r is not None and not r["fits"]:
                    bar.set_hatch("//")
            if label.startswith("latency"):
                lo = [r["latency_ms"]["typical"] - r["latency_ms"]["low"] if r else 0 for r in got]
                hi = [r["latency_ms"]["high"] - r["latency_ms"]["typical"] if r else 0 for r in got]
                ax.errorbar(x + k * width, vals, yerr=[lo, hi], fmt="none", ecolor="black", capsize=2, lw=0.8)
        if label.startswith(("RAM", "flash")):
            ax.axhline(100, color="red", lw=1, ls="--")
        else:
            ax.set_yscale("log")
        ax.set_xticks(x + width * (len(boards) - 1) / 2, models, rotation=30, ha="right")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8)
    fig.suptitle("int8 models on microcontrollers (hatched: does not fit; memory measured in TFLM, latency estimated)")
    _save(fig, path)
    plt.close(fig)
    return True


def _mcu_markdown(report: dict) -> list[str]:
    rows = report.get("mcu") or []
    if not rows:
        return []
    lines = ["## Microcontrollers: full-int8 models in TensorFlow Lite Micro", "",
             "Flash = the int8 files + the board's runtime code; RAM = the arenas measured in TFLM at export (+10% "
             "margin) + RK state + buffers + the board's runtime share, against the SRAM static arrays can use (the "
             "fit `edgeode pack` applies). Accuracy: int8 (float32) measured in the TFLM interpreter on the test "
             "split. Latency and energy are **estimates**: int8 MACs x the board's cycles per MAC, typical (low-high).",
             "", "| model | mode | board | flash KiB | RAM KiB | of board KiB | fits | accuracy int8 (float32) | MACs "
             "| latency ms (est.) | energy mJ (est.) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lat, en = r["latency_ms"], r["energy_mj"]
        acc = (f"{_f(100 * r['accuracy_int8'], 1)}% ({_f(100 * r['accuracy_float32'], 1)}%)"
               if r["accuracy_int8"] is not None and r["accuracy_float32"] is not None else "n/a")
        lines.append(f"| {r['model']} | {r['mode']} | {r['device']} | {_f(r['flash_bytes'] / 1024, 1)} "
                     f"| {_f(r['ram_needed_bytes'] / 1024, 1)} | {_f(r['ram_board_bytes'] / 1024, 0)} "
                     f"| {'yes' if r['fits'] else 'NO'} | {acc} | {_f(r['macs_per_inference'])} "
                     f"| {lat['typical']:.3g} ({lat['low']:.3g}-{lat['high']:.3g}) "
                     f"| {en['typical']:.3g} ({en['low']:.3g}-{en['high']:.3g}) |")
    ode = [r for r in rows if r["model"] == "odenet" and r["mode"] == "loop"]
    res = [r for r in rows if r["model"] == "resnet"]
    if ode and res:
        ratio = ode[0]["model_flash_bytes"] / res[0]["model_flash_bytes"]
        lines += ["", f"ODE-Net (loop) model flash / ResNet model flash: {ratio:.2f}."]
    return lines + [""]


def _train_memory_series(data: Any) -> dict[str, list[tuple[float, float]]]:
    """(depth, peak memory MB) series per method from the training-memory benchmark JSON.

    Records are dicts with a depth (``steps`` for ODE solvers, ``blocks`` or ``depth`` for ResNets)
    and a memory figure (``peak_mb`` preferred, else any ``*_mb`` / ``*rss*`` / ``*mem*`` number).
    """
    records: list[dict] = []

    def collect(obj: Any) -> None:
        if isinstance(obj, dict):
            if any(k in obj for k in _DEPTH_KEYS):
                records.append(obj)
            for v in obj.values():
                collect(v)
        elif isinstance(obj, list):
            for v in obj:
                collect(v)

    collect(data)
    series: dict[str, list[tuple[float, float]]] = {}
    for rec in records:
        x = next((rec[k] for k in _DEPTH_KEYS if isinstance(rec.get(k), (int, float))), None)
        mem_keys = [k for k in rec if isinstance(rec[k], (int, float)) and not isinstance(rec[k], bool)
                    and (k.endswith("_mb") or "rss" in k or "mem" in k) and not k.startswith("before")]
        if x is None or not mem_keys:
            continue
        key = next((k for k in mem_keys if "peak" in k), mem_keys[0])
        name = str(rec.get("method") or rec.get("name") or rec.get("mode") or "run")
        depth = next(k for k in _DEPTH_KEYS if isinstance(rec.get(k), (int, float)))
        series.setdefault(f"{name} (x = {depth})", []).append((float(x), float(rec[key])))
    return {k: sorted(v) for k, v in series.items()}


_DEPTH_KEYS = ("steps", "blocks", "depth")


def _plot_train_memory(report: dict, path: Path) -> bool:
    tm = report.get("train_memory") or {}
    if not tm.get("data"):
        return False
    series = _train_memory_series(tm["data"])
    if not series:
        tm["note"] = f"{tm.get('source')}: no (steps, memory) records recognised; plot omitted"
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, pts in series.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("depth: solver steps (ODE-Net) or residual blocks (ResNet)")
    ax.set_ylabel("peak training memory (MB)")
    # not measured by this compare run: say so where the plot is read
    ax.set_title("Training memory vs depth\n(stored results of benchmarks/train_memory.py, "
                 + Path(str(tm.get("source"))).name + "; not this run)", fontsize=10)
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)
    plt.close(fig)
    return True


def _f(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{digits}f}"


def _markdown(report: dict, plots: dict[str, str]) -> str:
    dev = report["device"]
    lines = [f"# edgeode compare: ODE-Net vs RK-Net vs ResNet vs VGG on {report['device_display_name']} ({dev})", ""]
    lines += ["Figures for a device are **estimates** (host measurements scaled by the ratio of single-thread SGEMM "
              f"throughput; host {report['host']['cpu']}, {report['host']['sgemm_gflops_1t']:.1f} GFLOP/s) unless the "
              "device profile was calibrated on this machine. Energy is a **proxy** (CPU time x the device's power "
              "model), not a measurement.", ""]
    ans = report.get("answers", {}).get("vgg16_on_pi_zero_2w")
    if ans:
        lines += ["## Does VGG-16 fit a Raspberry Pi Zero 2 W?", "",
                  f"**{'Yes' if ans['fits'] else 'No'}.** VGG-16 (224x224, onnxruntime) {ans['message']}.", ""]
    for key, title in (("memory_per_device", "Memory per model per device"),
                       ("accuracy_vs_energy", "Accuracy vs energy per inference"),
                       ("latency_per_device", "Latency per device"), ("mcu_boards", "int8 models on microcontrollers"),
                       ("train_memory", "Training memory vs steps")):
        if key in plots:
            lines += [f"![{title}]({plots[key]})", ""]
            if key == "train_memory":
                lines += [f"Training memory is not measured by this run: the plot is drawn from the stored results "
                          f"in `{(report.get('train_memory') or {}).get('source')}` (`python3 benchmarks/train_memory.py` "
                          "measures them again).", ""]
    d = report["data"]
    lines += [f"## MNIST scale: trained on {d['data']} ({d['train_examples']} train / {d['test_examples']} test, "
              f"input {d['input_shape']})", "",
              f"Profiled on {dev} ({report['mnist_scale'][0]['figures'] if report['mnist_scale'] else ''}).", "",
              "| model | accuracy | parameters | bundle MB | peak memory MB | model adds MB | MACs | field evals "
              "| p50 latency ms | p95 ms | energy proxy mJ | fits |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["mnist_scale"]:
        lat = r.get("latency_ms") or {}
        lines.append(
            f"| {r['model']} | {_f(100 * r['accuracy'] if r['accuracy'] is not None else None, 1)}% | {_f(r['parameters'])} "
            f"| {_f(r['bundle_size_mb'], 3)} | {_f(r['peak_rss_mb'], 1)} | {_f(r['model_added_mb'], 1)} "
            f"| {_f(r['macs_per_inference'])} | {_f(r['field_evaluations'])} | {_f(lat.get('p50'), 3)} "
            f"| {_f(lat.get('p95'), 3)} | {_f(r['energy_proxy_mj'], 4)} | {'yes' if r['fits']['fits'] else 'NO'} |")
    lines += ["", "Host (measured) p50 latency ms: "
              + ", ".join(f"{r['model']} {_f(r['host_latency_ms']['p50'], 3)}" for r in report["mnist_scale"]), ""]
    if report["imagenet_scale"]:
        devices = list(report["devices"])
        lines += ["## ImageNet scale (224x224): random weights, footprint only", "",
                  "ODE counterparts keep each stage's first (resolution-changing) block and replace the stage's "
                  "other residual blocks by one ODE block whose field is one residual branch "
                  f"({report['imagenet_scale'][1].get('solver') if len(report['imagenet_scale']) > 1 else ''}).", "",
                  "| model | parameters | weights MB | ONNX MB | MACs | peak memory MB | basis |",
                  "|---|---|---|---|---|---|---|"]
        for r in report["imagenet_scale"]:
            mem = r["peak_rss_mb"] if r["peak_rss_mb"] is not None else r["peak_rss_mb_estimate"]
            lines.append(f"| {r['model']} | {_f(r['parameters'])} | {_f(r['weights_mb'], 1)} | {_f(r['onnx_size_mb'], 1)} "
                         f"| {_f(r['macs_per_inference'])} | {_f(mem, 0)} | {r['memory_basis']} |")
        lines += ["", "Fits (RAM available after the OS, and storage):", "",
                  "| model | " + " | ".join(devices) + " |", "|---|" + "---|" * len(devices)]
        for r in report["mnist_scale"] + report["imagenet_scale"]:
            scale = "" if "family" in r else " (MNIST)"
            lines.append(f"| {r['model']}{scale} | "
                         + " | ".join("yes" if r["per_device"][dv]["fits"] else "no" for dv in devices) + " |")
        lines.append("")
    lines += _mcu_markdown(report)
    tm = report.get("train_memory", {})
    if "train_memory" not in plots:
        lines += ["## Training memory", "", tm.get("note") or "No training-memory data recognised.", ""]
    lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]]
    lines += ["", f"Run time {report['elapsed_s']:.0f} s. Configuration: `{json.dumps(report['config'])}`", ""]
    return "\n".join(lines)


def write_report(report: dict, out: Path) -> dict[str, str]:
    """Write plots, report.json and report.md into ``out``; return ``{kind: file name}``."""
    out = Path(out)
    plots: dict[str, str] = {}
    _plot_memory(report, out / "memory_per_device.png")
    plots["memory_per_device"] = "memory_per_device.png"
    if _plot_accuracy_energy(report, out / "accuracy_vs_energy.png"):
        plots["accuracy_vs_energy"] = "accuracy_vs_energy.png"
    if _plot_latency(report, out / "latency_per_device.png"):
        plots["latency_per_device"] = "latency_per_device.png"
    if _plot_mcu(report, out / "mcu_boards.png"):
        plots["mcu_boards"] = "mcu_boards.png"
    if _plot_train_memory(report, out / "train_memory.png"):
        plots["train_memory"] = "train_memory.png"
    files = {**plots, "json": "report.json", "markdown": "report.md"}
    report["files"] = files
    atomic_write_json(out / "report.json", report, default=str)
    atomic_write_text(out / "report.md", _markdown(report, plots))
    return files
