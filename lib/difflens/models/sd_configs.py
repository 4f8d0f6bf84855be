"""The Stable Diffusion 1.5 and 2.x architectures as configs, for random-weight stand-ins.

Tests and benchmarks that must see the real SD shapes and costs, but cannot download the
weights, build the models from these configs with seeded random weights. The values are
those of the released ``unet/``, ``vae/`` and ``text_encoder/`` configs (SD 2.x: the
512 px ``stable-diffusion-2-base`` layout; the 768 px model differs only in
``sample_size = 96``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from difflens.models.backbone import Backbone, assemble_backbone, parse_dtype
from difflens.models.text import write_character_tokenizer

SD15_UNET: dict = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
SD2_UNET: dict = {
    **SD15_UNET,
    "attention_head_dim": (5, 10, 20, 20),
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
}
SD_VAE: dict = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
SD15_TEXT: dict = {  # CLIP ViT-L/14 text tower
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
}
SD2_TEXT: dict = {  # OpenCLIP ViT-H/14 text tower, penultimate layer
    "vocab_size": 49408,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
}
SD_SCHEDULER: dict = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
}
CONFIGS = {"1.5": (SD15_UNET, SD15_TEXT), "2": (SD2_UNET, SD2_TEXT)}


def _configs(version: str) -> tuple[dict, dict]:
    """The U-Net and text-encoder configs of an SD version (``ValueError`` if unknown)."""
    if version not in CONFIGS:
        raise ValueError(f"unknown SD version {version!r}: use one of {sorted(CONFIGS)}")
    return CONFIGS[version]


def build_sd_unet(version: str = "1.5", seed: int = 0) -> torch.nn.Module:
    """The SD U-Net architecture with seeded random weights, frozen and in eval mode.

    Args:
        version: ``"1.5"`` or ``"2"`` (see :data:`CONFIGS`).
        seed: ``torch.manual_seed`` before the module is built.

    Returns:
        A diffusers ``UNet2DConditionModel`` (860 M parameters), float32 on the CPU.
    """
    from diffusers import UNet2DConditionModel

    unet_config, _ = _configs(version)
    torch.manual_seed(seed)
    return UNet2DConditionModel(**unet_config).eval().requires_grad_(False)


def build_sd_backbone(
    version: str = "1.5",
    seed: int = 0,
    with_vae: bool = True,
    with_text: bool = True,
    dtype: torch.dtype | str = torch.float32,
) -> Backbone:
    """A :class:`~difflens.models.backbone.Backbone` with the SD architecture and random weights.

    The tokenizer is the built-in character tokenizer (CLIP's BPE vocabulary is not
    available offline); prompts still become 77 token embeddings of the right width.

    Args:
        version: ``"1.5"`` or ``"2"``.
        seed: seed of the U-Net's weights (VAE and text encoder follow in the same stream).
        with_vae: build the SD VAE (``AutoencoderKL``, 8x downsampling).
        with_text: build the text encoder (CLIP ViT-L/14 or OpenCLIP ViT-H/14 tower) and
            the character tokenizer.
        dtype: precision of the modules (``torch.float32`` or ``"bf16"``, ``"fp16"``).

    Returns:
        The frozen backbone on the CPU, model id ``"sd<version>-architecture-random-seed<seed>"``.
    """
    from diffusers import AutoencoderKL, DDPMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    _, text_config = _configs(version)
    unet = build_sd_unet(version, seed)
    vae = AutoencoderKL(**SD_VAE) if with_vae else None
    tokenizer = text_encoder = None
    if with_text:
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_config))
        with tempfile.TemporaryDirectory() as folder:
            write_character_tokenizer(Path(folder))
            tokenizer = CLIPTokenizer.from_pretrained(folder)
    return assemble_backbone(
        unet,
        DDPMScheduler(**SD_SCHEDULER),
        vae=vae,
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        model_id=f"sd{version}-architecture-random-seed{seed}",
        source="difflens.models.sd_configs",
        dtype=parse_dtype(dtype),
    )
