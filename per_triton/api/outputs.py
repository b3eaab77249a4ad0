"""The tensor PER reads in a module's output, how that tensor is cut into samples,
and PER applied to an output structure (tensor, ``PackedSequence``, tuple, dict /
``ModelOutput``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from per_triton.api.module import PER

__all__ = ["SAMPLES", "as_samples", "hidden_state"]

#: Sample conventions of :func:`per_triton.regularize` and the monitor (see :func:`as_samples`).
SAMPLES = ("auto", "flatten", "token")


def as_samples(h: torch.Tensor, samples: str, recurrent: bool = False) -> torch.Tensor:
    """``h`` as the ``(n, d)`` (or ``(b, *)``) batch of samples PER and the monitor see.

    - ``"flatten"``: ``(b, *)`` is ``b`` samples of ``d = prod(*)`` (Eq. 1; ``C*H*W``
      for a conv map). Returned as is.
    - ``"token"``: ``(..., H)`` is ``prod(...)`` samples of ``H``: one sample per
      token of a ``(b, T, H)`` hidden state, as LayerNorm normalises.
    - ``"auto"`` (default): ``"token"`` for 3-D outputs ``(b, T, H)`` (transformer
      blocks and their MLP activations), ``"flatten"`` otherwise (vectors, conv
      maps, channels-last maps). A ``Conv1d`` map ``(b, C, L)`` is 3-D too: pass
      ``"flatten"`` for it.

    Recurrent layers (``recurrent=True``, outputs ``(T, b, H)``) always give one
    sample per (time step, sample) pair, as in the paper.
    """
    if recurrent or (samples == "token" and h.dim() > 2) or (samples == "auto" and h.dim() == 3):
        return h.reshape(-1, h.shape[-1])
    return h


def hidden_state(output: object) -> torch.Tensor | nn.utils.rnn.PackedSequence:
    """The tensor :func:`per_triton.regularize` (and the monitor) reads in a module's output: the
    output itself, a tuple's first element, or a dict's / ``ModelOutput``'s first tensor.

    Raises:
        TypeError naming the output type when it holds no such tensor.
    """
    if isinstance(output, (torch.Tensor, nn.utils.rnn.PackedSequence)):
        return output
    if isinstance(output, Mapping):
        for value in output.values():
            if isinstance(value, torch.Tensor):
                return value
    elif isinstance(output, tuple) and output:
        return hidden_state(output[0])
    raise TypeError(
        f"cannot read a hidden state from a module output of type {type(output).__name__} "
        "(a tensor, a tuple whose first element is one, or a dict/ModelOutput holding one "
        "is needed); choose the module that computes the hidden state instead"
    )


def _check_samples(samples: object) -> str:
    if samples not in SAMPLES:
        raise ValueError(f"samples must be one of {SAMPLES}, got {samples!r}")
    return samples  # type: ignore[return-value]


def _per_on(per: PER, h: torch.Tensor, samples: str, recurrent: bool) -> torch.Tensor:
    flat = as_samples(h, samples, recurrent)
    return per(h) if flat is h else per(flat).view_as(h)


def _apply_per(per: PER, output, samples: str = "auto", recurrent: bool = False):
    """PER on a module's output: a tensor, a ``PackedSequence``, the first element of
    a tuple (or named tuple), or the first tensor of a mapping (a dict, or a
    transformers ``ModelOutput``: its ``last_hidden_state``), replaced in place.
    """
    if isinstance(output, nn.utils.rnn.PackedSequence):
        return output._replace(data=per(output.data))
    if isinstance(output, torch.Tensor):
        return _per_on(per, output, samples, recurrent)
    if isinstance(output, Mapping):
        key = next((k for k, v in output.items() if isinstance(v, torch.Tensor)), None)
        if key is not None:
            output[key] = _per_on(per, output[key], samples, recurrent)  # type: ignore[index]
            return output
    elif isinstance(output, tuple) and output:
        first = _apply_per(per, output[0], samples, recurrent)
        if hasattr(output, "_fields"):  # a named tuple keeps its type
            return output._replace(**{output._fields[0]: first})
        return (first, *output[1:])
    raise TypeError(
        f"regularize: cannot apply PER to a module output of type {type(output).__name__} "
        "(PER needs a tensor, a tuple whose first element is one, or a dict/ModelOutput "
        "holding one); choose the module that computes the hidden state instead"
    )
