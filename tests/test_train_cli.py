"""`per-triton train` at a tiny size, the digits loader and the small conv net."""

from __future__ import annotations

import json

import pytest
import torch

from per_triton.cli import main
from per_triton.digits import load_digits
from per_triton.models.small_cnn import SmallCNN
from per_triton.monitor import read_records

pytest.importorskip("sklearn")

TAPS = ["block1.pre", "block2.pre", "block3.pre"]


def test_tiny_training_run_writes_valid_records(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    figure = tmp_path / "img" / "closeness.png"
    argv = ["train", "--tiny", "--seeds", "0,1", "--out", str(out), "--threads", "1"]
    try:
        import matplotlib  # noqa: F401

        argv += ["--figure", str(figure)]
    except ImportError:
        figure = None
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "wrote" in printed
    summary = json.loads((out / "summary.json").read_text())
    methods = ("vanilla", "bn", "vcl", "per")
    assert sorted((e["method"], e["seed"]) for e in summary) == sorted(
        (m, s) for m in methods for s in (0, 1)
    )
    for entry in summary:
        assert 0.0 <= entry["test_accuracy"] <= 1.0
        assert isinstance(entry["final_loss"], float) and entry["final_loss"] > 0
    for method in methods:
        records = read_records(out / f"{method}.jsonl")  # checks every record's format
        assert {r["layer"] for r in records} == set(TAPS)
        assert {(r["method"], r["model"]) for r in records} == {(method, "small_cnn_digits")}
        assert {r["seed"] for r in records} == {0, 1}
        assert all(r["step"] % 2 == 0 for r in records)  # --tiny monitors every 2 steps
        assert all(r["sw1"] is not None and r["sw1"] > 0 for r in records)
    if figure is not None:
        assert figure.stat().st_size > 10_000
        assert (figure.parent / "closeness_quantiles.png").stat().st_size > 10_000
    # A second run into the same folder replaces the records instead of appending.
    assert main(argv[:-2] if figure else argv) == 0
    assert len(read_records(out / "per.jsonl")) == len(records)


def test_unknown_method_is_refused(tmp_path) -> None:
    with pytest.raises(SystemExit, match="unknown method"):
        main(["train", "--tiny", "--methods", "vanilla,dropout", "--out", str(tmp_path)])


def test_digits_split_is_fixed_stratified_and_standardised() -> None:
    a, b = load_digits(), load_digits()
    assert torch.equal(a.test_x, b.test_x) and torch.equal(a.train_y, b.train_y)
    assert a.train_x.shape[1:] == (1, 8, 8) and a.train_x.dtype == torch.float32
    assert a.train_x.shape[0] + a.test_x.shape[0] == 1797
    assert abs(a.train_x.mean().item()) < 1e-5 and abs(a.train_x.std().item() - 1) < 1e-3
    counts = torch.bincount(a.test_y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of each class (174..183 images)
    train_rows = {tuple(r.tolist()) for r in a.train_x.flatten(1)}
    overlap = sum(tuple(r.tolist()) in train_rows for r in a.test_x.flatten(1))
    assert overlap <= 2  # the data set itself holds a few duplicate images
    tiny = load_digits(limit=40)
    assert tiny.train_x.shape[0] == 40 and tiny.test_x.shape[0] == 10


@pytest.mark.parametrize("method", ["vanilla", "bn", "vcl", "per"])
def test_small_cnn_shapes_taps_and_regularisers(method: str) -> None:
    net = SmallCNN(width=4, method=method, num_slices=8)
    assert net.tap_names == TAPS
    x = torch.randn(6, 1, 8, 8)
    assert net(x).shape == (6, 10)
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert has_bn == (method == "bn")
    big = SmallCNN(width=4, method=method, init_scale=3.0)
    torch.manual_seed(0)
    ref = SmallCNN(width=4, method=method)
    torch.manual_seed(0)
    scaled = SmallCNN(width=4, method=method, init_scale=3.0)
    assert torch.allclose(scaled.block2.conv.weight, 3 * ref.block2.conv.weight)
    assert big.fc.in_features == 4 * 2 * 2 * 2
    with pytest.raises(ValueError, match="activation"):
        SmallCNN(activation="swish")
    with pytest.raises(ValueError, match="method"):
        SmallCNN(method="dropout")
