"""Cross-attention probabilities of a U-Net, recorded through a diffusers attention processor.

diffusers' ``Attention`` modules hand their computation to a *processor* (the library's own
extension point, ``Attention.set_processor``). :class:`RecordingProcessor` is one: it returns
what the default processors (``AttnProcessor``, ``AttnProcessor2_0``) return and, on the way,
keeps ``softmax(Q K^T * scale)`` -- the probabilities with which each query pixel reads each
context token -- for chosen heads and tokens, detached or with their autograd graph.
:func:`record_cross_attention` puts recording processors on chosen modules and puts the
previous processors back on exit, also when the forward pass raises.

Names
-----
The cross-attention module of a Transformer2D extends that Transformer's registry name
(:mod:`difflens.models.layers`):

==========================  ==========================================================
name                        module
==========================  ==========================================================
``down2.attn0.cross``       ``down_blocks[2].attentions[0].transformer_blocks[0].attn2``
``down2.attn0.cross1``      ``... .transformer_blocks[1].attn2`` (SDXL-style depth > 1)
``mid.attn0.cross``         ``mid_block.attentions[0].transformer_blocks[0].attn2``
``up1.attn2.cross``         ``up_blocks[1].attentions[2].transformer_blocks[0].attn2``
==========================  ==========================================================

Its resolution is its Transformer's (:meth:`CrossAttentionRegistry.feature_size`): at 512 px
on SD 1.x, ``down1.attn*.cross`` work at 32 x 32, ``down2`` and ``up1`` at 16 x 16, ``mid``
at 8 x 8, ``up2`` at 32 x 32 and ``down0`` / ``up3`` at 64 x 64.

Hedlin et al.'s flattened list
------------------------------
Hedlin et al. (NeurIPS 2023, ``ubc-vision/LDM_correspondences: utils/optimize_token.py``,
``AttentionStore``) number the cross-attention maps down, mid, up in execution order and keep
only maps with at most ``32 ** 2`` queries (at 512 px: all but the 64 x 64 ones), so their
layer ``5`` is ``up1.attn0.cross``. :meth:`CrossAttentionRegistry.flattened` builds that list
for any model and size: ``exclude_full_resolution=True`` drops the maps that work at the
latent's own resolution (the rule ``<= 32 ** 2`` reads exactly so for SD at 512 px, whose
latent is 64 x 64); ``False`` keeps every map, which renumbers the list.

Recorded tensors
----------------
``record[name]`` is ``(B, heads, tokens, h, w)``: row ``b`` of the U-Net batch, the chosen
heads (in the order given), the chosen context tokens, the query pixels as a map. Each token's
map is a slice of one softmax over tokens, so over ALL tokens the maps sum to 1 at every pixel.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import torch

from difflens.models.layers import LayerRegistry, UnknownLayerError
from difflens.models.wrappers import unwrap_module

__all__ = [
    "HEAD_CHOICES",
    "CrossAttentionInfo",
    "CrossAttentionRegistry",
    "RecordingProcessor",
    "AttentionRecord",
    "AttentionRecorded",
    "select_heads",
    "record_cross_attention",
    "run_recorded",
]

HEAD_CHOICES: tuple[str, ...] = ("all", "upper_half")
"""Named head selections: every head, or heads ``h // 2 .. h - 1`` (Hedlin et al.)."""


@dataclass(frozen=True)
class CrossAttentionInfo:
    """One cross-attention module of the U-Net.

    Attributes:
        name: readable name, ``"<transformer name>.cross"`` (``.cross<k>`` for block ``k > 0``).
        module_path: the ``Attention`` module's name in ``unet.named_modules()``.
        parent: registry name of the Transformer2D holding it (``"up1.attn0"``).
        parent_path: that Transformer2D's module path (its input fixes ``h, w``).
        stage: ``"encoder"``, ``"mid"`` or ``"decoder"``.
        heads: number of attention heads.
        order: position among the cross-attention modules in the forward pass (0 first).
    """

    name: str
    module_path: str
    parent: str
    parent_path: str
    stage: str
    heads: int
    order: int


