"""The controls study: does the suite see semantics where there are some, and only there?

Three arms, measured on the same held-out toy scenes, layer and timestep:

``trained``
    the positive control (``load_backbone("toy")``, :mod:`difflens.models.toy_training`):
    a U-Net trained to denoise AND, through auxiliary heads, to hold the toy shapes and
    their parts. It shows that the suite finds semantics a network holds, not that
    denoising alone creates them (``"toy-denoiser"`` is the denoiser-only comparison);
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
  :func:`difflens.analysis.set_analysis.separation`).
- **nearest-centroid accuracy**, leave one image out: each object is given the class
  whose centroid (the mean prototype of that class over all *other* images) is nearest.
  Chance is 1/8 with the eight balanced toy classes.

Both come with a 95 % image-level bootstrap interval: source images are drawn with
replacement, the table is rebuilt from their objects, and copies of one source image count
as the same image (their pairs are left out; leave-one-image-out leaves out every copy).

The layer and timestep are chosen on the toy world's ``validation`` split (seeds from
:data:`difflens.models.toy.VALIDATION_SEED_START`) where the trained model's separation
exceeds that of random weights the most (:func:`layer_timestep_search`); the study reports
on the ``test`` split (seeds from 0), disjoint from training and validation seeds.

**Planted controls** calibrate the measures without any trained model
(:func:`planted_power_curve`): a class signal of known size ``delta`` is added to the
feature map of a random-weights U-Net on each object's pixels (``features + delta * s *
u_class``, ``u_class`` orthonormal class directions, ``s`` the RMS spread of the layer's
pixel features, the rest of the map untouched), and the planted maps go through the same
prototypes, sets and statistics. How separation, accuracy, the ordering probabilities and
the pair-level p-values track ``delta`` says how large a signal each claim needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from difflens.analysis.bootstrap import bootstrap_over_images
from difflens.analysis.distances import paired
from difflens.analysis.set_analysis import analyse_sets, separation
from difflens.analysis.sets import source_codes
from difflens.analysis.undefined import undefined
from difflens.data.scene import Scene
from difflens.data.toy import ToyWorld, locate_seed
from difflens.features.batch import PrototypeSpec, feature_maps, prototype_table, prototype_tables
from difflens.features.extractor import FeatureExtractor
from difflens.features.prototypes import PrototypeTable, resize_masks, scene_prototypes
from difflens.models.backbone import Backbone, assemble_backbone, load_backbone
from difflens.models.toy import TOY_IMAGE_SIZE, VALIDATION_SEED_START

TOY_SCENE_SIZE = 64
"""Held-out scenes are rendered at 64 px and resized to the model's size, as in training."""


CONTROL_LAYER = "up1.attn2"
"""The layer of the controls, chosen on the validation split by :func:`layer_timestep_search`."""
CONTROL_TIMESTEP = 0
"""The timestep of the controls, chosen with :data:`CONTROL_LAYER`."""
DENOISER_LAYER = "up1.res0"
"""The layer of the denoiser-only model (``"toy-denoiser"``), chosen the same way."""
DENOISER_TIMESTEP = 50
"""The timestep of the denoiser-only model, chosen with :data:`DENOISER_LAYER`."""
CONTROL_METRIC = "cosine"
"""The distance of the controls."""
HELD_OUT_SEED = 0
"""First absolute seed of the held-out scenes (the ``test`` split)."""
ARMS = ("trained", "random weights", "shuffled labels")
"""The three arms of the study."""
CANDIDATE_TIMESTEPS = (0, 50, 150, 300, 500, 800)
"""Timesteps the validation search tries."""


