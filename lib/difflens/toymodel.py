"""The toy model: a small pixel-space diffusion U-Net trained on the toy world.

Random weights carry no semantics, so the offline default needs a model that was actually
trained. This one is a diffusers ``UNet2DConditionModel`` trained with diffusers'
``DDPMScheduler`` and the standard noise-prediction (epsilon) MSE loss on toy-world scenes
(:func:`difflens.datasets.make_toy_scene`, class = shape; colour, texture, size and position
independent of class), in pixel space: there is no VAE, so the backbone's
``vae`` is ``None`` and its ``latent_scale`` is 1.

Text conditioning works as in SD: a frozen text encoder (a tiny CLIP text model with
random weights and a character tokenizer, as the built-in "tiny" model has) embeds a
caption listing the shapes in the scene ("circle, square"), replaced by the empty prompt
for half of the examples, so the U-Net also learns the unconditional task that feature
extraction uses (empty prompt).

Scenes are rendered on the fly from seeds ``TRAIN_SEED_START + k``, far from the seeds
``0, 1, 2, ...`` that :class:`~difflens.datasets.ToyWorld` uses by default, so the
notebooks' toy scenes are held out. Every random draw of step ``s`` (scene seeds, timesteps,
noise, caption dropout) is a function of the seed and ``s`` alone, so a run interrupted and
resumed from its checkpoint follows the same path as an uninterrupted one.

``python -m difflens.toymodel train`` (``make toy-model``) trains, checkpoints every
``checkpoint_every`` steps (resuming from the checkpoint when one exists) and writes the
pipeline folder (``unet/``, ``scheduler/``, ``text_encoder/``, ``tokenizer/``) with a model
card, the loss curve and a grid of samples to ``lib/difflens/assets/toy-model``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from difflens.backbone import encode_prompt
from difflens.datasets.toyworld import TOY_CLASSES, make_toy_scene
from difflens.extract import images_to_tensor

TOY_VERSION = "toy-v1"
TOY_IMAGE_SIZE = 64
TRAIN_SEED_START = 1_000_000
"""Training scenes use seeds ``TRAIN_SEED_START + k`` (k < steps x batch size)."""
VALIDATION_SEED_START = 500_000
"""Seeds reserved for choosing layers and timesteps (see :mod:`difflens.controls`)."""
VALIDATION_LOSS_SEED_START = 900_000
"""Seeds of the fixed batch whose loss is tracked during training."""
MAX_WEIGHTS_MB = 20.0


def assets_path() -> Path:
    """Where the committed toy model lives inside the package."""
    return Path(__file__).resolve().parent / "assets" / "toy-model"


def toy_model_path() -> Path:
    """The trained toy model's pipeline folder (committed with the package)."""
    folder = assets_path()
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(
            f"The trained toy model is missing: {weights} does not exist. Train it with "
            "`make toy-model` (python -m difflens.toymodel train, about 20 minutes on one CPU "
            "core) or load another model."
        )
    return folder


@dataclass(frozen=True)
class ToyTrainConfig:
    """Everything that determines a training run (written into the checkpoint and the card)."""

    steps: int = 3600
    batch_size: int = 8
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    min_lr_fraction: float = 0.1
    grad_clip: float = 1.0
    uncond_prob: float = 0.5
    snr_gamma: float | None = 5.0
    timestep_sampling: str = "uniform"
    lognormal_mean: float = -1.2
    lognormal_std: float = 1.2
    image_size: int = TOY_IMAGE_SIZE
    render_sizes: tuple[int, ...] = (64, 128)
    n_objects: tuple[int, int] = (2, 5)
    single_class_fraction: float = 0.0
    channels: tuple[int, ...] = (16, 32, 64, 96)
    layers_per_block: tuple[int, ...] = (1, 1, 2, 1)
    attention: tuple[bool, ...] = (False, False, True, False)
    seed: int = 0
    checkpoint_every: int = 100
    validation_images: int = 64

    @classmethod
    def from_dict(cls, values: dict) -> ToyTrainConfig:
        known = {f.name for f in fields(cls)}
        clean = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()}
        return cls(**{k: v for k, v in clean.items() if k in known})


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
    """DDPM's linear schedule (Ho et al. 2020), the usual one for pixel-space models."""
    return dict(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        prediction_type="epsilon",
        clip_sample=True,
        clip_sample_range=1.0,
    )


