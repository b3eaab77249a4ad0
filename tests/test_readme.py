"""Every Python block of the README and of the docs site runs as written, and what the
blocks claim holds; the DDP script runs under torchrun; the shell blocks name
commands and files that exist.

A block preceded by ``<!-- docs-test: KIND -->`` is not run in-process: ``torchrun``
marks the DDP script (launched by :func:`test_ddp_script_runs_under_torchrun`),
``skip: <reason>`` a block that cannot run here. The markers are counted below.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from per_triton.cli import build_parser

from .ranks import run_torchrun
from .zoo import need

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RECIPES = ROOT / "docs" / "recipes"
# the framework recipes run as whole programs (several processes, a Trainer) in
# tests/test_recipe_*.py, which read their blocks from the pages themselves
PAGES = [
    README,
    *sorted(
        p for p in (ROOT / "docs").rglob("*.md") if RECIPES not in p.parents or p.name == "index.md"
    ),
]
FENCE = re.compile(
    r"^(?:<!-- docs-test: (?P<kind>[a-z]+)(?:: (?P<why>[^>]+?))? -->\n)?"
    r"```(?P<lang>[^\n`]*)\n(?P<code>.*?)^```$",
    flags=re.S | re.M,
)
MAX_SKIPPED = 2  # blocks that cannot run here, each with its reason
DDP_COMMAND = "torchrun --standalone --nproc-per-node 2 train_ddp.py"


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    kind: str | None
    why: str | None
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for path in PAGES:
        text = path.read_text()
        for m in FENCE.finditer(text):
            line = text.count("\n", 0, m.start("lang")) + 1
            found.append(Block(path, line, m["lang"].strip(), m["kind"], m["why"], m["code"]))
    return found


BLOCKS = _blocks()
PYTHON = [b for b in BLOCKS if b.lang == "python"]
RUN = [b for b in PYTHON if b.kind is None]


def _block(needle: str) -> Block:
    (block,) = [b for b in PYTHON if needle in b.code]
    return block


def _run(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, str]:
    """Execute ``block`` in a fresh namespace inside ``tmp_path``; its namespace and stdout."""
    if re.search(r"^(?:import|from) (?:timm|transformers)\b", block.code, flags=re.M):
        need("transformers"), need("timm")  # the test process's torchvision shim
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace: dict = {"__name__": "__main__"}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(block.code, block.id, "exec"), namespace)
    return namespace, out.getvalue()


# -- the markers ----------------------------------------------------------------------


def test_every_python_block_is_found_and_the_markers_are_few_and_justified() -> None:
    text = "\n".join(p.read_text() for p in PAGES)
    assert text.count("<!-- docs-test:") == sum(b.kind is not None for b in BLOCKS)
    assert {b.kind for b in BLOCKS} <= {None, "torchrun", "skip"}
    torchrun = [b.path.name for b in PYTHON if b.kind == "torchrun"]
    assert torchrun == ["distributed.md"]
    skipped = [b for b in BLOCKS if b.kind == "skip"]
    assert len(skipped) <= MAX_SKIPPED and all(len(b.why or "") > 20 for b in skipped)
    # Python written under another fence name would escape the run
    assert not [b.id for b in BLOCKS if b.lang in {"py", "python3", "pycon", "ipython"}]
    assert text.count("```python") == len(PYTHON)
    assert len(RUN) >= 7


def test_readme_is_short_and_shows_the_example_on_its_first_screen() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 250
    first_screen = "\n".join(lines[:60])
    assert "bash scripts/main.sh" in first_screen and "bash scripts/test.sh" in first_screen
    assert "```python" in first_screen and "pt.regularize(model" in first_screen
    example = _block("for step in range(5)")
    assert example.path == README and len(example.code.splitlines()) <= 16


# -- every block runs -----------------------------------------------------------------


@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_python_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(block, tmp_path, monkeypatch)


# -- and what the blocks claim holds ------------------------------------------------


def test_readme_example_trains_with_per_on_both_activations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace, out = _run(_block("for step in range(5)"), tmp_path, monkeypatch)
    pt, handle, model = namespace["pt"], namespace["handle"], namespace["model"]
    losses = handle.losses()
    assert set(losses) == {"1", "3"} and all(torch.isfinite(v) for v in losses.values())
    assert sorted(pt.PERHandle.of(model).layers) == ["1", "3"]
    assert out.count("tensor(") == 3


def test_api_example_runs_and_reference_matches_fused_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace, out = _run(_block("pt.per_loss(h, num_slices=256)"), tmp_path, monkeypatch)
    assert "tensor(" in out
    h, theta, pt = namespace["h"], namespace["theta"], namespace["pt"]
    torch.testing.assert_close(pt.reference.per_loss(h, theta), pt.per_loss(h, 256, seed=0))
    assert set(namespace["handle"].losses()) == {"1", "3"}


def test_training_loop_recipe_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The AMP / accumulation / EMA / saving recipe runs as written (on the CPU)."""
    namespace, out = _run(_block("GradScaler"), tmp_path, monkeypatch)
    assert out.strip() == "torch.Size([0, 3])"
    pt, model, ema = namespace["pt"], namespace["model"], namespace["ema"]
    assert sorted(pt.PERHandle.of(model).layers) == ["1", "3"]
    assert pt.PERHandle.of(ema).layers == {}
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    assert sorted(pt.PERHandle.of(loaded).layers) == ["1", "3"]