def random_weights_backbone(backbone: Backbone, seed: int = 0) -> Backbone:
    """The same U-Net architecture with diffusers' default random initialisation.

    Text encoder, tokenizer, scheduler and VAE are shared with ``backbone``, so only the
    U-Net's training differs between the two. A U-Net wrapped by ``torch.compile`` or a
    data-parallel wrapper is rebuilt from the module inside (``backbone.base_unet``); the
    copy is not wrapped.

    Args:
        backbone: the trained backbone whose U-Net config is re-initialised.
        seed: ``torch.manual_seed`` before the U-Net is built.

    Returns:
        A backbone named ``"<model id> (random weights, seed <seed>)"`` on the same device
        and dtype.
    """
    unet = backbone.base_unet
    torch.manual_seed(seed)
    return assemble_backbone(
        type(unet).from_config(unet.config),
        backbone.scheduler,
        vae=backbone.vae,
        tokenizer=backbone.tokenizer,
        text_encoder=backbone.text_encoder,
        model_id=f"{backbone.model_id} (random weights, seed {seed})",
        source=backbone.source,
        device=backbone.device,
        dtype=backbone.dtype,
    )


def shuffle_labels(table: PrototypeTable, seed: int = 0) -> PrototypeTable:
    """A copy of ``table`` with ``class_name`` permuted across all objects (seeded).

    Args:
        table: the prototype table.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        The table with permuted labels (class frequencies kept); ``info["labels"]`` says so.
    """
    meta = table.meta.copy()
    rng = np.random.default_rng(seed)
    meta["class_name"] = rng.permutation(meta["class_name"].to_numpy())
    info = {**table.info, "labels": f"shuffled (seed {seed})"}
    return PrototypeTable(meta, table.features, table.skipped, info)