def _cross_attention(block: torch.nn.Module) -> torch.nn.Module | None:
    """A transformer block's ``attn2`` when it is a cross-attention module."""
    attn = getattr(block, "attn2", None)
    return attn if getattr(attn, "is_cross_attention", False) else None


class CrossAttentionRegistry:
    """Names, modules and resolutions of a U-Net's cross-attention modules.

    Args:
        registry: the U-Net's :class:`~difflens.models.layers.LayerRegistry` (its attention
            layers are the Transformer2D modules whose blocks hold the cross-attention).

    Attributes:
        layers: the layer registry given.
    """

    def __init__(self, registry: LayerRegistry):
        self.layers = registry
        modules = dict(registry.unet.named_modules())
        infos: list[CrossAttentionInfo] = []
        for parent in registry:
            if parent.kind != "attention":
                continue
            blocks = getattr(modules[parent.module_path], "transformer_blocks", None) or []
            for k, block in enumerate(blocks):
                attn = _cross_attention(block)
                if attn is None:
                    continue
                infos.append(
                    CrossAttentionInfo(
                        name=f"{parent.name}.cross" + (str(k) if k else ""),
                        module_path=f"{parent.module_path}.transformer_blocks.{k}.attn2",
                        parent=parent.name,
                        parent_path=parent.module_path,
                        stage=parent.stage,
                        heads=int(attn.heads),
                        order=len(infos),
                    )
                )
        self._infos = {info.name: info for info in infos}
        self._modules = modules

    @classmethod
    def of(cls, unet: torch.nn.Module, latent_scale: int = 8) -> CrossAttentionRegistry:
        """The registry of a U-Net (wrappers looked through).

        Args:
            unet: a diffusers ``UNet2DConditionModel``, possibly wrapped.
            latent_scale: image pixels per latent pixel (8 for SD, 1 in pixel space).

        Returns:
            The cross-attention registry.
        """
        return cls(LayerRegistry(unwrap_module(unet), latent_scale))

    def __iter__(self) -> Iterator[CrossAttentionInfo]:
        return iter(self._infos.values())

    def __len__(self) -> int:
        return len(self._infos)

    def __contains__(self, name: str) -> bool:
        return name in self._infos

    @property
    def names(self) -> list[str]:
        """Every cross-attention name, in forward order."""
        return list(self._infos)

    def info(self, name: str) -> CrossAttentionInfo:
        """The record of one cross-attention module.

        Args:
            name: a name such as ``"up1.attn0.cross"``.

        Returns:
            Its :class:`CrossAttentionInfo`.

        Raises:
            UnknownLayerError: no such module (the message lists close matches).
        """
        if name not in self._infos:
            close = difflib.get_close_matches(name, self._infos, n=5, cutoff=0.5)
            hint = f" Close matches: {', '.join(close)}." if close else ""
            raise UnknownLayerError(
                f"Unknown cross-attention layer {name!r}: this U-Net has {len(self)} "
                f"({', '.join(self.names) or 'none'}).{hint}"
            )
        return self._infos[name]

    def module(self, name: str) -> torch.nn.Module:
        """The diffusers ``Attention`` module of a name.

        Args:
            name: a cross-attention name.

        Returns:
            The module whose processor records it.
        """
        return self._modules[self.info(name).module_path]

    def parent_module(self, name: str) -> torch.nn.Module:
        """The Transformer2D whose input sets the map's height and width.

        Args:
            name: a cross-attention name.

        Returns:
            The Transformer2D module.
        """
        return self._modules[self.info(name).parent_path]

    def feature_size(self, name: str, image_size: int | tuple[int, int]) -> tuple[int, int]:
        """``(h, w)`` of the module's query map for an image of ``image_size`` pixels.

        Args:
            name: a cross-attention name.
            image_size: image side in pixels (int: square) or ``(height, width)``.

        Returns:
            ``(h, w)`` in map cells (its Transformer2D's resolution).
        """
        return self.layers.feature_size(self.info(name).parent, image_size)

    def flattened(self, exclude_full_resolution: bool = True) -> list[str]:
        """Hedlin et al.'s numbered list: down, mid, up in forward order (module docstring).

        Args:
            exclude_full_resolution: drop the maps at the latent's own resolution (Hedlin's
                ``<= 32 ** 2`` queries at 512 px on SD); ``False`` keeps every map.

        Returns:
            Names; Hedlin's layer ``i`` is element ``i``.
        """
        if not exclude_full_resolution:
            return self.names
        return [name for name in self.names if self.layers.info(self.info(name).parent).scale > 1]

    def resolve(
        self, layers: Iterable[int | str], exclude_full_resolution: bool = True
    ) -> list[str]:
        """Names of layers given by name or by index into :meth:`flattened`.

        Args:
            layers: names, or ints indexing Hedlin's flattened list (``5, 6, 7, 8``).
            exclude_full_resolution: how the flattened list is built (see :meth:`flattened`).

        Returns:
            The names, in the order given.

        Raises:
            UnknownLayerError: an unknown name or an index outside the list.
        """
        flat = self.flattened(exclude_full_resolution)
        names = []
        for layer in layers:
            if isinstance(layer, str):
                names.append(self.info(layer).name)
            elif not 0 <= int(layer) < len(flat):
                raise UnknownLayerError(
                    f"cross-attention index {layer} is outside the flattened list of "
                    f"{len(flat)} maps ({', '.join(flat)})"
                )
            else:
                names.append(flat[int(layer)])
        return names

    def table(self, image_size: int | tuple[int, int] = 512) -> pd.DataFrame:
        """Every cross-attention module with its module path, heads and resolution.

        Args:
            image_size: image side in pixels, or ``(height, width)``.

        Returns:
            Indexed by name: ``module``, ``stage``, ``heads``, ``resolution`` (map height),
            ``queries`` (``h * w``), ``hedlin_index`` (position in :meth:`flattened`, or -1
            for an excluded map) and ``order``.
        """
        flat = self.flattened()
        rows = []
        for info in self:
            h, w = self.feature_size(info.name, image_size)
            rows.append(
                {
                    "name": info.name,
                    "module": info.module_path,
                    "stage": info.stage,
                    "heads": info.heads,
                    "resolution": h,
                    "queries": h * w,
                    "hedlin_index": flat.index(info.name) if info.name in flat else -1,
                    "order": info.order,
                }
            )
        return pd.DataFrame(rows).set_index("name")


