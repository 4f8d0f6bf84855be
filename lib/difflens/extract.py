"""Feature extraction: image -> VAE latent -> noised latent at t -> U-Net -> captured layers.

Layers are captured with ``register_forward_hook`` on the diffusers submodules named by the
:class:`~difflens.layers.LayerRegistry`; the hooks are removed by a context manager, also
when a pass fails, and the forward pass is cut short right after the deepest requested
layer has produced its output.

Timestep convention: ``t = 0`` feeds the clean latent (no noise is added) with timestep 0,
the paper's setting; ``t > 0`` noises the latent with the model's own scheduler
(``scheduler.add_noise``) using a seeded generator, as DIFT does.

Resize policy: every image is resized to ``image_size x image_size`` (bilinear, aspect ratio
not kept), as the paper resizes to 512 x 512; instance masks are later resized to each
feature map from their original size, so image and masks stay aligned.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from difflens.backbone import Backbone
from difflens.layers import LayerRegistry


class _StopForward(Exception):
    """Raised by the last hook to end the forward pass early."""


def _first_tensor(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return _first_tensor(output[0])
    sample = getattr(output, "sample", None)
    if isinstance(sample, torch.Tensor):
        return sample
    raise TypeError(f"cannot find a tensor in a module output of type {type(output).__name__}")


@contextmanager
def capture(
    registry: LayerRegistry, layers: Sequence[str], stop_early: bool = True
) -> Iterator[dict]:
    """Hook ``layers`` of the registry's U-Net; yields the dict their outputs are written to.

    With ``stop_early`` the hook of the deepest layer raises an internal exception that
    :func:`run_unet` swallows, so nothing after it is computed.
    """
    infos = [registry.info(name) for name in layers]  # raises on unknown names, before hooking
    deepest = max(infos, key=lambda info: info.order).name
    captured: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(name: str):
        def hook(module, inputs, output):
            captured[name] = _first_tensor(output)
            if stop_early and name == deepest:
                raise _StopForward

        return hook

    try:
        for info in infos:
            module = registry.module(info.name)
            handles.append(module.register_forward_hook(make_hook(info.name)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def run_unet(
    unet: torch.nn.Module,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    text_embeddings: torch.Tensor,
) -> None:
    """One U-Net forward pass whose only purpose is to fire the capture hooks."""
    try:
        unet(latents, timesteps, encoder_hidden_states=text_embeddings, return_dict=False)
    except _StopForward:
        pass


def images_to_tensor(images: Sequence[np.ndarray], image_size: int) -> torch.Tensor:
    """Resize RGB uint8 images to ``image_size`` squared and scale them to [-1, 1], NCHW."""
    batch = []
    for index, image in enumerate(images):
        array = np.asarray(image)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise ValueError(f"image {index}: expected (H, W, 3) RGB, got shape {array.shape}")
        array = array[..., :3]
        pil = Image.fromarray(array.astype(np.uint8)).resize(
            (image_size, image_size), Image.BILINEAR
        )
        batch.append(np.asarray(pil, dtype=np.float32) / 127.5 - 1.0)
    return torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous()


class FeatureExtractor:
    """Capture U-Net layer outputs for images at a timestep.

    Args:
        backbone: from :func:`difflens.backbone.load_backbone`.
        image_size: side in pixels images are resized to (a multiple of 8 for SD).
        prompt: text prompt for the cross-attention (``""``, the paper's empty prompt).
        latent: ``"mean"`` of the VAE posterior (default) or ``"sample"`` (seeded).
        seed: seed of the noise generator (and of posterior samples).
    """

    def __init__(
        self,
        backbone: Backbone,
        image_size: int = 512,
        prompt: str = "",
        latent: str = "mean",
        seed: int = 0,
    ):
        multiple = backbone.latent_scale * 2 ** (len(backbone.unet.config.block_out_channels) - 1)
        if image_size % multiple:
            raise ValueError(
                f"image_size={image_size} must be a multiple of {multiple} for this model "
                f"(VAE factor {backbone.latent_scale} x U-Net downsampling)"
            )
        if latent not in ("mean", "sample"):
            raise ValueError(f"latent must be 'mean' or 'sample', got {latent!r}")
        self.backbone = backbone
        self.registry = LayerRegistry(backbone.unet, backbone.latent_scale)
        self.image_size = image_size
        self.prompt = prompt
        self.latent = latent
        self.seed = seed
        self._embeddings: dict[str, torch.Tensor] = {}

    @property
    def num_train_timesteps(self) -> int:
        return int(self.backbone.scheduler.config.num_train_timesteps)

    def text_embedding(self, prompt: str | None = None) -> torch.Tensor:
        """The text encoder's last hidden state for ``prompt`` (shape ``1 x L x D``)."""
        prompt = self.prompt if prompt is None else prompt
        if prompt not in self._embeddings:
            backbone = self.backbone
            if backbone.text_encoder is None or backbone.tokenizer is None:
                dim = backbone.unet.config.cross_attention_dim
                self._embeddings[prompt] = torch.zeros(
                    1, 1, dim, device=backbone.device, dtype=backbone.dtype
                )
            else:
                tokens = backbone.tokenizer(
                    prompt,
                    padding="max_length",
                    max_length=backbone.tokenizer.model_max_length,
                    truncation=True,
                    return_tensors="pt",
                )
                with torch.no_grad():
                    hidden = backbone.text_encoder(tokens.input_ids.to(backbone.device))[0]
                self._embeddings[prompt] = hidden.to(backbone.dtype)
        return self._embeddings[prompt]

    @torch.no_grad()
    def encode(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """VAE latents (scaled by the VAE's ``scaling_factor``) of resized images."""
        backbone = self.backbone
        pixels = images_to_tensor(images, self.image_size).to(backbone.device, backbone.dtype)
        if backbone.vae is None:
            return pixels
        posterior = backbone.vae.encode(pixels).latent_dist
        if self.latent == "mean":
            latents = posterior.mean
        else:
            generator = torch.Generator(device="cpu").manual_seed(self.seed)
            noise = torch.randn(posterior.mean.shape, generator=generator).to(posterior.mean)
            latents = posterior.mean + posterior.std * noise
        return latents * backbone.scaling_factor

    def noised(
        self, latents: torch.Tensor, timestep: int, noise_seed: int | None = None
    ) -> torch.Tensor:
        """``latents`` noised to ``timestep`` by the scheduler; ``t = 0`` returns them unchanged."""
        if not 0 <= timestep < self.num_train_timesteps:
            raise ValueError(
                f"timestep {timestep} is outside the scheduler's range 0..{self.num_train_timesteps - 1}"
            )
        if timestep == 0:
            return latents
        generator = torch.Generator(device="cpu").manual_seed(
            self.seed if noise_seed is None else noise_seed
        )
        noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents)
        t = torch.full((latents.shape[0],), timestep, dtype=torch.long)
        return self.backbone.scheduler.add_noise(latents, noise, t.to(latents.device))

    @torch.no_grad()
    def features_from_latents(
        self,
        latents: torch.Tensor,
        layers: Sequence[str],
        timestep: int = 0,
        stop_early: bool = True,
        noise_seed: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Outputs of ``layers`` for a batch of latents, as float32 CPU tensors (B, C, h, w)."""
        backbone = self.backbone
        x = self.noised(latents, timestep, noise_seed)
        embedding = self.text_embedding().expand(x.shape[0], -1, -1)
        t = torch.full((x.shape[0],), timestep, device=x.device, dtype=torch.long)
        with capture(self.registry, layers, stop_early=stop_early) as captured:
            run_unet(backbone.unet, x, t, embedding)
        missing = [name for name in layers if name not in captured]
        if missing:
            raise RuntimeError(f"layers {missing} did not fire during the forward pass")
        return {name: captured[name].float().cpu() for name in layers}

    def features(
        self,
        images: Sequence[np.ndarray],
        layers: Sequence[str],
        timestep: int = 0,
        stop_early: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Outputs of ``layers`` for RGB uint8 images."""
        return self.features_from_latents(self.encode(images), layers, timestep, stop_early)


def concat_layers(
    features: dict[str, torch.Tensor], layers: Sequence[str] | None = None
) -> torch.Tensor:
    """Bilinearly resize maps to the largest one among ``layers`` and concatenate channels.

    This is the paper's optional step 3 (e.g. its "64 + 32 + 16" features).
    """
    layers = list(features) if layers is None else list(layers)
    maps = [features[name] for name in layers]
    h = max(m.shape[-2] for m in maps)
    w = max(m.shape[-1] for m in maps)
    resized = [
        m
        if m.shape[-2:] == (h, w)
        else F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
        for m in maps
    ]
    return torch.cat(resized, dim=1)
