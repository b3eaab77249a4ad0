"""Every dashboard page under Streamlit's AppTest: fixtures, filters, bad and empty input.

The app reads the folder named by PER_TRITON_DASHBOARD_RESULTS (what ``--results``
sets when it runs under ``streamlit run``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from per_triton.bench.providers import PROVIDERS
from per_triton.dashboard.context import ENV_EXTRA, ENV_RESULTS
from per_triton.dashboard.pages import PAGES
from per_triton.dashboard.screenshot import committed_copy

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
FIXTURES = Path(__file__).parent / "fixtures" / "dashboard"
GOOD = FIXTURES / "results"
BAD = FIXTURES / "bad"
CHECKOUT_RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"
CHARTS = {p.name: p.charts for p in PAGES}  # training: ours, paper, ratio
TABLES = {p.name: p.tables for p in PAGES}
(DEFAULT,) = (p.name for p in PAGES if p.default)


@pytest.fixture(scope="module")
def committed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed bench/results, without the runs a developer keeps in its local/."""
    return committed_copy(CHECKOUT_RESULTS, tmp_path_factory.mktemp("committed"))


def run_page(page: str, results: Path, monkeypatch: pytest.MonkeyPatch, extra: str = "") -> AppTest:
    """Run the app on ``page`` with ``results`` as the committed folder."""
    monkeypatch.setenv(ENV_RESULTS, str(results))
    monkeypatch.setenv(ENV_EXTRA, extra)
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page != DEFAULT:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> list:
    return list(at.get("vega_lite_chart"))


def table(at: AppTest, index: int = 0):
    """The table behind the ``index``-th chart (inside its expander)."""
    return at.dataframe[index].value


@pytest.mark.parametrize("page", list(CHARTS))
def test_page_draws_its_charts(page: str, monkeypatch: pytest.MonkeyPatch):
    at = run_page(page, GOOD, monkeypatch)
    assert len(charts(at)) == CHARTS[page]
    assert not at.warning and not at.error
    downloads = [b for b in at.download_button if b.label == "Download table (CSV)"]
    assert len(downloads) >= TABLES[page]
    for chart in charts(at):
        assert '"tooltip"' in chart.proto.spec  # every chart has tooltips


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_draws_the_charts_its_screenshot_waits_for(
    page, committed: Path, monkeypatch: pytest.MonkeyPatch
):
    """``committed_charts``: what screenshot.py waits for on the committed results."""
    assert len(charts(run_page(page.name, committed, monkeypatch))) == page.committed_charts


def test_training_filters_change_the_data(monkeypatch: pytest.MonkeyPatch):
    at = run_page("training", GOOD, monkeypatch)
    for key in ("training_gpu", "training_model", "training_dtype", "training_batch"):
        assert at.get("multiselect" if key == "training_gpu" else "selectbox")
        assert key in at.session_state
    before = table(at)
    assert set(before["series"]) == {
        "Fixture GPU A (synthetic) | fixture-a/training.json",
        "Fixture GPU B (synthetic) | fixture-b/training.json",
        "paper, TITAN X (their model)",
    }
    paper = before[before["source"] == "paper"].set_index("method")["median_s"]
    assert paper.to_dict() == {"vanilla": 0.071, "bn": 0.083, "vcl": 0.087, "per": 0.093}

    at.selectbox(key="training_dtype").set_value("bf16-autocast").run()
    after = table(at)
    assert set(after["dtype"].dropna()) - {""} == {"bf16-autocast"}
    assert not after["median_s"].equals(before["median_s"])

    at.multiselect(key="training_gpu").set_value(["Fixture GPU A (synthetic)"]).run()
    at.checkbox(key="training_paper").uncheck().run()
    only_a = table(at)
    assert set(only_a["gpu"]) == {"Fixture GPU A (synthetic)"}
    at.selectbox(key="training_batch").set_value(256).run()
    assert set(table(at)["batch"]) == {256}


def test_kernels_filters_change_the_data(monkeypatch: pytest.MonkeyPatch):
    at = run_page("kernels", GOOD, monkeypatch)
    first = table(at)
    assert first["d"].nunique() == 5 and first["s"].nunique() == 1  # sweeps d by default
    assert set(first["provider"]) == set(PROVIDERS) - {"exact"}  # the fixture has no exact run
    at.radio(key="kernels_axis").set_value("s").run()
    by_s = table(at)
    assert by_s["s"].nunique() == 5 and by_s["d"].nunique() == 1
    at.selectbox(key="kernels_mode").set_value("forward").run()
    assert set(table(at)["mode"]) == {"forward"}
    assert len(charts(at)) == CHARTS["kernels"]


