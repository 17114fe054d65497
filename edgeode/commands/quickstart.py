"""``edgeode quickstart``: the whole flow on the embedded default, in one command.

train an ODE-Net (adjoint, RK4) on scikit-learn's bundled 8x8 digits, and beside it (a second
process, the second core) a ResNet the same way -> export the ODE-Net's bundle (ONNX and TFLite,
parity-checked) and the ResNet's (ONNX) -> run both bundles with the torch-free runtime on the test
split (the ODE-Net on every installed backend x {fused, loop}) -> print the runtime's accuracy next
to torch's -> profile the ODE-Net bundle for a device profile (estimates on this host, labelled so).

The recipe (:data:`RECIPE`) was chosen by measurement for accuracy that holds across seeds and
CPUs (README, Quickstart): the one-cycle learning-rate schedule ends training at a settled point;
two RK4 steps are as accurate here as four and halve the solver's cost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from edgeode.commands import train as train_cmd
from edgeode.commands.options import add_device, add_json, add_out, add_overwrite, add_quiet

#: Training options of both quickstart models (`edgeode train` flags). Measured on the digits test
#: split over seeds 0-4 (README, Quickstart): every seed >= 0.97 for the ODE-Net and the ResNet.
RECIPE = {"epochs": 12, "batch-size": 32, "lr": 3e-3, "schedule": "onecycle", "steps": 2, "width": 32, "threads": 1}

BASELINES = ("resnet", "none")


def add_parser(subparsers) -> argparse.ArgumentParser:
    recipe = ", ".join(f"--{k} {v}" for k, v in RECIPE.items())
    p = subparsers.add_parser(
        "quickstart",
        help="train -> export -> run -> profile on the bundled digits, in one command",
        description=(
            "Run the main job end to end on the embedded default: train an ODE-Net with the adjoint method on "
            "scikit-learn's bundled 8x8 digits and, beside it in a second process, a ResNet the same way "
            f"({recipe}); export the ODE-Net to an ONNX + TFLite bundle and the ResNet to ONNX; run both bundles "
            "with the torch-free runtime on the test split (the ODE-Net on every installed backend, fused and loop "
            "modes) and print the accuracy next to torch's; then profile the ODE-Net bundle for a device. "
            "About 1.5 minutes on 2 idle cores. Writes OUT/run, OUT/bundle (the ODE-Net), OUT/resnet-run, "
            "OUT/resnet-bundle and OUT/summary.json."
        ),
    )
    add_out(p, default="edgeode-quickstart", metavar="OUT",
            help="directory for the runs, the bundles and summary.json (default: ./edgeode-quickstart)")
    p.add_argument("--model", default="odenet", metavar="|".join(train_cmd.MODELS),
                   help="main model to train (as in `edgeode train`); default odenet")
    p.add_argument("--baseline", default="resnet", metavar="|".join(BASELINES),
                   help="model trained the same way beside it for comparison, or none; default resnet")
    p.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {RECIPE['epochs']})")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, data split and data order; default 0")
    add_device(p, default="pi-4b", help="device profile to profile for")
    p.add_argument("--no-profile", action="store_true", help="skip the profiling step")
    add_overwrite(p, "the runs and bundles in OUT")
    add_json(p, "the summary (summary.json)")
    add_quiet(p)
    p.set_defaults(func=run)
    return p


def _runtime_accuracy(bundle: Path, x, y, backends=("onnxruntime", "litert"), modes=("fused", "loop")) -> list[dict]:
    """Accuracy of the bundle on (x, y) for every installed backend x mode, measured by edgeode.runtime."""
    import numpy as np

    from edgeode.runtime import backend_available, load

    rows = []
    for backend in backends:
        if not backend_available(backend):
            rows.append({"backend": backend, "mode": "-", "skipped": "not installed"})
            continue
        for mode in modes:
            with load(bundle, backend=backend, mode=mode, threads=1) as model:
                start = time.perf_counter()
                scores = model.predict(x)
                seconds = time.perf_counter() - start
            accuracy = float((np.argmax(scores, axis=1) == y).mean())
            rows.append({"backend": backend, "mode": mode, "accuracy": accuracy,
                         "ms_per_sample": 1000 * seconds / len(x)})
    return rows


def _train_argv(model: str, run_dir: Path, args: argparse.Namespace) -> list[str]:
    argv = ["train", "-o", str(run_dir), "--model", model, "--seed", str(args.seed)]
    for key, value in RECIPE.items():
        if key == "epochs" and args.epochs is not None:
            value = args.epochs
        if key == "steps" and model not in ("odenet", "rknet", "spiral"):
            continue
        argv += [f"--{key}", str(value)]
    if args.overwrite:
        argv.append("--overwrite")
    return argv


def _check_out(out: Path, dirs: list[Path], overwrite: bool) -> None:
    from edgeode.errors import ConfigError

    if not overwrite and any(p.is_dir() and any(p.iterdir()) for p in dirs):
        raise ConfigError(f"{out} already holds a quickstart; pass --overwrite to replace it or choose another -o OUT")


def run(args: argparse.Namespace) -> int:
    from edgeode.cli import build_parser
    from edgeode.errors import ConfigError, EdgeodeError
    from edgeode.export import export_run
    from edgeode.fsutil import atomic_write_json
    from edgeode.train.data import load_dataset
    from edgeode.train.trainer import train

    if args.baseline not in BASELINES:
        from edgeode.errors import did_you_mean

        raise ConfigError(f"unknown --baseline {args.baseline!r}{did_you_mean(args.baseline, BASELINES)}; "
                          f"choose one of: {', '.join(BASELINES)}")
    out = Path(args.out)
    run_dir, bundle_dir = out / "run", out / "bundle"
    base = None if args.baseline == "none" else args.baseline
    base_run, base_bundle = out / f"{base}-run", out / f"{base}-bundle"
    _check_out(out, [run_dir, bundle_dir] + ([base_run, base_bundle] if base else []), args.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    wall0, cpu0 = time.perf_counter(), time.process_time()

    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    config = train_cmd.build_config(build_parser().parse_args(_train_argv(args.model, run_dir, args)))
    steps = 4 + 2 * bool(base)
    beside = None
    if base:
        # the baseline trains in a second process on the other core while this one trains the main model
        base_argv = [sys.executable, "-m", "edgeode", *_train_argv(base, base_run, args), "-q"]
        beside = subprocess.Popen(base_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        say(f"[1/{steps}] training {args.model} on {config.data} (seed {args.seed}) -> {run_dir}"
            + (f"; {base} beside it -> {base_run}" if base else ""))
        data = load_dataset(config.data, config.data_path, config.seed)  # once: train, export, runtime accuracy
        result = train(config, run_dir, progress=not args.quiet, overwrite=args.overwrite, data=data)
        base_metrics = None
        if beside is not None:
            if beside.poll() is None:
                say(f"        waiting for the {base} run")
            _, err = beside.communicate()
            if beside.returncode != 0:
                raise EdgeodeError(f"training the {base} baseline failed: {err.strip().splitlines()[-1] if err else ''}")
            base_metrics = json.loads((base_run / "metrics.json").read_text(encoding="utf-8"))
            beside = None
    finally:
        if beside is not None and beside.poll() is None:
            beside.kill()
            beside.wait()
    torch_acc = result.metrics.get("test_accuracy")

    say(f"[2/{steps}] exporting -> {bundle_dir} (ONNX + TFLite, each checked against torch)")
    manifest = export_run(run_dir, bundle_dir, progress=not args.quiet, overwrite=args.overwrite, data=data)
    if base:
        say(f"[3/{steps}] exporting {base} -> {base_bundle} (ONNX)")
        export_run(base_run, base_bundle, formats=("onnx",), progress=not args.quiet, overwrite=args.overwrite,
                   data=data)

    step = 3 + bool(base)
    say(f"[{step}/{steps}] running the bundle{'s' if base else ''} with the torch-free runtime on the test split")
    x = data.x_test.numpy().astype("float32")
    y = data.y_test.numpy()
    rows = _runtime_accuracy(bundle_dir, x, y)
    base_rows = _runtime_accuracy(base_bundle, x, y, backends=("onnxruntime",), modes=("fused",)) if base else []

    profile = None
    if not args.no_profile:
        say(f"[{step + 1}/{steps}] profiling the bundle for {args.device} (estimates unless run on that device)")
        from edgeode.devices.profiler import profile_bundle

        profile = profile_bundle(bundle_dir, device=args.device, progress=not args.quiet).to_dict()

    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    summary = {
        "run_dir": str(run_dir), "bundle": str(bundle_dir), "model": args.model, "data": config.data,
        "seed": args.seed, "recipe": {**RECIPE, "epochs": config.epochs},
        "test_samples": int(len(y)), "torch_test_accuracy": torch_acc, "runtime": rows,
        "baseline": {"model": base, "run_dir": str(base_run), "bundle": str(base_bundle),
                     "torch_test_accuracy": base_metrics.get("test_accuracy"), "runtime": base_rows} if base else None,
        "artifacts": [{"path": a.path, "parity_max_abs": a.parity_max_abs} for a in manifest.artifacts],
        "profile": profile,
        # CPU time of this process only (the baseline's training process is not included)
        "wall_s": wall, "cpu_s_this_process": cpu,
    }
    atomic_write_json(out / "summary.json", summary, default=str)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0

    print(f"\n{args.model} on {config.data} (seed {args.seed}): {len(y)} test samples")
    _print_rows("torch (training run)", torch_acc, rows)
    if base:
        print(f"{base} trained the same way, for comparison:")
        _print_rows("torch (training run)", base_metrics.get("test_accuracy"), base_rows)
    if profile:
        from edgeode.commands.profile import render

        print()
        print(render(profile))
    written = [run_dir, bundle_dir] + ([base_run, base_bundle] if base else [])
    print(f"\nwrote {', '.join(map(str, written))} and {out / 'summary.json'} in {wall:.0f} s")
    return 0


def _print_rows(first: str, torch_acc: float | None, rows: list[dict]) -> None:
    print(f"  {first:28s} accuracy {torch_acc:.4f}")
    for r in rows:
        if "skipped" in r:
            print(f"  {r['backend'] + ' (' + r['skipped'] + ')':28s}")
        else:
            print(f"  {r['backend'] + ' ' + r['mode']:28s} accuracy {r['accuracy']:.4f}   {r['ms_per_sample']:.3f} ms/sample")
