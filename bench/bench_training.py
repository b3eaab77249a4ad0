"""Training-iteration benchmark: whole steps of the paper's models for every method.

One benchmark per (model, method, dtype): the model is built on the device with
``torch.manual_seed(0)``, one fixed synthetic batch is drawn on the device, and
``per_triton.experiments.training.train_step`` (forward, loss with the regulariser, backward,
SGD step) is timed for 20 iterations after 3 untimed ones (``--rounds``). Each
call is timed with CUDA events on a GPU (``time.perf_counter`` on the CPU) and
leaves the device idle, so pytest-benchmark's own numbers are synchronised too.

Models (full size = the PER paper's settings, section 4.3.1 for the cost table):
``cnn11`` (ELU, 100 classes, batch 128, 32x32), ``resnet110`` (Fixup for every
method but ``bn``, batch 128), ``lstm`` (2x650, vocabulary 10000, batch 20, 35
steps, gradient clipping 5). Methods: vanilla, bn, vcl, l1, l2, per, per_exact, per_torch, with
``s = 256`` and one coefficient. Dtypes: ``float32`` with torch's default settings,
and ``bf16-autocast``. ``PER_TRITON_BENCH_QUICK=1`` shrinks widths, inputs, batches
and ``s`` (ResNet-8 for ResNet-110) and runs 3 rounds: a CPU smoke test, not a
measurement.

Run through ``per-triton bench --suite training`` (which writes the result file), or
``pytest bench/bench_training.py --benchmark-json=out.json``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from per_triton.bench.common import (
    EventTimer,
    bench_device,
    bench_quick,
    bench_rounds,
    percentiles,
)
from per_triton.core import normals
from per_triton.experiments.baselines import METHODS
from per_triton.experiments.models import build_model
from per_triton.experiments.training import train_step

COEFF = 1e-4
DTYPES = {"float32": None, "bf16-autocast": torch.bfloat16}

# label -> model factory (per_triton.experiments.models.MODELS), build kwargs, batch, input, s
FULL: dict[str, dict[str, Any]] = {
    "cnn11": {
        "factory": "cnn11",
        "build": {"num_classes": 100, "activation": "elu"},
        "batch": 128,
        "image": 32,
        "num_slices": 256,
    },
    "resnet110": {
        "factory": "resnet110",
        "build": {"num_classes": 10},
        "batch": 128,
        "image": 32,
        "num_slices": 256,
    },
    "lstm": {
        "factory": "lstm",
        "build": {"vocab_size": 10000},
        "batch": 20,
        "bptt": 35,
        "clip": 5.0,
        "num_slices": 256,
    },
}
# Smoke test on a CPU: same code paths, tiny shapes (ResNet-8 instead of ResNet-110).
QUICK: dict[str, dict[str, Any]] = {
    "cnn11": {
        "factory": "cnn11",
        "build": {"num_classes": 10, "activation": "elu", "width": 1 / 16, "input_size": 8},
        "batch": 8,
        "image": 8,
        "num_slices": 32,
    },
    "resnet8": {
        "factory": "resnet",
        "build": {"depth": 8, "num_classes": 10, "width": 4},
        "batch": 8,
        "image": 8,
        "num_slices": 32,
    },
    "lstm": {
        "factory": "lstm",
        "build": {"vocab_size": 50, "hidden": 16, "max_steps": 6},
        "batch": 4,
        "bptt": 6,
        "clip": 5.0,
        "num_slices": 32,
    },
}

QUICK_MODE = bench_quick()
DEVICE = bench_device()
CONFIGS = QUICK if QUICK_MODE else FULL
WARMUP = 1 if QUICK_MODE else 3
ROUNDS = bench_rounds(3 if QUICK_MODE else 20)


def synthetic_batch(
    model: str, cfg: dict[str, Any], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch on ``device``: images and labels, or token and next-token ids."""
    gen = torch.Generator().manual_seed(1234)
    if model == "lstm":
        vocab = cfg["build"]["vocab_size"]
        tokens = torch.randint(0, vocab, (cfg["bptt"] + 1, cfg["batch"]), generator=gen)
        return tokens[:-1].to(device), tokens[1:].to(device)
    classes = cfg["build"]["num_classes"]
    x = torch.randn(cfg["batch"], 3, cfg["image"], cfg["image"], generator=gen)
    y = torch.randint(0, classes, (cfg["batch"],), generator=gen)
    return x.to(device), y.to(device)


@pytest.fixture(autouse=True)
def _free_device_memory():
    yield
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()


def _cases() -> list[Any]:
    """One case per (model, method, dtype); the id names model, method, batch, dtype, s, device."""
    cases = []  # float32 first, model by model: a run cut short keeps the main table
    for dtype in DTYPES:
        for model_name, cfg in CONFIGS.items():
            for method in METHODS:
                case_id = (
                    f"{model_name}-{method}-b{cfg['batch']}-{dtype}"
                    f"-s{cfg['num_slices']}-{DEVICE.type}"
                )
                cases.append(pytest.param(model_name, method, dtype, id=case_id))
    return cases


@pytest.mark.parametrize(("model_name", "method", "dtype"), _cases())
def test_training_iteration(benchmark, model_name: str, method: str, dtype: str) -> None:
    cfg = CONFIGS[model_name]
    torch.manual_seed(0)
    s = cfg["num_slices"]
    model = build_model(cfg["factory"], method, num_slices=s, **cfg["build"]).to(DEVICE)
    x, y = synthetic_batch(model_name, cfg, DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        train_step(
            model,
            x,
            y,
            opt,
            coeff=COEFF,
            autocast_dtype=DTYPES[dtype],
            clip_grad_norm=cfg.get("clip"),
        )

    timer = EventTimer(step, DEVICE)
    benchmark.group = f"{model_name} {dtype}"
    benchmark.extra_info.update(
        {
            "suite": "training",
            "model": model_name,
            "method": method,
            "batch": cfg["batch"],
            "dtype": dtype,
            "num_slices": s,
            "device": DEVICE.type,
            "quick": QUICK_MODE,
            # the CPU stream's sampler (per_triton.core.normals.sampler); None on CUDA
            "sampler": normals.sampler() if DEVICE.type == "cpu" else None,
            "config": {k: v for k, v in cfg.items() if k != "build"} | cfg["build"],
        }
    )
    for _ in range(WARMUP):  # outside pedantic: a cut here leaves no half-made result
        timer()
    benchmark.pedantic(timer, rounds=ROUNDS, warmup_rounds=0, iterations=1)
    benchmark.extra_info.update(percentiles(timer.samples(skip=WARMUP)))
