"""`per-triton bench --quick --device cpu`: runs the training suite and writes a valid
result file (docs/design.md, "Benchmark result files"); helpers of bench/common.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from per_triton.bench.common import machine_folder, percentile, percentiles
from per_triton.cli import main
from per_triton.cli.bench_tables import training_table
from per_triton.experiments.baselines import METHODS

REPO = Path(__file__).resolve().parents[1]
TRAINING_KEYS = {
    "suite", "model", "method", "batch", "dtype", "num_slices", "device",
    "median_s", "p20_s", "p80_s",
}  # fmt: skip


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")  # one thread per xdist worker in CI
    return subprocess.run(
        [sys.executable, "-m", "per_triton.cli", "bench", *args],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip


def test_bench_quick_cpu_writes_valid_json(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    proc = _run("--quick", "--device", "cpu", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "x vanilla" in proc.stdout and "PASSED" in proc.stdout  # table and progress
    # no pytest-benchmark table (relative to the fastest) and no temporary JSON path
    assert "Name (time in" not in proc.stdout and "Wrote benchmark data" not in proc.stdout
    assert proc.stdout.count(str(out)) == 1 and tempfile.gettempdir() + "/tmp" not in proc.stdout
    assert "NOT A COST MEASUREMENT" in proc.stdout  # a CPU smoke run says so

    data = json.loads(out.read_text())
    info = data["machine_info"]
    assert info["gpu"] == "cpu" and info["torch"] == torch.__version__
    assert info["cuda"] == torch.version.cuda and "triton" in info
    assert info["command"].startswith("per-triton bench --suite training --device cpu --quick")
    assert "commit_info" in data and "smoke test" in info["note"] and "CPU" in info["note"]

    benches = data["benchmarks"]
    seen = set()
    for b in benches:
        extra = b["extra_info"]
        assert extra.keys() >= TRAINING_KEYS, b["name"]
        assert extra["suite"] == "training" and extra["device"] == "cpu"
        assert 0 < extra["p20_s"] <= extra["median_s"] <= extra["p80_s"]
        for part in (extra["model"], extra["method"], f"b{extra['batch']}", extra["dtype"],
                     f"s{extra['num_slices']}", "cpu"):  # fmt: skip
            assert part in b["name"], (part, b["name"])
        seen.add((extra["model"], extra["method"], extra["dtype"]))
    models = {m for m, _, _ in seen}
    assert len(seen) == len(benches) == len(models) * len(METHODS) * 2
    assert {m for _, m, _ in seen} == set(METHODS)
    assert {d for _, _, d in seen} == {"float32", "bf16-autocast"}


def test_bench_out_folder_is_named_after_the_machine(tmp_path: Path) -> None:
    proc = _run("--quick", "--device", "cpu", "--out", str(tmp_path), "-k", "cnn11-vanilla")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = list((tmp_path / "cpu").glob("training-quick-*.json"))
    assert len(files) == 1
    assert len(json.loads(files[0].read_text())["benchmarks"]) == 2  # float32, bf16


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_bench_cuda_without_gpu_fails_clearly(capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_training_table_ratios() -> None:
    def bench(method: str, t: float) -> dict:
        extra = {"suite": "training", "model": "cnn11", "dtype": "float32", "method": method,
                 "median_s": t}  # fmt: skip
        return {"name": method, "extra_info": extra, "stats": {"median": t}}

    table = training_table([bench("per_torch", 0.3), bench("vanilla", 0.1), bench("per", 0.1025)])
    lines = [line.split() for line in table.splitlines() if line.startswith("cnn11")]
    assert [row[2] for row in lines] == ["vanilla", "per", "per_torch"]
    assert [row[4] for row in lines] == ["1.000", "1.025", "3.000"]
    assert "per speed-up over per_torch: 2.93x" in table


def test_percentiles_and_folder() -> None:
    assert percentile([5, 1, 4, 2, 3], 20) == pytest.approx(1.8)
    assert percentiles([1.0, 2.0, 3.0]) == {"median_s": 2.0, "p20_s": 1.4, "p80_s": 2.6}
    assert machine_folder("cpu") == "cpu"


def test_interrupted_benchmark_is_left_out_of_the_result_file() -> None:
    """bench/conftest.py drops a benchmark cut off before its first timed round."""
    import importlib.util
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location(
        "bench_conftest", Path(__file__).resolve().parents[1] / "bench" / "conftest.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    done = SimpleNamespace(stats=[0.1], extra_info={"median_s": 0.1})
    cut_in_round = SimpleNamespace(stats=[], extra_info={})
    cut_before_stats = SimpleNamespace(stats=[0.2], extra_info={})
    bench_session = SimpleNamespace(benchmarks=[done, cut_in_round, cut_before_stats])
    session = SimpleNamespace(config=SimpleNamespace(_benchmarksession=bench_session))
    hook = (
        module.pytest_sessionfinish.__wrapped__
        if hasattr(module.pytest_sessionfinish, "__wrapped__")
        else module.pytest_sessionfinish
    )
    gen = hook(session, 2)
    next(gen)  # the part that runs before pytest-benchmark writes the JSON
    assert bench_session.benchmarks == [done]


def test_bad_rounds_is_rejected_naming_the_flag(capsys: pytest.CaptureFixture) -> None:
    for value in ("0", "-2", "x"):
        with pytest.raises(SystemExit) as exc:
            main(["bench", "--device", "cpu", "--rounds", value])
        assert exc.value.code == 2
        assert "--rounds" in capsys.readouterr().err


def test_unwritable_out_fails_before_any_benchmark(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["bench", "--quick", "--device", "cpu", "--out", str(blocker / "r.json")]) == 2
    err = capsys.readouterr()
    assert "--out: cannot create folder" in err.err and "[bench]" not in err.out


def test_full_kernel_suite_on_cpu_is_refused(capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--suite", "kernel", "--device", "cpu"]) == 2
    assert "needs a GPU" in capsys.readouterr().err


def test_cpu_suite_writes_ratios_and_markdown_table(tmp_path: Path) -> None:
    """`--suite cpu --quick -k <one shape>`: both providers timed, ratio, load, table."""
    out = tmp_path / "cpu.json"
    proc = _run("--suite", "cpu", "--quick", "--out", str(out), "-k", "b8-d650-s64")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["machine_info"]["command"].startswith("per-triton bench --suite cpu --device")
    assert len(data["machine_info"]["load_average"]) == 3
    rows = [b["extra_info"] for b in data["benchmarks"]]
    assert sorted(r["threads"] for r in rows) == [1, 2]
    for r in rows:
        assert (r["suite"], r["b"], r["d"], r["s"], r["busy"]) == ("cpu", 8, 650, 64, False)
        for p in ("per_triton", "torch"):
            assert 0 < r[f"{p}_p20_s"] <= r[f"{p}_median_s"] <= r[f"{p}_p80_s"]
        assert r["ratio"] == pytest.approx(r["per_triton_median_s"] / r["torch_median_s"])
    table = out.with_suffix(".md").read_text()
    assert "| threads | busy core | b | d | s |" in table and "max ratio" in table


def test_cpu_sweep_shapes_cover_the_grid_within_the_size_cap() -> None:
    from per_triton.bench.bench_cpu import MAX_BD, sweep_shapes

    shapes = sweep_shapes()
    # 26 (b, d) pairs with b*d <= 2**25 (not 700 x 49152, not b >= 128 at d = 2**20), two s each
    assert all(b * d <= MAX_BD for b, d, _ in shapes) and len(shapes) == 2 * 26
    assert (32, 2**20, 256) in shapes and (64, 2**20, 64) not in shapes
