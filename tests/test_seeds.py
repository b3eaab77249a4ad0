"""Child seeds (core/seeds.py): one derivation, no collisions of purpose, layer, block."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from per_triton.api import monitor
from per_triton.api.distributed import step_seed
from per_triton.api.layer_seeds import derive_seed
from per_triton.core import seeds
from per_triton.core.directions import draw_columns
from per_triton.experiments import digits_experiment

W = 256  # column segments compared across layers

# 7000026: layers 3, 7 and 11 drew the same tiles under the old derivation
STEP_SEEDS = (0, 1, 12345, 7000026, 2**62 + 3)


def test_layer_segments_never_repeat_across_layers():
    """Every (layer, column segment) of one step draws its own numbers.

    The old derivation added ``(i + 1) * golden`` twice (layer, then block), so layer
    ``i``'s block ``c`` was bit-identical to layer ``i + 1``'s block ``c - 1``.
    """
    layers, segments = 12, 48
    for step in STEP_SEEDS:
        heads = {}
        for i in range(layers):
            v = draw_columns(derive_seed(step, i, None), 1, 0, segments * W)[0]
            for c in range(segments):
                head = tuple(v[c * W : c * W + 4].tolist())
                assert head not in heads, f"step {step}: layer {i} segment {c} = {heads[head]}"
                heads[head] = (i, c)


def test_stream_keys_of_layers_and_steps_are_distinct():
    """The 64-bit Philox keys of 32 layers x 2**12 steps: all distinct, each the
    ``cpu-stream`` child of its layer seed."""
    keys = {
        seeds.cpu_stream_key(derive_seed(step_seed(7, t), i, None))
        for t in range(2**12)
        for i in range(32)
    }
    assert len(keys) == 32 * 2**12
    assert seeds.cpu_stream_key(5) == seeds.child_seed(5, "cpu-stream")


def test_child_seeds_do_not_collide_over_purposes_parents_and_indices():
    """5 purposes x 8 parents x 2**15 indices (1.3M 63-bit children): all distinct."""
    parents = [*STEP_SEEDS, derive_seed(7000026, 3, None), derive_seed(7000026, 4, None), 2**64 - 1]
    indices = np.arange(2**15)
    children = [
        seeds.child_seeds(p, purpose, indices) for purpose in seeds.PURPOSES for p in parents
    ]
    flat = np.concatenate(children)
    assert flat.min() >= 0 and len(np.unique(flat)) == flat.size
    # the vectorised form is the scalar one
    for purpose in seeds.PURPOSES:
        for p in parents[:3]:
            expected = [seeds.child_seed(p, purpose, int(i)) for i in (0, 1, 777, 2**15 - 1)]
            assert (
                seeds.child_seeds(p, purpose, np.array([0, 1, 777, 2**15 - 1])).tolist() == expected
            )


def test_every_derivation_goes_through_child_seed():
    assert derive_seed(7000026, 3, None) == seeds.child_seed(7000026, "layer", 3)
    assert step_seed(11, 40) == seeds.child_seed(11, "step", 40)
    assert digits_experiment._step_seed(11, 40) == step_seed(11, 40)
    assert monitor.record_seed(9, 4) == seeds.child_seed(9, "monitor-record", 4)
    gen = torch.Generator().manual_seed(seeds.child_seed(9, "monitor-units", "block2.pre"))
    expected = torch.randperm(1000, generator=gen)[:20].sort().values
    assert torch.equal(monitor.select_units(1000, 20, 9, "block2.pre"), expected)


def test_string_index_and_range():
    a = seeds.child_seed(3, "monitor-units", "conv1")
    assert (
        a
        == seeds.child_seed(3, "monitor-units", "conv1")
        != seeds.child_seed(3, "monitor-units", "conv2")
    )
    assert 0 <= a < seeds.SEED_LIMIT


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((-1, "layer", 0), "parent"),
        ((2**64, "layer", 0), "parent"),
        ((1.5, "layer", 0), "parent"),
        ((1, "layers", 0), "purpose"),
        ((1, "layer", -2), "index"),
        ((1, "layer", 2.0), "index"),
    ],
)
def test_bad_arguments_are_named(args, name):
    with pytest.raises(ValueError, match=name):
        seeds.child_seed(*args)


def test_tensor_children_equal_int_children():
    """The on-device derivation (PER's seed stream) gives child_seed's values exactly."""
    parents = [0, 1, 7000026, 2**62 + 3, 2**63 - 1, 123456789123456789]
    for purpose, index in (("layer", 0), ("layer", 5), ("step", 1000)):
        got = seeds.child_seed_tensor(torch.tensor(parents), purpose, index).tolist()
        assert got == [seeds.child_seed(p, purpose, index) for p in parents]


def test_tensor_indices_equal_int_children():
    """A tensor of indices (PER's call counter for an int seed) gives child_seed's values."""
    indices = [0, 1, 2, 999, 2**31, 2**40 + 7, 2**62, 2**63 - 2]
    for parent in (0, 123, 2**63 - 1, 2**64 - 1):
        got = seeds.child_seed_tensor(parent, "step", torch.tensor(indices)).tolist()
        assert got == [seeds.child_seed(parent, "step", i) for i in indices]
    # both tensors, broadcast
    parents = torch.tensor([[5], [2**62 + 1]])
    got = seeds.child_seed_tensor(parents, "layer", torch.tensor([0, 3]))
    want = [[seeds.child_seed(p, "layer", i) for i in (0, 3)] for p in (5, 2**62 + 1)]
    assert got.tolist() == want
    with pytest.raises(ValueError, match="index"):
        seeds.child_seed_tensor(1, "step", torch.tensor([1], dtype=torch.int32))
    with pytest.raises(ValueError, match="tensor"):
        seeds.child_seed_tensor(1, "step", 2)
