"""`per-triton train` at a tiny size, the digits loader and the small conv net."""

from __future__ import annotations

import json

import pytest
import torch

from per_triton.api.monitor import read_records
from per_triton.cli import build_parser, main
from per_triton.cli import train as train_cmd
from per_triton.experiments.digits import load_digits
from per_triton.experiments.models.small_cnn import SmallCNN

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
    methods = ("vanilla", "bn", "vcl", "per", "per_exact")
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


@pytest.fixture
def no_training(monkeypatch) -> None:
    """Fail the test if the command loads the data or trains: checks come first."""

    def fail(*args, **kwargs):
        raise AssertionError("bad arguments must be refused before loading or training")

    monkeypatch.setattr("per_triton.experiments.digits.load_digits", fail)
    monkeypatch.setattr(train_cmd, "train_one", fail)


def usage_error(argv: list[str], capsys) -> str:
    """Run ``per-triton train argv``; check it exits 2 like argparse; return stderr."""
    with pytest.raises(SystemExit) as err:
        main(["train", *argv])
    assert err.value.code == 2
    stderr = capsys.readouterr().err
    assert "per-triton train: error:" in stderr and "Traceback" not in stderr
    return stderr


def test_unknown_method_is_refused(tmp_path, capsys, no_training) -> None:
    stderr = usage_error(["--tiny", "--methods", "vanilla,dropout", "--out", str(tmp_path)], capsys)
    assert "argument --methods: unknown method(s) dropout" in stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "a"], "argument --seeds: expected comma-separated integers, got 'a'"),
        (["--seeds", "0,x"], "argument --seeds"),
        (["--seeds", "0,,1"], "argument --seeds"),
        (["--seeds", "-1"], "argument --seeds: seeds must be in [0, 2**32)"),
        (["--methods", ""], "argument --methods"),
        (["--methods", "per,per"], "argument --methods: repeated entry"),
        (["--device", "bogus"], "argument --device: expected cpu, cuda or cuda:N"),
        (["--device", "cuda:x"], "argument --device: expected cpu, cuda or cuda:N"),
        (["--num-slices", "0"], "argument --num-slices: must be a positive integer"),
        (["--monitor-slices", "0"], "argument --monitor-slices: must be a positive integer"),
        (["--monitor-every", "0"], "argument --monitor-every: must be a positive integer"),
        (["--epochs", "0"], "argument --epochs: must be a positive integer"),
        (["--epochs", "1.5"], "argument --epochs: expected an integer"),
        (["--batch-size", "0"], "argument --batch-size: must be a positive integer"),
        (["--width", "0"], "argument --width: must be a positive integer"),
        (["--lr", "0"], "argument --lr: must be a finite number > 0"),
        (["--lr", "-0.1"], "argument --lr: must be a finite number > 0"),
        (["--lr", "nan"], "argument --lr: must be a finite number > 0"),
        (["--init-scale", "0"], "argument --init-scale: must be a finite number > 0"),
        (["--per-coeff", "-1"], "argument --per-coeff: must be a finite number >= 0"),
        (["--vcl-coeff", "-1"], "argument --vcl-coeff: must be a finite number >= 0"),
        (["--l1-coeff", "-0.001"], "argument --l1-coeff: must be a finite number >= 0"),
        (["--l2-coeff", "inf"], "argument --l2-coeff: must be a finite number >= 0"),
        (["--threads", "-1"], "argument --threads: must be an integer >= 0"),
        (["--overhead-steps", "-1"], "argument --overhead-steps: must be an integer >= 0"),
        # Fewer images than one batch: no step, no records (the figure used to crash).
        (["--batch-size", "1439"], "argument --batch-size: 1439 is larger than the training"),
        (["--tiny", "--batch-size", "257"], "256 images with --tiny"),
    ],
)
def test_bad_arguments_are_usage_errors(argv, message, tmp_path, capsys, no_training) -> None:
    out = tmp_path / "run"
    assert message in usage_error([*argv, "--out", str(out)], capsys)
    assert not out.exists()  # refused before anything was written


