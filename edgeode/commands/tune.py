"""``edgeode tune``: sweep solver x steps x precision of a bundle for a device; frontier, pick, apply."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from edgeode.commands.options import add_device, add_json, add_out, add_overwrite, add_quiet

HELP = """\
An ODE-Net's compute is a knob set at test time: fewer or cheaper solver steps trade accuracy for
speed without retraining. tune sweeps every tableau (euler, midpoint, heun, rk4, rk4_38) x steps
(1 up to --max-steps, stopping for a tableau once accuracy has saturated) x precision the bundle has
(float32, float16, int8-dynamic, int8-weight), and measures each through the torch-free runtime as
the tuned bundle will run it (the fused graph where it computes that solve, else the solver loop):
accuracy on held-out data (dynamics: RMS trajectory error against an RK4 x 256 reference solve of
the same field), host latency, and the device's estimated latency, energy per inference and fit
(the same estimate as `edgeode profile`: host figures scaled, see `edgeode devices show NAME`).

Selection without bias: the held-out data are halved (a fixed seeded permutation: the same data give
the same halves). Pruning, the frontier and the pick use the validation half; each configuration's
reported accuracy is its figure on the test half, which took no part in choosing it. --val-data
gives a separate validation set instead (the whole --data is then the test set).

It prints the Pareto frontier (validation accuracy against estimated latency, and against energy). A
target picks the cheapest configuration that meets it on validation: --min-accuracy A (0.97 or 97
for 97%; dynamics: --max-error E), or the most accurate one within --max-latency-ms L /
--max-energy-mj E.
--apply -o BUNDLE writes a copy of the bundle that runs that configuration by default
(`edgeode run`, `edgeode.runtime.load`), its manifest recording the configuration and the accuracy
measured for it (test) and the validation figure it was picked by. The fused ONNX graph takes the
steps as an input; the float fused TFLite file is a WHILE loop whose steps were fixed at export (the
int8 one an unrolled solve), and neither is re-exported: where a fused file cannot run the tuned
tableau and steps, the tuned bundle runs the solver loop (the manifest says mode: loop).

RUN_DIR (from `edgeode train`) is exported first, to a temporary bundle (--formats, --quantize as in
`edgeode export`), and measured on its data set's test split, which training held out (halved into
validation and test as above). A BUNDLE needs --data: an .npz file with arrays x (preprocessed
float32 inputs) and y (labels), or a data set name with the --seed it was split with.
"""

EXAMPLES = """\
examples:
  edgeode tune runs/digits-odenet --device pi-4b
  edgeode tune runs/digits-odenet --device pi-4b --json > tune.json
  edgeode tune runs/digits-odenet --device pi-4b --min-accuracy 0.97 --apply -o bundles/digits-pi4b
  edgeode tune bundles/digits-odenet --device pi-zero-2w --data heldout.npz --max-latency-ms 20 --plot tune.png
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from edgeode.commands.export import QUANTIZATIONS, _csv
    from edgeode.tableaus import tableau_names

    p = subparsers.add_parser("tune", help="choose solver, steps and precision for a device (frontier, pick, apply)",
                              description=HELP, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="RUN_DIR|BUNDLE", help="a run directory (exported first) or a bundle")
    add_device(p, required=True)
    p.add_argument("--data", default=None, metavar="FILE.npz|NAME",
                   help="held-out data: an .npz with x (and y), or a data set name (default for RUN_DIR: its test split)")
    p.add_argument("--data-path", default=None, metavar="DIR", help="MNIST IDX directory for --data mnist")
    p.add_argument("--seed", type=int, default=0, help="split seed for --data NAME (default 0)")
    p.add_argument("--val-data", default=None, metavar="FILE.npz|NAME",
                   help="a separate validation set to pick on (the whole --data is then the test set); default: "
                        "the held-out data are halved into validation and test")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="use the first N held-out samples (before halving; with --val-data, the first N of each)")
    p.add_argument("--solvers", type=_csv(tuple(tableau_names()), "solver"), default=None, metavar=",".join(tableau_names()),
                   help="tableaus to sweep (default: all)")
    p.add_argument("--max-steps", type=int, default=16, metavar="N", help="most steps per solver (default 16)")
    p.add_argument("--no-prune", action="store_true",
                   help="measure every step count up to --max-steps (the whole accuracy-vs-evaluations curve), not "
                        "stopping a solver once its validation accuracy has saturated")
    p.add_argument("--precisions", type=_csv(("float32", "float16", "int8-dynamic", "int8-weight"), "precision"),
                   default=None, metavar="float32,...", help="precisions to sweep (default: every one the bundle has)")
    p.add_argument("--formats", type=_csv(("onnx", "tflite"), "format"), default=("onnx",), metavar="onnx,tflite",
                   help="RUN_DIR: formats of the temporary export (default onnx)")
    p.add_argument("--quantize", type=_csv(tuple(q for q in QUANTIZATIONS if q != "int8"), "quantization"),
                   default=("int8-dynamic",), metavar="int8-dynamic,float16,...",
                   help="RUN_DIR: quantized variants of the temporary export (default int8-dynamic)")
    p.add_argument("--threads", type=int, default=None, help="backend threads (default: min(device cores, host CPUs))")
    p.add_argument("--seconds", type=float, default=0.1, metavar="S",
                   help="seconds of timed batch-1 runs per configuration (default 0.1)")
    target = p.add_argument_group("target (pick one configuration)")
    target.add_argument("--min-accuracy", type=float, default=None, metavar="A",
                        help="the cheapest configuration with accuracy >= A (a fraction, or a percentage above 1)")
    target.add_argument("--max-error", type=float, default=None, metavar="E",
                        help="dynamics: the cheapest configuration with trajectory RMSE <= E")
    target.add_argument("--max-latency-ms", type=float, default=None, metavar="L",
                        help="the most accurate configuration with estimated latency <= L ms")
    target.add_argument("--max-energy-mj", type=float, default=None, metavar="E",
                        help="the most accurate configuration with estimated energy <= E mJ per inference")
    p.add_argument("--apply", action="store_true", help="write the picked configuration as a bundle to -o BUNDLE")
    add_out(p, metavar="BUNDLE", help="with --apply: the tuned bundle to write")
    add_overwrite(p, "BUNDLE")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="write the frontier plot (needs matplotlib)")
    p.add_argument("--all", action="store_true", help="list every configuration measured, not only the frontier")
    add_json(p, "one object: configs (each with tableau, steps, precision, val_accuracy, accuracy (test), latency_ms, "
                "frontier), picked")
    add_quiet(p)
    p.set_defaults(func=run)
    return p


