"""Layout and single sources of truth: subpackages from a plain checkout, the paths
module, the method vocabulary, the closeness record schema, no rename shims."""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import per_triton
from per_triton import paths
from per_triton.api import monitor_schema as closeness_schema
from per_triton.experiments import methods

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["kernels", "dashboard", "bench"])
def test_subpackage_links_are_relative_links_to_the_top_level_folders(name: str) -> None:
    link = ROOT / "per_triton" / name
    assert link.is_symlink() and os.readlink(link) == f"../{name}"
    assert link.resolve() == (ROOT / name).resolve()


def test_subpackages_import_from_a_plain_checkout_without_site_packages() -> None:
    """``python -S`` with ``PYTHONPATH=<checkout>``: no editable finder, no installed copy."""
    script = (
        "import sys, per_triton.kernels, per_triton.dashboard.schema, per_triton.bench, "
        "per_triton.paths as p, per_triton.experiments.methods, "
        "per_triton.api.monitor_schema\n"
        "assert not any('site-packages' in (m.__file__ or '') for m in "
        "(per_triton.kernels, per_triton.dashboard.schema, per_triton.bench))\n"
        "print(p.REPO_ROOT, p.committed_results(), per_triton.kernels.__file__)\n"
        "assert 'torch' not in sys.modules"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")}
    out = subprocess.run(
        [sys.executable, "-S", "-c", script], env=env, cwd="/", capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    root, results, kernels = out.stdout.split()
    assert Path(root) == ROOT and Path(results) == ROOT / "bench" / "results"
    assert Path(kernels) == ROOT / "per_triton" / "kernels" / "__init__.py"


def test_paths_from_a_checkout_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert paths.REPO_ROOT == ROOT
    assert paths.committed_results() == ROOT / "bench" / "results"
    assert paths.default_output_dir() == ROOT / "bench" / "results" / paths.LOCAL_RESULTS
    assert paths.DASHBOARD_APP.resolve() == ROOT / "dashboard" / "app.py"
    monkeypatch.setenv(paths.ENV_RESULTS, "/some/where")
    assert paths.committed_results() == Path("/some/where") == paths.default_output_dir()


def test_installed_layout_writes_under_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(paths.ENV_RESULTS, raising=False)
    monkeypatch.setattr(paths, "REPO_ROOT", None)
    monkeypatch.chdir(tmp_path)
    assert paths.default_output_dir() == tmp_path / paths.INSTALLED_OUTPUT
    # the committed results are then the package's own copy
    assert paths.committed_results() == paths.BENCH_DIR / "results"


def test_package_has_no_rename_shims_and_no_module_class_swap() -> None:
    """Before 1.0 an old module name is gone, not aliased; the package is a plain module."""
    import types

    assert type(per_triton) is types.ModuleType
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("per_triton.regularizers")


def test_public_names_are_not_shadowed_by_submodules() -> None:
    """No module of the package shares a name with a public function or class, so that
    importing a submodule never rebinds a public name of the package."""
    package = Path(per_triton.__file__).parent
    modules = {f.stem for f in package.rglob("*.py")} | {d.name for d in package.rglob("*/")}
    functions = set(per_triton.__all__) - set(per_triton._SUBMODULES)
    assert not modules & functions
    importlib.import_module("per_triton.api.attach")
    assert callable(per_triton.regularize)


def test_method_vocabulary_is_complete_and_distinct() -> None:
    assert set(methods.LABELS) == set(methods.COLOURS) == set(methods.METHODS)
    assert len(set(methods.COLOURS.values())) == len(methods.METHODS)
    assert methods.OTHER_COLOUR not in methods.COLOURS.values()
    assert set(methods.PENALTY_METHODS) < set(methods.METHODS)
    assert set(methods.DEFAULT_TRAIN_METHODS) <= set(methods.TRAIN_METHODS) <= set(methods.METHODS)
    assert sorted(["per", "zz", "vanilla", "aa"], key=methods.order_key) == [
        "vanilla",
        "per",
        "aa",
        "zz",
    ]
    with pytest.raises(ValueError, match="method must be one of"):
        methods.check_method("batchnorm")


def test_every_user_of_the_vocabulary_shares_it() -> None:
    from per_triton.cli import train
    from per_triton.dashboard import frames
    from per_triton.experiments import baselines

    assert baselines.METHODS is methods.METHODS
    assert list(methods.METHODS) == frames.METHOD_ORDER
    assert train.METHODS is methods.TRAIN_METHODS


GOOD_RECORD = {
    "run": "r", "model": "m", "method": "per", "seed": 0, "step": 3, "layer": "conv1",
    "sw1": 0.5, "mean": 0, "var": None, "q25": -0.5, "q50": 0.0, "q75": 0.5,
}  # fmt: skip


def test_closeness_schema_normalises_and_rejects() -> None:
    shuffled = dict(reversed(list(GOOD_RECORD.items())))
    rec = closeness_schema.check_record(shuffled)
    assert list(rec) == list(closeness_schema.RECORD_KEYS)
    assert rec["mean"] == 0.0 and isinstance(rec["mean"], float) and rec["var"] is None
    for bad, field in (
        (GOOD_RECORD | {"sw1": math.inf}, "sw1"),
        (GOOD_RECORD | {"seed": True}, "seed"),
        (GOOD_RECORD | {"layer": 3}, "layer"),
        ({k: v for k, v in GOOD_RECORD.items() if k != "q75"}, "q75"),
    ):
        with pytest.raises(closeness_schema.RecordError, match=field):
            closeness_schema.check_record(bad)
    with pytest.raises(ValueError, match="JSON object"):
        closeness_schema.check_record([1, 2])


def test_monitor_and_dashboard_use_the_one_schema() -> None:
    from per_triton.api import monitor
    from per_triton.dashboard import frames, parse

    assert monitor.check_record is closeness_schema.check_record
    assert monitor.RECORD_KEYS is closeness_schema.RECORD_KEYS
    assert list(frames.closeness_frame([]).columns) == list(closeness_schema.RECORD_KEYS)
    bad = json.dumps(GOOD_RECORD | {"sw1": "high"})
    records, problems = parse.parse_closeness_lines("x.jsonl", bad + "\n" + json.dumps(GOOD_RECORD))
    assert len(records) == 1 and "sw1" in problems[0].message


def test_tests_take_tolerances_from_the_tolerances_module() -> None:
    """No bare numeric tolerance in any test: tests/tolerances.py names each one."""
    import re

    bare = re.compile(
        r"(?:\b(?:atol|rtol|abs|rel)\s*=\s*\d)"  # keyword forms
        r"|(?:assert_close\(.*,\s*[\d.]+(?:e-\d+)?\s*,\s*[\d.]+(?:e-\d+)?\s*\)\s*$)"
        r"|(?:approx\(.*,\s*[\d.]+(?:e-\d+)?\s*\)\s*$)"  # pytest.approx(x, rel)
        r"|(?:[\"'](?:atol|rtol)[\"']\s*:\s*\d)"  # {"atol": ...} dicts
    )
    # the forms the migration removed are caught
    for line in (
        'assert_close("f", f, want, atol=0, rtol=1e-6)',  # guard sample
        'assert_close("g", g, want, 1e-6, 1e-5)',  # guard sample
        "assert x == pytest.approx(2 / math.sqrt(math.pi), 2e-3)",  # guard sample
        "assert x == pytest.approx(y, rel=1e-14)",  # guard sample
        'CONFIG_TOL = {"atol": 1e-7, "rtol": 1e-5}',  # guard sample
    ):
        assert bare.search(line), line
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted((ROOT / "tests").glob("test_*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if bare.search(line) and not line.endswith("# guard sample")
    ]
    assert found == []


def test_tests_import_bench_through_the_package() -> None:
    """Tests import bench/ as ``per_triton.bench`` (the symlink), never via ``sys.path``."""
    import re

    edit = re.compile(r"sys\.path\.(?:insert|append|extend)|sys\.path\s*\+?=")
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted((ROOT / "tests").glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if edit.search(line)
    ]
    assert found == []


def test_importing_the_bench_scripts_leaves_sys_path_alone() -> None:
    """The scripts of bench/ put the checkout on ``sys.path`` only when run as scripts:
    imported, the checkout root on ``sys.path`` would let the top-level kernels/ folder
    hide the PyPI package ``kernels`` (which transformers imports)."""
    before = list(sys.path)
    for name in ("compile_matrix", "sass_report"):
        importlib.import_module(f"per_triton.bench.{name}")
    assert before == sys.path


#: each layer of the package and the layers it may import (docs/design.md, "Layout")
LAYERS = {
    "core": {"core", "kernels"},
    "api": {"core", "kernels", "api"},
    "experiments": {"core", "kernels", "api", "experiments"},
    "integrations": {"core", "api", "integrations"},
}


def _imported_subpackages(path: Path) -> set[str]:
    """The ``per_triton`` sub-packages a module imports (absolute or relative)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            found.add(path.parent.name if node.level == 1 else "?")
            continue
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
            if node.module == "per_triton":
                names = [f"per_triton.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "per_triton" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layers_import_only_the_layers_below(layer: str) -> None:
    """The op core knows no module hooks; the user API no experiments; nothing the CLI."""
    allowed = LAYERS[layer] | {"paths", "__version__"}
    for path in sorted((ROOT / "per_triton" / layer).rglob("*.py")):
        extra = _imported_subpackages(path) - allowed
        assert not extra, f"{path.relative_to(ROOT)} imports per_triton.{sorted(extra)}"


# --- documentation that cannot rot ------------------------------------------------------

DOCS = ROOT / "docs"
#: a citation of a section: the page, a comma, the heading in (possibly escaped) double quotes
CITATION = re.compile(r"\b(design|benchmarks)\.md,\s*\\?\"([^\"\\\n]+)\\?\"")
#: a citation whose heading went to the next line, where CITATION cannot check it
WRAPPED = re.compile(r"\b(?:design|benchmarks)\.md,\s*$")
#: the design notes and contracts that docs/design.md replaced
OLD_DOCS = re.compile(r"\bDESIGN\b|\bCONTRACTS\.md\b")
#: a reference to the tracker (its item numbers, bare or hashed, "the" item) or to the
#: sessions that worked on it (samples in the test below)
TRACKER = re.compile(
    r"\bissues?\s*#?\d+|(?<![\w&/#$])#\d{1,4}\b|\bhunts?\b|\bthe issue\b", re.IGNORECASE
)


def _project_text_files() -> list[tuple[str, str]]:
    """(path, text) of every text file of the checkout (tracked or new, not ignored)."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    files = []
    for name in sorted(set(filter(None, listing.split("\0")))):
        path = ROOT / name
        if path.is_symlink() or not path.is_file():
            continue
        try:
            files.append((name, path.read_text(encoding="utf-8")))
        except UnicodeDecodeError:  # images
            continue
    return files


def _matches(pattern: re.Pattern[str]) -> list[str]:
    return [
        f"{name}:{n}: {line.strip()}"
        for name, text in _project_text_files()
        for n, line in enumerate(text.splitlines(), 1)
        if pattern.search(line) and not line.endswith("# guard sample")
    ]


def _headings(doc: Path) -> list[str]:
    """The Markdown headings of ``doc``, outside fenced code blocks."""
    heads, fenced = [], False
    for line in doc.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} +(.+?) *$", line)):
            heads.append(m.group(1))
    return heads


def test_doc_citations_name_existing_headings() -> None:
    """Every citation of a section of docs/design.md or docs/benchmarks.md names one of
    its headings, on one line."""
    for sample in (
        'see docs/design.md, "The random stream".',  # guard sample
        '"measured (docs/design.md, \\"Measuring performance\\")."',  # guard sample
    ):
        assert CITATION.search(sample), sample
    assert WRAPPED.search("# Layout (docs/design.md,")  # guard sample
    headings = {name: _headings(DOCS / f"{name}.md") for name in ("design", "benchmarks")}
    for name, heads in headings.items():
        assert len(heads) == len(set(heads)), f"docs/{name}.md repeats a heading"
    cited, broken = 0, []
    for path, text in _project_text_files():
        for n, line in enumerate(text.splitlines(), 1):
            if line.endswith("# guard sample"):
                continue
            for doc, heading in CITATION.findall(line):
                cited += 1
                if heading not in headings[doc]:
                    broken.append(f'{path}:{n}: docs/{doc}.md, "{heading}"')
            if WRAPPED.search(line):
                broken.append(f"{path}:{n}: citation split over two lines")
    assert broken == []
    assert cited > 40  # the code cites the design throughout; a regex that finds none fails


def test_no_file_refers_to_the_replaced_design_notes() -> None:
    assert OLD_DOCS.search("(DESIGN.md section 2)")  # guard sample
    assert OLD_DOCS.search("closed forms (DESIGN 1)")  # guard sample
    assert _matches(OLD_DOCS) == []


def test_no_tracker_numbers_in_code_tests_scripts_or_docs() -> None:
    """Code and docs say what is meant, not which tracker item or session it came from."""
    tracker = (
        "before issue 12",  # guard sample
        "see #12.",  # guard sample
        "Issues #3 and #4",  # guard sample
        "the third hunt",  # guard sample
        "as the issue says",  # guard sample
    )
    for sample in tracker:
        assert TRACKER.search(sample), sample
    for fine in ("#1f77b4", "&#39;", "${status/#0/1}", "# 12 rows", "issubclass"):
        assert not TRACKER.search(fine), fine  # guard sample
    assert _matches(TRACKER) == []


def test_wheel_ships_exactly_the_results_the_dashboard_reads() -> None:
    """The package data of ``per_triton.bench`` is what an installed dashboard reads:
    the runs it plots and the closeness records with their summary, nothing else."""
    import tomllib

    from per_triton.dashboard import loaders

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = [g for g in setuptools["package-data"]["per_triton.bench"] if g.startswith("results/")]
    results = ROOT / "bench" / "results"
    shipped = {p.relative_to(results).as_posix() for g in globs for p in (ROOT / "bench").glob(g)}
    runs = loaders.load_results(results).runs  # not a developer's own runs in local/
    plotted = {r.name for r in runs if r.source == "committed" and (r.training or r.kernel)}
    closeness = {f"closeness/{name}" for name in loaders.load_closeness(results).files}
    assert plotted and closeness
    assert shipped == plotted | closeness


# --- sizes ------------------------------------------------------------------------------

#: the most lines of a non-test source file, and of a function less its docstring
FILE_LINES, FUNCTION_LINES = 300, 60
#: the sources: per_triton (whose kernels, dashboard and bench are links to the top-level
#: folders of those names), those folders, the scripts and setup.py
SOURCES = ("per_triton", "kernels", "bench", "dashboard", "scripts", "setup.py")


def _source_files() -> list[Path]:
    """The non-test .py files of :data:`SOURCES`, each once (links not followed)."""
    found = []
    for name in SOURCES:
        top = ROOT / name
        for path in [top] if top.is_file() else sorted(top.rglob("*.py")):
            rel = path.relative_to(ROOT)
            if any(
                (ROOT / Path(*rel.parts[:i])).is_symlink() for i in range(1, len(rel.parts) + 1)
            ):
                continue
            if not path.name.startswith("test_"):
                found.append(path)
    return found


def _function_lines(node) -> int:
    """Lines of a function from ``def`` to its last line, less its docstring."""
    import ast

    span = node.end_lineno - node.lineno + 1
    first = node.body[0]
    value = first.value if isinstance(first, ast.Expr) else None
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        span -= first.end_lineno - first.lineno + 1
    return span


def _oversized(path: Path, text: str) -> list[str]:
    """The file's offences: its line count over FILE_LINES, each function over FUNCTION_LINES."""
    import ast

    rel = path.relative_to(ROOT)
    found = []
    if text.count("\n") > FILE_LINES:
        found.append(f"{rel}: {text.count(chr(10))} lines (> {FILE_LINES})")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = _function_lines(node)
            if lines > FUNCTION_LINES:
                found.append(f"{rel}:{node.lineno} {node.name}: {lines} lines (> {FUNCTION_LINES})")
    return found


def test_size_check_finds_long_files_and_functions() -> None:
    """The check counts what it should: ``def`` plus 59 lines is within the limit however
    long the docstring, ``def`` plus 60 lines is not, nor is a 301-line file; the walk
    covers the top-level folders and skips per_triton's links to them."""
    lines = "".join(f"    x{i} = {i}\n" for i in range(60))
    doc = '    """' + "doc\n" * 20 + '    """\n'
    path = ROOT / "scripts" / "example.py"
    assert _oversized(path, "def f():\n" + doc + lines[: -len("    x59 = 59\n")]) == []
    assert _oversized(path, "def g():\n" + lines) == [
        f"scripts/example.py:1 g: 61 lines (> {FUNCTION_LINES})"
    ]
    assert _oversized(path, "x = 1\n" * 301) == [f"scripts/example.py: 301 lines (> {FILE_LINES})"]
    files = [p.relative_to(ROOT).as_posix() for p in _source_files()]
    assert {f.split("/")[0] for f in files} == set(SOURCES)
    assert not [f for f in files if f.startswith(("per_triton/kernels/", "per_triton/bench/"))]
    assert len(files) == len(set(files))


def test_no_source_file_over_300_lines_and_no_function_over_60() -> None:
    """Every non-test source file has at most FILE_LINES lines and every function at most
    FUNCTION_LINES lines, not counting its docstring; the offenders are listed."""
    offenders = [x for path in _source_files() for x in _oversized(path, path.read_text())]
    print("\n".join(offenders))
    assert offenders == [], "\n".join(offenders)
