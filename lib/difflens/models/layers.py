"""Layer registry: readable names for the U-Net's capturable modules, derived from the model.

Names follow the U-Net's own structure, so SD 1.x, SD 2.x and the tiny models share one
vocabulary without tables of indices:

=========================  ====================================================  =======================
name                       module                                                output
=========================  ====================================================  =======================
``down{i}.res{j}``         ``down_blocks[i].resnets[j]``                         ResNet block
``down{i}.attn{j}``        ``down_blocks[i].attentions[j]``                      Transformer2D (attention)
``down{i}.attn{j}.query``  ``down_blocks[i].attentions[j].transformer_blocks[0]``  cross-attention query
                           ``.attn2.to_q``                                       (reshaped to a map)
``down{i}.downsample``     ``down_blocks[i].downsamplers[0]``                    strided conv
``down{i}``                ``down_blocks[i]``                                    whole block (hidden state)
``down{i}.res{j}.conv2``   ``down_blocks[i].resnets[j].conv2``                   ResNet residual branch
``mid.res{j}`` ...         ``mid_block.resnets[j]`` ...                          as above
``up{i}.res{j}`` ...       ``up_blocks[i].resnets[j]`` ...                       as above, ``up{i}.upsample``
=========================  ====================================================  =======================

A transformer with several blocks (SDXL-style ``transformer_layers_per_block > 1``) names the
queries of its later blocks ``.query1``, ``.query2``, ... The query is ``(B, h*w, C)`` inside
the model; it is captured as a ``(B, C, h, w)`` map like every other layer.

``<resnet>.conv2`` is a ResNet's residual branch: the output of its ``conv2``, before the
shortcut is added and the sum divided by ``output_scale_factor`` -- the tensor Diffusion
Hyperfeatures collects from the 12 up-path ResNets (Luo et al. 2023,
``diffusion-hyperfeatures/diffusion_hyperfeatures: archs/stable_diffusion/resnet.py``).

The paper's layers
------------------
At 512 px the SD latent is 64 x 64 and the encoder works at 64, 32, 16 and 8 latent pixels
in ``down0`` .. ``down3`` (the paper's "64 / 32 / 16" groups are :meth:`LayerRegistry.by_resolution`
per stage). ``down2`` is the encoder's 16 x 16 stage; it holds ``layers_per_block = 2``
(ResNet, Transformer) pairs, which matches the paper's remark that "the U-Net has two
encoder layers at resolution 16 x 16". We therefore read a "layer" as one such pair and its
output as the Transformer's: **the first encoder layer at 16 x 16 is** ``down2.attn0``
(``down_blocks[2].attentions[0]``, 1280 x 16 x 16 on SD 1.x and 2.x) and the second is
``down2.attn1``. Two other modules also emit 16 x 16 encoder maps and are not that layer:
``down1.downsample`` / ``down1`` (a strided conv that ends the 32 x 32 stage, not a
ResNet-Transformer layer) and ``down2.res0`` (half of the first pair, available under its
own name for the "ResNet output" reading). :data:`PAPER_LAYER` holds the default.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pandas as pd
import torch

from difflens.models.wrappers import unwrap_module

STAGES = ("encoder", "mid", "decoder")
KINDS = ("resnet", "residual", "attention", "query", "downsampler", "upsampler", "block")
PAPER_LAYER = "down2.attn0"
"""The paper's "first encoder layer at 16 x 16" (see the module docstring)."""


@dataclass(frozen=True)
class LayerInfo:
    """One capturable module of the U-Net.

    Attributes:
        name: the readable name (``"down2.attn0"``; see the module docstring).
        module_path: the submodule's name in ``unet.named_modules()``
            (``"down_blocks.2.attentions.0"``).
        kind: one of :data:`KINDS`: resnet, residual (a ResNet's ``conv2``), attention,
            query, downsampler, upsampler, block.
        stage: one of :data:`STAGES`: encoder, mid, decoder.
        block: index of the block in its stage (-1 for the mid block).
        channels: channels of the captured ``(B, C, h, w)`` map.
        scale: spatial downsampling relative to the latent (1, 2, 4, ...).
        order: position in the forward pass (0 fires first).
        parent_path: for queries, the Transformer2D whose input sets ``h, w``; else ``None``.
    """

    name: str
    module_path: str
    kind: str
    stage: str
    block: int
    channels: int
    scale: int
    order: int
    parent_path: str | None = None