def _target(args, kind: str):
    from edgeode.errors import ConfigError
    from edgeode.tune.frontier import Target

    floor = args.min_accuracy
    if kind == "dynamics":
        if floor is not None:
            raise ConfigError("a dynamics bundle's figure is the trajectory error (lower is better): use --max-error E, "
                              "not --min-accuracy")
        floor = args.max_error
    elif args.max_error is not None:
        raise ConfigError("--max-error is for dynamics bundles; a classifier takes --min-accuracy A")
    elif floor is not None:
        if not 0 < floor <= 100:
            raise ConfigError(f"--min-accuracy must be a fraction (0.97) or a percentage (97), got {floor:g}")
        floor = floor / 100 if floor > 1 else floor
    for name, v in (("--max-latency-ms", args.max_latency_ms), ("--max-energy-mj", args.max_energy_mj),
                    ("--max-error", args.max_error)):
        if v is not None and not v > 0:
            raise ConfigError(f"{name} must be a positive number, got {v:g}")
    return Target(floor, args.max_latency_ms, args.max_energy_mj)


def _load_heldout(spec: str, args, kind: str):
    from edgeode.tune import heldout

    if spec.endswith(".npz"):
        return heldout.from_npz(spec)
    return heldout.from_dataset(spec, args.data_path, args.seed, kind)


def _heldout(args, source: Path, is_run: bool, kind: str):
    """The validation set tune picks on and the test set it reports (:class:`edgeode.tune.heldout.Split`)."""
    from edgeode.errors import ConfigError
    from edgeode.tune import heldout

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be a positive number of samples, got {args.limit}")
    if args.data is not None:
        data = _load_heldout(args.data, args, kind)
    elif is_run:
        data = heldout.from_run(source, kind)
    else:
        raise ConfigError(f"{source} is a bundle: give the held-out data with --data FILE.npz (arrays x and y) or "
                          "--data NAME --seed N (the data set and split seed it was trained with)")
    data = data.limit(args.limit)
    if args.val_data is None:
        return heldout.split(data)
    val = _load_heldout(args.val_data, args, kind).limit(args.limit)
    if val.x.shape[1:] != data.x.shape[1:]:
        raise ConfigError(f"--val-data samples have shape {list(val.x.shape[1:])} but --data samples "
                          f"{list(data.x.shape[1:])}: give validation data of the same kind as the test data")
    return heldout.Split(val, data)


def _acc(metric: str, v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:6.2f}%" if metric == "accuracy" else f"{v:9.3g}"


