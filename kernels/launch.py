"""A kernel launch as data: what each launcher of this package builds, runs and publishes.

Every kernel here has a public ``*_launch`` function that returns a :class:`Launch` for
given sizes and dtypes: the kernel, its runtime arguments in the kernel's order (a
:class:`Buffer` for each tensor, plain ints for sizes and strides), its constexprs, its
grid and its ``num_warps``/``num_stages``. The launcher binds tensors to the buffers
and runs it (:meth:`Launch.bind`, :meth:`Launch.run`); ``bench/sass_report.py`` compiles
the same launch from the buffers' dtypes alone, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["Buffer", "Launch", "cdiv"]


def cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` for ints (``triton.cdiv`` costs microseconds a call on the host)."""
    return -(-a // b)


@dataclasses.dataclass(frozen=True)
class Buffer:
    """A tensor argument: its dtype (what the compiled kernel depends on) and shape."""

    dtype: torch.dtype
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Launch:
    """One launch of a ``@triton.jit`` kernel.

    ``args`` holds every runtime argument in the kernel's order (:class:`Buffer` for
    tensors); ``constexprs`` the meta-parameters; ``grid`` maps the meta-parameters
    (Triton's grid convention, so an autotuner's pick applies) to the grid;
    ``num_warps``/``num_stages`` of None leave Triton's defaults.
    """

    kernel: Any
    args: dict[str, Any]
    constexprs: dict[str, Any]
    grid: Callable[[Mapping[str, Any]], tuple[int, ...]]
    num_warps: int | None = None
    num_stages: int | None = None

    def buffers(self) -> dict[str, Buffer]:
        """The tensor arguments by name."""
        return {k: v for k, v in self.args.items() if isinstance(v, Buffer)}

    def bind(self, device: torch.device, empty: Callable = torch.empty, **given) -> dict:
        """A tensor for every buffer: the ``given`` one, or (absent or None) a new
        ``empty(shape, dtype=, device=)`` (outputs and workspaces)."""
        return {
            name: empty(buf.shape, dtype=buf.dtype, device=device)
            if given.get(name) is None
            else given[name]
            for name, buf in self.buffers().items()
        }

    def run(self, tensors: Mapping[str, torch.Tensor], autotuned: Any = None) -> None:
        """Launch on ``tensors`` (one per buffer, of the buffer's dtype).

        With ``autotuned`` (a ``triton.autotune`` wrapper of :attr:`kernel`) the
        tuner picks the meta-parameters its configs set, and warps and stages.
        Raises ``TypeError`` if a tensor's dtype is not its buffer's.
        """
        values = []
        for name, arg in self.args.items():
            if isinstance(arg, Buffer):
                arg, want = tensors[name], arg.dtype
                if arg.dtype != want:
                    raise TypeError(f"{name}: a {arg.dtype} tensor for a {want} buffer")
            values.append(arg)
        if autotuned is not None:
            tuned = {k for config in autotuned.configs for k in config.kwargs}
            meta = {k: v for k, v in self.constexprs.items() if k not in tuned}
            autotuned[self.grid](*values, **meta)
            return
        run = {"num_warps": self.num_warps, "num_stages": self.num_stages}
        opts = {k: v for k, v in run.items() if v is not None}
        self.kernel[self.grid](*values, **self.constexprs, **opts)
