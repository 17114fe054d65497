"""``edgeode verify BUNDLE``: check a bundle without running it and print its digest.

Exit 0: intact (strict manifest, every checksum, the manifest against each file's own record, the
seal written at export, and ``--expect-digest`` if given). Exit 2: the first problem, in one line.
"""

from __future__ import annotations

import argparse
import json
import sys

from edgeode.commands.options import add_expect_digest, add_json

HELP = "check a bundle (checksums, manifest vs files, seal) and print its digest"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "verify", help=HELP,
        description=HELP + ". The digest is SHA-256 over every file of the bundle directory; pin it on a fleet with "
        "--expect-digest (run, profile) or edgeode.runtime.load(..., expect_digest=...). Torch-free, runs no model.")
    parser.add_argument("bundle", metavar="BUNDLE", help="bundle directory written by `edgeode export`")
    add_expect_digest(parser)
    add_json(parser, "the digest and what was checked")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from edgeode.runtime.digest import verify_bundle

    check = verify_bundle(args.bundle, expect_digest=args.expect_digest)
    if args.json:
        json.dump({"bundle": str(check.bundle.root), "digest": check.digest, "files": check.files, "intact": True,
                   "artifacts_with_record": list(check.recorded), "artifacts_without_record": list(check.unrecorded)},
                  sys.stdout)
        sys.stdout.write("\n")
        return 0
    print(check.digest)
    note = f"; {len(check.unrecorded)} without a record (manifest unchecked for those)" if check.unrecorded else ""
    print(f"{check.bundle.root}: intact ({check.files} files, {len(check.recorded)} artifact(s) agree with the "
          f"manifest{note})", file=sys.stderr)
    return 0
