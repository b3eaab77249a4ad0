"""Cost of the layer monitor: seconds per training step with and without it.

``per-triton train --overhead-steps N`` calls :func:`measure_overhead` after the
training runs and writes ``<out>/overhead.json`` (docs/design.md, "Closeness records").
It lives with the benchmarks (``per_triton.bench``); the training loop is
:func:`per_triton.experiments.digits_experiment.train_one`.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from per_triton.experiments.digits_experiment import Config, train_one


def measure_overhead(cfg: Config, data, steps: int, everies=(1, 10, 100)) -> dict:
    """Seconds per vanilla training step without and with the monitor (every N steps).

    Runs are interleaved and repeated three times; the minimum of each is kept.
    """
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
