"""PER losses (and a monitor's SW1) written to a TensorBoard ``SummaryWriter``.

Example::

    writer = SummaryWriter(log_dir)
    handle = pt.regularize(model, coeff=1e-4)
    for step, (x, y) in enumerate(loader):
        loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
        log_per(writer, handle, step)          # per/<layer>
"""

from __future__ import annotations

from typing import Any

from per_triton.api.handle import PERHandle
from per_triton.integrations import SW1Reader, per_scalars

__all__ = ["log_per"]


def log_per(
    writer: Any, handle: PERHandle, step: int, sw1: SW1Reader | None = None, prefix: str = "per"
) -> dict[str, float]:
    """Write each layer's last PER loss as the scalar ``<prefix>/<layer>`` at ``step``.

    Args:
        writer: anything with ``add_scalar(tag, value, global_step)``
            (``torch.utils.tensorboard.SummaryWriter``).
        handle: what :func:`per_triton.regularize` returned.
        step: the global step.
        sw1: a :class:`per_triton.integrations.SW1Reader` of a LayerMonitor: its new
            records' SW1, written as ``sw1/<layer>``.
        prefix: tag prefix of the PER losses.

    Returns:
        The values written, by tag (a host sync: call it every few steps).
    """
    values = {**per_scalars(handle, prefix), **(sw1() if sw1 is not None else {})}
    for tag, value in values.items():
        writer.add_scalar(tag, value, step)
    return values
