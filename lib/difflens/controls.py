"""The controls study: does the suite see semantics where there are some, and only there?

Three arms, measured on the same held-out toy scenes, layer and timestep:

``trained``
    the trained toy model (:mod:`difflens.toymodel`), the positive control;
``random weights``
    the same architecture (same config, same text encoder and scheduler) with diffusers'
    default random initialisation, seeded: what the plumbing alone produces;
``shuffled labels``
    the trained model's prototypes with class labels permuted across objects (seeded, so
    the class frequencies stay): there is no class structure left to find.

Two measures of class separation, both on prototypes (one per object):

- **separation**: Cliff's delta between the distances of different-class pairs and of
  same-class pairs, over pairs of objects from *different* images (same-image pairs share
  a background and are left out): +1 when every different-class pair is farther apart
  than every same-class pair, 0 when classes are mixed (the scdi/dcdi separation of
  :func:`difflens.studies.separation`).
- **nearest-centroid accuracy**, leave one image out: each object is given the class
  whose centroid (the mean prototype of that class over all *other* images) is nearest.
  Chance is 1/4 with four balanced classes.

Both come with a 95 % image-level bootstrap interval: source images are drawn with
replacement, the table is rebuilt from their objects, and copies of one source image count
as the same image (their pairs are left out; leave-one-image-out leaves out every copy).

The layer and timestep are chosen on a validation split (toy seeds from
:data:`difflens.toymodel.VALIDATION_SEED_START`) where the trained model's separation
exceeds that of random weights the most (:func:`layer_timestep_search`); the study reports
on held-out seeds (ToyWorld's own, from 0), disjoint from training and validation seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from difflens.backbone import Backbone, load_backbone
from difflens.datasets.toyworld import ToyWorld
from difflens.distances import canonical_metric, pairwise
from difflens.extract import FeatureExtractor
from difflens.pipeline import PrototypeSpec, prototype_table, prototype_tables
from difflens.prototypes import PrototypeTable
from difflens.sets import source_codes
from difflens.stats import bootstrap_over_images, cliffs_delta
from difflens.toymodel import TOY_IMAGE_SIZE, VALIDATION_SEED_START

TOY_SCENE_SIZE = 64
"""Held-out scenes are rendered at 64 px and resized to the model's size, as in training."""

#: Chosen on the validation split by :func:`layer_timestep_search` (see the model card).
CONTROL_LAYER = "up3.res1"
CONTROL_TIMESTEP = 50
CONTROL_METRIC = "cosine"
HELD_OUT_SEED = 0
ARMS = ("trained", "random weights", "shuffled labels")
CANDIDATE_TIMESTEPS = (0, 50, 150, 300)


# ----------------------------------------------------------------------------- arms


def random_weights_backbone(backbone: Backbone, seed: int = 0) -> Backbone:
    """The same U-Net architecture with diffusers' default random initialisation.

    Text encoder, tokenizer, scheduler and VAE are shared with ``backbone``, so only the
    U-Net's training differs between the two.
    """
    torch.manual_seed(seed)
    unet = type(backbone.unet).from_config(backbone.unet.config)
    unet = unet.to(device=backbone.device, dtype=backbone.dtype).eval().requires_grad_(False)
    return replace(
        backbone,
        unet=unet,
        model_id=f"{backbone.model_id} (random weights, seed {seed})",
        extras={},
        _fingerprint=None,
    )


def shuffle_labels(table: PrototypeTable, seed: int = 0) -> PrototypeTable:
    """A copy of ``table`` with ``class_name`` permuted across all objects (seeded)."""
    meta = table.meta.copy()
    rng = np.random.default_rng(seed)
    meta["class_name"] = rng.permutation(meta["class_name"].to_numpy())
    info = {**table.info, "labels": f"shuffled (seed {seed})"}
    return PrototypeTable(meta, table.features, table.skipped, info)


# ----------------------------------------------------------------------------- measures


