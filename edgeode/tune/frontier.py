"""The Pareto frontier of a sweep and the pick of the cheapest configuration that meets a target.

A configuration is on the latency frontier when no other one is at least as accurate *and* at least as
fast with one of the two strictly better (the non-dominated set, Pareto 1896; the usual definition in
multi-objective design-space exploration). The energy frontier is the same with energy per inference.
Costs are the device estimates (host figures where the scaling gives none: emulation).

Both the frontier and the pick rank by the **validation** figure (``Measured.val_accuracy``); the test
figure (``Measured.accuracy``) is what is reported for the configuration chosen, never what chose it
(:mod:`edgeode.tune.heldout`).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeode.errors import ConfigError
from edgeode.tune.sweep import Measured, Sweep

__all__ = ["Target", "mark_frontiers", "pick", "latency_of", "energy_of"]


def latency_of(m: Measured) -> float:
    """The latency a configuration is ranked by: the device estimate, else the host's."""
    return m.latency_ms if m.latency_ms is not None else m.host_latency_ms


def energy_of(m: Measured) -> float:
    """The energy a configuration is ranked by (with the board's idle share); the host CPU time without one."""
    return m.energy_mj if m.energy_mj is not None else m.host_cpu_ms


def _frontier(sweep: Sweep, cost) -> set[int]:
    res = sweep.results
    keep = set()
    for i, a in enumerate(res):
        dominated = False
        for j, b in enumerate(res):
            if i == j:
                continue
            as_good = sweep.better(b.val_accuracy, a.val_accuracy) and cost(b) <= cost(a)
            strictly = b.val_accuracy != a.val_accuracy or cost(b) < cost(a)
            if as_good and strictly:
                dominated = True
                break
        if not dominated:
            keep.add(i)
    return keep


def mark_frontiers(sweep: Sweep) -> Sweep:
    """Set ``frontier`` (accuracy vs latency) and ``frontier_energy`` (accuracy vs energy) on every result."""
    lat, en = _frontier(sweep, latency_of), _frontier(sweep, energy_of)
    for i, m in enumerate(sweep.results):
        m.frontier, m.frontier_energy = i in lat, i in en
    return sweep


@dataclass(frozen=True)
class Target:
    """What the user asks for: a floor on accuracy (a ceiling on error for dynamics) and ceilings on cost."""

    min_accuracy: float | None = None
    max_latency_ms: float | None = None
    max_energy_mj: float | None = None
    require_fit: bool = True

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.min_accuracy, self.max_latency_ms, self.max_energy_mj))


def _fmt_acc(sweep: Sweep, v: float) -> str:
    return f"{100 * v:.2f}%" if sweep.higher_is_better else f"RMSE {v:.4g}"


def pick(sweep: Sweep, target: Target) -> Measured:
    """The configuration that meets ``target``: with an accuracy floor, the cheapest (lowest estimated latency,
    then energy, then fewer field evaluations) among those meeting every bound; with cost ceilings only, the
    most accurate within them (then the cheapest). Accuracy here is the validation figure.

    Raises:
        ConfigError: nothing meets the target; the message gives the best figure that is achievable.
    """
    if not target.given:
        raise ConfigError("give a target to pick by: --min-accuracy A, --max-latency-ms L or --max-energy-mj E")
    res = sweep.results
    pool = [m for m in res if m.fits] if target.require_fit else list(res)
    if not pool:
        raise ConfigError(f"no configuration fits {sweep.device}: {res[0].fit_message}")
    problems = []
    if target.min_accuracy is not None:
        vals = [m.val_accuracy for m in pool]
        best = max(vals) if sweep.higher_is_better else min(vals)
        pool = [m for m in pool if sweep.better(m.val_accuracy, target.min_accuracy)]
        if not pool:
            word = "accuracy" if sweep.higher_is_better else "trajectory error"
            raise ConfigError(f"no configuration reaches {word} {_fmt_acc(sweep, target.min_accuracy)} on the "
                              f"{sweep.val_samples} validation samples; the best achievable is {_fmt_acc(sweep, best)}: "
                              "ask for at most that, or train a better model")
    for name, limit, cost, unit in (("latency", target.max_latency_ms, latency_of, "ms"),
                                    ("energy", target.max_energy_mj, energy_of, "mJ")):
        if limit is None:
            continue
        within = [m for m in pool if cost(m) <= limit]
        if not within:
            low = min(pool, key=cost)
            problems.append(f"no configuration{' that meets the accuracy target' if target.min_accuracy is not None else ''} "
                            f"has an estimated {name} of at most {limit:g} {unit} on {sweep.device}; the lowest is "
                            f"{cost(low):.3g} {unit} ({low.config.label()}, {_fmt_acc(sweep, low.val_accuracy)} "
                            "on validation)")
        pool = within
        if not pool:
            raise ConfigError("; ".join(problems) + ": relax the bound")

    def cheap(m: Measured) -> tuple:
        return (latency_of(m), energy_of(m), m.config.field_evaluations)

    if target.min_accuracy is not None:
        return min(pool, key=cheap)
    sign = -1 if sweep.higher_is_better else 1
    return min(pool, key=lambda m: (sign * m.val_accuracy, *cheap(m)))
