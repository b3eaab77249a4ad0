"""Time a full-size cnn11 training step on the CPU under each way of getting the sampler.

Conditions, each in its own process (docs/cpu-sampler.md, "What loads, in order"):
``no-compiler`` (``PATH`` an empty folder, ``CC`` unset, a cache holding a library
built earlier: ``c-cached``), ``with-compiler`` (an empty cache: ``c-built``),
``torch-fallback`` (``PER_TRITON_CPU_SAMPLER=torch``) and the ``per_torch`` baseline
(the five-line torch PER). Each process times ``--steps`` steps after one untimed one;
the conditions are run in turn ``--repeats`` times. Writes one JSON file.

Usage: ``python scripts/step_by_sampler.py --out bench/results/cpu/cnn11-step-by-sampler.json``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONDITIONS = ("no-compiler", "with-compiler", "torch-fallback", "per_torch")


def child(method: str, threads: int, steps: int) -> None:
    """Run in the child: time ``steps`` cnn11 steps, print one JSON line."""
    import torch

    from per_triton.core import normals
    from per_triton.experiments.models import build_model
    from per_triton.experiments.training import train_step

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model("cnn11", method, num_slices=256, num_classes=100, activation="elu")
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(128, 3, 32, 32, generator=gen)
    y = torch.randint(0, 100, (128,), generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        train_step(model, x, y, opt, coeff=1e-4)
        times.append(time.perf_counter() - start)
    print(json.dumps({"sampler": normals.sampler(), "seconds": times[1:]}))


def environment(condition: str, work: Path) -> dict[str, str]:
    """The child's environment for ``condition`` (``work`` holds the caches)."""
    env = {k: v for k, v in os.environ.items() if k != "CC"}
    env["PYTHONPATH"] = str(ROOT)
    env["PER_TRITON_CACHE_DIR"] = str(work / "cache")
    env["TMPDIR"] = str(work / "tmp")
    if condition == "no-compiler":
        env["PATH"] = str(work / "empty")
    elif condition == "with-compiler":
        env["PER_TRITON_CACHE_DIR"] = tempfile.mkdtemp(dir=work)  # nothing cached: built now
    elif condition == "torch-fallback":
        env["PER_TRITON_CPU_SAMPLER"] = "torch"
    return env


def run(condition: str, work: Path, threads: int, steps: int) -> dict:
    method = "per_torch" if condition == "per_torch" else "per"
    cmd = [sys.executable, __file__, "--child", method, str(threads), str(steps)]
    out = subprocess.run(
        cmd, env=environment(condition, work), capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for sub in ("cache", "tmp", "empty"):
            (work / sub).mkdir()
        fill = environment("torch-fallback", work) | {"PER_TRITON_CPU_SAMPLER": "c"}
        probe = "from per_triton.core import normals; normals.sampler()"
        subprocess.run([sys.executable, "-c", probe], env=fill, check=True)  # cache the build
        results: dict[str, list] = {c: [] for c in args.conditions}
        for _ in range(args.repeats):
            for condition in args.conditions:
                results[condition].append(run(condition, work, args.threads, args.steps))
    summary = {
        c: {
            "sampler": runs[0]["sampler"],
            "median_s": statistics.median(t for r in runs for t in r["seconds"]),
            "runs": runs,
        }
        for c, runs in results.items()
    }
    record = {
        "model": "cnn11 (ELU, 100 classes, batch 128, 32x32, s 256)",
        "threads": args.threads,
        "steps_per_run": args.steps,
        "load_average": os.getloadavg(),
        "conditions": summary,
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    for c, info in summary.items():
        print(f"{c:15s} {info['sampler']:10s} {info['median_s']:.3f} s")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
