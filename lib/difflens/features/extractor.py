"""Feature extraction: image -> VAE latent -> noised latent at t -> U-Net -> captured layers.

Layers are captured with ``register_forward_hook`` on the diffusers submodules named by the
:class:`~difflens.models.layers.LayerRegistry`; the hooks are removed by a context manager, also
when a pass fails, and the forward pass is cut short right after the deepest requested
layer has produced its output.

One forward pass serves many *settings*: the rows of a U-Net batch are every
(image, timestep, noise draw) that the requested :class:`Setting` s need, each row with its
own timestep, and a DIFT-style ensemble is the mean of a layer's maps over ``n`` seeded noise
draws of the same image.

Conventions (each one a parameter; the defaults reproduce the paper):

- **Timestep.** ``t = 0`` feeds the clean latent (no noise is added) with timestep 0, the
  paper's setting; ``t > 0`` noises the latent with the model's own scheduler
  (``scheduler.add_noise``, computed in float32) and a seeded generator. ``t`` must lie in
  ``0 .. num_train_timesteps - 1``.
- **Noise.** Draw ``k`` of an extractor with seed ``s`` is ``torch.randn`` from a CPU generator
  seeded with ``s + k``. ``noise="shared"`` (default) gives every image the same draws, so a
  distance between two images reflects the images and not two different noise samples, and
  an image's features never depend on the batch it was computed in; ``noise="per-image"``
  seeds each image's draws with a hash of ``(s, k, image content)`` instead.
- **Resize policy.** Every image is resized to ``image_size`` (an int for a square, or
  ``(height, width)``) with bilinear filtering and without keeping the aspect ratio, as the
  paper resizes to 512 x 512; instance masks are resized to each feature map from their
  original size, so image and masks stay aligned. Sizes must be multiples of the model's
  VAE factor (8 for SD); sides that are not multiples of the U-Net's downsampling too (64
  px for SD) give deep maps rounded up, as diffusers' U-Net computes them.
- **Colour.** Images are ``(H, W, 3)`` uint8 RGB. Grey and RGBA images are rejected with a
  message (``colour="strict"``, default) or converted (``colour="convert"``: grey is
  replicated to three channels, alpha is dropped).
- **Latent.** ``latent="mean"`` (default) takes the VAE posterior mean, ``"sample"`` one
  seeded posterior sample (the same draw for every image), and ``"sample-per-draw"`` one
  posterior sample per ensemble draw, as DIFT draws them (Tang et al. 2023,
  ``Tsingularity/dift: src/models/dift_sd.py``: the image repeated ``n`` times in one batch,
  each copy its own posterior sample and its own noise, one U-Net pass, the mean over the
  copies). The image is encoded once; draw ``k`` samples ``mean + std * e_k`` with ``e_k``
  from a generator seeded with :func:`~difflens.features.settings.draw_seed` of
  ``(seed, k, "vae-posterior")`` (``"vae-posterior:<image key>"`` with per-image noise),
  which equals encoding ``n`` copies and sampling each (``n`` times cheaper). In that mode
  every draw differs even at ``t = 0``, so an ensemble runs all its draws there too.
- **Prompt.** ``""`` (the paper's empty prompt), free text, or a template with ``{class}``,
  filled per image with its class names joined by " and " (``"a photo of a {class}"`` ->
  ``"a photo of a cat and dog"``).
- **Precision and device.** The backbone's (``load_backbone(device=..., dtype=...)``), or
  the extractor's ``device`` / ``dtype`` arguments, which move the backbone in place. Captured
  maps are always returned as float32 CPU tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from difflens.core.errors import BadInputError
from difflens.core.paths import cache_dir
from difflens.data.images import COLOUR_MODES, check_image, image_list, images_to_tensor
from difflens.features.hooks import capture, check_fired, run_unet
from difflens.features.settings import NOISE_MODES, Setting, as_setting, draw_noise, draw_seed
from difflens.features.store import KEY_VERSION, FeatureStore, get_or_compute, image_digest
from difflens.models.backbone import Backbone, load_backbone, parse_dtype
from difflens.models.layers import LayerRegistry
from difflens.models.text import PromptCache

LATENT_MODES = ("mean", "sample", "sample-per-draw")
"""How a VAE latent is taken from the posterior (module docstring)."""
PER_DRAW = "sample-per-draw"


class FeatureExtractor:
    """Capture U-Net layer outputs for images at one or many settings.

    Args:
        backbone: from :func:`difflens.models.backbone.load_backbone`.
        image_size: side in pixels (or ``(height, width)``) images are resized to; a
            multiple of the VAE factor (8 for SD; 64 keeps every map an exact fraction).
        prompt: text for the cross-attention: ``""`` (the paper's empty prompt), free text,
            or a template with ``{class}``.
        latent: ``"mean"`` of the VAE posterior (default), ``"sample"`` (one seeded sample)
            or ``"sample-per-draw"`` (one sample per ensemble draw, DIFT).
        seed: seed of the noise draws and of posterior samples.
        noise: ``"shared"`` (every image gets the same draws) or ``"per-image"``.
        colour: ``"strict"`` rejects grey and RGBA images, ``"convert"`` converts them.
        device: if given, the backbone is moved there in place (``"cpu"``, ``"cuda"``).
        dtype: if given, the backbone is cast to it in place (``torch.float32``, ``"bf16"``).
        store: a :class:`~difflens.features.store.FeatureStore` or its folder; latents are
            then cached per image, size and VAE, and the pipeline functions use it by default.
        max_batch: most rows (image x timestep x draw) per U-Net forward (``None``: all).

    Attributes:
        backbone: the model (its ``unet`` may be compiled or wrapped; see
            :mod:`difflens.models.wrappers`).
        registry: the :class:`~difflens.models.layers.LayerRegistry` of the unwrapped U-Net.
        size: ``(height, width)`` in pixels that images are resized to.
        store: the feature store, or ``None``.
        prompts: the :class:`~difflens.models.text.PromptCache` of text embeddings.

    Raises:
        ValueError: ``latent``, ``noise``, ``colour`` or ``max_batch`` is not one of the
            allowed values; also (as :class:`~difflens.core.errors.BadInputError`) when
            ``image_size`` is not a positive multiple of the model's VAE factor.
    """

    def __init__(
        self,
        backbone: Backbone,
        image_size: int | tuple[int, int] = 512,
        prompt: str = "",
        latent: str = "mean",
        seed: int = 0,
        *,
        noise: str = "shared",
        colour: str = "strict",
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        store: FeatureStore | str | Path | None = None,
        max_batch: int | None = None,
    ):
        if latent not in LATENT_MODES:
            raise ValueError(f"latent must be one of {LATENT_MODES}, got {latent!r}")
        if noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
        if colour not in COLOUR_MODES:
            raise ValueError(f"colour must be one of {COLOUR_MODES}, got {colour!r}")
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.size = _checked_size(backbone, image_size)
        if device is not None or dtype is not None:
            backbone.to(device=device, dtype=None if dtype is None else parse_dtype(dtype))
        self.backbone = backbone
        self.registry = LayerRegistry(backbone.unet, backbone.latent_scale)
        self.image_size = image_size
        self.prompt = prompt
        self.latent = latent
        self.seed = seed
        self.noise = noise
        self.colour = colour
        self.store = FeatureStore(store) if isinstance(store, (str, Path)) else store
        self.max_batch = max_batch
        self.prompts = PromptCache(
            backbone.tokenizer, backbone.text_encoder, backbone.base_unet.config.cross_attention_dim
        )

    # ----------------------------------------------------------------- description
    @property
    def num_train_timesteps(self) -> int:
        """T, the scheduler's number of training timesteps (1000 for SD); t lies in 0..T-1."""
        return int(self.backbone.scheduler.config.num_train_timesteps)

    def config(self) -> dict:
        """Everything about this extractor that shapes a feature (used in cache keys).

        The device is left out on purpose: a cache filled on a GPU serves a CPU run.

        Returns:
            JSON-able dict: key version, model id and fingerprint, image size, resize
            filter, dtype name, prompt, latent mode, seed and noise mode.
        """
        return {
            "version": KEY_VERSION,
            "model": self.backbone.model_id,
            "fingerprint": self.backbone.fingerprint(),
            "image_size": list(self.size),
            "resize": "bilinear",
            "dtype": str(self.backbone.dtype).removeprefix("torch."),
            "prompt": self.prompt,
            "latent": self.latent,
            "seed": self.seed,
            "noise": self.noise,
        }

    def latents_config(self) -> dict:
        """What shapes a VAE latent: the VAE's weights, the size, dtype and latent mode.

        Returns:
            JSON-able dict used as the key fields of ``"latents"`` store entries.
        """
        return {
            "version": KEY_VERSION,
            "vae": self.backbone.component_fingerprint("vae"),
            "image_size": list(self.size),
            "resize": "bilinear",
            "dtype": str(self.backbone.dtype).removeprefix("torch."),
            "latent": self.latent,
            "seed": self.seed if self.latent == "sample" else None,
        }

    def check_setting(self, setting: Setting | int) -> Setting:
        """The setting, checked against the scheduler's timestep range.

        Args:
            setting: a :class:`~difflens.features.settings.Setting` or a bare timestep
                (scheduler index 0..T-1).

        Returns:
            The setting as a :class:`~difflens.features.settings.Setting`.

        Raises:
            BadInputError: its timestep lies outside ``0..num_train_timesteps - 1``.
        """
        setting = as_setting(setting)
        if not 0 <= setting.timestep < self.num_train_timesteps:
            raise BadInputError(
                f"timestep {setting.timestep} is outside the scheduler's range "
                f"0..{self.num_train_timesteps - 1} (setting {setting.label})"
            )
        return setting

    def draws(self, setting: Setting) -> int:
        """Draws an ensemble runs: ``setting.draws``, or every one with per-draw sampling.

        Args:
            setting: the setting.

        Returns:
            ``setting.ensemble`` under ``latent="sample-per-draw"`` with a VAE (each draw has
            its own posterior sample, also at ``t = 0``), else ``setting.draws`` (1 at t = 0).
        """
        if self.latent == PER_DRAW and self.backbone.vae is not None:
            return setting.ensemble
        return setting.draws

    def key_setting(self, setting: Setting) -> Setting:
        """The setting as it enters cache keys: the ensemble as many draws as actually run.

        Args:
            setting: the setting.

        Returns:
            ``Setting(timestep, draws(setting))``.
        """
        return Setting(setting.timestep, self.draws(setting))

    def prompt_for(self, class_names: Sequence[str] = ()) -> str:
        """The prompt of one image: the template filled with its class names, if it has one.

        Args:
            class_names: the image's class names (repeats are dropped, order kept); none
                gives ``"object"``.

        Returns:
            The extractor's prompt, with ``{class}`` replaced by the names joined by
            ``" and "``.
        """
        if "{class}" not in self.prompt:
            return self.prompt
        unique = list(dict.fromkeys(class_names))
        return self.prompt.replace("{class}", " and ".join(unique) if unique else "object")

    def text_embedding(self, prompt: str | None = None) -> torch.Tensor:
        """The text encoder's last hidden state for ``prompt`` (default: the extractor's).

        Args:
            prompt: the text; without a text encoder every prompt is one zero token.

        Returns:
            ``(1, tokens, width)`` tensor on the backbone's device and dtype.
        """
        prompt = self.prompt if prompt is None else prompt
        return self.prompts.embedding(prompt, self.backbone.device, self.backbone.dtype)

    # ----------------------------------------------------------------- latents
    @torch.no_grad()
    def _encode_pixels(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Resize, scale to [-1, 1] and VAE-encode images (pixels as they are without a VAE)."""
        backbone = self.backbone
        pixels = images_to_tensor(images, self.size, self.colour)
        pixels = pixels.to(backbone.device, backbone.dtype)
        if backbone.vae is None:
            return pixels
        posterior = backbone.vae.encode(pixels).latent_dist
        if self.latent == PER_DRAW:  # mean and std; draws are sampled per row
            return torch.cat([posterior.mean, posterior.std], 1) * backbone.scaling_factor
        if self.latent == "mean":
            latents = posterior.mean
        else:
            noise = torch.stack(
                [draw_noise(posterior.mean.shape[1:], self.seed) for _ in range(len(images))]
            ).to(posterior.mean)
            latents = posterior.mean + posterior.std * noise
        return latents * backbone.scaling_factor

    def encode(
        self, images: Sequence[np.ndarray], store: FeatureStore | None = None
    ) -> torch.Tensor:
        """VAE latents (scaled by the VAE's ``scaling_factor``) of resized images.

        With a store (the argument, else the extractor's), latents are read from and
        written to it per image; a posterior sample uses the same seeded draw for every
        image, so an image's latent never depends on its batch.

        Args:
            images: ``(H, W, 3)`` uint8 RGB arrays (any size; resized to :attr:`size`).
            store: the cache to use (default: the extractor's; ``None`` there: no cache).

        Returns:
            ``(B, 4, h, w)`` latents (``h = height / 8`` for SD), or ``(B, 3, H, W)``
            pixels in [-1, 1] without a VAE, on the backbone's device and dtype. With
            ``latent="sample-per-draw"`` and a VAE: ``(B, 8, h, w)``, the scaled posterior
            mean (channels 0-3) then its standard deviation (4-7), from which
            :meth:`features_for_settings` samples one latent per draw.
        """
        images = image_list(images)
        store = self.store if store is None else store
        if store is None:
            return self._encode_pixels(images)
        arrays = [check_image(image, f"image {i}", self.colour) for i, image in enumerate(images)]
        fields = [{**self.latents_config(), "image": image_digest(a)} for a in arrays]

        def compute(missing: list[int]) -> list:
            fresh = self._encode_pixels([arrays[i] for i in missing])
            return [({"latent": latent.float().cpu().numpy()}, {}) for latent in fresh]

        entries = get_or_compute(store, "latents", fields, compute)
        out = torch.stack([torch.from_numpy(entry.arrays["latent"]) for entry in entries])
        return out.to(device=self.backbone.device, dtype=self.backbone.dtype)

    def noised(
        self,
        latents: torch.Tensor,
        timestep: int,
        noise_seed: int | None = None,
        draw: int = 0,
        keys: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """``latents`` noised to ``timestep`` by the scheduler; ``t = 0`` returns them unchanged.

        Args:
            latents: ``(B, C, h, w)`` clean latents.
            timestep: scheduler index 0..T-1.
            noise_seed: overrides the extractor's seed.
            draw: the noise draw ``k`` (generator seed ``seed + k`` with shared noise).
            keys: one image content key per row, needed for ``noise="per-image"``.

        Returns:
            ``scheduler.add_noise(latents, noise, t)`` computed in float32, then cast back
            to ``latents``' dtype and device.
        """
        self.check_setting(timestep)
        if timestep == 0:
            return latents
        t = torch.full((latents.shape[0],), timestep, dtype=torch.long)
        seeds = self._row_seeds([draw] * latents.shape[0], keys, noise_seed)
        return self._add_noise(latents, t, seeds)

    def _row_seeds(
        self,
        draws: Sequence[int],
        keys: Sequence[str] | None,
        seed: int | None = None,
    ) -> list[int]:
        """The noise generator seed of each row (see the module docstring on noise)."""
        seed = self.seed if seed is None else seed
        if self.noise == "shared":
            return [draw_seed(seed, d) for d in draws]
        if keys is None:
            raise ValueError("noise='per-image' needs a key (image content hash) per image")
        return [draw_seed(seed, d, k) for d, k in zip(draws, keys)]

    def _add_noise(
        self, latents: torch.Tensor, timesteps: torch.Tensor, seeds: Sequence[int]
    ) -> torch.Tensor:
        """Rows with ``t > 0`` get ``scheduler.add_noise`` (in float32); ``t = 0`` rows stay."""
        clean = latents.float().cpu()
        noise = torch.stack([draw_noise(clean.shape[1:], s) for s in seeds])
        noisy = self.backbone.scheduler.add_noise(clean, noise, timesteps.cpu())
        keep = (timesteps.cpu() == 0).view(-1, 1, 1, 1)
        out = torch.where(keep, clean, noisy)
        return out.to(device=latents.device, dtype=latents.dtype)

    # ----------------------------------------------------------------- features
    @torch.no_grad()
    def features_for_settings(
        self,
        latents: torch.Tensor,
        layers: Sequence[str],
        settings: Sequence[Setting | int],
        *,
        stop_early: bool = True,
        prompts: Sequence[str] | None = None,
        keys: Sequence[str] | None = None,
        noise_seed: int | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Maps of ``layers`` for every setting, from one batched forward pass per chunk.

        The U-Net batch holds one row per distinct (image, timestep, noise draw) the
        settings need (a draw shared by two settings of one timestep is run once), in
        chunks of ``max_batch`` rows.

        Args:
            latents: ``(B, C, h, w)`` clean latents, from :meth:`encode`.
            layers: layer names (repeats are captured once).
            settings: :class:`~difflens.features.settings.Setting` s or bare timesteps.
            stop_early: end each pass after the deepest requested layer.
            prompts: one prompt per image (default: :meth:`prompt_for` with no classes).
            keys: one content key per image, for ``noise="per-image"``.
            noise_seed: overrides the extractor's seed for the noise draws.

        Returns:
            Per setting, ``layer -> (B, C_layer, h_layer, w_layer)`` float32 CPU tensors,
            averaged over the setting's noise draws.

        Raises:
            ValueError: ``prompts`` does not hold one prompt per image.
        """
        settings = [self.check_setting(s) for s in settings]
        layers = list(dict.fromkeys(self.registry.check(layers)))  # each layer once
        n = latents.shape[0]
        if prompts is not None and len(prompts) != n:
            raise ValueError(f"{len(prompts)} prompts for {n} images")
        rows = _plan_rows(settings, n, self.draws)
        x, timesteps, embeddings = self._batch_inputs(
            latents, list(rows), prompts, keys, noise_seed
        )
        maps = self._run_chunks(x, timesteps, embeddings, layers, stop_early)
        return [_setting_maps(maps, rows, setting, n, self.draws(setting)) for setting in settings]

    def _batch_inputs(
        self,
        latents: torch.Tensor,
        order: list[tuple[int, int, int]],
        prompts: Sequence[str] | None,
        keys: Sequence[str] | None,
        noise_seed: int | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Noised latents, timesteps and text embeddings of the rows ``(image, t, draw)``."""
        image_index = [i for i, _, _ in order]
        timesteps = torch.tensor([t for _, t, _ in order], dtype=torch.long)
        row_keys = None if keys is None else [keys[i] for i in image_index]
        seeds = self._row_seeds([d for _, _, d in order], row_keys, noise_seed)
        x = self._add_noise(self._row_latents(latents, order, row_keys), timesteps, seeds)
        prompt_list = [self.prompt_for()] * latents.shape[0] if prompts is None else list(prompts)
        embeddings = self.prompts(
            [prompt_list[i] for i in image_index], self.backbone.device, self.backbone.dtype
        )
        return x, timesteps, embeddings

    def _row_latents(
        self, latents: torch.Tensor, order: list[tuple[int, int, int]], keys: Sequence[str] | None
    ) -> torch.Tensor:
        """Clean latents of the rows; per-draw posterior samples under ``"sample-per-draw"``."""
        rows = latents[[i for i, _, _ in order]]
        if self.latent != PER_DRAW or self.backbone.vae is None:
            return rows
        mean, std = rows.float().chunk(2, dim=1)
        if self.noise == "shared" or keys is None:
            tags = ["vae-posterior"] * len(order)
        else:
            tags = [f"vae-posterior:{k}" for k in keys]
        eps = torch.stack(
            [
                draw_noise(mean.shape[1:], draw_seed(self.seed, d, t))
                for (_, _, d), t in zip(order, tags)
            ]
        ).to(mean.device)
        return (mean + std * eps).to(latents.dtype)

    def _run_chunks(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        embeddings: torch.Tensor,
        layers: list[str],
        stop_early: bool,
    ) -> dict[str, torch.Tensor]:
        """Hooked U-Net passes over chunks of ``max_batch`` rows; float32 CPU maps per layer."""
        chunk = self.max_batch or len(x)
        outputs: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
        unet = self.backbone.unet
        with capture(self.registry, layers, stop_early=stop_early) as captured:
            for start in range(0, len(x), chunk):
                stop = start + chunk
                captured.clear()
                run_unet(
                    unet, x[start:stop], timesteps[start:stop].to(x.device), embeddings[start:stop]
                )
                check_fired(captured, layers, unet)
                for name in layers:
                    outputs[name].append(captured[name].float().cpu())
        return {name: torch.cat(parts) for name, parts in outputs.items()}

    def features_from_latents(
        self,
        latents: torch.Tensor,
        layers: Sequence[str],
        timestep: int = 0,
        stop_early: bool = True,
        noise_seed: int | None = None,
        *,
        ensemble: int = 1,
        prompts: Sequence[str] | None = None,
        keys: Sequence[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Outputs of ``layers`` for a batch of latents at one timestep and ensemble size.

        Args:
            latents: ``(B, C, h, w)`` clean latents, from :meth:`encode`.
            layers: layer names.
            timestep: scheduler index 0..T-1 (0: the clean latent, the paper's setting).
            stop_early: end the pass after the deepest requested layer.
            noise_seed: overrides the extractor's seed for the noise draws.
            ensemble: noise draws averaged (DIFT-style; one forward at ``t = 0``).
            prompts: one prompt per image (default: the extractor's).
            keys: one content key per image, for ``noise="per-image"``.

        Returns:
            ``layer -> (B, C, h, w)`` float32 CPU tensors.
        """
        return self.features_for_settings(
            latents,
            layers,
            [Setting(timestep, ensemble)],
            stop_early=stop_early,
            prompts=prompts,
            keys=keys,
            noise_seed=noise_seed,
        )[0]

    def features(
        self,
        images: Sequence[np.ndarray],
        layers: Sequence[str],
        timestep: int = 0,
        stop_early: bool = True,
        *,
        ensemble: int = 1,
        prompts: Sequence[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Outputs of ``layers`` for RGB uint8 images at one timestep (and ensemble size).

        Args:
            images: ``(H, W, 3)`` uint8 RGB arrays (resized to :attr:`size`).
            layers: layer names.
            timestep: scheduler index 0..T-1.
            stop_early: end the pass after the deepest requested layer.
            ensemble: noise draws averaged.
            prompts: one prompt per image (default: the extractor's).

        Returns:
            ``layer -> (B, C, h, w)`` float32 CPU tensors.
        """
        self.registry.check(layers)
        self.check_setting(Setting(timestep, ensemble))
        keys = [image_digest(np.asarray(im)) for im in images] if self.noise != "shared" else None
        return self.features_from_latents(
            self.encode(images),
            layers,
            timestep,
            stop_early,
            ensemble=ensemble,
            prompts=prompts,
            keys=keys,
        )


def _checked_size(backbone: Backbone, image_size: int | tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` of ``image_size``, checked against the model's VAE factor.

    Both sides must be positive multiples of the VAE factor (8 for SD, 1 for a pixel-space
    model); otherwise :class:`BadInputError` says so. Sides that are not multiples of the
    U-Net's own downsampling (64 px for SD) are accepted, as diffusers' U-Net accepts them:
    its strided convolutions round each deeper map up and its upsamplers take the size of
    the skip connection (DIFT's 832 x 480 DAVIS frames give SD a 104 x 60 latent and
    maps of 13 x 8 cells in the deepest stage); :meth:`LayerRegistry.feature_size` rounds
    the same way.
    """
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    multiple = backbone.latent_scale
    for side in size:
        if int(side) != side or side <= 0 or side % multiple:
            raise BadInputError(
                f"image_size={image_size} must be a positive multiple of {multiple} for this "
                f"model (its VAE factor)"
            )
    return int(size[0]), int(size[1])


def _plan_rows(
    settings: Sequence[Setting], n: int, draws: Callable[[Setting], int]
) -> dict[tuple[int, int, int], int]:
    """One U-Net batch row per distinct ``(image, timestep, draw)``: key -> row index."""
    rows: dict[tuple[int, int, int], int] = {}
    for setting in settings:
        for draw in range(draws(setting)):
            for i in range(n):
                rows.setdefault((i, setting.timestep, draw), len(rows))
    return rows


def _setting_maps(
    maps: dict[str, torch.Tensor],
    rows: dict[tuple[int, int, int], int],
    setting: Setting,
    n: int,
    draws: int,
) -> dict[str, torch.Tensor]:
    """The ``n`` images' maps of one setting, averaged over its ``draws`` noise draws."""
    index = [[rows[(i, setting.timestep, d)] for i in range(n)] for d in range(draws)]
    if draws == 1:
        return {name: fmap[index[0]] for name, fmap in maps.items()}
    return {name: torch.stack([fmap[idx] for idx in index]).mean(0) for name, fmap in maps.items()}


def concat_layers(
    features: dict[str, torch.Tensor], layers: Sequence[str] | None = None
) -> torch.Tensor:
    """Bilinearly resize maps to the largest one among ``layers`` and concatenate channels.

    This is the paper's optional step 3 (e.g. its "64 + 32 + 16" features).

    Args:
        features: ``layer -> (B, C_layer, h_layer, w_layer)`` maps.
        layers: which maps, in channel order (default: all, in the dict's order).

    Returns:
        ``(B, sum of C_layer, h_max, w_max)`` on the maps' device and dtype.
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


def make_extractor(
    model: str,
    image_size: int,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    cache: str | Path | None = None,
    **options,
) -> FeatureExtractor:
    """Load ``model`` and wrap it in an extractor whose prototypes are cached on disk.

    Args:
        model: ``"tiny"``, ``"toy"``, a local folder or a hub id (see
            :func:`~difflens.models.backbone.load_backbone`).
        image_size: the side in pixels images are resized to.
        device: where the model runs (``"cpu"``, ``"cuda"``).
        dtype: its precision (``"fp32"``, ``"bf16"``, ``"fp16"``).
        cache: the store's folder (default ``$DIFFLENS_CACHE/features``; ``""``: no cache).
        **options: further :class:`FeatureExtractor` arguments (prompt, seed, noise, ...).

    Returns:
        The extractor.
    """
    backbone = load_backbone(model, device=device, dtype=parse_dtype(dtype))
    store = None
    if cache != "":
        store = FeatureStore(Path(cache) if cache else cache_dir() / "features")
    return FeatureExtractor(backbone, image_size=image_size, store=store, **options)