@pytest.mark.zoo
def test_your_model_lines_regularize_what_they_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The "Your model" block, on small random-init models of the same kinds."""
    namespace, _ = _run(_block("pt.regularize(gpt2"), tmp_path, monkeypatch)
    pt = namespace["pt"]
    layers = {k: list(pt.PERHandle.of(namespace[k]).layers) for k in ("gpt2", "vit", "resnet18")}
    assert layers["gpt2"] == ["transformer.h.0.mlp.act", "transformer.h.1.mlp.act"]
    assert len(layers["vit"]) == 12 and len(layers["resnet18"]) == 17
    assert len(pt.PERHandle.of(namespace["resnet_vanilla"]).layers) == 7


def test_ddp_script_runs_under_torchrun(tmp_path: Path) -> None:
    """The complete DDP script, launched as the page says: two gloo ranks on the CPU."""
    (block,) = [b for b in PYTHON if b.kind == "torchrun"]
    assert DDP_COMMAND in block.path.read_text()
    (tmp_path / "train_ddp.py").write_text(block.code)
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)]
    if not torchrun.exists():  # an interpreter outside a venv: the same launcher as a module
        launcher = [sys.executable, "-m", "torch.distributed.run"]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = run_torchrun(
        launcher + shlex.split(DDP_COMMAND)[1:],
        _ddp_script_finished,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert _ddp_script_finished(done), done.stdout + done.stderr
    assert done.returncode == 0, done.stdout + done.stderr


def _ddp_script_finished(done) -> bool:
    """Rank 0 printed every epoch and the weight check."""
    epochs = re.findall(r"^epoch (\d): task loss [\d.]+, PER [\d.]+$", done.stdout, re.M)
    return epochs == ["0", "1", "2"] and "2 ranks, identical weights: True" in done.stdout


# -- shell blocks name what exists ------------------------------------------------------


def _shell_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for block in BLOCKS:
        if block.lang not in {"bash", "", "sh", "console"}:
            continue
        for line in block.code.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith(("per-triton ", "python ", "bash ", "python -m ")):
                commands.append((block.id, shlex.split(line)))
    return commands


def test_shell_blocks_name_real_commands_flags_and_files() -> None:
    commands = _shell_commands()
    assert len(commands) >= 10
    parser = build_parser()
    for where, argv in commands:
        if argv[0] == "per-triton":
            try:
                parser.parse_args(argv[1:])
            except SystemExit as exc:
                pytest.fail(f"{where}: `{shlex.join(argv)}` does not parse (exit {exc.code})")
        elif argv[1] != "-m":
            script = ROOT / argv[1]
            assert script.is_file(), f"{where}: {argv[1]} does not exist"


def test_every_recipe_page_is_run_by_a_recipe_test() -> None:
    """The recipe pages left out above are each read by a ``tests/test_recipe_*.py``."""
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_recipe_*.py"))
    pages = [p.stem for p in RECIPES.glob("*.md") if p.stem != "index"]
    assert pages and all(f'"{page}"' in tests for page in pages), pages


def _words(path: Path) -> str:
    """A page's (or a script's comments') text with line breaks and ``#`` as single spaces."""
    return " ".join(path.read_text().replace("#", " ").split())


def test_your_model_page_says_which_torchvision_works_and_links_the_error() -> None:
    """The zoo block needs the torchvision paired with torch: the page names the rule that
    scripts/setup.sh applies, an example pair that follows it, and the error a mismatch
    gives, and points to the troubleshooting entry for that error instead of repeating it."""
    page = _words(ROOT / "docs" / "your-model.md")
    troubleshooting = _words(ROOT / "docs" / "troubleshooting.md")
    error = "operator torchvision::nms does not exist"
    assert error in page and f"**`{error}`.**" in troubleshooting
    assert "](troubleshooting.md)" in page
    assert "torch 2.N.p with torchvision 0.(N+15).p" in page
    assert "torch 2.N.p <-> torchvision 0.(N+15).p" in _words(ROOT / "scripts" / "setup.sh")
    pairs = re.findall(r"torch (\d+)\.(\d+)\.(\d+) with torchvision (\d+)\.(\d+)\.(\d+)", page)
    assert pairs
    for major, minor, patch, tv_major, tv_minor, tv_patch in pairs:
        assert major == "2" and (tv_major, int(tv_minor), tv_patch) == ("0", int(minor) + 15, patch)
