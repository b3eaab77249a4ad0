"""PER in real training loops: loss scaling, copies, saving, empty batches,
repeated regularize, seeds, torch.func and double backward, compile order, functional
activations, numpy integers and the monitor under activation checkpointing.

Oracles: the same network with PER's loss written out in plain torch on the same
directions (``reference.per_loss`` on ``sample_directions`` of the derived seed),
gradcheck / gradgradcheck in float64, and the unscaled loss for the scaled ones.
"""

from __future__ import annotations

import copy
import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import per_triton as pt
from per_triton.api.handle import PERHandle
from per_triton.api.layer_seeds import derive_seed
from per_triton.core import reference

from . import tolerances
from .assertions import assert_close

# Tolerances: float32 networks, float64 where an exact oracle exists.
TOL = tolerances.LOOP_GRAD


def _net(dtype: torch.dtype = torch.float32) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 9), nn.ELU(), nn.Linear(9, 7), nn.Tanh(), nn.Linear(7, 3)).to(
        dtype
    )


def _batch(b: int = 10, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(b, 6, generator=gen, dtype=dtype), torch.randint(0, 3, (b,), generator=gen)


def _mode(mode: str) -> dict[str, str]:
    """``mode=`` only when it is not the default (so the default path runs on any version)."""
    return {} if mode == "inject" else {"mode": mode}


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _reference_loss(net: nn.Sequential, x, y, coeff: float, seed: int, s: int):
    """Task loss + coeff * sum_l L_l written out in plain torch, on regularize's directions."""
    h, total, layer = x, 0.0, 0
    for m in net:
        h = m(h)
        if isinstance(m, (nn.ELU, nn.Tanh)):
            theta = pt.sample_directions(s, h.shape[1], derive_seed(seed, layer, 0), dtype=h.dtype)
            total = total + coeff * reference.per_loss(h, theta)
            layer += 1
    return F.cross_entropy(h, y) + total


# -- 1. loss scaling: mode="loss" composes with every loss transform ------------------


@pytest.mark.parametrize("mode", ["inject", "loss"])
def test_both_modes_give_the_reference_gradient_of_an_unscaled_loss(mode: str):
    net, (x, y) = _net(torch.float64), _batch(dtype=torch.float64)
    _reference_loss(net, x, y, 0.7, seed=11, s=5).backward()
    expected = _grads(net)
    net.zero_grad()
    handle = pt.regularize(net, coeff=0.7, num_slices=5, mode=mode, seed=11)
    loss = F.cross_entropy(net(x), y)
    (loss + handle.penalty() if mode == "loss" else loss).backward()
    for name, g in _grads(net).items():
        assert_close(f"{mode} {name}", g, expected[name], *TOL[torch.float64])


@pytest.mark.parametrize("autocast", [None, torch.bfloat16], ids=["fp32", "bf16-autocast"])
def test_loss_mode_is_invariant_to_grad_scaler_and_accumulation(autocast):
    """GradScaler (scale 2**16) and loss / k leave PER's share exactly as in the plain loss;
    injection (Algorithm 1) is off by the scale, the documented limit of mode='inject'."""
    x, y = _batch()

    def run(mode: str, scale: float | None, divide: int = 1) -> dict[str, torch.Tensor]:
        net = _net()
        handle = pt.regularize(net, coeff=3.0, num_slices=8, mode=mode, seed=5)
        opt = torch.optim.SGD(net.parameters(), lr=0.0)
        with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            loss = F.cross_entropy(net(x).float(), y)
            if mode == "loss":
                loss = loss + handle.penalty()
        loss = loss / divide
        if scale is None:
            loss.backward()
        else:
            scaler = torch.amp.GradScaler("cpu", init_scale=scale)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        return {n: g * divide for n, g in _grads(net).items()}

    plain = run("loss", None)
    for name, g in run("loss", 2.0**16).items():
        assert_close(f"GradScaler {name}", g, plain[name], *tolerances.LOOP_GRAD_SCALER)
    for name, g in run("loss", None, divide=4).items():
        assert_close(f"loss/4 {name}", g, plain[name], *tolerances.LOOP_LOSS_DIV_4)
    # Injection at the same scale: the task part is unscaled, PER's is divided by 2**16.
    inject_plain, inject_scaled = run("inject", None), run("inject", 2.0**16)
    assert_close(
        "inject = loss mode",
        inject_plain["0.weight"],
        plain["0.weight"],
        *tolerances.LOOP_INJECT_VS_LOSS,
    )
    assert (
        inject_scaled["0.weight"] - plain["0.weight"]
    ).abs().max() > tolerances.LOOP_PENALTY_VISIBLE


def test_penalty_is_zero_without_training_calls_and_errors_in_inject_mode():
    net = _net()
    handle = pt.regularize(net, coeff=1.0, num_slices=4, mode="loss")
    assert float(handle.penalty()) == 0.0
    net(_batch()[0]).sum().backward()
    first = handle.penalty()
    assert first.requires_grad and float(first.detach()) > 0
    assert float(handle.penalty()) == 0.0, "penalty() clears what it returned"
    net(_batch()[0]).sum()  # a forward whose penalty is never taken ...
    loss = net(_batch()[0]).sum() + handle.penalty()  # ... leaves nothing stale
    loss.backward()
    with pytest.raises(ValueError, match="mode"):
        pt.PER(mode="scaled")
    with pytest.raises(RuntimeError, match="mode='loss'"):
        pt.regularize(_net(), 1.0, 4).penalty()


def test_remove_drops_pending_penalties():
    """penalty() after remove() used to return the sum pending from before removal."""
    net = _net()
    x = _batch()[0]
    handle = pt.regularize(net, coeff=1.0, num_slices=4, mode="loss")
    net(x)
    pers = list(handle.layers.values())
    assert all(per._pending is not None for per in pers)  # something is pending
    handle.remove()
    after = handle.penalty()
    assert float(after) == 0.0 and not after.requires_grad
    assert all(float(per.penalty()) == 0.0 for per in pers)
    net(x)  # and the unhooked model records nothing new
    assert float(handle.penalty()) == 0.0


# -- 2. and 3. copies and saving ------------------------------------------------------


def test_deepcopy_is_independent_and_equally_regularized():
    net, (x, y) = _net(), _batch()
    handle = pt.regularize(net, coeff=2.0, num_slices=6)
    ema = copy.deepcopy(net)
    torch.manual_seed(3)
    F.cross_entropy(ema(x), y).backward()
    assert all(v is None for v in handle.losses().values()), "the copy's forward is its own"
    torch.manual_seed(3)
    F.cross_entropy(net(x), y).backward()
    for name, g in _grads(ema).items():  # same directions: the same gradient
        assert_close(f"copy {name}", g, _grads(net)[name], *tolerances.EXACT)
    copy_handle = PERHandle.of(ema)
    assert sorted(copy_handle.layers) == sorted(handle.layers) == ["1", "3"]
    assert all(copy_handle.layers[n] is not handle.layers[n] for n in handle.layers)

    plain = _net()
    F.cross_entropy(plain(x), y).backward()
    handle.remove()  # only the original loses PER
    net.zero_grad(), ema.zero_grad()
    F.cross_entropy(net(x), y).backward()
    F.cross_entropy(ema(x), y).backward()
    assert all(torch.equal(g, _grads(plain)[n]) for n, g in _grads(net).items())
    assert not torch.equal(_grads(ema)["0.weight"], _grads(plain)["0.weight"])
    copy_handle.remove()
    ema.zero_grad()
    F.cross_entropy(ema(x), y).backward()
    assert all(torch.equal(g, _grads(plain)[n]) for n, g in _grads(ema).items())


@pytest.mark.parametrize("mode", ["inject", "loss"])
def test_torch_save_of_a_regularized_model_round_trips(mode: str):
    net, (x, y) = _net(), _batch()
    handle = pt.regularize(net, coeff=1.5, num_slices=4, **_mode(mode))
    net(x).sum().backward()  # a pending penalty (mode="loss") is not saved
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    loaded_handle = PERHandle.of(loaded)
    assert sorted(loaded_handle.layers) == ["1", "3"]
    for model, h in ((net, handle), (loaded, loaded_handle)):
        model.zero_grad()
        torch.manual_seed(9)
        loss = F.cross_entropy(model(x), y)
        (loss + h.penalty() if mode == "loss" else loss).backward()
    for name, g in _grads(loaded).items():
        assert_close(f"loaded {name}", g, _grads(net)[name], *tolerances.EXACT)


# -- 4. empty batches -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["inject", "loss"])
def test_empty_batch_passes_through_per_and_regularized_models(mode: str):
    h = torch.randn(0, 5, requires_grad=True)
    layer = pt.PER(1.0, 8, **_mode(mode))
    out = layer(h)
    assert out.shape == (0, 5)
    out.sum().backward()
    assert h.grad.shape == (0, 5) and float(layer.last_loss) == 0.0

    net = _net()
    handle = pt.regularize(net, coeff=1.0, num_slices=4, **_mode(mode))
    out = net(torch.randn(0, 6))
    assert out.shape == (0, 3)
    loss = out.sum() + (handle.penalty() if mode == "loss" else 0.0)
    loss.backward()
    assert all(torch.equal(g, torch.zeros_like(g)) for g in _grads(net).values())
    assert all(float(v) == 0.0 for v in handle.losses().values())

    lstm = nn.LSTM(3, 4)
    with pt.regularize(lstm, coeff=1.0, num_slices=4):
        seq, _ = lstm(torch.randn(5, 0, 3))
        assert seq.shape == (5, 0, 4)


# -- 5. regularize twice --------------------------------------------------------------


def test_regularize_twice_is_an_error_until_removed():
    net = _net()
    handle = pt.regularize(net, coeff=1.0, num_slices=4)
    with pytest.raises(RuntimeError, match=r"\['1', '3'\] already carry PER"):
        pt.regularize(net, coeff=1.0, num_slices=4)
    with pytest.raises(RuntimeError, match="already"):
        pt.regularize(net, coeff=1.0, num_slices=4, names=["1"])
    handle.remove()
    again = pt.regularize(net, coeff=1.0, num_slices=4)
    assert sorted(again.layers) == ["1", "3"] and len(net[1]._forward_hooks) == 1


# -- 6. seeds -------------------------------------------------------------------------


def test_seed_sources_fix_directions_independently_of_the_global_generator():
    h0 = torch.randn(4, 6, dtype=torch.float64)

    def last_losses(seed, calls: int = 2, generator_seed: int = 0) -> list[float]:
        torch.manual_seed(generator_seed)
        layer = pt.PER(1.0, 5, seed=seed)
        out = []
        for _ in range(calls):
            layer(h0.clone().requires_grad_())
            out.append(float(layer.last_loss))
        return out

    def oracle(seed) -> float:
        theta = pt.sample_directions(5, 6, seed, dtype=torch.float64)
        return float(reference.per_loss(h0, theta))

    a = last_losses(21, generator_seed=0)
    assert a == last_losses(21, generator_seed=1), "an int seed ignores torch's generator"
    assert a[0] != a[1], "an int seed still gives new directions at every call"
    assert a == tolerances.LOOP_SEED_ORACLE.approx([oracle(derive_seed(21, 0, c)) for c in (0, 1)])
    seed_t = torch.tensor([77])
    want = [oracle(derive_seed(77, 0, None))] * 2
    assert last_losses(seed_t) == tolerances.LOOP_SEED_ORACLE.approx(want)
    from per_triton.api.distributed import StepSeed

    source = StepSeed(77)
    assert copy.deepcopy(source) is source, "a seed source is shared by copies"
    assert last_losses(source) == last_losses(seed_t)
    with pytest.raises(RuntimeError, match="agree"):
        pt.PER(1.0, 5, seed=StepSeed())(h0.clone().requires_grad_())
    with pytest.raises(TypeError, match="seed"):
        pt.PER(seed=1.5)
    with pytest.raises(ValueError, match="seed"):
        pt.regularize(_net(), seed=-1)


def test_tensor_seed_derivation_equals_the_int_one():
    for value in (0, 5, 2**62 + 3, 2**63 - 1):
        for index in (0, 1, 7):
            got = derive_seed(torch.tensor([value]), index, None)
            assert int(got) == derive_seed(value, index, None), (value, index)


def test_regularize_layers_get_distinct_directions_from_one_seed():
    net = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Tanh())
    handle = pt.regularize(net, coeff=1.0, num_slices=4, seed=3)
    net(torch.randn(5, 6)).sum().backward()
    # layer 2 sees tanh(tanh(.)): compare each with the oracle on its own derived seed
    assert handle.layers["1"].seed_index == 0 and handle.layers["2"].seed_index == 1
    assert derive_seed(3, 0, 0) != derive_seed(3, 1, 0)


