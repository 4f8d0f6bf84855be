"""Feature extraction: image -> VAE latent -> noised latent at t -> U-Net -> captured layers.

Layers are captured with ``register_forward_hook`` on the diffusers submodules named by the
:class:`~difflens.layers.LayerRegistry`; the hooks are removed by a context manager, also
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
  total downsampling (VAE factor x U-Net factor: 64 for SD).
- **Colour.** Images are ``(H, W, 3)`` uint8 RGB. Grey and RGBA images are rejected with a
  message (``colour="strict"``, default) or converted (``colour="convert"``: grey is
  replicated to three channels, alpha is dropped).
- **Prompt.** ``""`` (the paper's empty prompt), free text, or a template with ``{class}``,
  filled per image with its class names joined by " and " (``"a photo of a {class}"`` ->
  ``"a photo of a cat and dog"``).
- **Precision and device.** The backbone's (``load_backbone(device=..., dtype=...)``), or
  the extractor's ``device`` / ``dtype`` arguments, which move the backbone in place. Captured
  maps are always returned as float32 CPU tensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from difflens.backbone import Backbone, encode_prompt, parse_dtype
from difflens.layers import LayerRegistry
from difflens.store import KEY_VERSION, FeatureStore, image_digest

NOISE_MODES = ("shared", "per-image")
COLOUR_MODES = ("strict", "convert")


class BadInputError(ValueError):
    """An image or setting that cannot be used; the message names it and says why."""


class _StopForward(Exception):
    """Raised by the last hook to end the forward pass early."""


@dataclass(frozen=True)
class Setting:
    """One way of running the U-Net on an image: a timestep and a noise-ensemble size.

    ``ensemble = n`` averages a layer's maps over ``n`` seeded noise draws (DIFT). At
    ``t = 0`` no noise is added, so every draw is the same and one forward is run.
    """

    timestep: int = 0
    ensemble: int = 1

    def __post_init__(self) -> None:
        if int(self.timestep) != self.timestep or int(self.ensemble) != self.ensemble:
            raise BadInputError(f"setting {self}: timestep and ensemble must be integers")
        object.__setattr__(self, "timestep", int(self.timestep))
        object.__setattr__(self, "ensemble", int(self.ensemble))
        if self.ensemble < 1:
            raise BadInputError(f"setting {self}: ensemble must be >= 1")

    @property
    def draws(self) -> int:
        """Noise draws actually run (1 at ``t = 0``)."""
        return 1 if self.timestep == 0 else self.ensemble

    def normalized(self) -> Setting:
        """The equivalent setting used in cache keys (``ensemble = 1`` at ``t = 0``)."""
        return Setting(self.timestep, self.draws)

    @property
    def label(self) -> str:
        return f"t={self.timestep}" + (f" x{self.draws}" if self.draws > 1 else "")


def as_setting(value: Setting | int) -> Setting:
    """A :class:`Setting` from a setting or a bare timestep."""
    return value if isinstance(value, Setting) else Setting(int(value))


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

    Query layers (``....query``), which the model holds as ``(B, h*w, C)``, are written as
    ``(B, C, h, w)`` maps; ``h, w`` come from a pre-hook on their Transformer2D's input.
    With ``stop_early`` the hook of the deepest layer raises an internal exception that
    :func:`run_unet` swallows, so nothing after it is computed. Every hook is removed on
    exit, also when the pass raises.
    """
    infos = [registry.info(name) for name in registry.check(layers)]  # raises before hooking
    deepest = registry.deepest(layers)
    captured: dict[str, torch.Tensor] = {}
    shapes: dict[str, tuple[int, int]] = {}
    handles = []

    def make_hook(name: str, kind: str):
        def hook(module, inputs, output):
            tensor = _first_tensor(output)
            if kind == "query":
                h, w = shapes[name]
                b, _, c = tensor.shape
                tensor = tensor.reshape(b, h, w, c).permute(0, 3, 1, 2)
            captured[name] = tensor
            if stop_early and name == deepest:
                raise _StopForward

        return hook

    def make_shape_hook(name: str):
        def pre_hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            shapes[name] = tuple(hidden.shape[-2:])

        return pre_hook

    try:
        for info in infos:
            if info.kind == "query":
                parent = registry.parent_module(info.name)
                handles.append(
                    parent.register_forward_pre_hook(make_shape_hook(info.name), with_kwargs=True)
                )
            module = registry.module(info.name)
            handles.append(module.register_forward_hook(make_hook(info.name, info.kind)))
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


