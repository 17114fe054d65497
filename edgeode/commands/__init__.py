"""Subcommands of the ``edgeode`` CLI: one module each, with ``add_parser(subparsers)``.

``add_parser`` must set ``func`` (via ``parser.set_defaults(func=run)``) and must not import
heavy packages; ``run(args) -> int`` imports what it needs.
"""
