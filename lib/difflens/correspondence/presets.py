"""Named feature presets for correspondence: which model, size, layer, timestep and prompt.

A preset is data (a frozen :class:`FeaturePreset`), not a code path: every preset runs
through the same :class:`~difflens.features.extractor.FeatureExtractor` and the same
matching, and differs only in its fields. Each names the paper and code it follows.

``dift_sd``
    DIFT's SD features for semantic correspondence (Tang et al., NeurIPS 2023;
    ``Tsingularity/dift: src/models/dift_sd.py``, ``eval_spair.py``): SD 2.1
    (``stabilityai/stable-diffusion-2-1``, the 768 px v-model), images resized to 768 x 768
    without keeping the aspect ratio, ``t = 261``, the output of ``up_blocks[1]`` (registry
    name ``up1``: 1280 channels at 1/16 of the input, 48 x 48 at 768 px), an ensemble of 8
    copies, each with its own VAE posterior sample and its own noise, in one U-Net batch
    whose maps are averaged (latent mode ``"sample-per-draw"``), and the prompt
    ``"a photo of a {class}"`` filled with the pair's category (SPair's raw folder name,
    e.g. ``pottedplant``). DIFT draws its noise and posterior samples unseeded;
    here they are seeded.
``semantic_lens``
    the layer the semantic-lens paper studies (Bonechi et al., Neurocomputing 2024):
    SD 1.5 at 512 x 512, ``down2.attn0`` (the first encoder layer at 16 x 16), ``t = 0``,
    the empty prompt, the VAE posterior mean.
``toy``
    the offline toy model (``load_backbone("toy")``, pixel space, no VAE) at 64 px. Its layer
    and timestep are chosen on VALIDATION toy pairs, never on the held-out test pairs, by
    :func:`~difflens.correspondence.evaluate.layer_timestep_search`; the values stored here
    are the search's choice for the toy model committed when they were written
    (:data:`TOY_SEARCH` records how). The toy model can be retrained, so the choice is
    re-runnable: :func:`choose_from_search` makes the preset of a new search's best cell.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from difflens.features.extractor import FeatureExtractor
from difflens.features.settings import Setting
from difflens.features.store import FeatureStore
from difflens.models.backbone import Backbone, load_backbone, parse_dtype

__all__ = [
    "FeaturePreset",
    "PRESETS",
    "TOY_SEARCH",
    "get_preset",
    "preset_table",
    "preset_extractor",
    "choose_from_search",
]

LATENT_MODES: tuple[str, ...] = ("mean", "sample", "sample-per-draw")
"""The extractor's latent modes a preset may name."""


@dataclass(frozen=True)
class FeaturePreset:
    """How dense features are extracted for matching: model, size, layer, setting, prompt.

    Attributes:
        name: the preset's name.
        model: hub id, local folder, ``"toy"`` or ``"tiny"`` (see
            :func:`~difflens.models.backbone.load_backbone`).
        image_size: side in pixels images are resized to (aspect ratio not kept).
        layer: registry name of the captured module (``"up1"`` is the whole
            ``up_blocks[1]`` output).
        timestep: scheduler index 0..T-1 the latent is noised to.
        ensemble: noise draws (copies) averaged.
        prompt: text, or a template with ``{class}`` filled with each image's category.
        latent: ``"mean"``, ``"sample"`` or ``"sample-per-draw"`` (one posterior sample per
            ensemble copy, DIFT).
        seed: seed of the noise draws and posterior samples.
        upsample: how matching upsamples the maps (``"bilinear"``: DIFT).
        source: the paper and code the preset follows.
        note: what differs from the source, or how the values were chosen.

    Raises:
        ValueError: an unknown latent mode, a non-positive size or ensemble, or a negative
            timestep.
    """

    name: str
    model: str
    image_size: int
    layer: str
    timestep: int
    ensemble: int = 1
    prompt: str = ""
    latent: str = "mean"
    seed: int = 0
    upsample: str = "bilinear"
    source: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.latent not in LATENT_MODES:
            raise ValueError(f"latent must be one of {LATENT_MODES}, got {self.latent!r}")
        if self.image_size < 1 or self.ensemble < 1 or self.timestep < 0:
            raise ValueError(
                f"preset {self.name!r}: image_size and ensemble must be >= 1 and timestep >= 0"
            )

    @property
    def setting(self) -> Setting:
        """The preset's timestep and ensemble as a :class:`~difflens.features.settings.Setting`."""
        return Setting(self.timestep, self.ensemble)

    def with_(self, **changes: object) -> FeaturePreset:
        """A copy with some fields changed.

        Args:
            **changes: new field values (e.g. ``layer="up2"``, ``timestep=101``).

        Returns:
            The new preset.
        """
        return replace(self, **changes)


