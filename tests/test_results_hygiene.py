"""Running the main commands leaves a checkout clean: `per-triton bench` and
`per-triton train` write, without --out, into ``bench/results/local/`` (ignored by the
project's .gitignore), and the dashboard lists those files as the user's own runs.

Each test runs the command in this process with the checkout root pointed at a new git
repository (``paths.REPO_ROOT``) that has the project's .gitignore and one committed
result file, so ``git status --porcelain`` there is the oracle.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from per_triton import paths
from per_triton.cli import main
from per_triton.dashboard import frames, loaders

ROOT = Path(__file__).resolve().parents[1]
SMOKE = Path(__file__).parent / "fixtures" / "dashboard" / "results" / "cpu" / "smoke.json"


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean git checkout (the project's .gitignore, a committed result) as REPO_ROOT."""
    repo = tmp_path / "checkout"
    (repo / "bench" / "results" / "cpu").mkdir(parents=True)
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    shutil.copy(SMOKE, repo / "bench" / "results" / "cpu" / "smoke.json")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "committed results")
    assert _git(repo, "status", "--porcelain") == ""
    monkeypatch.setattr(paths, "REPO_ROOT", repo)
    monkeypatch.delenv(paths.ENV_RESULTS, raising=False)
    return repo


def test_the_default_output_folder_is_ignored(checkout: Path) -> None:
    out = paths.default_output_dir()
    assert out == checkout / "bench" / "results" / paths.LOCAL_RESULTS
    probe = out / "cpu" / "training-quick-x.json"
    probe.parent.mkdir(parents=True)
    probe.write_text("{}")
    assert _git(checkout, "status", "--porcelain") == ""
    assert _git(checkout, "check-ignore", str(probe)).strip() == str(probe)
    # the committed results are not ignored
    tracked = checkout / "bench" / "results" / "cpu" / "new.json"
    tracked.write_text("{}")
    assert _git(checkout, "status", "--porcelain") == "?? bench/results/cpu/new.json\n"


def test_bench_without_out_leaves_the_checkout_clean(checkout: Path) -> None:
    argv = ["bench", "--quick", "--device", "cpu", "-k", "cnn11-vanilla and float32"]
    assert main(argv) == 0
    assert _git(checkout, "status", "--porcelain") == ""
    results = checkout / "bench" / "results"
    (written,) = (results / "local" / "cpu").glob("training-quick-*.json")
    assert len(json.loads(written.read_text())["benchmarks"]) == 1

    loaded = loaders.load_results(results)
    assert not loaded.problems, [str(p) for p in loaded.problems]
    source = {run.name: run.source for run in loaded.runs}
    assert source == {"cpu/smoke.json": "committed", f"local/cpu/{written.name}": "local"}
    table = frames.runs_frame(loaded.runs).set_index("file")
    assert table.loc[f"local/cpu/{written.name}", "from"] == "your run (local/)"
    assert "committed" not in " ".join(table["from"]).lower()


def test_bench_out_still_writes_where_it_is_told(checkout: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine.json"
    argv = ["bench", "--quick", "--device", "cpu", "-k", "cnn11-vanilla and float32"]
    assert main([*argv, "--out", str(out)]) == 0
    assert out.is_file() and not (checkout / "bench" / "results" / "local").exists()


def test_train_without_out_leaves_the_checkout_clean(checkout: Path) -> None:
    pytest.importorskip("sklearn")
    argv = ["train", "--tiny", "--methods", "vanilla", "--seeds", "0", "--threads", "1"]
    assert main(argv) == 0
    assert _git(checkout, "status", "--porcelain") == ""
    run = checkout / "bench" / "results" / "local" / "closeness"
    assert {p.name for p in run.iterdir()} == {"vanilla.jsonl", "summary.json", "config.json"}
    # the dashboard's benchmark loader skips the run's files without a warning, and its
    # closeness loader reads them from the local folder
    assert loaders.load_results(checkout / "bench" / "results").problems == []
    closeness = loaders.load_closeness(run.parent)
    assert closeness.records and not closeness.problems
    assert [row["method"] for row in closeness.summary] == ["vanilla"]


def test_the_images_and_tests_read_the_committed_results_only(tmp_path: Path) -> None:
    from per_triton.dashboard.screenshot import committed_copy

    results = tmp_path / "results"
    for name in ("cpu/smoke.json", "local/cpu/mine.json", "cpu/local/keep.json"):
        (results / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SMOKE, results / name)
    copy = committed_copy(results, tmp_path / "into")
    found = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*.json"))
    assert found == ["cpu/local/keep.json", "cpu/smoke.json"]  # only the top local/ goes
    assert [r.source for r in loaders.load_results(copy).runs] == ["committed", "committed"]
