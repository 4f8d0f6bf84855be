"""What prompt-embedding optimisation costs: counted FLOPs and a GPU time estimate.

The method runs, per source keypoint, ``k x steps`` forward and backward U-Net passes (plus a
VAE encoding of each crop) and ``k x inference_crops`` forward passes on the target. Its FLOPs
are counted once, at batch 1, with :class:`torch.utils.flop_counter.FlopCounterMode` (which
counts 2 FLOPs per multiply-add of the matrix products and convolutions it dispatches):

- :func:`pass_flops`: one U-Net forward, and the backward from the chosen layers' token maps
  to the context (weights frozen: no weight gradients). Either the full forward (Hedlin's
  code runs the whole U-Net and its output) or the forward stopped after the deepest chosen
  layer (what difflens runs);
- :func:`vae_encode_flops`: one VAE encoding (the latent of a crop);
- :func:`keypoint_flops`: the total per keypoint for a preset.

On ``device="meta"`` the count runs on shape-only tensors (no memory, no arithmetic); it
dispatches the same operators as real weights with diffusers' classic ``AttnProcessor`` (a test
checks the equality on the tiny model). Counting on a CPU with the default ``AttnProcessor2_0``
UNDERCOUNTS: PyTorch's CPU kernel of ``scaled_dot_product_attention`` has no FLOP formula and
counts 0, so every attention product would be missing.
:func:`gpu_seconds` turns FLOPs into an ESTIMATE of time under an assumed sustained
throughput (:data:`ASSUMED_GPU`); it is not a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from difflens.correspondence.prompt_optimisation import PromptPreset, get_prompt_preset
from difflens.features.attention import (
    CrossAttentionRegistry,
    record_cross_attention,
    run_recorded,
)
from difflens.models.sd_configs import CONFIGS, SD_VAE

__all__ = [
    "GpuAssumption",
    "ASSUMED_GPU",
    "pass_flops",
    "vae_encode_flops",
    "keypoint_flops",
    "architecture_flops",
    "sd_architecture_flops",
    "gpu_seconds",
]


@dataclass(frozen=True)
class GpuAssumption:
    """A GPU's assumed sustained throughput for the estimate.

    Attributes:
        name: what is assumed.
        tflops: sustained TFLOP/s assumed for the U-Net's passes.
        note: where the number comes from.
    """

    name: str
    tflops: float
    note: str


ASSUMED_GPU = GpuAssumption(
    name="one NVIDIA A100 in float32 (TF32 tensor cores)",
    tflops=40.0,
    note="an assumption, not a measurement: about a quarter of the A100's 156 TFLOP/s TF32 "
    "peak, for small batches of convolutions and attention at 64 x 64 latents",
)
"""The throughput :func:`gpu_seconds` uses by default (an assumption)."""


def _module_on(module: torch.nn.Module, device: str) -> torch.nn.Module:
    """The module itself, or a shape-only copy of its architecture on the meta device."""
    if device != "meta":
        return module
    with torch.device("meta"):
        return type(module).from_config(module.config).requires_grad_(False)


def pass_flops(
    unet: torch.nn.Module,
    image_size: int,
    *,
    latent_scale: int = 8,
    layers: list[str] | None = None,
    token_index: int = 1,
    stop_early: bool = True,
    batch: int = 1,
    device: str = "meta",
) -> dict[str, int]:
    """FLOPs of one U-Net forward and of the backward from the layers' maps to the context.

    Args:
        unet: a diffusers ``UNet2DConditionModel`` (its config is used on ``"meta"``).
        image_size: the image side in pixels.
        latent_scale: image pixels per latent pixel (8 for SD).
        layers: cross-attention names whose token maps the loss reads; ``None``: the
            backward runs from the U-Net's output instead.
        token_index: the token whose maps are read.
        stop_early: stop the forward after the deepest layer (``False``: the whole U-Net
            runs, as in Hedlin's code).
        batch: the batch size.
        device: ``"meta"`` (count without computing) or the U-Net's device.

    Returns:
        ``{"forward": ..., "backward": ...}`` FLOPs.
    """
    model = _module_on(unet, device)
    where = torch.device(device) if device == "meta" else next(unet.parameters()).device
    side = image_size // latent_scale
    x = torch.randn(batch, model.config.in_channels, side, side, device=where)
    context = torch.randn(batch, 77, model.config.cross_attention_dim, device=where)
    context.requires_grad_(True)
    t = torch.full((batch,), 140, device=where)
    with FlopCounterMode(display=False) as forward:
        if layers:
            registry = CrossAttentionRegistry.of(model, latent_scale)
            with record_cross_attention(
                registry, layers, tokens=token_index, keep_graph=True, stop_early=stop_early
            ) as record:
                out = run_recorded(model, x, t, context)
            loss = sum(record[name].float().sum() for name in layers)
        else:
            out = run_recorded(model, x, t, context)
            loss = out.float().sum()
    with FlopCounterMode(display=False) as backward:
        loss.backward()
    return {"forward": int(forward.get_total_flops()), "backward": int(backward.get_total_flops())}


def vae_encode_flops(vae: torch.nn.Module, image_size: int, device: str = "meta") -> int:
    """FLOPs of one VAE encoding (posterior mean) of a ``image_size`` square image.

    Args:
        vae: a diffusers ``AutoencoderKL`` (its config is used on ``"meta"``).
        image_size: the image side in pixels.
        device: ``"meta"`` or the VAE's device.

    Returns:
        FLOPs at batch 1.
    """
    model = _module_on(vae, device)
    where = torch.device(device) if device == "meta" else next(vae.parameters()).device
    pixels = torch.randn(1, 3, image_size, image_size, device=where)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        _ = model.encode(pixels).latent_dist.mean
    return int(counter.get_total_flops())


def keypoint_flops(
    preset: PromptPreset,
    optimisation: dict[str, int],
    inference_forward: int,
    vae: int = 0,
) -> dict[str, float]:
    """FLOPs of the method for one source keypoint under a preset.

    Args:
        preset: the method's settings (``n_embeddings``, ``steps``, ``inference_crops``).
        optimisation: :func:`pass_flops` of an optimisation pass (forward and backward).
        inference_forward: forward FLOPs of an inference pass.
        vae: FLOPs of one VAE encoding (0 for a pixel-space model).

    Returns:
        ``optimisation``, ``inference`` and ``total`` FLOPs, and the pass counts
        ``optimisation_passes`` and ``inference_passes`` (per embedding and crop / step).
    """
    k = preset.n_embeddings
    per_step = optimisation["forward"] + optimisation["backward"] + vae
    opt = k * preset.steps * per_step
    inf = k * preset.inference_crops * (inference_forward + vae)
    return {
        "optimisation": float(opt),
        "inference": float(inf),
        "total": float(opt + inf),
        "optimisation_passes": float(k * preset.steps),
        "inference_passes": float(k * preset.inference_crops),
    }


def gpu_seconds(flops: float, gpu: GpuAssumption = ASSUMED_GPU) -> float:
    """An ESTIMATE of the time ``flops`` take at the assumed sustained throughput.

    Args:
        flops: floating-point operations.
        gpu: the assumed throughput (:data:`ASSUMED_GPU`).

    Returns:
        Seconds.
    """
    return flops / (gpu.tflops * 1e12)


def architecture_flops(
    unet: torch.nn.Module,
    vae: torch.nn.Module | None,
    preset: PromptPreset,
    image_size: int | None = None,
    latent_scale: int = 8,
    device: str = "meta",
) -> dict[str, float]:
    """Counted FLOPs of one keypoint under a preset, as difflens runs it and as Hedlin's code.

    difflens stops every pass after the deepest chosen layer; Hedlin's code runs the whole
    U-Net forward (the backward is the same: only what the maps depend on is differentiated).

    Args:
        unet: the U-Net (its config is used on ``"meta"``).
        vae: the VAE, or ``None`` for a pixel-space model.
        preset: the method's settings (layers, token, counts of passes).
        image_size: the image side (default: the preset's).
        latent_scale: image pixels per latent pixel (1 without a VAE).
        device: ``"meta"`` or the modules' device.

    Returns:
        FLOPs at batch 1: ``forward_stopped``, ``forward_full``, ``backward``, ``vae_encode``,
        ``per_keypoint`` (difflens) and ``per_keypoint_full_forward`` (Hedlin's code).
    """
    size = image_size or preset.image_size
    registry = CrossAttentionRegistry.of(unet, latent_scale)
    layers = registry.resolve(preset.layers, preset.exclude_full_resolution)
    options = {"latent_scale": latent_scale, "token_index": preset.token_index, "device": device}
    stopped = pass_flops(unet, size, layers=layers, **options)
    full = pass_flops(unet, size, layers=layers, stop_early=False, **options)
    encode = vae_encode_flops(vae, size, device) if vae is not None else 0
    ours = keypoint_flops(preset, stopped, stopped["forward"], encode)
    theirs = keypoint_flops(preset, full, full["forward"], encode)
    return {
        "forward_stopped": float(stopped["forward"]),
        "forward_full": float(full["forward"]),
        "backward": float(stopped["backward"]),
        "vae_encode": float(encode),
        "per_keypoint": ours["total"],
        "per_keypoint_full_forward": theirs["total"],
    }


def sd_architecture_flops(
    version: str = "1.5", preset: str | PromptPreset = "hedlin", image_size: int = 512
) -> dict[str, float]:
    """:func:`architecture_flops` of an SD architecture, counted on shape-only tensors.

    The U-Net and VAE are built from :mod:`difflens.models.sd_configs` on the meta device:
    no weights are allocated and nothing is computed.

    Args:
        version: ``"1.5"`` or ``"2"``.
        preset: the method's settings (default: Hedlin's).
        image_size: the image side in pixels.

    Returns:
        As :func:`architecture_flops`.

    Raises:
        ValueError: an unknown SD version.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    if version not in CONFIGS:
        raise ValueError(f"unknown SD version {version!r}: use one of {sorted(CONFIGS)}")
    with torch.device("meta"):
        unet = UNet2DConditionModel(**CONFIGS[version][0]).requires_grad_(False)
        vae = AutoencoderKL(**SD_VAE).requires_grad_(False)
    return architecture_flops(unet, vae, get_prompt_preset(preset), image_size, 8)
