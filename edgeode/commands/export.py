"""``edgeode export``: a trained run directory -> a checked ONNX / TFLite bundle.

Every file is run by its real runtime (onnxruntime, LiteRT) on test samples and random inputs and
compared with torch before the bundle is written (the parity gate).
"""

from __future__ import annotations

import argparse
import sys

from edgeode.commands.options import add_json, add_out, add_overwrite, add_quiet

FORMATS = ("onnx", "tflite")
QUANTIZATIONS = ("int8-dynamic", "int8-weight", "float16", "int8")


def _csv(choices: tuple[str, ...], what: str):
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(x.strip() for x in text.split(",") if x.strip())
        bad = [x for x in items if x not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad)}; choose from {', '.join(choices)}")
        return items
    return parse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export",
        help="export a trained run to an ONNX / TFLite bundle (checked against torch)",
        description=(
            "Export RUN_DIR (from `edgeode train`) to the bundle directory BUNDLE: manifest.json plus, for an "
            "ODE-Net, the encoder, the vector field f(t, h), the head (for the device's own solver loop) and a "
            "fused whole-model graph (ONNX: the solve as a Loop whose step count is an optional input; TFLite: "
            "a WHILE loop over the converted field, its steps fixed at export; the int8 fused file is unrolled). ResNet / VGG get one `model` file; the spiral model a field and a fused "
            "trajectory graph; an ODE-RNN (series) its field f(h), GRU cell and head, for the streaming runtime. Each file must match torch within the tolerance when run by its real runtime "
            "(parity gate) or nothing is written. The bundle is built beside BUNDLE and renamed into place."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `edgeode train -o RUN_DIR`")
    add_out(p, required=True, metavar="BUNDLE", help="bundle directory to create")
    p.add_argument("--formats", type=_csv(FORMATS, "format"), default=FORMATS, metavar="onnx,tflite",
                   help="comma-separated formats to export (default: onnx,tflite)")
    p.add_argument("--tflite-batch", type=int, default=1, metavar="N",
                   help="fixed batch size of the TFLite files; ONNX files have a dynamic batch (default: 1)")
    p.add_argument("--quantize", type=_csv(QUANTIZATIONS, "quantization"), default=(), metavar="|".join(QUANTIZATIONS),
                   help="comma-separated quantized variants to add (ONNX: int8-dynamic; TFLite: all four), "
                        "each checked with a looser tolerance (default: none). int8: full-integer files for "
                        "microcontrollers, calibrated on training images, measured in TensorFlow Lite Micro "
                        "(smallest arena, accuracy on the test split; needs `pip install 'edgeode[mcu]'`)")
    p.add_argument("--tolerance", type=float, default=None, metavar="X",
                   help="max abs difference from torch for float32 files, relative to max(1, |torch output|) "
                        "(default: 1e-3; quantized files get proportionally looser bounds: float16 2e-2, int8-weight 0.1, "
                        "int8-dynamic 0.25)")
    add_overwrite(p, "BUNDLE")
    add_json(p, "the manifest")
    add_quiet(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from edgeode.export import export_run
    from edgeode.train.series_trainer import is_series_run

    if is_series_run(args.run_dir):  # an ODE-RNN: field, cell and head for the streaming runtime
        from edgeode.export.series_export import export_series_run

        manifest = export_series_run(args.run_dir, args.out, formats=tuple(args.formats), tolerance=args.tolerance,
                                     progress=not args.quiet, overwrite=args.overwrite, quantize=tuple(args.quantize))
    else:
        manifest = export_run(args.run_dir, args.out, formats=tuple(args.formats), tflite_batch=args.tflite_batch,
                              quantize=tuple(args.quantize), tolerance=args.tolerance, progress=not args.quiet,
                              overwrite=args.overwrite)
    if args.json:
        print(manifest.to_json(), end="")
        return 0
    seconds = manifest.model.get("export", {}).get("seconds", {})
    print(f"bundle {args.out}: {manifest.kind} {manifest.model['arch']}, {len(manifest.artifacts)} files")
    for art in manifest.artifacts:
        batch = "dynamic" if art.batch is None else str(art.batch)
        print(f"  {art.path:<34} {art.role:<8} {art.precision:<12} batch {batch:<7} {art.size / 1024:8.1f} KiB  "
              f"parity {art.parity_max_abs:.2e} <= {art.parity_tolerance:.1e}  ({seconds.get(art.path, 0):.1f} s)")
    sys.stdout.flush()
    return 0
