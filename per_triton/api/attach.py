"""Add PER after a model's activations with one call, and take it off again.

The hooks are module-level objects (:class:`PERHook`) holding their own
:class:`~per_triton.PER`, so a regularized model pickles (``torch.save(model)``)
and ``copy.deepcopy`` gives an independent copy: equally regularized, with PER
state of its own (:meth:`PERHandle.of` finds it), untouched by the original
handle's :meth:`~PERHandle.remove`.
"""

from __future__ import annotations

import difflib
import gc
import importlib
import re
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from per_triton.api.module import PER, GradScale, SeedSource, check_grad_scale

__all__ = [
    "regularize",
    "PERHandle",
    "PERHook",
    "PERPreHook",
    "PenaltyReset",
    "DEFAULT_LAYERS",
    "SAMPLES",
    "default_layers",
    "as_samples",
    "hidden_state",
]

#: torch's pointwise activation modules (not Softmax-like normalisers, not Identity).
TORCH_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Softplus,
    nn.Softsign,
    nn.Tanh,
    nn.Tanhshrink,
    nn.Sigmoid,
    nn.LogSigmoid,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardshrink,
    nn.Softshrink,
    nn.Threshold,
    nn.GLU,
)

#: Module types regularized when neither ``layers`` nor ``names`` is given (torch's
#: activations and recurrent layers); :func:`default_layers` adds transformers' and
#: timm's activation classes when those packages are loaded.
DEFAULT_LAYERS: tuple[type[nn.Module], ...] = (*TORCH_ACTIVATIONS, nn.RNNBase)

# Activation classes of the model zoos, read lazily from these modules; neither
# package is a dependency. Identity-like classes are left out.
_ZOO_ACTIVATIONS = {
    "transformers": ("transformers.activations",),
    "timm": ("timm.layers.activations", "timm.layers.activations_me"),
}
_NOT_ACTIVATIONS = {"LinearActivation", "Identity"}

#: Sample conventions of :func:`regularize` and the monitor (see :func:`as_samples`).
SAMPLES = ("auto", "flatten", "token")

# Squeeze-excite / attention-gate blocks: activations inside them act on pooled
# (b, C, 1, 1) descriptors or are multiplicative gates, not the main path.
_GATE_BLOCK = re.compile(
    r"squeeze_?excit|excitation|gatherexcite|cbam|^(effective)?se(module|layer|block)?$"
    r"|^c?eca(module)?$",
    re.IGNORECASE,
)


def default_layers() -> tuple[type[nn.Module], ...]:
    """:data:`DEFAULT_LAYERS` plus transformers' and timm's activation classes.

    Those packages' classes (``NewGELUActivation``, ``GELUActivation``,
    ``SiLUActivation``, timm's ``GELU``, ``Swish``, ``HardSwish``, ...) subclass
    ``nn.Module`` directly, not torch's activations. They are collected from
    ``transformers.activations`` and ``timm.layers.activations(_me)`` only when the
    package is already imported (a model built from it has imported it), so neither
    becomes a dependency nor is imported here for nothing.
    """
    found = list(DEFAULT_LAYERS)
    for package, module_names in _ZOO_ACTIVATIONS.items():
        if package not in sys.modules:
            continue
        for module_name in module_names:
            try:
                module = importlib.import_module(module_name)
            except Exception:  # another version's layout: keep torch's list
                continue
            for obj in vars(module).values():
                if (
                    isinstance(obj, type)
                    and issubclass(obj, nn.Module)
                    and obj.__module__ == module_name
                    and obj.__name__ not in _NOT_ACTIVATIONS
                    and obj not in found
                ):
                    found.append(obj)
    return tuple(found)


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
    """The tensor :func:`regularize` (and the monitor) reads in a module's output: the
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


class PERHook:
    """The forward hook :func:`regularize` puts on a module: PER on its output.

    A module-level object, so a regularized model pickles, and ``copy.deepcopy`` of
    the model copies the hook with its own :class:`~per_triton.PER` (own state,
    own call counter).
    """

    def __init__(self, per: PER, recurrent: bool, samples: str = "auto") -> None:
        self.per = per
        self.recurrent = recurrent
        self.samples = samples

    def __setstate__(self, state: dict) -> None:  # hooks pickled before ``samples`` existed
        self.__dict__.update({"samples": "auto", **state})

    def __call__(self, module: nn.Module, _args: object, output: object) -> object:
        self.per.train(module.training)
        return _apply_per(self.per, output, self.samples, self.recurrent)

    def __repr__(self) -> str:
        return f"PERHook({self.per.extra_repr()})"


class PERPreHook(PERHook):
    """The forward pre-hook :func:`regularize` puts on the dropout after a torch
    transformer layer's feed-forward activation: PER on the dropout's input, the
    activation's output (the activation itself is a function call, ``F.relu``)."""

    def __call__(self, module: nn.Module, args: tuple) -> tuple:  # type: ignore[override]
        self.per.train(module.training)
        return (_apply_per(self.per, args[0], self.samples, self.recurrent), *args[1:])

    def __repr__(self) -> str:
        return f"PERPreHook({self.per.extra_repr()})"


