"""Add PER after a model's activations with one call (:func:`regularize`), and take it
off again (the :class:`~per_triton.api.handle.PERHandle` it returns)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from functools import partial

from torch import nn

from per_triton.api.compiled import _warn_compiled
from per_triton.api.handle import PERHandle
from per_triton.api.hints import _in_gate_block, _no_match_message, _partial_match_warning
from per_triton.api.hooks import PenaltyReset, PERHook, PERPreHook, _per_hooks
from per_triton.api.layers import _feed_forward_taps, default_layers
from per_triton.api.module import PER, SeedSource
from per_triton.api.outputs import _check_samples
from per_triton.api.selectors import _as_names, _as_types, _match_names, select_modules
from per_triton.core.estimators import DEFAULT_ESTIMATOR, check_estimator

__all__ = ["regularize"]


def regularize(
    model: nn.Module,
    coeff: float = 1e-4,
    num_slices: int = 256,
    *,
    layers: type[nn.Module] | Iterable[type[nn.Module]] | None = None,
    names: str | Iterable[str] | None = None,
    exclude: str | type[nn.Module] | Iterable[str | type[nn.Module]] | None = None,
    samples: str = "auto",
    reduction: str = "mean",
    precision: str = "tf32",
    estimator: str = DEFAULT_ESTIMATOR,
    mode: str = "inject",
    seed: SeedSource = None,
) -> PERHandle:
    """Add PER (Algorithm 1) after the chosen modules of ``model`` with forward hooks.

    Which modules:

    - by type (``layers``; default :func:`default_layers`: torch's activation
      modules, recurrent layers, and transformers' / timm's activation classes when
      those packages are loaded). Modules chosen by type inside a squeeze-excite or
      attention-gate block (an enclosing module whose class is named like
      ``SqueezeExcite``, ``SqueezeExcitation``, ``SEModule``, ``EffectiveSEModule``,
      ``EcaModule``, ``CbamModule``, ``GatherExcite``) are skipped: they act on pooled
      ``(b, C, 1, 1)`` descriptors or are multiplicative gates, not the main path;
      pick them by name to include them. By default, torch's
      ``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer`` (whose
      feed-forward activation is a function call, ``F.relu`` / ``F.gelu``) get PER on
      that activation's output: a forward pre-hook on the layer's ``dropout``, the
      module whose input it is (named ``<layer>.dropout`` in the handle). Their
      eval / no-grad fast path runs no PER, as PER is off there anyway.
    - by name (``names``, as in ``model.named_modules()``; ``"*"`` matches one
      dotted component or part of one, ``"**"`` any number of them:
      ``names=["transformer.h.*.mlp"]``). For models whose activations are
      functional calls (``F.relu``, ``F.gelu``) this regularizes block outputs; the
      error raised when nothing matches lists the candidates.
    - with both, a module is chosen if it matches either; ``exclude`` (types and
      names, wildcards allowed) then removes modules.

    With the defaults, a warning says when the match looks partial (nothing inside
    the model's repeated blocks, e.g. only a pooler).

    ``mode="inject"`` (default): the training loop needs no change, the PER gradient
    is added in the backward pass of the task loss, but it ignores any scaling of
    that loss (GradScaler, ``loss / k`` accumulation). ``mode="loss"``: add
    ``handle.penalty()`` to the task loss; right under every loss transform.
    ``penalty()`` returns and clears the sum: call it once per step and log the
    tensor it returned, not a second call (which gives 0).

    Args:
        model: the network to regularize (not copied). Call before ``torch.compile``:
            compiled code that exists when hooks are added does not see them, and
            Dynamo's cache is per class (a fresh ``nn.Sequential`` compiled after
            another one was compiled and run reuses that code); a warning says so
            whenever compiled code for the model's class exists. Eager calls always
            get PER; ``torch.compiler.reset()`` after ``regularize()`` recompiles.
        coeff, num_slices, reduction, precision, estimator, mode: as in :class:`PER`
            (``estimator``: a name of :data:`per_triton.core.estimators.ESTIMATORS`;
            ``"exact"``: no random directions, ``num_slices`` and ``seed`` ignored).
        layers: a module type or types whose outputs get PER.
        names: a module name or names whose outputs get PER (wildcards allowed).
        exclude: module types and/or names (wildcards allowed) never regularized.
        samples: how an output is cut into samples
            (:func:`per_triton.api.outputs.as_samples`): ``"auto"`` (one sample per
            token for 3-D outputs ``(b, T, H)``, per sample flattened otherwise),
            ``"token"`` or ``"flatten"``. Recurrent layers
            always give one sample per (time step, sample). The output may be a
            tensor, a tuple (its first element), or a dict / ``ModelOutput`` (its
            first tensor, ``last_hidden_state``).
        seed: as in :class:`PER`; each layer mixes its index in, so layers get
            different directions from one seed (:func:`per_triton.api.layer_seeds.derive_seed`).
            ``None``: PER's own stream, which leaves torch's generator untouched.

    Returns:
        A :class:`PERHandle`: ``losses()`` for logging, ``penalty()`` in
        ``mode="loss"``, ``remove()``; also a context manager.

    Raises:
        TypeError for a non-module model or bad ``layers``/``names``/``exclude``;
        ValueError if a name matches no module, nothing is chosen (the message lists
        the model's activation-like modules and block names) or ``samples`` is
        unknown; RuntimeError if a chosen module is already regularized (remove the
        earlier handle first).

    Example:
        >>> handle = regularize(model, coeff=1e-4)
        >>> loss_fn(model(x), y).backward()   # PER gradients included
        >>> handle.losses(); handle.remove()
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    samples = _check_samples(samples)
    check_estimator(estimator, num_slices)
    modules = dict(model.named_modules())
    chosen, taps = _choose(model, modules, layers, names, exclude)
    again = [n or "<model>" for n in chosen if _per_hooks(modules[n])]
    if again:
        raise RuntimeError(
            f"regularize: {again} already carry PER from an earlier regularize() call; "
            "remove it first (handle.remove(), or PERHandle.of(model).remove())"
        )
    _warn_compiled(model, chosen)
    new_per = partial(
        PER, coeff, num_slices, reduction, precision, estimator=estimator, mode=mode, seed=seed
    )
    return _attach(model, modules, chosen, taps, samples, new_per, mode)


def _choose(
    model: nn.Module,
    modules: dict[str, nn.Module],
    layers: object,
    names: object,
    exclude: object,
) -> tuple[list[str], list[str]]:
    """The names of the modules :func:`regularize` hooks, in model order, and those of
    them that are feed-forward taps (pre-hooked); warns (at regularize's caller) when
    the default choice looks partial."""
    default = layers is None and names is None
    types = default_layers() if default else (() if layers is None else _as_types(layers, "layers"))
    patterns = [] if names is None else _as_names(names, "names")
    by_name = _match_names(patterns, modules, "names")
    excluded = set() if exclude is None else select_modules(modules, exclude, "exclude")
    chosen = [
        n
        for n, m in modules.items()
        if (n in by_name or (types and isinstance(m, types) and not _in_gate_block(n, modules)))
        and n not in excluded
    ]
    taps = _feed_forward_taps(modules, excluded) if default else []
    taps = [t for t in taps if t not in excluded and t not in chosen]
    chosen = [n for n in modules if n in chosen or n in taps]
    if not chosen:
        raise ValueError(_no_match_message(model, types, patterns))
    if default:
        message = _partial_match_warning(chosen, modules)
        if message:
            warnings.warn(message, stacklevel=3)
    return chosen, taps


def _attach(
    model: nn.Module,
    modules: dict[str, nn.Module],
    chosen: list[str],
    taps: list[str],
    samples: str,
    new_per: Callable[[], PER],
    mode: str,
) -> PERHandle:
    """A fresh ``new_per()`` for each chosen module, in a hook on it (a pre-hook on the
    ``taps``), the model's :class:`PenaltyReset` in ``mode="loss"``, and the handle of
    them all."""
    handle = PERHandle()
    handle._model = model
    for index, name in enumerate(chosen):
        per = new_per()
        per.seed_index = index
        per.train(model.training)
        if name in taps:
            hook = PERPreHook(per, False, samples)
            modules[name].register_forward_pre_hook(hook)
        else:
            hook = PERHook(per, isinstance(modules[name], nn.RNNBase), samples)
            modules[name].register_forward_hook(hook)
        handle.layers[name or "<model>"] = per
        handle._entries.append((modules[name], hook))
    if mode == "loss":
        reset = PenaltyReset(list(handle.layers.values()))
        model.register_forward_pre_hook(reset)
        handle._entries.append((model, reset))
    return handle
