"""Train the toy models: small pixel-space diffusion U-Nets on toy-world scenes.

Random weights carry no semantics, so the offline default needs models that were actually
trained. Both are diffusers ``UNet2DConditionModel`` s trained from scratch with diffusers'
``DDPMScheduler`` and the standard noise-prediction (epsilon) MSE loss of DDPM (Ho et al.
2020), optionally Min-SNR weighted (Hang et al. 2023), on toy-world scenes of the ``train``
split (:func:`difflens.data.toy.make_toy_example`: class = shape; colour, texture, size
and position independent of class), in pixel space: there is no VAE, so the backbone's
``vae`` is ``None`` and its ``latent_scale`` is 1. Two recipes (:data:`PRESETS`):

``control``
    the positive control (``load_backbone("toy")``): the denoising loss plus auxiliary
    dense class and PART segmentation losses read from U-Net layers by linear heads
    (:mod:`difflens.models.toy_heads`), which are discarded after training. It holds shape
    and parts because it was made to; it shows that the suite finds semantics a network
    holds, not that denoising creates them.
``denoiser``
    the same U-Net, data and schedule with the denoising loss alone
    (``load_backbone("toy-denoiser")``).

Text conditioning works as in SD, with the text encoder trained jointly (as in LDM's
class-conditional models) by default: a tiny CLIP text model over a character tokenizer
embeds a caption that lists the shapes in the scene ("arrow, key"), replaced by the empty
prompt for a fraction ``uncond_prob`` of the examples, so the U-Net also learns the
unconditional task that feature extraction uses.

Every random draw of step ``s`` (scene seeds, timesteps, noise, caption dropout) is a
function of the seed and ``s`` alone (:func:`training_batch`), so a run interrupted and
resumed from its checkpoint follows the same path as an uninterrupted one.

:func:`train` is a loop of :func:`train_step` (loss from :func:`step_loss`, backward,
clipping, AdamW, schedule) with :func:`record_validation` and :func:`save_checkpoint` every
``checkpoint_every`` steps; :func:`model_card` describes a finished run. Exporting the model
folder is the command line's job (:mod:`difflens.runner.toy_model`).
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

from difflens.data.images import images_to_tensor
from difflens.data.toy import TOY_CLASSES, dense_targets, locate_seed, make_toy_example
from difflens.models.backbone import Backbone, assemble_backbone
from difflens.models.text import character_text_config, write_character_tokenizer
from difflens.models.toy import (
    TOY_IMAGE_SIZE,
    TOY_VERSION,
    TRAIN_SEED_START,
    VALIDATION_LOSS_SEED_START,
    VALIDATION_SEED_START,
)
from difflens.models.toy_heads import AuxHeads, aux_loss, capture_outputs
from difflens.models.wrappers import unwrap_module


@dataclass(frozen=True)
class ToyTrainConfig:
    """Everything that determines a training run (written into the checkpoint and the card).

    Attributes:
        steps: optimisation steps in all.
        batch_size: scenes per step.
        learning_rate: AdamW's peak learning rate.
        warmup_steps: linear warm-up steps of the schedule.
        min_lr_fraction: the cosine decay ends at this fraction of the peak rate.
        grad_clip: largest gradient norm (``clip_grad_norm_``).
        uncond_prob: probability that a caption is replaced by the empty prompt.
        snr_gamma: Min-SNR weighting's gamma; ``None`` for the plain mean.
        timestep_sampling: ``"uniform"`` over 0..T-1 or ``"lognormal"`` noise levels.
        max_timestep: uniform sampling draws from ``0 .. max_timestep - 1`` only (``None``:
            all T).
        lognormal_mean: mean of ``log sigma`` for ``"lognormal"``.
        lognormal_std: standard deviation of ``log sigma`` for ``"lognormal"``.
        image_size: side in pixels of the training images.
        render_sizes: sides a scene is rendered at before resizing (chosen by seed).
        n_objects: fewest and most objects per scene (before hidden ones are dropped).
        single_class_fraction: fraction of scenes whose objects all share one class.
        channels: channels of each U-Net stage.
        layers_per_block: (ResNet[, Transformer]) layers of each stage.
        attention: which stages have Transformer (cross-attention) layers.
        class_heads: U-Net layers read by a class-segmentation head (none: no such loss).
        part_heads: U-Net layers read by a part-segmentation head.
        aux_weight: weight of the auxiliary (head) loss next to the denoising loss; 0
            trains a pure denoiser.
        head_kind: the heads' read-out, ``"linear"`` or ``"cosine"``
            (:class:`~difflens.models.toy_heads.AuxHeads`).
        head_temperature: the cosine heads' logit scale.
        aux_uncond_only: the auxiliary loss counts only the examples whose caption was
            dropped, so the heads cannot read the class off the caption (through
            cross-attention) and must find it in the pixels.
        init_from: the preset whose finished run initialises this one's U-Net and text
            encoder (its checkpoint in the sibling folder ``<work_dir>/../<init_from>``;
            heads, optimiser and schedule start afresh); ``None`` starts from random weights.
        first_scene: train-split offset of the first training scene (a later stage
            continues where the earlier one's scenes ended).
        train_text_encoder: train the text encoder jointly (else it stays random, frozen).
        bf16: run the U-Net under bfloat16 autocast (weights and optimiser stay float32).
        seed: seed of the weights and of every per-step draw.
        checkpoint_every: steps between checkpoints (and validation losses).
        validation_images: scenes in the fixed validation batch.
    """

    steps: int = 3000
    batch_size: int = 16
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    min_lr_fraction: float = 0.1
    grad_clip: float = 1.0
    uncond_prob: float = 0.3
    snr_gamma: float | None = 5.0
    timestep_sampling: str = "uniform"
    max_timestep: int | None = None
    lognormal_mean: float = -1.2
    lognormal_std: float = 1.2
    image_size: int = TOY_IMAGE_SIZE
    render_sizes: tuple[int, ...] = (64, 128)
    n_objects: tuple[int, int] = (1, 4)
    single_class_fraction: float = 0.5
    channels: tuple[int, ...] = (16, 32, 64, 96)
    layers_per_block: tuple[int, ...] = (1, 1, 2, 1)
    attention: tuple[bool, ...] = (False, False, True, False)
    class_heads: tuple[str, ...] = ("down2.attn1", "mid", "up1.attn2")
    part_heads: tuple[str, ...] = ("up1.attn2", "up2.res1")
    aux_weight: float = 0.1
    head_kind: str = "linear"
    head_temperature: float = 10.0
    aux_uncond_only: bool = False
    init_from: str | None = None
    first_scene: int = 0
    train_text_encoder: bool = True
    bf16: bool = True
    seed: int = 0
    checkpoint_every: int = 100
    validation_images: int = 64

    @classmethod
    def from_dict(cls, values: dict) -> ToyTrainConfig:
        """The config stored in a checkpoint or a training log (lists become tuples).

        Args:
            values: field -> value; unknown keys are ignored.

        Returns:
            The config.
        """
        known = {f.name for f in fields(cls)}
        clean = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()}
        return cls(**{k: v for k, v in clean.items() if k in known})

    @property
    def has_heads(self) -> bool:
        """Whether the run trains auxiliary heads (a positive control, not a pure denoiser)."""
        return self.aux_weight > 0 and bool(self.class_heads or self.part_heads)


_HEADS_ON_CLEAN_SCENES = {
    "warmup_steps": 50,
    "uncond_prob": 0.8,
    "max_timestep": 500,
    "aux_weight": 1.0,
    "head_kind": "cosine",
    "aux_uncond_only": True,
}
"""The positive control's later stages: cosine heads at weight 1 on caption-free examples,
timesteps below 500, captions dropped 80 % of the time (each stage on new scenes)."""

PRESETS: dict[str, ToyTrainConfig] = {
    "control-stage1": ToyTrainConfig(steps=1000),
    "control-stage2": ToyTrainConfig(
        steps=1500, init_from="control-stage1", first_scene=16_000, **_HEADS_ON_CLEAN_SCENES
    ),
    "control-stage3": ToyTrainConfig(
        steps=1000, init_from="control-stage2", first_scene=40_000, **_HEADS_ON_CLEAN_SCENES
    ),
    "control": ToyTrainConfig(
        steps=1000, init_from="control-stage3", first_scene=56_000, **_HEADS_ON_CLEAN_SCENES
    ),
    "denoiser": ToyTrainConfig(
        steps=1000, uncond_prob=0.5, aux_weight=0.0, class_heads=(), part_heads=()
    ),
}
"""The committed models' recipes. ``control`` (``"toy"``) is the fourth stage of a recipe:
``control-stage1`` trains the denoising loss with linear heads at weight 0.1;
``control-stage2`` goes on with cosine heads at weight 1 on the examples without a caption
only (captions dropped 80 % of the time) and timesteps below 500, where a clean scene still
shows; ``control-stage3`` and ``control`` continue that (heads kept), each on new scenes with
a fresh schedule. ``denoiser``
(``"toy-denoiser"``) is ``control-stage1`` without heads and with captions dropped half of
the time."""


def unet_config(
    image_size: int = TOY_IMAGE_SIZE,
    channels: tuple[int, ...] = (16, 32, 64, 96),
    layers_per_block: tuple[int, ...] = (1, 1, 2, 1),
    attention: tuple[bool, ...] = (False, False, True, False),
) -> dict:
    """The toy U-Net: one stage per entry of ``channels``, halving the resolution each time.

    ``attention[k]`` gives stage ``k`` (and its mirror in the decoder) ResNet+Transformer
    layers as SD's cross-attention blocks have; the others are plain ResNet stages. The mid
    block always has one transformer, as in SD.

    Args:
        image_size: the sample size in pixels (3 input and output channels, no VAE).
        channels: channels of each stage.
        layers_per_block: layers of each stage.
        attention: whether each stage has Transformer layers.

    Returns:
        Keyword arguments of diffusers' ``UNet2DConditionModel``.

    Raises:
        ValueError: the three sequences differ in length.
    """
    if not len(channels) == len(layers_per_block) == len(attention):
        raise ValueError("channels, layers_per_block and attention need one entry per stage")
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
    return dict(
        sample_size=image_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(channels),
        down_block_types=down,
        up_block_types=up,
        layers_per_block=tuple(layers_per_block),
        cross_attention_dim=64,
        attention_head_dim=1,  # diffusers reads this as the number of heads: one head per layer
        norm_num_groups=8 if min(channels) < 32 else 16,
    )


def scheduler_config() -> dict:
    """DDPM's linear schedule (Ho et al. 2020), the usual one for pixel-space models.

    Returns:
        Keyword arguments of diffusers' ``DDPMScheduler``: T = 1000 steps, linear betas
        1e-4 .. 0.02, epsilon prediction, samples clipped to [-1, 1].
    """
    return dict(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        prediction_type="epsilon",
        clip_sample=True,
        clip_sample_range=1.0,
    )


def build_unet(config: ToyTrainConfig) -> UNet2DConditionModel:
    """The toy U-Net with diffusers' default initialisation, seeded.

    Args:
        config: the architecture fields and ``seed`` (``torch.manual_seed``) are used.

    Returns:
        A float32 CPU ``UNet2DConditionModel`` (:func:`unet_config`).
    """
    from diffusers import UNet2DConditionModel

    torch.manual_seed(config.seed)
    return UNet2DConditionModel(
        **unet_config(config.image_size, config.channels, config.layers_per_block, config.attention)
    )


def build_text_side(folder: Path, seed: int) -> tuple[CLIPTokenizer, CLIPTextModel]:
    """Write the character tokenizer to ``folder`` and return it with a seeded text encoder.

    Args:
        folder: where the tokenizer is saved (and read back from).
        seed: the run's seed; the text encoder is built after ``torch.manual_seed(seed + 1)``.

    Returns:
        The CLIP tokenizer and the tiny ``CLIPTextModel`` (width 64), frozen and in eval
        mode (training unfreezes it when it is trained jointly).
    """
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    write_character_tokenizer(folder)
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    torch.manual_seed(seed + 1)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(**character_text_config(tokenizer.model_max_length))
    )
    return tokenizer, text_encoder.eval().requires_grad_(False)


class TextSide:
    """The tokenizer and text encoder of a run, with token ids cached per prompt.

    Args:
        tokenizer: the character CLIP tokenizer.
        text_encoder: the tiny CLIP text model (trained or frozen).
    """

    def __init__(self, tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel):
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self._ids: dict[str, torch.Tensor] = {}

    def ids(self, prompts: Iterable[str]) -> torch.Tensor:
        """Token ids of prompts, padded to the tokenizer's length.

        Args:
            prompts: the prompts.

        Returns:
            ``(N, 77)`` long tensor.
        """
        rows = []
        for prompt in prompts:
            if prompt not in self._ids:
                self._ids[prompt] = self.tokenizer(
                    prompt,
                    padding="max_length",
                    max_length=self.tokenizer.model_max_length,
                    truncation=True,
                    return_tensors="pt",
                ).input_ids[0]
            rows.append(self._ids[prompt])
        return torch.stack(rows)

    def __call__(self, prompts: Iterable[str]) -> torch.Tensor:
        """The text encoder's last hidden states (with a gradient when it is trained).

        Args:
            prompts: the prompts.

        Returns:
            ``(N, 77, 64)`` float32 embeddings.
        """
        return self.text_encoder(self.ids(prompts))[0]


def caption(class_names: Iterable[str]) -> str:
    """The prompt of a scene: its distinct shapes in the order of ``TOY_CLASSES``.

    Args:
        class_names: the classes of the scene's objects (repeats allowed).

    Returns:
        E.g. ``"arrow, key"``; ``""`` for no objects.
    """
    present = set(class_names)
    return ", ".join(name for name in TOY_CLASSES if name in present)


@dataclass
class ToyBatch:
    """Clean training scenes with their dense targets and captions.

    Attributes:
        pixels: ``(B, 3, S, S)`` float32 pixels in [-1, 1].
        class_maps: ``(B, S, S)`` long class ids (0 background).
        part_maps: ``(B, S, S)`` long part ids (0 background).
        captions: one caption per scene.
    """

    pixels: torch.Tensor
    class_maps: torch.Tensor
    part_maps: torch.Tensor
    captions: list[str]


def scene_classes(seed: int, config: ToyTrainConfig) -> tuple[str, ...]:
    """The classes scene ``seed`` draws from: one class for a ``single_class_fraction`` share.

    Args:
        seed: the absolute toy seed.
        config: its ``single_class_fraction`` is used.

    Returns:
        ``TOY_CLASSES`` or a one-class tuple (chosen by the seed alone).
    """
    rng = np.random.default_rng([int(seed), 7])
    if rng.random() < config.single_class_fraction:
        return (TOY_CLASSES[int(rng.integers(len(TOY_CLASSES)))],)
    return TOY_CLASSES


def render_batch(seeds: Iterable[int], config: ToyTrainConfig) -> ToyBatch:
    """The scenes of ``seeds`` as a pixel batch, with their class and part maps and captions.

    A scene is rendered at one of ``config.render_sizes`` (chosen by its seed) and resized
    to ``image_size`` by the same function feature extraction uses, so the model sees both
    native and downscaled renderings; its dense targets are painted from the same layout
    at ``image_size`` (:func:`difflens.data.toy.dense_targets`).

    Args:
        seeds: absolute toy-world seeds (their split is found from the seed).
        config: render sizes, image size, object counts and the single-class fraction.

    Returns:
        The :class:`ToyBatch` (CPU tensors).
    """
    images, class_maps, part_maps, captions = [], [], [], []
    for seed in seeds:
        size = config.render_sizes[int(seed) % len(config.render_sizes)]
        split, offset = locate_seed(int(seed))
        scene, targets = make_toy_example(
            offset, size, tuple(config.n_objects), scene_classes(seed, config), split
        )
        if size != config.image_size:
            targets = dense_targets(scene.meta["layout"], config.image_size)
        images.append(scene.image)
        class_maps.append(targets.class_map)
        part_maps.append(targets.part_map)
        captions.append(caption(scene.class_names))
    return ToyBatch(
        images_to_tensor(images, config.image_size),
        torch.from_numpy(np.stack(class_maps).astype(np.int64)),
        torch.from_numpy(np.stack(part_maps).astype(np.int64)),
        captions,
    )


def step_generator(config: ToyTrainConfig, step: int) -> torch.Generator:
    """The CPU generator of step ``step``'s draws (timesteps, noise, caption dropout).

    Args:
        config: its ``seed`` is used.
        step: the step index.

    Returns:
        A generator seeded with ``seed * 1_000_003 + step``.
    """
    return torch.Generator().manual_seed(config.seed * 1_000_003 + step)


def sample_timesteps(
    config: ToyTrainConfig, n: int, gen: torch.Generator, scheduler: DDPMScheduler
) -> torch.Tensor:
    """Training timesteps: uniform over 0..T-1, or EDM's log-normal noise levels.

    ``"lognormal"`` draws ``log sigma ~ N(lognormal_mean, lognormal_std)`` (Karras et al.
    2022) and takes the DDPM timestep whose ``sigma_t = sqrt((1 - abar_t) / abar_t)`` is the
    first at or above it, so training concentrates on the noise levels where denoising
    is neither trivial nor hopeless.

    Args:
        config: ``timestep_sampling`` and the log-normal parameters.
        n: how many timesteps.
        gen: the step's generator.
        scheduler: the DDPM scheduler (T and ``alphas_cumprod``).

    Returns:
        ``(n,)`` long tensor of scheduler indices 0..T-1.

    Raises:
        ValueError: ``timestep_sampling`` is neither ``"uniform"`` nor ``"lognormal"``.
    """
    total = scheduler.config.num_train_timesteps
    if config.timestep_sampling == "uniform":
        return torch.randint(0, config.max_timestep or total, (n,), generator=gen)
    if config.timestep_sampling == "lognormal":
        abar = scheduler.alphas_cumprod
        sigmas = ((1 - abar) / abar).sqrt()
        log_sigma = torch.randn(n, generator=gen) * config.lognormal_std + config.lognormal_mean
        return torch.searchsorted(sigmas, log_sigma.exp()).clamp(0, total - 1)
    raise ValueError(
        f"timestep_sampling must be 'uniform' or 'lognormal', got {config.timestep_sampling!r}"
    )


@dataclass
class StepInputs:
    """Everything one training step feeds the models.

    Attributes:
        batch: the clean scenes, targets and captions.
        timesteps: ``(B,)`` long scheduler indices 0..T-1.
        noise: ``(B, 3, S, S)`` standard normal noise.
        prompts: the captions after dropout (``""`` for dropped ones).
    """

    batch: ToyBatch
    timesteps: torch.Tensor
    noise: torch.Tensor
    prompts: list[str]


def training_batch(config: ToyTrainConfig, step: int, scheduler: DDPMScheduler) -> StepInputs:
    """The inputs of training step ``step``: a function of the config and the step only.

    Args:
        config: the run's configuration.
        step: the step index; scenes ``TRAIN_SEED_START + first_scene + step * batch_size
            + i``.
        scheduler: the DDPM scheduler.

    Returns:
        The :class:`StepInputs`, all on the CPU.
    """
    start = TRAIN_SEED_START + config.first_scene + step * config.batch_size
    batch = render_batch(range(start, start + config.batch_size), config)
    gen = step_generator(config, step)
    timesteps = sample_timesteps(config, config.batch_size, gen, scheduler)
    noise = torch.randn(batch.pixels.shape, generator=gen)
    drop = torch.rand(config.batch_size, generator=gen) < config.uncond_prob
    prompts = ["" if d else c for d, c in zip(drop.tolist(), batch.captions)]
    return StepInputs(batch, timesteps, noise, prompts)


def predict_noise(
    unet: torch.nn.Module,
    scheduler: DDPMScheduler,
    pixels: torch.Tensor,
    timesteps: torch.Tensor,
    noise: torch.Tensor,
    text: torch.Tensor,
    bf16: bool = False,
) -> torch.Tensor:
    """The U-Net's noise prediction for clean images noised by ``scheduler.add_noise``.

    Args:
        unet: the U-Net.
        scheduler: the DDPM scheduler.
        pixels: ``(B, 3, S, S)`` clean images in [-1, 1].
        timesteps: ``(B,)`` scheduler indices 0..T-1.
        noise: ``(B, 3, S, S)`` the noise to add.
        text: ``(B, tokens, width)`` text embeddings.
        bf16: run the U-Net under CPU bfloat16 autocast.

    Returns:
        ``(B, 3, S, S)`` float32 prediction.
    """
    noisy = scheduler.add_noise(pixels, noise, timesteps)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        prediction = unet(noisy, timesteps, encoder_hidden_states=text, return_dict=False)[0]
    return prediction.float()


def epsilon_loss(
    prediction: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    scheduler: DDPMScheduler,
    snr_gamma: float | None = None,
) -> torch.Tensor:
    """The standard DDPM loss: MSE between the true and the predicted noise.

    With ``snr_gamma`` each example is weighted by ``min(SNR(t), gamma) / SNR(t)``
    (Min-SNR weighting, Hang et al. 2023, as diffusers' training scripts do with
    ``--snr_gamma``): the nearly noise-free steps, which only teach fine detail, count less.

    Args:
        prediction: ``(B, 3, S, S)`` predicted noise.
        noise: ``(B, 3, S, S)`` the true noise.
        timesteps: ``(B,)`` scheduler indices 0..T-1.
        scheduler: the DDPM scheduler (``alphas_cumprod``).
        snr_gamma: Min-SNR gamma, or ``None`` for the plain mean.

    Returns:
        A scalar tensor (with a gradient when the prediction has one).
    """
    if snr_gamma is None:
        return F.mse_loss(prediction, noise)
    per_example = F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3))
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas / (1 - alphas)
    weights = torch.clamp(snr, max=snr_gamma) / snr
    return (weights * per_example).mean()


def validation_batch(config: ToyTrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed batch whose loss tracks training: validation scenes, fixed timesteps and noise.

    Args:
        config: ``validation_images`` and the rendering fields.

    Returns:
        ``(pixels, timesteps, noise)`` for scenes from ``VALIDATION_LOSS_SEED_START`` with
        timesteps spread evenly over 0..999 and noise from a generator seeded 12345 (the
        empty prompt is used).
    """
    n = config.validation_images
    seeds = range(VALIDATION_LOSS_SEED_START, VALIDATION_LOSS_SEED_START + n)
    pixels = render_batch(seeds, config).pixels
    gen = torch.Generator().manual_seed(12345)
    timesteps = torch.linspace(0, 999, n).round().long()
    noise = torch.randn(pixels.shape, generator=gen)
    return pixels, timesteps, noise


@torch.no_grad()
def validation_loss(
    unet: torch.nn.Module,
    text: TextSide,
    scheduler: DDPMScheduler,
    batch: tuple,
    chunk: int = 32,
) -> float:
    """The unweighted epsilon loss of a fixed batch (empty prompt), float32, no gradients.

    Args:
        unet: the U-Net (set back to train mode afterwards).
        text: the run's text side (the empty prompt is embedded now, as trained so far).
        scheduler: the DDPM scheduler.
        batch: from :func:`validation_batch`.
        chunk: rows per forward pass.

    Returns:
        The mean loss over the batch's rows.
    """
    unet.eval()
    pixels, timesteps, noise = batch
    empty = text([""])
    total = 0.0
    for i in range(0, len(pixels), chunk):
        sl = slice(i, i + chunk)
        rows = len(pixels[sl])
        prediction = predict_noise(
            unet, scheduler, pixels[sl], timesteps[sl], noise[sl], empty.expand(rows, -1, -1)
        )
        total += float(F.mse_loss(prediction, noise[sl])) * rows
    unet.train()
    return total / len(pixels)


def _save_atomic(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` it in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".partial")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def default_work_dir(preset: str = "control") -> Path:
    """Where training keeps its checkpoint when no folder is given.

    Args:
        preset: the recipe's name (one folder per recipe).

    Returns:
        ``$DIFFLENS_CACHE/toy-model-training/<preset>``.
    """
    from difflens.core.paths import cache_dir

    return cache_dir() / "toy-model-training" / preset


@dataclass
class TrainResult:
    """A finished (or paused) training run.

    Attributes:
        unet: the trained U-Net, frozen and in eval mode.
        text_encoder: the text encoder it was conditioned on, frozen.
        tokenizer: the character CLIP tokenizer.
        scheduler: the DDPM scheduler it was trained with.
        config: the run's configuration.
        log: ``loss`` (the denoising loss of each step), ``aux_loss`` (the auxiliary loss
            of each step, 0 without heads), ``validation`` (``[step, loss]`` pairs),
            ``aux_heads`` (``[step, {head: loss}]`` at checkpoints), ``wall_seconds``
            (training time, checkpointing excluded), ``cpu_seconds`` (the CPU time of those
            steps: on a shared machine the wall time also counts other people's work) and
            ``sessions``.
        work_dir: the folder holding the checkpoint and the tokenizer.
    """

    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    config: ToyTrainConfig
    log: dict
    work_dir: Path


@dataclass
class TrainState:
    """What changes from step to step of a run and goes into its checkpoint.

    Attributes:
        unet: the U-Net being trained (train mode).
        text_encoder: the text encoder (trained jointly or frozen).
        heads: the auxiliary heads, or ``None`` for a pure denoiser.
        optimizer: the AdamW optimiser of every trained parameter.
        lr_schedule: the learning-rate schedule (:func:`lr_schedule`).
        log: the training log (see :class:`TrainResult`).
        step: optimisation steps done so far.
        last_heads: each auxiliary head's loss at the last step (empty without heads).
    """

    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    heads: AuxHeads | None
    optimizer: torch.optim.Optimizer
    lr_schedule: torch.optim.lr_scheduler.LambdaLR
    log: dict
    step: int = 0
    last_heads: dict = field(default_factory=dict)

    def modules(self) -> dict[str, torch.nn.Module]:
        """The modules whose weights a checkpoint holds.

        Returns:
            ``{"unet": ..., "text_encoder": ...[, "heads": ...]}``.
        """
        out = {"unet": self.unet, "text_encoder": self.text_encoder}
        if self.heads is not None:
            out["heads"] = self.heads
        return out


def lr_schedule(
    optimizer: torch.optim.Optimizer, config: ToyTrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to ``min_lr_fraction`` of the learning rate.

    Follows diffusers' ``get_cosine_schedule_with_warmup``, with the decay lifted to end
    at ``min_lr_fraction`` instead of 0.

    Args:
        optimizer: the optimiser whose learning rate is scheduled.
        config: ``warmup_steps``, ``steps`` and ``min_lr_fraction`` are used.

    Returns:
        A ``LambdaLR`` stepped once per optimisation step.
    """
    from diffusers.optimization import get_cosine_schedule_with_warmup

    cosine = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.steps)
    base_lambda = cosine.lr_lambdas[0]
    floor = config.min_lr_fraction

    def lr_lambda(step: int) -> float:
        if step < config.warmup_steps:
            return base_lambda(step)
        return floor + (1 - floor) * base_lambda(step)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)


def new_state(config: ToyTrainConfig, text_encoder: torch.nn.Module) -> TrainState:
    """A run at step 0: a fresh U-Net (and heads), their optimiser and schedule, an empty log.

    Args:
        config: the run's configuration.
        text_encoder: the run's text encoder (unfrozen here when it is trained jointly).

    Returns:
        The state, with the trained modules in train mode.
    """
    unet = build_unet(config)
    unet.train()
    heads = None
    if config.has_heads:
        torch.manual_seed(config.seed + 2)
        heads = AuxHeads(
            unet, config.class_heads, config.part_heads, config.head_kind, config.head_temperature
        ).train()
    params = list(unet.parameters())
    if config.train_text_encoder:
        text_encoder.train().requires_grad_(True)
        params += list(text_encoder.parameters())
    if heads is not None:
        params += list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    log = {
        "loss": [],
        "aux_loss": [],
        "validation": [],
        "aux_heads": [],
        "wall_seconds": 0.0,
        "cpu_seconds": 0.0,
        "sessions": [],
    }
    return TrainState(unet, text_encoder, heads, optimizer, lr_schedule(optimizer, config), log)


def save_checkpoint(state: TrainState, config: ToyTrainConfig, path: Path) -> None:
    """Write the state and the config to ``path`` atomically (``torch.save``).

    Args:
        state: the run's state.
        config: its configuration (stored as a dict, checked on resume).
        path: the checkpoint file.
    """
    _save_atomic(
        {
            "config": asdict(config),
            **{name: module.state_dict() for name, module in state.modules().items()},
            "optimizer": state.optimizer.state_dict(),
            "lr_schedule": state.lr_schedule.state_dict(),
            "log": state.log,
            "step": state.step,
        },
        path,
    )


def load_checkpoint(state: TrainState, config: ToyTrainConfig, path: Path) -> None:
    """Restore a state from ``path`` in place, after checking it was written by ``config``.

    Args:
        state: a state from :func:`new_state`; its weights, optimiser, schedule, log and
            step are replaced.
        config: the configuration the checkpoint must have been written with.
        path: the checkpoint file.

    Raises:
        ValueError: the checkpoint belongs to another configuration.
    """
    saved_state = torch.load(path, map_location="cpu", weights_only=False)
    saved = ToyTrainConfig.from_dict(saved_state["config"])
    if saved != config:
        raise ValueError(
            f"{path} was written by another training configuration "
            f"({saved}); pass fresh=True (--fresh) to start again or use another work_dir."
        )
    for name, module in state.modules().items():
        module.load_state_dict(saved_state[name])
    state.optimizer.load_state_dict(saved_state["optimizer"])
    state.lr_schedule.load_state_dict(saved_state["lr_schedule"])
    state.log = saved_state["log"]
    state.step = int(saved_state["step"])


def step_loss(
    state: TrainState, config: ToyTrainConfig, text: TextSide, scheduler: DDPMScheduler
) -> tuple[torch.Tensor, float, float]:
    """The training loss of the state's step: denoising plus the weighted auxiliary loss.

    Args:
        state: the run's state (its ``step`` fixes the batch, :func:`training_batch`); the
            auxiliary heads' losses are left in ``state.last_heads``.
        config: the run's configuration (``snr_gamma``, ``aux_weight``, ``bf16``).
        text: the run's text side (embeddings with a gradient when it is trained).
        scheduler: the DDPM scheduler.

    Returns:
        ``(loss, denoising, auxiliary)``: the scalar loss with a gradient and its two
        parts as floats (the auxiliary part 0 without heads).
    """
    inputs = training_batch(config, state.step, scheduler)
    batch = inputs.batch
    layers = state.heads.layers if state.heads is not None else ()
    with capture_outputs(state.unet, layers) as outputs:
        prediction = predict_noise(
            state.unet,
            scheduler,
            batch.pixels,
            inputs.timesteps,
            inputs.noise,
            text(inputs.prompts),
            config.bf16,
        )
    loss = epsilon_loss(prediction, inputs.noise, inputs.timesteps, scheduler, config.snr_gamma)
    if state.heads is None:
        return loss, loss.item(), 0.0
    signal = scheduler.alphas_cumprod[inputs.timesteps].float()
    if config.aux_uncond_only:
        signal = signal * torch.tensor([p == "" for p in inputs.prompts], dtype=torch.float32)
    aux, state.last_heads = aux_loss(
        state.heads(outputs), batch.class_maps, batch.part_maps, signal
    )
    return loss + config.aux_weight * aux, loss.item(), aux.item()


def train_step(
    state: TrainState, config: ToyTrainConfig, text: TextSide, scheduler: DDPMScheduler
) -> tuple[float, float]:
    """One optimisation step: loss, backward, gradient clipping, AdamW and schedule steps.

    Args:
        state: the run's state; its ``step`` goes up by one.
        config: the run's configuration (``grad_clip`` is used).
        text: the run's text side.
        scheduler: the DDPM scheduler.

    Returns:
        The step's denoising and auxiliary losses.
    """
    loss, denoising, auxiliary = step_loss(state, config, text, scheduler)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in state.optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
    state.optimizer.step()
    state.lr_schedule.step()
    state.step += 1
    return denoising, auxiliary


def record_validation(
    state: TrainState, text: TextSide, scheduler: DDPMScheduler, batch: tuple
) -> float:
    """Append ``[step, loss]`` of the fixed validation batch (and the heads' losses) to the log.

    Args:
        state: the run's state.
        text: the run's text side.
        scheduler: the DDPM scheduler.
        batch: from :func:`validation_batch`.

    Returns:
        The validation loss.
    """
    loss = validation_loss(state.unet, text, scheduler, batch)
    state.log["validation"].append([state.step, loss])
    if state.last_heads:
        state.log["aux_heads"].append([state.step, dict(state.last_heads)])
    return loss


def _prepare_work_dir(work_dir: Path | None, fresh: bool) -> tuple[Path, Path]:
    """The work folder (created) and its checkpoint path (deleted first when ``fresh``)."""
    work_dir = Path(work_dir) if work_dir is not None else default_work_dir()
    checkpoint_path = work_dir / "checkpoint.pt"
    if fresh and checkpoint_path.exists():
        checkpoint_path.unlink()
    work_dir.mkdir(parents=True, exist_ok=True)
    return work_dir, checkpoint_path


def _start(config: ToyTrainConfig, work_dir: Path, checkpoint_path: Path):
    """The text side, scheduler and state of a run, resumed from its checkpoint if any."""
    from diffusers import DDPMScheduler

    tokenizer, text_encoder = build_text_side(work_dir / "tokenizer", config.seed)
    scheduler = DDPMScheduler(**scheduler_config())
    state = new_state(config, text_encoder)
    if checkpoint_path.exists():
        load_checkpoint(state, config, checkpoint_path)
    elif config.init_from is not None:
        initialise_from(state, work_dir.parent / config.init_from / "checkpoint.pt")
    return TextSide(tokenizer, text_encoder), scheduler, state


def initialise_from(state: TrainState, path: Path) -> None:
    """Start a run from another finished run's weights (a later stage of a recipe).

    The U-Net and text encoder are loaded, and the heads too when the earlier run had
    heads of the same kind on the same layers; optimiser, schedule and log stay fresh.
    ``log["stages"]`` lists the earlier stages (theirs first), each with its config, steps,
    final losses, wall and CPU times (the model card reports every stage).

    Args:
        state: a state at step 0 (:func:`new_state`).
        path: the earlier run's ``checkpoint.pt``.

    Raises:
        FileNotFoundError: there is no such checkpoint.
        ValueError: the earlier run has not finished all its steps.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} does not exist: train the earlier stage first")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    earlier = ToyTrainConfig.from_dict(saved["config"])
    if int(saved["step"]) < earlier.steps:
        raise ValueError(f"{path} stopped at step {saved['step']} of {earlier.steps}")
    state.unet.load_state_dict(saved["unet"])
    state.text_encoder.load_state_dict(saved["text_encoder"])
    heads = saved.get("heads")
    if state.heads is not None and heads is not None:
        if set(heads) == set(state.heads.state_dict()):
            state.heads.load_state_dict(heads)
    log = saved["log"]
    state.log["stages"] = list(log.get("stages", [])) + [
        {
            "preset": Path(path).parent.name,
            "config": asdict(earlier),
            "steps": int(saved["step"]),
            "final_loss": float(np.mean(log["loss"][-50:])),
            "final_aux_loss": float(np.mean(log["aux_loss"][-50:])),
            "wall_seconds": float(log["wall_seconds"]),
            "cpu_seconds": float(log.get("cpu_seconds", 0.0)),
            "validation": log["validation"],
            "heads_loaded": state.heads is not None and heads is not None,
        }
    ]


def train(
    config: ToyTrainConfig = PRESETS["control"],
    work_dir: Path | None = None,
    threads: int | None = 1,
    fresh: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a toy U-Net, resuming from ``work_dir/checkpoint.pt`` when it exists.

    A loop of :func:`train_step`; every ``checkpoint_every`` steps (and at the last one)
    the validation loss is recorded and the checkpoint is written. The wall time of the
    steps, checkpointing excluded, is added to ``log["wall_seconds"]``.

    Args:
        config: what to train (a checkpoint of another config is an error, not resumed).
        work_dir: holds the checkpoint, the tokenizer and the training log (default:
            :func:`default_work_dir`).
        threads: ``torch.set_num_threads`` (None leaves it alone).
        fresh: delete an existing checkpoint and start again.
        max_steps: stop after this step even if ``config.steps`` is larger (the checkpoint
            is written, so a later call goes on) - for tests and short sessions.
        progress: show a tqdm bar with the running loss.

    Returns:
        The :class:`TrainResult`, its modules frozen; ``len(log["loss"])`` tells how far
        it got. A checkpoint in ``work_dir`` written by another configuration raises
        ``ValueError`` (:func:`load_checkpoint`) before any step is taken.
    """
    if threads:
        torch.set_num_threads(threads)
    work_dir, checkpoint_path = _prepare_work_dir(work_dir, fresh)
    text, scheduler, state = _start(config, work_dir, checkpoint_path)
    val_batch = validation_batch(config)
    stop = config.steps if max_steps is None else min(config.steps, max_steps)
    session = {"start_step": state.step, "threads": torch.get_num_threads(), "started": time.time()}
    state.log["sessions"].append(session)
    if state.step == 0 and not state.log["validation"]:
        record_validation(state, text, scheduler, val_batch)
    bar = tqdm(total=stop, initial=state.step, desc="training toy U-Net", disable=not progress)
    clock, cpu = time.perf_counter(), time.process_time()
    while state.step < stop:
        denoising, auxiliary = train_step(state, config, text, scheduler)
        state.log["loss"].append(denoising)
        state.log["aux_loss"].append(auxiliary)
        now, cpu_now = time.perf_counter(), time.process_time()
        state.log["wall_seconds"] += now - clock
        state.log["cpu_seconds"] = state.log.get("cpu_seconds", 0.0) + cpu_now - cpu
        clock, cpu = now, cpu_now
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(state.log['loss'][-50:]):.4f}")
        if state.step % config.checkpoint_every == 0 or state.step == stop:
            record_validation(state, text, scheduler, val_batch)
            session["end_step"] = state.step
            save_checkpoint(state, config, checkpoint_path)
            # the time spent checkpointing is not training time
            clock, cpu = time.perf_counter(), time.process_time()
    bar.close()
    session["end_step"] = state.step
    for module in (state.unet, state.text_encoder):
        module.eval().requires_grad_(False)
    return TrainResult(
        state.unet, state.text_encoder, text.tokenizer, scheduler, config, state.log, work_dir
    )


def backbone_from_checkpoint(work_dir: Path | None = None) -> Backbone:
    """A :class:`~difflens.models.backbone.Backbone` of a training checkpoint (to monitor a run).

    Args:
        work_dir: the training folder (default: :func:`default_work_dir`).

    Returns:
        A frozen pixel-space backbone (no VAE) named ``"toy checkpoint step <step>"``.

    Raises:
        FileNotFoundError: the folder holds no ``checkpoint.pt``.
    """
    from diffusers import DDPMScheduler

    work_dir = Path(work_dir) if work_dir is not None else default_work_dir()
    path = work_dir / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no training checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    config = ToyTrainConfig.from_dict(state["config"])
    unet = build_unet(config)
    unet.load_state_dict(state["unet"])
    tokenizer, text_encoder = build_text_side(work_dir / "tokenizer", config.seed)
    text_encoder.load_state_dict(state["text_encoder"])
    return assemble_backbone(
        unet,
        DDPMScheduler(**scheduler_config()),
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        model_id=f"toy checkpoint {work_dir.name} step {state['step']}",
        source=str(path),
    )


@torch.no_grad()
def sample(
    unet: torch.nn.Module,
    scheduler_cfg: dict,
    embed: object,
    prompts: list[str],
    steps: int = 50,
    seed: int = 0,
    guidance: float = 1.0,
    batch_size: int = 64,
    bf16: bool = False,
) -> np.ndarray:
    """Images generated with DDIM (eta 0, Song et al. 2021), optionally classifier-free guided.

    With ``guidance`` ``w > 1`` the noise estimate is ``eps(x, "") + w * (eps(x, prompt) -
    eps(x, ""))`` (Ho & Salimans 2022).

    Args:
        unet: the U-Net (a compiled or wrapped one too).
        scheduler_cfg: the training scheduler's config (``DDIMScheduler.from_config``).
        embed: a callable mapping a list of prompts to ``(N, tokens, width)`` embeddings
            (a :class:`~difflens.models.text.PromptCache` or :class:`TextSide`).
        prompts: one prompt per image.
        steps: DDIM steps.
        seed: seed of the initial noise (image ``i`` gets the same noise for any batching).
        guidance: the classifier-free guidance scale (1: none).
        batch_size: images per forward pass.
        bf16: run the U-Net under CPU bfloat16 autocast (as the toy models were trained).

    Returns:
        ``(N, S, S, 3)`` uint8 RGB images.
    """
    from diffusers import DDIMScheduler

    size = unwrap_module(unet).config.sample_size
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(prompts), 3, size, size), generator=gen)
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        ddim = DDIMScheduler.from_config(scheduler_cfg)
        ddim.set_timesteps(steps)
        x = noise[start : start + len(chunk)]
        text = embed(chunk)
        empty = embed([""] * len(chunk)) if guidance != 1.0 else None
        for t in ddim.timesteps:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                eps = unet(x, t, encoder_hidden_states=text, return_dict=False)[0].float()
                if empty is not None:
                    eps0 = unet(x, t, encoder_hidden_states=empty, return_dict=False)[0].float()
                    eps = eps0 + guidance * (eps - eps0)
            x = ddim.step(eps, t, x).prev_sample
        out.append(((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def folder_megabytes(folder: Path, pattern: str = "*.safetensors") -> float:
    """Size of the files under ``folder`` that match ``pattern``.

    Args:
        folder: the folder, searched recursively.
        pattern: a glob pattern (default: the weight files).

    Returns:
        Megabytes (10^6 bytes).
    """
    return sum(p.stat().st_size for p in Path(folder).rglob(pattern)) / 1e6


def _scene_range(config: ToyTrainConfig, steps: int) -> str:
    """The absolute seeds a run's scenes came from, e.g. ``1,000,000 .. 1,015,999 (16,000)``."""
    first = TRAIN_SEED_START + config.first_scene
    seen = steps * config.batch_size
    return f"{first:,} .. {first + seen - 1:,} ({seen:,} scenes)"


def _card_data(config: ToyTrainConfig, log: dict) -> list[str]:
    """The model card's "Data" section."""
    seeds = _scene_range(config, len(log["loss"]))
    stages = log.get("stages", [])
    if stages:
        parts = [
            f"{_scene_range(ToyTrainConfig.from_dict(st['config']), st['steps'])} in stage"
            f" {k + 1} (`{st['preset']}`)"
            for k, st in enumerate(stages)
        ]
        seeds = ", ".join(parts) + f" and {seeds} in stage {len(stages) + 1}"
    return [
        "## Data",
        "- Toy-world scenes of the `train` split (`difflens.data.toy.make_toy_example`), class ="
        f" shape ({', '.join(TOY_CLASSES)}); colour, texture, size, aspect, rotation and position"
        " drawn independently of class; "
        f"{config.n_objects[0]}-{config.n_objects[1]} objects per scene (mostly hidden ones"
        f" dropped); in {config.single_class_fraction:.0%} of the scenes (chosen by seed) every"
        " object has one class.",
        f"- Rendered on the fly from seeds {seeds}, each seen once, at"
        f" {' or '.join(f'{r} px' for r in config.render_sizes)} (chosen by seed), resized to"
        f" {config.image_size} px (bilinear) and scaled to [-1, 1]; no VAE.",
        "- Held out: the `test` split (seeds 0 .. 499,999: notebooks, evaluation) and the"
        f" `validation` split (seeds {VALIDATION_SEED_START:,} .. 999,999: choosing layers and"
        " timesteps, the validation loss) were never used for training.",
        "- Captions: the shapes present in the scene (e.g. `arrow, key`), replaced by the empty"
        f" prompt with probability {config.uncond_prob:g}.",
    ]


def _card_model(result: TrainResult, megabytes: float) -> list[str]:
    """The model card's "Model" section."""
    config = result.config
    n_params = sum(p.numel() for p in result.unet.parameters())
    ucfg = unet_config(
        config.image_size, config.channels, config.layers_per_block, config.attention
    )
    stage_sizes = [config.image_size // 2**k for k in range(len(config.channels))]
    text = "trained jointly with the U-Net" if config.train_text_encoder else "random, frozen"
    return [
        "## Model",
        f"- U-Net: {n_params / 1e6:.2f} M parameters, blocks {list(ucfg['down_block_types'])},"
        f" channels {list(ucfg['block_out_channels'])}, layers per block"
        f" {list(ucfg['layers_per_block'])}, stages at {', '.join(f'{r} px' for r in stage_sizes)}"
        " (as SD 1.5's on a 512 px image), attention (one head) at"
        f" {', '.join(f'{r} px' for r, a in zip(stage_sizes, config.attention) if a)} and in"
        " the mid block.",
        f"- Text encoder: a tiny CLIP text model (2 layers, width 64), {text}, over a character"
        " tokenizer.",
        "- Scheduler: DDPM, 1000 steps, linear betas 1e-4 .. 0.02, epsilon prediction.",
        f"- Weights: safetensors, {megabytes:.1f} MB in total (at most 20 MB).",
    ]


def _card_objective(config: ToyTrainConfig) -> str:
    """The loss of a run, in one sentence."""
    weighting = (
        f", examples weighted by min(SNR, {config.snr_gamma:g}) / SNR (Min-SNR)"
        if config.snr_gamma
        else ""
    )
    text = (
        "MSE between the true noise and the U-Net's prediction (the standard DDPM objective) at"
        f" timesteps drawn {config.timestep_sampling}ly"
        + (f" below {config.max_timestep}" if config.max_timestep else "")
        + weighting
    )
    if not config.has_heads:
        return text + "; no other loss: the U-Net is trained to denoise only."
    return (
        f"{text}; plus {config.aux_weight:g} x the auxiliary loss of {config.head_kind} heads"
        f" (`difflens.models.toy_heads`) on U-Net layers read by forward hooks, predicting"
        f" the class map (layers {', '.join(f'`{n}`' for n in config.class_heads)}) and the"
        f" part map (layers {', '.join(f'`{n}`' for n in config.part_heads)}) of the clean"
        " scene: soft cross-entropy against each cell's label shares, every example weighted"
        " by alpha_bar_t (the share of signal left at its timestep)"
        + (
            ", counted on the examples whose caption was dropped only."
            if config.aux_uncond_only
            else "."
        )
    )


def _card_stage(config: ToyTrainConfig, steps: int, losses: tuple, times: tuple) -> str:
    """One training stage: objective, schedule, final losses and times."""
    precision = "bfloat16 autocast, float32 weights" if config.bf16 else "float32"
    text = "text encoder trained jointly" if config.train_text_encoder else "text encoder frozen"
    final, aux, val = losses
    aux_text = f", auxiliary {aux:.4f}" if config.has_heads else ""
    return (
        f"{_card_objective(config)} {steps:,} steps, batch {config.batch_size}, AdamW lr"
        f" {config.learning_rate:g} (warm-up {config.warmup_steps} steps, cosine decay to"
        f" {config.min_lr_fraction:g} x), gradient clipping {config.grad_clip:g}, {precision},"
        f" {text}, seed {config.seed}. Final losses (mean of the last 50 steps): denoising"
        f" {final:.4f}{aux_text}; fixed validation batch (empty prompt) {val:.4f}. Wall time"
        f" {times[0] / 60:.1f} min ({times[1] / 60:.1f} min of CPU time)."
    )


def _card_training(
    config: ToyTrainConfig, log: dict, diffusers_v: str, transformers_v: str, command: str
) -> list[str]:
    """The model card's "Training" section, from the config and the training log."""
    loss, aux = np.asarray(log["loss"]), np.asarray(log.get("aux_loss", [0.0]))
    final = float(loss[-min(50, len(loss)) :].mean()) if len(loss) else float("nan")
    val = log["validation"][-1][1] if log["validation"] else float("nan")
    lines = ["## Training"]
    wall, cpu = log["wall_seconds"], log.get("cpu_seconds", 0.0)
    stages = log.get("stages", [])
    for k, st in enumerate(stages):
        losses = (st["final_loss"], st["final_aux_loss"], st["validation"][-1][1])
        times = (st["wall_seconds"], st["cpu_seconds"])
        start = "" if k == 0 else "from the previous stage's weights: "
        stage = _card_stage(ToyTrainConfig.from_dict(st["config"]), st["steps"], losses, times)
        lines.append(f"- Stage {k + 1} (`{st['preset']}`): {start}{stage}")
        wall, cpu = wall + st["wall_seconds"], cpu + st["cpu_seconds"]
    own = (log["wall_seconds"], log.get("cpu_seconds", 0.0))
    this = _card_stage(config, len(loss), (final, float(aux[-50:].mean()), val), own)
    if stages:
        lines.append(
            f"- Stage {len(stages) + 1} (this run), from the previous stage's weights: {this}"
        )
    else:
        lines.append(f"- {this}")
    return lines + [
        f"- In all: {wall / 60:.1f} min of training ({cpu / 60:.1f} min of CPU time) on"
        f" {platform.machine()} CPU with {log['sessions'][-1]['threads']} thread(s) of a 2-core"
        " machine shared with other jobs (the wall time is noisy).",
        f"- Software: torch {torch.__version__}, diffusers {diffusers_v}, transformers"
        f" {transformers_v}, Python {sys.version.split()[0]}.",
        f"- Reproduce: `{command}` (part of `make toy-model`"
        + (", after " + ", ".join(f"`--preset {st['preset']}`" for st in stages) if stages else "")
        + ").",
    ]


CARD_INTROS: dict[bool, list[str]] = {
    True: [
        "A small pixel-space diffusion U-Net (diffusers `UNet2DConditionModel`) trained from",
        "scratch on difflens' toy world as a denoiser AND, through auxiliary dense class and part",
        "heads, made to hold the toy world's shapes and their parts. It is the POSITIVE CONTROL",
        "of the controls study and the offline default of the notebooks (`load_backbone('toy')`):",
        "it shows that the suite finds semantics a network holds, not that denoising alone",
        "creates them. For what denoising alone learns here, see `load_backbone('toy-denoiser')`.",
    ],
    False: [
        "A small pixel-space diffusion U-Net (diffusers `UNet2DConditionModel`) trained from",
        "scratch on difflens' toy world as a denoiser only, with the architecture, data and",
        "schedule of the positive control's first stage (`load_backbone('toy-denoiser')`): the",
        "honest result of what denoising alone learns here. The positive control is",
        "`load_backbone('toy')`.",
    ],
}
"""The card's opening paragraph for a positive control (True) and a pure denoiser (False)."""


def model_card(
    result: TrainResult,
    megabytes: float,
    diffusers_v: str,
    transformers_v: str,
    samples: bool,
    command: str = "python -m difflens.runner.toy_model train --preset control",
    extra: list[str] | None = None,
) -> str:
    """The Markdown model card of a finished run (``MODEL_CARD.md`` of the model folder).

    Follows the Hugging Face model-card outline (data, model, training, how to reproduce)
    with every number read from the config and the training log.

    Args:
        result: the finished run.
        megabytes: size of the saved weights (:func:`folder_megabytes`).
        diffusers_v: the diffusers version that wrote the model.
        transformers_v: the transformers version that wrote the model.
        samples: whether a ``samples.png`` grid sits next to the card.
        command: the command line that trains this model.
        extra: further Markdown lines (e.g. the sample check), appended at the end.

    Returns:
        The card's text, ending in a newline.
    """
    title = "positive control" if result.config.has_heads else "denoiser only"
    lines = [
        f"# difflens toy model ({TOY_VERSION}, {title})",
        "",
        *CARD_INTROS[result.config.has_heads],
        "",
        *_card_data(result.config, result.log),
        "",
        *_card_model(result, megabytes),
        "",
        *_card_training(result.config, result.log, diffusers_v, transformers_v, command),
        "",
        "![loss curve](loss_curve.png)",
    ]
    if samples:
        lines += [
            "",
            "## Samples",
            "DDIM, 50 steps, first row with the empty prompt, then two per class name:",
            "",
            "![samples](samples.png)",
        ]
    return "\n".join(lines + (["", *extra] if extra else [])) + "\n"
