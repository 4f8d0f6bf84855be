"""What the explorer computes, without widgets: cached feature maps, cosine maps, set distances.

- :class:`MatchExplorer`: a pair of images, a setting (model, layer, timestep, ensemble)
  and a clicked source point give the cosine map over the target image
  (:func:`~difflens.correspondence.matching.cosine_map`, DIFT's bilinear upsampling to the
  original sizes, computed exactly), its best match and its ``top_k`` largest values.
  Feature maps are held in a :class:`FeatureCache` keyed by (model, image content, layer,
  timestep, ensemble), so a setting seen before costs no U-Net pass; each view says whether
  its maps came from the cache.
- :class:`DistanceExplorer`: two objects of a prototype table give their distance, the
  sets the pair belongs to (:mod:`difflens.analysis.sets`) and where the distance falls
  within each set's distribution.

The widgets of :mod:`difflens.viz.explorer` only read and write these classes, so everything
shown can be checked without a browser.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from difflens.analysis.distances import canonical_metric, pairwise
from difflens.analysis.sets import SETS, distance_sets, pair_membership
from difflens.correspondence.dense import MapCache
from difflens.correspondence.evaluate import search_layers
from difflens.correspondence.matching import cosine_map
from difflens.data.images import check_image, read_image
from difflens.data.keypoints import KeypointPair
from difflens.data.scene import Scene
from difflens.features.extractor import FeatureExtractor
from difflens.features.prototypes import META_COLUMNS, PrototypeTable
from difflens.features.store import image_digest
from difflens.models.backbone import load_backbone, parse_dtype

__all__ = [
    "PairImages",
    "MatchSetting",
    "FeatureLookup",
    "MatchView",
    "FeatureCache",
    "MatchExplorer",
    "DistanceView",
    "DistanceExplorer",
    "extractor_loader",
    "image_from_bytes",
    "top_positions",
    "save_table",
    "load_table",
]


# --------------------------------------------------------------------------- images


def image_from_bytes(data: bytes | memoryview) -> np.ndarray:
    """Decode an image file's bytes (an upload) as RGB.

    Args:
        data: the file's content (PNG, JPEG, ...).

    Returns:
        ``(H, W, 3)`` uint8 RGB (grey and RGBA converted).
    """
    with Image.open(io.BytesIO(bytes(data))) as pil:
        return check_image(np.asarray(pil.convert("RGB")), "upload", "convert")


@dataclass(frozen=True)
class PairImages:
    """The two images the explorer matches between, with the pair's keypoints if any.

    Attributes:
        name: what the pair is called on screen.
        source: ``(Hs, Ws, 3)`` uint8 RGB.
        target: ``(Ht, Wt, 3)`` uint8 RGB.
        source_points: ``(N, 2)`` x/y of annotated source keypoints (``N = 0``: none).
        target_points: ``(N, 2)`` x/y of the corresponding target keypoints.
    """

    name: str
    source: np.ndarray
    target: np.ndarray
    source_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    target_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))

    @staticmethod
    def from_pair(pair: KeypointPair) -> PairImages:
        """The images and keypoints of a keypoint pair.

        Args:
            pair: a pair of a toy or keypoint dataset.

        Returns:
            The pair's images, named ``"<pair id> (<category>)"``.
        """
        return PairImages(
            f"{pair.pair_id} ({pair.category})",
            pair.source_image,
            pair.target_image,
            pair.source_points,
            pair.target_points,
        )

    @staticmethod
    def from_files(source: str | Path | bytes, target: str | Path | bytes) -> PairImages:
        """Two of the user's images, as paths or as file contents (uploads).

        Args:
            source: the source image's path or bytes.
            target: the target image's path or bytes.

        Returns:
            The pair, named after the files (``"upload"`` for bytes).
        """

        def read(item):
            if isinstance(item, (bytes, bytearray, memoryview)):
                return image_from_bytes(item), "upload"
            return read_image(item, colour="convert"), Path(item).name

        (src, src_name), (trg, trg_name) = read(source), read(target)
        return PairImages(f"{src_name} -> {trg_name}", src, trg)

    @property
    def source_size(self) -> tuple[int, int]:
        """``(Hs, Ws)`` of the source image."""
        return int(self.source.shape[0]), int(self.source.shape[1])

    @property
    def target_size(self) -> tuple[int, int]:
        """``(Ht, Wt)`` of the target image."""
        return int(self.target.shape[0]), int(self.target.shape[1])

    def default_point(self) -> tuple[int, int]:
        """The first annotated source keypoint (rounded), else the source image's centre.

        Returns:
            ``(x, y)`` in source pixels.
        """
        finite = [p for p in np.asarray(self.source_points).reshape(-1, 2) if np.isfinite(p).all()]
        if finite:
            x, y = np.rint(finite[0]).astype(int)
            h, w = self.source_size
            return int(min(max(x, 0), w - 1)), int(min(max(y, 0), h - 1))
        return self.source_size[1] // 2, self.source_size[0] // 2


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class MatchSetting:
    """What a feature map depends on besides the image.

    Attributes:
        model: the model's name (as given to :func:`extractor_loader`).
        layer: a registry layer name.
        timestep: scheduler index.
        ensemble: noise draws averaged.
    """

    model: str
    layer: str
    timestep: int = 0
    ensemble: int = 1


@dataclass(frozen=True)
class FeatureLookup:
    """Where one view's two feature maps came from.

    Attributes:
        source_hit: the source map was in the cache.
        target_hit: the target map was in the cache.
        seconds: time spent getting both.
    """

    source_hit: bool
    target_hit: bool
    seconds: float

    @property
    def hit(self) -> bool:
        """Both maps came from the cache (no U-Net pass)."""
        return self.source_hit and self.target_hit


class FeatureCache:
    """Feature maps in memory, keyed by (model, image content, layer, timestep, ensemble).

    Args:
        max_bytes: the budget; least recently used maps are dropped beyond it.

    Attributes:
        maps: the underlying :class:`~difflens.correspondence.dense.MapCache` (its ``hits``
            and ``misses`` count lookups).
    """

    def __init__(self, max_bytes: int = 1 << 30):
        self.maps = MapCache(max_bytes)

    @staticmethod
    def key(setting: MatchSetting, image: np.ndarray) -> str:
        """The cache key of one image's map under a setting.

        Args:
            setting: model, layer, timestep and ensemble.
            image: the ``(H, W, 3)`` uint8 image (its content hash enters the key).

        Returns:
            ``"model|digest|layer|t=timestep|e=ensemble"``.
        """
        digest = image_digest(np.asarray(image))
        return f"{setting.model}|{digest}|{setting.layer}|t={setting.timestep}|e={setting.ensemble}"

    def get_or_compute(
        self,
        setting: MatchSetting,
        image: np.ndarray,
        compute: Callable[[], torch.Tensor],
    ) -> tuple[torch.Tensor, bool]:
        """The cached map of ``image``, or ``compute()``'s, kept for next time.

        Args:
            setting: the setting.
            image: the image.
            compute: makes the ``(C, h, w)`` map when it is not held.

        Returns:
            ``(map, hit)``: hit is True when the map came from the cache.
        """
        key = self.key(setting, image)
        held = self.maps.get(key)
        if held is not None:
            return held, True
        fresh = compute()
        self.maps.put(key, fresh)
        return fresh, False


def extractor_loader(
    image_size: int | Mapping[str, int] = 64, device: str = "cpu", dtype: str = "fp32"
) -> Callable[[str], FeatureExtractor]:
    """A function that opens a model by name as a feature extractor (no disk cache).

    Args:
        image_size: the side images are resized to, or ``model -> side`` (a model not
            named gets 512).
        device: ``"cpu"`` or ``"cuda"``.
        dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    Returns:
        ``model -> FeatureExtractor`` (``"toy"``, ``"tiny"``, a folder or a hub id; see
        :func:`~difflens.models.backbone.load_backbone`).
    """

    def load(model: str) -> FeatureExtractor:
        size = image_size.get(model, 512) if isinstance(image_size, Mapping) else image_size
        backbone = load_backbone(model, device=device, dtype=parse_dtype(dtype))
        return FeatureExtractor(backbone, image_size=size)

    return load


def top_positions(heat: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest values of a map, largest first; ties in row-major order.

    Args:
        heat: ``(H, W)`` values.
        k: how many.

    Returns:
        ``(positions, values)``: ``(k, 2)`` int x/y and ``(k,)`` values.
    """
    flat = np.asarray(heat).ravel()
    order = np.argsort(-flat, kind="stable")[:k]
    rows, cols = np.unravel_index(order, np.shape(heat))
    return np.stack([cols, rows], axis=1).astype(int), flat[order]


