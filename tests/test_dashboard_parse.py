"""Dashboard loaders, tables and command, without a running app.

The parsers get the fixture files and hand-made bad inputs; every bad input must
come back as a problem naming the file, never as an exception.
"""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from per_triton.cli import build_parser
from per_triton.cli import dashboard as command
from per_triton.dashboard import charts, frames
from per_triton.dashboard.context import parse_app_args
from per_triton.dashboard.loaders import benchmark_files
from per_triton.dashboard.pages import PAGES
from per_triton.dashboard.parse import (
    parse_benchmark_file,
    parse_closeness_lines,
    parse_summary,
)

FIXTURES = Path(__file__).parent / "fixtures" / "dashboard"
GOOD = FIXTURES / "results"
BAD = FIXTURES / "bad"
TRAINING_A = GOOD / "fixture-a" / "training.json"


def _doc() -> dict:
    return json.loads(TRAINING_A.read_text())


def _runs(*paths: Path):
    runs = []
    for path in paths:
        run, problems = parse_benchmark_file(path.name, path.read_bytes(), "committed")
        assert run is not None and problems == [], problems
        runs.append(run)
    return runs


def test_fixture_files_parse_completely():
    files = benchmark_files(GOOD)
    names = sorted(p.relative_to(GOOD).as_posix() for p in files)
    # the closeness folder (jsonl + summary.json) is not read as benchmark files
    assert names == [
        "cpu/smoke.json", "cpu/sweep.json", "fixture-a/kernel.json", "fixture-a/training.json",
        "fixture-b/training.json",
    ]  # fmt: skip
    run = _runs(TRAINING_A)[0]
    assert run.gpu == "Fixture GPU A (synthetic)"
    assert run.cuda == "12.8" and run.torch == "2.13.0" and run.commit == "a" * 40
    assert "make_fixtures.py" in run.command
    assert len(run.training) == run.benchmarks == 2 * 2 * 2 * 7 and run.kernel == []
    cpu = _runs(GOOD / "cpu" / "smoke.json")[0]
    assert cpu.gpu == "cpu" and cpu.cuda == "-"
    assert (cpu.suites, cpu.sampler) == ("training", "-")  # a training run on the CPU
    assert _runs(GOOD / "fixture-a" / "kernel.json")[0].suites == "kernel"


def test_cpu_suite_file_is_a_run_with_its_sampler():
    doc = json.loads((GOOD / "cpu" / "sweep.json").read_text())
    run = _runs(GOOD / "cpu" / "sweep.json")[0]
    assert (run.suites, run.sampler, run.gpu) == ("cpu", "c-cached", "cpu")
    assert run.training == [] and run.kernel == [] and len(run.cpu) == run.benchmarks == 4
    first = doc["benchmarks"][0]["extra_info"]
    assert run.cpu[0] == {k: first[k] for k in run.cpu[0]}  # the file's values, unchanged
    assert {(r["b"], r["d"], r["s"], r["threads"]) for r in run.cpu} == {
        (8, 650, 64, 1), (8, 650, 64, 2), (32, 4096, 256, 1), (32, 4096, 256, 2),
    }  # fmt: skip
    # older files record the sampler only per benchmark, or not at all
    del doc["machine_info"]["sampler"]
    doc["benchmarks"][1]["extra_info"]["sampler"] = "torch"
    run, problems = parse_benchmark_file("s.json", json.dumps(doc), "committed")
    assert problems == [] and run.sampler == "c-cached, torch"
    for bench in doc["benchmarks"]:
        del bench["extra_info"]["sampler"]
    assert parse_benchmark_file("s.json", json.dumps(doc), "committed")[0].sampler == "-"
    doc["benchmarks"][2]["extra_info"]["ratio"] = "fast"
    run, problems = parse_benchmark_file("s.json", json.dumps(doc), "committed")
    assert len(run.cpu) == 3 and len(problems) == 1 and "'ratio'" in problems[0].message


@pytest.mark.parametrize(
    "data, expected",
    [
        pytest.param(b"", "the file is empty", id="empty"),
        pytest.param(b"   \n", "the file is empty", id="blank"),
        pytest.param(b'{"benchmarks": [', "not valid JSON (line 1", id="truncated"),
        pytest.param(b"\xff\xfe{}", "not UTF-8 text", id="binary"),
        pytest.param(pickle.dumps({"benchmarks": []}), "not", id="pickle-is-not-unpickled"),
        pytest.param(b"[1, 2]", "no 'benchmarks' list", id="list"),
        pytest.param(b'{"name": "x"}', "no 'benchmarks' list", id="foreign"),
        pytest.param(b'{"benchmarks": []}', "no 'machine_info' object", id="no-machine"),
    ],
)
def test_malformed_file_gives_one_problem_naming_it(data: bytes, expected: str):
    run, problems = parse_benchmark_file("odd.json", data, "uploaded")
    assert run is None
    assert len(problems) == 1 and problems[0].file == "odd.json"
    assert expected in problems[0].message


