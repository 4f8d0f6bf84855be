"""Capture U-Net layer outputs with forward hooks and stop the pass after the deepest one.

Hooks go on the diffusers submodules that the
:class:`~difflens.models.layers.LayerRegistry` names (``register_forward_hook``, as the
PyTorch docs describe); they are removed by a context manager, also when a pass fails. The
forward pass goes through the U-Net as given, so a ``torch.compile`` or data-parallel
wrapper still runs it, while the hooks sit on the original submodules inside it.

A compiled U-Net (``torch.compile(unet)`` or ``unet.compile()``) replays the graph it
traced, and by default dynamo does not check for hooks added after tracing
(``torch._dynamo.config.skip_nnmodule_hook_guards``; PyTorch issues #117758, #96722).
Passes here therefore run with hook guards on, so a graph traced during extraction is
re-traced whenever the hooked layers change; a graph traced *before* (a compiled call
without hooks on the same input shapes) is still replayed without the hooks. Every pass is
checked to have fired every hook (:func:`check_fired`), so that case is an error that
says what to do, never missing or stale features.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

from difflens.models.layers import LayerRegistry
from difflens.models.wrappers import describe_wrappers, is_compiled, unwrap_module


class HooksDidNotFireError(RuntimeError):
    """A forward pass ran without calling the hooks of some requested layers."""


class _StopForward(Exception):
    """Raised by the last hook to end the forward pass early."""


def _first_tensor(output: object) -> torch.Tensor:
    """The tensor in a module's output: itself, the first of a tuple, or ``.sample``."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return _first_tensor(output[0])
    sample = getattr(output, "sample", None)
    if isinstance(sample, torch.Tensor):
        return sample
    raise TypeError(f"cannot find a tensor in a module output of type {type(output).__name__}")


@contextmanager
def capture(
    registry: LayerRegistry, layers: Sequence[str], stop_early: bool = True
) -> Iterator[dict]:
    """Hook ``layers`` of the registry's U-Net; yields the dict their outputs are written to.

    Query layers (``....query``), which the model holds as ``(B, h*w, C)``, are written as
    ``(B, C, h, w)`` maps; ``h, w`` come from a pre-hook on their Transformer2D's input.
    With ``stop_early`` the hook of the deepest layer raises an internal exception that
    :func:`run_unet` swallows, so nothing after it is computed. Every hook is removed on
    exit, also when the pass raises.

    Args:
        registry: the layer registry of the (unwrapped) U-Net whose submodules are hooked.
        layers: layer names; all are checked before anything is hooked.
        stop_early: end the forward pass right after the deepest requested layer.

    Yields:
        ``layer -> (B, C, h, w)`` tensors, filled by each forward pass (on the U-Net's
        device and dtype, not detached from autograd when it is on). An unknown layer
        name raises :class:`~difflens.models.layers.UnknownLayerError` before anything
        is hooked.
    """
    infos = [registry.info(name) for name in registry.check(layers)]  # raises before hooking
    deepest = registry.deepest(layers)
    captured: dict[str, torch.Tensor] = {}
    shapes: dict[str, tuple[int, int]] = {}
    handles = []

    def make_hook(name: str, kind: str) -> Callable:
        def hook(module: torch.nn.Module, inputs: tuple, output: object) -> None:
            tensor = _first_tensor(output)
            if kind == "query":
                h, w = shapes[name]
                b, _, c = tensor.shape
                tensor = tensor.reshape(b, h, w, c).permute(0, 3, 1, 2)
            captured[name] = tensor
            if stop_early and name == deepest:
                raise _StopForward

        return hook

    def make_shape_hook(name: str) -> Callable:
        def pre_hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]
            shapes[name] = tuple(hidden.shape[-2:])

        return pre_hook

    try:
        for info in infos:
            if info.kind == "query":
                parent = registry.parent_module(info.name)
                handles.append(
                    parent.register_forward_pre_hook(make_shape_hook(info.name), with_kwargs=True)
                )
            module = registry.module(info.name)
            handles.append(module.register_forward_hook(make_hook(info.name, info.kind)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def run_unet(
    unet: torch.nn.Module,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    text_embeddings: torch.Tensor,
) -> None:
    """One U-Net forward pass whose only purpose is to fire the capture hooks.

    The pass goes through ``unet`` as given (a compiled or data-parallel wrapper included);
    a compiled one runs with ``torch._dynamo.config.skip_nnmodule_hook_guards = False``,
    so that dynamo guards on the hooks and re-traces when they change rather than replaying
    a graph traced without them.

    Args:
        unet: a diffusers ``UNet2DConditionModel``, possibly wrapped.
        latents: ``(B, C, h, w)`` (noised) latents on the U-Net's device and dtype.
        timesteps: ``(B,)`` long tensor, scheduler indices 0..T-1, one per row.
        text_embeddings: ``(B, tokens, width)`` cross-attention context.
    """
    try:
        if is_compiled(unet):
            with torch._dynamo.config.patch(skip_nnmodule_hook_guards=False):
                unet(latents, timesteps, encoder_hidden_states=text_embeddings, return_dict=False)
        else:
            unet(latents, timesteps, encoder_hidden_states=text_embeddings, return_dict=False)
    except _StopForward:
        pass


def check_fired(captured: dict, layers: Sequence[str], unet: torch.nn.Module) -> None:
    """Raise a clear error when a forward pass did not fire the hooks of some layers.

    Args:
        captured: what :func:`capture` yielded, after the pass.
        layers: the requested layer names.
        unet: the module the pass ran through (wrapped or not), named in the message.

    Raises:
        HooksDidNotFireError: some layers are missing from ``captured``; the message names
            them, the wrapper chain, and what to do.
    """
    missing = [name for name in layers if name not in captured]
    if not missing:
        return
    message = f"layers {missing} did not fire during the forward pass of {describe_wrappers(unet)}."
    if is_compiled(unet):
        message += (
            " The compiled U-Net replayed a graph traced without these hooks: torch.compile "
            "does not check for hooks added after tracing "
            "(torch._dynamo.config.skip_nnmodule_hook_guards is True by default). Set "
            "`torch._dynamo.config.skip_nnmodule_hook_guards = False` before the U-Net's "
            "first compiled call (torch.compile(unet) or the in-place unet.compile() alike; "
            "difflens sets it for its own passes), call `torch._dynamo.reset()` to drop the "
            "graphs traced without hooks, or extract with an uncompiled U-Net."
        )
    elif unwrap_module(unet) is not unet:
        message += (
            " The wrapper's forward never ran the hooked submodules of the U-Net it holds "
            "(for instance, it calls another copy of the model); extract with the unwrapped U-Net "
            "(`difflens.models.wrappers.unwrap_module(unet)`)."
        )
    raise HooksDidNotFireError(message)