#: torch's transformer layers, whose feed-forward activation is a function by default.
TRANSFORMER_LAYERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def _feed_forward_taps(modules: dict[str, nn.Module], skip: set[str]) -> list[str]:
    """``<layer>.dropout`` of every torch transformer layer (not in ``skip``) whose
    activation is a function: the dropout whose input is the activation's output
    (``linear2(dropout(activation(linear1(x))))``). A module activation
    (``activation=nn.GELU()``) is found by type instead."""
    taps = []
    for name, m in modules.items():
        functional = isinstance(m, TRANSFORMER_LAYERS) and not isinstance(m.activation, nn.Module)
        if functional and name not in skip:
            taps.append(f"{name}.dropout" if name else "dropout")
    return taps


class PenaltyReset:
    """Forward pre-hook on the regularized model (``mode="loss"``): each forward pass of
    the model starts its layers' penalties afresh, so ``handle.penalty()`` covers the
    latest forward (every call of a layer within it) and a forward whose penalty was
    never taken leaves no stale graph behind.

    A model called several times inside one forward of an enclosing module keeps the
    terms of every call: they belong to one forward pass. The enclosing module gets a
    pre-hook of its own (removed with the handle) that marks its next forward.
    """

    def __init__(self, layers: list[PER]) -> None:
        self.layers = layers
        self._generation = 0  # forwards of enclosing modules seen
        self._last: int | None = None  # generation of the previous call
        self._enclosing: dict[int, RemovableHandle] = {}

    def __call__(self, module: nn.Module, _args: object) -> None:
        if not torch.compiler.is_compiling() and self._same_enclosing_forward():
            return
        for per in self.layers:
            per._pending = None

    def _bump(self, _module: nn.Module, _args: object) -> None:
        self._generation += 1

    def _same_enclosing_forward(self) -> bool:
        caller = sys._getframe(2)
        while caller is not None and caller.f_code.co_filename in _HOOK_FILES:
            caller = caller.f_back
        enclosing = None if caller is None else _module_of(caller)
        previous, self._last = self._last, None
        if enclosing is None:
            return False  # called from a loop, not from a module's forward
        if id(enclosing) not in self._enclosing:  # first seen: mark its next forwards
            self._enclosing[id(enclosing)] = enclosing.register_forward_pre_hook(self._bump)
            self._generation += 1
        self._last = self._generation
        return previous == self._last

    def remove(self) -> None:
        """Take the enclosing modules' pre-hooks off."""
        for hook in self._enclosing.values():
            hook.remove()
        self._enclosing.clear()


_HOOK_FILES = {__file__, nn.Module.__call__.__code__.co_filename}


