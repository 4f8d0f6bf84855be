"""Auxiliary dense heads that make the toy U-Net hold shape and parts while it learns to denoise.

The positive control of the controls study is a U-Net that demonstrably holds the toy
world's semantics. It is trained as a denoiser AND with auxiliary dense losses: small
heads (a 1 x 1 convolution, or a cosine classifier that reads the direction of each cell's
feature vector, :class:`CosineHead`) predict, at every cell of a chosen U-Net layer, the
class map and the PART map of the clean scene
(:func:`difflens.data.toy.make_toy_example`). The layer outputs are captured with forward
hooks on the U-Net's own modules (:func:`capture_outputs`), so the U-Net's forward pass is
untouched; the heads live apart (:class:`AuxHeads`) and are discarded after training, so
the exported model is a plain ``UNet2DConditionModel``.

Targets at a layer's resolution are the soft label shares of each cell
(:func:`soft_targets`: the one-hot map average-pooled to the layer's size) and the loss is
the cross-entropy against them (:func:`soft_cross_entropy`), weighted per example by the
share of signal left at its timestep, ``alpha_bar_t`` (:func:`aux_loss`): nothing is asked
of a layer that only sees noise.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from difflens.data.toy import PART_NAMES, TOY_CLASSES
from difflens.models.layers import LayerRegistry

N_CLASS_LABELS = len(TOY_CLASSES) + 1
"""Labels of the class maps: background (0) and each toy class (1 ..)."""
N_PART_LABELS = len(PART_NAMES) + 1
"""Labels of the part maps: background (0) and each named part of every class (1 ..)."""


HEAD_KINDS = ("linear", "cosine")
"""Read-outs of :class:`AuxHeads`: a 1 x 1 convolution, or a cosine classifier."""


class CosineHead(torch.nn.Module):
    """A cosine classifier on every cell: ``logits_k = temperature * cos(f, w_k)``.

    The logits depend on the DIRECTION of a cell's feature vector only, so lowering the
    loss turns the features themselves towards their label's vector (a linear head could
    instead grow its own weights); cosine distances between features then reflect labels.

    Args:
        channels: the feature channels.
        n_labels: the labels.
        temperature: the logits' scale (fixed).
    """

    def __init__(self, channels: int, n_labels: int, temperature: float = 10.0):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n_labels, channels) / channels**0.5)
        self.temperature = float(temperature)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of every cell.

        Args:
            features: ``(B, C, h, w)`` features.

        Returns:
            ``(B, n_labels, h, w)`` float32 logits.
        """
        f = F.normalize(features.float(), dim=1)
        w = F.normalize(self.weight, dim=1)
        return self.temperature * torch.einsum("kc,bchw->bkhw", w, f)


def _head(kind: str, channels: int, n_labels: int, temperature: float) -> torch.nn.Module:
    """One read-out of :data:`HEAD_KINDS`."""
    if kind == "linear":
        return torch.nn.Conv2d(channels, n_labels, 1)
    if kind == "cosine":
        return CosineHead(channels, n_labels, temperature)
    raise ValueError(f"head kind must be one of {HEAD_KINDS}, got {kind!r}")