# -- 7. torch.func and double backward ------------------------------------------------


def test_torch_func_grad_over_a_network_with_per():
    net, (x, y) = _net(torch.float64), _batch(dtype=torch.float64)
    model = nn.Sequential(net[0], net[1], pt.PER(0.9, 6), *net[2:])
    params = {n: p.detach() for n, p in model.named_parameters()}
    start = model[2]._stream.clone()

    def loss_fn(p):
        return F.cross_entropy(torch.func.functional_call(model, p, (x,)), y)

    got = torch.func.grad(loss_fn)(params)
    logged = model[2].last_loss
    assert not torch._C._functorch.is_functorch_wrapped_tensor(logged), "a plain logged value"
    assert int(model[2]._stream) == int(start) + 1, "the stream advanced under the transform"
    model[2]._stream = start  # the same directions in both runs
    loss_fn(dict(model.named_parameters())).backward()
    assert float(model[2].last_loss) == float(logged)
    for name, g in got.items():
        assert_close(f"func.grad {name}", g, _grads(model)[name], *TOL[torch.float64])


def test_per_loss_double_backward_gradgradcheck_float64():
    h = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: pt.per_loss(t, 5, seed=3), (h,))
    theta = pt.sample_directions(5, 7, 3, dtype=torch.float64)
    hess = torch.autograd.functional.hessian(lambda t: pt.per_loss(t, 5, seed=3), h.detach())
    expected = torch.autograd.functional.hessian(lambda t: reference.per_loss(t, theta), h.detach())
    assert_close("hessian", hess, expected, *TOL[torch.float64])


