"""`per-triton train`: the paper's distribution analysis (section 4.3.2) on real data.

Trains :class:`per_triton.models.small_cnn.SmallCNN` on scikit-learn's bundled 8x8
digits (no download) with each method (vanilla, BN, VCL, PER) and each seed, on the
same data order and schedule, while :class:`per_triton.monitor.LayerMonitor`
records every conv block's pre-activation closeness to N(0, I). Writes, under
``--out``: ``<method>.jsonl`` (closeness records, docs/CONTRACTS.md) and
``summary.json`` (test accuracy and loss per method and seed); ``--figure`` draws
SW1 per layer over training and the accuracy of each method.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import NoReturn

import torch
import torch.nn.functional as F
from torch import nn

from ..methods import DEFAULT_TRAIN_METHODS as DEFAULT_METHODS
from ..methods import TRAIN_METHODS as METHODS
from ._args import finite_float, int_at_least

#: ``per_exact`` (estimator="exact") uses PER's coefficient: the same loss in expectation.
COEFF_OF = {"per_exact": "per"}
MODEL_NAME = "small_cnn_digits"
# Training images in load_digits()'s fixed split: 1797 minus 359 held out (20% of each
# class); a test checks it. Known without loading the data, so --batch-size is checked
# before anything runs.
TRAIN_SIZE = 1438
SEED_LIMIT = 2**32
# --tiny's sizes, applied only to the flags the user left out, and its training subset.
TINY = {
    "epochs": 1,
    "width": 4,
    "batch_size": 32,
    "num_slices": 16,
    "monitor_slices": 16,
    "monitor_every": 2,
}
TINY_LIMIT = 256


@dataclass
class Config:
    """Everything that fixes a run besides the method and the seed."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    width: int = 16
    init_scale: float = 1.0
    per_coeff: float = 0.1
    vcl_coeff: float = 0.1
    l1_coeff: float = 1e-3
    l2_coeff: float = 1e-3
    num_slices: int = 256
    monitor_every: int = 10
    monitor_slices: int = 256
    limit: int | None = None
    device: str = "cpu"
    monitor: bool = True


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` in eval mode."""
    model.eval()
    logits = model(x)
    model.train()
    return (logits.argmax(1) == y).float().mean().item(), F.cross_entropy(logits, y).item()


def _step_seed(seed: int, step: int) -> int:
    """Seed of PER's directions at one step: reproducible, distinct per run and step."""
    return seed * 1_000_003 + step


def train_one(
    method: str, seed: int, cfg: Config, data, path: str | None, run: str = "digits", log=print
) -> dict:
    """Train one (method, seed); return its summary entry. Records go to ``path``.

    Every method starts from ``torch.manual_seed(seed)`` and sees the same batches;
    the step is :func:`per_triton.training.train_step` (task loss plus
    ``coeff * sum`` of the penalties at each pre-activation).
    """
    from per_triton.models.small_cnn import SmallCNN
    from per_triton.monitor import LayerMonitor
    from per_triton.training import train_step

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    torch.manual_seed(seed)
    model = SmallCNN(cfg.width, method, init_scale=cfg.init_scale, num_slices=cfg.num_slices)
    model.to(cfg.device)
    coeff = getattr(cfg, f"{COEFF_OF.get(method, method)}_coeff", 0.0)
    taps = model.tap_names
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    monitor = None
    if cfg.monitor:
        monitor = LayerMonitor(
            model,
            taps,
            every=cfg.monitor_every,
            num_slices=cfg.monitor_slices,
            path=path,
            run=run,
            model_name=MODEL_NAME,
            method=method,
            seed=seed,
        )
    gen = torch.Generator().manual_seed(seed)
    n = data.train_x.shape[0]
    step, seconds = 0, 0.0
    losses: list[float] = []
    for epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=gen).to(cfg.device)
        losses = []
        start = time.perf_counter()
        for i in range(0, n - cfg.batch_size + 1, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            if monitor is not None:
                monitor.step(step)
            result = train_step(
                model,
                data.train_x[idx],
                data.train_y[idx],
                opt,
                coeff=coeff,
                seed=_step_seed(seed, step),
            )
            losses.append(result.task_loss.item())
            step += 1
        seconds += time.perf_counter() - start
        acc, _ = evaluate(model, data.test_x, data.test_y)
        log(
            f"  {method:8s} seed {seed} epoch {epoch + 1:3d}/{cfg.epochs} "
            f"loss {sum(losses) / max(len(losses), 1):.4f} test acc {acc:.4f}"
        )
    if monitor is not None:
        monitor.close()
    acc, test_loss = evaluate(model, data.test_x, data.test_y)
    train_acc, _ = evaluate(model, data.train_x, data.train_y)
    return {
        "method": method,
        "seed": seed,
        "test_accuracy": acc,
        "final_loss": sum(losses) / max(len(losses), 1),
        "test_loss": test_loss,
        "train_accuracy": train_acc,
        "steps": step,
        "seconds_per_step": seconds / max(step, 1),
    }


COLORS = {
    "vanilla": "#d62728",
    "bn": "#1f77b4",
    "vcl": "#7f7f7f",
    "l1": "#9467bd",
    "l2": "#8c564b",
    "per": "#2ca02c",
    "per_exact": "#17becf",
}


def _by_step(records: list[dict], layer: str, key: str) -> tuple[list[int], list[list[float]]]:
    """Steps and, per step, the values of ``key`` over seeds for one layer."""
    by_step: dict[int, list[float]] = {}
    for r in records:
        if r["layer"] == layer and r[key] is not None:
            by_step.setdefault(r["step"], []).append(r[key])
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def draw_figure(out: str, figure: str) -> None:
    """Two PNGs from ``<out>/<method>.jsonl`` and ``<out>/summary.json`` (needs matplotlib).

    ``figure``: SW1 per layer over training (mean over seeds, min-max band) and test
    accuracy (mean, sample sd, each seed). ``<figure stem>_quantiles.png``: the
    monitored units' median and 25-75% band per layer and method (mean over seeds),
    against N(0, 1)'s quartiles (the paper's Figure 5, over time).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from per_triton.monitor import read_records

    with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    methods = [m for m in METHODS if any(e["method"] == m for e in summary)]
    records = {m: read_records(os.path.join(out, f"{m}.jsonl")) for m in methods}
    layers = sorted({r["layer"] for recs in records.values() for r in recs})
    fig, axes = plt.subplots(1, len(layers) + 1, figsize=(4 * (len(layers) + 1), 3.4))
    for ax, layer in zip(axes, layers, strict=False):
        for m in methods:
            steps, vals = _by_step(records[m], layer, "sw1")
            thin = m in ("vcl", "l1", "l2")
            ax.plot(
                steps,
                [np.mean(v) for v in vals],
                label=m,
                color=COLORS[m],
                lw=1.0 if thin else 1.6,
                ls="--" if thin else "-",
            )
            ax.fill_between(
                steps,
                [min(v) for v in vals],
                [max(v) for v in vals],
                color=COLORS[m],
                alpha=0.15,
                lw=0,
            )
        ax.set_title(f"{layer}: SW1 to N(0, I)")
        ax.set_xlabel("training step")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(frameon=False)
    ax = axes[-1]
    for i, m in enumerate(methods):
        accs = [100 * e["test_accuracy"] for e in summary if e["method"] == m]
        sd = float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0
        ax.errorbar(i, np.mean(accs), yerr=sd, fmt="o", color=COLORS[m], capsize=4)
        ax.scatter([i + 0.15] * len(accs), accs, s=10, color=COLORS[m], alpha=0.6)
    ax.set_xticks(range(len(methods)), methods)
    ax.set_title(f"test accuracy (%), mean and sd of {len(summary) // len(methods)} seeds")
    ax.grid(alpha=0.3, axis="y")
    _save(fig, figure)

    fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 3.4), sharey=True)
    shades = plt.get_cmap("viridis")(np.linspace(0.0, 0.8, len(layers)))
    for ax, m in zip(np.atleast_1d(axes), methods, strict=False):
        for layer, color in zip(layers, shades, strict=False):
            steps, med = _by_step(records[m], layer, "q50")
            _, lo = _by_step(records[m], layer, "q25")
            _, hi = _by_step(records[m], layer, "q75")
            ax.plot(steps, [np.mean(v) for v in med], color=color, lw=1.4, label=layer)
            ax.fill_between(
                steps,
                [np.mean(v) for v in lo],
                [np.mean(v) for v in hi],
                color=color,
                alpha=0.2,
                lw=0,
            )
        for q in (-0.6745, 0.0, 0.6745):  # quartiles of N(0, 1)
            ax.axhline(q, color="black", lw=0.8, ls=":")
        ax.set_title(f"{m}: median and 25-75% of units")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(frameon=False, fontsize=8)
    root, ext = os.path.splitext(figure)
    _save(fig, f"{root}_quantiles{ext}")


def _save(fig, path: str) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _comma_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    if len(set(items)) != len(items):
        raise argparse.ArgumentTypeError(f"repeated entry in {text!r}")
    return items


def _methods(text: str) -> list[str]:
    """argparse type of --methods: known method names, each once."""
    methods = _comma_list(text)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {', '.join(bad)}; choose from {','.join(METHODS)}"
        )
    return methods


def _seeds(text: str) -> list[int]:
    """argparse type of --seeds: integers in [0, 2**32), each once."""
    seeds = []
    for item in _comma_list(text):
        try:
            seed = int(item)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated integers, got {item!r}"
            ) from None
        if not 0 <= seed < SEED_LIMIT:
            raise argparse.ArgumentTypeError(f"seeds must be in [0, 2**32), got {seed}")
        seeds.append(seed)
    return seeds


def _device(text: str) -> str:
    """argparse type of --device: cpu, cuda or cuda:N, with CUDA present for the latter."""
    name, _, index = text.partition(":")
    if name == "cpu" and not index:
        return text
    if name != "cuda" or (index and not index.isdigit()):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    if not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r} asked for, but CUDA is not available")
    if index and int(index) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(
            f"{text!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist"
        )
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Config()
    positive, count = int_at_least(1), int_at_least(0)
    # Sizes that --tiny may set default to None, so that explicit values are kept.
    size = "(default: {}; --tiny: {})".format
    parser.add_argument(
        "--methods",
        type=_methods,
        default=",".join(DEFAULT_METHODS),
        help="comma-separated subset of " + ",".join(METHODS),
    )
    parser.add_argument(
        "--seeds", type=_seeds, default="0,1,2", help="comma-separated training seeds in [0, 2**32)"
    )
    parser.add_argument(
        "--epochs", type=positive, default=None, help=size(d.epochs, TINY["epochs"])
    )
    parser.add_argument(
        "--batch-size",
        type=positive,
        default=None,
        help=f"images per step, at most the {TRAIN_SIZE} training images ({TINY_LIMIT} with "
        "--tiny) " + size(d.batch_size, TINY["batch_size"]),
    )
    parser.add_argument("--lr", type=finite_float(True), default=d.lr, help="SGD learning rate")
    parser.add_argument(
        "--width",
        type=positive,
        default=None,
        help="channels of block 1 " + size(d.width, TINY["width"]),
    )
    parser.add_argument(
        "--init-scale",
        type=finite_float(True),
        default=d.init_scale,
        help="factor on the initial conv weights (>1: drifting start)",
    )
    coeff = finite_float(False)
    parser.add_argument(
        "--per-coeff",
        type=coeff,
        default=d.per_coeff,
        help="PER coefficient (reduction='mean', per layer), also for per_exact",
    )
    parser.add_argument("--vcl-coeff", type=coeff, default=d.vcl_coeff)
    parser.add_argument("--l1-coeff", type=coeff, default=d.l1_coeff)
    parser.add_argument("--l2-coeff", type=coeff, default=d.l2_coeff)
    parser.add_argument(
        "--num-slices",
        type=positive,
        default=None,
        help="directions for PER " + size(d.num_slices, TINY["num_slices"]),
    )
    parser.add_argument(
        "--monitor-every",
        type=positive,
        default=None,
        help="record every N steps " + size(d.monitor_every, TINY["monitor_every"]),
    )
    parser.add_argument(
        "--monitor-slices",
        type=positive,
        default=None,
        help="directions for the monitor's sliced W1 "
        + size(d.monitor_slices, TINY["monitor_slices"]),
    )
    parser.add_argument("--device", type=_device, default=d.device, help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--out", default="closeness-run", help="output folder (<method>.jsonl, summary.json)"
    )
    parser.add_argument("--figure", default=None, help="write the closeness figure (PNG)")
    parser.add_argument(
        "--overhead-steps",
        type=count,
        default=0,
        help="also time this many steps with and without the monitor",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help=f"smoke size: {TINY_LIMIT} training samples, and the --tiny sizes above "
        "for the flags not given",
    )
    parser.add_argument("--threads", type=count, default=0, help="torch CPU threads (0: default)")
    parser.set_defaults(_parser=parser)


def config_from_args(args: argparse.Namespace) -> Config:
    """The run's :class:`Config`: explicit sizes, else ``--tiny``'s, else the defaults."""
    fallback = TINY if args.tiny else asdict(Config())
    sizes = {k: fallback[k] if getattr(args, k) is None else getattr(args, k) for k in TINY}
    return Config(
        **sizes,
        lr=args.lr,
        init_scale=args.init_scale,
        per_coeff=args.per_coeff,
        vcl_coeff=args.vcl_coeff,
        l1_coeff=args.l1_coeff,
        l2_coeff=args.l2_coeff,
        limit=TINY_LIMIT if args.tiny else None,
        device=args.device,
    )


def _error(args: argparse.Namespace, message: str) -> NoReturn:
    """Usage error: the parser's message and exit status 2, no traceback."""
    parser = getattr(args, "_parser", None)
    if parser is not None:
        parser.error(message)
    print(f"per-triton train: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _writable_folder(args: argparse.Namespace, flag: str, folder: str) -> None:
    """Create ``folder`` if needed and check a file can be written there."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        _error(args, f"{flag}: cannot write to folder {folder!r}: {err.strerror or err}")


def _validate(args: argparse.Namespace, cfg: Config) -> None:
    """Checks that need more than one flag or the file system; before any data loads."""
    n_train = TRAIN_SIZE if cfg.limit is None else min(cfg.limit, TRAIN_SIZE)
    if cfg.batch_size > n_train:
        _error(
            args,
            f"argument --batch-size: {cfg.batch_size} is larger than the training set "
            f"({n_train} images{' with --tiny' if args.tiny else ''}): no training step",
        )
    _writable_folder(args, "argument --out", args.out)
    if args.figure:
        import importlib.util

        if os.path.isdir(args.figure):
            _error(args, f"argument --figure: {args.figure!r} is a folder, not a file name")
        if importlib.util.find_spec("matplotlib") is None:
            _error(args, "argument --figure needs matplotlib: pip install matplotlib")
        parent = os.path.dirname(os.path.abspath(args.figure))
        _writable_folder(args, "argument --figure", parent)


def measure_overhead(cfg: Config, data, steps: int, everies=(1, 10, 100)) -> dict:
    """Seconds per vanilla training step without and with the monitor (every N steps).

    Runs are interleaved and repeated three times; the minimum of each is kept.
    """
    from dataclasses import replace

    per_epoch = data.train_x.shape[0] // cfg.batch_size
    epochs = max(1, math.ceil(steps / per_epoch))
    keys = ["off", *everies]
    times: dict = {k: [] for k in keys}
    for _ in range(3):
        for key in keys:
            c = replace(cfg, epochs=epochs, monitor=key != "off")
            if key != "off":
                c.monitor_every = key
            entry = train_one("vanilla", 0, c, data, None, log=lambda *_: None)
            times[key].append(entry["seconds_per_step"])
    off = min(times["off"])
    return {
        "seconds_per_step_off": off,
        # every=1 records each layer at every step: the cost of one record step
        "seconds_per_record_step": min(times[everies[0]]) - off if everies[0] == 1 else None,
        "with_monitor": [
            {"every": e, "seconds_per_step": min(times[e]), "overhead": min(times[e]) / off - 1}
            for e in everies
        ],
        "monitor_slices": cfg.monitor_slices,
        "steps": epochs * per_epoch,
        "width": cfg.width,
        "batch_size": cfg.batch_size,
        "threads": torch.get_num_threads(),
    }


def run(args: argparse.Namespace) -> int:
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> int:
    from per_triton.digits import load_digits

    cfg = config_from_args(args)
    methods, seeds = args.methods, args.seeds
    _validate(args, cfg)
    data = load_digits(limit=cfg.limit).to(cfg.device)
    if data.train_x.shape[0] < cfg.batch_size:  # TRAIN_SIZE out of date
        _error(args, f"argument --batch-size: {cfg.batch_size} > {data.train_x.shape[0]} images")
    print(
        f"per-triton train: {MODEL_NAME}, {data.train_x.shape[0]} train / "
        f"{data.test_x.shape[0]} test images, methods {methods}, seeds {seeds}"
    )
    summary = []
    for method in methods:
        path = os.path.join(args.out, f"{method}.jsonl")
        if os.path.exists(path):
            os.remove(path)
        for seed in seeds:
            entry = train_one(method, seed, cfg, data, path)
            print(
                f"{method:8s} seed {seed}: test accuracy {entry['test_accuracy']:.4f}, "
                f"{1e3 * entry['seconds_per_step']:.1f} ms/step"
            )
            summary.append(entry)
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(args.out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(
            dict(
                asdict(cfg),
                methods=methods,
                seeds=seeds,
                torch=torch.__version__,
                threads=torch.get_num_threads(),
                # the values used: sizes left out are filled from --tiny or the defaults
                arguments={
                    k: getattr(cfg, k) if k in TINY else v
                    for k, v in vars(args).items()
                    if not k.startswith("_")
                },
            ),
            f,
            indent=1,
        )
    if args.overhead_steps:
        overhead = measure_overhead(cfg, data, args.overhead_steps)
        for row in overhead["with_monitor"]:
            print(f"monitor every {row['every']:3d} steps: {100 * row['overhead']:+.1f}% per step")
        with open(os.path.join(args.out, "overhead.json"), "w", encoding="utf-8") as f:
            json.dump(overhead, f, indent=1)
    if args.figure:
        draw_figure(args.out, args.figure)
        print(f"figure: {args.figure}")
    print(f"wrote {args.out}")
    return 0
