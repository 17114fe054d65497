"""The options every ``edgeode`` command spells the same way (the one CLI dialect).

One meaning, one name, across all commands:

    -o/--out PATH     where the command writes its result (old spelling --output: accepted, noted)
    --overwrite       replace an existing result, only after the new one is complete (old: --force)
    -q/--quiet        no progress bars or stage lines on stderr
    --json            one JSON document on stdout instead of the text report
    -d/--device NAME  a device profile (see ``edgeode devices``); an unknown name gets "did you mean"

Commands add these through the helpers below rather than calling ``add_argument`` themselves, so a
new command (or a new flag on an old one) cannot drift into a dialect of its own. Old spellings stay
accepted, hidden from ``--help``, and print one deprecation note on stderr when used.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option: stores like the new one and says once, on stderr, what to type now."""

    def __init__(self, option_strings, dest, replacement: str, nargs=None, const=None, **kwargs: Any) -> None:
        self.replacement = replacement
        super().__init__(option_strings, dest, nargs=nargs, const=const, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog}: note: {option_string} is deprecated; use {self.replacement}", file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_out(p: argparse.ArgumentParser, *, metavar: str, help: str, required: bool = False,
            default: str | None = None) -> None:
    """``-o/--out PATH`` (``args.out``); ``--output`` is the deprecated spelling."""
    target = p.add_mutually_exclusive_group(required=required)
    target.add_argument("-o", "--out", dest="out", metavar=metavar, default=default, help=help)
    target.add_argument("--output", dest="out", metavar=metavar, action=DeprecatedAlias, replacement="-o/--out",
                        help=argparse.SUPPRESS)


def add_overwrite(p: argparse.ArgumentParser, what: str) -> None:
    """``--overwrite`` (``args.overwrite``); ``--force`` is the deprecated spelling."""
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace {what} if it exists (only after the new one is complete)")
    p.add_argument("--force", dest="overwrite", nargs=0, const=True, action=DeprecatedAlias,
                   replacement="--overwrite", help=argparse.SUPPRESS)


def add_quiet(p: argparse.ArgumentParser) -> None:
    """``-q/--quiet`` (``args.quiet``): no progress on stderr; results and errors still print."""
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or stage lines on stderr")


def add_json(p: argparse.ArgumentParser, what: str = "the result", dest: str = "json") -> None:
    """``--json`` (``args.json``): one JSON document on stdout instead of the text report."""
    p.add_argument("--json", action="store_true", dest=dest, help=f"print {what} as JSON on stdout instead of text")


def device_name(text: str) -> str:
    """argparse type of ``--device``: a known profile name (``NAME`` or ``NAME:VARIANT``), else a usage error
    with the closest names. Only file names are looked at here; the profile is read and validated later."""
    from edgeode.devices.profiles import profile_names
    from edgeode.errors import did_you_mean

    names = profile_names()
    if text.partition(":")[0] not in names:
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r}{did_you_mean(text.partition(':')[0], names)}; known devices: "
            f"{', '.join(names)} (see `edgeode devices`)")
    return text


def add_device(p: argparse.ArgumentParser, *, default: str | None = None, required: bool = False,
               help: str | None = None) -> None:
    """``-d/--device NAME`` (``args.device``), checked against the known profiles at parse time."""
    text = help or "device profile (see `edgeode devices`), e.g. pi-4b or pi-4b:8gb"
    if default is not None:
        text += f" (default {default})"
    p.add_argument("-d", "--device", type=device_name, default=default, required=required, metavar="NAME", help=text)


def add_expect_digest(p: argparse.ArgumentParser) -> None:
    """``--expect-digest DIGEST`` (``args.expect_digest``): run only the bundle a fleet pinned (run, profile, verify)."""
    p.add_argument("--expect-digest", default=None, metavar="DIGEST",
                   help="refuse any bundle whose digest (as `edgeode verify BUNDLE` prints it) is not DIGEST")
