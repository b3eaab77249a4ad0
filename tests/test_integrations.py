"""The framework integrations beyond the recipes: Lightning under fp16 mixed
precision (GradScaler), SW1 logging from a LayerMonitor, TensorBoard's
SummaryWriter, and the refusals."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import TensorDataset

import per_triton as pt
from per_triton.api.monitor import LayerMonitor
from per_triton.integrations import SW1Reader

from . import tolerances
from .assertions import assert_close
from .recipe_support import (
    COEFF,
    SEED,
    SLICES,
    data,
    load_recipe,
    mlp,
    reference_grads,
    reference_per_loss,
    sgd_step_grads,
    windows,
)
from .zoo import torchvision_importable

torchvision_importable()

K, BATCH, LR = 4, 4, 1.0
ARGS = dict(accumulate=K, batch_size=BATCH, lr=LR, coeff=COEFF, num_slices=SLICES, seed=SEED)


def test_lightning_fp16_mixed_scales_per_like_the_loss(tmp_path):
    """``16-mixed``: Lightning backpropagates ``scaler.scale(loss / k)``; the callback
    multiplies the injected gradient by the scaler's scale and ``1/k`` (without it,
    PER's share would be ``k * 2**8`` times too small after unscaling)."""
    pytest.importorskip("lightning")
    from lightning.pytorch.plugins import MixedPrecision

    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    x, y = data(K * BATCH)
    module = load_recipe("lightning")["train"](
        mlp(),
        TensorDataset(x, y),
        str(tmp_path),
        max_steps=1,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
        **ARGS,
    )
    assert scaler.get_scale() == 2.0**8  # no overflow: the step was taken
    got = sgd_step_grads(mlp(), module.net, LR)
    want = reference_grads(mlp(), [windows(x, y, BATCH)])
    for name in want:
        assert_close(name, got[name], want[name], *tolerances.FP16_AUTOCAST_GRAD)


def test_lightning_logs_the_monitors_sw1(tmp_path):
    pytest.importorskip("lightning")
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from per_triton.integrations.lightning import PERCallback

    recipe = load_recipe("lightning")
    net = mlp()
    module = recipe["Classifier"](net, LR)
    monitor = LayerMonitor(net, ["1"], every=1, num_slices=16)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        callbacks=[PERCallback(coeff=COEFF, num_slices=SLICES, seed=SEED, monitor=monitor)],
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    x, y = data(2 * BATCH)
    trainer.fit(module, torch.utils.data.DataLoader(TensorDataset(x, y), batch_size=BATCH))
    [metrics] = list(tmp_path.glob("lightning_logs/*/metrics.csv"))
    rows = [r for r in csv.DictReader(metrics.open()) if r.get("sw1/1")]
    want = [r["sw1"] for r in monitor.records]
    assert [float(r["sw1/1"]) for r in rows] == [tolerances.F32_SUM.approx(v) for v in want]
    assert len(want) == 2


def test_tensorboard_summary_writer_gets_per_and_sw1(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from per_triton.integrations.tensorboard import log_per

    net = mlp()
    handle = pt.regularize(net, coeff=COEFF, num_slices=SLICES, seed=SEED)
    sw1 = SW1Reader(LayerMonitor(net, ["1"], every=1, num_slices=16))
    writer = SummaryWriter(tmp_path)
    xs = [xb for xb, _ in windows(*data(2 * BATCH), BATCH)]
    for step, xb in enumerate(xs):
        net(xb).sum().backward()
        log_per(writer, handle, step, sw1=sw1)
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    per = [(e.step, e.value) for e in events.Scalars("per/1")]
    want = [(step, reference_per_loss(mlp(), xb, call=step)) for step, xb in enumerate(xs)]
    assert [s for s, _ in per] == [0, 1]
    assert [v for _, v in per] == [tolerances.F32_PER_MODULE.approx(v) for _, v in want]
    assert [e.step for e in events.Scalars("sw1/1")] == [0, 1]


def test_callbacks_refuse_mode_loss_and_hf_fp16():
    pytest.importorskip("lightning")
    from per_triton.integrations.lightning import PERCallback

    with pytest.raises(ValueError, match="mode"):
        PERCallback(mode="loss")
    from .zoo import need

    need("transformers")
    from per_triton.integrations.hf import PERTrainerCallback

    with pytest.raises(ValueError, match="mode"):
        PERTrainerCallback(mode="loss")
    args = SimpleNamespace(fp16=True, gradient_accumulation_steps=1, world_size=1, seed=0)
    with pytest.raises(ValueError, match="fp16"):
        PERTrainerCallback().on_train_begin(args, None, None, model=mlp())
