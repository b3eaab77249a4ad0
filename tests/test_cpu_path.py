"""The CPU path's kept directions, thread split and allocation bound (core/cpu_path.py,
core/kept_directions.py)."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import per_triton as pt
from per_triton.core import cpu_path, kept_directions, reference
from per_triton.core.directions import draw_columns

from . import tolerances
from .assertions import assert_close

W = 256  # a chunk width for the tests


@pytest.fixture
def budget():
    """Restore the kept-directions budget and empty the store after the test."""
    old = kept_directions.cache_budget()
    yield kept_directions.set_cache_budget
    kept_directions.set_cache_budget(0)
    kept_directions.set_cache_budget(old)


@pytest.mark.parametrize("kept_chunks", [0, 3, 10])
def test_kept_or_regenerated_the_gradient_is_eq6_on_the_same_directions(budget, kept_chunks):
    """Budget for 0, 3 or all 10 chunks: loss and gradient equal the reference's."""
    s, chunk = 16, 2 * W
    h = torch.randn(3, 10 * chunk - 77, dtype=torch.float64)
    budget(4 * s * chunk * kept_chunks)
    loss, coeff = cpu_path.forward(h, 5, s, chunk=chunk)
    grad = cpu_path.backward(coeff, 5, h.shape[1], torch.float64, chunk=chunk)
    theta = pt.sample_directions(s, h.shape[1], 5, dtype=torch.float64)
    assert_close("loss", loss / 3, reference.per_loss(h, theta), *tolerances.F64_SAME_MATH)
    assert_close("grad", grad / 3, reference.per_grad(h, theta), *tolerances.F64_GRAD_PATHS)


@pytest.mark.parametrize("b", [1, 65])
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16])
def test_small_and_large_batches_match_the_reference(b, out_dtype):
    """A batch of one and a larger one, with a partial last chunk: loss and gradient
    equal the reference on the same directions."""
    s, chunk = 12, 3 * W
    gen = torch.Generator().manual_seed(b)
    h = torch.randn(b, 2 * chunk + W + 40, dtype=torch.float64, generator=gen)
    loss, coeff = cpu_path.forward(h, 9, s, chunk=chunk, keep=False)
    grad = cpu_path.backward(coeff, 9, h.shape[1], torch.float64, chunk=chunk)
    theta = pt.sample_directions(s, h.shape[1], 9, dtype=torch.float64)
    assert_close("loss", loss / b, reference.per_loss(h, theta), *tolerances.F64_SAME_MATH)
    assert_close("grad", grad / b, reference.per_grad(h, theta), *tolerances.F64_GRAD_PATHS)
    # another output dtype than coeff's: the products are converted into the gradient
    low = cpu_path.backward(coeff.float(), 9, h.shape[1], out_dtype, chunk=chunk)
    assert low.dtype == out_dtype
    # float32 products, then rounded to out_dtype (cancellation: float32's absolute error)
    rtol = tolerances.F32_PATHS.rtol if out_dtype == torch.float32 else 2**-8
    assert_close("grad", low.double() / b, reference.per_grad(h, theta), 1e-6, rtol)


