"""Load a diffusion backbone: a hub id, a local folder, or the built-in tiny model.

Every source goes through the same ``from_pretrained(folder, subfolder=...)`` calls on the
diffusers / transformers classes, in the layout of a Stable Diffusion pipeline folder
(``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``). The built-in
``"tiny"`` model is made from configs with a fixed seed, saved once to the cache folder and
then loaded like any checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

DEFAULT_MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
TINY_VERSION = "tiny-v1"


DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch.float32`` or one of ``"fp32"``, ``"bf16"``, ``"fp16"`` (long names too)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype).lower().removeprefix("torch.")]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {sorted(DTYPES)}") from None


class BackboneNotFoundError(RuntimeError):
    """The requested model could not be found locally and could not be downloaded."""


def cache_dir() -> Path:
    """Root of difflens' caches: ``$DIFFLENS_CACHE`` or ``~/.cache/difflens``."""
    return Path(os.environ.get("DIFFLENS_CACHE", Path.home() / ".cache" / "difflens"))


@dataclass
class Backbone:
    """The parts of a latent (or pixel-space) diffusion model that feature extraction needs."""

    unet: torch.nn.Module
    scheduler: object
    tokenizer: object | None
    text_encoder: torch.nn.Module | None
    vae: torch.nn.Module | None
    model_id: str
    source: str
    extras: dict = field(default_factory=dict)
    _fingerprint: str | None = None

    @property
    def latent_scale(self) -> int:
        """Image pixels per latent pixel along one side (8 for SD; 1 without a VAE)."""
        if self.vae is None:
            return 1
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def scaling_factor(self) -> float:
        return 1.0 if self.vae is None else float(self.vae.config.scaling_factor)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | str | None = None):
        """Move (and cast) the U-Net, VAE and text encoder in place; returns ``self``."""
        kwargs = {}
        if device is not None:
            kwargs["device"] = device
        if dtype is not None and parse_dtype(dtype) != self.dtype:
            kwargs["dtype"] = parse_dtype(dtype)
        if kwargs:
            for module in (self.unet, self.vae, self.text_encoder):
                if module is not None:
                    module.to(**kwargs)
        return self

    def component_fingerprint(self, part: str) -> str:
        """A short hash of one component's weights: ``"unet"``, ``"vae"`` or ``"text_encoder"``.

        Hashes every tensor's name, shape, dtype and a strided sample of 257 of its values,
        so it costs well under a second even for SD's 860 M parameters; any retraining or
        fine-tune (which moves all weights) changes it. ``"none"`` for a missing component.
        The hash is recomputed whenever a tensor was replaced or changed in place (tracked
        through torch's version counters), so it never goes stale.
        """
        module = getattr(self, part)
        if module is None:
            return "none"
        state = module.state_dict(keep_vars=True)
        signature = hash(
            tuple((name, id(t), t.data_ptr(), t._version, t.dtype) for name, t in state.items())
        )
        cache = self.extras.setdefault("component_fingerprints", {})
        if cache.get(part, (None,))[0] != signature:
            h = hashlib.sha256(part.encode())
            for name, tensor in state.items():
                flat = tensor.detach().reshape(-1)
                step = max(1, flat.numel() // 257)
                sample = flat[::step].float().cpu().numpy().tobytes()
                h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
                h.update(sample)
            cache[part] = (signature, h.hexdigest()[:16])
        return cache[part][1]

    def fingerprint(self) -> str:
        """A short hash of the model id, the U-Net, VAE and text-encoder weights and the
        scheduler's config: it changes whenever anything that shapes a feature changes."""
        h = hashlib.sha256(self.model_id.encode())
        for part in ("unet", "vae", "text_encoder"):
            h.update(f"{part}:{self.component_fingerprint(part)}".encode())
        config = dict(getattr(self.scheduler, "config", {}) or {})
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
        self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


def _tiny_components(seed: int = 0):
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
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=_TINY_VOCAB_SIZE,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=_TINY_VOCAB_SIZE - 2,
            eos_token_id=_TINY_VOCAB_SIZE - 1,
            pad_token_id=_TINY_VOCAB_SIZE - 1,
        )
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
    )
    return unet, vae, text_encoder, scheduler


_PRINTABLE = [chr(i) for i in range(33, 127)]
_TINY_VOCAB_SIZE = 2 * len(_PRINTABLE) + 2


