"""Toy keypoint pairs, the offline stand-in for SPair-71k: semantic and geometric pairs.

- **Semantic pairs** (:func:`semantic_pair`): two different toy scenes, each holding an
  instance of the pair's category (other colour, texture, size, aspect, pose and
  surroundings; the two textures always differ). The pair holds the keypoints visible in
  both, in the template's order.
- **Geometric pairs** (:func:`geometric_pair`): one toy scene and the same scene seen
  through a known homography (rotation, scale, translation, mild perspective), painted
  exactly rather than resampled; the target points are the homography applied to the
  source points, and ``meta["homography"]`` (source pixels to target pixels) holds it.

Pair ``seed`` of a split has the category ``classes[seed % len(classes)]``, so every
category gets the same number of pairs. A draw whose object is hidden (dropped as mostly
occluded, or an empty mask) or that leaves fewer than ``min_keypoints`` common visible
keypoints is redrawn from the next random stream, and the reason is kept in
``meta["redraws"]`` (and counted in ``ToyPairs.skipped``). After ``max_attempts`` failed
draws a last, always valid draw puts one object of the category, small and centred, alone
in the picture (``meta["fallback"]``); nothing is raised.

SPair-like flags (``KeypointPair.flags``):

- ``viewpoint_variation``: from the rotation difference ``d`` between the two instances
  (the transform's rotation for geometric pairs): 0 if ``d < 15`` degrees, 1 if
  ``d < 40``, else 2;
- ``scale_variation``: from the linear size ratio ``r >= 1`` (square root of the amodal
  area ratio; the transform's scale for geometric pairs): 0 if ``r < 1.25``, 1 if
  ``r < 1.6``, else 2;
- ``truncation``: 0 none, 1 source, 2 target, 3 both; an instance is truncated when part
  of its outline leaves the image;
- ``occlusion``: the same code; an instance is occluded when another object covers any
  of its pixels inside the image;
- ``mirror``: always 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from difflens.core.skips import SkipLog
from difflens.data.keypoints import KeypointPair
from difflens.data.scene import Scene
from difflens.data.toy.render import (
    ToyLayout,
    apply_homography,
    paint,
    scene_from_painting,
)
from difflens.data.toy.scenes import ToyConfig, draw_layout, drop_hidden, scene_name
from difflens.data.toy.seeds import PAIR_STREAM, absolute_seed
from difflens.data.toy.shapes import TOY_CLASSES, template

PAIR_KINDS: tuple[str, ...] = ("semantic", "geometric")
"""The kinds of toy pairs."""
VIEWPOINT_THRESHOLDS = (15.0, 40.0)
"""Rotation differences (degrees) at which ``viewpoint_variation`` becomes 1 and 2."""
SCALE_THRESHOLDS = (1.25, 1.6)
"""Linear size ratios at which ``scale_variation`` becomes 1 and 2."""
FALLBACK_CONFIG = ToyConfig(n_objects=(1, 1), area=(0.05, 0.08), centre=(0.5, 0.5))
"""The last, always valid draw: one small centred object, so every keypoint is visible."""


@dataclass(frozen=True)
class GeometricTransform:
    """A homography built from interpretable parts, about the image centre.

    In coordinates ``q = (p - c) / size`` centred on ``c = ((size - 1) / 2, (size - 1) / 2)``
    the map is ``q' = T(tx, ty) R(angle) S(scale) P(px, py) q``, with
    ``P = [[1, 0, 0], [0, 1, 0], [px, py, 1]]`` (perspective) and ``R`` turning clockwise on
    screen for a positive angle (as object rotations).

    Attributes:
        angle: rotation in degrees.
        scale: isotropic scale.
        tx: translation in x, fraction of the image side.
        ty: translation in y, fraction of the image side.
        px: perspective coefficient along x (in centred, size-normalised coordinates).
        py: perspective coefficient along y.
    """

    angle: float = 0.0
    scale: float = 1.0
    tx: float = 0.0
    ty: float = 0.0
    px: float = 0.0
    py: float = 0.0

    def homography(self, size: int) -> np.ndarray:
        """The transform in pixels of a ``size`` image.

        Args:
            size: image side in pixels.

        Returns:
            ``(3, 3)`` float64, source pixels to target pixels.
        """
        c = (size - 1) / 2.0
        normalise = np.array([[1 / size, 0, -c / size], [0, 1 / size, -c / size], [0, 0, 1]])
        a = np.deg2rad(self.angle)
        rotate = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        scale = np.diag([self.scale, self.scale, 1.0])
        shift = np.array([[1, 0, self.tx], [0, 1, self.ty], [0, 0, 1.0]])
        perspective = np.array([[1, 0, 0], [0, 1, 0], [self.px, self.py, 1.0]])
        g = shift @ rotate @ scale @ perspective
        return np.linalg.inv(normalise) @ g @ normalise


def draw_transform(
    rng: np.random.Generator,
    max_angle: float = 30.0,
    max_scale: float = 1.25,
    max_shift: float = 0.1,
    max_perspective: float = 0.15,
) -> GeometricTransform:
    """A random geometric transform.

    Args:
        rng: the random stream.
        max_angle: rotation uniform in ``[-max_angle, max_angle]`` degrees.
        max_scale: scale log-uniform in ``[1 / max_scale, max_scale]``.
        max_shift: translation uniform in ``[-max_shift, max_shift]`` of the side, per axis.
        max_perspective: perspective coefficients uniform in ``[-p, p]`` (with centred
            coordinates within +-0.5 the homogeneous scale stays within ``1 +- p``).

    Returns:
        The :class:`GeometricTransform`.
    """
    return GeometricTransform(
        angle=float(rng.uniform(-max_angle, max_angle)),
        scale=float(np.exp(rng.uniform(-np.log(max_scale), np.log(max_scale)))),
        tx=float(rng.uniform(-max_shift, max_shift)),
        ty=float(rng.uniform(-max_shift, max_shift)),
        px=float(rng.uniform(-max_perspective, max_perspective)),
        py=float(rng.uniform(-max_perspective, max_perspective)),
    )


def _level(value: float, thresholds: tuple[float, float]) -> int:
    return int(value >= thresholds[0]) + int(value >= thresholds[1])


def _sides(source: bool, target: bool) -> int:
    return int(source) + 2 * int(target)


@dataclass
class _Side:
    """One side of a pair: its scene and the designated instance in it."""

    scene: Scene
    position: int  # index of the designated instance in the scene's lists
    angle: float
    area: float

    @property
    def instance_id(self) -> int:
        return self.scene.instance_ids[self.position]


def _designated_layout(
    rng: np.random.Generator, config: ToyConfig, category: str, avoid_texture: str | None
) -> tuple[ToyLayout, int]:
    """A layout with one object of ``category`` at a random depth; its index."""
    n = int(rng.integers(max(1, config.n_objects[0]), max(1, config.n_objects[1]) + 1))
    slot = int(rng.integers(n))
    classes = [str(config.classes[int(i)]) for i in rng.integers(len(config.classes), size=n)]
    classes[slot] = category
    layout = draw_layout(rng, config, classes)
    obj = layout.objects[slot]
    if obj.texture == avoid_texture:
        others = [t for t in config.textures if t != avoid_texture] or [obj.texture]
        obj = replace(obj, texture=others[int(rng.integers(len(others)))])
        objects = layout.objects[:slot] + (obj,) + layout.objects[slot + 1 :]
        layout = ToyLayout(objects, layout.background)
    return layout, slot


def _paint_side(
    layout: ToyLayout,
    slot: int,
    config: ToyConfig,
    size: int,
    name: str,
    warp: np.ndarray | None = None,
):
    """The scene of a layout and its designated object, or the reason it cannot be used."""
    layout, kept, _ = drop_hidden(layout, config.min_visible)
    if slot not in kept:
        return None, "hidden object: the pair's object would be mostly occluded"
    obj = layout.objects[kept.index(slot)]
    scene = scene_from_painting(layout, paint(layout, size, warp), name, warp=warp)
    if obj.instance_id not in scene.instance_ids:
        return None, "empty mask: the pair's object has no visible pixel"
    side = _Side(scene, scene.instance_ids.index(obj.instance_id), obj.angle, obj.area)
    return side, ""


def _assemble(pair_id: str, category: str, source: _Side, target: _Side, min_keypoints: int):
    """The pair of two sides, or the reason it has too few common keypoints."""
    src_kp = source.scene.keypoints[source.position]
    trg_kp = target.scene.keypoints[target.position]
    common = np.flatnonzero(src_kp.visible & trg_kp.visible)
    if len(common) < min_keypoints:
        return None, f"too few keypoints: {len(common)} visible in both (< {min_keypoints})"
    flags = {
        "truncation": _sides(*(s.scene.meta["truncated"][s.instance_id] for s in (source, target))),
        "occlusion": _sides(
            *(s.scene.meta["visible_fraction"][s.instance_id] < 1.0 for s in (source, target))
        ),
        "mirror": 0,
    }
    pair = KeypointPair(
        pair_id=pair_id,
        category=category,
        source_image=source.scene.image,
        target_image=target.scene.image,
        source_points=src_kp.xy[common],
        target_points=trg_kp.xy[common],
        keypoint_ids=[src_kp.names[i] for i in common],
        source_box=source.scene.boxes[source.position],
        target_box=target.scene.boxes[target.position],
        source_name=source.scene.image_id,
        target_name=target.scene.image_id,
        flags=flags,
        meta={
            "source_scene": source.scene,
            "target_scene": target.scene,
            "source_instance": source.instance_id,
            "target_instance": target.instance_id,
        },
    )
    return pair, ""


def _semantic_attempt(rng, config: ToyConfig, category: str, size: int, pair_id: str, k: int):
    """One draw of a semantic pair: ``(pair, "")`` or ``(None, reason)``."""
    src_layout, src_slot = _designated_layout(rng, config, category, None)
    texture = src_layout.objects[src_slot].texture
    trg_layout, trg_slot = _designated_layout(rng, config, category, texture)
    source, reason = _paint_side(src_layout, src_slot, config, size, f"{pair_id}/source")
    if source is None:
        return None, reason
    target, reason = _paint_side(trg_layout, trg_slot, config, size, f"{pair_id}/target")
    if target is None:
        return None, reason
    pair, reason = _assemble(pair_id, category, source, target, k)
    if pair is not None:
        pair.flags["viewpoint_variation"] = _level(
            abs(source.angle - target.angle), VIEWPOINT_THRESHOLDS
        )
        ratio = np.sqrt(max(source.area, target.area) / min(source.area, target.area))
        pair.flags["scale_variation"] = _level(float(ratio), SCALE_THRESHOLDS)
        pair.meta["rotation"] = (source.angle, target.angle)
        pair.meta["area"] = (source.area, target.area)
    return pair, reason


def _geometric_attempt(
    rng, config: ToyConfig, category: str, size: int, pair_id: str, k: int, transform=None
):
    """One draw of a geometric pair: ``(pair, "")`` or ``(None, reason)``."""
    layout, slot = _designated_layout(rng, config, category, None)
    transform = transform or draw_transform(rng)
    warp = transform.homography(size)
    source, reason = _paint_side(layout, slot, config, size, f"{pair_id}/source")
    if source is None:
        return None, reason
    target, reason = _paint_side(layout, slot, config, size, f"{pair_id}/target", warp)
    if target is None:
        return None, reason
    pair, reason = _assemble(pair_id, category, source, target, k)
    if pair is not None:
        pair.flags["viewpoint_variation"] = _level(abs(transform.angle), VIEWPOINT_THRESHOLDS)
        ratio = max(transform.scale, 1.0 / transform.scale)
        pair.flags["scale_variation"] = _level(ratio, SCALE_THRESHOLDS)
        pair.meta["homography"] = warp
        pair.meta["transform"] = transform
    return pair, reason


def _make_pair(kind: str, seed: int, size: int, split: str, classes, config, k, attempts):
    """Draw until a pair is valid (see the module docstring); never raises on bad draws."""
    if kind not in PAIR_KINDS:
        raise ValueError(f"unknown toy pair kind {kind!r}; known: {', '.join(PAIR_KINDS)}")
    config = config or ToyConfig()
    classes = tuple(classes or config.classes)
    category = classes[int(seed) % len(classes)]
    template(category)
    absolute = absolute_seed(split, seed)
    pair_id = scene_name(split, seed, f"toypair_{kind}")
    attempt = _semantic_attempt if kind == "semantic" else _geometric_attempt
    redraws = []
    for index in range(attempts):
        rng = np.random.default_rng([absolute, PAIR_STREAM, PAIR_KINDS.index(kind), index])
        pair, reason = attempt(rng, config, category, size, pair_id, k)
        if pair is not None:
            break
        redraws.append(reason)
    else:
        rng = np.random.default_rng([absolute, PAIR_STREAM, PAIR_KINDS.index(kind), attempts])
        fallback = replace(FALLBACK_CONFIG, textures=config.textures)
        extra = {} if kind == "semantic" else {"transform": GeometricTransform(angle=15.0)}
        pair, _ = attempt(rng, fallback, category, size, pair_id, min(k, 4), **extra)
    pair.meta.update(
        dataset="toypairs",
        kind=kind,
        split=split,
        offset=int(seed),
        seed=absolute,
        redraws=redraws,
        fallback=len(redraws) == attempts,
    )
    return pair


def semantic_pair(
    seed: int,
    size: int = 128,
    split: str = "test",
    classes: tuple[str, ...] | None = None,
    config: ToyConfig | None = None,
    min_keypoints: int = 3,
    max_attempts: int = 50,
) -> KeypointPair:
    """Semantic toy pair ``seed`` of ``split``: two instances of one category.

    Args:
        seed: the seed offset within ``split``.
        size: side in pixels of both images.
        split: ``"test"`` (held out, the default), ``"validation"`` or ``"train"``.
        classes: the categories, taken in turn by seed (default: the config's classes).
        config: how scenes are drawn (default :class:`~difflens.data.toy.scenes.ToyConfig`).
        min_keypoints: least number of keypoints visible in both images.
        max_attempts: draws before the always valid fallback draw.

    Returns:
        The :class:`~difflens.data.keypoints.KeypointPair`; ``meta`` holds both scenes
        (``source_scene``, ``target_scene``), the instances' ids, rotations and areas,
        ``split``, ``offset``, the absolute ``seed``, ``redraws`` and ``fallback``.
    """
    return _make_pair("semantic", seed, size, split, classes, config, min_keypoints, max_attempts)


def geometric_pair(
    seed: int,
    size: int = 128,
    split: str = "test",
    classes: tuple[str, ...] | None = None,
    config: ToyConfig | None = None,
    min_keypoints: int = 3,
    max_attempts: int = 50,
) -> KeypointPair:
    """Geometric toy pair ``seed`` of ``split``: one scene and its homography.

    Args:
        seed: the seed offset within ``split``.
        size: side in pixels of both images.
        split: ``"test"`` (held out, the default), ``"validation"`` or ``"train"``.
        classes: the categories, taken in turn by seed (default: the config's classes).
        config: how scenes are drawn (default :class:`~difflens.data.toy.scenes.ToyConfig`).
        min_keypoints: least number of keypoints visible in both images.
        max_attempts: draws before the always valid fallback draw.

    Returns:
        The :class:`~difflens.data.keypoints.KeypointPair`; ``meta["homography"]`` is the
        ``(3, 3)`` map from source to target pixels, ``meta["transform"]`` its
        :class:`GeometricTransform`, and ``meta`` holds both scenes as for
        :func:`semantic_pair`.
    """
    return _make_pair("geometric", seed, size, split, classes, config, min_keypoints, max_attempts)


@dataclass(frozen=True)
class ToyPairs:
    """``n_pairs`` toy keypoint pairs from seed offsets ``seed, seed + 1, ...`` of ``split``.

    Attributes:
        n_pairs: number of pairs.
        kind: ``"semantic"`` or ``"geometric"``.
        size: side in pixels of the images.
        seed: the first seed offset within ``split``.
        split: ``"test"`` (held out, the default), ``"validation"`` or ``"train"``.
        classes: the categories, taken in turn by seed.
        config: how scenes are drawn (default :class:`~difflens.data.toy.scenes.ToyConfig`).
        min_keypoints: least number of keypoints visible in both images.
        max_attempts: draws before the always valid fallback draw.
        skipped: one record per redrawn draw, as pairs are made.

    Raises:
        ValueError: an unknown kind, or seeds that leave the split.
    """

    n_pairs: int = 80
    kind: str = "semantic"
    size: int = 128
    seed: int = 0
    split: str = "test"
    classes: tuple[str, ...] = TOY_CLASSES
    config: ToyConfig | None = None
    min_keypoints: int = 3
    max_attempts: int = 50
    skipped: SkipLog = field(
        default_factory=lambda: SkipLog(verbose=False), init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.kind not in PAIR_KINDS:
            raise ValueError(f"unknown toy pair kind {self.kind!r}; known: {PAIR_KINDS}")
        absolute_seed(self.split, self.seed, self.n_pairs)

    def __len__(self) -> int:
        return self.n_pairs

    def __iter__(self) -> Iterator[KeypointPair]:
        for i in range(self.n_pairs):
            yield self[i]

    def __getitem__(self, index: int) -> KeypointPair:
        if not 0 <= index < self.n_pairs:
            raise IndexError(f"ToyPairs has {self.n_pairs} pairs; index {index} is out of range")
        pair = _make_pair(
            self.kind,
            self.seed + index,
            self.size,
            self.split,
            self.classes,
            self.config,
            self.min_keypoints,
            self.max_attempts,
        )
        for reason in pair.meta["redraws"]:
            self.skipped.skip(pair.pair_id, reason)
        return pair

    def with_(self, **changes: object) -> ToyPairs:
        """A copy with some fields changed.

        Args:
            **changes: new field values.

        Returns:
            The new dataset.
        """
        return replace(self, **changes)


def warp_points(pair: KeypointPair, xy: np.ndarray) -> np.ndarray:
    """Source pixels mapped to target pixels by a geometric pair's homography.

    Args:
        pair: a geometric pair.
        xy: ``(N, 2)`` source x/y.

    Returns:
        ``(N, 2)`` float64 target x/y.

    Raises:
        ValueError: the pair is not a geometric pair.
    """
    if "homography" not in pair.meta:
        raise ValueError(f"pair {pair.pair_id} has no homography (not a geometric pair)")
    return apply_homography(pair.meta["homography"], xy)