def text_encoder_config(tokenizer) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_unet(config: ToyTrainConfig):
    """The toy U-Net with diffusers' default initialisation, seeded."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(config.seed)
    return UNet2DConditionModel(
        **unet_config(config.image_size, config.channels, config.layers_per_block, config.attention)
    )


def build_text_side(folder: Path, seed: int):
    """Write the character tokenizer to ``folder`` and return it with a seeded text encoder."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from difflens.backbone import write_character_tokenizer

    write_character_tokenizer(folder)
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    torch.manual_seed(seed + 1)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_encoder_config(tokenizer)))
    return tokenizer, text_encoder.eval().requires_grad_(False)


def caption(class_names) -> str:
    """The prompt of a scene: its distinct shapes in the order of ``TOY_CLASSES``."""
    present = set(class_names)
    return ", ".join(name for name in TOY_CLASSES if name in present)


class PromptEmbedder:
    """Text-encoder hidden states per prompt, computed once (there are only 16 captions)."""

    def __init__(self, tokenizer, text_encoder):
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self._cache: dict[str, torch.Tensor] = {}

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        for prompt in set(prompts) - set(self._cache):
            self._cache[prompt] = encode_prompt(self.tokenizer, self.text_encoder, prompt)[0]
        return torch.stack([self._cache[p] for p in prompts])


def render_batch(seeds, config: ToyTrainConfig) -> tuple[torch.Tensor, list[str]]:
    """Pixels in [-1, 1] (B, 3, S, S) and captions of the scenes drawn from ``seeds``.

    A scene is rendered at one of ``config.render_sizes`` (chosen by its seed) and resized
    to ``image_size`` by the same function feature extraction uses, so the model sees both
    native and downscaled renderings.
    """
    images, captions = [], []
    for seed in seeds:
        size = config.render_sizes[int(seed) % len(config.render_sizes)]
        classes = TOY_CLASSES
        rng = np.random.default_rng([int(seed), 7])
        if rng.random() < config.single_class_fraction:
            classes = (TOY_CLASSES[int(rng.integers(len(TOY_CLASSES)))],)
        scene = make_toy_scene(
            int(seed), size=size, n_objects=tuple(config.n_objects), classes=classes
        )
        images.append(scene.image)
        captions.append(caption(scene.class_names))
    return images_to_tensor(images, config.image_size), captions


def step_generator(config: ToyTrainConfig, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(config.seed * 1_000_003 + step)


def sample_timesteps(
    config: ToyTrainConfig, n: int, gen: torch.Generator, scheduler
) -> torch.Tensor:
    """Training timesteps: uniform over 0..T-1, or EDM's log-normal noise levels.

    ``"lognormal"`` draws ``log sigma ~ N(lognormal_mean, lognormal_std)`` (Karras et al.
    2022) and takes the DDPM timestep whose ``sigma_t = sqrt((1 - abar_t) / abar_t)`` is the
    first at or above it, so training concentrates on the noise levels where denoising
    is neither trivial nor hopeless.
    """
    total = scheduler.config.num_train_timesteps
    if config.timestep_sampling == "uniform":
        return torch.randint(0, total, (n,), generator=gen)
    if config.timestep_sampling == "lognormal":
        abar = scheduler.alphas_cumprod
        sigmas = ((1 - abar) / abar).sqrt()
        log_sigma = torch.randn(n, generator=gen) * config.lognormal_std + config.lognormal_mean
        return torch.searchsorted(sigmas, log_sigma.exp()).clamp(0, total - 1)
    raise ValueError(
        f"timestep_sampling must be 'uniform' or 'lognormal', got {config.timestep_sampling!r}"
    )


def training_batch(config: ToyTrainConfig, step: int, embed: PromptEmbedder, scheduler):
    """The inputs of training step ``step``: a function of the config and the step only."""
    start = TRAIN_SEED_START + step * config.batch_size
    pixels, captions = render_batch(range(start, start + config.batch_size), config)
    gen = step_generator(config, step)
    timesteps = sample_timesteps(config, config.batch_size, gen, scheduler)
    noise = torch.randn(pixels.shape, generator=gen)
    drop = torch.rand(config.batch_size, generator=gen) < config.uncond_prob
    prompts = ["" if d else c for d, c in zip(drop.tolist(), captions)]
    return pixels, timesteps, noise, embed(prompts)


def epsilon_loss(
    unet, scheduler, pixels, timesteps, noise, text, snr_gamma: float | None = None
) -> torch.Tensor:
    """The standard DDPM loss: MSE between the true and the predicted noise.

    With ``snr_gamma`` each example is weighted by ``min(SNR(t), gamma) / SNR(t)``
    (Min-SNR weighting, Hang et al. 2023, as diffusers' training scripts do with
    ``--snr_gamma``): the nearly noise-free steps, which only teach fine detail, count less.
    """
    noisy = scheduler.add_noise(pixels, noise, timesteps)
    prediction = unet(noisy, timesteps, encoder_hidden_states=text, return_dict=False)[0]
    if snr_gamma is None:
        return F.mse_loss(prediction, noise)
    per_example = F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3))
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas / (1 - alphas)
    weights = torch.clamp(snr, max=snr_gamma) / snr
    return (weights * per_example).mean()