class AuxHeads(torch.nn.Module):
    """Class and part heads on named U-Net layers (linear or cosine read-outs).

    Args:
        unet: the U-Net whose layers the heads read (channels come from its registry).
        class_layers: layers with a class head (``N_CLASS_LABELS`` outputs).
        part_layers: layers with a part head (``N_PART_LABELS`` outputs); a layer name the
            U-Net does not have raises the registry's ``UnknownLayerError``.
        kind: ``"linear"`` (1 x 1 convolution) or ``"cosine"`` (:class:`CosineHead`); an
            unknown kind raises ``ValueError``.
        temperature: the cosine heads' logit scale.
    """

    def __init__(
        self,
        unet: torch.nn.Module,
        class_layers: Sequence[str],
        part_layers: Sequence[str],
        kind: str = "linear",
        temperature: float = 10.0,
    ):
        super().__init__()
        registry = LayerRegistry(unet, latent_scale=1)
        registry.check([*class_layers, *part_layers])
        self.class_layers = tuple(class_layers)
        self.part_layers = tuple(part_layers)
        self.class_heads = torch.nn.ModuleDict(
            {
                _key(n): _head(kind, registry.info(n).channels, N_CLASS_LABELS, temperature)
                for n in self.class_layers
            }
        )
        self.part_heads = torch.nn.ModuleDict(
            {
                _key(n): _head(kind, registry.info(n).channels, N_PART_LABELS, temperature)
                for n in self.part_layers
            }
        )

    @property
    def layers(self) -> tuple[str, ...]:
        """Every layer some head reads, without repeats, in the order given."""
        return tuple(dict.fromkeys((*self.class_layers, *self.part_layers)))

    def forward(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Logits of every head.

        Args:
            outputs: ``{layer: (B, C, h, w)}`` captured layer outputs.

        Returns:
            ``{"class:<layer>": (B, N_CLASS_LABELS, h, w), "part:<layer>": (B,
            N_PART_LABELS, h, w)}`` float32 logits.
        """
        logits = {}
        for name in self.class_layers:
            logits[f"class:{name}"] = self.class_heads[_key(name)](outputs[name].float())
        for name in self.part_layers:
            logits[f"part:{name}"] = self.part_heads[_key(name)](outputs[name].float())
        return logits


def _key(layer: str) -> str:
    """A ModuleDict key for a layer name (dots are not allowed in keys)."""
    return layer.replace(".", "_")


def _tensor(output: object) -> torch.Tensor:
    """The hidden-state tensor of a module's output (tensor, tuple or diffusers output)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return _tensor(output[0])
    return output.sample


@contextmanager
def capture_outputs(unet: torch.nn.Module, layers: Sequence[str]) -> Iterator[dict]:
    """Record the outputs of named U-Net layers during forward passes (gradients kept).

    Args:
        unet: the U-Net (wrappers are looked through for the modules).
        layers: layer names of :class:`~difflens.models.layers.LayerRegistry`.

    Yields:
        A dict that every forward pass fills with ``{layer: (B, C, h, w) tensor}``.
    """
    registry = LayerRegistry(unet, latent_scale=1)
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name in registry.check(layers):

        def hook(_module, _inputs, output, name=name):
            outputs[name] = _tensor(output)

        handles.append(registry.module(name).register_forward_hook(hook))
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def soft_targets(label_maps: torch.Tensor, n_labels: int, size: tuple[int, int]) -> torch.Tensor:
    """The share of each label in every cell of a coarser grid.

    Args:
        label_maps: ``(B, H, W)`` integer label maps (values ``0 .. n_labels - 1``).
        n_labels: the number of labels.
        size: ``(h, w)`` of the grid; ``H`` and ``W`` must be multiples of it.

    Returns:
        ``(B, n_labels, h, w)`` float32 shares, summing to 1 in every cell.
    """
    one_hot = F.one_hot(label_maps.long(), n_labels).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(one_hot, size)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets, averaged over the cells of each example.

    Args:
        logits: ``(B, K, h, w)`` logits.
        targets: ``(B, K, h, w)`` label shares.

    Returns:
        ``(B,)`` float32 losses in nats.
    """
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(1).mean(dim=(1, 2))


def aux_loss(
    logits: dict[str, torch.Tensor],
    class_maps: torch.Tensor,
    part_maps: torch.Tensor,
    signal: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The auxiliary loss: the mean over heads of the signal-weighted soft cross-entropy.

    Args:
        logits: from :meth:`AuxHeads.forward`.
        class_maps: ``(B, H, W)`` class ids of the clean scenes.
        part_maps: ``(B, H, W)`` part ids of the clean scenes.
        signal: ``(B,)`` weight of each example, ``alpha_bar_t`` of its timestep.

    Returns:
        ``(loss, per_head)``: the scalar loss (with a gradient) and each head's weighted
        mean cross-entropy as a float.
    """
    per_head, terms = {}, []
    for key, value in logits.items():
        kind = key.split(":", 1)[0]
        maps, n = (class_maps, N_CLASS_LABELS) if kind == "class" else (part_maps, N_PART_LABELS)
        ce = soft_cross_entropy(value, soft_targets(maps, n, tuple(value.shape[-2:])))
        term = (signal * ce).sum() / signal.sum().clamp_min(1e-8)
        terms.append(term)
        per_head[key] = float(term.detach())
    return torch.stack(terms).mean(), per_head