def _module_of(frame: object) -> nn.Module | None:
    code = frame.f_code
    if code.co_argcount == 0:
        return None
    owner = frame.f_locals.get(code.co_varnames[0])
    return owner if isinstance(owner, nn.Module) else None


def _per_hooks(module: nn.Module) -> list[PERHook]:
    hooks = [*module._forward_hooks.values(), *module._forward_pre_hooks.values()]
    return [h for h in hooks if isinstance(h, PERHook)]


def _remove_hook(module: nn.Module, hook: object) -> None:
    """Remove ``hook`` from ``module`` (what ``RemovableHandle.remove`` does, found by identity)."""
    for hooks in (module._forward_hooks, module._forward_pre_hooks):
        for key, value in list(hooks.items()):
            if value is hook:
                del hooks[key]
                for extra in (
                    "_forward_hooks_with_kwargs",
                    "_forward_hooks_always_called",
                    "_forward_pre_hooks_with_kwargs",
                ):
                    getattr(module, extra, {}).pop(key, None)


def _owned_hooks(model: nn.Module, layers: list[PER]) -> list[tuple[nn.Module, object]]:
    """The ``(module, hook)`` pairs of ``model`` whose hook runs one of ``layers``."""
    found = []
    for module in model.modules():
        for hook in (*module._forward_hooks.values(), *module._forward_pre_hooks.values()):
            runs = [hook.per] if isinstance(hook, PERHook) else getattr(hook, "layers", [])
            if isinstance(hook, (PERHook, PenaltyReset)) and any(
                a is b for a in runs for b in layers
            ):
                found.append((module, hook))
    return found


class PERHandle:
    """What :func:`regularize` returns: the PER layers by module name, and their removal.

    ``layers``: ``{module name: PER}``. The handle belongs to the model it was made
    for; a deep copy of that model carries its own hooks, found with
    ``PERHandle.of(copy)``.
    """

    def __init__(self) -> None:
        self.layers: dict[str, PER] = {}
        self._entries: list[tuple[nn.Module, object]] = []
        self._model: nn.Module | None = None  # searched again by remove()

    @classmethod
    def of(cls, model: nn.Module) -> PERHandle:
        """The handle of the PER hooks already on ``model`` (e.g. a deep copy or a loaded model)."""
        handle = cls()
        handle._model = model
        for name, module in model.named_modules():
            for hook in _per_hooks(module):
                handle.layers[name or "<model>"] = hook.per
                handle._entries.append((module, hook))
            for pre in module._forward_pre_hooks.values():
                if isinstance(pre, PenaltyReset):
                    handle._entries.append((module, pre))
        return handle

    def losses(self) -> dict[str, torch.Tensor | None]:
        """Last PER loss of each regularized module (detached; ``None`` before the first step)."""
        return {name: per.last_loss for name, per in self.layers.items()}

    def penalty(self) -> torch.Tensor:
        """``sum_l coeff * L_l`` over the regularized modules (``mode="loss"``), to add to the loss.

        Returns the sum and clears it (:meth:`per_triton.PER.penalty`): call it once
        per step, after each forward whose loss is backpropagated; a second call
        returns 0. To log it, keep the returned tensor (``p = handle.penalty()``;
        ``loss = task + p``; log ``p.detach()``) rather than calling ``penalty()``
        again. Differentiable; covers the latest forward pass of the model (every
        call of a layer in it). Add it to the task loss *before* scaling it
        (``scaler.scale(task + handle.penalty())``) or dividing it for gradient
        accumulation: the PER share of the gradient is then right. After
        :meth:`remove` it returns 0 (pending terms are dropped).

        Raises:
            RuntimeError if the model was regularized with ``mode="inject"``.
        """
        terms = [per.penalty() for per in self.layers.values()]
        if not terms:
            return torch.zeros(())
        return torch.stack([t.to(terms[0].device) for t in terms]).sum()

    def set_grad_scale(self, scale: GradScale) -> None:
        """Multiply every layer's injected gradient by ``scale`` (``mode="inject"``).

        What the training loop does to the task loss, done to the injected PER
        gradient too: ``1/k`` for ``loss / k`` accumulation, a GradScaler's scale, or
        both (:func:`per_triton.integrations.grad_scale` builds the callable). See
        :meth:`per_triton.PER.set_grad_scale`; the framework callbacks of
        :mod:`per_triton.integrations` call it themselves.
        """
        scale = check_grad_scale(scale)
        for per in self.layers.values():
            per.set_grad_scale(scale)

    def remove(self) -> None:
        """Take PER off the model; the model behaves exactly as before :func:`regularize`.

        Penalties pending from forwards before the removal are dropped with their
        autograd graphs: :meth:`penalty` returns 0 afterwards. Hooks that moved to
        another module of the model since (module fusion, ``fuse_modules_qat`` /
        ``prepare_qat`` with ``inplace=True``, which move a fused module's hooks to
        the fused module) are found and removed too. A copy of the model
        (``inplace=False``, the default there) is another model: use
        ``PERHandle.of(copy).remove()``.
        """
        for module, hook in self._entries:
            _remove_hook(module, hook)
            if isinstance(hook, PenaltyReset):
                hook.remove()
        self._entries.clear()
        if self._model is not None:
            for module, hook in _owned_hooks(self._model, list(self.layers.values())):
                _remove_hook(module, hook)
        for per in self.layers.values():
            per._pending = None

    def __enter__(self) -> PERHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"PERHandle({list(self.layers)})"


