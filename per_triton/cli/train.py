"""`per-triton train`: the paper's distribution analysis (section 4.3.2) on real data.

Trains :class:`per_triton.experiments.models.small_cnn.SmallCNN` on scikit-learn's bundled 8x8
digits (no download) with each method of ``--methods`` and each seed, on the
same data order and schedule (:func:`per_triton.experiments.digits_experiment.train_one`), while
:class:`per_triton.api.monitor.LayerMonitor` records every conv block's pre-activation
closeness to N(0, I). Writes, under ``--out`` (default: ``bench/results/local/closeness``
in a checkout, ignored by git): ``<method>.jsonl`` (closeness
records, :mod:`per_triton.api.monitor_schema`), ``summary.json`` (test accuracy and
loss per method and seed) and ``config.json``; ``--figure`` draws SW1 per layer
over training and the accuracy of each method (:mod:`per_triton.experiments.closeness_figure`);
``--overhead-steps`` times the monitor (``per_triton.bench.monitor_overhead``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from typing import NoReturn

import torch

from per_triton import paths
from per_triton.cli._args import (
    TRAIN_SEED_TEXT,
    StoreInDict,
    finite_float,
    int_at_least,
    method_list,
    seed_list,
    torch_device,
)
from per_triton.experiments.closeness_figure import draw_figure
from per_triton.experiments.digits_experiment import (
    COEFF_OF,
    COEFFS,
    MODEL_NAME,
    TRAIN_SIZE,
    Config,
    train_one,
)
from per_triton.experiments.methods import DEFAULT_TRAIN_METHODS as DEFAULT_METHODS
from per_triton.experiments.methods import TRAIN_METHODS as METHODS
from per_triton.experiments.methods import label

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
#: The run's folder under :func:`per_triton.paths.default_output_dir` without --out: the
#: committed run's name, so `per-triton dashboard --results bench/results/local` shows it.
DEFAULT_RUN = "closeness"
#: What each size flag (a key of TINY) sets.
SIZES = {
    "epochs": "passes over the training set",
    "batch_size": f"images per step, at most the {TRAIN_SIZE} training images ({TINY_LIMIT} "
    "with --tiny)",
    "width": "channels of block 1",
    "num_slices": "directions for PER",
    "monitor_every": "record every N steps",
    "monitor_slices": "directions for the monitor's sliced W1",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``per-triton train``; every flag that takes a value states its default."""
    d = Config()
    parser.add_argument(
        "--methods",
        type=method_list(METHODS),
        default=",".join(DEFAULT_METHODS),
        help="comma-separated subset of " + ",".join(METHODS) + " (default: %(default)s)",
    )
    parser.add_argument(
        "--seeds",
        type=seed_list,
        default="0,1,2",
        help=f"comma-separated training seeds in [0, {TRAIN_SEED_TEXT}) (default: %(default)s)",
    )
    for name, what in SIZES.items():  # None: --tiny may set it, an explicit value is kept
        parser.add_argument(
            _flag(name),
            type=int_at_least(1),
            default=None,
            help=f"{what} (default: {getattr(d, name)}; --tiny: {TINY[name]})",
        )
    parser.add_argument(
        "--lr",
        type=finite_float(True),
        default=d.lr,
        help="SGD learning rate (default: %(default)s)",
    )
    parser.add_argument(
        "--init-scale",
        type=finite_float(True),
        default=d.init_scale,
        help="factor on the initial conv weights, >1: drifting start (default: %(default)s)",
    )
    _add_coeff_flags(parser)
    parser.add_argument(
        "--device",
        type=torch_device,
        default=d.device,
        help="cpu, cuda or cuda:N (default: %(default)s)",
    )
    _add_output_flags(parser)
    parser.set_defaults(_parser=parser)


def _add_coeff_flags(parser: argparse.ArgumentParser) -> None:
    """``--<method>-coeff`` for each key of COEFFS, all into ``args.coeffs``."""
    for method, default in COEFFS.items():
        shared = [m for m, of in COEFF_OF.items() if of == method]
        also = f", also for {', '.join(shared)}" if shared else ""
        parser.add_argument(
            _flag(f"{method}_coeff"),
            type=finite_float(False),
            action=StoreInDict,
            const=method,
            dest="coeffs",
            default=dict(COEFFS),
            metavar="COEFF",
            help=f"{label(method)} coefficient, one for every layer{also} (default: {default})",
        )


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    """Where the run writes, what else it measures, and how it runs."""
    parser.add_argument(
        "--out",
        default=None,
        help="output folder for <method>.jsonl, summary.json, config.json (default: "
        f"bench/results/local/{DEFAULT_RUN} in a checkout, git-ignored, else "
        f"./per-triton-results/{DEFAULT_RUN})",
    )
    parser.add_argument(
        "--figure", default=None, help="also write the closeness figure to this PNG (default: none)"
    )
    parser.add_argument(
        "--overhead-steps",
        type=int_at_least(0),
        default=0,
        help="also time this many steps with and without the monitor (default: 0, off)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help=f"smoke size: {TINY_LIMIT} training samples, and the --tiny sizes above "
        "for the flags not given",
    )
    parser.add_argument(
        "--threads",
        type=int_at_least(0),
        default=0,
        help="torch CPU threads (default: 0, torch's choice)",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    """The run's :class:`Config`: explicit sizes, else ``--tiny``'s, else the defaults."""
    fallback = TINY if args.tiny else asdict(Config())
    sizes = {k: fallback[k] if getattr(args, k) is None else getattr(args, k) for k in TINY}
    return Config(
        **sizes,
        lr=args.lr,
        init_scale=args.init_scale,
        coeffs=args.coeffs,
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


def run(args: argparse.Namespace) -> int:
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> int:
    from per_triton.experiments.digits import load_digits

    cfg = config_from_args(args)
    methods, seeds = args.methods, args.seeds
    if args.out is None:
        args.out = str(paths.default_output_dir() / DEFAULT_RUN)
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
        from per_triton.bench.monitor_overhead import measure_overhead

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