@pytest.mark.parametrize(
    "field, value, expected",
    [
        pytest.param("method", None, "'method' must be a non-empty string", id="no-method"),
        pytest.param("batch", "128", "'batch' must be an integer", id="str-batch"),
        pytest.param("batch", True, "'batch' must be an integer", id="bool-batch"),
        pytest.param("median_s", float("nan"), "'median_s' must be a finite", id="nan"),
        pytest.param("median_s", -1.0, "'median_s' must be positive", id="negative"),
        pytest.param("p20_s", 10.0, "p20_s <= median_s <= p80_s", id="unordered"),
        pytest.param("suite", "other", "not 'training', 'kernel' or 'cpu'", id="foreign-suite"),
    ],
)
def test_bad_benchmark_is_skipped_and_named(field: str, value: object, expected: str):
    doc = _doc()
    doc["benchmarks"][3]["extra_info"][field] = value
    run, problems = parse_benchmark_file("f.json", json.dumps(doc), "committed")
    assert run is not None and len(run.training) == len(doc["benchmarks"]) - 1
    assert len(problems) == 1 and problems[0].file == "f.json"
    assert doc["benchmarks"][3]["name"] in problems[0].message
    assert expected in problems[0].message


def test_many_bad_benchmarks_are_summarised():
    doc = _doc()
    for bench in doc["benchmarks"]:
        del bench["extra_info"]
    run, problems = parse_benchmark_file("f.json", json.dumps(doc), "committed")
    assert run is not None and run.training == []
    assert (
        len(problems) == 4
        and problems[-1].message == f"{len(doc['benchmarks']) - 3} more benchmarks skipped"
    )


def test_closeness_and_summary_parsers():
    records, problems = parse_closeness_lines(
        "c.jsonl", (GOOD / "closeness" / "fixture.jsonl").read_bytes()
    )
    assert problems == [] and len(records) == 3 * 3 * 6
    assert {r["method"] for r in records} == {"vanilla", "bn", "per"}
    records, problems = parse_closeness_lines(
        "bad.jsonl", (BAD / "closeness" / "run.jsonl").read_bytes()
    )
    assert len(records) == 1 and len(problems) == 1 and problems[0].message.startswith("line 2:")
    assert parse_closeness_lines("e.jsonl", b"")[1][0].message == "the file has no records"
    rows, problems = parse_summary(
        "summary.json", (GOOD / "closeness" / "summary.json").read_bytes()
    )
    assert problems == [] and [r["method"] for r in rows] == ["vanilla", "bn", "per"]
    rows, problems = parse_summary("summary.json", b'{"method": "per"}')
    assert rows == [] and "expected a JSON list" in problems[0].message


def test_closeness_null_statistics_are_gaps_not_problems():
    line = {
        "run": "r", "model": "m", "method": "per", "seed": 0, "step": 10, "layer": "l",
        "sw1": None, "mean": 0.1, "var": None, "q25": -1.0, "q50": 0.0, "q75": 1.0,
    }  # fmt: skip
    records, problems = parse_closeness_lines("n.jsonl", json.dumps(line))
    assert problems == [] and len(records) == 1
    assert math.isnan(records[0]["sw1"]) and math.isnan(records[0]["var"])
    assert records[0]["mean"] == 0.1
    line["sw1"] = "high"
    assert parse_closeness_lines("n.jsonl", json.dumps(line))[1][0].message.startswith("line 1:")


def test_ratio_to_vanilla_and_paper_series():
    df = frames.training_frame(_runs(TRAINING_A))
    df = df[(df["model"] == "cnn11") & (df["dtype"] == "float32") & (df["batch"] == 128)]
    table = frames.with_ratio_to_vanilla(df.reset_index(drop=True))
    ratio = dict(zip(table["method"], table["ratio"], strict=True))
    assert ratio["vanilla"] == pytest.approx(1.0) and ratio["per_torch"] == pytest.approx(1.35)
    paper = frames.with_ratio_to_vanilla(frames.paper_frame("cnn11", 128, "float32"))
    assert dict(zip(paper["method"], paper["median_s"], strict=True)) == {
        "vanilla": 0.071, "bn": 0.083, "vcl": 0.087, "per": 0.093,
    }  # fmt: skip
    assert paper.set_index("method")["ratio"]["per"] == pytest.approx(0.093 / 0.071)
    assert set(paper["series"]) == {frames.PAPER_SERIES}