def _has_compiled_code(module: nn.Module, shared: bool = True) -> bool:
    """Whether torch.compile holds compiled code that ``module``'s compiled calls would reuse.

    Looks for TorchDynamo cache entries on the code of the module's ``forward`` (or of
    the wrapper Dynamo uses for ``torch.nn`` containers); without Dynamo imported
    nothing can have been compiled. This is per class, not per instance, because
    Dynamo's cache is: its guards match the module by type (modules are inlined as
    inputs) and skip module hooks (``torch._dynamo.config.skip_nnmodule_hook_guards``),
    so a fresh instance compiled later reuses that code and skips hooks added to it.
    ``shared=False`` leaves out the wrapper shared by every ``torch.nn`` module.
    """
    if "torch._dynamo" not in sys.modules:
        return False
    try:
        from torch._C._dynamo.eval_frame import _debug_get_cache_entry_list
        from torch._dynamo.external_utils import wrap_inline
    except ImportError:  # private API moved: say nothing rather than guess
        return False
    root = getattr(module, "_orig_mod", module)
    codes = [getattr(type(root).forward, "__code__", None)]
    if shared and type(root).__module__.startswith("torch.nn"):
        codes.append(wrap_inline(lambda: None).__code__)
    return any(code is not None and _debug_get_cache_entry_list(code) for code in codes)


def _parents(module: nn.Module) -> list[nn.Module]:
    """The modules holding ``module`` as a child (found through the garbage collector:
    the child is in the parent's ``_modules`` dict, itself in the parent's ``__dict__``
    or, with inline instance values, referred to by the parent directly)."""
    found = []
    for ref in gc.get_referrers(module):
        if not isinstance(ref, dict):
            continue
        for owner in gc.get_referrers(ref):
            holders = [owner] if isinstance(owner, nn.Module) else []
            if isinstance(owner, dict) and owner.get("_modules") is ref:
                holders = [m for m in gc.get_referrers(owner) if isinstance(m, nn.Module)]
            found += [m for m in holders if m.__dict__.get("_modules") is ref]
    return found


def _ancestors(model: nn.Module) -> list[nn.Module]:
    """Every module that holds ``model`` directly or further up (nearest first)."""
    out: list[nn.Module] = []
    frontier = [model]
    while frontier:
        for parent in _parents(frontier.pop()):
            if all(parent is not m for m in out):
                out.append(parent)
                frontier.append(parent)
    return out


