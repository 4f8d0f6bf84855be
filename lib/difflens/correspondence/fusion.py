"""Hand-set fusion of several layers, timesteps and prompts into one descriptor map.

A fusion is a list of :class:`FusionEntry` -- (layer, timestep, prompt, weight) -- and a common
grid. Each entry's map is L2-normalised per pixel (``F.normalize`` over channels), resized to the
common grid (bilinear or bicubic, ``align_corners=False``), multiplied by its weight, and the
entries are concatenated along channels (:func:`fuse_maps`). The cosine of two fused
descriptors is then ``sum_e w_e^2 cos_e / sum_e w_e^2`` at cells where no resizing intervenes:
each entry contributes in proportion to its squared weight, whatever its channel count.

Optionally the pair's two fused maps are reduced to a fixed width by a PCA computed jointly over
the pixels of both images (:func:`joint_pca`): SD-DINO's reduction (Zhang et al., NeurIPS 2023,
"A Tale of Two Features"; ``Junyi42/sd-dino: utils/utils_correspondence.py``, ``co_pca``), there
per layer before resizing (``pca_mode="per_entry"``), or here optionally once on the fused map
(``"fused"``). The PCA is exact (an SVD of the centred pixels, not ``torch.pca_lowrank``'s
randomised one), so it is deterministic; each component's sign is fixed so that its largest
loading is positive.

Extraction: every entry that shares a timestep and a prompt is served by ONE U-Net row per image
(all their layers are captured from it); entries with another prompt or timestep are other rows of
the same batch (:func:`~difflens.features.trajectory.forward_rows`). A ``{class}`` in an entry's
prompt is filled with the image's category as the extractor fills its own template (names
joined by " and ", ``"object"`` without one).

Presets (:data:`FUSION_PRESETS`, frozen :class:`FusionPreset`):

``dift_single``
    DIFT's single layer (Tang et al. 2023, ``Tsingularity/dift: eval_spair.py``): SD 2.1 at
    768 px, ``up1`` (``up_blocks[1]``) at ``t = 261``, ensemble 8, prompt ``"a photo of a
    {class}"``, bilinear.
``multilayer_study``
    the multi-layer matching study (Cheng and Han, HKU; seed 001): the second and third decoder
    blocks, each with its own timestep and prompt, bicubic upsampling. The study prints neither
    timesteps nor prompts; the values chosen here are DIFT's own settings for those two blocks:
    ``up1`` at ``t = 261`` with ``"a photo of a {class}"`` (DIFT's SPair setting for
    ``up_ft_index = 1``) and ``up2`` at ``t = 51`` with the empty prompt (DIFT's DAVIS setting
    for ``up_ft_index = 2``, its generic extractor's empty prompt), following the study's own
    reasoning that the earlier decoder block holds abstract semantics at a larger timestep and
    the later, finer block local detail at a smaller one. Equal weights; grid 96 (``up2``'s
    map at 768 px). SD4Match's learned prompts (the study's Single / Class / CPM rows) are not
    reproduced.
``all_decoder``
    every decoder ResNet output (``up{i}.res{j}``, 12 on SD) of SD 1.5 at 512 px, ``t = 261``,
    empty prompt, equal weights, on the 64 grid: the "concatenate everything" baseline
    (Hyperfeatures' SD-Concat-All reading, here on ResNet outputs).
``toy_*``
    the same three recipes on the offline toy model (``load_backbone("toy")``, 64 px); their
    layers and timesteps are the toy's own (see :data:`TOY_FUSION_NOTE`).

Evaluation (:func:`evaluate_maps`, :func:`evaluate_fusions`) matches every pair's keypoints with
:func:`~difflens.correspondence.matching.match_keypoints` (maps upsampled to the original image
sizes, cosine, argmax; DIFT's protocol) and scores them with
:func:`~difflens.correspondence.pck.evaluate_pck`; :func:`paired_difference` gives a paired
bootstrap interval of the difference between two methods on the same pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from difflens.correspondence.matching import match_keypoints
from difflens.correspondence.pck import PairKeypoints, evaluate_pck, pair_correct
from difflens.correspondence.presets import PRESETS
from difflens.data.keypoints import KeypointPair, check_pair
from difflens.features.extractor import FeatureExtractor
from difflens.features.settings import Setting
from difflens.features.store import image_digest
from difflens.features.trajectory import Row, forward_rows
from difflens.models.layers import LayerRegistry

__all__ = [
    "FusionEntry",
    "FusionPreset",
    "FUSION_PRESETS",
    "TOY_FUSION_NOTE",
    "get_fusion",
    "decoder_layers",
    "single_layer_fusions",
    "fusion_table",
    "fill_prompt",
    "l2_normalize",
    "fuse_maps",
    "joint_pca",
    "entry_maps",
    "fused_features",
    "pair_fusion",
    "MapsRun",
    "evaluate_maps",
    "evaluate_fusions",
    "paired_difference",
]

RESIZE_MODES: tuple[str, ...] = ("bilinear", "bicubic")
PCA_MODES: tuple[str, ...] = ("fused", "per_entry")


@dataclass(frozen=True)
class FusionEntry:
    """One map of a fusion: a layer at a timestep under a prompt, with its weight.

    Attributes:
        layer: registry layer name (``"up1"``, ``"up2.res1"``, ``"up1.res2.conv2"``).
        timestep: scheduler index 0..T-1 (0: the clean latent).
        prompt: text, or a template with ``{class}`` filled with each image's category.
        weight: the factor the L2-normalised map is multiplied by (its share of the cosine
            is ``weight**2`` over the sum of squared weights).
        ensemble: noise draws averaged (DIFT's ensemble).

    Raises:
        ValueError: a negative timestep, a non-positive ensemble, or a negative weight.
    """

    layer: str
    timestep: int = 0
    prompt: str = ""
    weight: float = 1.0
    ensemble: int = 1

    def __post_init__(self) -> None:
        if self.timestep < 0 or self.ensemble < 1 or self.weight < 0:
            raise ValueError(f"{self}: timestep >= 0, ensemble >= 1 and weight >= 0 required")

    @property
    def label(self) -> str:
        """A short name: ``"up1 t=261 'a photo of a {class}'"``."""
        prompt = f" {self.prompt!r}" if self.prompt else ""
        ens = f" x{self.ensemble}" if self.ensemble > 1 else ""
        return f"{self.layer} t={self.timestep}{ens}{prompt}"


@dataclass(frozen=True)
class FusionPreset:
    """A named fusion: model, size, entries, common grid, resizing and optional PCA.

    Attributes:
        name: the preset's name.
        model: hub id, local folder, ``"toy"`` or ``"tiny"``.
        image_size: side in pixels images are resized to.
        entries: the :class:`FusionEntry` s, in channel order.
        grid: side of the common grid in feature cells (``None``: the largest entry map).
        resize: ``"bilinear"`` or ``"bicubic"`` (maps to the common grid).
        pca_width: width of the joint PCA of a pair (``None``: no reduction).
        pca_mode: ``"per_entry"`` (SD-DINO: each entry reduced before resizing, then
            concatenated) or ``"fused"`` (the fused map reduced once).
        upsample: how matching upsamples the fused maps to the image sizes.
        latent: the extractor's latent mode (``"mean"``, ``"sample"``, ``"sample-per-draw"``).
        source: the paper and code it follows.
        note: what was chosen and why.

    Raises:
        ValueError: no entries, or an unknown resize or PCA mode, or a non-positive width.
    """

    name: str
    model: str
    image_size: int
    entries: tuple[FusionEntry, ...]
    grid: int | None = None
    resize: str = "bilinear"
    pca_width: int | None = None
    pca_mode: str = "fused"
    upsample: str = "bilinear"
    latent: str = "mean"
    source: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))
        if not self.entries:
            raise ValueError(f"fusion {self.name!r} has no entries")
        if self.resize not in RESIZE_MODES or self.pca_mode not in PCA_MODES:
            raise ValueError(f"fusion {self.name!r}: resize in {RESIZE_MODES}, pca in {PCA_MODES}")
        if self.pca_width is not None and self.pca_width < 1:
            raise ValueError(f"fusion {self.name!r}: pca_width must be >= 1")

    def with_(self, **changes: object) -> FusionPreset:
        """A copy with some fields changed.

        Args:
            **changes: new field values (``entries=...``, ``pca_width=64``).

        Returns:
            The new preset.
        """
        return replace(self, **changes)


def _decoder_resnets(blocks: Sequence[int]) -> list[str]:
    """``up{i}.res{j}`` names of up blocks with ``blocks[i]`` ResNets each."""
    return [f"up{i}.res{j}" for i, n in enumerate(blocks) for j in range(n)]


TOY_FUSION_NOTE = (
    "toy model (pixel space, 64 px): up1 is its 16 x 16 decoder block and up2 its 32 x 32 one, "
    "as SD's up1 / up2 are 1/16 and 1/8 of the input; the toy's class-name captions make "
    "'{class}' its class prompt; t = 50 for the finer block and t = 200 for the coarser one "
    "(a larger timestep for the earlier block, as the study argues), not tuned"
)
"""Why the toy presets use the layers, timesteps and prompts they do."""

FUSION_PRESETS: dict[str, FusionPreset] = {
    "dift_single": FusionPreset(
        name="dift_single",
        model="stabilityai/stable-diffusion-2-1",
        image_size=768,
        entries=(FusionEntry("up1", 261, "a photo of a {class}", ensemble=8),),
        latent="sample-per-draw",
        source="Tang et al. 2023 (DIFT); Tsingularity/dift: eval_spair.py",
        note="one entry: DIFT's SPair setting",
    ),
    "multilayer_study": FusionPreset(
        name="multilayer_study",
        model="stabilityai/stable-diffusion-2-1",
        image_size=768,
        entries=(
            FusionEntry("up1", 261, "a photo of a {class}", ensemble=8),
            FusionEntry("up2", 51, "", ensemble=8),
        ),
        grid=96,
        resize="bicubic",
        upsample="bicubic",
        latent="sample-per-draw",
        source="Cheng and Han (HKU), multi-layer matching study (seed 001); DIFT's settings",
        note="timesteps and prompts not printed by the study: DIFT's SPair setting for up1, "
        "DIFT's DAVIS setting (t = 51) and the empty prompt for up2",
    ),
    "all_decoder": FusionPreset(
        name="all_decoder",
        model="stable-diffusion-v1-5/stable-diffusion-v1-5",
        image_size=512,
        entries=tuple(FusionEntry(name, 261) for name in _decoder_resnets((3, 3, 3, 3))),
        grid=64,
        source="concatenation of every decoder ResNet (Hyperfeatures' SD-Concat-All baseline)",
        note="equal weights after per-pixel L2 normalisation",
    ),
    "toy_single": FusionPreset(
        name="toy_single",
        model="toy",
        image_size=64,
        entries=(FusionEntry(PRESETS["toy"].layer, PRESETS["toy"].timestep),),
        source="the toy preset of difflens.correspondence.presets",
        note="layer and timestep chosen on validation toy pairs",
    ),
    "toy_study": FusionPreset(
        name="toy_study",
        model="toy",
        image_size=64,
        entries=(FusionEntry("up1", 200, "{class}"), FusionEntry("up2", 50, "")),
        grid=64,
        resize="bicubic",
        upsample="bicubic",
        source="the multi-layer matching study's recipe on the toy model",
        note=TOY_FUSION_NOTE,
    ),
    "toy_all_decoder": FusionPreset(
        name="toy_all_decoder",
        model="toy",
        image_size=64,
        entries=tuple(FusionEntry(name, 50) for name in _decoder_resnets((2, 3, 2, 2))),
        grid=32,
        source="every decoder ResNet of the toy model",
        note="equal weights; the toy preset's timestep",
    ),
}
"""The named fusion presets."""


def get_fusion(name: str | FusionPreset) -> FusionPreset:
    """A fusion preset by name (a preset is returned as it is).

    Args:
        name: a key of :data:`FUSION_PRESETS`, or a :class:`FusionPreset`.

    Returns:
        The preset.

    Raises:
        KeyError: an unknown name; the message lists the known ones.
    """
    if isinstance(name, FusionPreset):
        return name
    if name not in FUSION_PRESETS:
        raise KeyError(f"unknown fusion preset {name!r}; known: {', '.join(FUSION_PRESETS)}")
    return FUSION_PRESETS[name]


def fusion_table() -> pd.DataFrame:
    """:data:`FUSION_PRESETS` as a table, one row per (preset, entry).

    Returns:
        Columns ``preset``, ``model``, ``image_size``, ``layer``, ``timestep``, ``prompt``,
        ``weight``, ``ensemble``, ``grid``, ``resize``, ``pca_width``, ``note``.
    """
    rows = []
    for p in FUSION_PRESETS.values():
        for e in p.entries:
            rows.append(
                {
                    "preset": p.name,
                    "model": p.model,
                    "image_size": p.image_size,
                    **{k: getattr(e, k) for k in ("layer", "timestep", "prompt", "weight")},
                    "ensemble": e.ensemble,
                    "grid": p.grid,
                    "resize": p.resize,
                    "pca_width": p.pca_width,
                    "note": p.note,
                }
            )
    return pd.DataFrame(rows)


def decoder_layers(registry: LayerRegistry, kind: str = "resnet") -> list[str]:
    """The decoder's layers of one kind, in forward order.

    Args:
        registry: the U-Net's layer registry.
        kind: ``"resnet"`` (the up ResNets' outputs ``up{i}.res{j}``), ``"residual"`` (their
            residual branches ``up{i}.res{j}.conv2``, Hyperfeatures' inputs) or ``"block"``
            (``up{i}``).

    Returns:
        The names (12 ResNets on SD 1.x / 2.x; 9 on the toy model).
    """
    return [info.name for info in registry if info.stage == "decoder" and info.kind == kind]


def single_layer_fusions(
    layers: Sequence[str], timestep: int, model: str, image_size: int, prompt: str = ""
) -> dict[str, FusionPreset]:
    """One single-entry fusion per layer, all at one timestep and prompt.

    Args:
        layers: the layer names.
        timestep: their timestep.
        model: the model name recorded in the presets.
        image_size: the image size recorded in the presets.
        prompt: their prompt (text or ``{class}`` template).

    Returns:
        ``layer -> preset`` named by the layer.
    """
    return {
        name: FusionPreset(name, model, image_size, (FusionEntry(name, timestep, prompt),))
        for name in layers
    }


# --------------------------------------------------------------------------- the arithmetic


def fill_prompt(template: str, category: str | None = None) -> str:
    """An entry's prompt for one image: ``{class}`` replaced by its category.

    Args:
        template: text, or a template with ``{class}``.
        category: the image's category (``None`` or ``""``: ``"object"``).

    Returns:
        The prompt text.
    """
    if "{class}" not in template:
        return template
    return template.replace("{class}", category or "object")


def l2_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Maps divided by their per-pixel norm over channels (``F.normalize``, ``eps=1e-12``).

    Args:
        maps: ``(B, C, h, w)`` or ``(C, h, w)``.

    Returns:
        The same shape and dtype; each pixel's channel vector has norm 1 (0 stays 0).
    """
    return F.normalize(maps, dim=-3, eps=1e-12)


def _as_batch(m: torch.Tensor) -> torch.Tensor:
    return m if m.dim() == 4 else m.unsqueeze(0)


def fuse_maps(
    maps: Sequence[torch.Tensor],
    weights: Sequence[float] | None = None,
    size: tuple[int, int] | int | None = None,
    resize: str = "bilinear",
) -> torch.Tensor:
    """L2-normalise each map per pixel, resize to a common grid, weight, and concatenate.

    Args:
        maps: ``(B, C_e, h_e, w_e)`` maps (or ``(C_e, h_e, w_e)``), in channel order.
        weights: one weight per map (default 1 each).
        size: the common grid, ``(height, width)`` or a side (default: the largest map's
            ``(max h_e, max w_e)``).
        resize: ``"bilinear"`` or ``"bicubic"`` (``align_corners=False``).

    Returns:
        ``(B, sum C_e, height, width)`` (``(sum C_e, height, width)`` for unbatched maps), in
        the maps' dtype.

    Raises:
        ValueError: ``weights`` is not one per map, no maps, or an unknown resize mode.
    """
    if not maps:
        raise ValueError("fuse_maps needs at least one map")
    weights = [1.0] * len(maps) if weights is None else list(weights)
    if len(weights) != len(maps) or resize not in RESIZE_MODES:
        raise ValueError(f"{len(weights)} weights for {len(maps)} maps, resize={resize!r}")
    batched = [_as_batch(m) for m in maps]
    if size is None:
        size = (max(m.shape[-2] for m in batched), max(m.shape[-1] for m in batched))
    size = (size, size) if isinstance(size, int) else tuple(size)
    parts = []
    for m, w in zip(batched, weights):
        m = l2_normalize(m)
        if tuple(m.shape[-2:]) != size:
            m = F.interpolate(m, size=size, mode=resize, align_corners=False)
        parts.append(m * w)
    out = torch.cat(parts, dim=1)
    return out if maps[0].dim() == 4 else out[0]


def joint_pca(
    source: torch.Tensor, target: torch.Tensor, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduce two maps to ``width`` channels with one PCA over the pixels of both (SD-DINO).

    The pixels of both maps are stacked (``N = hs ws + ht wt`` rows of ``C``), centred by their
    joint mean, and projected on the top ``width`` right singular vectors of that matrix (an
    exact SVD in float64); each component's sign makes its largest loading positive.

    Args:
        source: ``(C, hs, ws)`` map.
        target: ``(C, ht, wt)`` map, same channels.
        width: components kept (at most ``min(N, C)``; fewer are kept when there are fewer).

    Returns:
        ``(k, hs, ws)`` and ``(k, ht, wt)`` float32 maps, ``k = min(width, N, C)``, on the
        inputs' device.

    Raises:
        ValueError: the maps have different channels or ``width < 1``.
    """
    if source.shape[0] != target.shape[0] or width < 1:
        raise ValueError(
            f"joint_pca: channels {source.shape[0]} vs {target.shape[0]}, width {width}"
        )
    c = source.shape[0]
    x = torch.cat([source.reshape(c, -1), target.reshape(c, -1)], dim=1).T.double()
    x = x - x.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    k = min(width, vh.shape[0])
    basis = vh[:k]
    signs = torch.sign(basis.gather(1, basis.abs().argmax(dim=1, keepdim=True)))
    basis = basis * torch.where(signs == 0, torch.ones_like(signs), signs)
    projected = (x @ basis.T).T.float()
    n_src = source.shape[1] * source.shape[2]
    return (
        projected[:, :n_src].reshape(k, *source.shape[1:]),
        projected[:, n_src:].reshape(k, *target.shape[1:]),
    )


# --------------------------------------------------------------------------- extraction


def _entry_rows(
    extractor: FeatureExtractor,
    entries: Sequence[FusionEntry],
    categories: Sequence[str | None],
) -> tuple[list[Row], list[list[list[int]]]]:
    """Distinct rows and, per entry and image, the rows (one per draw) it averages."""
    index: dict[Row, int] = {}
    plan: list[list[list[int]]] = []
    for entry in entries:
        draws = extractor.draws(Setting(entry.timestep, entry.ensemble))
        per_image = []
        for i, category in enumerate(categories):
            prompt = fill_prompt(entry.prompt, category)
            rows = [Row(i, entry.timestep, prompt, d) for d in range(draws)]
            per_image.append([index.setdefault(r, len(index)) for r in rows])
        plan.append(per_image)
    return list(index), plan


def entry_maps(
    images: Sequence[np.ndarray],
    extractor: FeatureExtractor,
    entries: Sequence[FusionEntry],
    *,
    categories: Sequence[str | None] | None = None,
) -> list[torch.Tensor]:
    """Each entry's maps of every image, from one U-Net batch of distinct rows.

    The rows are the distinct (image, timestep, filled prompt, noise draw) the entries need;
    every layer of every entry is captured from each row, so entries that share a timestep
    and a prompt share their row.

    Args:
        images: ``(H, W, 3)`` uint8 RGB arrays (resized by the extractor).
        extractor: the extractor (model, size, latent mode, seed, noise).
        entries: the fusion entries.
        categories: one category per image for ``{class}`` prompts (default: none).

    Returns:
        One ``(B, C_e, h_e, w_e)`` float32 CPU tensor per entry (averaged over its draws).

    Raises:
        ValueError: ``categories`` is not one per image.
    """
    categories = [None] * len(images) if categories is None else list(categories)
    if len(categories) != len(images):
        raise ValueError(f"{len(categories)} categories for {len(images)} images")
    rows, plan = _entry_rows(extractor, entries, categories)
    arrays = [np.asarray(im) for im in images]
    keys = [image_digest(a) for a in arrays] if extractor.noise != "shared" else None
    latents = extractor.encode(arrays)
    layers = list(dict.fromkeys(e.layer for e in entries))
    maps = forward_rows(extractor, latents, rows, layers, keys=keys)
    out = []
    for entry, per_image in zip(entries, plan):
        fmap = maps[entry.layer]
        out.append(torch.stack([fmap[idx].mean(0) for idx in per_image]))
    return out


def fused_features(
    images: Sequence[np.ndarray],
    extractor: FeatureExtractor,
    entries: Sequence[FusionEntry],
    *,
    categories: Sequence[str | None] | None = None,
    grid: int | tuple[int, int] | None = None,
    resize: str = "bilinear",
) -> torch.Tensor:
    """Fused descriptor maps of images: :func:`entry_maps` then :func:`fuse_maps`.

    Args:
        images: ``(H, W, 3)`` uint8 RGB arrays.
        extractor: the extractor.
        entries: the fusion entries (their weights are used).
        categories: one category per image for ``{class}`` prompts.
        grid: the common grid (default: the largest entry map).
        resize: ``"bilinear"`` or ``"bicubic"``.

    Returns:
        ``(B, sum C_e, height, width)`` float32 CPU.
    """
    maps = entry_maps(images, extractor, entries, categories=categories)
    return fuse_maps(maps, [e.weight for e in entries], grid, resize)


def pair_fusion(
    source_maps: Sequence[torch.Tensor],
    target_maps: Sequence[torch.Tensor],
    preset: FusionPreset,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A pair's two fused maps from its entries' maps, with the preset's optional joint PCA.

    Args:
        source_maps: one ``(C_e, h_e, w_e)`` map per entry of the source image.
        target_maps: likewise for the target image.
        preset: weights, grid, resizing and PCA.

    Returns:
        ``(D, H, W)`` source and target maps (``D`` = the PCA width when there is one).
    """
    weights = [e.weight for e in preset.entries]
    if preset.pca_width is not None and preset.pca_mode == "per_entry":
        reduced = [joint_pca(s, t, preset.pca_width) for s, t in zip(source_maps, target_maps)]
        source_maps = [s for s, _ in reduced]
        target_maps = [t for _, t in reduced]
    src = fuse_maps(list(source_maps), weights, preset.grid, preset.resize)
    trg = fuse_maps(list(target_maps), weights, preset.grid, preset.resize)
    if preset.pca_width is not None and preset.pca_mode == "fused":
        src, trg = joint_pca(src, trg, preset.pca_width)
    return src, trg


# --------------------------------------------------------------------------- evaluation


@dataclass
class MapsRun:
    """PCK of one way of making descriptor maps, on a set of pairs.

    Attributes:
        name: the method's name.
        table: :func:`~difflens.correspondence.pck.evaluate_pck`'s table.
        records: one :class:`~difflens.correspondence.pck.PairKeypoints` per matched pair.
        pair_ids: the matched pairs' ids, in order.
        skipped: ``pair id -> reason`` of the pairs that could not be used.
    """

    name: str
    table: pd.DataFrame
    records: list[PairKeypoints]
    pair_ids: list[str]
    skipped: dict[str, str] = field(default_factory=dict)

    def pck(
        self, alpha: float = 0.1, averaging: str = "per_image", reading: str = "target_bbox"
    ) -> tuple[float, float, float]:
        """PCK and its interval over all pairs.

        Args:
            alpha: the alpha.
            averaging: ``"per_image"`` or ``"per_point"``.
            reading: the threshold reading.

        Returns:
            ``(pck, low, high)`` in ``[0, 1]``.

        Raises:
            KeyError: the table has no such row.
        """
        t = self.table
        rows = t[
            np.isclose(t.alpha, alpha)
            & (t.averaging == averaging)
            & (t.reading == reading)
            & (t.category == "all")
        ]
        if rows.empty:
            raise KeyError(f"no row for alpha={alpha}, {averaging}, {reading}")
        row = rows.iloc[0]
        return float(row.pck), float(row.low), float(row.high)


def _record(pair: KeypointPair, pred: torch.Tensor) -> PairKeypoints:
    """The PCK record of one matched pair (original pixels, target and source boxes)."""
    return PairKeypoints(
        pred=pred.detach().cpu().double().numpy().reshape(-1, 2),
        gt=pair.target_points.astype(np.float64),
        category=pair.category,
        trg_size=pair.target_size,
        trg_bbox=tuple(float(v) for v in pair.target_box),
        src_size=pair.source_size,
        src_bbox=tuple(float(v) for v in pair.source_box),
        group=pair.source_name or pair.pair_id,
    )


def _score(
    name: str,
    records: list[PairKeypoints],
    ids: list[str],
    skipped: dict[str, str],
    alphas: Sequence[float],
    n_boot: int,
    seed: int,
) -> MapsRun:
    """The :class:`MapsRun` of matched records."""
    table = evaluate_pck(
        records, readings=("target_bbox",), alphas=alphas, n_boot=n_boot, seed=seed
    )
    return MapsRun(name, table, records, ids, skipped)


def evaluate_maps(
    pairs: Iterable[KeypointPair],
    maps: Callable[[KeypointPair], tuple[torch.Tensor, torch.Tensor]],
    *,
    name: str = "maps",
    upsample: str = "bilinear",
    alphas: Sequence[float] = (0.05, 0.1, 0.15),
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> MapsRun:
    """Match every pair with the maps a function gives and score PCK (target box).

    Args:
        pairs: keypoint pairs.
        maps: ``pair -> (source (C, hs, ws), target (C, ht, wt))`` descriptor maps.
        name: the method's name.
        upsample: matching's upsampling of the maps to the original image sizes.
        alphas: PCK alphas.
        n_boot: bootstrap resamples of the intervals.
        seed: seed of the bootstrap.
        progress: show a progress bar.

    Returns:
        The :class:`MapsRun`; pairs that fail :func:`~difflens.data.keypoints.check_pair`
        or matching are in ``skipped`` with the reason.
    """
    records, ids, skipped = [], [], {}
    for pair in tqdm(list(pairs), desc=name, disable=not progress):
        try:
            check_pair(pair)
            src, trg = maps(pair)
            result = match_keypoints(
                src, trg, pair.source_size, pair.target_size, pair.source_points, upsample=upsample
            )
        except ValueError as error:
            skipped[pair.pair_id] = str(error)
            continue
        records.append(_record(pair, result.pred))
        ids.append(pair.pair_id)
    return _score(name, records, ids, skipped, alphas, n_boot, seed)


def evaluate_fusions(
    pairs: Iterable[KeypointPair],
    extractor: FeatureExtractor,
    fusions: Mapping[str, FusionPreset],
    *,
    alphas: Sequence[float] = (0.05, 0.1, 0.15),
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, MapsRun]:
    """PCK of several fusions on the same pairs, every distinct entry extracted once per pair.

    Args:
        pairs: keypoint pairs.
        extractor: the extractor (its model and size serve every fusion).
        fusions: ``name -> preset`` (their ``model`` and ``image_size`` are not reloaded).
        alphas: PCK alphas.
        n_boot: bootstrap resamples.
        seed: seed of the bootstrap.
        progress: show a progress bar.

    Returns:
        ``name -> MapsRun``, in the order of ``fusions``.
    """
    entries = list(dict.fromkeys(e for p in fusions.values() for e in p.entries))
    records: dict[str, list] = {name: [] for name in fusions}
    ids: list[str] = []
    skipped: dict[str, str] = {}
    for pair in tqdm(list(pairs), desc="fusions", disable=not progress):
        try:
            check_pair(pair)
            maps = entry_maps(
                [pair.source_image, pair.target_image],
                extractor,
                entries,
                categories=[pair.category, pair.category],
            )
            preds = {
                name: _match_fusion(pair, [m[0] for m in maps], [m[1] for m in maps], entries, p)
                for name, p in fusions.items()
            }
        except ValueError as error:
            skipped[pair.pair_id] = str(error)
            continue
        ids.append(pair.pair_id)
        for name, pred in preds.items():
            records[name].append(_record(pair, pred))
    return {
        name: _score(name, records[name], ids, skipped, alphas, n_boot, seed) for name in fusions
    }


def _match_fusion(
    pair: KeypointPair,
    source: list[torch.Tensor],
    target: list[torch.Tensor],
    entries: list[FusionEntry],
    preset: FusionPreset,
) -> torch.Tensor:
    """Predicted target x/y of one pair under one fusion, from the pair's entry maps."""
    pick = [entries.index(e) for e in preset.entries]
    src, trg = pair_fusion([source[i] for i in pick], [target[i] for i in pick], preset)
    result = match_keypoints(
        src, trg, pair.source_size, pair.target_size, pair.source_points, upsample=preset.upsample
    )
    return result.pred


def paired_difference(
    a: MapsRun,
    b: MapsRun,
    *,
    alpha: float = 0.1,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Per-image PCK of ``a`` minus ``b`` on their common pairs, with a paired bootstrap interval.

    Pairs are resampled with replacement, the same resample for both methods, and the
    difference of their per-image PCK (mean over pairs of each pair's fraction of correct
    keypoints, target box) is recomputed; the interval is the percentile interval.

    Args:
        a: the first method's run.
        b: the second method's run (same pairs; only pairs matched by both count).
        alpha: the PCK alpha.
        n_boot: bootstrap resamples.
        confidence: the interval's coverage.
        seed: seed of the resampling.

    Returns:
        ``difference``, ``low``, ``high`` (fractions), ``p_le_zero`` (the share of resamples
        with a difference at or below 0) and ``n_pairs``.

    Raises:
        ValueError: the runs share no pair.
    """
    common = [i for i in a.pair_ids if i in set(b.pair_ids)]
    if not common:
        raise ValueError(f"{a.name} and {b.name} share no pair")
    fa = _per_pair(a, common, alpha)
    fb = _per_pair(b, common, alpha)
    diff = fa - fb
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(diff), size=(n_boot, len(diff)))
    boot = diff[draws].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return {
        "difference": float(diff.mean()),
        "low": float(low),
        "high": float(high),
        "p_le_zero": float((boot <= 0).mean()),
        "n_pairs": len(common),
    }


def _per_pair(run: MapsRun, ids: list[str], alpha: float) -> np.ndarray:
    """Each listed pair's fraction of correct keypoints (target box, ``<=``)."""
    where = {pid: k for k, pid in enumerate(run.pair_ids)}
    return np.array(
        [pair_correct(run.records[where[i]], "target_bbox", (alpha,))[0].mean() for i in ids]
    )