@dataclass(frozen=True)
class MatchView:
    """One computed view: the cosine map of a source point over the target image.

    Attributes:
        pair: the pair's name.
        setting: model, layer, timestep, ensemble.
        point: ``(x, y)`` of the source point, source pixels.
        heat: ``(Ht, Wt)`` float64 cosine map over the target's pixels.
        top: ``(k, 2)`` int x/y of the ``k`` largest values, largest first.
        top_scores: ``(k,)`` their cosines.
        lookup: where the feature maps came from.
        seconds: time of the whole view (maps and cosine map).
    """

    pair: str
    setting: MatchSetting
    point: tuple[int, int]
    heat: np.ndarray
    top: np.ndarray
    top_scores: np.ndarray
    lookup: FeatureLookup
    seconds: float

    @property
    def best(self) -> tuple[int, int]:
        """``(x, y)`` of the best match, target pixels."""
        return int(self.top[0, 0]), int(self.top[0, 1])

    @property
    def best_score(self) -> float:
        """The cosine at the best match."""
        return float(self.top_scores[0])


class MatchExplorer:
    """A pair, a setting and a source point; computes cosine maps with cached features.

    Args:
        extractor_for: ``model name -> FeatureExtractor`` (e.g. :func:`extractor_loader`);
            each model is opened once, when first used.
        top_k: how many of the largest cosines a view marks.
        cache: the feature cache (default: a new one of 1 GiB).

    Attributes:
        cache: the :class:`FeatureCache`.
        top_k: as given.
        pair: the current pair, or None.
        setting: the current setting, or None.
        point: the current source point ``(x, y)``, or None.
    """

    def __init__(
        self,
        extractor_for: Callable[[str], FeatureExtractor],
        top_k: int = 5,
        cache: FeatureCache | None = None,
    ):
        self._open = extractor_for
        self._extractors: dict[str, FeatureExtractor] = {}
        self.cache = FeatureCache() if cache is None else cache
        self.top_k = int(top_k)
        self.pair: PairImages | None = None
        self.setting: MatchSetting | None = None
        self.point: tuple[int, int] | None = None

    def extractor(self, model: str) -> FeatureExtractor:
        """The extractor of a model, opened on first use.

        Args:
            model: the model's name.

        Returns:
            Its :class:`~difflens.features.extractor.FeatureExtractor`.
        """
        if model not in self._extractors:
            self._extractors[model] = self._open(model)
        return self._extractors[model]

    def layers(self, model: str) -> list[str]:
        """The layers offered for a model: its ResNet, attention and block outputs.

        Args:
            model: the model's name.

        Returns:
            Layer names in forward order.
        """
        return search_layers(self.extractor(model))

    def max_timestep(self, model: str) -> int:
        """The largest timestep of a model's scheduler.

        Args:
            model: the model's name.

        Returns:
            ``T - 1``.
        """
        return self.extractor(model).num_train_timesteps - 1

    def set_pair(self, pair: PairImages | KeypointPair) -> None:
        """Show another pair; the source point becomes its default point.

        Args:
            pair: the pair (a :class:`KeypointPair` is converted).
        """
        self.pair = pair if isinstance(pair, PairImages) else PairImages.from_pair(pair)
        self.point = self.pair.default_point()

    def feature_map(self, setting: MatchSetting, image: np.ndarray) -> tuple[torch.Tensor, bool]:
        """One image's map under a setting, from the cache or one U-Net pass.

        The map is ``extractor.features([image], [layer], timestep, ensemble=ensemble)``
        of the setting's model, for this image alone.

        Args:
            setting: the setting.
            image: ``(H, W, 3)`` uint8 RGB.

        Returns:
            ``((C, h, w) float32 map, hit)``.
        """

        def compute() -> torch.Tensor:
            extractor = self.extractor(setting.model)
            maps = extractor.features(
                [image], [setting.layer], setting.timestep, ensemble=setting.ensemble
            )
            return maps[setting.layer][0]

        return self.cache.get_or_compute(setting, image, compute)

    def maps(self, setting: MatchSetting) -> tuple[torch.Tensor, torch.Tensor, FeatureLookup]:
        """Both images' maps under a setting.

        Args:
            setting: the setting.

        Returns:
            ``(source map, target map, lookup)``.

        Raises:
            ValueError: no pair is set.
        """
        if self.pair is None:
            raise ValueError("no pair: call set_pair() first")
        start = time.perf_counter()
        fs, source_hit = self.feature_map(setting, self.pair.source)
        ft, target_hit = self.feature_map(setting, self.pair.target)
        return fs, ft, FeatureLookup(source_hit, target_hit, time.perf_counter() - start)

    def update(
        self, setting: MatchSetting | None = None, point: Sequence[int] | None = None
    ) -> MatchView:
        """Change the setting and/or the source point, and compute the view.

        Args:
            setting: the new setting (None: keep the current one).
            point: the new ``(x, y)`` source point (None: keep the current one).

        Returns:
            The :class:`MatchView`.

        Raises:
            ValueError: no pair or no setting is set, or the point lies outside the source.
        """
        if setting is not None:
            self.setting = setting
        if point is not None:
            x, y = int(point[0]), int(point[1])
            h, w = self.pair.source_size if self.pair is not None else (0, 0)
            if not (0 <= x < w and 0 <= y < h):
                raise ValueError(f"point ({x}, {y}) lies outside the {w} x {h} source image")
            self.point = (x, y)
        if self.setting is None:
            raise ValueError("no setting: pass one to update()")
        return self.view()

    def view(self) -> MatchView:
        """The cosine map of the current point under the current setting.

        Returns:
            The :class:`MatchView`.

        Raises:
            ValueError: no pair or no setting is set.
        """
        if self.setting is None or self.pair is None or self.point is None:
            raise ValueError("set a pair and a setting first")
        start = time.perf_counter()
        fs, ft, lookup = self.maps(self.setting)
        heat = cosine_map(fs, ft, self.pair.source_size, self.pair.target_size, self.point).numpy()
        top, scores = top_positions(heat, self.top_k)
        seconds = time.perf_counter() - start
        return MatchView(
            self.pair.name, self.setting, self.point, heat, top, scores, lookup, seconds
        )