def test_backward_redraws_only_the_chunks_past_the_budget(budget, monkeypatch):
    s, chunk = 8, W
    h = torch.randn(2, 10 * chunk)
    budget(4 * s * chunk * 4)  # three kept chunks and the working chunk
    calls = []

    def counting(seed, num_slices, start, stop, out=None, threads=None):
        calls.append(start // chunk)
        return draw_columns(seed, num_slices, start, stop, out, threads)

    monkeypatch.setattr(cpu_path, "draw_columns", counting)
    _loss, coeff = cpu_path.forward(h, 1, s, chunk=chunk)
    assert calls == list(range(10))
    calls.clear()
    cpu_path.backward(coeff, 1, h.shape[1], torch.float32, chunk=chunk)
    assert sorted(calls) == list(range(3, 10))
    # the backward took its entry out: a second backward redraws everything
    calls.clear()
    cpu_path.backward(coeff, 1, h.shape[1], torch.float32, chunk=chunk)
    assert sorted(calls) == list(range(10))


class _LargestOutput(TorchDispatchMode):
    """Records the largest tensor any aten op returns (allocations of this thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel() * t.element_size())
        return out


def test_no_allocation_of_directions_above_the_working_chunk_and_budget(budget):
    """``s*d`` = 64 MiB of directions: no tensor above 4 MiB; kept bytes and the working
    chunk together within the budget."""
    b, d, s = 2, 2**16, 256
    budget(12 * 2**20)
    h = torch.randn(b, d, requires_grad=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # every op on this thread, where the mode sees it
    try:
        with _LargestOutput() as mode:
            loss = pt.per_loss(h, s, seed=3)
            stored = kept_directions.stored_bytes()
            loss.backward()
    finally:
        torch.set_num_threads(threads)
    assert 0 < stored <= 12 * 2**20 - cpu_path.WORK_BYTES
    assert kept_directions.stored_bytes() == 0
    assert mode.largest <= max(cpu_path.WORK_BYTES, 4 * b * d), mode.largest
    assert mode.largest <= 4 * s * d // 16  # a sixteenth of the direction matrix


def test_forward_without_backward_leaves_at_most_the_budget(budget):
    budget(2**20)
    for seed in range(5):
        cpu_path.forward(torch.randn(2, 4096), seed, 64, chunk=1024)
    assert 0 < kept_directions.stored_bytes() <= 2**20
    assert kept_directions.clear_kept() > 0 and kept_directions.stored_bytes() == 0


def test_thread_count_changes_nothing_but_rounding(monkeypatch):
    from per_triton.core import directions

    a = draw_columns(8, 256, 0, 16 * W, threads=1)  # 2**20 normals: split over threads
    splits = []
    real = directions.parallel_map
    monkeypatch.setattr(
        directions, "parallel_map", lambda fn, items, n: splits.append(n) or real(fn, items, n)
    )
    assert torch.equal(a, draw_columns(8, 256, 0, 16 * W, threads=2))
    assert splits == [2]
    monkeypatch.undo()
    h = torch.randn(4, 3 * 2**14, dtype=torch.float64)
    threads = torch.get_num_threads()
    results = []
    for n in (1, 2):
        torch.set_num_threads(n)
        try:
            loss, coeff = cpu_path.forward(h, 4, 256, keep=False)
            results.append((loss, cpu_path.backward(coeff, 4, h.shape[1], torch.float64)))
        finally:
            torch.set_num_threads(threads)
    assert_close("loss", results[1][0], results[0][0], *tolerances.F64_SAME_MATH)
    assert_close("grad", results[1][1], results[0][1], *tolerances.F64_GRAD_PATHS)


def test_per_loss_equals_the_registered_ops():
    h = torch.randn(5, 3000, requires_grad=True)
    loss = pt.per_loss(h, 32, seed=11, reduction="sum")
    loss.backward()
    h2 = h.detach().clone().requires_grad_()
    loss2, _ = torch.ops.per_triton.per_fwd(h2, torch.tensor([11]), 32, "tf32")
    loss2.backward()
    assert torch.equal(loss, loss2) and torch.equal(h.grad, h2.grad)


def test_bad_budget_is_named():
    with pytest.raises(ValueError, match="num_bytes"):
        kept_directions.set_cache_budget(-1)


def _child_draw(queue) -> None:
    torch.set_num_threads(2)
    # no torch reduction here: GNU OpenMP parallel regions can hang in a forked child
    queue.put(draw_columns(8, 256, 0, 16 * W, threads=2).numpy().copy())


def test_a_forked_child_draws_on_its_own_pool():
    """The parent's pool threads do not exist after fork: the child must not wait on them."""
    import multiprocessing as mp

    expected = draw_columns(8, 256, 0, 16 * W, threads=2)  # starts the parent's pool
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_draw, args=(queue,))
    child.start()
    got = queue.get(timeout=120)  # before join: the child exits once its data is sent
    child.join(timeout=30)
    assert child.exitcode == 0
    assert torch.equal(torch.from_numpy(got), expected)


def test_eager_cpu_twin_equals_the_custom_op_to_second_order(monkeypatch):
    """Eager CPU calls skip the custom-op dispatch (the ops' eager CPU twins); loss, gradient
    and a gradient of the gradient norm equal those through the registered ops."""
    from per_triton.core import ops, registration

    gen = torch.Generator().manual_seed(3)
    h0 = torch.randn(5, 700, dtype=torch.float64, generator=gen)

    def run():
        h = h0.clone().requires_grad_()
        loss, _coeff = ops.per_fwd_autograd(h, torch.tensor([7]), 24, "ieee")
        (grad,) = torch.autograd.grad(loss, h, create_graph=True)
        (grad2,) = torch.autograd.grad(grad.square().sum(), h)
        return loss, grad, grad2

    twin = run()
    assert twin[0].grad_fn.name() == ops._FWD.eager_cpu.__name__ + "Backward"
    monkeypatch.setattr(registration, "_plain_eager_cpu", lambda *_: False)  # the registered ops
    op = run()
    assert "per_triton" in op[0].grad_fn.name() and "eager" not in op[0].grad_fn.name()
    for name, a, b in zip(("loss", "grad", "grad2"), twin, op, strict=True):
        assert torch.equal(a, b), name


