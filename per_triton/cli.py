"""The ``per-triton`` console command: one entry point, one subcommand per job.

Each subcommand lives in ``per_triton/commands/<name>.py`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``; this file only wires them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "bench": "run the pytest-benchmark suites and write result JSON",
    "dashboard": "start the Streamlit dashboard on 127.0.0.1",
    "train": "short training run with the layer monitor on real data",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="per-triton", description="PER regularizer: benchmarks, dashboard, training."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in SUBCOMMANDS.items():
        module = importlib.import_module(f"per_triton.commands.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