# --------------------------------------------------------------------------- distances


@dataclass(frozen=True)
class DistanceView:
    """Two objects' distance among the distance sets of their table.

    Attributes:
        table: the table's name.
        metric: the metric.
        a: the first object's ``object_key``.
        b: the second object's ``object_key``.
        distance: their distance.
        sets: the sets the pair belongs to (none for an object with itself).
        below: ``set -> fraction of the set's distances at or below`` ``distance``.
        long: the table's long form (:func:`~difflens.analysis.sets.distance_sets`).
    """

    table: str
    metric: str
    a: str
    b: str
    distance: float
    sets: tuple[str, ...]
    below: dict[str, float]
    long: pd.DataFrame


class DistanceExplorer:
    """Prototype tables and their scenes; places a pair's distance among the sets.

    Args:
        tables: ``name -> PrototypeTable``.
        scenes: the scenes the tables were computed from (to draw masks); may be empty.
        sets: the sets to build.

    Attributes:
        tables: as given.
        sets: as given.
    """

    def __init__(
        self,
        tables: Mapping[str, PrototypeTable],
        scenes: Iterable[Scene] = (),
        sets: Sequence[str] = SETS,
    ):
        self.tables = dict(tables)
        self.sets = tuple(sets)
        self._scenes = {scene.image_id: scene for scene in scenes}
        self._long: dict[tuple[str, str], pd.DataFrame] = {}

    def objects(self, table: str) -> list[tuple[str, str]]:
        """The objects of a table, as ``(label, object_key)``.

        Args:
            table: the table's name.

        Returns:
            One ``("<image id>: <class>#<instance>", object_key)`` per row, in table order.
        """
        meta = self.tables[table].meta
        return [
            (f"{row.image_id}: {row.class_name}#{row.instance_id}", str(row.object_key))
            for row in meta.itertuples()
        ]

    def long(self, table: str, metric: str) -> pd.DataFrame:
        """The long form of a table's sets under a metric, computed once.

        Args:
            table: the table's name.
            metric: a metric of :func:`~difflens.analysis.distances.pairwise`.

        Returns:
            :func:`~difflens.analysis.sets.distance_sets`'s long form.
        """
        key = (table, canonical_metric(metric))
        if key not in self._long:
            self._long[key] = distance_sets(
                self.tables[table], key[1], sets=self.sets, progress=False
            )
        return self._long[key]

    def _row(self, table: str, key: str) -> int:
        """The row of an object in a table."""
        rows = np.flatnonzero(self.tables[table].meta["object_key"].astype(str).to_numpy() == key)
        if len(rows) == 0:
            raise KeyError(f"object {key!r} is not in table {table!r}")
        return int(rows[0])

    def compare(self, table: str, a: str, b: str, metric: str = "cosine") -> DistanceView:
        """Two objects' distance, their sets and its rank within every set.

        Args:
            table: the table's name.
            a: the first object's ``object_key``.
            b: the second object's ``object_key``.
            metric: the metric.

        Returns:
            The :class:`DistanceView`.
        """
        prototypes = self.tables[table]
        i, j = self._row(table, a), self._row(table, b)
        distance = float(pairwise(prototypes.features[[i]], prototypes.features[[j]], metric)[0, 0])
        member = pair_membership(prototypes.meta, np.array([i]), np.array([j])) if i != j else {}
        sets = tuple(s for s in self.sets if s in member and bool(member[s][0]))
        long = self.long(table, metric)
        below = {}
        for name in self.sets:
            values = long.loc[long["set"].astype(str) == name, "distance"].to_numpy(np.float64)
            values = values[np.isfinite(values)]
            below[name] = float(np.mean(values <= distance)) if len(values) else float("nan")
        return DistanceView(table, canonical_metric(metric), a, b, distance, sets, below, long)

    def mask(self, table: str, key: str) -> tuple[Scene, int] | None:
        """The scene of an object and the index of its mask, if the scene is known.

        Args:
            table: the table's name.
            key: the object's ``object_key``.

        Returns:
            ``(scene, mask index)``, or None when its scene was not given.
        """
        row = self.tables[table].meta.iloc[self._row(table, key)]
        scene = self._scenes.get(str(row["image_id"]))
        if scene is None or row["instance_id"] not in scene.instance_ids:
            return None
        return scene, scene.instance_ids.index(row["instance_id"])


# --------------------------------------------------------------------------- table files


def save_table(table: PrototypeTable, path: str | Path) -> Path:
    """Write a prototype table to one ``.npz`` file (features and metadata).

    Args:
        table: the table.
        path: the file (``.npz`` is appended when missing).

    Returns:
        The path written.
    """
    path = Path(path).with_suffix(".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps(
        {"rows": table.meta.to_dict(orient="records"), "info": table.info}, default=str
    )
    np.savez(path, features=table.features.astype(np.float32), meta=np.array(meta))
    return path


def load_table(path: str | Path) -> PrototypeTable:
    """Read a prototype table written by :func:`save_table`.

    Args:
        path: the ``.npz`` file.

    Returns:
        The table (its skip log empty).
    """
    with np.load(Path(path), allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        features = data["features"]
    frame = pd.DataFrame(meta["rows"], columns=list(META_COLUMNS))
    return PrototypeTable(frame, features, info=meta.get("info", {}))
