"""Evaluate semantic (or geometric) correspondence on keypoint pairs, DIFT-style, end to end.

:func:`evaluate_pairs` takes an iterable of :class:`~difflens.data.keypoints.KeypointPair`
(a dataset from :func:`~difflens.data.load_pairs`, the toy pairs, the warped photos of
:mod:`difflens.data.warps`), a preset or an extractor and matching options. Pairs are read
in chunks of ``chunk_pairs``; for each chunk, the feature maps of the images not yet in
memory are read from the store or computed (one prompt per image: the preset's template
filled with the pair's category), each pair's source keypoints are matched in its target
image (:func:`~difflens.correspondence.matching.match_keypoints`: both maps upsampled to
their original image sizes, cosine, argmax; DIFT's ``eval_spair.py``), and the predictions
are kept. Memory is bounded: the chunk's maps plus a least-recently-used cache of at most
``cache_bytes`` (:class:`~difflens.correspondence.dense.MapCache`).

Bad input is named and counted, never silently dropped: a pair that fails
:func:`~difflens.data.keypoints.check_pair` (``bad pair``, ``keypoint outside image``),
whose image cannot be used (``failed: features``: a grey image under ``colour="strict"``,
non-finite features) or whose matching raises (``failed: matching``) is recorded in the
result's ``skipped`` log with its id and reason; pairs a dataset could not read are in the
dataset's own ``skipped`` log, whose summary the result's ``info`` repeats.

:func:`layer_timestep_search` runs the same loop for a grid of layers and timesteps (DIFT's
layer and timestep ablation) from one U-Net batch per image, and returns PCK per cell; choose
on VALIDATION pairs only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from difflens.core.errors import DatasetError
from difflens.core.skips import SkipLog
from difflens.correspondence.dense import MapCache, dense_features, image_key, image_prompt
from difflens.correspondence.matching import MatchResult, match_keypoints
from difflens.correspondence.pck import (
    AVERAGINGS,
    DEFAULT_ALPHAS,
    PairKeypoints,
    evaluate_pck,
)
from difflens.correspondence.presets import FeaturePreset, get_preset, preset_extractor
from difflens.data.keypoints import KeypointPair, box_side, check_pair
from difflens.data.names import canonical_pair_name
from difflens.data.registry import load_pairs
from difflens.data.toy import ToyPairs
from difflens.data.warps import WarpedPhotos
from difflens.features.extractor import FeatureExtractor
from difflens.features.settings import Setting
from difflens.features.store import FeatureStore

__all__ = [
    "PREDICTION_COLUMNS",
    "CorrespondenceRun",
    "evaluate_pairs",
    "open_pairs",
    "pair_keypoints",
    "layer_timestep_search",
    "search_layers",
]

PREDICTION_COLUMNS: tuple[str, ...] = (
    "pair_id",
    "category",
    "keypoint_id",
    "src_x",
    "src_y",
    "gt_x",
    "gt_y",
    "pred_x",
    "pred_y",
    "score",
    "valid",
    "error_px",
    "bbox_side",
)
"""Columns of :attr:`CorrespondenceRun.predictions`, one row per keypoint."""

_COUNTS = ("pairs_matched", "pairs_skipped", "images_done", "images_cached", "images_in_memory")


@dataclass
class CorrespondenceRun:
    """The result of :func:`evaluate_pairs`.

    Attributes:
        table: :func:`~difflens.correspondence.pck.evaluate_pck`'s tidy table (reading,
            alpha, averaging, category, pck, low, high, n_pairs, n_points).
        predictions: one row per keypoint, columns :data:`PREDICTION_COLUMNS`: source,
            ground-truth and predicted x/y in original pixels, the cosine at the match, the
            mutual-check flag, the error in target pixels and the target box's longer side.
        pairs: the matched pairs as :class:`~difflens.correspondence.pck.PairKeypoints`, in
            order (``pairs[i]`` is pair ``i`` of ``predictions.pair_id.unique()``).
        skipped: the pairs that could not be matched, each with its reason.
        counts: ``pairs_matched``, ``pairs_skipped``, ``images_done`` (computed),
            ``images_cached`` (read from the store) and ``images_in_memory`` (reused).
        info: layer, setting, extractor config, matching options and the dataset's own
            skip summary.
    """

    table: pd.DataFrame
    predictions: pd.DataFrame
    pairs: list[PairKeypoints]
    skipped: SkipLog
    counts: dict[str, int] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def pck(
        self,
        alpha: float = 0.1,
        reading: str = "target_bbox",
        averaging: str = "per_image",
        category: str = "all",
    ) -> float:
        """One number of :attr:`table`.

        Args:
            alpha: the alpha.
            reading: the threshold reading.
            averaging: ``"per_image"`` or ``"per_point"``.
            category: a category or ``"all"``.

        Returns:
            The PCK in ``[0, 1]``.

        Raises:
            KeyError: the table has no such row.
        """
        t = self.table
        rows = t[
            np.isclose(t.alpha, alpha)
            & (t.reading == reading)
            & (t.averaging == averaging)
            & (t.category == category)
        ]
        if rows.empty:
            raise KeyError(f"no row for alpha={alpha}, {reading}, {averaging}, {category}")
        return float(rows.pck.iloc[0])

    def summary(
        self, alpha: float = 0.1, reading: str = "target_bbox", averaging: str = "per_image"
    ) -> dict[str, dict[str, float]]:
        """PCK with its interval per category (and ``"all"``), for a notebook's numbers.

        Args:
            alpha: the alpha.
            reading: the threshold reading.
            averaging: ``"per_image"`` or ``"per_point"``.

        Returns:
            ``category -> {"pck", "low", "high", "n_pairs", "n_points"}``, fractions in [0, 1].
        """
        t = self.table
        rows = t[np.isclose(t.alpha, alpha) & (t.reading == reading) & (t.averaging == averaging)]
        columns = ["pck", "low", "high", "n_pairs", "n_points"]
        return {row.category: {c: getattr(row, c) for c in columns} for row in rows.itertuples()}


def pair_keypoints(pair: KeypointPair, pred: np.ndarray | torch.Tensor) -> PairKeypoints:
    """The PCK record of one matched pair (ground truth from the pair, in original pixels).

    Args:
        pair: the pair.
        pred: ``(N, 2)`` predicted x/y in original target pixels.

    Returns:
        :class:`~difflens.correspondence.pck.PairKeypoints` with the target box and size,
        the source box and size, and the source image's name as bootstrap group.
    """
    if isinstance(pred, torch.Tensor):
        pred = pred.detach().cpu().numpy()
    return PairKeypoints(
        pred=np.asarray(pred, dtype=np.float64).reshape(-1, 2),
        gt=pair.target_points.astype(np.float64),
        category=pair.category,
        trg_size=pair.target_size,
        trg_bbox=tuple(float(v) for v in pair.target_box),
        src_size=pair.source_size,
        src_bbox=tuple(float(v) for v in pair.source_box),
        group=pair.source_name or pair.pair_id,
    )


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class _Matcher:
    """Features of pair images (chunk maps + a bounded memory cache) and their matches."""

    def __init__(
        self,
        extractor: FeatureExtractor,
        combos: Sequence[tuple[str, Setting]],
        matching: Mapping[str, object],
        cache: MapCache,
        store: FeatureStore | None,
        batch_size: int,
    ):
        self.extractor = extractor
        self.combos = list(combos)
        self.layers = list(dict.fromkeys(layer for layer, _ in self.combos))
        self.settings = list(dict.fromkeys(setting for _, setting in self.combos))
        self.matching = dict(matching)
        self.cache = cache
        self.store = store
        self.batch_size = batch_size
        self.skipped = SkipLog(verbose=False)
        self.counts: Counter = Counter({name: 0 for name in _COUNTS})

    def _sides(self, pair: KeypointPair) -> list[tuple[str, np.ndarray, str]]:
        out = []
        for image in (pair.source_image, pair.target_image):
            prompt = image_prompt(self.extractor, pair.category)
            out.append((image_key(image, prompt), image, pair.category))
        return out

    def _chunk_maps(self, pairs: list[KeypointPair]) -> tuple[dict, dict[str, str]]:
        """Maps of every image of ``pairs``; ``(key -> maps, key -> failure reason)``."""
        held, todo = {}, {}
        for pair in pairs:
            for key, image, category in self._sides(pair):
                if key in held or key in todo:
                    continue
                maps = self.cache.get(key)
                if maps is not None:
                    held[key] = maps
                    self.counts["images_in_memory"] += 1
                else:
                    todo[key] = (image, category)
        failed: dict[str, str] = {}
        if todo:
            keys = list(todo)
            fmaps = dense_features(
                [todo[k][0] for k in keys],
                self.extractor,
                self.layers,
                self.settings,
                categories=[todo[k][1] for k in keys],
                keys=keys,
                store=self.store,
                batch_size=self.batch_size,
            )
            self.counts["images_done"] += fmaps.counts["done"]
            self.counts["images_cached"] += fmaps.counts["cached"]
            failed = {name: reason for name, reason in fmaps.skipped.records}
            for key in keys:
                if key in fmaps:
                    held[key] = fmaps[key]
                    self.cache.put(key, fmaps[key])
        return held, failed

    def _map(self, maps: list[dict[str, torch.Tensor]], combo: int) -> torch.Tensor:
        layer, setting = self.combos[combo]
        return maps[self.settings.index(setting)][layer]

    def run(self, pairs: list[KeypointPair]) -> Iterator[tuple[KeypointPair, list[MatchResult]]]:
        """Each usable pair of a chunk with its match under every combo; bad pairs recorded."""
        good = []
        for pair in pairs:
            try:
                good.append(check_pair(pair))
            except DatasetError as error:
                self._skip(pair, f"{error.kind}: {error.detail}")
        held, failed = self._chunk_maps(good)
        for pair in good:
            (src_key, *_), (trg_key, *_) = self._sides(pair)
            missing = [k for k in (src_key, trg_key) if k not in held]
            if missing:
                side = "source" if missing[0] == src_key else "target"
                self._skip(pair, f"failed: features of the {side} image: {failed.get(missing[0])}")
                continue
            try:
                results = [
                    match_keypoints(
                        self._map(held[src_key], c),
                        self._map(held[trg_key], c),
                        pair.source_size,
                        pair.target_size,
                        pair.source_points,
                        **self.matching,
                    )
                    for c in range(len(self.combos))
                ]
            except ValueError as error:
                self._skip(pair, f"failed: matching: {error}")
                continue
            self.counts["pairs_matched"] += 1
            yield pair, results

    def _skip(self, pair: KeypointPair, reason: str) -> None:
        self.skipped.skip(f"pair {pair.pair_id}", reason)
        self.counts["pairs_skipped"] += 1


def _resolve(
    features: FeatureExtractor | FeaturePreset | str,
    preset: FeaturePreset | str | None,
    store: FeatureStore | None,
) -> tuple[FeatureExtractor, FeaturePreset | None]:
    """The extractor and preset from what the caller gave."""
    if isinstance(features, FeatureExtractor):
        return features, None if preset is None else get_preset(preset)
    preset = get_preset(features)
    return preset_extractor(preset, store=store), preset


def _prediction_rows(pair: KeypointPair, result: MatchResult) -> dict[str, np.ndarray]:
    pred = result.pred.detach().cpu().double().numpy()
    gt = pair.target_points.astype(np.float64)
    n = len(gt)
    return {
        "pair_id": np.repeat(pair.pair_id, n),
        "category": np.repeat(pair.category, n),
        "keypoint_id": np.asarray(pair.keypoint_ids, dtype=object),
        "src_x": pair.source_points[:, 0].astype(np.float64),
        "src_y": pair.source_points[:, 1].astype(np.float64),
        "gt_x": gt[:, 0],
        "gt_y": gt[:, 1],
        "pred_x": pred[:, 0],
        "pred_y": pred[:, 1],
        "score": result.score.detach().cpu().double().numpy(),
        "valid": result.valid.detach().cpu().numpy(),
        "error_px": np.sqrt(((pred - gt) ** 2).sum(axis=1)),
        "bbox_side": np.repeat(box_side(pair.target_box), n),
    }


def _concat_rows(parts: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame(columns=list(PREDICTION_COLUMNS))
    return pd.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in PREDICTION_COLUMNS})


def _bar(pairs: Iterable, desc: str, enabled: bool) -> tqdm:
    total = len(pairs) if hasattr(pairs, "__len__") else None
    return tqdm(total=total, desc=desc, unit="pair", disable=not enabled)


def evaluate_pairs(
    pairs: Iterable[KeypointPair],
    features: FeatureExtractor | FeaturePreset | str,
    *,
    preset: FeaturePreset | str | None = None,
    layer: str | None = None,
    timestep: int | None = None,
    ensemble: int | None = None,
    matching: Mapping[str, object] | None = None,
    readings: Sequence[str] = ("target_bbox",),
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    averagings: Sequence[str] = AVERAGINGS,
    strict: bool = False,
    n_boot: int = 1000,
    bootstrap_unit: str = "pair",
    seed: int = 0,
    chunk_pairs: int = 8,
    cache_bytes: int = 512 * 2**20,
    batch_size: int = 4,
    store: FeatureStore | None = None,
    progress: bool = True,
) -> CorrespondenceRun:
    """Match every pair's keypoints with dense diffusion features and score them with PCK.

    Args:
        pairs: keypoint pairs (any iterable; consumed once, chunk by chunk).
        features: a :class:`~difflens.features.extractor.FeatureExtractor`, or a preset (or
            its name), whose model is then loaded with :func:`preset_extractor`.
        preset: with an extractor, the preset whose layer, timestep, ensemble and upsampling
            to use (the extractor supplies model, size, prompt and latent mode).
        layer: the layer (overrides the preset's).
        timestep: the timestep (overrides the preset's).
        ensemble: noise draws averaged (overrides the preset's).
        matching: keyword options of
            :func:`~difflens.correspondence.matching.match_keypoints` (``upsample``,
            ``mutual``, ``soft_argmax_window``, ...); ``upsample`` defaults to the preset's.
        readings: PCK threshold readings (:data:`~difflens.correspondence.pck.READINGS`).
        alphas: PCK alphas (for ``"pixels"``: thresholds in pixels).
        averagings: ``"per_image"`` and/or ``"per_point"``.
        strict: ``<`` instead of ``<=``.
        n_boot: bootstrap resamples of the intervals (0: none).
        bootstrap_unit: ``"pair"`` or ``"group"`` (pairs grouped by source image).
        seed: seed of the bootstrap.
        chunk_pairs: pairs whose images are extracted together.
        cache_bytes: memory budget of the maps kept for reuse across chunks.
        batch_size: images per U-Net batch.
        store: the feature cache (default: the extractor's).
        progress: show a progress bar over pairs.

    Returns:
        The :class:`CorrespondenceRun`: PCK table, per-keypoint predictions, matched pairs,
        skipped pairs with reasons, counts and run information.

    Raises:
        ValueError: no layer (neither given nor from a preset).
    """
    extractor, preset = _resolve(features, preset, store)
    layer = layer or (preset.layer if preset else None)
    if not layer:
        raise ValueError("evaluate_pairs needs a layer (or a preset that names one)")
    timestep = timestep if timestep is not None else (preset.timestep if preset else 0)
    ensemble = ensemble if ensemble is not None else (preset.ensemble if preset else 1)
    setting = extractor.check_setting(Setting(timestep, ensemble))
    options = {"upsample": preset.upsample if preset else "bilinear", **(matching or {})}
    matcher = _Matcher(
        extractor, [(layer, setting)], options, MapCache(cache_bytes), store, batch_size
    )
    rows, records = _collect(
        pairs, matcher, chunk_pairs, f"matching {layer} {setting.label}", progress
    )
    table = evaluate_pck(
        records,
        readings=readings,
        alphas=alphas,
        averagings=averagings,
        strict=strict,
        n_boot=n_boot,
        seed=seed,
        bootstrap_unit=bootstrap_unit,
    )
    dataset_skips = getattr(pairs, "skipped", None)
    info = {
        "layer": layer,
        "timestep": setting.timestep,
        "ensemble": setting.ensemble,
        "preset": preset.name if preset else None,
        "extractor": extractor.config(),
        "matching": options,
        "dataset_skipped": dataset_skips.summary() if dataset_skips is not None else None,
    }
    return CorrespondenceRun(
        table, _concat_rows(rows), records, matcher.skipped, dict(matcher.counts), info
    )


def _collect(
    pairs: Iterable[KeypointPair], matcher: _Matcher, chunk_pairs: int, desc: str, progress: bool
) -> tuple[list[dict[str, np.ndarray]], list[PairKeypoints]]:
    """Prediction rows and PCK records of every matched pair (single-combo matcher)."""
    rows, records = [], []
    bar = _bar(pairs, desc, progress)
    try:
        for chunk in _chunks(pairs, chunk_pairs):
            for pair, (result,) in matcher.run(chunk):
                rows.append(_prediction_rows(pair, result))
                records.append(pair_keypoints(pair, result.pred))
            bar.update(len(chunk))
            bar.set_postfix(dict(matcher.counts), refresh=False)
    finally:
        bar.close()
    return rows, records


def open_pairs(
    dataset: str,
    n_pairs: int | None = None,
    *,
    split: str = "test",
    root: str | Path | None = None,
    size: int = 128,
    seed: int = 0,
) -> Iterable[KeypointPair]:
    """The keypoint pairs a notebook names: toy pairs offline, or a dataset on disk.

    Args:
        dataset: ``"toypairs"`` (semantic toy pairs), ``"toypairs-geometric"``,
            ``"warped-photos"`` (:class:`~difflens.data.warps.WarpedPhotos`), or a name of
            :func:`~difflens.data.load_pairs` (``spair``, ``pf-pascal``, ``pf-willow``, ``cub``).
        n_pairs: toy pairs: how many (default 200); SPair-71k: at most this many per
            category (seeded draw; ``None`` or 0: all); PF and CUB: ignored.
        split: ``"test"``, ``"validation"`` (toy; SPair ``"val"``) or the dataset's split.
        root: the dataset folder (datasets on disk).
        size: toy pairs' image side in pixels; the photographs' longer side.
        seed: first toy seed offset; seed of a per-category draw.

    Returns:
        A dataset with ``len()``; unreadable pairs are counted in its ``skipped``.
    """
    key = dataset.lower()
    if key in ("toypairs", "toypairs-geometric"):
        kind = "geometric" if key.endswith("geometric") else "semantic"
        return ToyPairs(n_pairs or 200, kind=kind, split=split, size=size, seed=seed)
    if key == "warped-photos":
        return WarpedPhotos(max_side=size)
    options = {}
    if n_pairs and canonical_pair_name(dataset) == "spair":
        options = {"max_pairs_per_category": n_pairs, "seed": seed}
    return load_pairs(dataset, root, split=split, **options)


def search_layers(
    extractor: FeatureExtractor, kinds: Sequence[str] = ("resnet", "attention", "block")
) -> list[str]:
    """Candidate layers of a layer search: the registry's layers of some kinds, in forward order.

    Args:
        extractor: the extractor (its registry lists the U-Net's layers).
        kinds: layer kinds to keep (:data:`~difflens.models.layers.KINDS`; queries and
            resampling convolutions are left out by default).

    Returns:
        The layer names.
    """
    return [
        name for name in extractor.registry.names if extractor.registry.info(name).kind in kinds
    ]


def layer_timestep_search(
    pairs: Iterable[KeypointPair],
    extractor: FeatureExtractor,
    layers: Sequence[str] | None = None,
    timesteps: Sequence[int] = (0, 50, 100, 200, 400),
    *,
    ensemble: int = 1,
    matching: Mapping[str, object] | None = None,
    reading: str = "target_bbox",
    alpha: float = 0.1,
    averaging: str = "per_image",
    chunk_pairs: int = 8,
    batch_size: int = 4,
    store: FeatureStore | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """PCK of every (layer, timestep) cell on some pairs (DIFT's layer x timestep ablation).

    Every image is run once through the U-Net for all timesteps (one batch of rows), every
    layer is captured from that pass, and each cell's maps are matched as
    :func:`evaluate_pairs` matches them. Run it on VALIDATION pairs: choosing on the pairs
    that are reported afterwards overstates the result.

    Args:
        pairs: the pairs (consumed once).
        extractor: the extractor (model, size, prompt, latent mode).
        layers: layer names (default :func:`search_layers`).
        timesteps: the timesteps.
        ensemble: noise draws averaged at every timestep.
        matching: keyword options of
            :func:`~difflens.correspondence.matching.match_keypoints`.
        reading: the PCK threshold reading.
        alpha: the PCK alpha.
        averaging: ``"per_image"`` or ``"per_point"``.
        chunk_pairs: pairs whose images are extracted together.
        batch_size: images per U-Net batch.
        store: the feature cache (default: the extractor's).
        progress: show a progress bar over pairs.

    Returns:
        One row per cell, layers in forward order and timesteps as given: ``layer``,
        ``timestep``, ``pck``, ``n_pairs``, ``n_points``; ``attrs["skipped"]`` summarises
        the pairs that could not be matched.
    """
    layers = list(layers) if layers is not None else search_layers(extractor)
    settings = [extractor.check_setting(Setting(int(t), ensemble)) for t in timesteps]
    combos = [(layer, s) for layer in layers for s in settings]
    matcher = _Matcher(extractor, combos, dict(matching or {}), MapCache(0), store, batch_size)
    records: list[list[PairKeypoints]] = [[] for _ in combos]
    bar = _bar(pairs, f"search {len(layers)} layers x {len(settings)} timesteps", progress)
    try:
        for chunk in _chunks(pairs, chunk_pairs):
            for pair, results in matcher.run(chunk):
                for c, result in enumerate(results):
                    records[c].append(pair_keypoints(pair, result.pred))
            bar.update(len(chunk))
    finally:
        bar.close()
    rows = []
    for (layer, setting), recs in zip(combos, records):
        table = evaluate_pck(
            recs,
            readings=(reading,),
            alphas=(alpha,),
            averagings=(averaging,),
            by_category=False,
            n_boot=0,
        )
        rows.append(
            {
                "layer": layer,
                "timestep": setting.timestep,
                "pck": float(table.pck.iloc[0]),
                "n_pairs": int(table.n_pairs.iloc[0]),
                "n_points": int(table.n_points.iloc[0]),
            }
        )
    out = pd.DataFrame(rows, columns=["layer", "timestep", "pck", "n_pairs", "n_points"])
    out.attrs.update(
        reading=reading, alpha=alpha, averaging=averaging, skipped=matcher.skipped.summary()
    )
    return out
