"""``edgeode pack``: build a self-contained package for a device (bundle + wheels, no torch)."""

from __future__ import annotations

import argparse
import shlex

from edgeode.commands.options import add_device, add_out, add_overwrite, add_quiet

DESCRIPTION = """\
Build a directory (and optionally a .tar.gz) that you copy to a device and run there, with nothing
downloaded on the device and no torch:

  Linux board with Python (pi-zero-2w, pi-3b-plus, pi-4b, pi-5, jetson-nano):
    DIR/bundle/   a verified copy of the bundle
    DIR/wheels/   wheels for the device's platform (e.g. aarch64): numpy, psutil, onnxruntime and/or
                  ai-edge-litert with their dependencies, and edgeode itself as a pure wheel
    DIR/README.md how to install (pip install --no-index --find-links wheels 'edgeode[...]'), run, profile
    DIR/run.sh    ./run.sh install | run | profile
  Android phone: DIR/model.tflite (the whole model, solve included), DIR/manifest.json and
    DIR/README.md, an integration note for LiteRT's Interpreter (tensors, preprocessing, the one call).
  Microcontroller (nano-33-ble-sense, esp32-s3), from a full-int8 bundle (export --quantize int8):
    DIR/platformio.ini, DIR/src/   a PlatformIO firmware project: the int8 models as const C arrays, TFLM
                  (the board's community library) with exactly the models' ops, the RK loop as generated C,
                  sample inputs checked against the host's TFLM outputs over serial; for a series bundle
                  (ODE-RNN) the observation step as generated C and sample series streamed through it
    DIR/README.md build and flash commands (pio run -t upload), sizes, what the board prints

The wheels are downloaded on this machine with pip's cross-platform options (it needs the package
index once); the package is built in a temporary directory and renamed into place only when complete.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "pack",
        help="build a self-contained package for a device (bundle + wheels, no torch)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory written by `edgeode export`")
    add_device(p, required=True)
    add_out(p, required=True, metavar="DIR", help="package directory to create")
    p.add_argument("--backends", default=None, metavar="B1,B2",
                   help="runtimes to ship, from onnxruntime, litert, tflite-runtime (default: onnxruntime and litert "
                        "where the device and the bundle's formats allow; Android always uses LiteRT)")
    p.add_argument("--python", default=None, metavar="3.X",
                   help="CPython version on the device; the wheels are built for it (default: 3.11, as on "
                        "Raspberry Pi OS Bookworm)")
    p.add_argument("--pin", action="append", default=[], metavar="REQ",
                   help="add or replace a requirement of the wheelhouse, e.g. --pin numpy==1.26.4 (repeatable)")
    p.add_argument("--edgeode-wheel", default=None, metavar="WHEEL",
                   help="ship this pure edgeode wheel instead of building one from the source tree")
    p.add_argument("--sample", default=None, metavar="X.npy",
                   help="microcontrollers: preprocessed inputs [S, ...] (.npy) the firmware checks on the board against "
                        "the host's TFLM outputs (default: 4 fixed-seed inputs over the input's range; a series bundle takes "
                        "none: pack draws 4 seeded sample series)")
    p.add_argument("--tar", action="store_true", help="also write DIR.tar.gz beside DIR")
    add_overwrite(p, "DIR")
    add_quiet(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from edgeode.pack import pack

    backends = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    samples = None
    if args.sample is not None:
        from edgeode.runtime.npy import read_npy

        samples = read_npy(args.sample)
    result = pack(
        args.bundle, args.device, args.out, backends=backends, python=args.python, pins=args.pin,
        edgeode_wheel=args.edgeode_wheel, tar=args.tar, force=args.overwrite, progress=not args.quiet,
        samples=samples,
    )
    size_mb = result.size_bytes / 1e6
    if result.kind == "firmware":
        print(f"wrote {result.out_dir} ({size_mb:.2f} MB): PlatformIO firmware project for {result.device} "
              f"(platformio.ini, src/, README.md)")
        print(f"build and flash: cd {result.out_dir.name} && pio run -t upload && pio device monitor")
    elif result.kind == "android":
        print(f"wrote {result.out_dir} ({size_mb:.1f} MB): model.tflite, manifest.json, README.md (integration note)")
    else:
        print(f"wrote {result.out_dir} ({size_mb:.1f} MB) for {result.device}: bundle/, {len(result.wheels)} wheels "
              f"for CPython {result.python} ({', '.join(result.backends)}), README.md, run.sh")
        print(f"on the device: cd {result.out_dir.name} && python3 -m venv .venv && "
              f".venv/bin/pip install --no-index --find-links wheels {shlex.join(result.install_args)}")
    if result.tarball is not None:
        print(f"wrote {result.tarball}")
    return 0
