"""``edgeode quickstart``: the whole flow on the embedded default, in one command.

train an ODE-Net (adjoint, RK4) on scikit-learn's bundled 8x8 digits -> export the bundle (ONNX and
TFLite, parity-checked) -> run the bundle with the torch-free runtime on the test split for every
installed backend x {fused, loop} -> print the runtime's accuracy next to torch's -> profile the
bundle for a device profile (estimates on this host, labelled so).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edgeode.commands import train as train_cmd
from edgeode.commands.options import add_device, add_json, add_out, add_overwrite, add_quiet


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "quickstart",
        help="train -> export -> run -> profile on the bundled digits, in one command",
        description=(
            "Run the main job end to end on the embedded default: train an ODE-Net with the adjoint method on "
            "scikit-learn's bundled 8x8 digits (about a minute on 2 cores), export it to an ONNX + TFLite bundle, "
            "run the bundle with the torch-free runtime on the test split (every installed backend, fused and "
            "loop modes) and print its accuracy next to torch's, then profile it for a device. "
            "Writes OUT/run (the training run), OUT/bundle and OUT/summary.json."
        ),
    )
    add_out(p, default="edgeode-quickstart", metavar="OUT",
            help="directory for the run, the bundle and summary.json (default: ./edgeode-quickstart)")
    p.add_argument("--model", default="odenet", metavar="|".join(train_cmd.MODELS),
                   help="model to train (as in `edgeode train`); default odenet")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the data set's default)")
    add_device(p, default="pi-4b", help="device profile to profile for")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, data split and data order; default 0")
    p.add_argument("--no-profile", action="store_true", help="skip the profiling step")
    add_overwrite(p, "OUT/run and OUT/bundle")
    add_json(p, "the summary (summary.json)")
    add_quiet(p)
    p.set_defaults(func=run)
    return p


def _runtime_accuracy(bundle: Path, x, y) -> list[dict]:
    """Accuracy of the bundle on (x, y) for every installed backend x mode, measured by edgeode.runtime."""
    import numpy as np

    from edgeode.runtime import backend_available, load

    rows = []
    for backend in ("onnxruntime", "litert"):
        if not backend_available(backend):
            rows.append({"backend": backend, "mode": "-", "skipped": "not installed"})
            continue
        for mode in ("fused", "loop"):
            with load(bundle, backend=backend, mode=mode, threads=1) as model:
                start = time.perf_counter()
                scores = model.predict(x)
                seconds = time.perf_counter() - start
            accuracy = float((np.argmax(scores, axis=1) == y).mean())
            rows.append({"backend": backend, "mode": mode, "accuracy": accuracy,
                         "ms_per_sample": 1000 * seconds / len(x)})
    return rows


def run(args: argparse.Namespace) -> int:
    from edgeode.cli import build_parser
    from edgeode.errors import ConfigError
    from edgeode.export import export_run
    from edgeode.fsutil import atomic_write_json
    from edgeode.train.data import load_dataset
    from edgeode.train.trainer import train

    out = Path(args.out)
    run_dir, bundle_dir = out / "run", out / "bundle"
    if not args.overwrite and any(p.exists() and any(p.iterdir()) for p in (run_dir, bundle_dir) if p.is_dir()):
        raise ConfigError(f"{out} already holds a quickstart; pass --overwrite to replace it or choose another -o OUT")
    out.mkdir(parents=True, exist_ok=True)

    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    train_argv = ["train", "-o", str(run_dir), "--model", args.model, "--seed", str(args.seed)]
    if args.epochs is not None:
        train_argv += ["--epochs", str(args.epochs)]
    if args.overwrite:
        train_argv.append("--overwrite")
    config = train_cmd.build_config(build_parser().parse_args(train_argv))

    say(f"[1/4] training {args.model} on {config.data} -> {run_dir}")
    result = train(config, run_dir, progress=not args.quiet, overwrite=args.overwrite)
    torch_acc = result.metrics.get("test_accuracy")

    say(f"[2/4] exporting -> {bundle_dir} (ONNX + TFLite, each checked against torch)")
    manifest = export_run(run_dir, bundle_dir, progress=not args.quiet, overwrite=args.overwrite)

    say("[3/4] running the bundle with the torch-free runtime on the test split")
    data = load_dataset(config.data, config.data_path, config.seed)
    x = data.x_test.numpy().astype("float32")
    y = data.y_test.numpy()
    rows = _runtime_accuracy(bundle_dir, x, y)

    profile = None
    if not args.no_profile:
        say(f"[4/4] profiling the bundle for {args.device} (estimates unless run on that device)")
        from edgeode.devices.profiler import profile_bundle

        profile = profile_bundle(bundle_dir, device=args.device, progress=not args.quiet)
        profile = profile.to_dict() if hasattr(profile, "to_dict") else profile

    summary = {
        "run_dir": str(run_dir), "bundle": str(bundle_dir), "model": args.model, "data": config.data,
        "torch_test_accuracy": torch_acc, "runtime": rows,
        "artifacts": [{"path": a.path, "parity_max_abs": a.parity_max_abs} for a in manifest.artifacts],
        "profile": profile,
    }
    atomic_write_json(out / "summary.json", summary, default=str)

    print(f"\n{args.model} on {config.data}: {len(y)} test samples")
    print(f"  {'torch (training run)':28s} accuracy {torch_acc:.4f}")
    for r in rows:
        if "skipped" in r:
            print(f"  {r['backend'] + ' (' + r['skipped'] + ')':28s}")
        else:
            print(f"  {r['backend'] + ' ' + r['mode']:28s} accuracy {r['accuracy']:.4f}   {r['ms_per_sample']:.3f} ms/sample")
    if profile:
        from edgeode.commands.profile import render

        print()
        print(render(profile))
    print(f"\nwrote {run_dir}, {bundle_dir} and {out / 'summary.json'}")
    return 0
