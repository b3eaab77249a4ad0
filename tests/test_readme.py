"""The README's API example runs as written, and its claims about the values hold."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_api_example_runs_and_reference_matches_fused_path():
    api = next(block for block in _python_blocks() if "pt.per_loss(h, num_slices=256)" in block)
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(api, str(README), "exec"), namespace)
    assert "tensor(" in out.getvalue()
    h, theta = namespace["h"], namespace["theta"]
    pt = namespace["pt"]
    torch.testing.assert_close(pt.reference.per_loss(h, theta), pt.per_loss(h, 256, seed=0))
    assert set(namespace["handle"].losses()) == {"1", "3"}


def test_training_loop_recipe_runs(tmp_path, monkeypatch):
    """The AMP / accumulation / EMA / saving recipe runs as written (on the CPU)."""
    recipe = next(block for block in _python_blocks() if "GradScaler" in block)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(recipe, str(README), "exec"), namespace)
    assert out.getvalue().strip() == "torch.Size([0, 3])"
    pt, model, ema = namespace["pt"], namespace["model"], namespace["ema"]
    assert sorted(pt.PERHandle.of(model).layers) == ["1", "3"]
    assert pt.PERHandle.of(ema).layers == {}
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    assert sorted(pt.PERHandle.of(loaded).layers) == ["1", "3"]
