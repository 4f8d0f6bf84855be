"""Layer registry: readable names for the U-Net's capturable modules, derived from the model.

Names follow the U-Net's own structure, so SD 1.x, SD 2.x and the tiny models share one
vocabulary without tables of indices:

=====================  =======================================  ==========================
name                   module                                   output
=====================  =======================================  ==========================
``down{i}.res{j}``     ``down_blocks[i].resnets[j]``            ResNet block
``down{i}.attn{j}``    ``down_blocks[i].attentions[j]``         Transformer2D (attention)
``down{i}.downsample`` ``down_blocks[i].downsamplers[0]``       strided conv
``down{i}``            ``down_blocks[i]``                       whole block (hidden state)
``mid.res{j}`` ...     ``mid_block.resnets[j]`` ...             as above
``up{i}.res{j}`` ...   ``up_blocks[i].resnets[j]`` ...          as above, ``up{i}.upsample``
=====================  =======================================  ==========================

The paper's "first encoder layer at 16x16" is ``down2.attn0`` on SD 1.x at 512 px: the
encoder works at 64, 32, 16 and 8 latent pixels in ``down0`` .. ``down3``; ``down2`` is the
16x16 stage, and its first layer (ResNet then Transformer, whose output is the first
complete layer of the stage) is ``down2.res0`` -> ``down2.attn0``. We read "layer" as the
resnet+attention pair, whose output is ``down2.attn0``; ``down2.res0`` is available under
its own name for the other reading.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import pandas as pd
import torch

STAGES = ("encoder", "mid", "decoder")


@dataclass(frozen=True)
class LayerInfo:
    """One capturable module of the U-Net."""

    name: str
    module_path: str
    kind: str  # resnet, attention, downsampler, upsampler, block
    stage: str  # encoder, mid, decoder
    block: int  # index of the block in its stage (-1 for mid)
    channels: int
    scale: int  # spatial downsampling relative to the latent (1, 2, 4, ...)
    order: int  # position in the forward pass


class UnknownLayerError(KeyError):
    """A layer name that the model does not have."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


def _out_channels(module: torch.nn.Module, fallback: int) -> int:
    for attr in ("out_channels",):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    return fallback


def layer_infos(unet: torch.nn.Module) -> list[LayerInfo]:
    """Walk a diffusers ``UNet2DConditionModel`` and list its capturable modules in forward order."""
    infos: list[LayerInfo] = []

    def add(name, path, kind, stage, block, channels, scale):
        infos.append(LayerInfo(name, path, kind, stage, block, int(channels), scale, len(infos)))

    scale = 1
    for i, block in enumerate(unet.down_blocks):
        resnets = list(block.resnets)
        attentions = list(getattr(block, "attentions", None) or [])
        channels = resnets[-1].out_channels
        for j, resnet in enumerate(resnets):
            add(
                f"down{i}.res{j}",
                f"down_blocks.{i}.resnets.{j}",
                "resnet",
                "encoder",
                i,
                resnet.out_channels,
                scale,
            )
            if j < len(attentions):
                add(
                    f"down{i}.attn{j}",
                    f"down_blocks.{i}.attentions.{j}",
                    "attention",
                    "encoder",
                    i,
                    _out_channels(attentions[j], resnet.out_channels),
                    scale,
                )
        if getattr(block, "downsamplers", None):
            scale *= 2
            add(
                f"down{i}.downsample",
                f"down_blocks.{i}.downsamplers.0",
                "downsampler",
                "encoder",
                i,
                channels,
                scale,
            )
        add(f"down{i}", f"down_blocks.{i}", "block", "encoder", i, channels, scale)

    mid = unet.mid_block
    if mid is not None:
        resnets = list(mid.resnets)
        attentions = list(getattr(mid, "attentions", None) or [])
        add("mid.res0", "mid_block.resnets.0", "resnet", "mid", -1, resnets[0].out_channels, scale)
        for j, attention in enumerate(attentions):
            add(
                f"mid.attn{j}",
                f"mid_block.attentions.{j}",
                "attention",
                "mid",
                -1,
                _out_channels(attention, resnets[j].out_channels),
                scale,
            )
            add(
                f"mid.res{j + 1}",
                f"mid_block.resnets.{j + 1}",
                "resnet",
                "mid",
                -1,
                resnets[j + 1].out_channels,
                scale,
            )
        for j in range(len(attentions) + 1, len(resnets)):
            add(
                f"mid.res{j}",
                f"mid_block.resnets.{j}",
                "resnet",
                "mid",
                -1,
                resnets[j].out_channels,
                scale,
            )
        add("mid", "mid_block", "block", "mid", -1, resnets[-1].out_channels, scale)

    for i, block in enumerate(unet.up_blocks):
        resnets = list(block.resnets)
        attentions = list(getattr(block, "attentions", None) or [])
        channels = resnets[-1].out_channels
        for j, resnet in enumerate(resnets):
            add(
                f"up{i}.res{j}",
                f"up_blocks.{i}.resnets.{j}",
                "resnet",
                "decoder",
                i,
                resnet.out_channels,
                scale,
            )
            if j < len(attentions):
                add(
                    f"up{i}.attn{j}",
                    f"up_blocks.{i}.attentions.{j}",
                    "attention",
                    "decoder",
                    i,
                    _out_channels(attentions[j], resnet.out_channels),
                    scale,
                )
        if getattr(block, "upsamplers", None):
            scale //= 2
            add(
                f"up{i}.upsample",
                f"up_blocks.{i}.upsamplers.0",
                "upsampler",
                "decoder",
                i,
                channels,
                scale,
            )
        add(f"up{i}", f"up_blocks.{i}", "block", "decoder", i, channels, scale)
    return infos