PRESETS: dict[str, FeaturePreset] = {
    "dift_sd": FeaturePreset(
        name="dift_sd",
        model="stabilityai/stable-diffusion-2-1",
        image_size=768,
        layer="up1",
        timestep=261,
        ensemble=8,
        prompt="a photo of a {class}",
        latent="sample-per-draw",
        source="Tang et al. 2023 (DIFT); Tsingularity/dift: src/models/dift_sd.py, eval_spair.py",
        note="768 x 768 stretched; the image repeated 8 times, one posterior sample and one "
        "noise draw per copy, one U-Net pass, mean over the copies; seeded here, unseeded there",
    ),
    "semantic_lens": FeaturePreset(
        name="semantic_lens",
        model="stable-diffusion-v1-5/stable-diffusion-v1-5",
        image_size=512,
        layer="down2.attn0",
        timestep=0,
        ensemble=1,
        prompt="",
        latent="mean",
        source="Bonechi et al. 2024 (semantic lens), the first encoder layer at 16 x 16",
        note="the clean latent (t = 0), empty prompt, VAE posterior mean",
    ),
    "toy": FeaturePreset(
        name="toy",
        model="toy",
        image_size=64,
        layer="up1.res2",
        timestep=0,
        ensemble=1,
        prompt="",
        latent="mean",
        source="the offline toy model (difflens model card); layer and timestep from "
        "layer_timestep_search on validation toy pairs",
        note="pixel space (no VAE); chosen on validation toy pairs, never on test pairs",
    ),
}
"""The named presets."""

TOY_SEARCH: dict[str, object] = {
    "pairs": "ToyPairs(60, kind='semantic', split='validation', size=128): validation seeds 0..59",
    "layers": "the 31 ResNet, attention and block outputs of the toy U-Net (search_layers)",
    "timesteps": (0, 25, 50, 100, 200, 400),
    "criterion": "PCK@0.1, target bbox, per image, bilinear matching",
    "best": "up1.res2 at t = 0: 27 % (next, rounded: up1.res2 at t = 25 and 50, 26 %; up2.res1 at t = 0, 25 %)",
    "model": "toy-v2, two-stage positive control (model card), weights of 2026-11-30 16:41 UTC",
}
"""How the ``toy`` preset's layer and timestep were chosen (rerun it in notebook 08)."""


def get_preset(name: str | FeaturePreset) -> FeaturePreset:
    """A preset by name (a preset is returned as it is).

    Args:
        name: a key of :data:`PRESETS`, or a :class:`FeaturePreset`.

    Returns:
        The preset.

    Raises:
        KeyError: an unknown name; the message lists the known ones.
    """
    if isinstance(name, FeaturePreset):
        return name
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_table() -> pd.DataFrame:
    """:data:`PRESETS` as a table, one row per preset.

    Returns:
        Columns are the :class:`FeaturePreset` fields.
    """
    return pd.DataFrame([asdict(p) for p in PRESETS.values()]).set_index("name")


def preset_extractor(
    preset: str | FeaturePreset,
    backbone: Backbone | None = None,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    store: FeatureStore | str | Path | None = None,
    **options: object,
) -> FeatureExtractor:
    """The feature extractor a preset describes.

    Args:
        preset: a preset or its name.
        backbone: a loaded backbone to use instead of loading ``preset.model`` (e.g. the
            SD 2.x architecture with random weights, or a random-weights copy).
        device: where a loaded model runs (ignored with ``backbone``).
        dtype: its precision (ignored with ``backbone``).
        store: the feature cache (a store or its folder; ``None`` or ``""``: no cache).
        **options: further :class:`~difflens.features.extractor.FeatureExtractor` arguments
            (``noise``, ``colour``, ``max_batch``).

    Returns:
        The extractor with the preset's image size, prompt template, latent mode and seed.
    """
    preset = get_preset(preset)
    if backbone is None:
        backbone = load_backbone(preset.model, device=device, dtype=parse_dtype(dtype))
    if isinstance(store, (str, Path)):
        store = FeatureStore(store) if str(store) else None
    fields = {"prompt": preset.prompt, "latent": preset.latent, "seed": preset.seed, **options}
    return FeatureExtractor(backbone, image_size=preset.image_size, store=store, **fields)


def choose_from_search(
    base: str | FeaturePreset,
    search: pd.DataFrame,
    *,
    column: str = "pck",
) -> FeaturePreset:
    """The preset with the layer and timestep of a search's best cell.

    Args:
        base: the preset to start from (e.g. ``"toy"``).
        search: a table from
            :func:`~difflens.correspondence.evaluate.layer_timestep_search` (columns
            ``layer``, ``timestep`` and ``column``), computed on VALIDATION pairs.
        column: the score to maximise; ties go to the first row (the search's order).

    Returns:
        ``base`` with ``layer`` and ``timestep`` of the best row and a note saying so.

    Raises:
        ValueError: an empty table or one without the needed columns.
    """
    base = get_preset(base)
    if search.empty or not {"layer", "timestep", column} <= set(search.columns):
        raise ValueError(f"the search table needs rows with layer, timestep and {column}")
    best = search.loc[search[column].astype(float).idxmax()]
    return base.with_(
        layer=str(best["layer"]),
        timestep=int(best["timestep"]),
        note=f"{base.note}; rechosen: {column} {float(best[column]):.3f} on the search's pairs",
    )