def validation_batch(config: ToyTrainConfig, embed: PromptEmbedder):
    """A fixed batch (own seeds, fixed timesteps spread over 0..999, empty prompt)."""
    n = config.validation_images
    seeds = range(VALIDATION_LOSS_SEED_START, VALIDATION_LOSS_SEED_START + n)
    pixels, _ = render_batch(seeds, config)
    gen = torch.Generator().manual_seed(12345)
    timesteps = torch.linspace(0, 999, n).round().long()
    noise = torch.randn(pixels.shape, generator=gen)
    return pixels, timesteps, noise, embed([""] * n)


@torch.no_grad()
def validation_loss(unet, scheduler, batch, chunk: int = 32) -> float:
    unet.eval()
    pixels, timesteps, noise, text = batch
    total = 0.0
    for i in range(0, len(pixels), chunk):
        sl = slice(i, i + chunk)
        loss = epsilon_loss(unet, scheduler, pixels[sl], timesteps[sl], noise[sl], text[sl])
        total += float(loss) * len(pixels[sl])
    unet.train()
    return total / len(pixels)


def _save_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".partial")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def default_work_dir() -> Path:
    from difflens.backbone import cache_dir

    return cache_dir() / "toy-model-training"


@dataclass
class TrainResult:
    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    config: ToyTrainConfig
    log: dict
    work_dir: Path


