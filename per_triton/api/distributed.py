"""PER under ``torch.distributed`` data parallelism (DDP).

With ``reduction="mean"`` each rank's PER loss averages over its own ``b`` samples
and DDP averages the gradients over the ``R`` ranks, so the result is the PER
gradient of the concatenated ``R*b`` batch (Eq. 6) **provided every rank projects
on the same directions in a step**. The directions are a pure function of the seed
(docs/design.md, "The random stream"), so it is enough that the ranks agree on the seeds. Ranks
usually seed torch's generator differently (data order, dropout), so ``seed=None``
does *not* agree. Three recipes, launched with ``torchrun --nproc_per_node=2 train.py``:

1. ``regularize`` / ``PER`` with an int seed, the same on every rank: every layer
   draws new directions at every call from ``(seed, layer, call)``, identical on
   ranks that make the same calls. No communication::

       dist.init_process_group("nccl")            # "gloo" on CPUs
       handle = pt.regularize(model, coeff=1e-4, seed=1234)   # before DDP(...)
       model = DDP(model.cuda())

2. A per-step source, :class:`StepSeed`, when the seed must come from rank 0
   (:func:`agree_seed`: one tiny broadcast per step) or from the step number::

       seeds = StepSeed()
       handle = pt.regularize(model, coeff=1e-4, seed=seeds)
       for step, (x, y) in enumerate(loader):
           seeds.agree()                          # or seeds.set(step_seed(base, step))
           loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()

3. The models of :mod:`per_triton.experiments.models` with
   :func:`per_triton.experiments.training.train_step`
   (``seed=agree_seed()`` or ``seed=step_seed(base, step)``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from per_triton.core.seeds import DRAW_LIMIT, child_seed

__all__ = ["StepSeed", "agree_seed", "step_seed"]


def agree_seed(generator: torch.Generator | None = None, group: object = None) -> int:
    """A seed drawn on rank 0 and broadcast to every rank; a local draw without a group.

    The draw uses ``generator`` (torch's default CPU generator if None), so
    ``torch.manual_seed`` on rank 0 makes the sequence reproducible. NCCL groups
    broadcast through the current CUDA device, others through the CPU.
    """
    seed = torch.randint(0, DRAW_LIMIT, (1,), generator=generator, dtype=torch.int64)
    if not (dist.is_available() and dist.is_initialized()):
        return int(seed)
    if dist.get_backend(group) == "nccl":
        seed = seed.to(torch.device("cuda", torch.cuda.current_device()))
    src = 0 if group is None else dist.get_global_rank(group, 0)
    dist.broadcast(seed, src=src, group=group)
    return int(seed.cpu())


def step_seed(base_seed: int, step: int) -> int:
    """A communication-free step seed: the same on every rank for the same ``(base, step)``.

    ``per_triton.core.seeds.child_seed(base_seed, "step", step)``, in ``[0, 2**63)``.
    """
    return child_seed(int(base_seed), "step", int(step))


class StepSeed:
    """A per-step seed source for ``PER(seed=...)`` / ``regularize(seed=...)``.

    Holds the current step's seed; each PER layer mixes its own index in
    (:func:`per_triton.api.layer_seeds.derive_seed`), so one value serves every layer. Set it
    once per step, the same on every rank: :meth:`agree` (drawn on rank 0 and
    broadcast) or :meth:`set`. A module-level object, so a model using it pickles.

    Raises:
        RuntimeError when called before a seed was set.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.value = seed

    def set(self, seed: int) -> int:
        """Use ``seed`` from now on (e.g. :func:`step_seed` of a base and the step)."""
        self.value = int(seed)
        return self.value

    def agree(self, generator: torch.Generator | None = None, group: object = None) -> int:
        """Use :func:`agree_seed` (rank 0's draw, broadcast) from now on."""
        return self.set(agree_seed(generator, group))

    def __call__(self) -> int:
        if self.value is None:
            raise RuntimeError("StepSeed: call .agree() or .set(seed) before the forward pass")
        return self.value

    def __deepcopy__(self, memo: dict) -> StepSeed:
        return self  # a shared source: a model's deep copy (EMA) follows the same steps

    def __repr__(self) -> str:
        return f"StepSeed({self.value})"
