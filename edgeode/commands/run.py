"""``edgeode run BUNDLE INPUT``: run a bundle with the torch-free runtime and print predictions.

INPUT is a ``.npy`` file of *preprocessed* float input (``(raw * scale - mean) / std`` with the
manifest's ``input.preprocess``; integer arrays, i.e. raw pixels, are refused with that hint): a batch
``[B, C, H, W]``, one sample ``[C, H, W]``, or for single-channel models one ``[H, W]`` image. Or an
image file (PNG / PGM) of raw pixels, preprocessed as the manifest says. ``--json`` gives per sample
the predicted ``class``, its ``label`` and ``probability`` (softmax), all ``probabilities`` and the
raw ``logits``. A series bundle (an ODE-RNN) reads one recorded series instead, an ``.npz`` (``times``,
``values``) or a ``.csv`` (:mod:`edgeode.runtime.series_file`), and classifies it with
``SeriesModel.predict_series``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from edgeode.commands.options import add_expect_digest, add_json, add_quiet
from edgeode.tableaus import tableau_names

HELP = "run a bundle with the torch-free runtime (onnxruntime / LiteRT)"
IMAGE_SUFFIXES = (".png", ".pgm")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "run",
        help=HELP,
        description=HELP + ". INPUT is a .npy array of preprocessed float32 input, (raw * scale - mean) / std "
        "with the manifest's input.preprocess (batch [B, C, H, W], one sample [C, H, W], or one [H, W] image for a "
        "single-channel model), or a PNG/PGM image of raw pixels (resized and normalised as the manifest says). For a classifier it prints the top classes per sample; "
        "for a dynamics bundle INPUT holds initial states [B, D] and it prints the state at t1 of each "
        "(the whole trajectory: edgeode.runtime.load(BUNDLE).solve(y0)). For a series bundle (an ODE-RNN) INPUT is one "
        "recorded series of raw samples: an .npz with times [n] (seconds, increasing) and values [n, channels], or a CSV "
        "with a header naming a time column (t, time or timestamp) and the manifest's channels; it prints the series' "
        "class. Needs numpy and onnxruntime or ai-edge-litert; never imports torch.",
    )
    parser.add_argument("bundle", metavar="BUNDLE", help="bundle directory written by `edgeode export`")
    parser.add_argument("input", metavar="INPUT", help="a .npy file, or a .png / .pgm image; for a series bundle an .npz "
                        "(times, values) or a .csv")
    parser.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "litert", "tflite-runtime", "tflm"),
                        help="inference backend (default: auto = onnxruntime for ONNX if installed, else LiteRT, "
                        "else tflite-runtime; tflm: TensorFlow Lite Micro, the microcontroller interpreter, for "
                        "--quantize int8 bundles)")
    parser.add_argument("--mode", default=None, choices=("fused", "loop"),
                        help="fused: one call of the whole-solve graph; loop: numpy solver loop around the exported "
                        "field (default: fused, or loop when --solver or --backend tflm is given; a bundle from `edgeode tune "
                        "--apply` runs its tuned mode, tableau, steps and precision unless told otherwise)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the backend (default: backend's own)")
    parser.add_argument("--steps", type=int, default=None,
                        help="solver steps over [t0, t1] (default: the bundle's; fused TFLite cannot change them)")
    parser.add_argument("--solver", default=None, metavar="|".join(tableau_names()),
                        help="Butcher tableau for loop mode (default: the bundle's)")
    parser.add_argument("--precision", default=None,
                        choices=("float32", "float16", "int8-dynamic", "int8-weight", "int8"),
                        help="which artifacts of the bundle to run (default: int8 with --backend tflm when the bundle "
                        "has them, else float32)")
    parser.add_argument("--top", type=int, default=3, help="classes shown per sample in text output (default: 3)")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="stop the run after SECONDS (load included) with exit code 124; Ctrl-C stops it with 130 "
                        "(default: no timeout)")
    add_expect_digest(parser)
    add_json(parser, "one object (predictions, backend, mode, latency_ms, ...)")
    add_quiet(parser)
    parser.set_defaults(func=run)
    return parser


def _softmax(scores):
    import numpy as np

    z = scores - scores.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _read_input(path: Path, model):
    import numpy as np

    from edgeode.errors import DataError, ShapeError
    from edgeode.fsutil import is_file
    from edgeode.runtime import preprocess_image
    from edgeode.runtime.npy import read_npy

    if not is_file(path):
        raise DataError(f"input file {str(path)!r} not found (or not a regular file)")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return preprocess_image(path, model.manifest)
    if path.suffix.lower() != ".npy":
        raise DataError(f"{path}: unknown input type; pass a .npy array or a .png / .pgm image")
    x = read_npy(path)
    shape = model.manifest.input.tensor.shape
    rank = len(shape)
    if x.ndim == rank - 1:
        x = x[None]
    elif rank >= 3 and x.ndim == rank - 2 and shape[1] == 1 and tuple(x.shape) == tuple(shape[2:]):
        x = x[None, None]  # one single-channel image without batch and channel axes, e.g. an 8x8 array
    if x.dtype.kind in "iub":
        raise ShapeError(
            f"{path} holds {x.dtype} values; the model takes preprocessed float32 input. Preprocess first "
            "(x = (raw * scale - mean) / std from the manifest) or pass the image file itself"
        )
    if x.dtype.kind != "f":
        raise ShapeError(f"{path} holds {x.dtype} values; the model takes float32 input: save x.astype(np.float32)")
    if not np.isfinite(x).all():
        raise DataError(f"{path} holds NaN or Inf values; the model needs finite inputs: check how the file was made")
    return x


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from edgeode.errors import InputWarning
    from edgeode.runtime import load
    from edgeode.runtime.bounded import check_timeout, watch_ctrl_c

    watch_ctrl_c()  # a Ctrl-C that library code swallows while the model loads still stops the run
    begun = time.monotonic()
    timeout = check_timeout(args.timeout)
    mode = args.mode or ("loop" if args.solver or args.backend == "tflm" else None)  # None: tuned mode, else fused
    model = load(args.bundle, backend=args.backend, mode=mode, threads=args.threads, precision=args.precision,
                 steps=args.steps, tableau=args.solver, expect_digest=args.expect_digest)
    if model.manifest.kind == "series":
        return _run_series(args, model, timeout, begun)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", InputWarning)
            x = _read_input(Path(args.input), model)
        for w in caught:
            if issubclass(w.category, InputWarning):
                print(f"edgeode run: hint: {w.message}", file=sys.stderr)
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        done = _timed(model, model.predict, (x,), timeout, begun)
        if done is None:
            return 124
        out, latency_ms, desc = done
    finally:
        model.close()
    labels = model.manifest.output.labels
    preds = []
    if model.manifest.kind == "classifier":
        probs = _softmax(out.astype(np.float64))
        for i, row in enumerate(out):
            k = int(np.argmax(row))
            preds.append({
                "index": i,
                "class": k,
                "label": labels[k] if labels and k < len(labels) else str(k),
                "probability": float(probs[i, k]),
                "probabilities": [float(v) for v in probs[i]],
                "logits": [float(v) for v in row],
            })
    else:
        for i, row in enumerate(out):
            preds.append({"index": i, "label": None, "final_state": [float(v) for v in np.ravel(row)]})
    if args.json:
        result = {
            "bundle": str(args.bundle),
            "input": str(args.input),
            "kind": model.manifest.kind,
            "backend": desc["backend"],
            "mode": desc["mode"],
            "precision": desc["precision"],
            "tableau": desc["tableau"],
            "steps": desc["steps"],
            "field_evaluations": desc["field_evaluations"],
            "batch": int(x.shape[0]),
            "latency_ms": latency_ms,
            "predictions": preds,
        }
        json.dump(result, sys.stdout, allow_nan=False)  # valid JSON: the runtime returns finite outputs or raises
        sys.stdout.write("\n")
        return 0
    solve = f", {desc['tableau']} x {desc['steps']} steps" if desc["tableau"] else ""
    print(f"{desc['arch']} ({desc['kind']}) on {desc['backend']}, mode {desc['mode']}{solve}: "
          f"{len(preds)} sample(s) in {latency_ms:.2f} ms")
    for p in preds:
        if "final_state" in p:
            print(f"  [{p['index']}] final state: " + ", ".join(f"{v:.6g}" for v in p["final_state"]))
            continue
        order = np.argsort(p["logits"])[::-1][: max(1, args.top)]
        row_probs = probs[p["index"]]
        alts = ", ".join(f"{labels[k] if labels and k < len(labels) else k} {row_probs[k]:.3f}" for k in order)
        print(f"  [{p['index']}] {p['label']}  (p = {p['probability']:.3f}; top: {alts})")
    return 0


def _timed(model, fn, fn_args: tuple, timeout: float | None, begun: float):
    """``(output, latency ms, model.describe())`` of ``fn(*fn_args)``, stoppable by Ctrl-C (exit 130) and the
    deadline (``None``: the deadline passed, the caller returns 124)."""
    from edgeode.errors import RunTimeout
    from edgeode.runtime.bounded import BoundedCall

    start = time.perf_counter()
    call = BoundedCall(model, fn, *fn_args)
    try:
        out = call.run(timeout, since=begun)
        return out, (time.perf_counter() - start) * 1000.0, model.describe()
    except (KeyboardInterrupt, RunTimeout) as exc:
        timed_out = isinstance(exc, RunTimeout)
        if not call.stuck:
            if timed_out:
                print(f"edgeode run: error: {exc}", file=sys.stderr)
                return None
            raise
        # the backend cannot stop this call (a TFLite invoke): end the process, the only way to stop it
        print(f"edgeode run: {'error: ' + str(exc) if timed_out else 'interrupted'}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(124 if timed_out else 130)


def _run_series(args: argparse.Namespace, model, timeout: float | None, begun: float) -> int:
    """A series bundle: INPUT is one recorded series (.npz times/values, or .csv); prints its class."""
    import numpy as np

    from edgeode.runtime.loop import interval_steps
    from edgeode.runtime.series_file import read_series_file, time_hints

    try:
        rec = read_series_file(Path(args.input), model.spec)
        hints = [f"left out CSV column(s) {list(rec.ignored)}: the model reads {', '.join(model.channels)}"] \
            if rec.ignored else []
        for hint in hints + time_hints(rec.times, model.spec.max_step):
            print(f"edgeode run: hint: {hint}", file=sys.stderr)
        done = _timed(model, model.predict_series, (rec.times, rec.values), timeout, begun)
        if done is None:
            return 124
        out, latency_ms, desc = done
    finally:
        model.close()
    mode = desc["mode"]
    gaps = np.diff(rec.times)
    steps = int(sum(interval_steps(float(g), model.spec.max_step) for g in gaps))
    labels = model.labels
    probs = _softmax(out.astype(np.float64))
    k = int(np.argmax(out))

    def name(i: int) -> str:
        return labels[i] if labels and i < len(labels) else str(i)

    pred = {"index": 0, "class": k, "label": name(k), "probability": float(probs[k]),
            "probabilities": [float(v) for v in probs], "logits": [float(v) for v in out]}
    if args.json:
        result = {
            "bundle": str(args.bundle), "input": str(args.input), "kind": "series", "backend": desc["backend"], "mode": mode,
            "precision": desc["precision"], "tableau": desc["tableau"], "max_step": desc["max_step"],
            "observations": int(rec.times.size), "duration_s": float(rec.times[-1] - rec.times[0]),
            "solver_steps": steps, "field_evaluations": steps * desc["stages"],
            "calls_per_observation": desc["calls_per_observation"], "latency_ms": latency_ms,
            "ignored_columns": list(rec.ignored), "predictions": [pred],
        }
        json.dump(result, sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
        return 0
    print(f"{desc['arch']} (series) on {desc['backend']}, mode {mode}, {desc['tableau']} steps of at most {desc['max_step']:g} s: "
          f"{rec.times.size} observation(s) over {rec.times[-1] - rec.times[0]:.6g} s ({steps} solver steps) "
          f"in {latency_ms:.2f} ms")
    order = np.argsort(out)[::-1][: max(1, args.top)]
    alts = ", ".join(f"{name(int(i))} {probs[i]:.3f}" for i in order)
    print(f"  {pred['label']}  (p = {pred['probability']:.3f}; top: {alts})")
    return 0