def test_gradient_penalty_through_a_regularized_network():
    """d/dW ||dLoss/dW||^2 (double backward through per_fwd and per_bwd) = plain-torch oracle.

    mode="loss" only: injection adds its gradient at every pass through the layer,
    the second pass of a double backward included (documented limit).
    """
    mode = "loss"
    x, y = _batch(dtype=torch.float64)

    def penalty_grad(use_reference: bool) -> dict[str, torch.Tensor]:
        net = _net(torch.float64)
        if use_reference:
            loss = _reference_loss(net, x, y, 0.8, seed=2, s=6)
        else:
            handle = pt.regularize(net, coeff=0.8, num_slices=6, mode=mode, seed=2)
            loss = F.cross_entropy(net(x), y)
            loss = loss + handle.penalty() if mode == "loss" else loss
        g = torch.autograd.grad(loss, list(net.parameters()), create_graph=True)
        sum(gi.square().sum() for gi in g).backward()
        return _grads(net)

    expected = penalty_grad(True)
    for name, g in penalty_grad(False).items():
        assert_close(f"{mode} {name}", g, expected[name], *tolerances.LOOP_DOUBLE_BACKWARD)


@pytest.mark.gpu
def test_double_backward_and_adjoint_on_cuda():
    """The CUDA kernels of per_proj (float64 chunk path) and the second derivative."""
    h = torch.randn(3, 300, dtype=torch.float64, device="cuda", requires_grad=True)
    seed = torch.tensor([5], device="cuda")
    assert torch.autograd.gradgradcheck(lambda t: pt.per_loss(t, 8, seed=seed), (h,))
    proj, norm = pt.ops.per_proj(h.detach(), seed, 8)
    theta = pt.sample_directions(8, 300, seed, device="cuda", dtype=torch.float64)
    assert_close("proj", proj / norm, h.detach() @ theta.T, *tolerances.GPU_PROJ_VS_DIRECTIONS)
    torch.library.opcheck(pt.ops.per_proj, (h, seed, 8))


