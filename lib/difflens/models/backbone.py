"""Load a diffusion backbone: a hub id, a local folder, or the built-in tiny model.

Every source goes through the same ``from_pretrained(folder, subfolder=...)`` calls on the
diffusers / transformers classes, in the layout of a Stable Diffusion pipeline folder
(``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``). The built-in
``"tiny"`` model is made from configs with a fixed seed, saved once to the cache folder and
then loaded like any checkpoint.

Weights are loaded with ``low_cpu_mem_usage=True``: Hugging Face ``accelerate`` (a
dependency) builds each module on the meta device and fills it from the checkpoint, so a
model is never held twice in memory while it loads (diffusers otherwise warns that
``accelerate`` was not found and falls back to random initialisation followed by a copy).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from difflens.core.errors import BadInputError
from difflens.models.tiny import tiny_model_path
from difflens.models.toy import TOY_MODELS, toy_model_path
from difflens.models.wrappers import unwrap_module

DEFAULT_MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
LOW_CPU_MEM_USAGE = True
"""Passed to every ``from_pretrained`` of weights: load through ``accelerate``, no second copy."""


DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A torch dtype from a dtype or its short or long name.

    Args:
        dtype: ``torch.float32`` (returned as is) or one of ``"fp32"``, ``"bf16"``,
            ``"fp16"``, ``"float32"``, ``"bfloat16"``, ``"float16"`` (case-insensitive,
            ``"torch."`` prefix allowed).

    Returns:
        The ``torch.dtype``.

    Raises:
        ValueError: the name is none of those.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype).lower().removeprefix("torch.")]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {sorted(DTYPES)}") from None


class BackboneNotFoundError(RuntimeError):
    """The requested model could not be found locally and could not be downloaded."""


@dataclass
class Backbone:
    """The parts of a latent (or pixel-space) diffusion model that feature extraction needs.

    Built by :func:`assemble_backbone` (frozen, in eval mode). ``unet`` may be replaced by
    a wrapped copy (``torch.compile(backbone.unet)``, DDP): the forward pass goes through
    the wrapper, while layer lookup, configs and fingerprints use :attr:`base_unet`.

    Attributes:
        unet: the diffusers ``UNet2DConditionModel``, possibly wrapped.
        scheduler: the noise scheduler (diffusers ``DDPMScheduler`` or alike; its
            ``add_noise``, ``alphas_cumprod`` and ``config`` are used).
        tokenizer: a CLIP tokenizer, or ``None`` without text conditioning.
        text_encoder: a transformers ``CLIPTextModel``, or ``None``.
        vae: the ``AutoencoderKL``, or ``None`` for a pixel-space model.
        model_id: the name the model goes by (part of every cache key).
        source: where it was loaded from (a folder, a hub id, a config module).
        extras: free-form per-backbone state (the component fingerprints' cache).
    """

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
    def base_unet(self) -> torch.nn.Module:
        """The U-Net inside any ``torch.compile`` / data-parallel wrapper of :attr:`unet`."""
        return unwrap_module(self.unet)

    @property
    def latent_scale(self) -> int:
        """Image pixels per latent pixel along one side (8 for SD; 1 without a VAE)."""
        if self.vae is None:
            return 1
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def scaling_factor(self) -> float:
        """The VAE's latent scaling factor (0.18215 for SD 1.x / 2.x; 1 without a VAE)."""
        return 1.0 if self.vae is None else float(self.vae.config.scaling_factor)

    @property
    def device(self) -> torch.device:
        """The device of the U-Net's first parameter (where inputs must go)."""
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the U-Net's first parameter (the precision inputs are cast to)."""
        return next(self.unet.parameters()).dtype

    def to(
        self, device: str | torch.device | None = None, dtype: torch.dtype | str | None = None
    ) -> Backbone:
        """Move (and cast) the U-Net, VAE and text encoder in place.

        Args:
            device: where the modules go (``"cpu"``, ``"cuda"``; ``None``: where they are).
            dtype: their precision (a dtype or a name for :func:`parse_dtype`; ``None``:
                as they are).

        Returns:
            ``self``.
        """
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
        """A short hash of one component's weights.

        Hashes every tensor's name, shape, dtype and a strided sample of 257 of its values,
        so it costs well under a second even for SD's 860 M parameters; any retraining or
        fine-tune (which moves all weights) changes it. Wrappers are looked through
        (:func:`~difflens.models.wrappers.unwrap_module`), so a compiled or DDP-wrapped
        U-Net hashes like the bare one and its caches stay valid. The hash is recomputed
        whenever a tensor was replaced or changed in place (tracked through torch's version
        counters), so it never goes stale.

        Args:
            part: ``"unet"``, ``"vae"`` or ``"text_encoder"``.

        Returns:
            16 hexadecimal characters; ``"none"`` for a missing component.
        """
        module = getattr(self, part)
        if module is None:
            return "none"
        module = unwrap_module(module)
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
        """A short hash of everything about the model that shapes a feature.

        Covers the model id, the U-Net, VAE and text-encoder weights
        (:meth:`component_fingerprint`) and the scheduler's config.

        Returns:
            16 hexadecimal characters (also kept as ``_fingerprint``).
        """
        h = hashlib.sha256(self.model_id.encode())
        for part in ("unet", "vae", "text_encoder"):
            h.update(f"{part}:{self.component_fingerprint(part)}".encode())
        config = dict(getattr(self.scheduler, "config", {}) or {})
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
        self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


def assemble_backbone(
    unet: torch.nn.Module,
    scheduler: object,
    *,
    vae: torch.nn.Module | None = None,
    tokenizer: object | None = None,
    text_encoder: torch.nn.Module | None = None,
    model_id: str,
    source: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
) -> Backbone:
    """Put a :class:`Backbone` together: the one place where one is built.

    Every module is frozen (``eval()``, ``requires_grad_(False)``) and moved / cast.

    Args:
        unet: a diffusers ``UNet2DConditionModel``.
        scheduler: the model's noise scheduler (``add_noise`` and its config are used).
        vae: the ``AutoencoderKL``; ``None`` for a pixel-space model.
        tokenizer: a CLIP tokenizer, or ``None``.
        text_encoder: a ``CLIPTextModel``, or ``None``.
        model_id: the name the model goes by (part of every cache key).
        source: where it was loaded from (a folder, a hub id, a config module).
        device: where the modules go (``None``: where they are).
        dtype: their precision (``None``: as they are).

    Returns:
        The backbone, frozen, on ``device`` in ``dtype``.
    """
    for module in (unet, vae, text_encoder):
        if module is not None:
            module.eval().requires_grad_(False)
    backbone = Backbone(
        unet=unet,
        scheduler=scheduler,
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        model_id=model_id,
        source=source,
    )
    return backbone.to(device=device, dtype=dtype)


def _is_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids the hub."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def _from_pretrained(cls: type, source: str, subfolder: str, **kwargs: object) -> object:
    """``cls.from_pretrained``: a folder, the local hub cache, then the hub if it resolves."""
    if Path(source).is_dir():
        return cls.from_pretrained(source, subfolder=subfolder, **kwargs)
    try:
        return cls.from_pretrained(source, subfolder=subfolder, local_files_only=True, **kwargs)
    except (OSError, ValueError) as cached_error:
        offline = _is_offline()
        if offline or not _hub_host_resolves():
            why = "HF_HUB_OFFLINE is set" if offline else "the hub's host does not resolve"
            raise BackboneNotFoundError(
                f"Model {source!r} ({subfolder}) is not in the local Hugging Face cache and "
                f"{why}. Download it on a connected machine "
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


BUILT_IN_MODELS = ("tiny", *TOY_MODELS)
"""The models shipped with difflens (no download)."""


def _looks_like_path(model: str) -> bool:
    """A folder rather than a hub id (``org/name``): absolute, relative or home paths."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model


def _check_folder(folder: Path, model: str) -> None:
    """Raise :class:`BackboneNotFoundError` for a missing folder or one without ``unet/``."""
    if not folder.is_dir():
        raise BackboneNotFoundError(f"model folder {model!r} does not exist")
    missing = [part for part in ("unet", "scheduler") if not (folder / part).is_dir()]
    if missing:
        raise BackboneNotFoundError(
            f"model folder {model!r} lacks {', '.join(f'{m}/' for m in missing)}: a Stable "
            "Diffusion pipeline folder holds unet/, vae/, text_encoder/, tokenizer/, scheduler/"
        )


def _hub_host_resolves() -> bool:
    """Whether the hub's host name resolves (no DNS: the hub cannot be reached)."""
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.getaddrinfo(host or "huggingface.co", 443)
    except OSError:
        return False
    return True


def _resolve_source(model: str) -> str:
    """The folder or hub id to load ``model`` from, with a clear error where none can be."""
    import difflib

    if model == "tiny":
        return str(tiny_model_path())
    if model in TOY_MODELS:
        return str(toy_model_path(model))
    if Path(model).expanduser().is_dir() or _looks_like_path(model):
        _check_folder(Path(model).expanduser(), model)
        return str(Path(model).expanduser())
    if "/" not in model:
        close = difflib.get_close_matches(model, BUILT_IN_MODELS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise BackboneNotFoundError(
            f"unknown model {model!r}: {hint}built in: {', '.join(BUILT_IN_MODELS)}; or a "
            "local pipeline folder, or a hub id such as "
            f"{DEFAULT_MODEL_ID!r}"
        )
    return model


def load_backbone(  # noqa: DOC503 (BackboneNotFoundError comes from the helpers)
    model: str = DEFAULT_MODEL_ID,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    with_text: bool = True,
) -> Backbone:
    """Load the U-Net, VAE, text encoder, tokenizer and scheduler of ``model``.

    Args:
        model: ``"tiny"`` (built-in, random weights), ``"toy"`` (built-in, trained on the
            toy world to denoise and to hold shapes and parts: the positive control),
            ``"toy-denoiser"`` (built-in, the same U-Net trained to denoise only), a local folder in the SD pipeline layout, or a hub id such as
            ``"stable-diffusion-v1-5/stable-diffusion-v1-5"``.
        device: where the modules live (``"cpu"``, ``"cuda"``; under a multi-GPU launch a
            bare ``"cuda"`` is this process's own GPU, see :func:`launch_device`).
        dtype: their precision: ``torch.float32`` or ``"fp32"``, ``"bf16"``, ``"fp16"``.
        with_text: also load the text encoder and tokenizer (needed for prompts).

    Returns:
        The frozen :class:`Backbone`; ``vae`` is ``None`` for a folder without ``vae/``
        (pixel-space models such as ``"toy"``).

    Raises:
        BadInputError: a CUDA device is asked for and torch sees none.
        BackboneNotFoundError: an unknown name (with the closest built-in model), a missing
            folder or one without ``unet/``, or a hub id neither in the local hub cache nor
            reachable (``HF_HUB_OFFLINE`` set, or the hub's host does not resolve); the
            message says what to do instead.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    dtype = parse_dtype(dtype)
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError(
            f"device={str(device)!r}: torch sees no CUDA device (torch {torch.__version__}); "
            "use device='cpu' or install a CUDA build of torch"
        )
    source = _resolve_source(model)
    weights = {"torch_dtype": dtype, "low_cpu_mem_usage": LOW_CPU_MEM_USAGE}
    unet = _from_pretrained(UNet2DConditionModel, source, "unet", **weights)
    has_vae = (Path(source) / "vae").is_dir() if Path(source).is_dir() else True
    vae = _from_pretrained(AutoencoderKL, source, "vae", **weights) if has_vae else None
    scheduler = _from_pretrained(DDPMScheduler, source, "scheduler")
    tokenizer = text_encoder = None
    if with_text:
        from transformers import CLIPTextModel, CLIPTokenizer

        tokenizer = _from_pretrained(CLIPTokenizer, source, "tokenizer")
        text_encoder = _from_pretrained(CLIPTextModel, source, "text_encoder", **weights)
    return assemble_backbone(
        unet,
        scheduler,
        vae=vae,
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        model_id=model,
        source=source,
        device=launch_device(device),
    )


def launch_device(device: str | torch.device) -> str | torch.device:
    """The device one process of a multi-process launch uses when ``device`` is asked for.

    Under ``accelerate launch`` or ``torchrun`` (``WORLD_SIZE`` above 1, ``LOCAL_RANK`` set),
    a bare ``"cuda"`` means this process's own GPU, ``cuda:<LOCAL_RANK>``, so that N
    processes use N GPUs rather than all the first one.

    Args:
        device: the device asked for.

    Returns:
        ``cuda:<LOCAL_RANK>`` for a bare CUDA device under a launch with a GPU per process;
        ``device`` unchanged otherwise (a single process, the CPU, an explicit index).
    """
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", ""))
    except ValueError:
        return device
    asked = torch.device(device)
    if world < 2 or asked.type != "cuda" or asked.index is not None:
        return device
    if local >= torch.cuda.device_count():
        return device  # fewer GPUs than processes: leave the choice to the caller
    return f"cuda:{local}"
