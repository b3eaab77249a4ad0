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


# -- a mistyped flag or command: named, with the closest valid one ------------------------


def _refused(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run the command; it must exit 2 and print nothing on stdout. Returns stderr."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    assert exc.value.code == 2 and out.out == ""
    return out.err


def test_mistyped_top_level_flag_suggests_version(capsys: pytest.CaptureFixture) -> None:
    for argv in (["--verison"], ["--verison", "bench"], ["--vresion", "train", "--tiny"]):
        err = _refused(argv, capsys)
        assert err.startswith("usage: per-triton [-h] [--version] COMMAND")  # top-level usage
        assert (
            f"per-triton: error: unrecognized arguments: {argv[0]} (did you mean --version?)" in err
        )
        assert "required: COMMAND" not in err  # not argparse's misleading "missing command"


@pytest.mark.parametrize(
    ("argv", "typo", "meant"),
    [
        (["bench", "--quik"], "--quik", "--quick"),
        (["bench", "--suit", "cpu"], "--suit cpu", "--suite"),  # the value stays in the message
        (["bench", "--devise=cpu"], "--devise=cpu", "--device"),
        (["train", "--tinny"], "--tinny", "--tiny"),
        (["train", "--epoch", "2"], "--epoch 2", "--epochs"),
        (["dashboard", "--prot", "8600"], "--prot 8600", "--port"),
    ],
)
def test_mistyped_subcommand_flag_suggests_with_that_subcommands_usage(
    argv: list[str], typo: str, meant: str, capsys: pytest.CaptureFixture
) -> None:
    err = _refused(argv, capsys)
    command = argv[0]
    assert err.startswith(f"usage: per-triton {command} ")
    assert (
        f"per-triton {command}: error: unrecognized arguments: {typo} (did you mean {meant}?)"
        in err
    )


def test_two_typos_get_one_suggestion_each(capsys: pytest.CaptureFixture) -> None:
    err = _refused(["train", "--tinny", "--epoch", "2"], capsys)
    assert "(did you mean --tiny for --tinny, --epochs for --epoch?)" in err


def test_a_flag_like_none_gets_no_suggestion(capsys: pytest.CaptureFixture) -> None:
    err = _refused(["bench", "--zzzzzz"], capsys)
    assert "unrecognized arguments: --zzzzzz\n" in err and "did you mean" not in err
    err = _refused(["--zzzzzz"], capsys)
    assert "unrecognized arguments: --zzzzzz\n" in err and "did you mean" not in err


def test_mistyped_command_suggests_the_closest(capsys: pytest.CaptureFixture) -> None:
    err = _refused(["bnch", "--quick"], capsys)
    assert (
        "invalid choice: 'bnch' (choose from bench, dashboard, train); did you mean bench?" in err
    )
    err = _refused(["xyz"], capsys)
    assert "invalid choice: 'xyz'" in err and "did you mean" not in err


def test_console_command_suggests_too() -> None:
    """The real entry point (argv from sys.argv), as a user runs it."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "per_triton.cli", "bench", "--quik"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("usage: per-triton bench ")
    assert "unrecognized arguments: --quik (did you mean --quick?)" in proc.stderr


def _main_sh_port_check() -> str:
    """The port check scripts/main.sh runs (its ``<<'PY'`` block) before the benchmark."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "scripts" / "main.sh").read_text()
    return text.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]


@pytest.mark.parametrize("value", ["busy", "abc", "0"])
def test_main_sh_refuses_a_bad_or_taken_port_before_the_benchmark(value: str) -> None:
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        given = str(sock.getsockname()[1]) if value == "busy" else value
        done = subprocess.run(
            [sys.executable, "-", given],
            input=_main_sh_port_check(),
            capture_output=True,
            text=True,
        )
    assert done.returncode == 1
    assert f"PORT={given}" in done.stderr or f"PORT={given!r}" in done.stderr
    assert "set PORT=8600" in done.stderr and "NO_DASHBOARD=1" in done.stderr


def test_main_sh_port_check_passes_a_free_port() -> None:
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = str(sock.getsockname()[1])
    done = subprocess.run([sys.executable, "-", free], input=_main_sh_port_check(), text=True)
    assert done.returncode == 0
