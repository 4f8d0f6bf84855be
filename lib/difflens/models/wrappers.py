"""Unwrap a U-Net from ``torch.compile`` and data-parallel wrappers to the module it holds.

A wrapped model is called through its wrapper, but its layers live in the module inside:

- ``torch.compile(unet)`` returns an ``OptimizedModule`` (the pattern of the diffusers
  speed-up guide, ``pipe.unet = torch.compile(pipe.unet)``) that keeps the original module
  as ``_orig_mod`` and prefixes every submodule and weight name with ``"_orig_mod."``;
- ``torch.nn.parallel.DistributedDataParallel``, ``torch.nn.DataParallel`` and what
  ``accelerate``'s ``prepare`` returns hold it as ``.module`` (prefix ``"module."``) and do
  not forward attributes such as ``config``.

Layer lookup, hooks, configs and weight fingerprints therefore work on
:func:`unwrap_module`'s result, while the forward pass still goes through the wrapper. The
in-place ``unet.compile()`` leaves the module itself in place: nothing to unwrap.
"""

from __future__ import annotations

import torch


def _inner(module: torch.nn.Module) -> torch.nn.Module | None:
    """The module one wrapper holds, or ``None`` when ``module`` is not a wrapper."""
    compiled = module._modules.get("_orig_mod")
    if isinstance(compiled, torch.nn.Module):
        return compiled
    held = module._modules.get("module")
    if isinstance(held, torch.nn.Module) and all(c is held for c in module.children()):
        return held
    return None


def wrapper_chain(module: torch.nn.Module) -> list[torch.nn.Module]:
    """``module`` and every module that its wrappers hold, outermost first.

    A wrapper is a module whose only child is ``.module`` (DDP, ``DataParallel``,
    ``accelerate``) or that holds ``_orig_mod`` (``torch.compile``'s ``OptimizedModule``).

    Args:
        module: a model, wrapped or not.

    Returns:
        ``[module]`` for a plain model; ``[wrapper, ..., model]`` otherwise (never empty).
    """
    chain = [module]
    inner = _inner(module)
    while inner is not None and all(inner is not seen for seen in chain):
        chain.append(inner)
        inner = _inner(inner)
    return chain


def unwrap_module(module: torch.nn.Module) -> torch.nn.Module:
    """The model inside any ``torch.compile`` and data-parallel wrappers (see module docs).

    Args:
        module: a model, possibly ``torch.compile(model)``, ``DDP(model)`` or both nested.

    Returns:
        The innermost module (``module`` itself when it is not wrapped): the one whose
        submodules have the model's own names and carry forward hooks.
    """
    return wrapper_chain(module)[-1]


def is_compiled(module: torch.nn.Module) -> bool:
    """Whether ``module`` or a module its wrappers hold runs through ``torch.compile``.

    Args:
        module: a model, wrapped or not.

    Returns:
        True for an ``OptimizedModule`` anywhere in the chain, or a module compiled in
        place with ``module.compile()`` (torch keeps that as ``_compiled_call_impl``).
    """
    return any(
        "_orig_mod" in m._modules or getattr(m, "_compiled_call_impl", None) is not None
        for m in wrapper_chain(module)
    )


def describe_wrappers(module: torch.nn.Module) -> str:
    """The chain of module classes, e.g. ``"OptimizedModule -> UNet2DConditionModel"``.

    Args:
        module: a model, wrapped or not.

    Returns:
        The class names joined by ``" -> "``, outermost first.
    """
    return " -> ".join(type(m).__name__ for m in wrapper_chain(module))