@torch.no_grad()
def encode_prompt(tokenizer, text_encoder, prompt: str, device=None) -> torch.Tensor:
    """The text encoder's last hidden states ``(1, tokens, width)`` for ``prompt``, padded
    to the tokenizer's maximum length as SD's pipelines do."""
    ids = tokenizer(
        prompt,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    return text_encoder(ids.to(device) if device is not None else ids)[0]


def write_character_tokenizer(folder: Path) -> None:
    """Save a CLIP tokenizer whose vocabulary is single printable characters (no merges)."""
    from transformers import CLIPTokenizer

    vocab = {ch: i for i, ch in enumerate(_PRINTABLE)}
    vocab.update({ch + "</w>": i + len(_PRINTABLE) for i, ch in enumerate(_PRINTABLE)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "vocab.json").write_text(json.dumps(vocab))
    (raw / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(raw / "vocab.json"), str(raw / "merges.txt"), model_max_length=77)
    tokenizer.save_pretrained(folder)


def build_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Create the tiny SD-like model from configs and save it as a pipeline folder."""
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
    """The tiny model's folder, created on first use."""
    folder = cache_dir() / "models" / TINY_VERSION
    if not (folder / "model_index.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        build_tiny_model(folder)
    return folder


def _is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def _from_pretrained(cls, source: str, subfolder: str, **kwargs):
    """``cls.from_pretrained`` for a local folder, the local hub cache, then the hub."""
    if Path(source).is_dir():
        return cls.from_pretrained(source, subfolder=subfolder, **kwargs)
    try:
        return cls.from_pretrained(source, subfolder=subfolder, local_files_only=True, **kwargs)
    except (OSError, ValueError) as cached_error:
        if _is_offline():
            raise BackboneNotFoundError(
                f"Model {source!r} ({subfolder}) is not in the local Hugging Face cache and "
                "HF_HUB_OFFLINE is set. Download it on a connected machine "
                f"(`huggingface-cli download {source}`) or pass a local folder that holds "
                "unet/, vae/, text_encoder/, tokenizer/ and scheduler/ (e.g. "
                "load_backbone('/data/models/sd15'))."
            ) from cached_error
    try:
        return cls.from_pretrained(source, subfolder=subfolder, **kwargs)
    except OSError as error:
        raise BackboneNotFoundError(
            f"Could not load {source!r} ({subfolder}) from the Hugging Face hub: {error}. "
            "If this machine is offline, pass a local folder in the Stable Diffusion layout "
            "(unet/, vae/, text_encoder/, tokenizer/, scheduler/) instead of a hub id."
        ) from error


def load_backbone(
    model: str = DEFAULT_MODEL_ID,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    with_text: bool = True,
) -> Backbone:
    """Load the U-Net, VAE, text encoder, tokenizer and scheduler of ``model``.

    Args:
        model: ``"tiny"`` (built-in, random weights), ``"toy"`` (built-in, trained on the
            toy world), a local folder in the SD pipeline layout, or a hub id such as
            ``"stable-diffusion-v1-5/stable-diffusion-v1-5"``.
        device, dtype: where and in which precision the modules live (``"cpu"`` /
            ``"cuda"``; ``torch.float32`` or ``"fp32"``, ``"bf16"``, ``"fp16"``).
        with_text: also load the text encoder and tokenizer (needed for prompts).
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    dtype = parse_dtype(dtype)
    if model == "tiny":
        source = str(tiny_model_path())
    elif model == "toy":
        from difflens.toymodel import toy_model_path

        source = str(toy_model_path())
    else:
        source = model
    unet = _from_pretrained(UNet2DConditionModel, source, "unet", torch_dtype=dtype)
    has_vae = (Path(source) / "vae").is_dir() if Path(source).is_dir() else True
    vae = _from_pretrained(AutoencoderKL, source, "vae", torch_dtype=dtype) if has_vae else None
    scheduler = _from_pretrained(DDPMScheduler, source, "scheduler")
    tokenizer = text_encoder = None
    if with_text:
        from transformers import CLIPTextModel, CLIPTokenizer

        tokenizer = _from_pretrained(CLIPTokenizer, source, "tokenizer")
        text_encoder = _from_pretrained(CLIPTextModel, source, "text_encoder", torch_dtype=dtype)
    backbone = Backbone(
        unet=unet,
        scheduler=scheduler,
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        model_id=model,
        source=source,
    )
    for module in (unet, vae, text_encoder):
        if module is not None:
            module.eval().requires_grad_(False)
    return backbone.to(device=device)
