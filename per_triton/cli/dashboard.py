"""`per-triton dashboard`: start the Streamlit performance dashboard.

Runs ``python -m streamlit run <dashboard/app.py> --server.address HOST
--server.port PORT --server.headless true -- [--results DIR] [--extra FILE ...]``
in place of this process (``os.execv``), so the PID the caller has is Streamlit's:
a SIGTERM to it, or Ctrl-C, stops the dashboard.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from per_triton import paths
from per_triton.cli._args import port


def app_path() -> Path:
    """The dashboard's entry script, wherever the package is installed."""
    if not paths.DASHBOARD_APP.is_file():
        raise SystemExit("per-triton dashboard: the per_triton.dashboard package is missing")
    return paths.DASHBOARD_APP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (127.0.0.1)")
    parser.add_argument(
        "--port", type=port, default=8501, help="port to serve on, 1-65535 (default: 8501)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of result files (default: $PER_TRITON_RESULTS, else the committed "
        "bench/results, shipped in the wheel too; files in its local/ folder are listed "
        "as your own runs)",
    )
    parser.add_argument(
        "--extra",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="another pytest-benchmark JSON to show, e.g. the run just made (repeatable)",
    )


def build_command(args: argparse.Namespace) -> list[str]:
    """The ``streamlit run`` command line for these arguments."""
    results = args.results if args.results is not None else paths.committed_results()
    app_args: list[str] = []
    if results is not None:
        app_args += ["--results", str(Path(results).resolve())]
    for extra in args.extra:
        app_args += ["--extra", str(Path(extra).resolve())]
    return [
        sys.executable, "-m", "streamlit", "run", str(app_path()),
        "--server.address", args.host,
        "--server.port", str(args.port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        "--", *app_args,
    ]  # fmt: skip


def listen_problem(host: str, number: int) -> str | None:
    """Why nothing can listen on ``host:number`` now ("cannot listen on 127.0.0.1:8501
    (Address already in use)"), or None; binds as Streamlit (tornado) would.
    Raises ``socket.gaierror`` when ``host`` does not resolve."""
    infos = socket.getaddrinfo(host, number, type=socket.SOCK_STREAM)
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Streamlit (tornado) does
        try:
            sock.bind(address)
        except OSError as err:
            return f"cannot listen on {host}:{number} ({err.strerror or err})"
    return None


def port_problem(host: str, number: int) -> str | None:
    """Why Streamlit could not listen on ``host:number`` (checked before it starts), or None."""
    try:
        problem = listen_problem(host, number)
    except socket.gaierror as err:
        return f"--host: cannot resolve {host!r}: {err.strerror}"
    if problem:
        return f"--port: {problem}; is another dashboard running? pick another port with --port"
    return None


def run(args: argparse.Namespace) -> int:
    missing = [str(p) for p in args.extra if not Path(p).is_file()]
    if missing:
        print(
            f"per-triton dashboard: --extra file not found: {', '.join(missing)}", file=sys.stderr
        )
        return 2
    if args.results is not None and not Path(args.results).is_dir():
        print(f"per-triton dashboard: --results is not a folder: {args.results}", file=sys.stderr)
        return 2
    problem = port_problem(args.host, args.port)
    if problem:
        print(f"per-triton dashboard: {problem}", file=sys.stderr)
        return 2
    command = build_command(args)
    print(f"per-triton dashboard: http://{args.host}:{args.port}", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)  # does not return: this process becomes Streamlit
    return 0  # reached only when os.execv is replaced (tests)
