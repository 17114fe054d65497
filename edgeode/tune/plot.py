"""The frontier plot of a sweep: accuracy against estimated latency and against energy (matplotlib, Agg)."""

from __future__ import annotations

import os
from pathlib import Path

from edgeode.errors import ConfigError
from edgeode.tune.frontier import energy_of, latency_of
from edgeode.tune.sweep import Sweep

__all__ = ["plot_frontier"]


def plot_frontier(sweep: Sweep, path: str | Path) -> Path:
    """Write a PNG with two panels (accuracy vs latency, vs energy): every configuration as a dot, the frontier
    joined by a line and labelled; the figure plotted is the validation one the frontier is chosen by. Written
    under a temporary name and renamed (never half-written)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'edgeode[train]' (or pip install matplotlib)") from None
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--plot {path}: the plot is a PNG; name the file *.png")
    scale = 100.0 if sweep.higher_is_better else 1.0
    ylabel = "validation accuracy (%)" if sweep.higher_is_better else "validation trajectory RMSE (lower is better)"
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, cost, flag, xlabel in ((axes[0], latency_of, "frontier", "estimated latency (ms)"),
                                   (axes[1], energy_of, "frontier_energy", "estimated energy per inference (mJ)")):
        ax.scatter([cost(m) for m in sweep.results], [scale * m.val_accuracy for m in sweep.results], s=14, color="0.7",
                   label="measured configurations")
        front = sorted((m for m in sweep.results if getattr(m, flag)), key=cost)
        ax.plot([cost(m) for m in front], [scale * m.val_accuracy for m in front], "o-", color="tab:blue", label="frontier")
        for m in front:
            ax.annotate(f"{m.config.tableau}x{m.config.steps} {m.config.precision}", (cost(m), scale * m.val_accuracy),
                        fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right" if sweep.higher_is_better else "upper right")
    fig.suptitle(f"edgeode tune on {sweep.device} ({sweep.figures}); {sweep.val_samples} validation samples", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
