"""Many layers at many timesteps: batched rows, DDIM inversion, and stacks on a common grid.

Three tools, each a plain function on an extractor's backbone:

**Rows** (:func:`forward_rows`). A U-Net batch whose rows each have their own image,
timestep, prompt and noise draw (:class:`Row`). Maps of every requested layer are captured
with forward hooks (:func:`~difflens.features.hooks.capture`) in one pass per chunk of rows,
so any set of (layer, timestep, prompt) requests that share a timestep and a prompt costs one
row per image, and different prompts or timesteps are different rows of the same batch. The
rows follow the extractor's conventions exactly (its module docstring): ``t = 0`` is the clean
latent, ``t > 0`` is ``scheduler.add_noise`` with the draw's seeded noise
(:meth:`~difflens.features.extractor.FeatureExtractor.noised`), and under
``latent="sample-per-draw"`` each draw has its own posterior sample seeded by
``draw_seed(seed, draw, "vae-posterior")``.

**DDIM inversion** (:func:`ddim_invert`). Deterministic DDIM (Song et al., ICLR 2021, eta =
0) run backwards from the clean latent, as Diffusion Hyperfeatures collects its features
(Luo et al., NeurIPS 2023; ``diffusion-hyperfeatures/diffusion_hyperfeatures:
archs/stable_diffusion/diffusion.py``, ``generalized_steps`` with ``run_inversion=True``).
The timestep grid comes from the model's own scheduler config
(``DDIMScheduler.from_config(backbone.scheduler.config)``, ``set_timesteps(num_steps)``),
ascending ``g_0 < g_1 < ... < g_{N-1}``. Call ``k`` (``k = 0 .. N-1``) sees the latent at
level ``a_k`` (``a_0 = 1``, the clean latent; ``a_k = alphas_cumprod[g_{k-1}]``), runs the
U-Net at timestep ``tau_k`` (``tau_0 = first_timestep``, ``tau_k = g_{k-1}``), and moves with
the predicted noise ``e`` to the next level ``a' = alphas_cumprod[g_k]``::

    x0 = (x - sqrt(1 - a) e) / sqrt(a);   x' = sqrt(a') x0 + sqrt(1 - a') e

Layers are captured during the calls chosen in ``steps``, in the same passes that move the
latent. Hyperfeatures' quirks are switches of :class:`InversionConfig`, documented there:
its first call at timestep ``-1`` (``first_timestep=-1``; difflens feeds the clean latent at
``0`` by default, as the extractor does at ``t = 0``) and its scheduler built with
``DDIMScheduler``'s defaults (``steps_offset=0``; SD's own config has ``steps_offset = 1``,
which shifts every timestep by one). :func:`hyperfeatures_inversion` returns both
switches set and :data:`HYPERFEATURES_SAVE_TIMESTEPS` their saved indices.

Round trip: each inversion step inverts diffusers' ``DDIMScheduler.step`` (to float32 rounding)
(eta = 0) for the same noise prediction, but inversion predicts the noise at the current level
and sampling at the next one, so inverting then sampling back does not return the latent
exactly. On the toy model (pixel space, 64 px, pixels in [-1, 1]; fingerprint
``687ca5a8f47c850a``) two held-out images came back with a mean absolute error of 0.113 (RMS
0.158) after 20 steps and 0.066 (RMS 0.104) after 50, against a mean absolute difference of
0.32 between the two images; its noise prediction changes fast at small timesteps. The stated
tolerance, held by the tests at 20 steps: mean absolute error under 0.2 and RMS under 0.25
(pixel units), and under half the distance between the two images.

**Stacks** (:func:`collect_stacks`). ``L`` layers at ``S`` timesteps (noise path: one batched
pass per chunk; inversion path: one trajectory) resized to a common grid (bilinear or bicubic,
``align_corners=False``) and concatenated: one ``(S, sum of C_l, g, g)`` float16 array per
image, timestep-major as Hyperfeatures flattens it, cached in the
:class:`~difflens.features.store.FeatureStore` (kind ``"stack"``) under a key holding the
extractor's config, the layers, the timesteps or inversion settings, the grid, the prompt and
the image's content hash.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from difflens.core.errors import BadInputError
from difflens.features.extractor import PER_DRAW, FeatureExtractor
from difflens.features.hooks import capture, check_fired, run_unet
from difflens.features.settings import draw_noise, draw_seed
from difflens.features.store import FeatureStore, get_or_compute, image_digest
from difflens.models.backbone import Backbone

__all__ = [
    "Row",
    "forward_rows",
    "InversionConfig",
    "InversionPlan",
    "InversionResult",
    "HYPERFEATURES_SAVE_TIMESTEPS",
    "hyperfeatures_inversion",
    "hyperfeatures_steps",
    "ddim_scheduler",
    "inversion_plan",
    "ddim_invert",
    "TRAJECTORY_MODES",
    "StackSpec",
    "stack_timesteps",
    "resize_concat",
    "collect_stacks",
    "stack_nbytes",
]

TRAJECTORY_MODES: tuple[str, ...] = ("noise", "inversion")
"""How a stack's timesteps are reached: noise added directly, or DDIM inversion."""
RESIZE_MODES: tuple[str, ...] = ("bilinear", "bicubic")
HYPERFEATURES_SAVE_TIMESTEPS: tuple[int, ...] = (49, 45, 40, 35, 30, 25, 20, 15, 10, 5, 0)
"""Diffusion Hyperfeatures' ``save_timestep`` of its 50-step inversion (``configs/real.yaml``).

Index ``s`` is their "generation step": inversion call ``k = 49 - s`` (see
:func:`hyperfeatures_steps`)."""


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class Row:
    """One row of a U-Net batch.

    Attributes:
        image: index of the image (into the latents given to :func:`forward_rows`).
        timestep: scheduler index 0..T-1 the latent is noised to (0: the clean latent).
        prompt: the text of this row (already filled; no ``{class}`` template).
        draw: noise draw ``k`` (and posterior sample, under ``"sample-per-draw"``).
    """

    image: int
    timestep: int
    prompt: str = ""
    draw: int = 0