# -- 8. compile order -----------------------------------------------------------------


class _Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


@pytest.mark.parametrize("build", [_net, _Custom], ids=["sequential", "custom-module"])
def test_regularize_warns_when_the_model_was_compiled_and_run_first(build):
    torch.compiler.reset()
    net = build()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pt.regularize(net, coeff=1.0, num_slices=4).remove()  # not compiled yet: silent
    compiled = torch.compile(net, backend="eager")
    compiled(_batch()[0])
    with pytest.warns(UserWarning, match="before torch.compile"):
        handle = pt.regularize(net, coeff=1.0, num_slices=4)
    # what the warning is about: the compiled code skips the new hooks ...
    compiled(_batch()[0]).sum().backward()
    assert all(v is None for v in handle.losses().values())
    torch.compiler.reset()  # ... until it recompiles, as the warning says
    compiled(_batch()[0]).sum().backward()
    assert all(v is not None for v in handle.losses().values())
    torch.compiler.reset()


def test_regularize_warning_for_a_fresh_instance_says_the_cache_is_per_class():
    """A never-compiled instance warns only because Dynamo would reuse the class's code.

    The warning must not claim this model was compiled; what it says instead is checked:
    compiled calls of the fresh instance skip PER, eager calls get it.
    """
    torch.compiler.reset()
    x = _batch()[0]
    torch.compile(_net(), backend="eager")(x)  # another instance of the class
    fresh = _net()
    with pytest.warns(UserWarning, match="another instance of its class") as record:
        handle = pt.regularize(fresh, coeff=1.0, num_slices=4)
    assert "this model was already compiled" not in str(record[0].message)
    torch.compile(fresh, backend="eager")(x).sum().backward()
    assert all(v is None for v in handle.losses().values())  # reused: PER skipped
    fresh(x).sum().backward()
    assert all(v is not None for v in handle.losses().values())  # eager: PER runs
    torch.compiler.reset()