def _num(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def render(d: dict, show_all: bool) -> str:
    """The text report of tune's JSON object: the frontier (or every configuration) as a table, and the pick."""
    metric = d["metric"]
    rows = [c for c in d["configs"] if show_all or c["frontier"] or c["frontier_energy"]]
    rows.sort(key=lambda c: (c["latency_ms"] if c["latency_ms"] is not None else c["host_latency_ms"]))
    word = "acc." if metric == "accuracy" else "RMSE"
    lines = [f"tune {d['source']} for {d['device']}: {len(d['configs'])} configurations measured in {d['seconds']:.0f} s",
             f"picked on {d['val_samples']} validation samples ({d['val_data']}); reported on {d['samples']} test "
             f"samples ({d['data']})",
             f"figures: {d['figures']}; {d['threads']} thread(s), batch 1",
             f"{'tableau':8s} {'steps':>5s} {'evals':>5s} {'precision':12s} {'mode':5s} "
             f"{'val ' + word:>9s} {'test ' + word:>9s} {'est. ms':>8s} {'est. mJ':>8s} {'host ms':>8s} "
             f"{'fits':4s} frontier"]
    for c in rows:
        marks = ",".join(m for m, on in (("latency", c["frontier"]), ("energy", c["frontier_energy"])) if on) or "-"
        lines.append(f"{c['tableau']:8s} {c['steps']:5d} {c['field_evaluations']:5d} {c['precision']:12s} {c['mode']:5s} "
                     f"{_acc(metric, c['val_accuracy']):>9s} {_acc(metric, c['accuracy']):>9s} "
                     f"{_num(c['latency_ms']):>8s} {_num(c['energy_mj']):>8s} "
                     f"{_num(c['host_latency_ms']):>8s} {'yes' if c['fits'] else 'NO':4s} {marks}")
    if not show_all:
        lines.append(f"({len(d['configs']) - len(rows)} dominated configurations not shown: --all lists them)")
    p = d.get("picked")
    if p is not None:
        lines.append(f"picked: {p['tableau']} x {p['steps']} steps, {p['precision']} ({p['mode']} mode): "
                     f"{_acc(metric, p['val_accuracy']).strip()} on validation, {_acc(metric, p['accuracy']).strip()} "
                     f"on test, est. {_num(p['latency_ms'])} ms, "
                     f"{_num(p['energy_mj'])} mJ on {d['device']}")
    if d.get("applied"):
        lines.append(f"wrote {d['applied']}: runs {p['tableau']} x {p['steps']} {p['precision']} by default "
                     f"(`edgeode run {d['applied']} INPUT`)")
    if d.get("plot"):
        lines.append(f"plot: {d['plot']}")
    lines += [f"note: {n}" for n in d.get("notes", [])]
    return "\n".join(lines)


def _run_task(run_dir: Path) -> str | None:
    """The ``task`` a run directory's config.json records (``series`` for an ODE-RNN), None if unreadable."""
    import json

    try:
        return json.loads((run_dir / "config.json").read_text()).get("task")
    except (OSError, ValueError, AttributeError):
        return None  # the export that follows says what is wrong with the run


def run(args) -> int:
    from edgeode.errors import ConfigError
    from edgeode.runtime.manifest import MANIFEST_NAME, Manifest
    from edgeode.tune.frontier import mark_frontiers, pick
    from edgeode.tune.sweep import SERIES_REFUSAL, sweep

    source = Path(args.source)
    if args.apply and not args.out:
        raise ConfigError("--apply writes the tuned bundle to -o BUNDLE: give -o")
    if args.out and not args.apply:
        raise ConfigError("-o is where --apply writes the tuned bundle: add --apply (and a target to pick by)")
    is_bundle = (source / MANIFEST_NAME).is_file()
    is_run = not is_bundle and (source / "config.json").is_file()
    if not (is_bundle or is_run):
        raise ConfigError(f"{source} is neither a bundle (no {MANIFEST_NAME}) nor a run directory (no config.json); "
                          "pass what `edgeode export -o` or `edgeode train -o` wrote")
    if is_run and _run_task(source) == "series":
        raise ConfigError(SERIES_REFUSAL)  # before the export, which would take a while to end in this refusal
    with tempfile.TemporaryDirectory(prefix="edgeode-tune-") as tmp:
        bundle = source
        if is_run:
            from edgeode.export import export_run

            bundle = Path(tmp) / "bundle"
            export_run(source, bundle, formats=tuple(args.formats), quantize=tuple(args.quantize), progress=not args.quiet)
        kind = Manifest.read(bundle).kind
        if kind == "series":
            raise ConfigError(SERIES_REFUSAL)
        target = _target(args, kind)
        if args.apply and not target.given:
            raise ConfigError("--apply needs a target to pick by: --min-accuracy A (or --max-error E), "
                              "--max-latency-ms L or --max-energy-mj E")
        data = _heldout(args, source, is_run, kind)
        result = mark_frontiers(sweep(bundle, args.device, data, tableaus=args.solvers, max_steps=args.max_steps,
                                      precisions=args.precisions, threads=args.threads, seconds=args.seconds,
                                      prune=not args.no_prune, progress=not args.quiet))
        d = {"source": str(source), "device": result.device, "figures": result.figures, "metric": result.metric,
             "higher_is_better": result.higher_is_better, "samples": result.samples, "data": result.data,
             "val_samples": result.val_samples, "val_data": result.val_data,
             "threads": result.threads, "seconds": result.seconds,
             "configs": [m.to_dict() for m in result.results], "picked": None, "applied": None, "plot": None,
             "notes": list(result.skipped)}
        chosen = pick(result, target) if target.given else None
        if chosen is not None:
            d["picked"] = chosen.to_dict()
        if args.apply:
            from edgeode.tune.apply import tuned_spec, write_tuned_bundle

            d["applied"] = str(write_tuned_bundle(bundle, args.out, tuned_spec(result, chosen), args.overwrite))
    if args.plot:
        from edgeode.tune.plot import plot_frontier

        d["plot"] = str(plot_frontier(result, args.plot))
    print(json.dumps(d, indent=2) if args.json else render(d, args.all))
    sys.stdout.flush()
    return 0
