"""Whether torch.compile already holds code that would run a model, or modules in
it, without the hooks :func:`per_triton.regularize` adds (Dynamo's cache is per class
and does not guard on module hooks)."""

from __future__ import annotations

import gc
import sys
import warnings

from torch import nn


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


def _warn_compiled(model: nn.Module, chosen: list[str]) -> None:
    """Warn, at the caller of :func:`per_triton.regularize`, when compiled code exists that
    would run ``model`` or modules holding the ``chosen`` ones without their hooks."""
    if _has_compiled_code(model):
        warnings.warn(
            f"regularize: torch.compile already holds compiled code for "
            f"{type(getattr(model, '_orig_mod', model)).__name__} (this model or another "
            "instance of its class was compiled and run); Dynamo's cache is per class "
            "and does not guard on module hooks, so compiled calls of this model would "
            "reuse that code and skip PER until it recompiles (eager calls get PER). "
            "Call regularize() before torch.compile, or torch.compiler.reset() after "
            "regularize().",
            stacklevel=3,
        )
    around = _compiled_around(model, chosen)
    if around:
        warnings.warn(
            f"regularize: torch.compile already holds compiled code for {around} "
            "(compiled and run, or another instance of its class was); Dynamo does not "
            "guard on module hooks, so compiled calls run the regularized modules inside "
            "it without PER (eager calls get PER). Call regularize() before compiling, "
            "or torch.compiler.reset() after regularize().",
            stacklevel=3,
        )