# -- 9. functional activations --------------------------------------------------------


def test_functional_activations_error_lists_blocks_and_block_outputs_work():
    from per_triton.experiments.models.resnet import BasicBlock, resnet

    model = resnet(8, 10, "vanilla", width=4, num_slices=8)
    with pytest.raises(ValueError, match=r"F\.relu.*layers=\(BasicBlock,\).*blocks\.0"):
        pt.regularize(model)
    with pytest.raises(ValueError, match=r"did you mean \['blocks\.0'"):
        pt.regularize(model, names=["block.0"])
    seen: dict[str, torch.Tensor] = {}
    for i, block in enumerate(model.blocks):
        block.register_forward_hook(lambda _m, _a, out, i=i: seen.update({str(i): out.detach()}))
    handle = pt.regularize(model, coeff=1.0, num_slices=8, layers=(BasicBlock,), seed=6)
    assert list(handle.layers) == ["blocks.0", "blocks.1", "blocks.2"]
    model(torch.randn(3, 3, 8, 8)).sum().backward()
    for i in range(3):
        h = seen[str(i)]
        theta = pt.sample_directions(8, h[0].numel(), derive_seed(6, i, 0))
        expected = reference.per_loss(h, theta)
        assert_close(f"block {i}", handle.losses()[f"blocks.{i}"], expected, *tolerances.F32_PATHS)


# -- 11. numpy integers and the monitor under activation checkpointing -----------------


def test_numpy_integers_are_ints():
    h = torch.randn(3, 9)
    assert torch.equal(pt.per_loss(h, np.int64(7), seed=np.int64(2)), pt.per_loss(h, 7, seed=2))
    assert pt.PER(num_slices=np.int32(4)).num_slices == 4
    assert type(pt.regularize(_net(), num_slices=np.uint16(3)).layers["1"].num_slices) is int
    with pytest.raises(TypeError, match="num_slices"):
        pt.per_loss(h, np.float64(7))
    with pytest.raises(TypeError, match="num_slices"):
        pt.per_loss(h, np.True_)


class _Checkpointed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ckpt:
            return self.fc2(torch.utils.checkpoint.checkpoint(self.inner, x, use_reentrant=True))
        return self.fc2(self.inner(x))

    def inner(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc1(x))


