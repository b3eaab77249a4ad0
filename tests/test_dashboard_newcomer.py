"""What a newcomer found hard to read on the dashboard, each fixed and checked
under AppTest: the paper's series on its own axis, legends and values on bars,
the tables' leading columns, the CPU kernels page, closeness hues, seeds and layer."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from per_triton.dashboard import charts, frames
from per_triton.dashboard.context import ENV_EXTRA, ENV_RESULTS
from per_triton.experiments import methods

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
GOOD = Path(__file__).parent / "fixtures" / "dashboard" / "results"


def run_page(page: str, results: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv(ENV_RESULTS, str(results))
    monkeypatch.setenv(ENV_EXTRA, "")
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page != "training":
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def chart_data(at: AppTest, index: int) -> pd.DataFrame:
    """The rows Streamlit sent with the ``index``-th chart (Arrow IPC)."""
    import pyarrow as pa

    proto = list(at.get("vega_lite_chart"))[index].proto
    frames_ = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in proto.datasets]
    return pd.concat(frames_, ignore_index=True)


def layers(spec: dict) -> list[dict]:
    return spec.get("layer", [spec])


def marks(spec: dict) -> list[str]:
    return [m["mark"] if isinstance(m["mark"], str) else m["mark"]["type"] for m in layers(spec)]


def test_training_paper_series_has_its_own_axis_and_bars_show_values(monkeypatch):
    at = run_page("training", GOOD, monkeypatch)
    time, paper, ratio = specs(at)
    ours = set(chart_data(at, 0)["series"])
    assert ours and frames.PAPER_SERIES not in ours  # measured runs only
    assert set(chart_data(at, 1)["series"]) == {frames.PAPER_SERIES}  # the paper, own axis
    assert layers(time)[0]["encoding"]["x"]["field"] == "ms"  # ours in ms, the paper in s
    assert layers(paper)[0]["encoding"]["x"]["field"] == "median_s"
    assert "text" in marks(time) and "text" in marks(paper) and "text" in marks(ratio)
    # every bar is named on the axis: a heading per run, then the methods' labels
    assert f"{frames.PAPER_SERIES}{charts.SEP}PER (fused)" in set(chart_data(at, 2)["row"])
    axis_rows = layers(ratio)[0]["encoding"]["y"]["scale"]["domain"]
    assert axis_rows[-5:] == [frames.PAPER_SERIES] + [
        f"{frames.PAPER_SERIES}{charts.SEP}{label}"
        for label in ("vanilla", "BN", "VCL", "PER (fused)")
    ]
    assert frames.PAPER_SERIES in set(chart_data(at, 2)["series"])  # ratios compare: both
    at.checkbox(key="training_paper").uncheck().run()
    assert len(specs(at)) == 2  # no paper panel when the paper is hidden


def test_tables_lead_with_method_and_time(monkeypatch):
    at = run_page("training", GOOD, monkeypatch)
    time_table, ratio_table = at.dataframe[0].proto, at.dataframe[1].proto
    assert list(time_table.column_order)[:2] == ["method", "median_s"]
    assert list(ratio_table.column_order)[:2] == ["method", "ratio"]
    at = run_page("closeness", GOOD, monkeypatch)
    assert list(at.dataframe[0].proto.column_order)[:4] == ["method", "seed", "step", "sw1"]


def test_kernels_page_without_results_says_a_gpu_is_needed(tmp_path: Path, monkeypatch):
    at = run_page("kernels", tmp_path, monkeypatch)
    message = at.info[0].value
    assert "needs a CUDA GPU" in message and "per-triton bench --suite kernel" in message
    assert "not costs" in message  # what a CPU run of the suite gives


def test_kernels_page_marks_cpu_results_as_not_costs(tmp_path: Path, monkeypatch):
    doc = json.loads((GOOD / "fixture-a" / "kernel.json").read_text())
    doc["machine_info"]["gpu"] = "cpu"
    (tmp_path / "kernel-quick.json").write_text(json.dumps(doc))
    at = run_page("kernels", tmp_path, monkeypatch)
    assert any("not a cost measurement" in w.value for w in at.warning)
    at = run_page("kernels", GOOD, monkeypatch)  # GPU results: no such warning
    assert not at.warning


def method_styles(spec: dict, channel: str) -> dict[str, object]:
    """Label -> value of every ``channel`` scale (domain, range) in a chart's layers."""
    out: dict[str, object] = {}
    for layer in layers(spec):
        scale = layer["encoding"].get(channel, {}).get("scale", {})
        out |= dict(zip(scale.get("domain", []), scale.get("range", []), strict=True))
    return out


