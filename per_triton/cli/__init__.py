"""The ``per-triton`` console command: one entry point, one subcommand per job.

Each subcommand lives in ``per_triton/cli/<name>.py`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``; this file only wires them.
``per-triton --version`` prints the installed version; a flag a subcommand does not
know is reported with that subcommand's usage (exit 2), not the top-level one, and a
mistyped flag or command with the closest valid one ("did you mean --version?").
"""

from __future__ import annotations

import argparse
import importlib
import sys

from per_triton import __version__
from per_triton.cli._args import check_command_line, unrecognized

SUBCOMMANDS = {
    "bench": "run the pytest-benchmark suites and write result JSON",
    "dashboard": "start the Streamlit dashboard on 127.0.0.1",
    "train": "short training run with the layer monitor on real data",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per entry of :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="per-triton",
        description="PER regularizer: benchmarks, dashboard, training.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"per-triton {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in SUBCOMMANDS.items():
        module = importlib.import_module(f"per_triton.cli.{name}")
        # allow_abbrev=False: a mistyped flag (--suit) is an error, not --suite
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the chosen subcommand.

    Returns the subcommand's exit status. Raises ``SystemExit(2)`` with the
    subcommand's usage for an argument it does not know (naming the closest flag it
    has), and with the top-level usage for an unknown top-level flag or command.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    check_command_line(parser, argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        args._parser.error(unrecognized(args._parser, unknown))
    return int(args._run(args) or 0)