@pytest.mark.parametrize("explicit", [False, True], ids=["self-counting", "step()"])
def test_monitor_under_reentrant_checkpointing_records_each_batch_at_its_step(explicit: bool):
    from per_triton.api.monitor import LayerMonitor

    batches = [torch.randn(5, 6, generator=torch.Generator().manual_seed(i)) for i in range(3)]

    def records(ckpt: bool) -> list[tuple[int, float]]:
        torch.manual_seed(0)
        model = _Checkpointed()
        model.ckpt = ckpt
        with LayerMonitor(model, ["act"], every=1, num_slices=8) as mon:
            for step, x in enumerate(batches):
                if explicit:
                    mon.step(step)
                model(x.requires_grad_()).sum().backward()
            return [(r["step"], r["sw1"]) for r in mon.records]

    assert records(True) == records(False)
    assert [s for s, _ in records(True)] == [0, 1, 2]


# -- the exact estimator in the same training loops -----------------------------------


def _exact_reference_loss(net: nn.Sequential, x, y, coeff: float):
    """Task loss + coeff * sum_l exact L_l, written out on the plain activations."""
    h, total = x, 0.0
    for m in net:
        h = m(h)
        if isinstance(m, (nn.ELU, nn.Tanh)):
            total = total + coeff * pt.per_loss(h, estimator="exact")
    return F.cross_entropy(h, y) + total


@pytest.mark.parametrize("mode", ["inject", "loss"])
def test_exact_estimator_in_both_modes_gives_the_written_out_gradient(mode: str):
    net, (x, y) = _net(torch.float64), _batch(dtype=torch.float64)
    _exact_reference_loss(net, x, y, 0.7).backward()
    expected = _grads(net)
    net.zero_grad()
    handle = pt.regularize(net, coeff=0.7, estimator="exact", **_mode(mode))
    loss = F.cross_entropy(net(x), y)
    if mode == "loss":
        penalty = handle.penalty()
        assert penalty.requires_grad and penalty.dtype == torch.float64
        acts = [net[:2](x), net[:4](x)]
        value = sum(0.7 * pt.per_loss(a, estimator="exact") for a in acts)
        assert_close(
            "penalty = coeff * exact loss",
            penalty.detach(),
            value.detach(),
            *tolerances.LOOP_EXACT_PENALTY,
        )
        loss = loss + penalty
    loss.backward()
    for name, g in _grads(net).items():
        assert_close(f"exact {mode} {name}", g, expected[name], *TOL[torch.float64])
    for name, value in handle.losses().items():
        assert value is not None and not value.requires_grad, name


def test_exact_loss_mode_is_invariant_to_grad_scaler_and_accumulation():
    x, y = _batch()

    def run(scale: float | None, divide: int = 1) -> dict[str, torch.Tensor]:
        net = _net()
        handle = pt.regularize(net, coeff=3.0, estimator="exact", mode="loss")
        loss = (F.cross_entropy(net(x), y) + handle.penalty()) / divide
        if scale is None:
            loss.backward()
        else:
            opt = torch.optim.SGD(net.parameters(), lr=0.0)
            scaler = torch.amp.GradScaler("cpu", init_scale=scale)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        return {n: g * divide for n, g in _grads(net).items()}

    plain = run(None)
    for name, g in run(2.0**16).items():
        assert_close(f"exact GradScaler {name}", g, plain[name], *tolerances.LOOP_GRAD_SCALER)
    for name, g in run(None, divide=4).items():
        assert_close(f"exact loss/4 {name}", g, plain[name], *tolerances.LOOP_LOSS_DIV_4)


@pytest.mark.parametrize("mode", ["inject", "loss"])
def test_exact_estimator_passes_empty_batches_through(mode: str):
    h = torch.randn(0, 5, requires_grad=True)
    layer = pt.PER(1.0, estimator="exact", **_mode(mode))
    out = layer(h)
    assert out.shape == (0, 5)
    out.sum().backward()
    assert h.grad.shape == (0, 5) and float(layer.last_loss) == 0.0
    net = _net()
    handle = pt.regularize(net, coeff=1.0, estimator="exact", **_mode(mode))
    loss = net(torch.randn(0, 6)).sum() + (handle.penalty() if mode == "loss" else 0.0)
    loss.backward()
    assert all(torch.equal(g, torch.zeros_like(g)) for g in _grads(net).values())