def test_closeness_lines_tell_methods_apart_by_colour_dash_and_marker(monkeypatch):
    at = run_page("closeness", GOOD, monkeypatch)
    lines, by_layer = specs(at)
    shown = ["vanilla", "bn", "per"]  # the fixture's methods
    want = {methods.label(m): m for m in shown}
    assert method_styles(lines, "color") == {k: methods.colour(m) for k, m in want.items()}
    assert method_styles(lines, "strokeDash") == {k: methods.dash(m) for k, m in want.items()}
    assert method_styles(lines, "shape") == {k: methods.marker(m) for k, m in want.items()}
    assert method_styles(by_layer, "color") == method_styles(lines, "color")
    fields = {m["encoding"].get("strokeDash", {}).get("field") for m in layers(lines)}
    assert "seed" not in fields  # seeds are a band now, not dash patterns
    data = chart_data(at, 0)
    assert {"sw1_min", "sw1_max", "seeds"} <= set(data.columns)  # mean line, min-max band


def test_a_method_has_one_colour_and_label_on_every_page(monkeypatch):
    """Training, Runs and Closeness: each method label maps to the methods module's colour."""
    seen: dict[str, set[str]] = {}
    for page in ("training", "runs", "closeness"):
        at = run_page(page, GOOD, monkeypatch)
        for spec in specs(at):
            for name, hue in method_styles(spec, "color").items():
                seen.setdefault(name, set()).add(hue)
    by_label = {methods.label(m): methods.colour(m) for m in methods.METHODS}
    assert {"vanilla", "BN", "PER (fused)"} <= set(seen)
    for name, hues in seen.items():
        assert hues == {by_label[name]}, (name, hues)


def test_closeness_default_layer_is_where_methods_differ_most():
    rows = [
        {"run": "r", "method": m, "seed": s, "step": step, "layer": layer, "sw1": sw1}
        for s in (0, 1)
        for step in (0, 10)
        for layer, gap in (("a", 0.01), ("b", 0.5), ("c", 0.1))
        for m, sw1 in (("vanilla", 1.0 + gap * (step > 0)), ("per", 1.0))
    ]
    df = pd.DataFrame(rows)
    assert frames.most_distinct_layer(df) == "b"
    assert frames.most_distinct_layer(df[df["method"] == "per"]) == "a"  # one method: first
    assert frames.most_distinct_layer(df.iloc[:0]) is None


def test_closeness_page_opens_on_the_most_distinct_layer(tmp_path: Path, monkeypatch):
    folder = tmp_path / "closeness"
    folder.mkdir()
    lines = []
    for layer, gap in (("l1", 0.0), ("l2", 0.9), ("l3", 0.2)):
        for method, extra in (("vanilla", gap), ("per", 0.0)):
            for step in (0, 5):
                rec = dict.fromkeys(("mean", "var", "q25", "q50", "q75"), 0.0)
                rec |= {"run": "x", "model": "m", "method": method, "seed": 0, "step": step}
                lines.append(rec | {"layer": layer, "sw1": 0.5 + extra * step / 5})
    (folder / "x.jsonl").write_text("\n".join(json.dumps(r) for r in lines))
    at = run_page("closeness", tmp_path, monkeypatch)
    assert at.selectbox(key="closeness_layer").value == "l2"


def test_runs_table_fits_and_commands_are_shown_in_full(monkeypatch):
    at = run_page("runs", GOOD, monkeypatch)
    runs = at.dataframe[0]
    assert "command" not in list(runs.proto.column_order)
    assert "command" in runs.value.columns  # still in the data and the CSV
    text = " ".join(m.value for m in at.markdown)
    for command in runs.value["command"]:
        assert f"`{command}`" in text


def test_script_result_files_beside_the_benchmarks_are_skipped_quietly(tmp_path: Path, monkeypatch):
    """Committed results of the project's scripts (a ``command``, no ``benchmarks``) are
    not warned about; the same file given with --extra still is."""
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "smoke.json").write_bytes((GOOD / "cpu" / "smoke.json").read_bytes())
    script = tmp_path / "cpu" / "exact-cpu.json"
    script.write_text(json.dumps({"command": "python bench/cpu_exact.py", "loss": {}}))
    (tmp_path / "cpu" / "foreign.json").write_text(json.dumps({"hello": 1}))
    at = run_page("runs", tmp_path, monkeypatch)
    warned = " ".join(w.value for w in at.warning)
    assert "exact-cpu.json" not in warned and "foreign.json" in warned
    assert list(at.dataframe[0].value["file"]) == ["cpu/smoke.json"]
    extra = tmp_path.parent / f"{tmp_path.name}-exact-cpu.json"
    extra.write_bytes(script.read_bytes())  # outside the committed folder
    monkeypatch.setenv(ENV_EXTRA, str(extra))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/runs.py").run()
    assert any(extra.name in w.value for w in at.warning)
