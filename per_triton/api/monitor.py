"""Layer monitor: how close each chosen layer's activations stay to N(0, I).

The paper's distribution analysis (section 4.3.2, Figures 4 and 5) tracks, during
training, the sliced Wasserstein distance between a layer's activations and N(0, I)
and the distribution of a few of its units. :class:`LayerMonitor` records the same
on any model with forward hooks: every ``every`` steps, for each chosen layer,

- ``sw1``: the sliced W1 distance to N(0, I) (:func:`per_triton.sliced_wasserstein_to_normal`,
  exact 1-D distances, averaged over ``num_slices`` directions), with samples cut
  as :func:`per_triton.regularize` cuts them (``samples=``: flattened as in Eq. 1,
  ``d = C*H*W`` for a conv map; one sample per token for a ``(b, T, H)`` output).
  The directions of a record depend only on ``(direction_seed, step)`` and the
  layer's width, so runs of different methods are compared on the same directions.
  On CUDA the projection is the fused direction kernel.
- ``mean``, ``var``, ``q25``, ``q50``, ``q75``: the values of a fixed random set of
  ``units`` coordinates of the flattened sample, pooled over the batch (the
  histograms of Figure 5); ``var`` is the variance of those pooled values.

Records are JSON lines in the format of docs/design.md, "Closeness records",
the input of the dashboard's Closeness page. Non-finite values (a diverged run) are
written as ``null``. Statistics stay on the activations' device until a batch of
records is flushed, so monitoring adds no host synchronisation per step. They are
logged numbers, not losses: computed under ``torch.no_grad()`` from detached
activations (no ``grad_fn``, no graph kept while they wait for a flush), and a
record holds Python floats.

Example:
    >>> with LayerMonitor(net, ["block1.pre"], every=10, path="run.jsonl") as mon:
    ...     for step, (x, y) in enumerate(loader):
    ...         mon.step(step); train_step(net, x, y)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from per_triton.api.monitor_schema import (
    RECORD_KEYS as RECORD_KEYS,  # the one record format
)
from per_triton.api.monitor_schema import STAT_KEYS, check_record
from per_triton.api.outputs import _check_samples, as_samples, hidden_state
from per_triton.api.selectors import _resolve_layers
from per_triton.core._validation import check_num_slices, check_positive_int, check_seed
from per_triton.core.seeds import child_seed

_QUANTILES = (0.25, 0.5, 0.75)


def record_seed(direction_seed: int, step: int) -> int:
    """Seed of the SW1 directions for one record step (same for every method).

    ``per_triton.core.seeds.child_seed(direction_seed, "monitor-record", step)``.
    """
    return child_seed(int(direction_seed), "monitor-record", int(step))


def select_units(dim: int, units: int, direction_seed: int, layer: str) -> torch.Tensor:
    """Sorted indices of the ``min(units, dim)`` coordinates recorded for ``layer``.

    The choice depends only on ``(direction_seed, layer, dim)``, never on the data.
    """
    if units >= dim:
        return torch.arange(dim)
    gen = torch.Generator().manual_seed(child_seed(int(direction_seed), "monitor-units", layer))
    return torch.randperm(dim, generator=gen)[:units].sort().values


def layer_statistics(
    h: torch.Tensor, units: torch.Tensor, num_slices: int, seed: int
) -> torch.Tensor:
    """``(sw1, mean, var, q25, q50, q75)`` of one batch ``h`` of shape ``(b, *)``.

    Args:
        h: activations, flattened per sample to ``(b, d)`` (Eq. 1).
        units: indices into ``d`` of the coordinates for the moments and quantiles.
        num_slices: directions of the sliced W1.
        seed: seed of those directions (:func:`per_triton.sample_directions`).

    Returns:
        A float32 tensor of six values on ``h``'s device, detached (no autograd graph).
    """
    from per_triton.api.sliced_wasserstein import sliced_wasserstein_to_normal  # lazy import

    flat = h.detach().reshape(h.shape[0], -1)
    sw1 = sliced_wasserstein_to_normal(flat, num_slices, seed=seed)
    vals = flat[:, units.to(flat.device)].float().reshape(-1)
    q = torch.quantile(vals, torch.tensor(_QUANTILES, device=vals.device))
    var, mean = torch.var_mean(vals, correction=0)
    return torch.stack([sw1.float().reshape(()), mean, var, q[0], q[1], q[2]])


class LayerMonitor:
    """Forward hooks recording closeness to N(0, I) of chosen layers.

    Args:
        model: the network to observe (its outputs are never changed).
        layers: module names (``"block1.pre"``, wildcards as in
            :func:`per_triton.regularize`'s ``names``; ``""`` is the model itself),
            module types (every submodule of that type), or a list mixing both, as
            ``regularize``'s ``exclude`` takes (:func:`per_triton.api.selectors.select_modules`).
            Layers are recorded in model order.
        every: record at steps ``0, every, 2*every, ...``; a positive int (numpy
            integers accepted).
        num_slices: directions of the sliced W1 (the paper's 256 by default).
        units: number of fixed random coordinates per layer for the moments and
            quantiles.
        direction_seed: seed of the directions and of the unit choice; keep it the
            same across methods so they are measured on the same directions.
        path: JSON-lines file to append records to (``None``: keep them in memory).
        run, model_name, method, seed: metadata copied into every record (``seed``
            is the training seed of the run).
        train_only: ignore forward passes in eval mode.
        flush_every: records kept on device before they are converted and written.
        samples: how a layer's output is cut into samples, as in
            :func:`per_triton.regularize` (:func:`per_triton.api.outputs.as_samples`):
            ``"auto"`` (one sample per token for a 3-D output ``(b, T, H)``, per
            sample flattened otherwise), ``"token"`` or ``"flatten"``; recurrent
            layers always per (time step, sample). A dict / ``ModelOutput`` output
            is read at its first tensor.

    Stepping: call :meth:`step` with the step number before each training forward,
    or never call it and the monitor counts training forwards of ``model`` itself
    (when each starts: layers that activation checkpointing re-runs in backward
    are not recorded again, nor under the next step).

    Raises:
        ValueError: a layer name matching no module, ``layers`` choosing nothing,
            ``every < 1``, ``num_slices < 1``, ``units < 1``, or ``seed`` /
            ``direction_seed`` outside ``[0, 2**63)``.
        TypeError: ``every`` / ``num_slices`` / ``units`` / ``seed`` /
            ``direction_seed`` not an int (``2.5``, ``True``), or a ``layers`` item
            that is neither a name nor a module type.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: str | type[nn.Module] | Iterable[str | type[nn.Module]],
        *,
        every: int = 10,
        num_slices: int = 256,
        units: int = 64,
        direction_seed: int = 0,
        path: str | os.PathLike[str] | None = None,
        run: str = "",
        model_name: str = "",
        method: str = "",
        seed: int = 0,
        train_only: bool = True,
        flush_every: int = 64,
        samples: str = "auto",
    ) -> None:
        every = check_positive_int(every, "every")
        num_slices = check_num_slices(num_slices)
        units = check_positive_int(units, "units")
        direction_seed = check_seed(direction_seed, "an int", "direction_seed", int_only=True)
        seed = check_seed(seed, "an int", "seed", int_only=True)
        self.samples = _check_samples(samples)
        self.model = model
        self.layers = _resolve_layers(model, layers)
        self.every, self.num_slices, self.units = int(every), int(num_slices), int(units)
        self.direction_seed = int(direction_seed)
        self.path = None if path is None else os.fspath(path)
        self.meta = {"run": run, "model": model_name, "method": method, "seed": int(seed)}
        self.train_only = train_only
        self.flush_every = max(int(flush_every), 1)
        self.current_step = 0
        self._explicit = False
        self._forwards = 0  # training forwards of the model counted so far
        self._unit_index: dict[tuple[str, int], torch.Tensor] = {}
        self._seen: set[tuple[int, str]] = set()
        self._pending: list[tuple[int, str, torch.Tensor]] = []
        self._records: list[dict[str, Any]] = []
        self._file = None
        self._handles = [
            m.register_forward_hook(self._make_hook(n)) for n, m in self.layers.items()
        ]
        self._handles.append(model.register_forward_pre_hook(self._before_model_forward))

    # -- stepping ---------------------------------------------------------------
    def step(self, step: int | None = None) -> int:
        """Set the current step (or advance it by one) and return it."""
        self._explicit = True
        self.current_step = self.current_step + 1 if step is None else int(step)
        return self.current_step

    def _before_model_forward(self, module: nn.Module, args: Any) -> None:
        # Counted when a forward starts, so a step's number holds until the next
        # forward: activation checkpointing that re-runs layers in backward
        # (use_reentrant=True) finds the step already recorded instead of recording
        # this batch under the next step. A re-run of the whole model in backward
        # is not a new step.
        if self._explicit or not (module.training or not self.train_only):
            return
        if torch._C._current_graph_task_id() != -1:  # inside a backward pass
            return
        self.current_step = self._forwards
        self._forwards += 1

    # -- recording --------------------------------------------------------------
    def _make_hook(self, name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self.train_only and not module.training:
                return
            step = self.current_step
            if step % self.every or (step, name) in self._seen:
                return
            h = hidden_state(output)
            if isinstance(h, nn.utils.rnn.PackedSequence):
                h = h.data
            else:  # regularize()'s convention: per (time step, sample), per token, ...
                h = as_samples(h, self.samples, isinstance(module, nn.RNNBase))
            self._seen.add((step, name))
            self._pending.append((step, name, self._statistics(name, h, step)))
            if len(self._pending) >= self.flush_every:
                self.flush()

        return hook

    @torch.no_grad()
    def _statistics(self, name: str, h: torch.Tensor, step: int) -> torch.Tensor:
        dim = math.prod(h.shape[1:])
        key = (name, dim)  # a layer may see another width (e.g. another input size)
        if key not in self._unit_index:
            units = select_units(dim, self.units, self.direction_seed, name)
            self._unit_index[key] = units.to(h.device)  # moved once, not per record
        units = self._unit_index[key]
        return layer_statistics(h, units, self.num_slices, record_seed(self.direction_seed, step))

    def flush(self) -> None:
        """Convert pending statistics to records and append them to ``path``."""
        if not self._pending:
            return
        values = torch.stack([t.cpu() for _, _, t in self._pending]).tolist()
        new = []
        for (step, name, _), row in zip(self._pending, values, strict=True):
            rec = dict(self.meta, step=step, layer=name)
            rec.update(
                {k: (v if math.isfinite(v) else None) for k, v in zip(STAT_KEYS, row, strict=True)}
            )
            new.append(rec)
        self._pending.clear()
        self._records.extend(new)
        if self.path is not None:
            if self._file is None:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._file.writelines(json.dumps(r) + "\n" for r in new)
            self._file.flush()

    @property
    def records(self) -> list[dict[str, Any]]:
        """Every record so far (flushes pending ones first)."""
        self.flush()
        return list(self._records)

    def close(self) -> None:
        """Flush, remove every hook and close the file. Safe to call twice."""
        self.flush()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> LayerMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read and check a closeness JSON-lines file."""
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    for rec in records:
        check_record(rec)
    return records


def summarize(records: Iterable[dict[str, Any]], key: str = "sw1") -> dict[tuple[str, str], float]:
    """Mean of ``key`` per ``(method, layer)`` over all finite records."""
    sums: dict[tuple[str, str], list[float]] = {}
    for rec in records:
        if rec[key] is not None:
            sums.setdefault((rec["method"], rec["layer"]), []).append(rec[key])
    return {k: sum(v) / len(v) for k, v in sums.items()}
