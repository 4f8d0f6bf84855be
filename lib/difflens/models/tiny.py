"""The built-in tiny model: SD 1.x block structure, small channel counts, random weights.

Made from configs with a fixed seed, saved once to the cache folder and then loaded like
any checkpoint (``load_backbone("tiny")``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from difflens.core.paths import cache_dir
from difflens.models.text import character_text_config, write_character_tokenizer

TINY_VERSION = "tiny-v1"


def _tiny_components(seed: int = 0) -> tuple:
    """Seeded U-Net, VAE, text encoder and scheduler of the tiny model (random weights)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    # SD 1.x block structure (3 cross-attention down blocks + 1 plain, mirrored up),
    # with small channel counts; 8x VAE downsampling as in SD.
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 96, 96),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        layers_per_block=2,
        cross_attention_dim=64,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=256,
        scaling_factor=0.18215,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(**character_text_config()))
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
    )
    return unet, vae, text_encoder, scheduler


def build_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Create the tiny SD-like model from configs and save it as a pipeline folder.

    The folder is written under a temporary name and renamed into place, so a half-written
    model is never loaded; when another process finished first, its folder is kept.

    Args:
        folder: the pipeline folder to create (``unet/``, ``vae/``, ``text_encoder/``,
            ``tokenizer/``, ``scheduler/``, ``model_index.json``).
        seed: ``torch.manual_seed`` before the modules are built.

    Returns:
        ``folder``.

    Raises:
        OSError: the rename failed and no finished model is at ``folder``.
    """
    tmp = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    unet, vae, text_encoder, scheduler = _tiny_components(seed)
    unet.save_pretrained(tmp / "unet")
    vae.save_pretrained(tmp / "vae")
    text_encoder.save_pretrained(tmp / "text_encoder")
    scheduler.save_pretrained(tmp / "scheduler")
    write_character_tokenizer(tmp / "tokenizer")
    (tmp / "model_index.json").write_text(
        json.dumps(
            {"_class_name": "StableDiffusionPipeline", "difflens": TINY_VERSION, "seed": seed}
        )
    )
    try:
        tmp.rename(folder)  # atomic on one file system: a half-written model is never used
    except OSError:
        if not (folder / "model_index.json").exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    return folder


def tiny_model_path() -> Path:
    """The tiny model's folder, created on first use.

    Returns:
        ``$DIFFLENS_CACHE/models/tiny-v1``, holding a complete pipeline folder.
    """
    folder = cache_dir() / "models" / TINY_VERSION
    if not (folder / "model_index.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        build_tiny_model(folder)
    return folder
