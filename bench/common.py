"""Shared helpers of the benchmark suites (docs/design.md, "Benchmark result files").

Installed as ``per_triton.bench.common`` (per_triton/paths.py); a suite imports::

    from per_triton.bench.common import percentiles, time_calls

What lives here:

- run configuration read from the environment (``per-triton bench`` sets it):
  ``PER_TRITON_BENCH_DEVICE`` (``cpu`` / ``cuda``), ``PER_TRITON_BENCH_QUICK`` (``1`` for
  tiny shapes), ``PER_TRITON_BENCH_ROUNDS`` (timed rounds per benchmark);
- synchronised timing of one call: CUDA events on a GPU, ``time.perf_counter`` on
  the CPU, warm-up excluded;
- the 20th / 50th / 80th percentiles stored in every result's ``extra_info``;
- the ``machine_info`` extras (GPU name, torch / triton / CUDA versions, commit,
  command) and the folder a result file goes to (``<results>/<gpu-or-cpu>/``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from per_triton.paths import REPO_ROOT, default_output_dir

#: Where result files go by default (``bench/results/local`` of a checkout, git-ignored).
RESULTS_ROOT = default_output_dir()

ENV_DEVICE = "PER_TRITON_BENCH_DEVICE"
ENV_QUICK = "PER_TRITON_BENCH_QUICK"
ENV_ROUNDS = "PER_TRITON_BENCH_ROUNDS"


# ----------------------------------------------------------------------------- config


def bench_device() -> torch.device:
    """Device named by ``PER_TRITON_BENCH_DEVICE``; CUDA when available if unset."""
    name = os.environ.get(ENV_DEVICE) or ("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"{ENV_DEVICE}={name} but torch sees no CUDA device")
    return torch.device(name)


def bench_quick() -> bool:
    """True when ``PER_TRITON_BENCH_QUICK`` asks for tiny shapes and few rounds (smoke runs)."""
    return os.environ.get(ENV_QUICK, "0") not in ("", "0", "false", "False")


def bench_rounds(default: int) -> int:
    """Timed rounds per benchmark: ``PER_TRITON_BENCH_ROUNDS`` or ``default``."""
    value = os.environ.get(ENV_ROUNDS)
    return int(value) if value else default


# ----------------------------------------------------------------------------- timing


def synchronize(device: torch.device | str) -> None:
    """Wait for all queued work on ``device`` (no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device | str) -> float:
    """Seconds taken by one call of ``fn``, work on the device included.

    CUDA: the device is synchronised first, then the call is bracketed by two CUDA
    events and the elapsed event time is returned. CPU: ``time.perf_counter``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class EventTimer:
    """Wraps ``fn`` for ``benchmark.pedantic``: each call is timed with :func:`time_call`.

    The wrapped call also leaves the device idle when it returns, so pytest-benchmark's
    own wall-clock timer around it is a synchronising timer too. ``samples(skip)``
    returns the recorded times without the first ``skip`` (warm-up) calls.
    """

    def __init__(self, fn: Callable[[], Any], device: torch.device | str) -> None:
        self.fn = fn
        self.device = torch.device(device)
        self.times: list[float] = []

    def __call__(self) -> None:
        self.times.append(time_call(self.fn, self.device))

    def samples(self, skip: int = 0) -> list[float]:
        return self.times[skip:]


def percentile(samples: Sequence[float], q: float) -> float:
    """``q``-th percentile (0..100) with linear interpolation between order statistics."""
    if not samples:
        raise ValueError("percentile of an empty sample")
    xs = sorted(samples)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """``{"median_s", "p20_s", "p80_s"}`` of per-call times in seconds."""
    return {
        "median_s": percentile(samples, 50),
        "p20_s": percentile(samples, 20),
        "p80_s": percentile(samples, 80),
    }


# ----------------------------------------------------------------------------- metadata


def gpu_name(device: torch.device | str) -> str:
    """Name of the GPU behind ``device``, or ``"cpu"``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def machine_folder(device: torch.device | str) -> str:
    """Folder name under ``bench/results/``: the GPU name as a slug, or ``cpu``."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu_name(device).lower()).strip("-")
    return slug or "cpu"


def git_commit(root: Path | None = REPO_ROOT) -> str | None:
    """Current commit: ``$PER_TRITON_COMMIT`` if set (a copy of the tree without
    ``.git``, as on a lent GPU machine), else ``git rev-parse HEAD`` in the checkout,
    else None (an installed wheel has no commit)."""
    if os.environ.get("PER_TRITON_COMMIT"):
        return os.environ["PER_TRITON_COMMIT"]
    if root is None:
        return None
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_extras(device: torch.device | str, command: str) -> dict[str, Any]:
    """The keys that docs/design.md, "Benchmark result files" adds to pytest-benchmark's
    ``machine_info``."""
    try:
        import triton

        triton_version: str | None = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "gpu": gpu_name(device),
        "torch": torch.__version__,
        "triton": triton_version,
        "cuda": torch.version.cuda,
        "command": command,
        "commit": git_commit(),
        "torch_threads": torch.get_num_threads(),
    }


def stamp_result_file(path: Path, extras: dict[str, Any]) -> dict[str, Any]:
    """Merge ``extras`` into the ``machine_info`` of a pytest-benchmark JSON file in place."""
    data = json.loads(Path(path).read_text())
    data.setdefault("machine_info", {}).update(extras)
    Path(path).write_text(json.dumps(data, indent=2) + "\n")
    return data