def test_runs_table_and_comparison(monkeypatch: pytest.MonkeyPatch):
    at = run_page("runs", GOOD, monkeypatch)
    runs = at.dataframe[0]
    assert list(runs.proto.column_order)[:5] == ["file", "from", "suite", "device", "sampler"]
    shown = runs.value.set_index("file")
    assert len(shown) == 5 and {"torch", "triton", "cuda", "commit", "command"} <= set(shown)
    # every suite, its device (the GPU's name or cpu) and the sampler a cpu file records
    assert shown.loc["cpu/sweep.json", ["suite", "device", "sampler"]].tolist() == [
        "cpu", "cpu", "c-cached",
    ]  # fmt: skip
    assert shown.loc["fixture-a/kernel.json", ["suite", "device", "sampler"]].tolist() == [
        "kernel", "Fixture GPU A (synthetic)", "-",
    ]  # fmt: skip
    assert shown.loc["cpu/smoke.json", "suite"] == "training"
    assert shown.loc["cpu/sweep.json", "commit"] == "c" * 12
    assert shown.loc["cpu/sweep.json", "date"] == "2026-11-20 10:05"
    # the cpu suite's ratios are not compared as times
    assert not [x for x in at.selectbox(key="runs_a").options if "sweep" in x]
    compared = table(at, 1)
    assert set(compared["suite"]) == {"training"} and len(compared) == 7
    assert compared["ratio_b_over_a"].round(6).eq(1.5).all()
    labels = at.selectbox(key="runs_b").options
    at.selectbox(key="runs_b").set_value(next(x for x in labels if "kernel" in x)).run()
    assert not at.exception and not charts(at)
    assert "no benchmark with the same parameters" in at.info[0].value


def test_closeness_filters_change_the_data(monkeypatch: pytest.MonkeyPatch):
    at = run_page("closeness", GOOD, monkeypatch)
    steps = table(at)
    assert set(steps["layer"]) == {"conv1"} and set(steps["method"]) == {"vanilla", "bn", "per"}
    at.selectbox(key="closeness_layer").set_value("fc1").run()
    assert set(table(at)["layer"]) == {"fc1"}
    summary = at.dataframe[2].value
    assert list(summary["method"]) == ["vanilla", "BN", "PER (fused)"]  # labels, in order
    at.multiselect(key="closeness_methods").set_value(["per"]).run()
    assert set(table(at)["method"]) == {"per"}
    # the two chart tables, the summary per method and per seed: only the methods picked
    assert len(at.dataframe) == 4
    assert list(at.dataframe[2].value["method"]) == ["PER (fused)"]
    assert list(at.dataframe[3].value["method"]) == ["per"]


