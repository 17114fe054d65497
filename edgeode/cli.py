"""The ``edgeode`` command.

Each subcommand lives in :mod:`edgeode.commands` as a module with ``add_parser(subparsers)`` and
``run(args) -> int``. Heavy imports (torch, onnxruntime, ...) happen inside ``run`` only, so
``edgeode --help`` and the device-side commands work where torch is not installed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from edgeode import __version__
from edgeode.errors import EdgeodeError, did_you_mean

# The order --help lists them in: the main job, then the user's flow (train -> export -> run -> verify ->
# profile / compare / tune -> pack), then the device profiles. A name whose module does not exist
# yet is skipped, so a command lands by adding its module.
COMMANDS = ("quickstart", "train", "export", "run", "verify", "profile", "compare", "tune", "pack", "devices")

DESCRIPTION = """\
Neural ODEs from training to small devices. The flow: train -> export -> run -> profile -> pack
(`edgeode quickstart` runs the first four on the bundled digits in one command).

Options mean the same in every command: -o/--out PATH (where results go), --overwrite, -q/--quiet
(no progress), --json (JSON on stdout), -d/--device NAME (a profile from `edgeode devices`).
"""

EPILOG = "Run `edgeode COMMAND --help` for the options of each command."


class Parser(argparse.ArgumentParser):
    """argparse with "did you mean ...?" on a mistyped choice (subcommand, backend, mode, model, ...)."""

    def _check_value(self, action: argparse.Action, value) -> None:
        if action.choices is not None and value not in action.choices:
            choices = [str(c) for c in action.choices]
            raise argparse.ArgumentError(
                action, f"invalid choice: {value!r}{did_you_mean(str(value), choices)}; choose from {', '.join(choices)}")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps each command's help on its own line: argparse measures the command names without the
    indent it then prints them with, so "quickstart" would wrap."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction) and action.choices:
            longest = max(len(name) for name in action.choices)
            self._action_max_length = max(self._action_max_length, longest + self._current_indent + 2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="edgeode", description=DESCRIPTION, epilog=EPILOG, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"edgeode {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
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
    try:
        # Inside the guard: building the parser imports every command module (~0.1 s), and a Ctrl-C that
        # lands then should end like one that lands later, with one line and 130, not a traceback.
        parser = build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("edgeode: interrupted", file=sys.stderr)
        return 130
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe shows here, not as "Exception ignored" at exit
        return code
    except BrokenPipeError:
        # `edgeode run ... | head`: the reader has gone; stop quietly, as a C tool killed by SIGPIPE would.
        # Point stdout at /dev/null so the interpreter's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except EdgeodeError as exc:
        print(f"edgeode {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgeode {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