def check_image(image, name: str = "image", colour: str = "strict") -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB array, or :class:`BadInputError` naming ``name``."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise BadInputError(f"{name}: expected uint8 pixels, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 4):
        what = "a grey image" if array.ndim == 2 else "an RGBA image"
        if colour != "convert":
            raise BadInputError(
                f"{name}: {what} of shape {array.shape}; convert it to RGB first "
                "(PIL: image.convert('RGB')) or use colour='convert'"
            )
        array = np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array[..., :3]
    if array.ndim != 3 or array.shape[2] != 3:
        raise BadInputError(f"{name}: expected an (H, W, 3) RGB image, got shape {array.shape}")
    if min(array.shape[:2]) < 1:
        raise BadInputError(f"{name}: empty image of shape {array.shape}")
    return np.ascontiguousarray(array)


def load_image(path: str | Path, colour: str = "strict") -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB; :class:`BadInputError` names the file."""
    try:
        with Image.open(path) as pil:
            pil.load()
            if pil.mode in ("L", "RGBA", "RGB"):
                array = np.asarray(pil)
            elif pil.mode in ("LA", "P", "PA", "I;16", "I", "F") and colour != "convert":
                raise BadInputError(f"{path}: image mode {pil.mode}, not RGB; use colour='convert'")
            else:
                array = np.asarray(pil.convert("RGB"))
    except BadInputError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise BadInputError(f"{path}: cannot read the image ({error})") from error
    return check_image(array, str(path), colour)


def images_to_tensor(
    images: Sequence[np.ndarray], image_size: int | tuple[int, int], colour: str = "convert"
) -> torch.Tensor:
    """Resize RGB uint8 images to ``image_size`` and scale them to [-1, 1], NCHW float32."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    batch = []
    for index, image in enumerate(images):
        array = check_image(image, f"image {index}", colour)
        pil = Image.fromarray(array).resize((width, height), Image.BILINEAR)
        batch.append(np.asarray(pil, dtype=np.float32) / 127.5 - 1.0)
    return torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous()


def draw_seed(seed: int, draw: int, key: str | None = None) -> int:
    """Generator seed of noise draw ``draw``: ``seed + draw``, or hashed with an image key."""
    if key is None:
        return int(seed) + int(draw)
    digest = hashlib.sha256(f"{seed}:{draw}:{key}".encode()).hexdigest()
    return int(digest[:15], 16)


