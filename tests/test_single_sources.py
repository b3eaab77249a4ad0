"""One home for each list: the dashboard's pages, the method labels, the training
coefficients, the seed limits and the kernel benchmark's providers.

Each list has one module that defines it; everything else reads it. For each list a
test reads the source tree (with ``ast``) for a copy of it outside its home, and
checks that the list's users (code and docs) agree with it.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import io
import json
import re
from pathlib import Path

import pytest

from per_triton.bench.providers import PROVIDERS
from per_triton.cli import _args, build_parser
from per_triton.cli import train as train_cmd
from per_triton.core import seeds
from per_triton.dashboard import pages
from per_triton.experiments import digits_experiment, methods

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: the top-level folders with Python sources (per_triton's links to three of them skipped)
TOPS = ("per_triton", "kernels", "dashboard", "bench", "scripts", "tests")


def _sources() -> dict[str, ast.Module]:
    """Every Python file of the checkout, by its path from the root, parsed."""
    found = {}
    for top in TOPS:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel.parts[0] == "per_triton" and (ROOT / "per_triton" / rel.parts[1]).is_symlink():
                continue
            found[rel.as_posix()] = ast.parse(path.read_text(), filename=str(rel))
    return found


SOURCES = _sources()


def _strings(node: ast.AST) -> set[str]:
    """The string elements of a tuple, list or set literal, or the string keys of a dict."""
    if not isinstance(node, (ast.Dict, ast.Tuple, ast.List, ast.Set)):
        return set()
    items = node.keys if isinstance(node, ast.Dict) else node.elts
    return {i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)}


def _copies(names: set[str], at_least: int, *, skip: tuple[str, ...]) -> list[str]:
    """Literals holding ``at_least`` of ``names``, in files whose path starts with none
    of ``skip`` (the list's home, synthetic fixture data)."""
    return [
        f"{path}:{node.lineno}: {sorted(_strings(node) & names)}"
        for path, tree in SOURCES.items()
        if not path.startswith(skip)
        for node in ast.walk(tree)
        if len(_strings(node) & names) >= at_least
    ]


def test_copy_finder_finds_a_copy() -> None:
    tree = ast.parse('X = ("a", "b", "c")\nY = {"a": 1, "c": 2}\nZ = ["a", 1]')
    found = [sorted(_strings(n)) for n in ast.walk(tree) if _strings(n)]
    assert found == [["a", "b", "c"], ["a", "c"], ["a"]]


# --- the dashboard's pages -------------------------------------------------------------


def test_dashboard_pages_have_one_list() -> None:
    names = {p.name for p in pages.PAGES}
    assert _copies(names, len(names), skip=("dashboard/pages.py",)) == []
    calls = [
        path
        for path, tree in SOURCES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "Page" and path != "dashboard/pages.py"
    ]
    assert calls == ["dashboard/app.py"]  # one st.Page, over PAGES


def test_every_view_script_is_a_page_and_the_page_fields_hold() -> None:
    views = sorted(p.stem for p in (ROOT / "dashboard" / "views").glob("*.py") if p.stem[0] != "_")
    assert sorted(p.name for p in pages.PAGES) == views
    assert all((ROOT / "dashboard" / p.script).is_file() for p in pages.PAGES)
    assert [p.url_path for p in pages.PAGES if p.default] == [""]  # exactly one default
    assert len({p.title for p in pages.PAGES}) == len(pages.PAGES)
    assert all(p.charts >= 0 and p.tables >= 0 and p.committed_charts >= 0 for p in pages.PAGES)


def test_the_dashboard_doc_describes_every_page_in_order() -> None:
    text = (DOCS / "dashboard.md").read_text()
    assert re.findall(r"^- \*\*([^*]+)\*\*:", text, re.MULTILINE) == [p.title for p in pages.PAGES]
    shots = re.findall(r"\(img/dashboard-([\w-]+)\.png\)", text)
    assert set(shots) <= {p.name for p in pages.PAGES}
    assert all((DOCS / "img" / f"dashboard-{s}.png").is_file() for s in shots)


def test_no_other_doc_lists_the_pages() -> None:
    """Only docs/dashboard.md names the pages one by one (a new page touches one doc)."""
    names = [re.compile(rf"\b{p.name}\b", re.IGNORECASE) for p in pages.PAGES]
    docs = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    listed = [
        f"{doc.relative_to(ROOT)}:{n}"
        for doc in docs
        if doc.name not in ("dashboard.md", "contributing.md")
        for n, line in enumerate(doc.read_text().splitlines(), 1)
        if all(name.search(line) for name in names)
    ]
    assert listed == []


# --- the method labels -----------------------------------------------------------------


def test_method_labels_have_one_home() -> None:
    """No dict that maps method names to strings (labels, colours, shapes) but methods.py."""
    found = [
        f"{path}:{node.lineno}"
        for path, tree in SOURCES.items()
        if path != "per_triton/experiments/methods.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        and len(_strings(node) & set(methods.METHODS)) >= 2
        and all(isinstance(v, ast.Constant) and isinstance(v.value, str) for v in node.values)
    ]
    assert found == []


def _table_methods(text: str) -> list[str]:
    """The first column of the ``| method | ...`` table in ``text``."""
    rows = text.split("| method |", 1)[1].splitlines()[2:]
    return [r.split("|")[1].strip() for r in rows if r.startswith("|")][: len(methods.METHODS)]


def test_closeness_table_uses_the_method_labels() -> None:
    spec = importlib.util.spec_from_file_location(
        "closeness_table", ROOT / "scripts" / "closeness_table.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    folder = ROOT / "bench" / "results" / "closeness"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        script.main(folder)
    run = {e["method"] for e in json.loads((folder / "summary.json").read_text())}
    want = [methods.label(m) for m in sorted(run, key=methods.order_key)]
    assert _table_methods(out.getvalue()) == want
    assert _table_methods((DOCS / "closeness.md").read_text()) == want  # the table it printed


# --- the training coefficients ---------------------------------------------------------


def _name_or_text(node: ast.AST) -> str:
    """The name a node binds or reads (variable, attribute, argument), or its text."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else ""
    return (
        getattr(node, "id", None) or getattr(node, "attr", None) or getattr(node, "arg", None) or ""
    )


def test_coefficients_have_one_mapping() -> None:
    named = re.compile(r"\b(?:" + "|".join(methods.METHODS) + r")_coeff\b")
    assert named.search("cfg.vcl_coeff") and not named.search("--vcl-coeff")
    found = [
        f"{path}:{node.lineno}"
        for path, tree in SOURCES.items()
        if path != "tests/test_single_sources.py"  # its sample above
        for node in ast.walk(tree)
        if named.search(_name_or_text(node))
    ]
    assert found == []  # no field, flag destination or key per method: one dict
    penalised = set(methods.PENALTY_METHODS) & set(methods.TRAIN_METHODS)
    coeffs, shared = digits_experiment.COEFFS, digits_experiment.COEFF_OF
    assert set(coeffs) | set(shared) == penalised and not set(coeffs) & set(shared)
    assert set(shared.values()) <= set(coeffs)


def test_each_coefficient_flag_sets_its_method_only() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    flags = sorted(s for a in sub._actions for s in a.option_strings if s.endswith("-coeff"))
    assert flags == sorted(f"--{m}-coeff" for m in digits_experiment.COEFFS)
    help_text = " ".join(sub.format_help().split())
    defaults = train_cmd.config_from_args(build_parser().parse_args(["train"]))
    assert defaults.coeffs == digits_experiment.COEFFS
    for method, default in digits_experiment.COEFFS.items():
        assert f"--{method}-coeff COEFF" in help_text and f"(default: {default})" in help_text
        args = build_parser().parse_args(["train", f"--{method}-coeff", "0.25"])
        cfg = train_cmd.config_from_args(args)
        for other in methods.TRAIN_METHODS:
            own = digits_experiment.COEFF_OF.get(other, other)
            want = 0.25 if own == method else defaults.coeff(other)
            assert cfg.coeff(other) == want, (method, other)
    assert defaults.coeff("vanilla") == 0.0 and defaults.coeff("bn") == 0.0
    with pytest.raises(ValueError, match="per_exact"):
        digits_experiment.Config(coeffs={"per_exact": 1.0})  # it has PER's


# --- the seed limits -------------------------------------------------------------------


def _power_of_two(node: ast.AST) -> int | None:
    """The exponent of a ``2**k`` or ``1 << k`` literal."""
    if not isinstance(node, ast.BinOp) or not isinstance(node.right, ast.Constant):
        return None
    if isinstance(node.op, ast.Pow) and getattr(node.left, "value", None) == 2:
        return node.right.value
    if isinstance(node.op, ast.LShift) and getattr(node.left, "value", None) == 1:
        return node.right.value
    return None


def _where(path: str, statement: ast.stmt) -> str:
    """``path:NAME`` for an assignment to NAME, else ``path:LINE``."""
    target = statement.targets[0] if isinstance(statement, ast.Assign) else None
    return f"{path}:{getattr(target, 'id', statement.lineno)}"


def test_seed_limits_have_one_home() -> None:
    code = ("per_triton/", "kernels/", "dashboard/", "bench/", "scripts/")
    found = [
        _where(path, statement)
        for path, tree in SOURCES.items()
        if path.startswith(code) and path != "per_triton/core/seeds.py"
        for statement in tree.body
        for node in ast.walk(statement)
        if _power_of_two(node) in (62, 63)
    ]
    # api/layer_seeds.py's _MASK63 = 2**63 - 1 keeps a seed's bits (a mask, not a bound)
    assert found == ["per_triton/api/layer_seeds.py:_MASK63"]
    limits = [
        f"{path}:{node.lineno}"
        for path, tree in SOURCES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and path != "per_triton/core/seeds.py"
        for target in node.targets
        if getattr(target, "id", "").lstrip("_") in ("SEED_LIMIT", "DRAW_LIMIT")
    ]
    assert limits == []


def test_the_seed_limits_users_read_them() -> None:
    from per_triton.api import distributed
    from per_triton.core import _validation

    assert _validation.SEED_LIMIT is seeds.SEED_LIMIT == 2**63  # non-negative int64
    assert _validation.DRAW_LIMIT is distributed.DRAW_LIMIT is seeds.DRAW_LIMIT
    assert seeds.DRAW_LIMIT < seeds.SEED_LIMIT
    # read, not imported: importing lightning is slow and needs its own stack
    imports = [
        (node.module, [a.name for a in node.names])
        for node in ast.walk(SOURCES["per_triton/integrations/lightning.py"])
        if isinstance(node, ast.ImportFrom)
    ]
    assert ("per_triton.core.seeds", ["DRAW_LIMIT"]) in imports


def test_training_seeds_have_their_own_limit() -> None:
    limit = _args.TRAIN_SEED_LIMIT
    assert _args.TRAIN_SEED_TEXT == "2**32" and 2 ** int(_args.TRAIN_SEED_TEXT[3:]) == limit
    assert _args.seed_list(f"0,{limit - 1}") == [0, limit - 1]
    with pytest.raises(
        argparse.ArgumentTypeError, match=re.escape(f"[0, {_args.TRAIN_SEED_TEXT})")
    ):
        _args.seed_list(str(limit))


# --- the kernel benchmark's providers --------------------------------------------------


def test_providers_have_one_list() -> None:
    names = set(PROVIDERS)
    skip = ("bench/providers.py", "tests/fixtures/")  # the fixtures' synthetic timings
    assert _copies(names, len(names) - 1, skip=skip) == []


def test_the_providers_users_read_them() -> None:
    from per_triton.dashboard import frames

    assert list(PROVIDERS) == frames.PROVIDER_ORDER
    from per_triton.bench.providers import ESTIMATOR_OF

    design = " ".join((DOCS / "design.md").read_text().split())
    listed = re.search(r"`provider` \(([^)]*)\)", design).group(1)
    # the estimators' providers come from the registry (an example or two named), the
    # others are listed in PROVIDERS' order
    from_registry, others = listed.split("; and ")
    assert "per_triton/core/estimators.py" in from_registry
    assert set(from_registry.split("e.g. ")[1].split(", ")) <= set(ESTIMATOR_OF)
    assert tuple(others.split(", ")) == tuple(p for p in PROVIDERS if p not in ESTIMATOR_OF)
