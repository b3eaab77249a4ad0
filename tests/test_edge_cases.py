"""Edge cases of the PER layer found by users: absurd slice counts, in-place ops
downstream of the exact estimator, activation checkpointing, a module used twice."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import per_triton as pt
from per_triton.api.layer_seeds import derive_seed

from . import tolerances
from .assertions import assert_close


@pytest.mark.parametrize(
    "call",
    [
        lambda n: pt.per_loss(torch.randn(3, 4, requires_grad=True), n),
        lambda n: pt.PER(num_slices=n),
        lambda n: pt.regularize(nn.Sequential(nn.Linear(4, 4), nn.Tanh()), num_slices=n),
        lambda n: pt.sample_directions(n, 3, 1),
        lambda n: pt.sliced_wasserstein_to_normal(torch.randn(3, 4), n),
    ],
    ids=["per_loss", "PER", "regularize", "sample_directions", "sliced_wasserstein"],
)
def test_num_slices_beyond_any_size_is_named(call):
    with pytest.raises(
        ValueError, match=r"num_slices must be <= 2\*\*31 - 1, got 1180591620717411303424"
    ):
        call(2**70)


class _Residual(nn.Module):
    """``h = fc(x); h += x`` (in place) or ``h = h + x``: the same function."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc, self.out, self.inplace = nn.Linear(4, 4), nn.Linear(4, 2), inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        if self.inplace:
            h += x
        else:
            h = h + x
        return self.out(h)


def _residual_grads(inplace: bool, estimator: str, mode: str) -> dict[str, torch.Tensor]:
    net = _Residual(inplace)
    slices = {"num_slices": 8, "seed": 3} if estimator == "monte_carlo" else {}
    handle = pt.regularize(net, coeff=1.0, names=["fc"], estimator=estimator, mode=mode, **slices)
    loss = net(torch.randn(5, 4, generator=torch.Generator().manual_seed(1))).square().sum()
    (loss + handle.penalty() if mode == "loss" else loss).backward()
    return {n: p.grad for n, p in net.named_parameters()}


@pytest.mark.parametrize("mode", ["inject", "loss"])
@pytest.mark.parametrize("estimator", ["exact", "monte_carlo"])
def test_inplace_op_downstream_of_the_regularized_output(estimator, mode):
    """The in-place residual gives the out-of-place one's gradient (it raised "modified
    by an inplace operation" with the exact estimator)."""
    got, want = _residual_grads(True, estimator, mode), _residual_grads(False, estimator, mode)
    for name in want:
        assert_close(name, got[name], want[name], *tolerances.EXACT)


class _Checkpointed(nn.Module):
    """Two blocks, each run under non-reentrant activation checkpointing (or not)."""

    def __init__(self, checkpointed: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(6, 6), nn.Tanh()) for _ in range(2))
        self.checkpointed = checkpointed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if self.checkpointed:
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


def _checkpoint_run(checkpointed: bool, mode: str, steps: int = 2):
    net = _Checkpointed(checkpointed)
    handle = pt.regularize(net, coeff=1.0, num_slices=8, seed=5, mode=mode)
    grads, losses = [], []
    for step in range(steps):
        net.zero_grad()
        x = torch.randn(4, 6, generator=torch.Generator().manual_seed(step))
        loss = net(x).square().sum()
        (loss + handle.penalty() if mode == "loss" else loss).backward()
        grads.append({n: p.grad.clone() for n, p in net.named_parameters()})
        losses.append({k: float(v) for k, v in handle.losses().items()})
    return grads, losses, handle


@pytest.mark.parametrize("mode", ["inject", "loss"])
def test_checkpoint_recomputation_reuses_the_forward_directions(mode):
    """Non-reentrant checkpointing re-runs the blocks in backward; PER must project on
    the directions of the forward it repeats (it redrew them, moving the gradient),
    advance no counter (later steps keep their directions) and, in ``mode="loss"``,
    leave no penalty pending."""
    got, got_losses, handle = _checkpoint_run(True, mode)
    want, want_losses, _ = _checkpoint_run(False, mode)
    for step in range(2):
        for name in want[step]:
            assert_close(
                f"step {step} {name}", got[step][name], want[step][name], *tolerances.EXACT
            )
    assert got_losses == want_losses
    if mode == "loss":
        assert float(handle.penalty()) == 0.0


@pytest.mark.parametrize("method", ["l1", "l2", "per_exact", "vcl"])
def test_baseline_module_used_twice_counts_both_calls(method):
    """A penalty module placed at two points of one forward pass: the collected
    penalty is the sum of its two terms (each computed alone), not the last one."""
    from per_triton.experiments import baselines

    torch.manual_seed(0)
    pm = baselines.make_regularizer(method, 6)
    first, second = nn.Linear(4, 6), nn.Linear(6, 6)
    net = nn.Sequential(first, pm, second, pm).train()
    x = torch.randn(8, 4)
    net(x)
    got = baselines.collect_penalty(net)
    h1 = first(x)
    compute = (lambda h: pt.per_loss(h, estimator="exact")) if method == "per_exact" else pm.compute
    want = compute(h1) + compute(second(h1))
    assert_close("penalty", got, want, *tolerances.F32_SUM)
    assert baselines.collect_penalty(net) is None  # cleared


@pytest.mark.parametrize("estimator", ["exact", "monte_carlo"])
def test_per_module_used_twice_in_loss_mode(estimator):
    """``PER(mode="loss")`` at two points: ``penalty()`` sums both calls, each on
    its own directions (an int seed advances per call), and its gradient is the
    sum of the two per_loss gradients."""
    torch.manual_seed(0)
    kwargs = {"num_slices": 64, "seed": 5} if estimator == "monte_carlo" else {}
    layer = pt.PER(coeff=1.0, mode="loss", estimator=estimator, **kwargs)
    first, second = nn.Linear(4, 6), nn.Linear(6, 6)
    net = nn.Sequential(first, layer, second, layer).train()
    x = torch.randn(8, 4)
    net(x)
    got = layer.penalty()
    h1 = first(x)
    h2 = second(h1)
    if estimator == "exact":
        want = pt.per_loss(h1, estimator="exact") + pt.per_loss(h2, estimator="exact")
    else:
        seeds = [derive_seed(5, 0, call) for call in (0, 1)]
        want = pt.per_loss(h1, 64, seed=seeds[0]) + pt.per_loss(h2, 64, seed=seeds[1])
    assert_close("penalty", got, want, *tolerances.F32_PATHS)


def test_regularized_submodule_called_twice_in_one_forward():
    """``regularize(sub, mode="loss")`` where the parent's forward calls ``sub``
    twice: the penalty counts both calls (the reset at each call of ``sub`` kept only
    the last), and a later forward of the parent starts afresh."""

    class Parent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sub = nn.Sequential(nn.Linear(4, 4), nn.Tanh())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.sub(self.sub(x))

    torch.manual_seed(0)
    net = Parent()
    handle = pt.regularize(net.sub, coeff=1.0, mode="loss", estimator="exact")
    x = torch.randn(8, 4)
    net(x)
    got = handle.penalty()
    a = net.sub(x)
    want = pt.per_loss(a, estimator="exact") + pt.per_loss(net.sub(a), estimator="exact")
    assert_close("penalty", got, want, *tolerances.F32_SUM)
    net(x)
    net(x)  # the first forward's penalty never taken: not counted
    assert_close("next penalty", handle.penalty(), want, *tolerances.F32_SUM)
    handle.remove()
    assert not net._forward_pre_hooks and not net.sub._forward_pre_hooks
