"""What a person reads on the dashboard, under AppTest: the Training page's header says
when it shows CPU smoke data and what gives a cost, the Runs page says where each file
came from (never "committed" for the user's own file), the Closeness summary shows
every method, in the methods' labels and order, and the Kernels page's log axes are
labelled at 1, 2 and 5 per decade (a ratio axis shows its 1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from per_triton.dashboard import charts, frames, widgets
from per_triton.dashboard.context import ENV_EXTRA, ENV_RESULTS

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
GOOD = Path(__file__).parent / "fixtures" / "dashboard" / "results"
SMOKE = GOOD / "cpu" / "smoke.json"


def run_page(page: str, results: Path, monkeypatch: pytest.MonkeyPatch, extra: str = "") -> AppTest:
    monkeypatch.setenv(ENV_RESULTS, str(results))
    monkeypatch.setenv(ENV_EXTRA, extra)
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page != "training":
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _has_filter(node) -> bool:
    if getattr(node, "type", "") in ("multiselect", "selectbox"):
        return True
    return any(_has_filter(c) for c in getattr(node, "children", {}).values())


def header_blocks(at: AppTest) -> list:
    """The main area's elements before the first filter (the title and what is under it)."""
    out = []
    for node in at.main.children.values():
        if _has_filter(node):
            break
        out.append(node)
    return out


def texts(nodes) -> str:
    """Every text value under ``nodes`` (a tree walk over AppTest's elements)."""
    found = []
    for node in nodes:
        value = getattr(node, "value", None)
        if isinstance(value, str):
            found.append(value)
        found.append(texts(getattr(node, "children", {}).values()))
    return " ".join(found)


def test_training_header_says_cpu_smoke_data_and_how_to_get_a_cost(tmp_path: Path, monkeypatch):
    (tmp_path / "cpu").mkdir()
    shutil.copy(SMOKE, tmp_path / "cpu" / "smoke.json")
    at = run_page("training", tmp_path, monkeypatch)
    header = texts(header_blocks(at))
    assert "CPU smoke data, not a cost" in header and "Every run shown" in header
    assert f"`{widgets.GPU_COMMAND}`" in header and "CUDA GPU" in header
    assert "CPU files are smoke tests" not in texts([at.main])  # no longer small print below


def test_training_header_marks_cpu_runs_beside_gpu_runs(tmp_path: Path, monkeypatch):
    (tmp_path / "cpu").mkdir()
    shutil.copy(SMOKE, tmp_path / "cpu" / "smoke.json")
    doc = json.loads(SMOKE.read_text())
    doc["machine_info"]["gpu"] = "Fixture GPU Z (synthetic)"
    (tmp_path / "gpu.json").write_text(json.dumps(doc))
    at = run_page("training", tmp_path, monkeypatch)
    assert "The runs marked `cpu`" in texts(header_blocks(at))
    at.multiselect(key="training_gpu").set_value(["Fixture GPU Z (synthetic)"]).run()
    assert "smoke" not in texts(header_blocks(at))  # GPU runs only: no notice


def test_runs_page_names_where_each_file_came_from(tmp_path: Path, monkeypatch):
    extra = tmp_path / "my-run.json"
    extra.write_bytes(SMOKE.read_bytes())
    results = tmp_path / "results"
    shutil.copytree(GOOD, results)
    (results / "local" / "cpu").mkdir(parents=True)  # where per-triton bench writes
    shutil.copy(SMOKE, results / "local" / "cpu" / "training-quick-x.json")
    at = run_page("runs", results, monkeypatch, extra=str(extra))
    runs = at.dataframe[0]
    assert "from" in list(runs.proto.column_order)
    origin = dict(zip(runs.value["file"], runs.value["from"], strict=True))
    assert origin["my-run.json"] == "--extra"
    assert origin["fixture-a/training.json"] == "results folder"
    assert origin["local/cpu/training-quick-x.json"] == "your run (local/)"
    shown = texts(at.main) + " ".join(str(v) for v in runs.value["from"])
    assert "committed" not in shown.lower()


def test_runs_versions_leave_out_a_cuda_that_was_not_recorded():
    run = frames.Run(
        name="x.json", source="extra", gpu="cpu", torch="2.13.0", triton="3.9.0", cuda="-",
        command="", commit="", dirty=False, datetime="", benchmarks=0,
    )  # fmt: skip
    assert frames.versions(run) == "torch 2.13.0 · triton 3.9.0"
    run.cuda = "12.8"
    assert frames.versions(run) == "torch 2.13.0 · triton 3.9.0 · cuda 12.8"


def test_summary_by_method_counts_seeds_and_spans_accuracy():
    summary = pd.DataFrame(
        [
            {"method": "per", "seed": 0, "test_accuracy": 0.9, "final_loss": 0.2},
            {"method": "per", "seed": 1, "test_accuracy": 0.8, "final_loss": 0.4},
            {"method": "vanilla", "seed": 0, "test_accuracy": 0.7, "final_loss": 1.0},
        ]
    )
    out = frames.summary_by_method(summary)
    assert list(out["method"]) == ["vanilla", "PER (fused)"]  # the project's order, labels
    per = out.iloc[1]
    assert per["seeds"] == 2 and per["accuracy_min"] == 0.8 and per["accuracy_max"] == 0.9
    assert per["accuracy_mean"] == pytest.approx(0.85)
    assert per["final_loss_mean"] == pytest.approx(0.3)


def test_closeness_summary_lists_every_seed(tmp_path: Path, monkeypatch):
    folder = tmp_path / "closeness"
    shutil.copytree(GOOD / "closeness", folder)
    rows = [
        {"method": m, "seed": s, "test_accuracy": 0.5, "final_loss": 1.0}
        for m in ("vanilla", "bn", "per")  # the fixture's methods
        for s in range(5)
    ]
    (folder / "summary.json").write_text(json.dumps(rows))
    at = run_page("closeness", tmp_path, monkeypatch)
    assert len(at.dataframe[3].value) == 15  # the browser test checks it does not scroll


def test_log_axes_span_whole_decades_labelled_1_2_5():
    assert charts.log_ticks([0.5, 6.0, float("nan"), 0.0, -1.0]) == [
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
    ]  # fmt: skip
    assert charts.log_ticks([1.7]) == [1.0, 2.0, 5.0, 10.0]  # a decade at least
    assert charts.log_ticks([1.0, 10.0]) == [1.0, 2.0, 5.0, 10.0]  # powers are their own ends
    # past 4 decades only the powers: 13 labels in 300 px would crowd
    assert charts.log_ticks([3e-7, 0.5]) == [1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0]
    assert charts.log_ticks([0.0, float("nan")]) == []


def test_kernel_speedup_axis_labels_the_reference_1():
    speed = pd.DataFrame(
        {"provider": ["eager", "compile", "eager", "compile"], "d": [256, 256, 1024, 1024],
         "speedup": [5.5, 0.6, 5.2, 0.58], "series": "gpu | k.json", "mode": "full", "b": 128,
         "s": 256, "dtype": "float32"}
    )  # fmt: skip
    spec = charts.kernel_lines(speed, "d", "speedup", "x fused", band=False, ref=1.0).to_dict()
    y = spec["layer"][0]["encoding"]["y"]
    assert y["axis"]["values"] == [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
    assert y["scale"] == {"type": "log", "domain": [0.1, 10.0], "nice": False}
