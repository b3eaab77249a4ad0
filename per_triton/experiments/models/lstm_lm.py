"""Word-level LSTM language model: 2 layers of 650 units (Zaremba, Sutskever & Vinyals 2014,
"medium"), the PER paper's language-modelling network (section 4.2).

Embedding (650) -> dropout -> LSTM(650) -> dropout -> LSTM(650) -> dropout -> linear
decoder over the vocabulary; weights start uniform in [-0.05, 0.05]. Options used
in the PER paper's table:

- ``tie_weights`` (RE, "reuse embedding"; Inan et al. 2017, Press & Wolf 2017): the
  decoder shares the embedding matrix.
- ``variational`` (VD, Gal & Ghahramani 2016): one dropout mask per sequence, the
  same at every time step, on the inputs of each layer, on the decoder input and on
  the recurrent state ``h_{t-1}`` of each layer (the latter needs the step-by-step
  LSTM below instead of cuDNN's).

``method="bn"`` uses recurrent batch normalisation (Cooijmans et al., ICLR 2017,
Eqs. 6-8): ``BN(W_h h_{t-1}) + BN(W_x x_t) + b`` for the gates and ``BN(c_t)``
before the output ``tanh``, statistics kept per time step, scales initialised to
0.1. The penalty methods put a penalty module on each LSTM layer's output
``(T, b, H)``, read as ``T*b`` samples of dimension ``H``.

Without ``bn`` or ``variational`` the layers are ``nn.LSTM`` (cuDNN on a GPU); with
either, a step-by-step loop (``nn.LSTM`` has neither).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from per_triton.experiments.baselines import check_method, make_regularizer

__all__ = ["LSTMLM", "LoopLSTM", "lstm_lm"]

State = tuple[Tensor, Tensor]


class _StepBatchNorm(nn.Module):
    """BatchNorm over the batch with statistics per time step, shared scale and shift."""

    def __init__(self, features: int, max_steps: int, gamma: float = 0.1, shift: bool = True):
        super().__init__()
        self.gamma = gamma
        self.weight = nn.Parameter(torch.full((features,), gamma))
        self.bias = nn.Parameter(torch.zeros(features)) if shift else None
        self.register_buffer("running_mean", torch.zeros(max_steps, features))
        self.register_buffer("running_var", torch.ones(max_steps, features))

    def reset_parameters(self) -> None:
        nn.init.constant_(self.weight, self.gamma)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, t: int) -> Tensor:
        t = min(t, self.running_mean.shape[0] - 1)
        return F.batch_norm(
            x, self.running_mean[t], self.running_var[t], self.weight, self.bias,
            self.training, 0.1, 1e-5,
        )  # fmt: skip


class LoopLSTM(nn.Module):
    """One LSTM layer unrolled in Python: recurrent BN and/or a variational mask on h.

    ``forward(x (T, b, I), state, h_mask (b, H) or None) -> (out (T, b, H), (h, c))``.
    """

    def __init__(self, input_size: int, hidden: int, *, bn: bool = False, max_steps: int = 35):
        super().__init__()
        self.hidden, self.bn = hidden, bn
        self.w_ih = nn.Linear(input_size, 4 * hidden, bias=False)
        self.w_hh = nn.Linear(hidden, 4 * hidden, bias=False)
        self.bias = nn.Parameter(torch.zeros(4 * hidden))
        if bn:  # Cooijmans et al.: no shift on the two gate BNs (b covers it), gamma = 0.1
            self.bn_x = _StepBatchNorm(4 * hidden, max_steps, shift=False)
            self.bn_h = _StepBatchNorm(4 * hidden, max_steps, shift=False)
            self.bn_c = _StepBatchNorm(hidden, max_steps)

    def forward(
        self, x: Tensor, state: State | None = None, h_mask: Tensor | None = None
    ) -> tuple[Tensor, State]:
        steps, b = x.shape[:2]
        if state is None:
            z = x.new_zeros(b, self.hidden)
            state = (z, z)
        h, c = state
        gx_all = self.w_ih(x)
        outs = []
        for t in range(steps):
            gx, gh = gx_all[t], self.w_hh(h if h_mask is None else h * h_mask)
            if self.bn:
                gx, gh = self.bn_x(gx, t), self.bn_h(gh, t)
            i, f, g, o = (gx + gh + self.bias).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(self.bn_c(c, t) if self.bn else c)
            outs.append(h)
        return torch.stack(outs), (h, c)


class LSTMLM(nn.Module):
    """2-layer word-level LSTM LM.

    Args:
        vocab_size: 10000 for Penn Treebank.
        hidden: units per layer and embedding size (650).
        num_layers: 2.
        dropout: dropout probability (0.5 for the medium model).
        tie_weights: RE, tie the decoder to the embedding.
        variational: VD, per-sequence dropout masks incl. the recurrent state.
        method: one of :data:`per_triton.experiments.baselines.METHODS`.
        num_slices: directions per PER call.
        max_steps: time steps with their own recurrent-BN statistics (bptt, 35).

    ``forward(tokens (T, b) int64, state=None) -> logits (T, b, vocab_size)``; the
    final state of every layer is kept, detached, in ``self.final_state`` for
    truncated backpropagation through time.
    """

    def __init__(
        self,
        vocab_size: int = 10000,
        hidden: int = 650,
        num_layers: int = 2,
        dropout: float = 0.5,
        *,
        tie_weights: bool = False,
        variational: bool = False,
        method: str = "vanilla",
        num_slices: int = 256,
        max_steps: int = 35,
    ) -> None:
        super().__init__()
        check_method(method)
        self.method, self.dropout, self.variational = method, dropout, variational
        self.loop = method == "bn" or variational
        self.embedding = nn.Embedding(vocab_size, hidden)
        layers: list[nn.Module] = []
        for _ in range(num_layers):
            if self.loop:
                layers.append(LoopLSTM(hidden, hidden, bn=method == "bn", max_steps=max_steps))
            else:
                layers.append(nn.LSTM(hidden, hidden))
        self.layers = nn.ModuleList(layers)
        self.regs = nn.ModuleList(
            make_regularizer(method, hidden, num_slices=num_slices, recurrent=True)
            for _ in range(num_layers)
        )
        self.decoder = nn.Linear(hidden, vocab_size)
        self.final_state: list[State] | None = None
        for p in self.parameters():
            nn.init.uniform_(p, -0.05, 0.05)
        for m in self.modules():
            if isinstance(m, _StepBatchNorm):
                m.reset_parameters()
        if tie_weights:
            self.decoder.weight = self.embedding.weight

    def _drop(self, x: Tensor) -> Tensor:
        """Standard dropout, or one mask per sequence shared by every time step (VD)."""
        if not self.training or self.dropout == 0:
            return x
        if not self.variational:
            return F.dropout(x, self.dropout, True)
        return x * self._mask(x.shape[1:], x)

    def _mask(self, shape: torch.Size, like: Tensor) -> Tensor:
        keep = 1.0 - self.dropout
        return torch.bernoulli(like.new_full(shape, keep)) / keep

    def forward(self, tokens: Tensor, state: list[State] | None = None) -> Tensor:
        x = self._drop(self.embedding(tokens))
        finals: list[State] = []
        for i, (layer, reg) in enumerate(zip(self.layers, self.regs, strict=True)):
            s = None if state is None else state[i]
            if self.loop:
                h_mask = None
                if self.variational and self.training and self.dropout > 0:
                    h_mask = self._mask(torch.Size((x.shape[1], layer.hidden)), x)
                x, (h, c) = layer(x, s, h_mask)
            else:
                x, (h, c) = layer(x, None if s is None else (s[0][None], s[1][None]))
                h, c = h[0], c[0]
            finals.append((h.detach(), c.detach()))
            x = self._drop(reg(x))
        self.final_state = finals
        return self.decoder(x)


def lstm_lm(vocab_size: int = 10000, method: str = "vanilla", **kw: object) -> LSTMLM:
    """The 2x650 LSTM LM (RE: ``tie_weights=True``, VD: ``variational=True``)."""
    return LSTMLM(vocab_size, method=method, **kw)
