"""The signatures in docs/api.md's table are the code's: names, order, kinds and defaults
(compared with :func:`inspect.signature`), and every public function has one."""

from __future__ import annotations

import ast
import inspect
import re
import types
from pathlib import Path

import pytest
import torch

import per_triton as pt

API_PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.md"
#: a table row's first cell, and the signatures written in it as `name(...)`
ROW = re.compile(r"^\| (?P<cell>`.+?`) \|", flags=re.M)
SIGNATURE = re.compile(r"`(?P<name>[A-Za-z_][\w.]*)\((?P<args>[^`]*)\)`")
#: public callables of the submodules that the page documents (pt.__all__'s are added)
SUBMODULE_NAMES = {
    "reference.psi",
    "reference.per_loss",
    "reference.per_grad",
    "monitor.LayerMonitor",
    "monitor.read_records",
    "monitor.summarize",
}
KINDS = {
    "posonlyargs": inspect.Parameter.POSITIONAL_ONLY,
    "args": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "kwonlyargs": inspect.Parameter.KEYWORD_ONLY,
}
Param = tuple[str, object, object]  # (name, inspect.Parameter kind, default)


def documented() -> dict[str, str]:
    """``{name: argument text}`` of every signature in the first column of the table."""
    found: dict[str, str] = {}
    for row in ROW.finditer(API_PAGE.read_text()):
        for sig in SIGNATURE.finditer(row["cell"]):
            assert sig["name"] not in found, f"{sig['name']} documented twice"
            found[sig["name"]] = sig["args"]
    return found


def parse(name: str, args: str) -> list[Param]:
    """The documented parameters: ``(name, kind, default)``, defaults evaluated."""
    tree = ast.parse(f"def _({args}): pass").body[0].args
    assert tree.vararg is None and tree.kwarg is None, f"{name}: *args/**kwargs not expected"

    def evaluate(node: ast.expr) -> object:
        return eval(compile(ast.Expression(node), name, "eval"), {"torch": torch})

    positional = tree.posonlyargs + tree.args
    defaults = [inspect.Parameter.empty] * (len(positional) - len(tree.defaults))
    defaults += [evaluate(d) for d in tree.defaults]
    params = []
    for field, kind in KINDS.items():
        for arg in getattr(tree, field):
            if kind is inspect.Parameter.KEYWORD_ONLY:
                node = tree.kw_defaults[tree.kwonlyargs.index(arg)]
                default = inspect.Parameter.empty if node is None else evaluate(node)
            else:
                default = defaults[positional.index(arg)]
            params.append((arg.arg, kind, default))
    return params


def resolve(name: str) -> object:
    obj: object = pt
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def actual(name: str) -> list[Param]:
    return [
        (p.name, p.kind, p.default) for p in inspect.signature(resolve(name)).parameters.values()
    ]


def test_parse_reads_kinds_and_defaults_and_a_wrong_one_differs() -> None:
    """The oracle itself: a hand-written function against its own text, and one edit."""

    def f(a, b=1e-4, *, c="x", d=torch.float32, e=None):  # noqa: ANN001, ANN202
        return a, b, c, d, e

    text = 'a, b=1e-4, *, c="x", d=torch.float32, e=None'
    assert parse("f", text) == [
        (p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()
    ]
    assert parse("f", text.replace("b=1e-4", "b")) != parse("f", text)  # coeff, not coeff=1e-4
    assert parse("f", text.replace("*, ", "")) != parse("f", text)  # keyword-only lost


@pytest.mark.parametrize("name", sorted(documented()))
def test_documented_signature_is_the_code_signature(name: str) -> None:
    text = documented()[name]
    code = inspect.signature(resolve(name))
    assert parse(name, text) == actual(name), f"docs/api.md: {name}({text}); code: {name}{code}"


def test_every_public_function_has_its_signature_on_the_page() -> None:
    wanted = set(SUBMODULE_NAMES)
    for name in pt.__all__:
        obj = getattr(pt, name)
        if isinstance(obj, types.ModuleType) or not callable(obj):
            continue  # submodules (their names above), constants (DEFAULT_LAYERS)
        wanted.add("PERHandle.of" if obj is pt.PERHandle else name)  # made by regularize
    missing = sorted(wanted - set(documented()))
    assert not missing, f"docs/api.md has no signature for {missing}"