def test_largest_batch_is_the_training_set(tmp_path, capsys, no_training) -> None:
    assert train_cmd.TRAIN_SIZE == 1438
    assert "1438 images" in usage_error(["--batch-size", "1439", "--out", str(tmp_path)], capsys)
    with pytest.raises(AssertionError, match="before loading"):  # 1438 itself passes the checks
        main(["train", "--batch-size", "1438", "--out", str(tmp_path)])


def test_train_size_matches_the_split() -> None:
    assert load_digits().train_x.shape[0] == train_cmd.TRAIN_SIZE


def test_cuda_device_needs_cuda(tmp_path, capsys, monkeypatch, no_training) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:0"):
        stderr = usage_error(["--device", device, "--out", str(tmp_path)], capsys)
        assert "argument --device" in stderr and "CUDA is not available" in stderr
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    stderr = usage_error(["--device", "cuda:1", "--out", str(tmp_path)], capsys)
    assert "argument --device" in stderr and "only 1 CUDA device" in stderr
    assert build_parser().parse_args(["train", "--device", "cuda:0"]).device == "cuda:0"


def test_unwritable_output_folders_are_refused(tmp_path, capsys, no_training) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    stderr = usage_error(["--out", str(blocker / "run")], capsys)
    assert "argument --out: cannot write to folder" in stderr
    stderr = usage_error(["--out", str(blocker)], capsys)
    assert "argument --out: cannot write to folder" in stderr
    argv = ["--out", str(tmp_path / "run"), "--figure", str(blocker / "img" / "c.png")]
    assert "argument --figure: cannot write to folder" in usage_error(argv, capsys)
    argv = ["--out", str(tmp_path / "run"), "--figure", str(tmp_path)]
    assert "argument --figure" in usage_error(argv, capsys)


SIZE_FLAGS = {
    "epochs": 3,
    "width": 5,
    "batch_size": 50,
    "num_slices": 8,
    "monitor_slices": 4,
    "monitor_every": 3,
}


@pytest.mark.parametrize("name", sorted(SIZE_FLAGS))
def test_tiny_keeps_explicit_sizes(name: str) -> None:
    flag = "--" + name.replace("_", "-")
    args = build_parser().parse_args(["train", "--tiny", flag, str(SIZE_FLAGS[name])])
    cfg = train_cmd.config_from_args(args)
    assert getattr(cfg, name) == SIZE_FLAGS[name]
    others = {k: getattr(cfg, k) for k in train_cmd.TINY if k != name}
    assert others == {k: v for k, v in train_cmd.TINY.items() if k != name}
    assert cfg.limit == train_cmd.TINY_LIMIT
    full = train_cmd.config_from_args(build_parser().parse_args(["train"]))
    assert full == train_cmd.Config()  # no --tiny: the documented defaults


def test_tiny_run_records_the_sizes_used(tmp_path) -> None:
    out = tmp_path / "run"
    argv = ["train", "--tiny", "--methods", "vanilla", "--seeds", "0", "--out", str(out)]
    argv += ["--threads", "1", "--epochs", "2", "--batch-size", "50", "--monitor-every", "3"]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    used = dict(train_cmd.TINY, epochs=2, batch_size=50, monitor_every=3)
    for key, value in used.items():
        assert config[key] == value and config["arguments"][key] == value
    assert config["limit"] == 256 and config["methods"] == ["vanilla"] and config["seeds"] == [0]
    (entry,) = json.loads((out / "summary.json").read_text())
    assert entry["steps"] == 2 * (256 // 50)
    assert {r["step"] for r in read_records(out / "vanilla.jsonl")} == {0, 3, 6, 9}


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


@pytest.mark.parametrize("method", ["vanilla", "bn", "vcl", "per", "per_exact"])
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