def select_heads(heads: str | Sequence[int] | None, n_heads: int) -> list[int]:
    """Head indices of a named or explicit selection.

    Args:
        heads: ``None`` or ``"all"`` (every head), ``"upper_half"`` (``n // 2 .. n - 1``,
            Hedlin et al.'s ``attn[h // 2:]`` at batch 1), or explicit indices.
        n_heads: the module's number of heads.

    Returns:
        Sorted-as-given head indices.

    Raises:
        ValueError: an unknown name or an index outside ``0 .. n_heads - 1``.
    """
    if heads is None or heads == "all":
        return list(range(n_heads))
    if heads == "upper_half":
        return list(range(n_heads // 2, n_heads))
    if isinstance(heads, str):
        raise ValueError(f"heads must be one of {HEAD_CHOICES} or indices, got {heads!r}")
    chosen = [int(h) for h in heads]
    if not chosen or any(not 0 <= h < n_heads for h in chosen):
        raise ValueError(f"head indices {chosen} outside 0..{n_heads - 1}")
    return chosen


class AttentionRecorded(Exception):
    """Raised by the last recording processor to end a forward pass early."""


def _check_plain(attn: torch.nn.Module) -> None:
    """``NotImplementedError`` for an ``Attention`` using parts the processor does not cover."""
    extras = [
        part
        for part in ("spatial_norm", "group_norm", "norm_q", "norm_k")
        if getattr(attn, part, None) is not None
    ]
    if extras:
        raise NotImplementedError(
            f"RecordingProcessor covers plain (cross-)attention; this module uses {extras}"
        )


class RecordingProcessor:
    """An attention processor that returns the default output and records probabilities.

    The output is the attention of Vaswani et al. as diffusers' default processors compute
    it, through the module's own parts: ``to_q``, ``to_k``, ``to_v``, its head split, its
    ``get_attention_scores`` (``softmax(Q K^T * attn.scale)``, with diffusers' upcasting and
    mask handling), the weighted sum of values, ``to_out``, then the module's residual and
    rescaling settings. The probabilities of the chosen heads and tokens go to ``sink``.

    Args:
        name: the layer's name, passed to ``sink``.
        sink: called as ``sink(name, probabilities)`` with ``(B, heads, queries, tokens)``.
        heads: head indices to record (``None``: all).
        tokens: context token indices to record (``None``: all).
        keep_graph: keep the autograd graph of the recorded tensor (else it is detached).
        stop: raise :class:`AttentionRecorded` after recording (ends the forward pass).
    """

    def __init__(
        self,
        name: str,
        sink: Callable[[str, torch.Tensor], None],
        heads: Sequence[int] | None = None,
        tokens: Sequence[int] | None = None,
        keep_graph: bool = False,
        stop: bool = False,
    ):
        self.name = name
        self.sink = sink
        self.heads = None if heads is None else list(heads)
        self.tokens = None if tokens is None else list(tokens)
        self.keep_graph = keep_graph
        self.stop = stop

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: object,
    ) -> torch.Tensor:
        """The attention output; records the probabilities on the way.

        Args:
            attn: the diffusers ``Attention`` module.
            hidden_states: ``(B, queries, C)`` or ``(B, C, h, w)`` queries' input.
            encoder_hidden_states: ``(B, tokens, D)`` context (``None``: self-attention).
            attention_mask: optional mask, as diffusers' processors take it.
            temb: unused (no spatial norm is supported).
            **kwargs: ignored, as the default processors ignore them.

        Returns:
            The module's output, shaped like ``hidden_states``.

        Raises:
            AttentionRecorded: after recording, when this is the last layer of a stopping
                recorder.
        """
        _check_plain(attn)
        residual = hidden_states
        spatial = hidden_states.shape if hidden_states.ndim == 4 else None
        if spatial is not None:
            hidden_states = hidden_states.flatten(2).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        batch, n_tokens = context.shape[0], context.shape[1]
        mask = attn.prepare_attention_mask(attention_mask, n_tokens, batch)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probabilities = attn.get_attention_scores(query, key, mask)  # (B * heads, N, T)
        self._record(probabilities.view(batch, attn.heads, *probabilities.shape[1:]))
        out = attn.batch_to_head_dim(torch.bmm(probabilities, value))
        out = attn.to_out[1](attn.to_out[0](out))
        if spatial is not None:
            out = out.transpose(1, 2).reshape(spatial)
        if attn.residual_connection:
            out = out + residual
        out = out / attn.rescale_output_factor
        if self.stop:
            raise AttentionRecorded(self.name)
        return out

    def _record(self, probabilities: torch.Tensor) -> None:
        """Select heads and tokens, detach unless asked not to, hand to the sink."""
        kept = probabilities
        if self.heads is not None:
            kept = kept[:, self.heads]
        if self.tokens is not None:
            kept = kept[..., self.tokens]
        self.sink(self.name, kept if self.keep_graph else kept.detach())


class AttentionRecord(dict):
    """``name -> (B, heads, tokens, h, w)`` probabilities, filled by each forward pass.

    Args:
        heads: ``name -> head indices`` recorded.
        tokens: the token indices recorded (``None``: all).

    Attributes:
        heads: ``name -> head indices`` recorded.
        tokens: the token indices recorded (``None``: all).
    """

    def __init__(self, heads: dict[str, list[int]], tokens: list[int] | None):
        super().__init__()
        self.heads = heads
        self.tokens = tokens

    def check(self, names: Sequence[str]) -> None:
        """Raise when a pass did not fire every recorded layer.

        Args:
            names: the layers that should have been recorded.

        Raises:
            RuntimeError: some are missing (e.g. a U-Net wrapper that bypasses the modules).
        """
        missing = [name for name in names if name not in self]
        if missing:
            raise RuntimeError(f"cross-attention layers {missing} were not recorded by the pass")


def _as_tokens(tokens: int | Sequence[int] | None) -> list[int] | None:
    if tokens is None:
        return None
    return [int(tokens)] if isinstance(tokens, int) else [int(t) for t in tokens]


@contextmanager
def record_cross_attention(
    registry: CrossAttentionRegistry,
    layers: Sequence[str],
    *,
    heads: str | Sequence[int] | None = None,
    tokens: int | Sequence[int] | None = None,
    keep_graph: bool = False,
    stop_early: bool = False,
) -> Iterator[AttentionRecord]:
    """Record the cross-attention probabilities of ``layers`` while the block runs.

    Recording processors replace the processors of the chosen modules only; every replaced
    processor is put back on exit, also when the block raises. With ``stop_early`` the
    deepest requested layer raises :class:`AttentionRecorded` after recording, which
    :func:`run_recorded` swallows, so nothing after it is computed (nor differentiated).

    Args:
        registry: the U-Net's cross-attention registry.
        layers: cross-attention names (all checked before anything is replaced).
        heads: ``"all"`` / ``None``, ``"upper_half"`` or explicit indices (per module).
        tokens: context token index or indices to keep (``None``: all).
        keep_graph: keep the autograd graph (for gradients to the context); else detached.
        stop_early: end each pass after the deepest requested layer.

    Yields:
        The :class:`AttentionRecord` that each pass fills.
    """
    infos = [registry.info(name) for name in dict.fromkeys(layers)]
    deepest = max(infos, key=lambda info: info.order).name if infos else None
    token_list = _as_tokens(tokens)
    record = AttentionRecord({i.name: select_heads(heads, i.heads) for i in infos}, token_list)
    shapes: dict[str, tuple[int, int]] = {}

    def sink(name: str, probabilities: torch.Tensor) -> None:
        h, w = shapes[name]
        b, n_heads, _, n_tokens = probabilities.shape
        record[name] = probabilities.transpose(-1, -2).reshape(b, n_heads, n_tokens, h, w)

    def shape_hook(name: str) -> Callable:
        def pre_hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]
            shapes[name] = tuple(hidden.shape[-2:])

        return pre_hook

    originals, handles = [], []
    try:
        for info in infos:
            module = registry.module(info.name)
            handles.append(
                registry.parent_module(info.name).register_forward_pre_hook(
                    shape_hook(info.name), with_kwargs=True
                )
            )
            originals.append((module, module.processor))
            module.set_processor(
                RecordingProcessor(
                    info.name,
                    sink,
                    record.heads[info.name],
                    token_list,
                    keep_graph,
                    stop=stop_early and info.name == deepest,
                )
            )
        yield record
    finally:
        for module, processor in reversed(originals):
            module.set_processor(processor)
        for handle in handles:
            handle.remove()


def run_recorded(
    unet: torch.nn.Module,
    latents: torch.Tensor,
    timesteps: torch.Tensor | int,
    context: torch.Tensor,
) -> torch.Tensor | None:
    """One U-Net pass inside :func:`record_cross_attention`; an early stop is swallowed.

    Args:
        unet: the U-Net (wrapped or not) whose modules carry the recording processors.
        latents: ``(B, C, h, w)`` noised latents on the U-Net's device and dtype.
        timesteps: scheduler index, one int or a ``(B,)`` tensor.
        context: ``(B, tokens, width)`` ``encoder_hidden_states``.

    Returns:
        The U-Net's output ``(B, C, h, w)``, or ``None`` when the pass stopped early.
    """
    try:
        return unet(latents, timesteps, encoder_hidden_states=context, return_dict=False)[0]
    except AttentionRecorded:
        return None