@pytest.mark.parametrize("mode", ["inject", "loss"])
def test_exact_regularized_model_deepcopies_and_pickles(mode: str):
    net, (x, y) = _net(), _batch()
    handle = pt.regularize(net, coeff=2.0, estimator="exact", **_mode(mode))

    def grads(model: nn.Module, h: PERHandle) -> dict[str, torch.Tensor]:
        model.zero_grad()
        loss = F.cross_entropy(model(x), y)
        (loss + h.penalty() if mode == "loss" else loss).backward()
        return _grads(model)

    expected = grads(net, handle)  # deterministic: no directions, no seed
    ema = copy.deepcopy(net)
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    plain = grads(_net(), PERHandle())
    for model in (ema, loaded):
        copy_handle = PERHandle.of(model)
        assert sorted(copy_handle.layers) == ["1", "3"]
        assert all(p.estimator == "exact" and p.mode == mode for p in copy_handle.layers.values())
        for name, g in grads(model, copy_handle).items():
            assert_close(f"copy {name}", g, expected[name], *tolerances.EXACT)
    handle.remove()  # only the original loses PER
    assert all(torch.equal(g, plain[n]) for n, g in grads(net, PERHandle()).items())
    assert not torch.equal(grads(ema, PERHandle.of(ema))["0.weight"], plain["0.weight"])


def test_exact_estimator_ignores_seed():
    """With estimator='exact' seed is validated but unused: any seed source, no draw, no call."""
    h = torch.randn(6, 9, dtype=torch.float64)
    base = pt.per_loss(h, estimator="exact")
    for seed in (3, torch.tensor([5]), None):
        assert torch.equal(pt.per_loss(h, seed=seed, estimator="exact"), base)

    calls = []

    def source() -> int:
        calls.append(1)
        return 1

    x, y = _batch(dtype=torch.float64)
    results = []
    for seed in (None, 7, torch.tensor([7]), source):
        net = _net(torch.float64)
        handle = pt.regularize(net, coeff=0.5, estimator="exact", mode="loss", seed=seed)
        state = torch.random.get_rng_state()
        (F.cross_entropy(net(x), y) + handle.penalty()).backward()
        assert torch.equal(torch.random.get_rng_state(), state), "exact draws no random numbers"
        assert all(p.calls == 0 for p in handle.layers.values())
        results.append(_grads(net))
    assert not calls, "a seed callable is never called with estimator='exact'"
    for other in results[1:]:
        assert all(torch.equal(other[n], results[0][n]) for n in results[0])
    with pytest.raises(TypeError, match="seed"):
        pt.PER(estimator="exact", seed="7")
    with pytest.raises(TypeError, match="seed"):
        pt.per_loss(h, seed=1.5, estimator="exact")
    with pytest.raises(ValueError, match="num_slices"):
        pt.regularize(_net(), num_slices=8, estimator="exact", seed=3)


@pytest.mark.parametrize("mode", ["inject", "loss"])
def test_exact_estimator_under_torch_func_and_no_double_backward(mode: str):
    x, y = _batch(dtype=torch.float64)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 9), nn.ELU(), pt.PER(0.9, estimator="exact", **_mode(mode)), nn.Linear(9, 3)
    ).double()

    def loss_fn(p):
        loss = F.cross_entropy(torch.func.functional_call(model, p, (x,)), y)
        return loss + model[2].penalty() if mode == "loss" else loss

    got = torch.func.grad(loss_fn)({n: p.detach() for n, p in model.named_parameters()})
    assert not torch._C._functorch.is_functorch_wrapped_tensor(model[2].last_loss)
    loss_fn(dict(model.named_parameters())).backward()
    for name, g in got.items():
        assert_close(f"exact func.grad {name}", g, _grads(model)[name], *TOL[torch.float64])

    loss = loss_fn(dict(model.named_parameters()))
    g = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
    with pytest.raises(RuntimeError, match="estimator='exact' has no second derivative"):
        sum(gi.square().sum() for gi in g).backward()
