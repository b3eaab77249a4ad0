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
