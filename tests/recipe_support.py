"""What the framework tests share: the tiny model, its data, the recipe pages' code,
and the float64 reference gradient of PER under gradient accumulation.

The reference is plain autograd in float64 on the loss every framework means to
optimise: the average over ranks and over the ``k`` micro-batches of an
accumulation window of ``task + coeff * L``, where ``L`` is the PER loss of the
Tanh output on that micro-batch's directions (:mod:`per_triton.core.reference`, with the
directions of the layer's int seed at that call). PER is therefore scaled exactly
like the task loss.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import per_triton as pt
from per_triton.api.layer_seeds import derive_seed

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "docs" / "recipes"
D_IN, WIDTH, CLASSES = 6, 16, 3
COEFF = 0.5  # large, so that PER's share of the gradient is far above rounding
SLICES = 8
SEED = 1234


def recipe_code(page: str) -> str:
    """The fenced ``python`` blocks of ``docs/recipes/<page>.md``, joined."""
    text = (RECIPES / f"{page}.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert blocks, f"no python block in docs/recipes/{page}.md"
    return "\n\n".join(blocks)


def load_recipe(page: str) -> dict:
    """The namespace of the page's code, run as a module (not as ``__main__``)."""
    namespace: dict = {"__name__": f"recipe_{page}"}
    exec(compile(recipe_code(page), f"docs/recipes/{page}.md", "exec"), namespace)
    return namespace


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D_IN, WIDTH), nn.Tanh(), nn.Linear(WIDTH, CLASSES))


def data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    return torch.randn(n, D_IN, generator=gen), torch.randint(0, CLASSES, (n,), generator=gen)


def reference_grads(
    net: nn.Module,
    ranks: list[list[tuple[torch.Tensor, torch.Tensor]]],
    coeff: float = COEFF,
    seed: int = SEED,
    first_call: int = 0,
) -> dict[str, torch.Tensor]:
    """Float64 gradient of ``mean_r (1/k) sum_i [CE + coeff * PER]`` on the micro-batches
    ``ranks[r][i]`` (call ``first_call + i`` of the Tanh's int seed draws its directions)."""
    ref = copy.deepcopy(net).double()
    total = torch.zeros((), dtype=torch.float64)
    for batches in ranks:
        for call, (x, y) in enumerate(batches):
            h = torch.tanh(ref[0](x.double()))
            step_seed = derive_seed(seed, 0, first_call + call)
            dirs = pt.sample_directions(SLICES, WIDTH, step_seed, dtype=torch.float64)
            term = F.cross_entropy(ref[2](h), y) + coeff * pt.reference.per_loss(h, dirs)
            total = total + term / (len(batches) * len(ranks))
    total.backward()
    return {n: p.grad for n, p in ref.named_parameters()}


def sgd_step_grads(before: nn.Module, after: nn.Module, lr: float) -> dict[str, torch.Tensor]:
    """The gradient one plain SGD step of rate ``lr`` applied, by parameter name."""
    new = dict(after.named_parameters())
    return {n: (p.detach() - new[n].detach()) / lr for n, p in before.named_parameters()}


def windows(
    x: torch.Tensor, y: torch.Tensor, batch: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)]


def relative_error(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> float:
    """``||got - want|| / ||want||`` over all parameters."""
    num = sum(float((got[n].double() - want[n]).pow(2).sum()) for n in want)
    den = sum(float(want[n].pow(2).sum()) for n in want)
    return (num / den) ** 0.5


def reference_per_loss(net: nn.Module, x: torch.Tensor, call: int, seed: int = SEED) -> float:
    """Float64 PER loss of ``net``'s Tanh output on ``x`` at call ``call`` of its seed."""
    with torch.no_grad():
        h = torch.tanh(copy.deepcopy(net).double()[0](x.double()))
        dirs = pt.sample_directions(SLICES, WIDTH, derive_seed(seed, 0, call), dtype=torch.float64)
        return float(pt.reference.per_loss(h, dirs))
