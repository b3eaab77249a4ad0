"""The registered ops under torch.compile and torch.library.opcheck (CPU implementation)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import per_triton as pt
from per_triton.core import ops


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(12, 32)
        self.fc2 = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.fc1(x))
        return self.fc2(h), h


def test_compiled_training_step_no_graph_break_no_recompile():
    torch.manual_seed(0)
    net = _Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)

    def step_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits, h = net(x)
        return nn.functional.cross_entropy(logits, y) + 0.1 * pt.per_loss(h, 16)

    counters = torch._dynamo.utils.counters
    counters.clear()
    torch._dynamo.reset()
    # fullgraph: any graph break raises; AOTAutograd compiles the backward too.
    compiled = torch.compile(step_loss, fullgraph=True)
    x, y = torch.randn(8, 12), torch.randint(0, 3, (8,))
    losses = []
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(20):  # seed=None: a fresh seed every step, drawn inside the graph
            opt.zero_grad()
            loss = compiled(x, y)
            loss.backward()
            losses.append(loss.item())
            opt.step()
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]
    assert losses[-1] < losses[0]


def test_compiled_seed_none_draws_new_directions_every_call():
    torch._dynamo.reset()
    fn = torch.compile(lambda x: pt.per_loss(x, 4), fullgraph=True)
    h = torch.randn(3, 10)
    with torch._dynamo.config.patch(error_on_recompile=True):
        values = {fn(h).item() for _ in range(20)}
    assert len(values) == 20, "every call must see new directions"
    torch.manual_seed(1)
    first = fn(h)
    torch.manual_seed(1)
    assert torch.equal(fn(h), first), "torch.manual_seed must make compiled runs reproducible"


def test_compiled_per_loss_matches_eager_on_fixed_seed():
    h = torch.randn(6, 30, requires_grad=True)
    seed = torch.tensor([5])
    fn = torch.compile(lambda x, s: pt.per_loss(x, 8, seed=s), fullgraph=True)
    out = fn(h, seed)
    out.backward()
    grad_compiled = h.grad.clone()
    h.grad = None
    eager = pt.per_loss(h, 8, seed=seed)
    eager.backward()
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(grad_compiled, h.grad)


def test_compiled_per_module_no_graph_break():
    net = nn.Sequential(nn.Linear(10, 20), nn.ELU(), pt.PER(1e-2, 8), nn.Linear(20, 1))
    compiled = torch.compile(net, fullgraph=True)
    x = torch.randn(4, 10)
    compiled(x).sum().backward()
    assert net[2].last_loss is not None and torch.isfinite(net[2].last_loss)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_per_fwd(dtype: torch.dtype):
    h = torch.randn(5, 19, dtype=dtype, requires_grad=True)
    torch.library.opcheck(ops.per_fwd, (h, torch.tensor([3]), 7, "tf32"))


@pytest.mark.parametrize("requires_grad", [False, True], ids=["no-grad", "autograd"])
def test_opcheck_per_bwd(requires_grad: bool):
    coeff = torch.randn(5, 7, requires_grad=requires_grad)
    torch.library.opcheck(ops.per_bwd, (coeff, torch.tensor([3]), 19, torch.float32, "ieee"))
    torch.library.opcheck(ops.per_bwd, (coeff, torch.tensor([3]), 19, torch.bfloat16, "tf32"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_per_proj(dtype: torch.dtype):
    x = torch.randn(5, 19, dtype=dtype, requires_grad=True)
    torch.library.opcheck(ops.per_proj, (x, torch.tensor([3]), 7))


def test_compiled_model_with_regularize_hooks_no_graph_break_no_recompile():
    torch._dynamo.reset()
    net = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 20), nn.ELU(), nn.Linear(20, 1))
    handle = pt.regularize(net, coeff=0.1, num_slices=8)
    compiled = torch.compile(net, fullgraph=True)
    seen = []
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(5):
            compiled(torch.randn(4, 10)).sum().backward()
            seen.append(handle.losses()["1"].item())
    assert len(set(seen)) == 5 and all(torch.isfinite(torch.tensor(seen)))
    handle.remove()


def test_compiled_per_with_int_seed_no_recompile_new_directions_each_step():
    """``PER(seed=int)`` counts its calls on the device: one graph, call k on step k's seed."""
    from per_triton.api.layer_seeds import derive_seed

    from . import tolerances

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), pt.PER(1.0, 4, seed=123), nn.Linear(8, 2))
    counters = torch._dynamo.utils.counters
    counters.clear()
    torch._dynamo.reset()
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    x = torch.randn(3, 6)
    losses = []
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(4):
            compiled(x).sum().backward()
            losses.append(net[2].last_loss.item())
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]
    assert net[2].calls == 4
    assert len(set(losses)) == 4, f"every step must see new directions: {losses}"
    # call k uses the int seed's step k (the same on every process given the same int)
    h = net[:2](x).detach()
    want = [pt.per_loss(h, 4, seed=derive_seed(123, 0, k)).item() for k in range(4)]
    assert losses == tolerances.F32_PER_MODULE.approx(want)


@pytest.mark.parametrize("seed", [None, 5, "tensor"], ids=["seed-none", "seed-int", "seed-tensor"])
def test_inductor_regularized_model_draws_the_eager_directions_every_step(seed):
    from . import tolerances

    # Inductor (the default backend) once folded PER's on-device seed derivation to
    # one constant: every compiled step reused one set of directions. The compiled
    # penalties must change per step and equal an eager copy's, step by step.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))
    twin = copy.deepcopy(net)  # regularized the same way, run eagerly
    seed_t = torch.tensor([1], dtype=torch.int64)
    source = seed_t if seed == "tensor" else seed  # one source shared by both models
    handle = pt.regularize(net, coeff=1.0, num_slices=8, mode="loss", seed=source)
    twin_handle = pt.regularize(twin, coeff=1.0, num_slices=8, mode="loss", seed=source)
    torch._dynamo.reset()
    compiled = torch.compile(net, fullgraph=True)
    x = torch.randn(16, 20)
    got, want = [], []
    for step in range(4):
        seed_t.fill_(100 + step)
        compiled(x)
        got.append(handle.penalty().item())
        twin(x)
        want.append(twin_handle.penalty().item())
    assert len(set(got)) == 4, f"compiled penalties repeat across steps: {got}"
    torch.testing.assert_close(
        torch.tensor(got), torch.tensor(want), **tolerances.INDUCTOR_PENALTY_VS_EAGER.kw
    )


def test_opcheck_child_seed():
    from per_triton.core.seeds import child_seed_tensor

    parent = torch.tensor([0, 7, 2**62 + 5], dtype=torch.int64)
    counter = torch.tensor([3], dtype=torch.int64)
    for args in (
        (parent, 0, 12345, None, 99),
        (None, 42, 0, counter, 0),
        (parent, 0, 1, counter, 0),
    ):
        torch.library.opcheck(torch.ops.per_triton.child_seed.default, args)
    assert child_seed_tensor(parent, "layer", counter).shape == (3,)
