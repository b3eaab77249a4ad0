"""How far the Monte Carlo PER estimator is from its expectation (the exact estimator).

For ``h ~ N(0, I)`` of shape ``(b, d)``, float32, and each (d, s): the cosine between
the Monte Carlo gradient of ``per_loss(h, s, seed=k)`` and the exact gradient of
``per_loss(h, estimator="exact")``, and the relative loss error
``|L_MC - L_exact| / L_exact``; medians over seeds (a new ``h`` and new directions for
each seed). Writes a JSON file and prints the README table.

    python scripts/mc_vs_exact.py --out bench/results/cpu/mc_vs_exact.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch

import per_triton as pt

DIMS = (64, 650, 4096, 65536, 196608)
SLICES = (64, 256, 1024)


def one(b: int, d: int, s: int, seed: int) -> tuple[float, float]:
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(b, d, generator=gen).requires_grad_()
    mc = pt.per_loss(h, s, seed=seed)
    (g_mc,) = torch.autograd.grad(mc, h)
    ex = pt.per_loss(h, estimator="exact")
    (g_ex,) = torch.autograd.grad(ex, h)
    cos = torch.nn.functional.cosine_similarity(g_mc.flatten(), g_ex.flatten(), dim=0)
    return float(cos), abs(float(mc) - float(ex)) / float(ex)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for d in DIMS:
        for s in SLICES:
            res = [one(args.batch, d, s, seed) for seed in range(args.seeds)]
            rows.append(
                {
                    "d": d,
                    "s": s,
                    "cosine_median": statistics.median(r[0] for r in res),
                    "rel_loss_err_median": statistics.median(r[1] for r in res),
                    "cosine": [r[0] for r in res],
                    "rel_loss_err": [r[1] for r in res],
                }
            )
            print(f"d={d} s={s} cos={rows[-1]['cosine_median']:.3f}", file=sys.stderr)
    out = {
        "command": " ".join(["python", *sys.argv]),
        "batch": args.batch,
        "seeds": args.seeds,
        "dtype": "float32",
        "torch": torch.__version__,
        "loadavg": os.getloadavg(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    head = "| d | " + " | ".join(f"s = {s}: cosine / rel. loss err." for s in SLICES) + " |"
    print(head)
    print("|---" * (len(SLICES) + 1) + "|")
    for d in DIMS:
        cells = [
            f"{r['cosine_median']:.3f} / {r['rel_loss_err_median']:.1e}"
            for r in rows
            if r["d"] == d
        ]
        print(f"| {d} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