@pytest.mark.parametrize("page", list(CHARTS))
def test_empty_results_give_a_message(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    at = run_page(page, tmp_path, monkeypatch)
    assert not charts(at) and len(at.info) == 1
    assert at.info[0].value.startswith("No ") and str(tmp_path) in at.info[0].value


@pytest.mark.parametrize("page", ["training", "runs", "closeness"])
def test_malformed_files_are_named_and_the_rest_still_shows(
    page: str, monkeypatch: pytest.MonkeyPatch
):
    at = run_page(page, BAD, monkeypatch)
    warnings = " ".join(w.value for w in at.warning)
    if page == "closeness":
        assert "run.jsonl" in warnings and "line 2" in warnings
        assert "summary.json" in warnings and "not valid JSON" in warnings
    else:
        assert "broken.json" in warnings and "not valid JSON" in warnings
        assert "foreign.json" in warnings and "not a pytest-benchmark file" in warnings
        assert "empty.json" in warnings and "the file is empty" in warnings
        assert "partial.json" in warnings and "'method'" in warnings
    if page == "runs":  # the one usable file is listed; nothing to compare it with
        assert list(at.dataframe[0].value["file"]) == ["partial.json"]
    else:
        assert charts(at)  # the usable records still show


def test_uploaded_files_show_beside_committed_runs(monkeypatch: pytest.MonkeyPatch):
    at = run_page("training", GOOD, monkeypatch)
    doc = json.loads((GOOD / "fixture-b" / "training.json").read_text())
    doc["machine_info"]["gpu"] = "Uploaded GPU (synthetic)"
    at.file_uploader(key="upload").set_value(
        [
            ("mine.json", json.dumps(doc).encode(), "application/json"),
            ("junk.json", b"\x80\x03}q\x00.", "application/json"),  # a pickle
        ]
    ).run()
    assert not at.exception
    shown = table(at)
    assert "Uploaded GPU (synthetic) | upload:mine.json" in set(shown["series"])
    assert "Fixture GPU A (synthetic)" in set(shown["gpu"])  # committed runs still there
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "upload:junk.json" in warnings[0]
    assert "not UTF-8 text" in warnings[0]


def test_extra_files_are_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    extra = tmp_path / "just-made.json"
    extra.write_bytes((GOOD / "cpu" / "smoke.json").read_bytes())
    at = run_page("runs", tmp_path / "none", monkeypatch, extra=f"{extra}")
    runs = at.dataframe[0].value
    assert list(runs["file"]) == ["just-made.json"] and list(runs["source"]) == ["extra"]


def test_extra_file_already_committed_is_shown_once(monkeypatch: pytest.MonkeyPatch):
    committed = GOOD / "cpu" / "smoke.json"
    at = run_page("runs", GOOD, monkeypatch, extra=str(committed))
    files = list(at.dataframe[0].value["file"])
    assert files.count("cpu/smoke.json") == 1
    assert not [f for f in files if "smoke.json" in f and f != "cpu/smoke.json"], files


def test_files_written_by_train_are_skipped_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    run = tmp_path / "my-run"
    run.mkdir()
    (run / "bench.json").write_bytes((GOOD / "cpu" / "smoke.json").read_bytes())
    for name in ("config.json", "summary.json", "overhead.json"):
        (run / name).write_text(json.dumps({"method": "per", "seeds": [0, 1]}))
    at = run_page("runs", tmp_path, monkeypatch)
    assert list(at.dataframe[0].value["file"]) == ["my-run/bench.json"]
    assert not at.warning, [w.value for w in at.warning]


def test_committed_results_load_without_problems(committed: Path):
    """Every committed file is either a run the dashboard lists (training, kernel and cpu
    suites) or a result it knows to leave to people and scripts (script outputs, SASS
    reports): a newcomer's dashboard lists no problems."""
    from per_triton.dashboard import loaders

    results = loaders.load_results(committed)
    assert results.runs and not results.problems, [str(p) for p in results.problems]
    assert {run.source for run in results.runs} == {"committed"}
    by_name = {run.name: run for run in results.runs}
    sweeps = sorted(p.relative_to(committed).as_posix() for p in committed.glob("cpu/*-r1.json"))
    assert sweeps and all(by_name[name].suites == "cpu" for name in sweeps)
    assert by_name["cpu/no-compiler-5acd757-r1.json"].sampler == "c-cached"


def _matrix_record(triton: str, arch: str, regs: int) -> dict:
    return {
        "triton": triton, "arch": arch, "name": "fwd", "role": "fixed", "dtype": "fp32",
        "precision": "tf32", "BLOCK_S": 64, "BLOCK_D": 32, "num_warps": 8, "num_stages": 1,
        "registers": regs, "spill_bytes": 0, "ctas_per_sm": 2, "mma": "wgmma",
        "instr_per_normal": 31.75, "sass_path": None,
    }  # fmt: skip


def test_kernels_without_timings_show_the_static_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """No GPU timings: the compile matrix per architecture, labelled as static counts."""
    (tmp_path / "sass").mkdir()
    records = [_matrix_record("3.6.0", "sm_80", 172), _matrix_record("3.9.0", "sm_80", 170),
               _matrix_record("3.9.0", "sm_90a", 100)]  # fmt: skip
    (tmp_path / "sass" / "matrix.json").write_text(json.dumps(records))
    at = run_page("kernels", tmp_path, monkeypatch)
    infos = [i.value for i in at.info]
    assert any("Static counts from the compiler, not timings" in i for i in infos)
    assert any(i.startswith("No kernel results") for i in infos)  # and why there are no timings
    first = at.dataframe[0].value
    assert list(first["arch"]) == ["sm_80"] and list(first["regs"]) == [172]
    assert {"CTAs/SM", "MMA", "instr/normal", "spill bytes"} <= set(first.columns)
    at.selectbox(key="kernels_static_triton").set_value("3.9.0").run()
    second = at.dataframe[0].value
    assert list(second["arch"]) == ["sm_80", "sm_90a"] and list(second["regs"]) == [170, 100]


def test_kernels_unreadable_static_report_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "sass").mkdir()
    (tmp_path / "sass" / "matrix.json").write_text("{not json")
    at = run_page("kernels", tmp_path, monkeypatch)
    assert any("sass/matrix.json" in w.value for w in at.warning)
    assert not at.dataframe


def test_committed_static_report_covers_every_architecture(
    committed: Path, monkeypatch: pytest.MonkeyPatch
):
    from per_triton.kernels import configs

    at = run_page("kernels", committed, monkeypatch)
    shown = at.dataframe[0].value
    assert set(shown["arch"]) == set(configs.ARCHS)
    assert (shown["spill bytes"] == 0).all()