class UnknownLayerError(KeyError):
    """A layer name that the model does not have."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


def _out_channels(module: torch.nn.Module, fallback: int) -> int:
    """``module.out_channels`` when it is an int, else ``fallback``."""
    value = getattr(module, "out_channels", None)
    return value if isinstance(value, int) else fallback


class _Collector:
    """Appends :class:`LayerInfo` records in forward order."""

    def __init__(self) -> None:
        self.infos: list[LayerInfo] = []

    def add(self, name, path, kind, stage, block, channels, scale, parent_path=None) -> None:
        self.infos.append(
            LayerInfo(
                name, path, kind, stage, block, int(channels), scale, len(self.infos), parent_path
            )
        )

    def attention(self, name, path, module, fallback_channels, stage, block, scale) -> None:
        """A Transformer2D: the queries of its blocks (they fire first), then its output."""
        for k, transformer in enumerate(getattr(module, "transformer_blocks", None) or []):
            to_q = getattr(getattr(transformer, "attn2", None), "to_q", None)
            if isinstance(to_q, torch.nn.Linear):
                suffix = "query" if k == 0 else f"query{k}"
                self.add(
                    f"{name}.{suffix}",
                    f"{path}.transformer_blocks.{k}.attn2.to_q",
                    "query",
                    stage,
                    block,
                    to_q.out_features,
                    scale,
                    parent_path=path,
                )
        channels = _out_channels(module, fallback_channels)
        self.add(name, path, "attention", stage, block, channels, scale)

    def resnet(self, name, path, module, stage, block, scale) -> None:
        """A ResNet: its residual branch (``conv2``, which fires first), then its output."""
        conv2 = getattr(module, "conv2", None)
        if isinstance(conv2, torch.nn.Conv2d):
            self.add(
                f"{name}.conv2",
                f"{path}.conv2",
                "residual",
                stage,
                block,
                conv2.out_channels,
                scale,
            )
        self.add(name, path, "resnet", stage, block, module.out_channels, scale)

    def pairs(self, prefix, path, block_module, stage, block, scale) -> None:
        """The (ResNet, attention) pairs of a down or up block."""
        attentions = list(getattr(block_module, "attentions", None) or [])
        for j, resnet in enumerate(block_module.resnets):
            self.resnet(f"{prefix}.res{j}", f"{path}.resnets.{j}", resnet, stage, block, scale)
            if j < len(attentions):
                self.attention(
                    f"{prefix}.attn{j}",
                    f"{path}.attentions.{j}",
                    attentions[j],
                    resnet.out_channels,
                    stage,
                    block,
                    scale,
                )


def layer_infos(unet: torch.nn.Module) -> list[LayerInfo]:
    """Walk a diffusers ``UNet2DConditionModel`` and list its capturable modules.

    Reads the block structure diffusers builds (``down_blocks``, ``mid_block``,
    ``up_blocks`` with their ``resnets``, ``attentions``, ``downsamplers`` and
    ``upsamplers``), so any ``UNet2DConditionModel`` config works without tables.

    Args:
        unet: the U-Net; ``torch.compile`` / DDP wrappers are looked through.

    Returns:
        One :class:`LayerInfo` per capturable module, in forward order.
    """
    unet = unwrap_module(unet)
    out = _Collector()
    scale = 1
    for i, block in enumerate(unet.down_blocks):
        channels = block.resnets[-1].out_channels
        out.pairs(f"down{i}", f"down_blocks.{i}", block, "encoder", i, scale)
        if getattr(block, "downsamplers", None):
            scale *= 2
            path = f"down_blocks.{i}.downsamplers.0"
            out.add(f"down{i}.downsample", path, "downsampler", "encoder", i, channels, scale)
        out.add(f"down{i}", f"down_blocks.{i}", "block", "encoder", i, channels, scale)

    mid = unet.mid_block
    if mid is not None:
        resnets = list(mid.resnets)
        attentions = list(getattr(mid, "attentions", None) or [])
        # the mid block runs resnet 0, then (attention j, resnet j + 1) pairs
        out.resnet("mid.res0", "mid_block.resnets.0", resnets[0], "mid", -1, scale)
        for j in range(1, len(resnets)):
            if j - 1 < len(attentions):
                path = f"mid_block.attentions.{j - 1}"
                channels = resnets[j - 1].out_channels
                out.attention(
                    f"mid.attn{j - 1}", path, attentions[j - 1], channels, "mid", -1, scale
                )
            path = f"mid_block.resnets.{j}"
            out.resnet(f"mid.res{j}", path, resnets[j], "mid", -1, scale)
        out.add("mid", "mid_block", "block", "mid", -1, resnets[-1].out_channels, scale)

    for i, block in enumerate(unet.up_blocks):
        channels = block.resnets[-1].out_channels
        out.pairs(f"up{i}", f"up_blocks.{i}", block, "decoder", i, scale)
        if getattr(block, "upsamplers", None):
            scale //= 2
            path = f"up_blocks.{i}.upsamplers.0"
            out.add(f"up{i}.upsample", path, "upsampler", "decoder", i, channels, scale)
        out.add(f"up{i}", f"up_blocks.{i}", "block", "decoder", i, channels, scale)
    return out.infos


def _hw(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` of an int (square) or a pair."""
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = image_size
    return int(height), int(width)


