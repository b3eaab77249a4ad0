"""per_triton.monitor: what it records, when, in which format, and that it changes nothing."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import per_triton as pt
from per_triton.api.monitor import (
    RECORD_KEYS,
    LayerMonitor,
    check_record,
    layer_statistics,
    read_records,
    record_seed,
    select_units,
)
from per_triton.api.selectors import select_modules
from per_triton.experiments.models.small_cnn import PreActivation, SmallCNN

from . import tolerances

# Statistics are float32 on the same values: they must agree to rounding.
STAT_ATOL = tolerances.MONITOR_STAT_ATOL
TAPS = ["block1.pre", "block2.pre", "block3.pre"]


def _net(seed: int = 0, **kw) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(width=4, **kw)


def _x(b: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_records_follow_the_contract_and_the_schedule(tmp_path) -> None:
    net, path = _net(), tmp_path / "sub" / "run.jsonl"
    with LayerMonitor(
        net,
        TAPS,
        every=3,
        num_slices=16,
        units=8,
        path=path,
        run="r",
        model_name="small_cnn",
        method="vanilla",
        seed=5,
    ) as mon:
        for _ in range(7):  # automatic steps 0..6: records at 0, 3, 6
            net(_x())
        records = mon.records
    assert [(r["step"], r["layer"]) for r in records] == [(s, n) for s in (0, 3, 6) for n in TAPS]
    for rec in records:
        check_record(rec)
        assert list(rec) == list(RECORD_KEYS)
        assert (rec["run"], rec["model"], rec["method"], rec["seed"]) == (
            "r",
            "small_cnn",
            "vanilla",
            5,
        )
        assert rec["var"] >= 0 and rec["q25"] <= rec["q50"] <= rec["q75"] and rec["sw1"] > 0
    assert read_records(path) == records  # the file holds exactly the same records
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_values_match_a_direct_computation() -> None:
    net, x = _net(), _x(b=32)
    seen = {}
    net.block2.pre.register_forward_hook(lambda m, a, out: seen.setdefault("h", out.detach()))
    with LayerMonitor(
        net, ["block2.pre"], every=1, num_slices=32, units=20, direction_seed=9
    ) as mon:
        mon.step(4)
        net(x)
        (rec,) = mon.records
    h = seen["h"].reshape(32, -1)
    vals = h[:, select_units(h.shape[1], 20, 9, "block2.pre")].reshape(-1)
    expected = {
        "sw1": pt.sliced_wasserstein_to_normal(h, 32, seed=record_seed(9, 4)).item(),
        "mean": vals.mean().item(),
        "var": vals.var(correction=0).item(),
        **{
            k: torch.quantile(vals, q).item()
            for k, q in (("q25", 0.25), ("q50", 0.5), ("q75", 0.75))
        },
    }
    for key, tol in STAT_ATOL.items():
        assert rec[key] == pytest.approx(expected[key], abs=tol), key


def test_unit_choice_is_fixed_and_covers_small_layers() -> None:
    a = select_units(1000, 64, 0, "block1.pre")
    assert torch.equal(a, select_units(1000, 64, 0, "block1.pre"))
    assert a.numel() == 64 and a.unique().numel() == 64 and int(a.max()) < 1000
    assert not torch.equal(a, select_units(1000, 64, 1, "block1.pre"))
    assert torch.equal(select_units(10, 64, 0, "x"), torch.arange(10))


def test_methods_are_measured_on_the_same_directions() -> None:
    """Two runs (different metadata, same direction_seed) see the same directions."""
    x = _x()
    recs = []
    for method in ("vanilla", "per"):
        net = _net()
        with LayerMonitor(net, TAPS, every=1, num_slices=16, method=method) as mon:
            net(x)
            recs.append(mon.records)
    for a, b in zip(*recs, strict=True):
        assert a["sw1"] == b["sw1"] and a["method"] != b["method"]
    assert record_seed(0, 0) != record_seed(0, 10) != record_seed(1, 0)


def test_explicit_steps_eval_forwards_and_repeated_forwards() -> None:
    net = _net()
    with LayerMonitor(net, ["block1.pre"], every=2, num_slices=8) as mon:
        for step in range(5):
            mon.step(step)
            net(_x())
            net(_x(seed=2))  # a second forward in the same step is not recorded again
        net.eval()
        mon.step(6)
        net(_x())  # eval mode: ignored
        net.train()
        assert [r["step"] for r in mon.records] == [0, 2, 4]


def test_monitor_changes_no_output_or_gradient_and_close_removes_hooks() -> None:
    x = _x()
    outs, grads = [], []
    for monitored in (False, True):
        net = _net()
        mon = LayerMonitor(net, TAPS, every=1, num_slices=8) if monitored else None
        out = net(x)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append(net.block1.conv.weight.grad.clone())
        if mon is not None:
            n = len(mon.records)
            mon.close()
            mon.close()  # idempotent
            net(x)
            assert len(mon.records) == n == 3
            assert not net._forward_hooks and not net.block1.pre._forward_hooks
    assert torch.equal(outs[0], outs[1]) and torch.equal(grads[0], grads[1])


def test_layers_by_type_and_with_per_attached() -> None:
    net = _net()
    handle = pt.regularize(net, 0.1, 16, names=TAPS)
    with LayerMonitor(net, PreActivation, every=1, num_slices=8) as mon:
        net(_x()).sum().backward()
        assert [r["layer"] for r in mon.records] == TAPS
    handle.remove()


def test_non_finite_values_become_null(tmp_path) -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.Identity())
    with LayerMonitor(net, ["1"], every=1, num_slices=4, path=tmp_path / "r.jsonl"):
        net(torch.full((3, 4), float("nan")))
    (rec,) = read_records(tmp_path / "r.jsonl")
    assert rec["mean"] is None and rec["var"] is None
    assert not any(isinstance(v, float) and math.isnan(v) for v in rec.values())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"layers": ["nope"]}, "nope"),
        ({"layers": []}, "at least one"),
        ({"layers": nn.LSTM}, "no module of type"),
        ({"every": 0}, "every"),
        ({"num_slices": 0}, "num_slices"),
        ({"units": 0}, "units"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, match: str) -> None:
    kwargs = {"layers": TAPS, **kwargs}
    with pytest.raises(ValueError, match=match):
        LayerMonitor(_net(), **kwargs)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"every": 2.5}, TypeError, "every must be an int"),
        ({"every": True}, TypeError, "every must be an int"),
        ({"num_slices": 8.0}, TypeError, "num_slices must be an int"),
        ({"seed": -1}, ValueError, r"seed must be in \[0, 2\*\*63\)"),
        ({"seed": None}, TypeError, "seed must be an int"),
        ({"direction_seed": -1}, ValueError, r"direction_seed must be in \[0, 2\*\*63\)"),
        ({"direction_seed": 1.5}, TypeError, "direction_seed must be an int"),
        ({"layers": [nn.ReLU, 3]}, TypeError, "layers must hold module names"),
    ],
)
def test_non_integer_schedule_and_bad_seeds_are_rejected(kwargs, error, match) -> None:
    """every=2.5 used to record steps 0, 2, 4 and seed=-1 passed though per_loss rejects it."""
    kwargs = {"layers": TAPS, **kwargs}
    with pytest.raises(error, match=match):
        LayerMonitor(_net(), **kwargs)


def test_numpy_every_and_a_list_mixing_types_and_names_select_as_exclude_does() -> None:
    """layers=[type, name] used to fail with 'no module named [<class ...>]'."""
    np = pytest.importorskip("numpy")
    net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 5), nn.Tanh(), nn.ReLU())
    expected = {"1", "2", "4"}  # the ReLUs by type, "2" by name; model order
    assert select_modules(dict(net.named_modules()), [nn.ReLU, "2"], "x") == expected
    with LayerMonitor(net, [nn.ReLU, "2"], every=np.int64(2), num_slices=4, units=2) as mon:
        for _ in range(5):
            net(torch.randn(6, 4))
        records = mon.records
    assert [(r["step"], r["layer"]) for r in records] == [
        (s, n) for s in (0, 2, 4) for n in ("1", "2", "4")
    ]
    # regularize's exclude takes the same mixed list through the same parser
    handle = pt.regularize(net, layers=(nn.ReLU, nn.Tanh), exclude=[nn.Tanh, "4"], num_slices=4)
    assert list(handle.layers) == ["1"]
    handle.remove()


def test_check_record_rejects_malformed_records() -> None:
    good = (
        dict.fromkeys(RECORD_KEYS, "x")
        | {"seed": 0, "step": 1}
        | dict.fromkeys(("sw1", "mean", "var", "q25", "q50", "q75"), 0.5)
    )
    check_record(good)
    for bad in (
        {k: v for k, v in good.items() if k != "sw1"},
        good | {"step": 1.0},
        good | {"var": "high"},
        good | {"extra": 1},
    ):
        with pytest.raises(ValueError):
            check_record(bad)


def test_recurrent_layer_reads_time_steps_as_samples_and_batch_size_may_change() -> None:
    """An LSTM's (T, b, H) output is T*b samples of dimension H; a smaller batch works."""
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 5)
    seen: list[torch.Tensor] = []
    lstm.register_forward_hook(lambda m, a, out: seen.append(out[0].detach()))
    with LayerMonitor(lstm, [""], every=1, num_slices=8, units=4, direction_seed=2) as mon:
        mon.step(0)
        lstm(torch.randn(7, 4, 3))
        mon.step(1)
        lstm(torch.randn(7, 2, 3))
        records = mon.records
    assert [r["step"] for r in records] == [0, 1]
    for rec, out in zip(records, seen, strict=True):
        h = out.reshape(-1, 5)  # T*b samples of dimension H
        expected = pt.sliced_wasserstein_to_normal(h, 8, seed=record_seed(2, rec["step"]))
        assert rec["sw1"] == pytest.approx(expected.item(), abs=STAT_ATOL["sw1"])


def test_logged_values_are_plain_floats_and_pending_statistics_hold_no_graph() -> None:
    """Records hold Python floats (or None); the statistics waiting for a flush, and
    :func:`layer_statistics` on an input that requires grad, carry no autograd graph."""
    net = _net()
    with LayerMonitor(net, TAPS, every=1, num_slices=8, flush_every=100) as mon:
        net(_x()).square().sum().backward()
        pending = [t for _, _, t in mon._pending]
        assert len(pending) == 3
        assert all(t.grad_fn is None and not t.requires_grad for t in pending)
        records = mon.records
    stats = [k for k in records[0] if k in ("sw1", "mean", "var", "q25", "q50", "q75")]
    assert len(stats) == 6
    assert all(type(r[k]) is float for r in records for k in stats)
    h = torch.randn(16, 10, requires_grad=True) * 1.5
    out = layer_statistics(h, torch.arange(4), 8, 0)
    assert out.grad_fn is None and not out.requires_grad and out.shape == (6,)
