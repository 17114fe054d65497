"""The ``edgeode`` command.

Each subcommand lives in :mod:`edgeode.commands` as a module with ``add_parser(subparsers)`` and
``run(args) -> int``. Heavy imports (torch, onnxruntime, ...) happen inside ``run`` only, so
``edgeode --help`` and the device-side commands work where torch is not installed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edgeode import __version__
from edgeode.errors import EdgeodeError

# Order is the order shown by --help: the user's flow, then the tools around it.
COMMANDS = ("quickstart", "train", "export", "run", "profile", "compare", "devices", "pack")

DESCRIPTION = """\
Neural ODEs from training to small devices:

  edgeode quickstart  train -> export -> run -> profile on the bundled digits (the main job)
  edgeode train       train an ODE-Net (adjoint or backprop), RK-Net, ResNet, VGG or spiral model
  edgeode export      export a trained run to an ONNX / TFLite bundle (checked against torch)
  edgeode run         run a bundle with the torch-free runtime (onnxruntime / LiteRT)
  edgeode profile     measure memory, latency and an energy proxy of a bundle for a device profile
  edgeode compare     ODE-Net vs RK-Net vs ResNet vs VGG on a device profile: report and plots
  edgeode devices     list, show and calibrate device profiles
  edgeode pack        build a self-contained package for a device (bundle + wheels, no torch)

Run `edgeode COMMAND --help` for the options of each command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeode", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"edgeode {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"edgeode.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"edgeode.commands.{name}":
                raise
            continue  # command not built yet
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EdgeodeError as exc:
        print(f"edgeode {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgeode {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
