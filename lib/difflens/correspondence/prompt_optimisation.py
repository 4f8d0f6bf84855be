"""Correspondence by prompt-embedding optimisation (Hedlin et al., NeurIPS 2023): the optimisation.

"Unsupervised Semantic Correspondence Using Stable Diffusion" (Hedlin, Sharma, Mahajan, Isack,
Kar, Tagliasacchi, Yi; code ``ubc-vision/LDM_correspondences``: ``utils/optimize_token.py``,
``utils/optimize.py``, ``eval/eval.py``) learns, per source keypoint, text embeddings whose
cross-attention map (token 1) peaks at the keypoint, then reads the same embeddings' map on
the target image: its argmax is the match (:mod:`~difflens.correspondence.prompt_inference`).

One optimisation step here, for every (keypoint, embedding) row of ONE batched U-Net pass:

1. a random square crop of ``crop_fraction`` of the side whose top-left corner keeps the
   point at least ``crop_margin`` of the crop from its border (:func:`crop_box`, Hedlin's
   ``crop_image``), resized bilinearly back to ``image_size`` (:func:`crop_resize`);
2. the latent: the VAE posterior MEAN x ``scaling_factor`` (pixels in [-1, 1] for a
   pixel-space model), noised to ``timestep`` by the scheduler's ``add_noise``;
3. the U-Net with the row's embedding as the WHOLE ``encoder_hidden_states`` (``context=
   "full"``, Hedlin: ``randn(1, 77, 768)``, every vector trainable) or with ``n_tokens``
   learnable vectors after the start token and the rest fixed to a prompt's text embedding
   (``context="tokens"``); weights frozen, the pass stopped after the deepest chosen layer;
4. per chosen layer, the recorded probabilities of token ``token_index``, the mean over the
   chosen heads, bilinearly upsampled to ``map_size``;
5. the loss: mean squared error against an UNNORMALISED Gaussian (peak 1, width ``sigma``
   pixels of the ``image_size`` frame) centred on the point's position in the crop, averaged
   over layers and pixels -- per row; the rows' losses are SUMMED, so every embedding gets
   exactly the gradient of its own independent run (Hedlin runs the ``k`` embeddings one
   after the other), and Adam, elementwise, keeps them independent too.

The quirks of the reference code, each a field of :class:`PromptPreset` with its faithful and
its clean value (:data:`QUIRKS`, :meth:`PromptPreset.clean`):

=============================  ===========================  ==================================
field                          faithful (``hedlin``)        clean
=============================  ===========================  ==================================
``noise``                      ``"uniform"``                ``"gaussian"``: the forward
                               (``torch.rand_like``)        process's own noise
``inference_timestep``         ``40`` (``timesteps[-3]``,   ``None``: the optimisation
                               hard-coded) vs 140           timestep at inference too
``heads``                      ``"upper_half"`` (``attn[h   ``"all"``
                               // 2:]``, a batch-1 CFG
                               artefact: 4 of 8 heads)
``pixel_softmax``              ``"per_layer"``: softmax     ``"none"``: mean over layers,
                               over the pixels of each      then the argmax
                               layer's map, then the mean
``exclude_full_resolution``    ``True``: the flattened      ``False``: every map is counted
                               list skips 64 x 64 maps      (indices then name other layers;
                                                            give names to keep them)
=============================  ===========================  ==================================

Timesteps: Hedlin's ``DDIMScheduler`` (``steps_offset=0``) with 50 steps runs 980, 960, ..., 0
(:func:`ddim_timesteps`); ``timesteps[-8] = 140`` at optimisation and ``timesteps[-3] = 40``
at inference. Pixel frame: images are resized anisotropically to ``image_size`` and points
scaled by ``image_size / W`` and ``image_size / H`` (Hedlin's ``eval/dataset.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from difflens.data.images import images_to_tensor
from difflens.features.attention import (
    HEAD_CHOICES,
    CrossAttentionRegistry,
    record_cross_attention,
    run_recorded,
)
from difflens.models.backbone import Backbone
from difflens.models.text import PromptCache

__all__ = [
    "NOISE_KINDS",
    "PIXEL_SOFTMAX",
    "CONTEXT_MODES",
    "QUIRKS",
    "PromptPreset",
    "PROMPT_PRESETS",
    "get_prompt_preset",
    "prompt_preset_table",
    "quirk_table",
    "ddim_timesteps",
    "equivalent_timestep",
    "crop_box",
    "crop_resize",
    "gaussian_target",
    "PromptModel",
    "EmbeddingParameters",
    "OptimisedEmbeddings",
    "optimise_embeddings",
    "memory_in_use",
]

NOISE_KINDS: tuple[str, ...] = ("uniform", "gaussian")
"""Noise added to the latent: ``torch.rand_like`` (Hedlin) or ``torch.randn_like``."""
PIXEL_SOFTMAX: tuple[str, ...] = ("per_layer", "none")
"""How layer maps are combined at inference (module docstring)."""
CONTEXT_MODES: tuple[str, ...] = ("full", "tokens")
"""What is learnt: the whole context, or ``n_tokens`` vectors with the rest fixed."""

QUIRKS: dict[str, tuple[object, object, str]] = {
    "noise": ("uniform", "gaussian", "noise of add_noise: torch.rand_like vs torch.randn_like"),
    "inference_timestep": (
        40,
        None,
        "inference at timesteps[-3] = 40 while optimising at timesteps[-8] = 140, vs one t",
    ),
    "heads": ("upper_half", "all", "heads h // 2 .. h - 1 (batch-1 CFG artefact) vs all heads"),
    "pixel_softmax": (
        "per_layer",
        "none",
        "softmax over each layer's pixels before the layer mean vs the plain mean",
    ),
    "exclude_full_resolution": (
        True,
        False,
        "the flattened layer list skips maps at the latent's resolution (64 x 64) vs keeps them",
    ),
}
"""``field -> (faithful value, clean value, what it is)`` for every quirk of the reference code."""


@dataclass(frozen=True)
class PromptPreset:
    """Every setting of the prompt-optimisation method, as data.

    Attributes:
        name: the preset's name.
        model: hub id, local folder, ``"toy"`` or ``"tiny"``.
        image_size: side in pixels images are resized to (aspect ratio not kept).
        timestep: scheduler index the latent is noised to during optimisation.
        inference_timestep: the index at inference; ``None``: ``timestep`` (clean).
        noise: ``"uniform"`` (Hedlin) or ``"gaussian"``.
        heads: ``"upper_half"`` (Hedlin), ``"all"``, or explicit head indices.
        pixel_softmax: ``"per_layer"`` (Hedlin) or ``"none"``.
        exclude_full_resolution: how integer ``layers`` index the flattened list.
        layers: cross-attention names, or indices into Hedlin's flattened list.
        token_index: the context token whose map is optimised and read.
        context: ``"full"`` (all ``T`` vectors learnt, Hedlin) or ``"tokens"``.
        n_tokens: learnt vectors in ``"tokens"`` mode, at ``token_index ..``.
        prompt: the text whose embedding fixes the other vectors in ``"tokens"`` mode.
        n_embeddings: independent embeddings per keypoint (Hedlin's ``num_opt_iterations``).
        steps: Adam steps.
        lr: Adam's learning rate.
        sigma: the target Gaussian's standard deviation, pixels of the ``image_size`` frame.
        crop_fraction: crop side over image side.
        crop_margin: least distance of the point from the crop border, fraction of the crop.
        inference_crops: crops of the target image at inference.
        map_size: side the maps are upsampled to in the loss (``None``: ``image_size``).
        seed: seed of initial embeddings, crops and noise.
        source: the paper and code followed.
        note: what differs from it, or how values were chosen.
    """

    name: str
    model: str
    image_size: int = 512
    timestep: int = 140
    inference_timestep: int | None = 40
    noise: str = "uniform"
    heads: str | tuple[int, ...] = "upper_half"
    pixel_softmax: str = "per_layer"
    exclude_full_resolution: bool = True
    layers: tuple[int | str, ...] = (5, 6, 7, 8)
    token_index: int = 1
    context: str = "full"
    n_tokens: int = 1
    prompt: str = ""
    n_embeddings: int = 5
    steps: int = 129
    lr: float = 0.0023755632081200314
    sigma: float = 27.97853316316864
    crop_fraction: float = 0.9316549294381423
    crop_margin: float = 0.15
    inference_crops: int = 20
    map_size: int | None = None
    seed: int = 0
    source: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        problems = []
        if self.noise not in NOISE_KINDS:
            problems.append(f"noise must be one of {NOISE_KINDS}")
        if self.pixel_softmax not in PIXEL_SOFTMAX:
            problems.append(f"pixel_softmax must be one of {PIXEL_SOFTMAX}")
        if self.context not in CONTEXT_MODES:
            problems.append(f"context must be one of {CONTEXT_MODES}")
        if isinstance(self.heads, str) and self.heads not in HEAD_CHOICES:
            problems.append(f"heads must be one of {HEAD_CHOICES} or indices")
        if not 0 < self.crop_fraction <= 1 or not 0 <= self.crop_margin < 0.5:
            problems.append("crop_fraction must lie in (0, 1] and crop_margin in [0, 0.5)")
        if min(self.n_embeddings, self.steps + 1, self.inference_crops, self.n_tokens) < 1:
            problems.append("n_embeddings, inference_crops and n_tokens must be >= 1")
        if not self.layers:
            problems.append("layers must name at least one cross-attention map")
        if problems:
            raise ValueError(f"prompt preset {self.name!r}: " + "; ".join(problems))

    @property
    def inference_t(self) -> int:
        """The timestep used at inference (``timestep`` when ``inference_timestep`` is None)."""
        return self.timestep if self.inference_timestep is None else self.inference_timestep

    @property
    def map_side(self) -> int:
        """Side of the maps in the loss (``map_size`` or ``image_size``)."""
        return self.map_size or self.image_size

    def with_(self, **changes: object) -> PromptPreset:
        """A copy with some fields changed.

        Args:
            **changes: new field values (``steps=40``, ``noise="gaussian"``, ...).

        Returns:
            The new preset.
        """
        return replace(self, **changes)

    def clean(self, *quirks: str) -> PromptPreset:
        """A copy with quirks set to their clean values (:data:`QUIRKS`).

        Args:
            *quirks: the quirk fields to clean; none given: all of them. Cleaning
                ``exclude_full_resolution`` renumbers integer ``layers``.

        Returns:
            The new preset, named ``"<name>+clean"`` (or ``"+clean:<fields>"``).

        Raises:
            KeyError: an unknown quirk name.
        """
        chosen = quirks or tuple(QUIRKS)
        for quirk in chosen:
            if quirk not in QUIRKS:
                raise KeyError(f"unknown quirk {quirk!r}; known: {', '.join(QUIRKS)}")
        suffix = "+clean" if not quirks else "+clean:" + ",".join(chosen)
        return replace(self, name=self.name + suffix, **{q: QUIRKS[q][1] for q in chosen})


def ddim_timesteps(
    num_inference_steps: int = 50, num_train_timesteps: int = 1000, steps_offset: int = 0
) -> list[int]:
    """The timesteps of a DDIM schedule with "leading" spacing (diffusers' default).

    Hedlin et al. build ``DDIMScheduler(..., set_alpha_to_one=False)`` with the default
    ``steps_offset=0`` and call ``set_timesteps(50)``: 980, 960, ..., 20, 0.

    Args:
        num_inference_steps: steps of the schedule.
        num_train_timesteps: T of the forward process.
        steps_offset: added to every timestep (SD's own scheduler config uses 1).

    Returns:
        Timesteps from the noisiest to the cleanest.
    """
    ratio = num_train_timesteps // num_inference_steps
    return [i * ratio + steps_offset for i in reversed(range(num_inference_steps))]


def equivalent_timestep(
    timestep: int, from_alphas_cumprod: torch.Tensor, to_alphas_cumprod: torch.Tensor
) -> int:
    """The timestep of another noise schedule with the closest signal level ``alpha_bar``.

    Used to carry SD's timesteps to a model trained with other betas (the toy model):
    equal ``alpha_bar_t`` means the same mix of signal and noise in ``add_noise``.

    Args:
        timestep: index into ``from_alphas_cumprod``.
        from_alphas_cumprod: ``(T,)`` cumulative alphas of the schedule ``timestep`` is in.
        to_alphas_cumprod: ``(T',)`` those of the target schedule.

    Returns:
        ``argmin_t' |to[t'] - from[timestep]|``.
    """
    level = float(from_alphas_cumprod[timestep])
    return int((to_alphas_cumprod.double() - level).abs().argmin())


PROMPT_PRESETS: dict[str, PromptPreset] = {
    "hedlin": PromptPreset(
        name="hedlin",
        model="CompVis/stable-diffusion-v1-4",
        source="Hedlin et al. 2023; ubc-vision/LDM_correspondences: eval/eval.py defaults, "
        "utils/optimize_token.py, utils/optimize.py",
        note="SD 1.4 at 512 px, VAE mean; t = 140 (timesteps[-8]) to optimise, 40 "
        "(timesteps[-3]) at inference; layers 5-8 of the flattened list (up1.attn0-2.cross "
        "at 16 px, up2.attn0.cross at 32 px); every quirk faithful; seeded here, unseeded there",
    ),
    "toy": PromptPreset(
        name="toy",
        model="toy",
        image_size=64,
        timestep=126,
        inference_timestep=57,
        layers=("up1.attn0.cross", "up1.attn1.cross", "up1.attn2.cross"),
        n_embeddings=3,
        steps=40,
        lr=0.1,
        sigma=27.97853316316864 * 64 / 512,
        inference_crops=8,
        source="hedlin, scaled to the offline toy model (pixel space, 64 px)",
        note="sigma scaled by 64 / 512 (3.50 px); t = 126 and 57 have the alpha_bar of SD's "
        "140 and 40 under the toy's linear betas (equivalent_timestep); layers: the toy "
        "decoder's cross-attention, all at 16 px (latent / 4, as Hedlin's 16 px layers; the "
        "toy has no 32 px cross-attention); fewer steps (40), embeddings (3) and inference "
        "crops (8); lr 0.1, chosen on 4 validation toy pairs (source peak within sigma: 18 of "
        "18 keypoints at lr 0.1, 6 of 18 at 0.02); quirks faithful",
    ),
}
"""The named presets (``hedlin``: the paper; ``toy``: the offline model)."""


def get_prompt_preset(name: str | PromptPreset) -> PromptPreset:
    """A preset by name (a preset is returned as it is).

    Args:
        name: a key of :data:`PROMPT_PRESETS` (``"hedlin+clean"`` cleans every quirk), or a
            :class:`PromptPreset`.

    Returns:
        The preset.

    Raises:
        KeyError: an unknown name; the message lists the known ones.
    """
    if isinstance(name, PromptPreset):
        return name
    base, _, clean = name.partition("+")
    if base not in PROMPT_PRESETS or clean not in ("", "clean"):
        raise KeyError(f"unknown prompt preset {name!r}; known: {', '.join(PROMPT_PRESETS)}")
    preset = PROMPT_PRESETS[base]
    return preset.clean() if clean else preset


def prompt_preset_table() -> pd.DataFrame:
    """:data:`PROMPT_PRESETS` as a table, one row per preset.

    Returns:
        Columns are the :class:`PromptPreset` fields.
    """
    return pd.DataFrame([asdict(p) for p in PROMPT_PRESETS.values()]).set_index("name")


def quirk_table(preset: str | PromptPreset = "hedlin") -> pd.DataFrame:
    """The quirks with their faithful value, clean value and the preset's value.

    Args:
        preset: a preset or its name.

    Returns:
        Indexed by field: ``faithful``, ``clean``, ``preset`` (as strings) and ``what``.
    """
    preset = get_prompt_preset(preset)
    rows = [
        {
            "field": key,
            "faithful": str(faithful),
            "clean": str(clean),
            "preset": str(getattr(preset, key)),
            "what": what,
        }
        for key, (faithful, clean, what) in QUIRKS.items()
    ]
    return pd.DataFrame(rows).set_index("field")


# --------------------------------------------------------------------------- crops and targets


def crop_box(
    point: Sequence[float],
    size: int,
    fraction: float,
    margin: float,
    generator: torch.Generator | None = None,
) -> tuple[int, int, int]:
    """A random square crop that keeps ``point`` away from its border (Hedlin's ``crop_image``).

    The side is ``int(size * fraction)``; the top-left corner is drawn uniformly (``torch.
    randint``, x first) among the integer corners that keep the point at least
    ``int(side * margin)`` pixels inside, clamped to the image.

    Args:
        point: ``(x, y)`` in pixels of the ``size`` frame (may lie on the border or beyond).
        size: the square image's side.
        fraction: crop side over image side.
        margin: least distance from the crop's border, as a fraction of the crop side.
        generator: the random stream.

    Returns:
        ``(x0, y0, side)``: the crop is ``[y0:y0 + side, x0:x0 + side]``.
    """
    side = int(size * fraction)
    safe = int(side * margin)

    def start(c: float) -> int:
        low = min(max(0, c - side + safe), size - side)
        high = min(max(0, c - safe), size - side)
        return int(torch.randint(int(low), int(high) + 1, (1,), generator=generator))

    x0 = start(float(point[0]))
    y0 = start(float(point[1]))
    return x0, y0, side


def crop_resize(
    pixels: torch.Tensor, boxes: Sequence[tuple[int, int, int]], size: int
) -> torch.Tensor:
    """Crop each box of one image and resize it back (bilinear, ``align_corners=False``).

    Args:
        pixels: ``(1, C, S, S)`` or ``(B, C, S, S)`` image(s); one image serves every box.
        boxes: ``(x0, y0, side)`` per output row.
        size: the output side.

    Returns:
        ``(len(boxes), C, size, size)`` on ``pixels``' device and dtype.
    """
    rows = []
    for i, (x0, y0, side) in enumerate(boxes):
        image = pixels[i if pixels.shape[0] > 1 else 0]
        crop = image[None, :, y0 : y0 + side, x0 : x0 + side]
        rows.append(F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False))
    return torch.cat(rows)


def gaussian_target(centres: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Unnormalised Gaussians (peak 1) on a pixel grid (Hedlin's ``gaussian_circle``).

    Pixel ``(i, j)`` (row, column) gets ``exp(-((j - x)^2 + (i - y)^2) / (2 sigma^2))``.

    Args:
        centres: ``(B, 2)`` x/y in grid pixels.
        size: the grid side.
        sigma: standard deviation in grid pixels.

    Returns:
        ``(B, size, size)`` float32 on ``centres``' device.
    """
    grid = torch.arange(size, dtype=torch.float32, device=centres.device)
    dx = (grid[None, None, :] - centres[:, 0, None, None].float()) ** 2
    dy = (grid[None, :, None] - centres[:, 1, None, None].float()) ** 2
    return torch.exp(-(dx + dy) / (2.0 * sigma**2))


def memory_in_use(device: torch.device | str) -> int | None:
    """Bytes in use now: CUDA's allocated memory, or this process's resident set on Linux.

    Args:
        device: the device the model runs on.

    Returns:
        Bytes, or ``None`` where it cannot be read.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- the model side


class PromptModel:
    """A backbone seen as the method needs it: images to latents to token attention maps.

    Args:
        backbone: a frozen backbone (:func:`~difflens.models.backbone.load_backbone`).
        preset: the method's settings.

    Attributes:
        backbone: as given.
        preset: as given.
        cross: the U-Net's :class:`~difflens.features.attention.CrossAttentionRegistry`.
        layers: the chosen cross-attention names.

    Raises:
        ValueError: the U-Net's weights require gradients (they must stay frozen), or
            ``image_size`` is not a multiple of the model's downsampling.
    """

    def __init__(self, backbone: Backbone, preset: PromptPreset):
        unet = backbone.base_unet
        if any(p.requires_grad for p in unet.parameters()):
            raise ValueError("the U-Net's weights require gradients; freeze them first")
        levels = len(unet.config.block_out_channels) - 1
        if preset.image_size % (backbone.latent_scale * 2**levels):
            raise ValueError(f"image_size {preset.image_size} does not fit the model")
        self.backbone = backbone
        self.preset = preset
        self.cross = CrossAttentionRegistry.of(unet, backbone.latent_scale)
        self.layers = self.cross.resolve(preset.layers, preset.exclude_full_resolution)
        self.prompts = PromptCache(
            backbone.tokenizer, backbone.text_encoder, unet.config.cross_attention_dim
        )

    @property
    def size(self) -> int:
        """The image side in pixels."""
        return self.preset.image_size

    def to_frame(self, points: np.ndarray, image_shape: Sequence[int]) -> torch.Tensor:
        """Points of an original image in the ``image_size`` frame (``x * S / W``, ``y * S / H``).

        Args:
            points: ``(N, 2)`` x/y in original pixels.
            image_shape: the original image's shape ``(H, W, ...)``.

        Returns:
            ``(N, 2)`` float64 CPU tensor.
        """
        h, w = image_shape[0], image_shape[1]
        scale = torch.tensor([self.size / w, self.size / h], dtype=torch.float64)
        return torch.as_tensor(np.asarray(points, dtype=np.float64)).reshape(-1, 2) * scale

    def pixels(self, image: np.ndarray) -> torch.Tensor:
        """One image resized to ``image_size`` (PIL bilinear), in [-1, 1].

        Args:
            image: ``(H, W, 3)`` uint8 RGB.

        Returns:
            ``(1, 3, S, S)`` on the backbone's device, float32.
        """
        return images_to_tensor([image], self.size).to(self.backbone.device)

    @torch.no_grad()
    def latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """VAE posterior mean x ``scaling_factor`` (the pixels for a pixel-space model).

        Args:
            pixels: ``(B, 3, S, S)`` in [-1, 1].

        Returns:
            ``(B, C, s, s)`` on the backbone's device and dtype.
        """
        backbone = self.backbone
        pixels = pixels.to(backbone.device, backbone.dtype)
        if backbone.vae is None:
            return pixels
        return backbone.vae.encode(pixels).latent_dist.mean * backbone.scaling_factor

    def noised(
        self, latents: torch.Tensor, timestep: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        """``scheduler.add_noise`` with the preset's noise kind (drawn on the CPU, float32).

        Args:
            latents: ``(B, C, s, s)`` clean latents.
            timestep: scheduler index.
            generator: the random stream of the noise.

        Returns:
            Noised latents, on ``latents``' device and dtype.
        """
        clean = latents.float().cpu()
        draw = torch.rand if self.preset.noise == "uniform" else torch.randn
        noise = draw(clean.shape, generator=generator)
        t = torch.full((clean.shape[0],), int(timestep), dtype=torch.long)
        noisy = self.backbone.scheduler.add_noise(clean, noise, t)
        return noisy.to(device=latents.device, dtype=latents.dtype)

    def maps(
        self,
        latents: torch.Tensor,
        timestep: int,
        context: torch.Tensor,
        grad: bool = False,
        size: int | None = None,
    ) -> torch.Tensor:
        """Token ``token_index``'s map in each chosen layer, mean over the chosen heads.

        One U-Net pass, stopped after the deepest chosen layer.

        Args:
            latents: ``(B, C, s, s)`` noised latents.
            timestep: scheduler index.
            context: ``(B, T, D)`` ``encoder_hidden_states``.
            grad: keep the graph (gradients reach ``context``); else no graph is built.
            size: upsample every map to ``size`` (bilinear); ``None``: the maps as they are,
                which needs all layers at one resolution.

        Returns:
            ``(B, L, size, size)``, float32 or wider (``(B, L, h, w)`` with ``size=None``).
        """
        preset = self.preset
        t = torch.full((latents.shape[0],), int(timestep), device=latents.device)
        with (
            torch.set_grad_enabled(grad),
            record_cross_attention(
                self.cross,
                self.layers,
                heads=preset.heads,
                tokens=preset.token_index,
                keep_graph=grad,
                stop_early=True,
            ) as record,
        ):
            run_recorded(self.backbone.unet, latents, t, context.to(latents.dtype))
            record.check(self.layers)
            maps = []
            for name in self.layers:
                m = record[name][:, :, 0]  # (B, heads, h, w)
                m = m.to(torch.promote_types(m.dtype, torch.float32)).mean(1, keepdim=True)
                if size is not None and m.shape[-2:] != (size, size):
                    m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)
                maps.append(m)
        return torch.cat(maps, dim=1)

    def base_context(self) -> torch.Tensor:
        """The prompt's text embedding that fixes the non-learnt vectors.

        Returns:
            ``(1, T, D)`` on the backbone's device (T = 77 with a CLIP tokenizer).
        """
        return self.prompts.embedding(self.preset.prompt, self.backbone.device, torch.float32)


class EmbeddingParameters:
    """The learnt vectors of ``rows`` independent embeddings and the contexts they make.

    ``context="full"``: a ``(rows, T, D)`` parameter drawn from ``randn`` (Hedlin's
    ``init_random_noise``) is the whole context. ``context="tokens"``: a ``(rows, n, D)``
    parameter (``randn``) replaces positions ``token_index .. token_index + n - 1`` of the
    prompt's fixed text embedding.

    Args:
        rows: independent embeddings.
        model: the :class:`PromptModel` (preset and base context).
        generator: the random stream of the initial values.

    Attributes:
        parameter: the learnt tensor (``requires_grad``), float32 on the backbone's device.
        base: the fixed ``(1, T, D)`` context (``"tokens"`` mode).
        start: first replaced position (``"tokens"`` mode).

    Raises:
        ValueError: the learnt positions run past the context's length.
    """

    def __init__(self, rows: int, model: PromptModel, generator: torch.Generator | None):
        preset = model.preset
        self.base = model.base_context().detach()
        tokens, width = self.base.shape[1], self.base.shape[2]
        tokens = max(tokens, 77) if preset.context == "full" else tokens
        self.mode = preset.context
        self.start = preset.token_index
        n = tokens if self.mode == "full" else preset.n_tokens
        if self.mode == "tokens" and self.start + n > tokens:
            raise ValueError(f"tokens {self.start}..{self.start + n - 1} exceed {tokens}")
        if not 0 <= preset.token_index < tokens:
            raise ValueError(f"token_index {preset.token_index} outside the {tokens} tokens")
        init = torch.randn(rows, n, width, generator=generator)
        self.parameter = init.to(model.backbone.device).requires_grad_(True)

    def context(self) -> torch.Tensor:
        """The contexts built from the current values.

        Returns:
            ``(rows, T, D)``, differentiable with respect to :attr:`parameter`.
        """
        if self.mode == "full":
            return self.parameter
        rows = self.parameter.shape[0]
        base = self.base.expand(rows, -1, -1)
        stop = self.start + self.parameter.shape[1]
        return torch.cat([base[:, : self.start], self.parameter, base[:, stop:]], dim=1)


@dataclass
class OptimisedEmbeddings:
    """The result of :func:`optimise_embeddings` for the points of one image.

    Attributes:
        contexts: ``(N, k, T, D)`` optimised contexts, detached, float32.
        initial: ``(N, k, T, D)`` the contexts before the first step.
        points: ``(N, 2)`` the points in the ``image_size`` frame.
        losses: ``(steps, N, k)`` each row's loss at each step (before its update).
        seconds: wall time of the optimisation.
        memory: bytes in use after each step (:func:`memory_in_use`), if tracked.
        preset: the preset's name.
    """

    contexts: torch.Tensor
    initial: torch.Tensor
    points: torch.Tensor
    losses: np.ndarray
    seconds: float
    memory: list[int | None] = field(default_factory=list)
    preset: str = ""


def _step(
    model: PromptModel,
    params: EmbeddingParameters,
    pixels: torch.Tensor,
    points: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """One forward/backward of every row: random crops, noise, maps, loss; returns row losses."""
    preset, size, side = model.preset, model.size, model.preset.map_side
    k = preset.n_embeddings
    rows = [points[r // k].tolist() for r in range(params.parameter.shape[0])]
    boxes = [crop_box(p, size, preset.crop_fraction, preset.crop_margin, generator) for p in rows]
    latents = model.latents(crop_resize(pixels, boxes, size))
    noisy = model.noised(latents, preset.timestep, generator)
    maps = model.maps(noisy, preset.timestep, params.context(), grad=True, size=side)
    centres = torch.tensor(
        [[(x - x0) * side / s, (y - y0) * side / s] for (x, y), (x0, y0, s) in zip(rows, boxes)],
        device=maps.device,
    )
    target = gaussian_target(centres, side, preset.sigma * side / size)
    row_loss = ((maps - target[:, None]) ** 2).mean(dim=(1, 2, 3))
    row_loss.sum().backward()
    return row_loss.detach()


def optimise_embeddings(
    model: PromptModel,
    image: np.ndarray,
    points: np.ndarray,
    *,
    seed: int | None = None,
    track_memory: bool = False,
) -> OptimisedEmbeddings:
    """Learn ``n_embeddings`` embeddings per point whose token map peaks at the point.

    All ``N x k`` rows share every U-Net pass (one pass per step); see the module docstring
    for a step. The U-Net's weights stay frozen (checked by :class:`PromptModel`) and never
    receive a gradient; only the embeddings do.

    Args:
        model: the :class:`PromptModel` (backbone and preset).
        image: ``(H, W, 3)`` uint8 RGB source image.
        points: ``(N, 2)`` x/y of the keypoints in original pixels.
        seed: seed of initial values, crops and noise (default: the preset's).
        track_memory: record :func:`memory_in_use` after every step.

    Returns:
        The :class:`OptimisedEmbeddings`.
    """
    preset = model.preset
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(preset.seed if seed is None else seed)
    pts = model.to_frame(points, image.shape)
    params = EmbeddingParameters(len(pts) * preset.n_embeddings, model, generator)
    initial = params.context().detach().clone()
    optimiser = torch.optim.Adam([params.parameter], lr=preset.lr)
    pixels = model.pixels(image)
    losses, memory = [], []
    for _ in range(preset.steps):
        optimiser.zero_grad(set_to_none=True)
        losses.append(_step(model, params, pixels, pts, generator).cpu().numpy())
        optimiser.step()
        if track_memory:
            memory.append(memory_in_use(model.backbone.device))
    shape = (len(pts), preset.n_embeddings, *initial.shape[1:])
    return OptimisedEmbeddings(
        contexts=params.context().detach().float().reshape(shape),
        initial=initial.float().reshape(shape),
        points=pts,
        losses=np.stack(losses).reshape(-1, len(pts), preset.n_embeddings)
        if losses
        else np.zeros((0, len(pts), preset.n_embeddings)),
        seconds=time.perf_counter() - start,
        memory=memory,
        preset=preset.name,
    )