def test_small_call_leaves_torch_thread_settings_alone(monkeypatch):
    """A call too small to split never touches torch.set_num_threads: that call also
    resets torch's process-wide default, which threads started meanwhile would keep
    (126 of 200 new threads were seen stuck at one thread when it did)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # several intra-op threads: what the old code switched off
    calls = []
    try:
        with monkeypatch.context() as patch:
            patch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
            h = torch.randn(3, 650, requires_grad=True)
            pt.per_loss(h, 64, seed=2).backward()
            _loss, coeff = cpu_path.forward(h.detach(), 2, 64, keep=False)
            cpu_path.backward(coeff, 2, 650, torch.float32)
    finally:
        torch.set_num_threads(threads)
    assert calls == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_small_layer_fast_backward_equals_the_registered_formula(monkeypatch, dtype):
    """A layer within one chunk keeps its directions on the graph (ops._PerFwdEagerCPU):
    its first-order gradient, also after retain_graph, equals the registered ops'."""
    from per_triton.core import registration

    h0 = torch.randn(6, 700, generator=torch.Generator().manual_seed(1)).to(dtype)

    def grads():
        h = h0.clone().requires_grad_()
        loss = pt.per_loss(h, 48, seed=5)
        loss.backward(retain_graph=True)
        first = h.grad.clone()
        loss.backward()  # the kept directions serve a second backward too
        return loss, first, h.grad - first

    kept_before = kept_directions.stored_bytes()
    fast = grads()
    assert kept_directions.stored_bytes() == kept_before  # on the graph, not in the store
    monkeypatch.setattr(registration, "_plain_eager_cpu", lambda *_: False)
    op = grads()
    assert torch.equal(fast[0], op[0])
    for a, b in zip(fast[1:], op[1:], strict=True):
        assert a.dtype == dtype
        assert_close(
            "grad", a.double(), b.double(), 1e-7, 2**-7 if dtype == torch.bfloat16 else 1e-6
        )


def test_whole_matrix_path_is_taken_for_one_chunk_or_a_large_batch_within_the_budget(budget):
    h = torch.randn(3, 4096)
    assert cpu_path.forward_small(h, 1, 64) is not None  # 1 MiB of directions
    assert cpu_path.forward_small(h, 1, 512) is None  # 8 MiB: above WORK_BYTES
    big = torch.randn(cpu_path._SPLIT_MAX_ROWS + 1, 4096)
    out = cpu_path.forward_small(big, 1, 512)  # a large batch: one 8 MiB matrix
    assert out is not None and out[2].shape == (512, 4096)
    loss, coeff = cpu_path.forward(big, 1, 512, keep=False)
    assert_close("loss", out[0], loss, *tolerances.F32_PATHS)
    budget(2**19)
    assert cpu_path.forward_small(h, 1, 64) is None  # above the budget
    assert cpu_path.forward_small(big, 1, 512) is None


def test_split_calls_record_no_graph_and_allow_double_backward():
    """Work on the pool threads runs without autograd (grad mode is per thread): a
    split float64 forward builds no graph, and a gradient penalty through a large
    layer works with two threads (both failed before: mm(out=) refused, and each
    chunk's float64 copy was kept alive by a throwaway graph)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        h = torch.randn(4, 65536, dtype=torch.float64, requires_grad=True)
        assert cpu_path._plan(4, 65536, 256, None)[1] == 2  # the split path
        proj, norm = cpu_path.projections(h, 3, 256)
        assert proj.grad_fn is None and not proj.requires_grad
        hf = h.detach().float().requires_grad_()
        (grad,) = torch.autograd.grad(pt.per_loss(hf, 256, seed=1), hf, create_graph=True)
        grad.square().sum().backward()
        assert hf.grad is not None and torch.isfinite(hf.grad).all()
    finally:
        torch.set_num_threads(threads)


def test_budget_variable_is_validated(tmp_path):
    import os
    import subprocess
    import sys

    for value in ("32MB", "-1", "nan"):
        env = {**os.environ, "PER_TRITON_CPU_CACHE_MB": value}
        out = subprocess.run(
            [sys.executable, "-c", "import per_triton.core.kept_directions"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert out.returncode != 0 and "PER_TRITON_CPU_CACHE_MB" in out.stderr, value
    import numpy as np

    old = kept_directions.set_cache_budget(np.int64(5))  # integer types are ints
    assert kept_directions.set_cache_budget(old) == 5
