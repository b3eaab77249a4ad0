"""PER under ``torch.distributed`` data parallelism (DDP).

With ``reduction="mean"`` each rank's PER loss averages over its own ``b`` samples
and DDP averages the gradients over the ``R`` ranks, so the result is the PER
gradient of the concatenated ``R*b`` batch (Eq. 6) **provided every rank projects
on the same directions in a step**. The directions are a pure function of the seed
(DESIGN.md section 2), so it is enough that the ranks agree on the step seed:

- :func:`agree_seed`: rank 0 draws a seed and broadcasts it (one tiny collective);
- or, with no communication, :func:`step_seed`: ``base_seed`` and the step counter,
  identical on every rank by construction.

Pass it to :func:`per_triton.training.train_step` (``seed=``), or to
:func:`per_triton.per_loss` directly. Example, launched with
``torchrun --nproc_per_node=2 train.py``::

    dist.init_process_group("nccl")            # "gloo" on CPUs
    model = DDP(build_model("cnn11", "per").cuda())
    for step, (x, y) in enumerate(loader):     # each rank: its shard of the batch
        train_step(model, x, y, opt, seed=agree_seed())
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["agree_seed", "step_seed"]

_SEED_LIMIT = 2**62


def agree_seed(generator: torch.Generator | None = None, group: object = None) -> int:
    """A seed drawn on rank 0 and broadcast to every rank; a local draw without a group.

    The draw uses ``generator`` (torch's default CPU generator if None), so
    ``torch.manual_seed`` on rank 0 makes the sequence reproducible. NCCL groups
    broadcast through the current CUDA device, others through the CPU.
    """
    seed = torch.randint(0, _SEED_LIMIT, (1,), generator=generator, dtype=torch.int64)
    if not (dist.is_available() and dist.is_initialized()):
        return int(seed)
    if dist.get_backend(group) == "nccl":
        seed = seed.to(torch.device("cuda", torch.cuda.current_device()))
    src = 0 if group is None else dist.get_global_rank(group, 0)
    dist.broadcast(seed, src=src, group=group)
    return int(seed.cpu())


def step_seed(base_seed: int, step: int) -> int:
    """A communication-free step seed: the same on every rank for the same ``(base, step)``."""
    return (int(base_seed) * 1_000_003 + int(step)) % _SEED_LIMIT