def separation(table: PrototypeTable, metric: str = CONTROL_METRIC) -> float:
    """Cliff's delta of different-class vs same-class distances, different-image pairs only.

    The same number as :func:`difflens.studies.separation` (dcdi over scdi) on the sets of
    :func:`difflens.sets.distance_sets`, without building the long form (the bootstrap
    calls it a thousand times).
    """
    if len(table) < 2:
        return float("nan")
    distances = pairwise(table.features, metric=metric)
    groups = source_codes(table.meta)[0]
    classes = pd.factorize(table.meta["class_name"])[0]
    i, j = np.triu_indices(len(table), k=1)
    keep = groups[i] != groups[j]
    i, j = i[keep], j[keep]
    d = distances[i, j]
    finite = np.isfinite(d)
    same = classes[i] == classes[j]
    return cliffs_delta(d[~same & finite], d[same & finite])


def _distances_to_centroids(x: np.ndarray, centroids: np.ndarray, metric: str) -> np.ndarray:
    """``(N, K)`` distances of rows ``x[n]`` to their own centroids ``centroids[n, k]``."""
    metric = canonical_metric(metric)
    if metric == "euclidean":
        return np.sqrt(((centroids - x[:, None, :]) ** 2).sum(-1))
    if metric == "manhattan":
        return np.abs(centroids - x[:, None, :]).sum(-1)
    if metric in ("cosine", "correlation"):
        if metric == "correlation":
            x = x - x.mean(-1, keepdims=True)
            centroids = centroids - centroids.mean(-1, keepdims=True)
        norms = np.linalg.norm(x, axis=-1)[:, None] * np.linalg.norm(centroids, axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.einsum("nd,nkd->nk", x, centroids) / norms
        return np.clip(1.0 - cos, 0.0, 2.0)
    raise ValueError(
        f"nearest-centroid accuracy supports euclidean, manhattan, cosine and "
        f"correlation, not {metric!r}"
    )


def centroid_predictions(table: PrototypeTable, metric: str = CONTROL_METRIC) -> np.ndarray:
    """Leave-one-image-out nearest-class-centroid prediction of every object's class.

    The centroid of a class is the mean prototype of its objects in all other source
    images; a class with no object outside the image cannot be predicted for it.
    """
    features = np.asarray(table.features, np.float64)
    groups = source_codes(table.meta)[0]
    codes, names = pd.factorize(table.meta["class_name"])
    one_hot = np.eye(len(names))[codes]  # N x K
    group_hot = np.eye(groups.max() + 1)[groups]  # N x G
    class_sums = one_hot.T @ features  # K x D
    class_counts = one_hot.sum(0)  # K
    group_sums = np.einsum("ng,nk,nd->gkd", group_hot, one_hot, features)  # G x K x D
    group_counts = np.einsum("ng,nk->gk", group_hot, one_hot)  # G x K
    counts = class_counts[None] - group_counts[groups]  # N x K: objects outside the image
    with np.errstate(invalid="ignore", divide="ignore"):
        centroids = (class_sums[None] - group_sums[groups]) / counts[..., None]
    distances = _distances_to_centroids(features, centroids, metric)
    distances = np.where((counts > 0) & np.isfinite(distances), distances, np.inf)
    return np.asarray(names)[distances.argmin(1)]


def centroid_accuracy(table: PrototypeTable, metric: str = CONTROL_METRIC) -> float:
    """Share of objects whose leave-one-image-out nearest class centroid is their class."""
    if len(table) == 0:
        return float("nan")
    predictions = centroid_predictions(table, metric)
    return float(np.mean(predictions == table.meta["class_name"].to_numpy()))


# ----------------------------------------------------------------------------- bootstrap

MEASURES = ("separation", "centroid accuracy")


def measures(table: PrototypeTable, metric: str = CONTROL_METRIC) -> dict[str, float]:
    """Both measures of one table (the statistic the bootstrap resamples)."""
    return {
        "separation": separation(table, metric),
        "centroid accuracy": centroid_accuracy(table, metric),
    }


# ----------------------------------------------------------------------------- study


def held_out_scenes(n_images: int, seed: int = HELD_OUT_SEED, size: int = TOY_SCENE_SIZE):
    """Toy scenes from ``seed`` on (ToyWorld's default seeds: never used for training)."""
    return list(ToyWorld(n_images=n_images, size=size, seed=seed))


def arm_tables(
    scenes,
    trained: Backbone,
    layer: str = CONTROL_LAYER,
    timestep: int = CONTROL_TIMESTEP,
    image_size: int = TOY_IMAGE_SIZE,
    random_seed: int = 0,
    shuffle_seed: int = 0,
    progress: bool = False,
) -> dict[str, PrototypeTable]:
    """Prototype tables of the three arms on ``scenes``."""
    scenes = list(scenes)
    tables = {}
    for arm, backbone in (
        ("trained", trained),
        ("random weights", random_weights_backbone(trained, random_seed)),
    ):
        extractor = FeatureExtractor(backbone, image_size=image_size)
        tables[arm] = prototype_table(
            scenes, extractor, layer, timestep, batch_size=16, progress=progress
        )
    tables["shuffled labels"] = shuffle_labels(tables["trained"], shuffle_seed)
    return tables


def measure_arms(
    tables: dict[str, PrototypeTable],
    metric: str = CONTROL_METRIC,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    progress: bool = False,
) -> pd.DataFrame:
    """Separation and centroid accuracy of each arm, each with its bootstrap interval.

    The interval is :func:`difflens.stats.bootstrap_over_images` (source images drawn with
    replacement; copies of one image are never a different-image pair and are left out
    together). Every arm uses the same draws (same seed, same images in the same order),
    so the intervals are directly comparable.
    """
    rows = []
    for arm, table in tables.items():
        boot = bootstrap_over_images(
            table, lambda t: measures(t, metric), n_boot, seed, level, progress=progress
        )
        intervals = boot.intervals()
        for measure in MEASURES:
            row = intervals.loc[measure]
            rows.append(
                {
                    "arm": arm,
                    "measure": measure,
                    "estimate": float(row["estimate"]),
                    "low": float(row["low"]),
                    "high": float(row["high"]),
                    "se": float(row["se"]),
                    "n_objects": len(table),
                    "n_images": boot.n_sources,
                }
            )
    return pd.DataFrame(rows)


def controls_study(
    model: str | Backbone = "toy",
    n_images: int = 300,
    seed: int = HELD_OUT_SEED,
    layer: str = CONTROL_LAYER,
    timestep: int = CONTROL_TIMESTEP,
    metric: str = CONTROL_METRIC,
    image_size: int = TOY_IMAGE_SIZE,
    scene_size: int = TOY_SCENE_SIZE,
    n_boot: int = 1000,
    level: float = 0.95,
    random_seed: int = 0,
    shuffle_seed: int = 0,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """Trained vs random weights vs shuffled labels on held-out toy scenes.

    Returns a long table (arm, measure, estimate, low, high, n_objects, n_images) and a
    dict of the key numbers with the three acceptance checks:
    ``trained_above_random`` (the separation intervals do not overlap, trained above),
    ``shuffled_covers_zero`` (the shuffled-label separation interval holds 0) and
    ``shuffled_accuracy_covers_chance`` (its accuracy interval holds 1/4).
    """
    backbone = load_backbone(model) if isinstance(model, str) else model
    scenes = held_out_scenes(n_images, seed, scene_size)
    tables = arm_tables(
        scenes, backbone, layer, timestep, image_size, random_seed, shuffle_seed, progress
    )
    results = measure_arms(tables, metric, n_boot, seed, level, progress)
    est = results.set_index(["arm", "measure"])
    chance = 1.0 / tables["trained"].meta["class_name"].nunique()

    def get(arm, measure, column):
        return float(est.loc[(arm, measure), column])

    numbers = {
        "model": backbone.model_id,
        "layer": layer,
        "timestep": timestep,
        "metric": metric,
        "image_size": image_size,
        "held_out_seeds": [seed, seed + n_images - 1],
        "n_images": n_images,
        "n_objects": len(tables["trained"]),
        "n_boot": n_boot,
        "level": level,
        "chance": chance,
    }
    for arm in ARMS:
        key = arm.replace(" ", "_")
        for measure in MEASURES:
            mkey = measure.replace(" ", "_")
            for column in ("estimate", "low", "high"):
                numbers[f"{key}_{mkey}_{column}"] = get(arm, measure, column)
    numbers["trained_above_random"] = get("trained", "separation", "low") > get(
        "random weights", "separation", "high"
    )
    numbers["shuffled_covers_zero"] = (
        get("shuffled labels", "separation", "low")
        <= 0.0
        <= get("shuffled labels", "separation", "high")
    )
    numbers["shuffled_accuracy_covers_chance"] = (
        get("shuffled labels", "centroid accuracy", "low")
        <= chance
        <= get("shuffled labels", "centroid accuracy", "high")
    )
    return results, numbers


def layer_timestep_search(
    model: str | Backbone = "toy",
    n_images: int = 80,
    seed: int = VALIDATION_SEED_START,
    layers: Sequence[str] | None = None,
    timesteps: Sequence[int] = CANDIDATE_TIMESTEPS,
    metric: str = CONTROL_METRIC,
    image_size: int = TOY_IMAGE_SIZE,
    scene_size: int = TOY_SCENE_SIZE,
    random_seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Separation and accuracy of every candidate layer x timestep on the validation split.

    Candidates default to every ResNet and attention layer. Rows are sorted by ``gap``, the
    trained model's separation minus that of random weights: the claim the study tests is
    that contrast, so the layer and timestep where it is largest on validation scenes are
    the ones tested on held-out scenes (the first row is the choice). The trained
    separation alone is a worse criterion: at high noise, deep layers of random-weight
    networks separate the toy classes too (the shapes differ in area at equal radius).
    """
    backbone = load_backbone(model) if isinstance(model, str) else model
    scenes = held_out_scenes(n_images, seed, scene_size)
    rows = []
    for arm, bb in (
        ("trained", backbone),
        ("random weights", random_weights_backbone(backbone, random_seed)),
    ):
        extractor = FeatureExtractor(bb, image_size=image_size)
        names = (
            list(layers)
            if layers is not None
            else [info.name for info in extractor.registry if info.kind in ("resnet", "attention")]
        )
        specs = [PrototypeSpec((name,), t) for name in names for t in timesteps]
        tables = prototype_tables(scenes, extractor, specs, batch_size=16, progress=progress)
        for spec in specs:
            table = tables[spec.label]
            rows.append(
                {
                    "arm": arm,
                    "layer": spec.layers[0],
                    "timestep": spec.timestep,
                    "resolution": extractor.registry.resolution(spec.layers[0], image_size),
                    "separation": separation(table, metric),
                    "centroid_accuracy": centroid_accuracy(table, metric),
                }
            )
    frame = pd.DataFrame(rows)
    wide = frame.pivot_table(
        index=["layer", "timestep", "resolution"],
        columns="arm",
        values=["separation", "centroid_accuracy"],
    )
    wide.columns = [f"{measure} ({arm})" for measure, arm in wide.columns]
    wide["gap"] = wide["separation (trained)"] - wide["separation (random weights)"]
    return wide.sort_values("gap", ascending=False).reset_index()


# ----------------------------------------------------------------------------- figure

ARM_COLOURS = {"trained": "#d62728", "random weights": "#7f7f7f", "shuffled labels": "#1f77b4"}


def plot_controls(results: pd.DataFrame, chance: float | None = None, title: str | None = None):
    """Estimates with their bootstrap intervals, one panel per measure, one bar per arm.

    A dashed line marks no separation (0) and, for the accuracy, ``chance``.
    """
    import matplotlib.pyplot as plt

    measures_present = [m for m in MEASURES if m in set(results["measure"])]
    fig, axes = plt.subplots(1, len(measures_present), figsize=(4.2 * len(measures_present), 3.4))
    axes = np.atleast_1d(axes)
    for ax, measure in zip(axes, measures_present):
        rows = results[results["measure"] == measure].reset_index(drop=True)
        for k, row in rows.iterrows():
            colour = ARM_COLOURS.get(row["arm"], "black")
            ax.errorbar(
                k,
                row["estimate"],
                yerr=[[row["estimate"] - row["low"]], [row["high"] - row["estimate"]]],
                fmt="o",
                color=colour,
                capsize=6,
                ms=7,
            )
        reference = 0.0 if measure == "separation" else chance
        if reference is not None:
            ax.axhline(reference, color="black", lw=0.8, ls="--")
        ax.set_xticks(range(len(rows)), rows["arm"])
        ax.set_xlim(-0.5, len(rows) - 0.5)
        label = (
            "Cliff's delta, different- vs same-class"
            if measure == "separation"
            else ("leave-one-image-out accuracy")
        )
        ax.set_ylabel(label)
        ax.set_title(measure)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig, axes