class LayerRegistry:
    """Name -> module lookups and a table of every capturable layer of one U-Net."""

    def __init__(self, unet: torch.nn.Module, latent_scale: int = 8):
        self.unet = unet
        self.latent_scale = latent_scale
        self._infos = {info.name: info for info in layer_infos(unet)}
        self._modules = dict(unet.named_modules())

    def __contains__(self, name: str) -> bool:
        return name in self._infos

    def __iter__(self):
        return iter(self._infos.values())

    def __len__(self) -> int:
        return len(self._infos)

    @property
    def names(self) -> list[str]:
        return list(self._infos)

    def info(self, name: str) -> LayerInfo:
        if name not in self._infos:
            close = difflib.get_close_matches(name, self._infos, n=5, cutoff=0.5)
            hint = f" Close matches: {', '.join(close)}." if close else ""
            raise UnknownLayerError(
                f"Unknown layer {name!r}: this U-Net has {len(self._infos)} named layers "
                f"(see LayerRegistry.table()).{hint}"
            )
        return self._infos[name]

    def module(self, name: str) -> torch.nn.Module:
        return self._modules[self.info(name).module_path]

    def resolution(self, name: str, image_size: int) -> int:
        """Side of the layer's feature map for a square image of ``image_size`` pixels."""
        latent = image_size // self.latent_scale
        scale = self.info(name).scale
        return -(-latent // scale)  # ceil: strided convs with padding round up

    def by_resolution(
        self,
        resolution: int,
        image_size: int,
        stage: str | None = None,
        kinds: tuple[str, ...] = ("resnet", "attention"),
    ) -> list[str]:
        """Layers whose maps are ``resolution`` wide at ``image_size``, optionally in one stage."""
        return [
            info.name
            for info in self
            if self.resolution(info.name, image_size) == resolution
            and info.kind in kinds
            and (stage is None or info.stage == stage)
        ]

    def table(self, image_size: int = 512) -> pd.DataFrame:
        """Every layer with its module path, stage, kind, channels and resolution."""
        rows = []
        for info in self:
            side = self.resolution(info.name, image_size)
            rows.append(
                {
                    "name": info.name,
                    "module": info.module_path,
                    "stage": info.stage,
                    "kind": info.kind,
                    "channels": info.channels,
                    "resolution": side,
                    "shape": f"{info.channels} x {side} x {side}",
                    "order": info.order,
                }
            )
        return pd.DataFrame(rows).set_index("name")