def train(
    config: ToyTrainConfig = ToyTrainConfig(),
    work_dir: Path | None = None,
    threads: int | None = 2,
    fresh: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train the toy U-Net, resuming from ``work_dir/checkpoint.pt`` when it exists.

    Args:
        config: what to train (a checkpoint of another config is an error, not resumed).
        work_dir: holds the checkpoint, the tokenizer and the training log.
        threads: ``torch.set_num_threads`` (None leaves it alone).
        fresh: delete an existing checkpoint and start again.
        max_steps: stop after this step even if ``config.steps`` is larger (the checkpoint
            is written, so a later call goes on) - for tests and short sessions.
    """
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_cosine_schedule_with_warmup

    if threads:
        torch.set_num_threads(threads)
    work_dir = Path(work_dir) if work_dir is not None else default_work_dir()
    checkpoint_path = work_dir / "checkpoint.pt"
    if fresh and checkpoint_path.exists():
        checkpoint_path.unlink()
    work_dir.mkdir(parents=True, exist_ok=True)

    tokenizer, text_encoder = build_text_side(work_dir / "tokenizer", config.seed)
    embed = PromptEmbedder(tokenizer, text_encoder)
    scheduler = DDPMScheduler(**scheduler_config())
    unet = build_unet(config)
    unet.train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.learning_rate, weight_decay=0.0)
    min_fraction = config.min_lr_fraction
    cosine = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.steps)
    base_lambda = cosine.lr_lambdas[0]

    def lr_lambda(step: int) -> float:
        if step < config.warmup_steps:
            return base_lambda(step)
        return min_fraction + (1 - min_fraction) * base_lambda(step)

    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    log = {"loss": [], "validation": [], "wall_seconds": 0.0, "sessions": []}
    step = 0
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        saved = ToyTrainConfig.from_dict(state["config"])
        if saved != config:
            raise ValueError(
                f"{checkpoint_path} was written by another training configuration "
                f"({saved}); pass fresh=True (--fresh) to start again or use another work_dir."
            )
        unet.load_state_dict(state["unet"])
        optimizer.load_state_dict(state["optimizer"])
        lr_schedule.load_state_dict(state["lr_schedule"])
        log = state["log"]
        step = int(state["step"])
    val_batch = validation_batch(config, embed)

    def save(step: int) -> None:
        _save_atomic(
            {
                "config": asdict(config),
                "unet": unet.state_dict(),
                "optimizer": optimizer.state_dict(),
                "lr_schedule": lr_schedule.state_dict(),
                "log": log,
                "step": step,
            },
            checkpoint_path,
        )

    stop = config.steps if max_steps is None else min(config.steps, max_steps)
    session = {"start_step": step, "threads": torch.get_num_threads(), "started": time.time()}
    log["sessions"].append(session)
    if step == 0 and not log["validation"]:
        log["validation"].append([0, validation_loss(unet, scheduler, val_batch)])
    last = time.perf_counter()
    bar = tqdm(
        total=stop, initial=step, desc="training toy U-Net", unit="step", disable=not progress
    )
    while step < stop:
        pixels, timesteps, noise, text = training_batch(config, step, embed, scheduler)
        loss = epsilon_loss(unet, scheduler, pixels, timesteps, noise, text, config.snr_gamma)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), config.grad_clip)
        optimizer.step()
        lr_schedule.step()
        step += 1
        log["loss"].append(loss.item())
        now = time.perf_counter()
        log["wall_seconds"] += now - last
        last = now
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(log['loss'][-50:]):.4f}")
        if step % config.checkpoint_every == 0 or step == stop:
            log["validation"].append([step, validation_loss(unet, scheduler, val_batch)])
            session["end_step"] = step
            save(step)
            last = time.perf_counter()  # the time spent checkpointing is not training time
    bar.close()
    session["end_step"] = step
    unet.eval().requires_grad_(False)
    return TrainResult(unet, text_encoder, tokenizer, scheduler, config, log, work_dir)


def backbone_from_checkpoint(work_dir: Path | None = None):
    """A :class:`~difflens.backbone.Backbone` of a training checkpoint (for monitoring runs)."""
    from diffusers import DDPMScheduler

    from difflens.backbone import Backbone

    work_dir = Path(work_dir) if work_dir is not None else default_work_dir()
    path = work_dir / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no training checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    config = ToyTrainConfig.from_dict(state["config"])
    unet = build_unet(config)
    unet.load_state_dict(state["unet"])
    tokenizer, text_encoder = build_text_side(work_dir / "tokenizer", config.seed)
    return Backbone(
        unet=unet.eval().requires_grad_(False),
        scheduler=DDPMScheduler(**scheduler_config()),
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=None,
        model_id=f"toy checkpoint step {state['step']}",
        source=str(path),
    )


@torch.no_grad()
def sample(
    unet,
    scheduler_cfg: dict,
    embed: PromptEmbedder,
    prompts: list[str],
    steps: int = 50,
    seed: int = 0,
) -> np.ndarray:
    """Images (N, S, S, 3) uint8 generated with DDIM (eta 0) from the trained U-Net."""
    from diffusers import DDIMScheduler

    ddim = DDIMScheduler.from_config(scheduler_cfg)
    ddim.set_timesteps(steps)
    size = unet.config.sample_size
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((len(prompts), 3, size, size), generator=gen)
    text = embed(prompts)
    for t in ddim.timesteps:
        eps = unet(x, t, encoder_hidden_states=text, return_dict=False)[0]
        x = ddim.step(eps, t, x).prev_sample
    images = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1)
    return images.numpy()


def plot_loss_curve(log: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loss = np.asarray(log["loss"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, len(loss) + 1), loss, color="#bbbbbb", lw=0.6, label="training batch")
    window = min(50, len(loss))
    if window > 1:
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(
            np.arange(window, len(loss) + 1),
            smooth,
            color="#1f77b4",
            label=f"mean of {window} steps",
        )
    if log["validation"]:
        v = np.asarray(log["validation"])
        ax.plot(v[:, 0], v[:, 1], "o-", color="#d62728", ms=3, label="fixed validation batch")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("epsilon MSE")
    ax.set_title("toy U-Net training loss")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_sample_grid(images: np.ndarray, labels: list[str], path: Path, cols: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.25))
    for ax, image, label in zip(np.ravel(axes), images, labels):
        ax.imshow(image)
        ax.set_title(label or '""', fontsize=6)
    for ax in np.ravel(axes):
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def folder_megabytes(folder: Path, pattern: str = "*.safetensors") -> float:
    return sum(p.stat().st_size for p in Path(folder).rglob(pattern)) / 1e6


def export(result: TrainResult, out_dir: Path | None = None, samples: bool = True) -> Path:
    """Write the pipeline folder, model card, loss curve and samples; replace ``out_dir``."""
    import diffusers
    import transformers

    out_dir = Path(out_dir) if out_dir is not None else assets_path()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f"{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    result.unet.save_pretrained(tmp / "unet", safe_serialization=True)
    result.text_encoder.save_pretrained(tmp / "text_encoder", safe_serialization=True)
    result.scheduler.save_pretrained(tmp / "scheduler")
    result.tokenizer.save_pretrained(tmp / "tokenizer")
    (tmp / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "DifflensToyModel",
                "_diffusers_version": diffusers.__version__,
                "difflens": TOY_VERSION,
                "unet": ["diffusers", "UNet2DConditionModel"],
                "scheduler": ["diffusers", "DDPMScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "vae": [None, None],
            },
            indent=2,
        )
    )
    log = result.log
    (tmp / "training_log.json").write_text(
        json.dumps({"config": asdict(result.config), **log}, indent=1)
    )
    plot_loss_curve(log, tmp / "loss_curve.png")
    sample_prompts = []
    if samples:
        embed = PromptEmbedder(result.tokenizer, result.text_encoder)
        sample_prompts = [""] * 8 + [name for name in TOY_CLASSES for _ in range(2)]
        images = sample(result.unet, dict(result.scheduler.config), embed, sample_prompts)
        save_sample_grid(images, sample_prompts, tmp / "samples.png")
    megabytes = folder_megabytes(tmp)
    if megabytes > MAX_WEIGHTS_MB:
        raise RuntimeError(f"toy model weights are {megabytes:.1f} MB, over {MAX_WEIGHTS_MB} MB")
    (tmp / "MODEL_CARD.md").write_text(
        model_card(result, megabytes, diffusers.__version__, transformers.__version__, samples)
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def model_card(
    result: TrainResult, megabytes: float, diffusers_v: str, transformers_v: str, samples: bool
) -> str:
    config, log = result.config, result.log
    n_params = sum(p.numel() for p in result.unet.parameters())
    loss = np.asarray(log["loss"])
    final = float(loss[-min(50, len(loss)) :].mean()) if len(loss) else float("nan")
    val = log["validation"][-1][1] if log["validation"] else float("nan")
    steps = len(loss)
    seen = steps * config.batch_size
    ucfg = unet_config(
        config.image_size, config.channels, config.layers_per_block, config.attention
    )
    stage_sizes = [config.image_size // 2**k for k in range(len(config.channels))]
    lines = [
        f"# difflens toy model ({TOY_VERSION})",
        "",
        "A small pixel-space diffusion U-Net (diffusers `UNet2DConditionModel`) trained from scratch",
        "on difflens' toy world, so that the offline default of the notebooks has a model whose",
        "features should separate classes. It is the positive control of `difflens.controls`.",
        "",
        "## Data",
        f"- Toy-world scenes (`difflens.datasets.make_toy_scene`), class = shape ({', '.join(TOY_CLASSES)});",
        "  colour, texture, size, rotation and position drawn independently of class; 2-5 objects.",
        f"- Rendered on the fly from seeds {TRAIN_SEED_START:,} .. {TRAIN_SEED_START + seen - 1:,}"
        f" ({seen:,} distinct scenes, each seen once), rendered at"
        f" {' or '.join(f'{r} px' for r in config.render_sizes)} (chosen by seed)",
        f"  and resized to {config.image_size} px (bilinear), pixels scaled to [-1, 1]; no VAE.",
        "- Held out: seeds below 1,000,000 (ToyWorld's default seeds 0, 1, 2, ... and the",
        f"  validation seeds from {VALIDATION_SEED_START:,}) were never used for training.",
        "- Captions: the shapes present in the scene (e.g. `circle, square`), replaced by the empty",
        f"  prompt with probability {config.uncond_prob}.",
        "",
        "## Model",
        f"- U-Net: {n_params / 1e6:.2f} M parameters, blocks {list(ucfg['down_block_types'])},",
        f"  channels {list(ucfg['block_out_channels'])}, layers per block {list(ucfg['layers_per_block'])},"
        f" stages at {', '.join(f'{r} px' for r in stage_sizes)}, attention (one head) at"
        f" {', '.join(f'{r} px' for r, a in zip(stage_sizes, config.attention) if a)} and in"
        " the mid block.",
        "- Text encoder: a tiny CLIP text model (2 layers, width 64) with random, frozen weights and a",
        "  character tokenizer, as in difflens' built-in tiny model.",
        "- Scheduler: DDPM, 1000 steps, linear betas 1e-4 .. 0.02, epsilon prediction.",
        f"- Weights: safetensors, {megabytes:.1f} MB in total.",
        "",
        "## Training",
        "- Loss: MSE between the true noise and the U-Net's prediction (the standard DDPM",
        f"  objective) at timesteps drawn {config.timestep_sampling}ly, `scheduler.add_noise` for the"
        " forward process"
        + (
            f", examples weighted by min(SNR, {config.snr_gamma:g}) / SNR (Min-SNR)."
            if config.snr_gamma
            else "."
        ),
        f"- {steps:,} steps, batch {config.batch_size}, AdamW lr {config.learning_rate:g} (warm-up"
        f" {config.warmup_steps} steps, cosine decay to {config.min_lr_fraction:g} x), gradient"
        f" clipping {config.grad_clip:g}, seed {config.seed}.",
        f"- Final training loss (mean of the last 50 steps): {final:.4f}; loss of the fixed"
        f" validation batch ({config.validation_images} held-out scenes, timesteps spread over"
        f" 0..999, empty prompt): {val:.4f}.",
        f"- Wall time: {log['wall_seconds'] / 60:.1f} min of training on {platform.machine()} CPU"
        f" with {log['sessions'][-1]['threads']} thread(s) (shared machine; the time is noisy),"
        f" in {len(log['sessions'])} session(s).",
        f"- Software: torch {torch.__version__}, diffusers {diffusers_v}, transformers {transformers_v},"
        f" Python {sys.version.split()[0]}.",
        "- Reproduce: `make toy-model` (`python -m difflens.toymodel train`).",
        "",
        "![loss curve](loss_curve.png)",
    ]
    if samples:
        lines += [
            "",
            "## Samples",
            "DDIM, 50 steps, first row with the empty prompt, second row with one class name each:",
            "",
            "![samples](samples.png)",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m difflens.toymodel", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train (or resume) and write the model folder")
    defaults = ToyTrainConfig()
    p.add_argument("--steps", type=int, default=defaults.steps)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.learning_rate)
    p.add_argument("--image-size", type=int, default=defaults.image_size)
    p.add_argument("--render-sizes", type=int, nargs="+", default=list(defaults.render_sizes))
    p.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    p.add_argument("--snr-gamma", type=float, default=defaults.snr_gamma)
    p.add_argument("--timestep-sampling", default=defaults.timestep_sampling)
    p.add_argument("--channels", type=int, nargs="+", default=list(defaults.channels))
    p.add_argument(
        "--layers-per-block", type=int, nargs="+", default=list(defaults.layers_per_block)
    )
    p.add_argument(
        "--attention",
        type=int,
        nargs="+",
        default=[int(a) for a in defaults.attention],
        help="1 for a stage with transformer layers, 0 for a plain ResNet stage",
    )
    p.add_argument("--n-objects", type=int, nargs=2, default=list(defaults.n_objects))
    p.add_argument("--single-class-fraction", type=float, default=defaults.single_class_fraction)
    p.add_argument("--uncond-prob", type=float, default=defaults.uncond_prob)
    p.add_argument("--lognormal-mean", type=float, default=defaults.lognormal_mean)
    p.add_argument("--lognormal-std", type=float, default=defaults.lognormal_std)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (the committed model used one; other counts change the rounding)",
    )
    p.add_argument("--work-dir", type=Path, default=None, help="checkpoint folder (default: cache)")
    p.add_argument("--out", type=Path, default=None, help="model folder (default: package assets)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--max-steps", type=int, default=None, help="stop early; resume later")
    p.add_argument("--no-samples", action="store_true")
    args = parser.parse_args(argv)
    config = ToyTrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        image_size=args.image_size,
        render_sizes=tuple(args.render_sizes),
        warmup_steps=args.warmup_steps,
        snr_gamma=args.snr_gamma if args.snr_gamma and args.snr_gamma > 0 else None,
        timestep_sampling=args.timestep_sampling,
        n_objects=tuple(args.n_objects),
        single_class_fraction=args.single_class_fraction,
        uncond_prob=args.uncond_prob,
        channels=tuple(args.channels),
        layers_per_block=tuple(args.layers_per_block),
        attention=tuple(bool(a) for a in args.attention),
        lognormal_mean=args.lognormal_mean,
        lognormal_std=args.lognormal_std,
    )
    result = train(config, args.work_dir, args.threads, args.fresh, args.max_steps)
    if len(result.log["loss"]) < config.steps:
        print(f"stopped at step {len(result.log['loss'])} of {config.steps}; run again to resume")
        return 0
    out = export(result, args.out, samples=not args.no_samples)
    print(f"wrote {out} ({folder_megabytes(out):.1f} MB of weights)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