def test_kernel_speedup_and_run_comparison():
    kernel = frames.with_speedup(frames.kernel_frame(_runs(GOOD / "fixture-a" / "kernel.json")))
    speed = kernel.groupby("provider")["speedup"].median()
    assert speed["fused"] == pytest.approx(1.0) and speed["eager"] == pytest.approx(6.0)
    a, b = _runs(TRAINING_A, GOOD / "fixture-b" / "training.json")
    diff = frames.compare_runs(a, b)
    assert len(diff) == 7 and set(diff["suite"]) == {"training"}
    assert diff["ratio_b_over_a"].to_list() == pytest.approx([1.5] * 7)
    assert frames.comparable_pair([_runs(GOOD / "cpu" / "smoke.json")[0], a, b]) == (1, 2)
    assert frames.compare_runs(a, _runs(GOOD / "fixture-a" / "kernel.json")[0]).empty


def test_app_arguments():
    conf = parse_app_args(["--results", "r", "--extra", "x.json", "--extra", "y.json"])
    assert conf.results_dir == Path("r") and conf.extras == (Path("x.json"), Path("y.json"))


def test_command_line(tmp_path: Path):
    extra = tmp_path / "run.json"
    extra.write_text("{}")
    args = build_parser().parse_args(
        ["dashboard", "--port", "9123", "--results", str(GOOD), "--extra", str(extra)]
    )
    cmd = command.build_command(args)
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert Path(cmd[4]).name == "app.py" and Path(cmd[4]).is_file()
    flags = dict(zip(cmd[5 : cmd.index("--") : 2], cmd[6 : cmd.index("--") : 2], strict=True))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "9123"
    assert flags["--server.headless"] == "true"
    assert cmd[cmd.index("--") + 1 :] == ["--results", str(GOOD.resolve()), "--extra", str(extra)]
    missing = build_parser().parse_args(["dashboard", "--extra", str(tmp_path / "nope.json")])
    assert command.run(missing) == 2  # refused before anything starts


def test_command_replaces_itself_with_streamlit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr("os.execv", lambda path, argv: calls.append((path, list(argv))))
    monkeypatch.setattr("subprocess.call", lambda *a, **k: 0)  # never start a real server
    missing = build_parser().parse_args(["dashboard", "--extra", str(tmp_path / "nope.json")])
    assert command.run(missing) == 2 and calls == []  # refused before anything starts
    args = build_parser().parse_args(["dashboard", "--port", "9124", "--results", str(GOOD)])
    command.run(args)
    assert calls == [(sys.executable, command.build_command(args))]


def test_closeness_chart_draws_one_line_per_method_over_its_seeds():
    steps = pd.DataFrame(
        [
            {"run": "digits", "method": method, "seed": seed, "layer": "conv1", "step": step,
             "sw1": 0.1 * seed + step, "mean": 0.0, "var": 1.0}
            for method in ("vanilla", "per") for seed in (0, 1, 2) for step in (0, 10)
        ]
    )  # fmt: skip
    spread = charts.seed_spread(steps).set_index(["method", "step"])
    assert len(spread) == 4  # two methods x two steps, all with the same run
    assert spread.loc[("per", 10), "sw1"] == pytest.approx(10.1)  # mean of 10, 10.1, 10.2
    assert spread.loc[("per", 10), ["sw1_min", "sw1_max"]].tolist() == pytest.approx([10, 10.2])
    assert (spread["seeds"] == 3).all()


def test_dashboard_imports_neither_torch_nor_triton():
    script = f"""
import os, sys
os.environ["PER_TRITON_DASHBOARD_RESULTS"] = {str(GOOD)!r}
import per_triton.dashboard.loaders, per_triton.dashboard.charts, per_triton.dashboard.context
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({str(Path(command.app_path()))!r}, default_timeout=60).run()
assert not at.exception, at.exception
for script in {[p.script for p in PAGES if not p.default]!r}:
    at.switch_page(script).run()
    assert not at.exception, at.exception
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "triton")))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