def _posterior_rows(
    extractor: FeatureExtractor,
    latents: torch.Tensor,
    draw: int,
    keys: Sequence[str] | None,
) -> torch.Tensor:
    """Per-draw posterior samples of ``(mean, std)`` latents (the extractor's convention)."""
    mean, std = latents.float().chunk(2, dim=1)
    if extractor.noise == "shared" or keys is None:
        tags = ["vae-posterior"] * len(mean)
    else:
        tags = [f"vae-posterior:{k}" for k in keys]
    eps = torch.stack(
        [draw_noise(mean.shape[1:], draw_seed(extractor.seed, draw, tag)) for tag in tags]
    )
    return (mean + std * eps.to(mean.device)).to(latents.dtype)


def row_inputs(
    extractor: FeatureExtractor,
    latents: torch.Tensor,
    rows: Sequence[Row],
    keys: Sequence[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noised latents, timesteps and text embeddings of ``rows``.

    Args:
        extractor: the extractor whose noise, seed, latent mode and prompts are used.
        latents: ``(B, C, h, w)`` from :meth:`~difflens.features.extractor.FeatureExtractor.encode`
            (``(B, 2C, h, w)`` mean and std under ``"sample-per-draw"``).
        rows: the rows; ``row.image`` indexes ``latents``.
        keys: one image content key per image (needed for ``noise="per-image"``).

    Returns:
        ``(R, C, h, w)`` inputs, ``(R,)`` long timesteps, ``(R, tokens, width)`` embeddings,
        on the backbone's device and dtype.
    """
    out = [None] * len(rows)
    groups: dict[tuple[int, int], list[int]] = {}
    for r, row in enumerate(rows):
        groups.setdefault((row.timestep, row.draw), []).append(r)
    per_draw = extractor.latent == PER_DRAW and extractor.backbone.vae is not None
    for (t, d), members in groups.items():
        index = [rows[r].image for r in members]
        group_keys = None if keys is None else [keys[i] for i in index]
        clean = latents[index]
        if per_draw:
            clean = _posterior_rows(extractor, clean, d, group_keys)
        noisy = extractor.noised(clean, t, draw=d, keys=group_keys)
        for r, x in zip(members, noisy):
            out[r] = x
    backbone = extractor.backbone
    x = torch.stack(out).to(backbone.device, backbone.dtype)
    timesteps = torch.tensor([row.timestep for row in rows], dtype=torch.long)
    embeddings = extractor.prompts([row.prompt for row in rows], backbone.device, backbone.dtype)
    return x, timesteps, embeddings


@torch.no_grad()
def forward_rows(
    extractor: FeatureExtractor,
    latents: torch.Tensor,
    rows: Sequence[Row],
    layers: Sequence[str],
    *,
    keys: Sequence[str] | None = None,
    stop_early: bool = True,
    max_batch: int | None = None,
) -> dict[str, torch.Tensor]:
    """Maps of ``layers`` for every row, from one hooked forward pass per chunk of rows.

    Args:
        extractor: the extractor (backbone, registry, noise and prompt conventions).
        latents: clean latents of the images, from
            :meth:`~difflens.features.extractor.FeatureExtractor.encode`.
        rows: the rows; rows that repeat are run once each time they appear.
        layers: registry layer names (repeats captured once).
        keys: one image content key per image, for ``noise="per-image"``.
        stop_early: end each pass after the deepest requested layer.
        max_batch: rows per forward (default: the extractor's ``max_batch``, else all).

    Returns:
        ``layer -> (R, C, h, w)`` float32 CPU tensors, row ``r`` of each for ``rows[r]``.

    Raises:
        BadInputError: a row's timestep lies outside the scheduler's range.
    """
    layers = list(dict.fromkeys(extractor.registry.check(layers)))
    for row in rows:
        if not 0 <= row.timestep < extractor.num_train_timesteps:
            raise BadInputError(
                f"row {row}: timestep outside 0..{extractor.num_train_timesteps - 1}"
            )
    x, timesteps, embeddings = row_inputs(extractor, latents, rows, keys)
    chunk = max_batch or extractor.max_batch or len(x)
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    unet = extractor.backbone.unet
    with capture(extractor.registry, layers, stop_early=stop_early) as captured:
        for start in range(0, len(x), chunk):
            captured.clear()
            sl = slice(start, start + chunk)
            run_unet(unet, x[sl], timesteps[sl].to(x.device), embeddings[sl])
            check_fired(captured, layers, unet)
            for name in layers:
                outputs[name].append(captured[name].float().cpu())
    return {name: torch.cat(parts) for name, parts in outputs.items()}


# --------------------------------------------------------------------------- DDIM inversion


@dataclass(frozen=True)
class InversionConfig:
    """How DDIM inversion runs (see the module docstring for the update).

    Attributes:
        num_steps: DDIM steps of the whole trajectory (``set_timesteps(num_steps)``).
        first_timestep: the timestep of the first U-Net call, made on the clean latent.
            ``0`` (default) feeds it as the extractor feeds a clean latent; ``-1`` reproduces
            Diffusion Hyperfeatures, whose DDIM loop gives the clean latent timestep ``-1``
            (an index outside the scheduler's range that the sinusoidal embedding accepts).
            Needed to reuse their trained aggregation weights.
        steps_offset: overrides the scheduler config's ``steps_offset`` (``None``: the
            model's own; SD 1.x/2.x ship ``1``, so their grid is 1, 21, ..., 981 at 50
            steps). Hyperfeatures builds ``DDIMScheduler`` with its defaults, ``0``
            (0, 20, ..., 980).
        set_alpha_to_one: ``None`` keeps the config's value; only DDIM *sampling* back to
            the clean latent uses it (the inversion always starts at level 1).

    Raises:
        ValueError: ``num_steps < 1``.
    """

    num_steps: int = 50
    first_timestep: int = 0
    steps_offset: int | None = None
    set_alpha_to_one: bool | None = None

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")


def hyperfeatures_inversion(num_steps: int = 50) -> InversionConfig:
    """Diffusion Hyperfeatures' inversion: timestep -1 at the first call, ``steps_offset=0``.

    Args:
        num_steps: their ``num_timesteps`` (50 for the multi-step model, 1 for one-step).

    Returns:
        The :class:`InversionConfig`.
    """
    return InversionConfig(num_steps=num_steps, first_timestep=-1, steps_offset=0)


def hyperfeatures_steps(
    save_timestep: Sequence[int] = HYPERFEATURES_SAVE_TIMESTEPS, num_steps: int = 50
) -> tuple[int, ...]:
    """Inversion calls ``k`` of Hyperfeatures' ``save_timestep`` indices (``k = N - 1 - s``).

    Args:
        save_timestep: their indices (``[49, 45, ..., 0]``).
        num_steps: their ``num_timesteps``.

    Returns:
        The calls, in the order given (``(0, 4, 9, ..., 49)`` for the defaults).

    Raises:
        ValueError: an index outside ``0 .. num_steps - 1``.
    """
    if any(not 0 <= s < num_steps for s in save_timestep):
        raise ValueError(f"save_timestep {list(save_timestep)} outside 0..{num_steps - 1}")
    return tuple(num_steps - 1 - int(s) for s in save_timestep)


def ddim_scheduler(backbone: Backbone, config: InversionConfig | None = None) -> object:
    """A ``DDIMScheduler`` from the model's own scheduler config, with ``config``'s overrides.

    Args:
        backbone: the model (its ``scheduler.config`` holds the betas and spacing).
        config: the inversion config (``steps_offset``, ``set_alpha_to_one`` overrides).

    Returns:
        ``DDIMScheduler.from_config(...)`` with ``set_timesteps(config.num_steps)`` done.
    """
    from diffusers import DDIMScheduler

    config = config or InversionConfig()
    overrides = {}
    if config.steps_offset is not None:
        overrides["steps_offset"] = config.steps_offset
    if config.set_alpha_to_one is not None:
        overrides["set_alpha_to_one"] = config.set_alpha_to_one
    scheduler = DDIMScheduler.from_config(backbone.scheduler.config, **overrides)
    scheduler.set_timesteps(config.num_steps)
    return scheduler


@dataclass(frozen=True)
class InversionPlan:
    """The timesteps and noise levels of every inversion call.

    Attributes:
        grid: ascending DDIM timesteps ``g_0 .. g_{N-1}``.
        timesteps: ``tau_k``, the timestep the U-Net sees at call ``k``.
        alpha_in: ``a_k``, alphas_cumprod of the latent fed to call ``k`` (``a_0 = 1``).
        alpha_out: ``alphas_cumprod[g_k]``, the level call ``k`` moves the latent to.
        prediction_type: the scheduler's (``"epsilon"`` or ``"v_prediction"``).
    """

    grid: tuple[int, ...]
    timesteps: tuple[int, ...]
    alpha_in: tuple[float, ...]
    alpha_out: tuple[float, ...]
    prediction_type: str = "epsilon"


def inversion_plan(backbone: Backbone, config: InversionConfig | None = None) -> InversionPlan:
    """The grid, call timesteps and levels of a DDIM inversion of ``backbone``.

    Args:
        backbone: the model.
        config: the inversion config (default :class:`InversionConfig`).

    Returns:
        The :class:`InversionPlan` (levels in float64).

    Raises:
        ValueError: the scheduler predicts something other than noise or v.
    """
    config = config or InversionConfig()
    scheduler = ddim_scheduler(backbone, config)
    prediction = scheduler.config.prediction_type
    if prediction not in ("epsilon", "v_prediction"):
        raise ValueError(f"DDIM inversion needs epsilon or v prediction, not {prediction!r}")
    grid = tuple(sorted(int(t) for t in scheduler.timesteps))
    abar = scheduler.alphas_cumprod.double()
    timesteps = (int(config.first_timestep),) + grid[:-1]
    alpha_in = (1.0,) + tuple(float(abar[t]) for t in grid[:-1])
    alpha_out = tuple(float(abar[t]) for t in grid)
    return InversionPlan(grid, timesteps, alpha_in, alpha_out, prediction)


@dataclass
class InversionResult:
    """What :func:`ddim_invert` returns.

    Attributes:
        latents: ``(B, C, h, w)`` float32 CPU, the latent after the last call run.
        features: ``call k -> layer -> (B, C, h, w)`` float32 CPU maps of the collected calls.
        timesteps: ``call k -> tau_k`` of the collected calls.
        plan: the :class:`InversionPlan`.
        calls: U-Net calls run.
    """

    latents: torch.Tensor
    features: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    timesteps: dict[int, int] = field(default_factory=dict)
    plan: InversionPlan | None = None
    calls: int = 0


def _ddim_move(
    x: torch.Tensor, out: torch.Tensor, a: float, a_next: float, prediction: str
) -> torch.Tensor:
    """One deterministic DDIM update from level ``a`` to ``a_next`` (float64 arithmetic)."""
    x, out = x.double(), out.double()
    if prediction == "v_prediction":
        eps = a**0.5 * out + (1 - a) ** 0.5 * x
    else:
        eps = out
    x0 = (x - (1 - a) ** 0.5 * eps) / a**0.5
    return a_next**0.5 * x0 + (1 - a_next) ** 0.5 * eps


def _unet_call(
    unet: torch.nn.Module, x: torch.Tensor, t: int, embeddings: torch.Tensor
) -> torch.Tensor:
    """The U-Net's prediction for latents ``x`` at integer timestep ``t`` (may be -1)."""
    timesteps = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
    return unet(x, timesteps, encoder_hidden_states=embeddings, return_dict=False)[0]


@torch.no_grad()
def ddim_invert(
    extractor: FeatureExtractor,
    latents: torch.Tensor,
    config: InversionConfig | None = None,
    *,
    layers: Sequence[str] = (),
    steps: Sequence[int] = (),
    prompts: Sequence[str] | None = None,
    run_all: bool = False,
) -> InversionResult:
    """DDIM inversion of clean latents, capturing ``layers`` at the calls in ``steps``.

    Args:
        extractor: the extractor (backbone, registry, prompts).
        latents: ``(B, C, h, w)`` clean latents (the posterior mean or a sample; not the
            ``"sample-per-draw"`` mean and std).
        config: the inversion config (default :class:`InversionConfig`).
        layers: registry names captured at the collected calls.
        steps: the calls ``k`` (0 .. num_steps - 1) at which ``layers`` are captured.
        prompts: one prompt per image (default: the extractor's, unfilled templates
            become ``"object"``).
        run_all: run every call (for the round trip); otherwise stop after the last
            collected call.

    Returns:
        The :class:`InversionResult`.

    Raises:
        ValueError: a step outside the trajectory, ``prompts`` not one per image, or
            ``"sample-per-draw"`` latents (mean and std channels).
    """
    config = config or InversionConfig()
    plan = inversion_plan(extractor.backbone, config)
    steps = sorted({int(k) for k in steps})
    if any(not 0 <= k < config.num_steps for k in steps):
        raise ValueError(f"steps {steps} outside 0..{config.num_steps - 1}")
    layers = list(dict.fromkeys(extractor.registry.check(layers))) if steps else []
    embeddings = _image_embeddings(extractor, latents.shape[0], prompts)
    _check_latent_channels(extractor, latents)
    last = config.num_steps - 1 if run_all or not steps else steps[-1]
    backbone = extractor.backbone
    x = latents.to(backbone.device).double()
    result = InversionResult(latents=latents, plan=plan)
    unet = backbone.unet
    hooks = capture(extractor.registry, layers, stop_early=False) if layers else nullcontext({})
    with hooks as captured:
        for k in range(last + 1):
            captured.clear()
            out = _unet_call(unet, x.to(backbone.dtype), plan.timesteps[k], embeddings)
            if k in steps:
                check_fired(captured, layers, unet)
                result.features[k] = {name: captured[name].float().cpu() for name in layers}
                result.timesteps[k] = plan.timesteps[k]
            x = _ddim_move(x, out, plan.alpha_in[k], plan.alpha_out[k], plan.prediction_type)
            result.calls += 1
    result.latents = x.float().cpu()
    return result


def _image_embeddings(
    extractor: FeatureExtractor, n: int, prompts: Sequence[str] | None
) -> torch.Tensor:
    """``(n, tokens, width)`` text embeddings, one prompt per image."""
    if prompts is None:
        prompts = [extractor.prompt_for()] * n
    if len(prompts) != n:
        raise ValueError(f"{len(prompts)} prompts for {n} images")
    backbone = extractor.backbone
    return extractor.prompts(list(prompts), backbone.device, backbone.dtype)


def _check_latent_channels(extractor: FeatureExtractor, latents: torch.Tensor) -> None:
    """``ValueError`` for latents that are not the U-Net's input width."""
    expected = int(extractor.backbone.base_unet.config.in_channels)
    if latents.shape[1] != expected:
        raise ValueError(
            f"latents have {latents.shape[1]} channels, the U-Net takes {expected} "
            "(DDIM inversion needs one latent per image: latent='mean' or 'sample')"
        )


# --------------------------------------------------------------------------- stacks


@dataclass(frozen=True)
class StackSpec:
    """``L`` layers at ``S`` timesteps on a common grid: what :func:`collect_stacks` builds.

    Attributes:
        layers: registry layer names, in channel order (Hyperfeatures: the 12 up ResNets'
            residual branches ``up{i}.res{j}.conv2``).
        mode: ``"inversion"`` (DDIM inversion, Hyperfeatures) or ``"noise"`` (each timestep
            reached by ``scheduler.add_noise`` with the extractor's seeded draw 0).
        timesteps: the timesteps of the noise path (scheduler indices 0..T-1).
        steps: the inversion calls ``k`` collected (see :func:`hyperfeatures_steps`).
        inversion: the inversion config.
        grid: side (or ``(height, width)``) of the common grid in feature cells
            (Hyperfeatures: 64).
        resize: ``"bilinear"`` (Hyperfeatures) or ``"bicubic"``, ``align_corners=False``.

    Raises:
        ValueError: an unknown mode or resize mode, no layers, or no timesteps / steps.
    """

    layers: tuple[str, ...]
    mode: str = "inversion"
    timesteps: tuple[int, ...] = ()
    steps: tuple[int, ...] = ()
    inversion: InversionConfig = field(default_factory=InversionConfig)
    grid: int | tuple[int, int] = 64
    resize: str = "bilinear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "timesteps", tuple(int(t) for t in self.timesteps))
        object.__setattr__(self, "steps", tuple(int(k) for k in self.steps))
        if self.mode not in TRAJECTORY_MODES:
            raise ValueError(f"mode must be one of {TRAJECTORY_MODES}, got {self.mode!r}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if not self.layers:
            raise ValueError("a stack needs at least one layer")
        wanted = self.timesteps if self.mode == "noise" else self.steps
        if not wanted:
            raise ValueError(
                f"mode {self.mode!r} needs {'timesteps' if self.mode == 'noise' else 'steps'}"
            )

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the common grid."""
        g = self.grid
        return (int(g), int(g)) if isinstance(g, int) else (int(g[0]), int(g[1]))

    @property
    def n_timesteps(self) -> int:
        """``S``, the timesteps (or inversion calls) stacked."""
        return len(self.timesteps) if self.mode == "noise" else len(self.steps)

    def key_fields(self) -> dict:
        """What about the spec shapes a stack (part of its store key).

        Returns:
            JSON-able dict: layers, mode, the timesteps or the steps with the inversion
            config, grid, resize mode and the stored dtype.
        """
        fields = {"layers": list(self.layers), "mode": self.mode, "grid": list(self.size)}
        fields.update(resize=self.resize, dtype="float16")
        if self.mode == "noise":
            fields["timesteps"] = list(self.timesteps)
        else:
            fields["steps"] = list(self.steps)
            fields["inversion"] = asdict(self.inversion)
        return fields


def stack_timesteps(spec: StackSpec, backbone: Backbone) -> list[int]:
    """The timestep the U-Net saw for each of the stack's ``S`` slices.

    Args:
        spec: the stack spec.
        backbone: the model (the inversion grid depends on its scheduler config).

    Returns:
        ``S`` timesteps, in stack order.
    """
    if spec.mode == "noise":
        return list(spec.timesteps)
    plan = inversion_plan(backbone, spec.inversion)
    return [plan.timesteps[k] for k in spec.steps]


def resize_concat(
    maps: Sequence[torch.Tensor], size: tuple[int, int], mode: str = "bilinear"
) -> torch.Tensor:
    """Resize ``(B, C_l, h_l, w_l)`` maps to ``size`` and concatenate their channels.

    Args:
        maps: the maps, in channel order.
        size: ``(height, width)`` of the common grid.
        mode: ``"bilinear"`` or ``"bicubic"`` (``align_corners=False``; a map already at
            ``size`` is kept as it is).

    Returns:
        ``(B, sum of C_l, height, width)`` in the maps' dtype and device.
    """
    out = []
    for m in maps:
        if tuple(m.shape[-2:]) != tuple(size):
            m = F.interpolate(m, size=tuple(size), mode=mode, align_corners=False)
        out.append(m)
    return torch.cat(out, dim=1)


def stack_nbytes(spec: StackSpec, channels: Sequence[int], bytes_per_value: int = 2) -> int:
    """Bytes of one image's stack: ``S x sum(C) x g_h x g_w x bytes_per_value``.

    Args:
        spec: the stack spec.
        channels: channels of each layer.
        bytes_per_value: 2 for float16 (stored), 4 for float32.

    Returns:
        Bytes (the store's compressed-free ``.npz`` adds a few hundred bytes of header).
    """
    h, w = spec.size
    return spec.n_timesteps * int(sum(channels)) * h * w * bytes_per_value


def _noise_stacks(
    extractor: FeatureExtractor,
    latents: torch.Tensor,
    spec: StackSpec,
    prompts: Sequence[str],
    keys: Sequence[str],
) -> torch.Tensor:
    """``(B, S, sum C, g, g)`` float32 stacks of the noise path: one batched pass."""
    rows = [Row(i, t, prompts[i]) for i in range(latents.shape[0]) for t in spec.timesteps]
    maps = forward_rows(extractor, latents, rows, spec.layers, keys=keys)
    fused = resize_concat([maps[name] for name in spec.layers], spec.size, spec.resize)
    return fused.reshape(latents.shape[0], spec.n_timesteps, *fused.shape[1:])


def _inversion_stacks(
    extractor: FeatureExtractor,
    latents: torch.Tensor,
    spec: StackSpec,
    prompts: Sequence[str],
) -> torch.Tensor:
    """``(B, S, sum C, g, g)`` float32 stacks of the inversion path: one trajectory."""
    result = ddim_invert(
        extractor,
        latents,
        spec.inversion,
        layers=spec.layers,
        steps=spec.steps,
        prompts=prompts,
    )
    slices = [
        resize_concat([result.features[k][name] for name in spec.layers], spec.size, spec.resize)
        for k in spec.steps
    ]
    return torch.stack(slices, dim=1)


def _stack_fields(config: dict, spec: StackSpec, prompt: str, image: str) -> dict:
    """Store key fields of one image's stack."""
    return {"extractor": config, "stack": spec.key_fields(), "prompt": prompt, "image": image}


def collect_stacks(
    images: Sequence[np.ndarray],
    extractor: FeatureExtractor,
    spec: StackSpec,
    *,
    prompts: Sequence[str] | None = None,
    store: FeatureStore | None = None,
    batch_size: int = 4,
    progress: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:
    """Stacks of ``L`` layers at ``S`` timesteps on a common grid, one float16 array per image.

    Read from the store where present; the others are computed ``batch_size`` images at a
    time (noise path: one U-Net batch of ``batch_size x S`` rows; inversion path: one
    trajectory for the batch) and written as float16 (kind ``"stack"``), so an interrupted
    run resumes where it stopped. A computed stack that is not finite in float16 raises
    ``FloatingPointError`` and is not stored.

    Args:
        images: ``(H, W, 3)`` uint8 RGB arrays (resized by the extractor).
        extractor: the extractor (model, size, latent mode, seed, noise).
        spec: layers, timesteps or inversion steps, grid.
        prompts: one filled prompt per image (default: the extractor's).
        store: the cache (default: the extractor's; ``None`` there: nothing cached).
        batch_size: images per computation.
        progress: called with the number of images finished after each batch.

    Returns:
        One ``(S, sum of C_l, g_h, g_w)`` float16 CPU tensor per image, layers concatenated
        in ``spec.layers`` order within each timestep slice.

    Raises:
        ValueError: ``prompts`` is not one per image.
    """
    store = extractor.store if store is None else store
    extractor.registry.check(spec.layers)
    prompts = [extractor.prompt_for()] * len(images) if prompts is None else list(prompts)
    if len(prompts) != len(images):
        raise ValueError(f"{len(prompts)} prompts for {len(images)} images")
    config = extractor.config()
    out: list[torch.Tensor] = []
    for start in range(0, len(images), batch_size):
        batch = [np.asarray(im) for im in images[start : start + batch_size]]
        texts = prompts[start : start + batch_size]
        digests = [image_digest(im) for im in batch]
        fields = [_stack_fields(config, spec, p, d) for p, d in zip(texts, digests)]

        def compute(missing: list[int], batch=batch, texts=texts, digests=digests) -> list:
            fresh = _compute_stacks(extractor, spec, batch, texts, digests, missing)
            return [({"stack": s}, {}) for s in fresh]

        entries = get_or_compute(store, "stack", fields, compute)
        out += [torch.from_numpy(np.asarray(e.arrays["stack"])) for e in entries]
        if progress is not None:
            progress(len(batch))
    return out


def _compute_stacks(
    extractor: FeatureExtractor,
    spec: StackSpec,
    batch: list[np.ndarray],
    prompts: list[str],
    digests: list[str],
    missing: list[int],
) -> list[np.ndarray]:
    """Float16 stacks of the ``missing`` images of a batch."""
    images = [batch[i] for i in missing]
    texts = [prompts[i] for i in missing]
    latents = extractor.encode(images)
    if spec.mode == "noise":
        stacks = _noise_stacks(extractor, latents, spec, texts, [digests[i] for i in missing])
    else:
        stacks = _inversion_stacks(extractor, latents, spec, texts)
    half = stacks.to(torch.float16)
    if not torch.isfinite(half).all():
        raise FloatingPointError("a stack holds values that are not finite in float16")
    return [s.numpy() for s in half]