class LayerRegistry:
    """Name -> module lookups and a table of every capturable layer of one U-Net.

    A wrapped U-Net (``torch.compile(unet)``, DDP, ``accelerate``) is unwrapped: names and
    modules are those of the original U-Net, whose submodules the hooks go on; the forward
    pass may still run through the wrapper.

    Args:
        unet: a diffusers ``UNet2DConditionModel``, possibly wrapped.
        latent_scale: image pixels per latent pixel along one side (8 for SD's VAE, 1 for
            a pixel-space model).

    Attributes:
        unet: the unwrapped U-Net.
        latent_scale: as given.
    """

    def __init__(self, unet: torch.nn.Module, latent_scale: int = 8):
        self.unet = unwrap_module(unet)
        self.latent_scale = latent_scale
        self._infos = {info.name: info for info in layer_infos(self.unet)}
        self._modules = dict(self.unet.named_modules())

    def __contains__(self, name: str) -> bool:
        return name in self._infos

    def __iter__(self) -> Iterator[LayerInfo]:
        return iter(self._infos.values())

    def __len__(self) -> int:
        return len(self._infos)

    @property
    def names(self) -> list[str]:
        """Every layer name, in forward order."""
        return list(self._infos)

    def info(self, name: str) -> LayerInfo:
        """The record of one layer.

        Args:
            name: a layer name such as ``"down2.attn0"``.

        Returns:
            Its :class:`LayerInfo`.

        Raises:
            UnknownLayerError: the U-Net has no such layer (the message lists close matches).
        """
        if name not in self._infos:
            close = difflib.get_close_matches(name, self._infos, n=5, cutoff=0.5)
            hint = f" Close matches: {', '.join(close)}." if close else ""
            raise UnknownLayerError(
                f"Unknown layer {name!r}: this U-Net has {len(self._infos)} named layers "
                f"(see LayerRegistry.table()).{hint}"
            )
        return self._infos[name]

    def check(self, names: Iterable[str]) -> list[str]:
        """Validate layer names; one error lists every unknown name with its close matches.

        Args:
            names: layer names.

        Returns:
            The names as a list, in the order given.

        Raises:
            UnknownLayerError: one or more names are unknown (all of them are named).
        """
        names = list(names)
        problems = []
        for name in names:
            try:
                self.info(name)
            except UnknownLayerError as error:
                problems.append(str(error))
        if problems:
            raise UnknownLayerError(" ".join(problems))
        return names

    def module(self, name: str) -> torch.nn.Module:
        """The submodule of the (unwrapped) U-Net that a layer's hook goes on.

        Args:
            name: a layer name.

        Returns:
            The ``torch.nn.Module`` at the layer's :attr:`LayerInfo.module_path`.
        """
        return self._modules[self.info(name).module_path]

    def parent_module(self, name: str) -> torch.nn.Module | None:
        """For a query layer, the Transformer2D whose input fixes the map's height and width.

        Args:
            name: a layer name.

        Returns:
            The Transformer2D module, or ``None`` for a layer that is not a query.
        """
        path = self.info(name).parent_path
        return None if path is None else self._modules[path]

    def deepest(self, names: Iterable[str]) -> str:
        """The requested layer that fires last in the forward pass.

        Args:
            names: known layer names (at least one).

        Returns:
            The name with the highest :attr:`LayerInfo.order`.
        """
        return max((self.info(name) for name in names), key=lambda info: info.order).name

    def feature_size(self, name: str, image_size: int | tuple[int, int]) -> tuple[int, int]:
        """``(h, w)`` of the layer's map for an image of ``image_size`` pixels.

        Args:
            name: a layer name.
            image_size: the image side in pixels (int: square) or ``(height, width)``.

        Returns:
            ``(h, w)`` in feature cells: the latent size divided by the layer's scale,
            rounded up as strided convolutions with padding do.
        """
        scale = self.info(name).scale
        height, width = _hw(image_size)
        # ceil: strided convs with padding round up
        return (
            -(-(height // self.latent_scale) // scale),
            -(-(width // self.latent_scale) // scale),
        )

    def resolution(self, name: str, image_size: int) -> int:
        """Side of the layer's feature map for a square image.

        Args:
            name: a layer name.
            image_size: the image side in pixels.

        Returns:
            The map's height in feature cells (its width too, for a square image).
        """
        return self.feature_size(name, image_size)[0]

    def by_resolution(
        self,
        resolution: int,
        image_size: int,
        stage: str | None = None,
        kinds: tuple[str, ...] = ("resnet", "attention"),
    ) -> list[str]:
        """Layers whose maps are ``resolution`` wide at ``image_size``, optionally in one stage.

        ``by_resolution(16, 512, "encoder")`` is the paper's "encoder 16" group:
        ``down2.res0, down2.attn0, down2.res1, down2.attn1`` on SD 1.x.

        Args:
            resolution: the map side in feature cells (64, 32, 16, 8 for SD at 512 px).
            image_size: the image side in pixels.
            stage: ``"encoder"``, ``"mid"``, ``"decoder"``, or ``None`` for all.
            kinds: the layer kinds to keep.

        Returns:
            The matching layer names, in forward order.
        """
        return [
            info.name
            for info in self
            if self.resolution(info.name, image_size) == resolution
            and info.kind in kinds
            and (stage is None or info.stage == stage)
        ]

    def table(
        self, image_size: int | tuple[int, int] = 512, kinds: tuple[str, ...] | None = None
    ) -> pd.DataFrame:
        """Every layer (or those of ``kinds``) with module path, stage, channels and resolution.

        Args:
            image_size: the image side in pixels, or ``(height, width)``.
            kinds: the layer kinds to list (``None``: all).

        Returns:
            A data frame indexed by layer name with columns ``module``, ``stage``,
            ``kind``, ``channels``, ``resolution`` (map height), ``shape``
            (``"C x h x w"``), ``group`` (``"encoder 16"``) and ``order``.
        """
        rows = []
        for info in self:
            if kinds is not None and info.kind not in kinds:
                continue
            h, w = self.feature_size(info.name, image_size)
            rows.append(
                {
                    "name": info.name,
                    "module": info.module_path,
                    "stage": info.stage,
                    "kind": info.kind,
                    "channels": info.channels,
                    "resolution": h,
                    "shape": f"{info.channels} x {h} x {w}",
                    "group": f"{info.stage} {h}" if h == w else f"{info.stage} {h}x{w}",
                    "order": info.order,
                }
            )
        return pd.DataFrame(rows).set_index("name")


def resolution_layers(
    registry: LayerRegistry, resolution: int, image_size: int, stage: str | None = None
) -> list[str]:
    """The layers making up one resolution group: its attention layers, else its ResNets.

    This is the paper's reading of "the layers at 64 / 32 / 16" (Fig. 4): the outputs of
    the (ResNet, Transformer) pairs at that resolution (see the module docstring).

    Args:
        registry: the U-Net's layer registry.
        resolution: the map side in feature cells.
        image_size: the image side in pixels.
        stage: ``"encoder"``, ``"mid"``, ``"decoder"``, or ``None`` for all.

    Returns:
        The layer names, in forward order.

    Raises:
        ValueError: no attention or ResNet layer works at that resolution.
    """
    layers = registry.by_resolution(resolution, image_size, stage=stage, kinds=("attention",))
    if not layers:
        layers = registry.by_resolution(resolution, image_size, stage=stage, kinds=("resnet",))
    if not layers:
        where = f" in the {stage}" if stage else ""
        raise ValueError(
            f"no layer works at {resolution}x{resolution}{where} for {image_size} px images"
        )
    return layers


def resolution_group(
    registry: LayerRegistry, spec: str, image_size: int, stage: str | None = None
) -> str:
    """A ``+``-joined layer spec for a resolution group or a concatenation of them.

    Args:
        registry: the U-Net's layer registry.
        spec: ``"16"`` or ``"64+32+16"`` (the paper's concatenated groups).
        image_size: the image side in pixels.
        stage: ``"encoder"``, ``"mid"``, ``"decoder"``, or ``None`` for all.

    Returns:
        ``"down2.attn0+down2.attn1"`` and the like, for
        :func:`difflens.features.batch.prototype_table`.
    """
    layers: list[str] = []
    for part in str(spec).split("+"):
        layers += resolution_layers(registry, int(part), image_size, stage)
    return "+".join(layers)