def draw_noise(shape: Sequence[int], seed: int) -> torch.Tensor:
    """Standard normal float32 CPU noise from a generator seeded with ``seed``."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32)


class FeatureExtractor:
    """Capture U-Net layer outputs for images at one or many settings.

    Args:
        backbone: from :func:`difflens.backbone.load_backbone`.
        image_size: side in pixels (or ``(height, width)``) images are resized to; a
            multiple of 64 for SD.
        prompt: text for the cross-attention: ``""`` (the paper's empty prompt), free text,
            or a template with ``{class}``.
        latent: ``"mean"`` of the VAE posterior (default) or ``"sample"`` (seeded).
        seed: seed of the noise draws and of posterior samples.
        noise: ``"shared"`` (every image gets the same draws) or ``"per-image"``.
        colour: ``"strict"`` rejects grey and RGBA images, ``"convert"`` converts them.
        device, dtype: if given, the backbone is moved / cast there in place.
        store: a :class:`~difflens.store.FeatureStore`; latents are then cached per image,
            size and VAE, and the pipeline functions use it by default.
        max_batch: most rows (image x timestep x draw) per U-Net forward (``None``: all).
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
        if latent not in ("mean", "sample"):
            raise ValueError(f"latent must be 'mean' or 'sample', got {latent!r}")
        if noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
        if colour not in COLOUR_MODES:
            raise ValueError(f"colour must be one of {COLOUR_MODES}, got {colour!r}")
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        multiple = backbone.latent_scale * 2 ** (len(backbone.unet.config.block_out_channels) - 1)
        for side in size:
            if int(side) != side or side <= 0 or side % multiple:
                raise BadInputError(
                    f"image_size={image_size} must be a multiple of {multiple} for this model "
                    f"(VAE factor {backbone.latent_scale} x U-Net downsampling "
                    f"{multiple // backbone.latent_scale})"
                )
        if device is not None or dtype is not None:
            backbone.to(device=device, dtype=None if dtype is None else parse_dtype(dtype))
        self.backbone = backbone
        self.registry = LayerRegistry(backbone.unet, backbone.latent_scale)
        self.image_size = image_size
        self.size = (int(size[0]), int(size[1]))
        self.prompt = prompt
        self.latent = latent
        self.seed = seed
        self.noise = noise
        self.colour = colour
        self.store = FeatureStore(store) if isinstance(store, (str, Path)) else store
        self.max_batch = max_batch
        self._embeddings: dict[tuple, torch.Tensor] = {}

    # ----------------------------------------------------------------- description
    @property
    def num_train_timesteps(self) -> int:
        return int(self.backbone.scheduler.config.num_train_timesteps)

    def config(self) -> dict:
        """Everything about this extractor that shapes a feature (used in cache keys).

        The device is left out on purpose: a cache filled on a GPU serves a CPU run.
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
        """What shapes a VAE latent: the VAE's weights, the size, dtype and latent mode."""
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
        """The setting, or :class:`BadInputError` when its timestep is out of range."""
        setting = as_setting(setting)
        if not 0 <= setting.timestep < self.num_train_timesteps:
            raise BadInputError(
                f"timestep {setting.timestep} is outside the scheduler's range "
                f"0..{self.num_train_timesteps - 1} (setting {setting.label})"
            )
        return setting

    def prompt_for(self, class_names: Sequence[str] = ()) -> str:
        """The prompt of one image: the template filled with its class names, if it has one."""
        if "{class}" not in self.prompt:
            return self.prompt
        unique = list(dict.fromkeys(class_names))
        return self.prompt.replace("{class}", " and ".join(unique) if unique else "object")

    def text_embedding(self, prompt: str | None = None) -> torch.Tensor:
        """The text encoder's last hidden state for ``prompt`` (shape ``1 x L x D``)."""
        prompt = self.prompt if prompt is None else prompt
        backbone = self.backbone
        key = (prompt, str(backbone.device), backbone.dtype)
        if key not in self._embeddings:
            if backbone.text_encoder is None or backbone.tokenizer is None:
                dim = backbone.unet.config.cross_attention_dim
                self._embeddings[key] = torch.zeros(
                    1, 1, dim, device=backbone.device, dtype=backbone.dtype
                )
            else:
                hidden = encode_prompt(
                    backbone.tokenizer, backbone.text_encoder, prompt, backbone.device
                )
                self._embeddings[key] = hidden.to(backbone.dtype)
        return self._embeddings[key]

    # ----------------------------------------------------------------- latents
    @torch.no_grad()
    def _encode_pixels(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        backbone = self.backbone
        pixels = images_to_tensor(images, self.size, self.colour)
        pixels = pixels.to(backbone.device, backbone.dtype)
        if backbone.vae is None:
            return pixels
        posterior = backbone.vae.encode(pixels).latent_dist
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
        """
        store = self.store if store is None else store
        if store is None:
            return self._encode_pixels(images)
        arrays = [check_image(image, f"image {i}", self.colour) for i, image in enumerate(images)]
        fields = [{**self.latents_config(), "image": image_digest(a)} for a in arrays]
        found = [store.get("latents", f) for f in fields]
        missing = [i for i, entry in enumerate(found) if entry is None]
        out: list[torch.Tensor | None] = [
            None if entry is None else torch.from_numpy(entry.arrays["latent"]) for entry in found
        ]
        if missing:
            fresh = self._encode_pixels([arrays[i] for i in missing])
            for i, latent in zip(missing, fresh):
                store.put("latents", fields[i], {"latent": latent.float().cpu().numpy()})
                out[i] = latent.float().cpu()
        device, dtype = self.backbone.device, self.backbone.dtype
        return torch.stack(out).to(device=device, dtype=dtype)

    def noised(
        self,
        latents: torch.Tensor,
        timestep: int,
        noise_seed: int | None = None,
        draw: int = 0,
        keys: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """``latents`` noised to ``timestep`` by the scheduler; ``t = 0`` returns them unchanged."""
        self.check_setting(timestep)
        if timestep == 0:
            return latents
        t = torch.full((latents.shape[0],), timestep, dtype=torch.long)
        seeds = self._row_seeds(latents.shape[0], [draw] * latents.shape[0], keys, noise_seed)
        return self._add_noise(latents, t, seeds)

    def _row_seeds(self, n, draws, keys, seed=None) -> list[int]:
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
        chunks of ``max_batch`` rows. Returns, per setting, ``layer -> (B, C, h, w)``
        float32 CPU tensors, averaged over the setting's noise draws.

        Args:
            prompts: one prompt per image (default: :meth:`prompt_for` with no classes).
            keys: one content key per image, for ``noise="per-image"``.
            noise_seed: overrides the extractor's seed for the noise draws.
        """
        settings = [self.check_setting(s) for s in settings]
        layers = list(dict.fromkeys(self.registry.check(layers)))  # each layer once
        n = latents.shape[0]
        if prompts is not None and len(prompts) != n:
            raise ValueError(f"{len(prompts)} prompts for {n} images")
        rows: dict[tuple[int, int, int], int] = {}  # (image, timestep, draw) -> row
        for setting in settings:
            for draw in range(setting.draws):
                for i in range(n):
                    rows.setdefault((i, setting.timestep, draw), len(rows))
        order = list(rows)
        image_index = [i for i, _, _ in order]
        timesteps = torch.tensor([t for _, t, _ in order], dtype=torch.long)
        row_keys = None if keys is None else [keys[i] for i in image_index]
        seeds = self._row_seeds(len(order), [d for _, _, d in order], row_keys, noise_seed)
        x = self._add_noise(latents[image_index], timesteps, seeds)
        prompt_list = [self.prompt_for()] * n if prompts is None else list(prompts)
        embeddings = [self.text_embedding(prompt_list[i]) for i in image_index]
        if len({e.shape for e in embeddings}) > 1:
            raise ValueError("prompts give text embeddings of different lengths")
        embeddings = torch.cat(embeddings)
        chunk = self.max_batch or len(order)
        outputs: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
        with capture(self.registry, layers, stop_early=stop_early) as captured:
            for start in range(0, len(order), chunk):
                stop = start + chunk
                captured.clear()
                run_unet(
                    self.backbone.unet,
                    x[start:stop],
                    timesteps[start:stop].to(x.device),
                    embeddings[start:stop],
                )
                missing = [name for name in layers if name not in captured]
                if missing:
                    raise RuntimeError(f"layers {missing} did not fire during the forward pass")
                for name in layers:
                    outputs[name].append(captured[name].float().cpu())
        maps = {name: torch.cat(parts) for name, parts in outputs.items()}
        results = []
        for setting in settings:
            index = [
                [rows[(i, setting.timestep, d)] for i in range(n)] for d in range(setting.draws)
            ]
            results.append(
                {
                    name: torch.stack([maps[name][idx] for idx in index]).mean(0)
                    if setting.draws > 1
                    else maps[name][index[0]]
                    for name in layers
                }
            )
        return results

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
        """Outputs of ``layers`` for a batch of latents, as float32 CPU tensors (B, C, h, w)."""
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
        """Outputs of ``layers`` for RGB uint8 images at one timestep (and ensemble size)."""
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