def _compiled_around(model: nn.Module, chosen: list[str]) -> list[str]:
    """Compiled modules whose code would run the chosen modules without their hooks:
    blocks of ``model`` compiled one by one (``block.compile()``, ``torch.compile(block)``)
    that hold a chosen module, and modules holding ``model`` (a compiled root when a
    submodule is regularized). ``model`` itself is checked by :func:`_has_compiled_code`.
    """
    if "torch._dynamo" not in sys.modules:
        return []
    names = []
    for name, module in model.named_modules():
        inside = [c for c in chosen if c == name or c.startswith(f"{name}.")]
        wrapped = name.endswith("._orig_mod") or "._orig_mod." in name
        explicit = hasattr(module, "_orig_mod") or getattr(module, "_compiled_call_impl", None)
        if name and inside and not wrapped and _has_compiled_code(module, bool(explicit)):
            names.append(f"{name} ({type(getattr(module, '_orig_mod', module)).__name__})")
    for parent in _ancestors(model):
        if _has_compiled_code(parent):
            names.append(f"a module holding the model ({type(parent).__name__})")
    return names


def _as_types(value: object, arg: str) -> tuple[type[nn.Module], ...]:
    """A module type, or an iterable of them, as a tuple (``arg`` names the argument)."""
    items = (value,) if isinstance(value, type) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(
            f"{arg} must be an nn.Module subclass or an iterable of them, got {value!r}"
        )
    items = tuple(items)
    for t in items:
        if not (isinstance(t, type) and issubclass(t, nn.Module)):
            raise TypeError(f"{arg} must hold nn.Module subclasses, got {t!r}")
    return items


def _as_names(value: object, arg: str) -> list[str]:
    """A module name (wildcards allowed), or an iterable of them, as a list."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable):
        raise TypeError(f"{arg} must be a module name or an iterable of names, got {value!r}")
    items = list(items)
    for n in items:
        if not isinstance(n, str):
            raise TypeError(f"{arg} must hold module names (str), got {n!r}")
    return items


def _pattern(name: str) -> re.Pattern[str]:
    """``*`` matches one dotted component (or part of one), ``**`` any run of them."""
    parts = re.split(r"(\*\*|\*)", name)
    regex = "".join(".*" if p == "**" else "[^.]*" if p == "*" else re.escape(p) for p in parts)
    return re.compile(regex)


def _match_names(patterns: list[str], modules: dict[str, nn.Module], arg: str) -> set[str]:
    """Module names matching ``patterns``; ValueError naming the patterns that match nothing."""
    matched: set[str] = set()
    missing = []
    for name in patterns:
        if "*" in name:
            rx = _pattern(name)
            hits = {n for n in modules if n and rx.fullmatch(n)}
        else:
            hits = {name} if name in modules else set()
        if not hits:
            missing.append(name)
        matched |= hits
    if missing:
        keys = [k for k in modules if k]
        close = {n: difflib.get_close_matches(n, keys, 3) for n in missing}
        hints = "; ".join(f"{n!r}: did you mean {c}?" for n, c in close.items() if c)
        blocks = _block_suggestions(modules)
        raise ValueError(
            f"{arg} not found in model: {missing}"
            + (f" ({hints})" if hints else "")
            + (f". Block names in the model: {blocks}" if blocks else "")
            + " ('*' matches one name component, '**' any number)"
        )
    return matched


def select_modules(modules: Mapping[str, nn.Module], value: object, arg: str) -> set[str]:
    """Names of the modules chosen by a mixed selector (the parser of ``exclude`` in
    :func:`regularize` and of ``layers`` in :class:`per_triton.api.monitor.LayerMonitor`).

    ``value`` is a module type, a module name (wildcards as in :func:`regularize`'s
    ``names``), or an iterable mixing both. A type chooses every submodule of that type
    (never the model itself, name ``""``); a name chooses the modules it matches
    (``""`` is the model). Raises TypeError naming ``arg`` for anything else, and
    ValueError naming ``arg`` for a name that matches no module.
    """
    items = [value] if isinstance(value, (str, type)) else value
    if not isinstance(items, Iterable):
        raise TypeError(
            f"{arg} must be a module type, a module name, or an iterable of them, got {value!r}"
        )
    items = list(items)
    types = _as_types([t for t in items if isinstance(t, type)], arg)
    patterns = _as_names([n for n in items if not isinstance(n, type)], arg)
    modules = dict(modules)
    chosen = _match_names(patterns, modules, arg)
    if types:
        chosen |= {n for n, m in modules.items() if n and isinstance(m, types)}
    return chosen


def _in_gate_block(name: str, modules: dict[str, nn.Module]) -> bool:
    """Whether module ``name`` sits inside a squeeze-excite / attention-gate block."""
    parts = name.split(".")
    return any(
        _GATE_BLOCK.search(type(modules[".".join(parts[:i])]).__name__)
        for i in range(1, len(parts))
    )


def _repeated_blocks(modules: dict[str, nn.Module]) -> list[tuple[str, nn.Module]]:
    """Containers (ModuleList / Sequential) of >= 2 blocks of one type, largest first."""
    found = []
    for name, m in modules.items():
        if not isinstance(m, (nn.ModuleList, nn.Sequential)):
            continue
        kids = list(m.children())
        nested = all(next(k.children(), None) is not None for k in kids)
        if len(kids) >= 2 and nested and len({type(k) for k in kids}) == 1:
            found.append((name, m))
    return sorted(found, key=lambda nm: -len(nm[1]))


_MLP_NAMES = ("mlp", "ffn", "feed_forward", "intermediate", "fc", "mlp_block")


def _block_suggestions(modules: dict[str, nn.Module]) -> list[str]:
    """Wildcard names of the model's repeated blocks (and their MLP part, if named so)."""
    out = []
    for name, container in _repeated_blocks(modules)[:2]:
        if not name:
            continue
        out.append(f"{name}.*")
        child = next(container.children())
        for sub, _ in child.named_children():
            if sub in _MLP_NAMES:
                out.append(f"{name}.*.{sub}")
    return out