def centroid_predictions(table: PrototypeTable, metric: str = CONTROL_METRIC) -> np.ndarray:
    """Leave-one-image-out nearest-class-centroid prediction of every object's class.

    The centroid of a class is the mean prototype of its objects in all other source
    images; a class with no object outside the image cannot be predicted for it.

    Args:
        table: the prototype table (``class_name``, ``image_id``, ``source_image``).
        metric: a metric of :func:`difflens.analysis.distances.paired`.

    Returns:
        object ``(N,)`` predicted class names (an object whose every class lacks a
        centroid gets the first class).
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
    distances = paired(features[:, None, :], centroids, metric)
    distances = np.where((counts > 0) & np.isfinite(distances), distances, np.inf)
    return np.asarray(names)[distances.argmin(1)]


def centroid_accuracy(table: PrototypeTable, metric: str = CONTROL_METRIC) -> float:
    """Share of objects whose leave-one-image-out nearest class centroid is their class.

    Args:
        table: the prototype table.
        metric: a metric of :func:`difflens.analysis.distances.paired`.

    Returns:
        The accuracy in ``[0, 1]``; NaN (with an
        :class:`~difflens.analysis.undefined.UndefinedStatisticWarning`) for an empty table.
    """
    if len(table) == 0:
        return undefined("centroid accuracy: no objects")
    predictions = centroid_predictions(table, metric)
    return float(np.mean(predictions == table.meta["class_name"].to_numpy()))


MEASURES = ("separation", "centroid accuracy")


def measures(table: PrototypeTable, metric: str = CONTROL_METRIC) -> dict[str, float]:
    """Both measures of one table (the statistic the bootstrap resamples).

    Args:
        table: the prototype table.
        metric: the distance.

    Returns:
        ``{"separation": Cliff's delta, "centroid accuracy": share}`` (see the module).
    """
    return {
        "separation": separation(table, metric, group="source_image"),
        "centroid accuracy": centroid_accuracy(table, metric),
    }


def held_out_scenes(
    n_images: int, seed: int = HELD_OUT_SEED, size: int = TOY_SCENE_SIZE
) -> list[Scene]:
    """Toy scenes from ``seed`` on (ToyWorld's default seeds: never used for training).

    Args:
        n_images: the number of scenes.
        seed: the first scene's seed.
        size: the scenes' side in pixels.

    Returns:
        The list of :class:`~difflens.data.scene.Scene`.
    """
    split, offset = locate_seed(seed)
    return list(ToyWorld(n_images=n_images, size=size, seed=offset, split=split))


def arm_tables(
    scenes: Iterable[Scene],
    trained: Backbone,
    layer: str = CONTROL_LAYER,
    timestep: int = CONTROL_TIMESTEP,
    image_size: int = TOY_IMAGE_SIZE,
    random_seed: int = 0,
    shuffle_seed: int = 0,
    progress: bool = False,
) -> dict[str, PrototypeTable]:
    """Prototype tables of the three arms on ``scenes``.

    Args:
        scenes: the scenes.
        trained: the trained backbone.
        layer: the layer whose prototypes are compared.
        timestep: the timestep.
        image_size: the model's input size in pixels.
        random_seed: seed of the random-weights U-Net.
        shuffle_seed: seed of the label permutation.
        progress: show progress bars.

    Returns:
        ``{arm: PrototypeTable}`` for every arm of :data:`ARMS`.
    """
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

    The interval is :func:`difflens.analysis.bootstrap.bootstrap_over_images` (source images drawn with
    replacement; copies of one image are never a different-image pair and are left out
    together). Every arm uses the same draws (same seed, same images in the same order),
    so the intervals are directly comparable.

    Args:
        tables: ``{arm: PrototypeTable}``.
        metric: the distance.
        n_boot: bootstrap draws.
        seed: seed of the draws.
        level: the intervals' coverage.
        progress: show progress bars.

    Returns:
        One row per arm and measure: ``arm``, ``measure``, ``estimate``, ``low``,
        ``high``, ``se``, ``n_objects``, ``n_images`` and ``reason`` (why a number is NaN,
        else ``""``).
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
                    "reason": str(row["reason"]),
                }
            )
    return pd.DataFrame(rows)


def acceptance_checks(results: pd.DataFrame, chance: float) -> dict:
    """The key numbers and acceptance checks of the three arms' measures.

    Args:
        results: the long table of :func:`measure_arms` for the arms of :data:`ARMS`.
        chance: the accuracy of guessing.

    Returns:
        ``<arm>_<measure>_<estimate|low|high>`` for every arm and measure (spaces as
        underscores) and the checks of :func:`controls_study`.
    """
    est = results.set_index(["arm", "measure"])

    def get(arm, measure, column):
        return float(est.loc[(arm, measure), column])

    numbers = {}
    for arm in ARMS:
        for measure in MEASURES:
            for column in ("estimate", "low", "high"):
                key = f"{arm}_{measure}_{column}".replace(" ", "_")
                numbers[key] = get(arm, measure, column)
    numbers["trained_above_random"] = get("trained", "separation", "low") > get(
        "random weights", "separation", "high"
    )
    shuffled_sep = (
        get("shuffled labels", "separation", "low"),
        get("shuffled labels", "separation", "high"),
    )
    numbers["shuffled_covers_zero"] = shuffled_sep[0] <= 0.0 <= shuffled_sep[1]
    shuffled_acc = (
        get("shuffled labels", "centroid accuracy", "low"),
        get("shuffled labels", "centroid accuracy", "high"),
    )
    numbers["shuffled_accuracy_covers_chance"] = shuffled_acc[0] <= chance <= shuffled_acc[1]
    for other in ("random weights", "shuffled labels"):
        numbers[f"trained_accuracy_above_{other.split()[0]}"] = get(
            "trained", "centroid accuracy", "low"
        ) > get(other, "centroid accuracy", "high")
    return numbers


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

    Args:
        model: a model name for :func:`difflens.models.backbone.load_backbone`, or a
            loaded backbone.
        n_images: held-out scenes.
        seed: the first held-out seed.
        layer: the layer.
        timestep: the timestep.
        metric: the distance.
        image_size: the model's input size in pixels.
        scene_size: the scenes' side in pixels.
        n_boot: bootstrap draws.
        level: the intervals' coverage.
        random_seed: seed of the random-weights U-Net.
        shuffle_seed: seed of the label permutation.
        progress: show progress bars.

    Returns:
        ``(results, numbers)``: the long table of :func:`measure_arms` and a dict of the key
        numbers with the three acceptance checks: ``trained_above_random`` (the
        separation intervals do not overlap, trained above), ``shuffled_covers_zero`` (the
        shuffled-label separation interval holds 0) and
        ``shuffled_accuracy_covers_chance`` (its accuracy interval holds chance, one over
        the number of classes); and the accuracy checks ``trained_accuracy_above_random``
        and ``trained_accuracy_above_shuffled`` (disjoint intervals, trained above). A
        check whose interval is NaN is False.
    """
    backbone = load_backbone(model) if isinstance(model, str) else model
    scenes = held_out_scenes(n_images, seed, scene_size)
    tables = arm_tables(
        scenes, backbone, layer, timestep, image_size, random_seed, shuffle_seed, progress
    )
    results = measure_arms(tables, metric, n_boot, seed, level, progress)
    chance = 1.0 / tables["trained"].meta["class_name"].nunique()
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
        **acceptance_checks(results, chance),
    }
    return results, numbers


def _candidate_layers(extractor: FeatureExtractor, layers: Sequence[str] | None) -> list[str]:
    """The search's layers: ``layers`` checked by the registry, or every ResNet/attention."""
    if layers is None:
        return [info.name for info in extractor.registry if info.kind in ("resnet", "attention")]
    return extractor.registry.check(layers)


def layer_timestep_search(  # noqa: DOC502 (raised by the layer registry)
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
    separation alone is a worse criterion: layers of random-weight networks can separate
    the toy classes a little through low-level cues (outline length, corners), which the
    gap discounts.

    Args:
        model: a model name for :func:`difflens.models.backbone.load_backbone`, or a
            loaded backbone.
        n_images: validation scenes.
        seed: the first validation seed.
        layers: candidate layers; default: every ResNet and attention layer.
        timesteps: candidate timesteps.
        metric: the distance.
        image_size: the model's input size in pixels.
        scene_size: the scenes' side in pixels.
        random_seed: seed of the random-weights U-Net.
        progress: show progress bars.

    Returns:
        One row per layer and timestep: ``layer``, ``timestep``, ``resolution``, the
        separation, centroid accuracy and linear-probe accuracy
        (:func:`linear_probe_accuracy`) of each arm and ``gap``, sorted by ``gap``
        (largest first).

    Raises:
        UnknownLayerError: if a layer of ``layers`` is not a layer of the model.
    """
    backbone = load_backbone(model) if isinstance(model, str) else model
    scenes = held_out_scenes(n_images, seed, scene_size)
    rows = []
    for arm, bb in (
        ("trained", backbone),
        ("random weights", random_weights_backbone(backbone, random_seed)),
    ):
        extractor = FeatureExtractor(bb, image_size=image_size)
        names = _candidate_layers(extractor, layers)
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
                    "separation": separation(table, metric, group="source_image"),
                    "centroid_accuracy": centroid_accuracy(table, metric),
                    "linear_probe": linear_probe_accuracy(table),
                }
            )
    frame = pd.DataFrame(rows)
    wide = frame.pivot_table(
        index=["layer", "timestep", "resolution"],
        columns="arm",
        values=["separation", "centroid_accuracy", "linear_probe"],
    )
    wide.columns = [f"{measure} ({arm})" for measure, arm in wide.columns]
    wide["gap"] = wide["separation (trained)"] - wide["separation (random weights)"]
    return wide.sort_values("gap", ascending=False).reset_index()


def linear_probe_accuracy(
    table: PrototypeTable, n_folds: int = 5, ridge: float = 1.0, seed: int = 0
) -> float:
    """Cross-validated accuracy of a ridge-regression linear probe, folds by source image.

    Source images are split into ``n_folds`` folds (seeded); for each fold a ridge
    regression onto one-hot classes is fitted on the other folds' standardised prototypes
    (mean and scale from the training folds), and each held-out object gets the class of
    its largest output (scikit-learn's ``RidgeClassifier`` with targets in {0, 1}).

    Args:
        table: the prototype table.
        n_folds: folds of source images.
        ridge: the ridge penalty (on standardised features).
        seed: seed of the fold assignment.

    Returns:
        The share of objects classified correctly; NaN (with an
        :class:`~difflens.analysis.undefined.UndefinedStatisticWarning`) with fewer source
        images than folds.
    """
    groups = source_codes(table.meta)[0]
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    if n_groups < n_folds:
        return undefined(f"linear probe: {n_groups} source images for {n_folds} folds")
    fold_of_group = np.random.default_rng(seed).permutation(n_groups) % n_folds
    fold = fold_of_group[groups]
    codes, names = pd.factorize(table.meta["class_name"])
    x_all = np.asarray(table.features, np.float64)
    correct = np.zeros(len(table), dtype=bool)
    for k in range(n_folds):
        train, test = fold != k, fold == k
        mean, scale = x_all[train].mean(0), x_all[train].std(0) + 1e-8
        x = np.c_[(x_all[train] - mean) / scale, np.ones(train.sum())]
        y = np.eye(len(names))[codes[train]]
        penalty = ridge * np.eye(x.shape[1])
        penalty[-1, -1] = 0.0  # the intercept is not penalised
        w = np.linalg.solve(x.T @ x + penalty, x.T @ y)
        x_test = np.c_[(x_all[test] - mean) / scale, np.ones(test.sum())]
        correct[test] = (x_test @ w).argmax(1) == codes[test]
    return float(correct.mean())


PLANTED_DELTAS = (0.0, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
"""Signal sizes of the planted controls, in units of the layer's pixel RMS spread."""
PLANTED_PAIRS = (("scdi", "dcdi"), ("scsi", "dcsi"), ("scdi", "dcsi"))
"""Set pairs whose pair-level Mann-Whitney p-values the planted power curve reports."""


def class_directions(classes: Sequence[str], dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Orthonormal random directions, one per class (seeded).

    Args:
        classes: the class names.
        dim: the feature dimension (at least the number of classes).
        seed: seed of the Gaussian draw that is orthonormalised (QR).

    Returns:
        ``{class: (dim,) float64 unit vector}``, mutually orthogonal.

    Raises:
        ValueError: more classes than dimensions.
    """
    if len(classes) > dim:
        raise ValueError(f"{len(classes)} orthogonal class directions need dim >= that, got {dim}")
    gaussian = np.random.default_rng(seed).standard_normal((dim, len(classes)))
    q, _ = np.linalg.qr(gaussian)
    return {name: q[:, k] for k, name in enumerate(classes)}


def pixel_spread(maps: Iterable[torch.Tensor]) -> float:
    """RMS distance of the pixel feature vectors from their mean, over every map.

    Args:
        maps: ``(C, h, w)`` feature maps.

    Returns:
        ``sqrt(mean_p ||f_p - mean f||^2)`` over all pixels ``p`` of all maps.
    """
    pixels = torch.cat([m.reshape(m.shape[0], -1).T.double() for m in maps])
    return float((pixels - pixels.mean(0)).pow(2).sum(1).mean().sqrt())


def plant_signal(
    feature_map: torch.Tensor, scene: Scene, offsets: dict[str, np.ndarray]
) -> torch.Tensor:
    """A feature map with each object's class offset added on its pixels.

    The offset of an object is added to every cell its mask covers, weighted as
    prototypes weigh cells (:func:`~difflens.features.prototypes.resize_masks`, nearest);
    cells outside every object are untouched.

    Args:
        feature_map: ``(C, h, w)`` features.
        scene: the scene (masks and class names).
        offsets: ``{class: (C,) offset}``.

    Returns:
        The planted ``(C, h, w)`` float32 map.
    """
    weights = resize_masks(scene.masks, tuple(feature_map.shape[-2:]))  # K x h x w
    if not scene.n_objects:
        return feature_map.float().clone()
    vectors = torch.as_tensor(
        np.stack([offsets[c] for c in scene.class_names]), dtype=torch.float32
    )
    return feature_map.float() + torch.einsum("kc,khw->chw", vectors, weights)


def planted_table(
    maps: dict[str, torch.Tensor],
    scenes: Sequence[Scene],
    delta: float,
    directions: dict[str, np.ndarray],
    spread: float,
) -> PrototypeTable:
    """Prototypes of planted feature maps (:func:`plant_signal`), one table for all scenes.

    Args:
        maps: ``{image_id: (C, h, w) feature map}``.
        scenes: the scenes (a scene without a map is left out).
        delta: the signal size in units of ``spread``.
        directions: unit class directions (:func:`class_directions`).
        spread: the layer's pixel RMS spread (:func:`pixel_spread`).

    Returns:
        The :class:`~difflens.features.prototypes.PrototypeTable`; ``info["planted_delta"]``
        holds ``delta``.
    """
    offsets = {c: delta * spread * u for c, u in directions.items()}
    tables = [
        scene_prototypes(plant_signal(maps[s.image_id], s, offsets), s)
        for s in scenes
        if s.image_id in maps
    ]
    table = PrototypeTable.concat(tables)
    table.info = {**table.info, "planted_delta": float(delta), "pixel_spread": spread}
    return table


def layer_maps(
    scenes: Sequence[Scene],
    backbone: Backbone,
    layer: str,
    timestep: int,
    image_size: int = TOY_IMAGE_SIZE,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """One layer's feature maps of scenes at one timestep.

    Args:
        scenes: the scenes.
        backbone: the model.
        layer: the layer name.
        timestep: the timestep.
        image_size: the model's input size in pixels.
        progress: show a progress bar.

    Returns:
        ``{image_id: (C, h, w) float32 map}``.
    """
    extractor = FeatureExtractor(backbone, image_size=image_size)
    maps = feature_maps(
        [s.image for s in scenes],
        extractor,
        layer,
        [timestep],
        keys=[s.image_id for s in scenes],
        batch_size=16,
        progress=progress,
    )
    return {key: per_setting[0][layer] for key, per_setting in maps.items()}


def planted_row(
    table: PrototypeTable, metric: str = CONTROL_METRIC, n_boot: int = 300, seed: int = 0
) -> dict:
    """Every measure of one planted table: the power curve's row.

    Args:
        table: a planted prototype table (:func:`planted_table`).
        metric: the distance.
        n_boot: bootstrap draws over source images.
        seed: seed of the draws.

    Returns:
        ``delta``; ``separation`` and ``centroid accuracy`` with ``low`` and ``high`` (95 %
        image-level intervals); ``P[<ordering>]`` for every ordering the paper claims (the
        share of bootstrap draws in which it holds); ``log10 p <a> vs <b>`` and ``<a> < <b>``
        (whether ``b``'s mean is the larger) for each pair of :data:`PLANTED_PAIRS`
        (pair-level Mann-Whitney, image-blind).
    """
    arms = measure_arms({"planted": table}, metric, n_boot, seed).set_index("measure")
    row = {"delta": float(table.info.get("planted_delta", np.nan))}
    for measure in MEASURES:
        for column, suffix in (("estimate", ""), ("low", " low"), ("high", " high")):
            row[f"{measure}{suffix}"] = float(arms.loc[measure, column])
    analysis = analyse_sets(table, metric, n_boot=n_boot, seed=seed)
    for label, ordering in analysis.numbers()["orderings"].items():
        row[f"P[{label}]"] = ordering["probability"]
    tests = analysis.tests.set_index(["a", "b"])
    for a, b in PLANTED_PAIRS:
        row[f"log10 p {a} vs {b}"] = float(tests.loc[(a, b), "log10_p_mwu"])
        row[f"{a} < {b}"] = bool(tests.loc[(a, b), "mean_diff"] > 0)
    return row


def planted_onsets(curve: pd.DataFrame, chance: float, alpha: float = 0.05) -> dict:
    """From which delta on each claim's null is excluded, at that delta and every larger one.

    Args:
        curve: the power curve (:func:`planted_power_curve`), one row per delta.
        chance: the accuracy of guessing.
        alpha: the p-value threshold; an ordering's probability must reach ``1 - alpha``.

    Returns:
        ``{criterion: smallest delta or None}`` for ``separation interval above 0``,
        ``accuracy interval above chance``, each ordering's ``P[...] >= 1 - alpha`` and
        each pair's ``p < alpha`` in the planted direction.
    """
    curve = curve.sort_values("delta").reset_index(drop=True)
    criteria = {
        "separation interval above 0": curve["separation low"] > 0,
        "accuracy interval above chance": curve["centroid accuracy low"] > chance,
    }
    for column in [c for c in curve.columns if c.startswith("P[")]:
        criteria[f"{column} >= {1 - alpha:g}"] = curve[column] >= 1 - alpha
    for a, b in PLANTED_PAIRS:
        column = f"log10 p {a} vs {b}"
        criteria[f"p({a} < {b}) < {alpha:g}"] = (curve[column] < np.log10(alpha)) & curve[
            f"{a} < {b}"
        ]
    onsets = {}
    for name, holds in criteria.items():
        values = holds.to_numpy(bool)
        tail = np.flatnonzero(~values)
        first = 0 if not len(tail) else tail[-1] + 1
        onsets[name] = float(curve["delta"][first]) if first < len(curve) else None
    return onsets


def planted_power_curve(
    scenes: Sequence[Scene],
    backbone: Backbone,
    layer: str = CONTROL_LAYER,
    timestep: int = CONTROL_TIMESTEP,
    deltas: Sequence[float] = PLANTED_DELTAS,
    metric: str = CONTROL_METRIC,
    image_size: int = TOY_IMAGE_SIZE,
    n_boot: int = 300,
    seed: int = 0,
    progress: bool = False,
) -> tuple[pd.DataFrame, dict]:
    """The planted (spike-in) controls: every measure as a function of a known signal size.

    The layer's maps are computed once (``backbone`` should carry no semantics: random
    weights), a class signal of size ``delta`` (in units of the maps' pixel RMS spread,
    :func:`pixel_spread`) is planted on each object's pixels along orthonormal class
    directions (:func:`class_directions`, seeded), and each planted table is measured
    (:func:`planted_row`).

    Args:
        scenes: held-out scenes.
        backbone: the model whose maps receive the signal.
        layer: the layer.
        timestep: the timestep.
        deltas: the signal sizes.
        metric: the distance.
        image_size: the model's input size in pixels.
        n_boot: bootstrap draws per delta.
        seed: seed of the directions and the draws.
        progress: show progress bars.

    Returns:
        ``(curve, info)``: one row per delta (:func:`planted_row`) and ``{"pixel_spread",
        "chance", "onsets"}`` (:func:`planted_onsets`, at alpha 0.05).
    """
    scenes = list(scenes)
    maps = layer_maps(scenes, backbone, layer, timestep, image_size, progress)
    spread = pixel_spread(maps.values())
    classes = sorted({c for s in scenes for c in s.class_names})
    dim = next(iter(maps.values())).shape[0]
    directions = class_directions(classes, dim, seed)
    rows = [
        planted_row(planted_table(maps, scenes, d, directions, spread), metric, n_boot, seed)
        for d in tqdm(deltas, desc="planted deltas", disable=not progress)
    ]
    curve = pd.DataFrame(rows)
    chance = 1.0 / len(classes)
    info = {"pixel_spread": spread, "chance": chance, "onsets": planted_onsets(curve, chance)}
    return curve, info
