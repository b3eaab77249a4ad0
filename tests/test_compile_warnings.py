"""regularize() warns when compiled code would run the regularized modules without
their hooks: blocks compiled one by one (``block.compile()`` / ``torch.compile(block)``,
torchtitan and FSDP2 style) before regularize, and a submodule regularized after its
root was compiled and run. Each case also checks what the warning is about: the
compiled calls really get no PER. Regularizing first and compiling after stays silent."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import per_triton as pt


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.act = nn.Linear(8, 8), nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(Block(), Block(), nn.Linear(8, 2))


def _compile_blocks(net: nn.Sequential, how: str) -> None:
    for i in range(2):
        if how == "method":
            net[i].compile(backend="eager")
        else:
            net[i] = torch.compile(net[i], backend="eager")


def _run(net: nn.Module) -> None:
    net(torch.randn(5, 8)).sum().backward()


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch.compiler.reset()
    yield
    torch.compiler.reset()


@pytest.mark.parametrize(
    "how", ["method", "wrapper"], ids=["block.compile", "torch.compile(block)"]
)
def test_blocks_compiled_one_by_one_then_regularized_warns(how):
    net = _model()
    _compile_blocks(net, how)
    _run(net)
    with pytest.warns(UserWarning, match=r"compiled code for \['0 \(Block\)', '1 \(Block\)'\]"):
        handle = pt.regularize(net, coeff=1.0, num_slices=4)
    _run(net)
    assert all(v is None for v in handle.losses().values())  # PER was indeed skipped


def test_submodule_regularized_after_the_root_was_compiled_and_run_warns():
    net = _model()
    compiled = torch.compile(net, backend="eager")
    _run(compiled)
    with pytest.warns(UserWarning, match=r"a module holding the model \(Sequential\)"):
        handle = pt.regularize(net[0], coeff=1.0, num_slices=4)
    _run(compiled)
    assert all(v is None for v in handle.losses().values())


@pytest.mark.parametrize(
    "how", ["method", "wrapper"], ids=["block.compile", "torch.compile(block)"]
)
def test_regularize_then_compile_blocks_is_silent_and_gets_per(how):
    net = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        handle = pt.regularize(net, coeff=1.0, num_slices=4)
    _compile_blocks(net, how)
    _run(net)
    assert all(v is not None for v in handle.losses().values())