_ACTIVATION_LIKE = re.compile(
    r"act|relu|gelu|silu|swish|mish|tanh|sigmoid|elu$|softplus|glu", re.IGNORECASE
)


def _no_match_message(model: nn.Module, types: tuple, names: list[str]) -> str:
    """Why nothing matched, with the model's candidate modules (functional activations)."""
    modules = dict(model.named_modules())
    named = [(n, m) for n, m in modules.items() if n]
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    shown = tuple(t.__name__ for t in types)
    text = (
        f"regularize found no module to regularize in {type(model).__name__} "
        f"(layers={shown if len(shown) <= 6 else f'pt.default_layers(), {len(shown)} types'}, "
        f"names={names})."
    )
    act_like = Counter(
        type(m).__name__
        for _, m in named
        if next(m.children(), None) is None and _ACTIVATION_LIKE.search(type(m).__name__)
    )
    if act_like:
        first = next(iter(act_like))
        text += (
            f" Activation-like modules in the model: "
            f"{', '.join(f'{k} x{v}' for k, v in act_like.most_common(6))}: pass "
            f"layers=({first}, ...)."
        )
    text += (
        " If its activations are functional calls (F.relu, F.gelu), regularize the "
        "outputs of modules instead, by type or by name"
    )
    suggestions = _block_suggestions(modules)
    if suggestions:
        text += f", e.g. names={suggestions[-1:]!r}"
        text += f" (wildcards: {suggestions})" if len(suggestions) > 1 else ""
    blocks = [(n, m) for n, m in named if next(m.children(), None) is not None]
    blocks = [(n, m) for n, m in blocks if not isinstance(m, containers)]
    if blocks:
        block_type = type(blocks[0][1])
        same = [n for n, m in blocks if type(m) is block_type]
        text += (
            f"{' or' if suggestions else ', e.g.'} layers=({block_type.__name__},) "
            f"({len(same)} modules: {', '.join(same[:4])}{', ...' if len(same) > 4 else ''})"
        )
    counts = Counter(type(m).__name__ for _, m in named)
    types_text = ", ".join(f"{k} x{v}" for k, v in counts.most_common(12))
    return text + f". Module types in the model: {types_text or 'none'}."


