"""What a newcomer meets first on the command line: refusals before anything starts,
help that states every default."""

from __future__ import annotations

import socket
import sys

import pytest

from per_triton.cli import build_parser, main
from per_triton.cli import dashboard as dashboard_cmd
from per_triton.experiments.methods import DEFAULT_TRAIN_METHODS


@pytest.fixture
def no_exec(monkeypatch: pytest.MonkeyPatch) -> list:
    """Record os.execv calls instead of starting Streamlit."""
    calls: list = []
    monkeypatch.setattr("os.execv", lambda path, argv: calls.append((path, list(argv))))
    return calls


@pytest.mark.parametrize("value", ["99999", "0", "-1", "http"])
def test_dashboard_bad_port_is_refused_before_streamlit(
    value: str, no_exec: list, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["dashboard", "--port", value])
    assert exc.value.code == 2 and no_exec == []
    err = capsys.readouterr()
    assert "argument --port" in err.err and "Traceback" not in err.err
    assert "http://" not in err.out  # no URL for a server that never starts


def test_dashboard_busy_port_is_refused_before_the_url(
    no_exec: list, capsys: pytest.CaptureFixture
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["dashboard", "--port", str(port)]) == 2
    err = capsys.readouterr()
    assert no_exec == [] and "http://" not in err.out
    assert f"--port: cannot listen on 127.0.0.1:{port}" in err.err


def test_dashboard_free_port_starts_streamlit(no_exec: list) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert dashboard_cmd.port_problem("127.0.0.1", port) is None
    main(["dashboard", "--port", str(port)])
    assert no_exec and no_exec[0][0] == sys.executable
    assert ["--server.port", str(port)] == no_exec[0][1][7:9]


def _options(command: str):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return [a for a in sub.choices[command]._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("command", ["train", "bench", "dashboard"])
def test_every_option_has_help(command: str) -> None:
    missing = [a.option_strings[0] for a in _options(command) if not a.help]
    assert missing == []


def test_train_help_states_every_default() -> None:
    """Every train flag that takes a value says its default (or --tiny's)."""
    no_default = [
        a.option_strings[0]
        for a in _options("train")
        if a.nargs != 0 and "default" not in (a.help or "")
    ]
    assert no_default == []
    text = build_parser().parse_known_args(["train"])[0]._parser.format_help()
    methods = ",".join(DEFAULT_TRAIN_METHODS)
    for shown in ("(default: 0.1)", "(default: 0.001)", f"(default: {methods})"):
        assert shown in " ".join(text.split())