def _partial_match_warning(chosen: list[str], modules: dict[str, nn.Module]) -> str | None:
    """A warning when the default choice misses the model's repeated blocks entirely."""
    blocks = [(n, c) for n, c in _repeated_blocks(modules) if n]
    if not chosen or not blocks:
        return None
    name, container = blocks[0]
    if any(c == name or c.startswith(name + ".") for c in chosen):
        return None
    suggestions = _block_suggestions(modules)
    return (
        f"regularize: the default layers matched only {chosen[:4]}"
        f"{' ...' if len(chosen) > 4 else ''}, outside the model's {len(container)} "
        f"repeated blocks ({name}.0 ... {name}.{len(container) - 1}): their activations "
        "are probably functional calls (F.gelu) and get no PER. Regularize the blocks' "
        f"outputs by name, e.g. names={suggestions[-1:]!r}, or pass layers=/names= to "
        "silence this warning."
    )


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
    estimator: str = "monte_carlo",
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
            (``estimator="exact"``: no random directions, ``num_slices`` and ``seed``
            ignored).
        layers: a module type or types whose outputs get PER.
        names: a module name or names whose outputs get PER (wildcards allowed).
        exclude: module types and/or names (wildcards allowed) never regularized.
        samples: how an output is cut into samples (:func:`as_samples`): ``"auto"``
            (one sample per token for 3-D outputs ``(b, T, H)``, per sample
            flattened otherwise), ``"token"`` or ``"flatten"``. Recurrent layers
            always give one sample per (time step, sample). The output may be a
            tensor, a tuple (its first element), or a dict / ``ModelOutput`` (its
            first tensor, ``last_hidden_state``).
        seed: as in :class:`PER`; each layer mixes its index in, so layers get
            different directions from one seed (:func:`per_triton.api.module.derive_seed`).
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
    default = layers is None and names is None
    types = default_layers() if default else (() if layers is None else _as_types(layers, "layers"))
    patterns = [] if names is None else _as_names(names, "names")
    modules = dict(model.named_modules())
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
            warnings.warn(message, stacklevel=2)
    again = [n or "<model>" for n in chosen if _per_hooks(modules[n])]
    if again:
        raise RuntimeError(
            f"regularize: {again} already carry PER from an earlier regularize() call; "
            "remove it first (handle.remove(), or PERHandle.of(model).remove())"
        )
    if _has_compiled_code(model):
        warnings.warn(
            f"regularize: torch.compile already holds compiled code for "
            f"{type(getattr(model, '_orig_mod', model)).__name__} (this model or another "
            "instance of its class was compiled and run); Dynamo's cache is per class "
            "and does not guard on module hooks, so compiled calls of this model would "
            "reuse that code and skip PER until it recompiles (eager calls get PER). "
            "Call regularize() before torch.compile, or torch.compiler.reset() after "
            "regularize().",
            stacklevel=2,
        )
    around = _compiled_around(model, chosen)
    if around:
        warnings.warn(
            f"regularize: torch.compile already holds compiled code for {around} "
            "(compiled and run, or another instance of its class was); Dynamo does not "
            "guard on module hooks, so compiled calls run the regularized modules inside "
            "it without PER (eager calls get PER). Call regularize() before compiling, "
            "or torch.compiler.reset() after regularize().",
            stacklevel=2,
        )
    handle = PERHandle()
    handle._model = model
    for index, name in enumerate(chosen):
        per = PER(
            coeff, num_slices, reduction, precision, estimator=estimator, mode=mode, seed=seed
        )
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
