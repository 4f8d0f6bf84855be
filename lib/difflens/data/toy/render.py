"""Painting a toy layout at any size: image, visible masks, keypoints, boxes, dense targets.

A :class:`ToyLayout` (objects and background, all in fractions of the image) does not depend
on the size it is painted at. Positions map to pixels as ``x = u * size - 0.5`` (the image
spans ``[-0.5, size - 0.5]``, pixel centres at integers, as in
:mod:`difflens.data.keypoints`), so a layout painted at 64 and at 128 px shows the same
scene. Objects are painted back to front in layout order; a pixel belongs to the object
whose polygon covers its centre last (:mod:`difflens.data.toy.raster`), and that one owner
map gives the masks, the class map and the part map, so they agree pixel for pixel.

Textures live in the object's canonical frame (they turn, scale and move with it); the
background is a colour ramp with soft waves and pixel noise. An optional ``warp`` (a 3 x 3
homography from source pixels to target pixels at the same size) paints the scene as seen
through that transform: outlines and keypoints are mapped forward, colours are looked up
backward, so the warped picture is exact rather than resampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from difflens.data.keypoints import InstanceKeypoints
from difflens.data.scene import Scene
from difflens.data.toy.raster import fill_polygon, points_in_polygons
from difflens.data.toy.shapes import class_id, part_ids, template

TEXTURES: tuple[str, ...] = ("solid", "stripes", "checker", "dots", "noise", "gradient")
"""Object textures, drawn independently of class."""


@dataclass(frozen=True)
class ToyObject:
    """One painted object; positions and sizes in fractions of the image.

    The canonical template point ``q`` lands at ``(cx, cy) + R(angle) @ diag(sx, sy) @ q``
    with ``sx = s * sqrt(aspect)``, ``sy = s / sqrt(aspect)`` and ``s`` chosen so that the
    whole (amodal) shape covers ``area`` of the image. ``angle`` is in degrees; as ``y``
    points down, a positive angle turns the shape clockwise on screen.

    Attributes:
        class_name: one of :data:`~difflens.data.toy.shapes.TOY_CLASSES`.
        cx: centre x, fraction of the width.
        cy: centre y, fraction of the height.
        area: amodal area, fraction of the image area.
        aspect: ``sx / sy`` (mild anisotropic scale; 1 keeps the template's proportions).
        angle: rotation in degrees (clockwise on screen).
        colour: main RGB colour.
        colour2: second RGB colour of the texture.
        texture: one of :data:`TEXTURES`.
        texture_period: pattern period in canonical units.
        texture_angle: pattern direction in degrees (canonical frame).
        texture_seed: seed of the ``noise`` texture's random grid.
        instance_id: the instance id in its scene (persistent over a video's frames).
    """

    class_name: str
    cx: float
    cy: float
    area: float
    aspect: float
    angle: float
    colour: tuple[int, int, int]
    colour2: tuple[int, int, int]
    texture: str
    texture_period: float
    texture_angle: float
    texture_seed: int
    instance_id: int

    @cached_property
    def linear(self) -> np.ndarray:
        """``(2, 2)`` float64 canonical-to-image linear map (canonical units to fractions)."""
        s = float(np.sqrt(self.area / template(self.class_name).area))
        r = np.sqrt(self.aspect)
        a = np.deg2rad(self.angle)
        rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        return rotation @ np.diag([s * r, s / r])

    def to_pixels(self, q: np.ndarray, size: int, warp: np.ndarray | None = None) -> np.ndarray:
        """Canonical points in pixels of a ``size`` image (through ``warp`` if given).

        Args:
            q: ``(N, 2)`` canonical x/y.
            size: image side in pixels.
            warp: optional ``(3, 3)`` homography, source pixels to target pixels.

        Returns:
            ``(N, 2)`` float64 pixel x/y.
        """
        fractions = np.asarray(q, dtype=np.float64) @ self.linear.T + (self.cx, self.cy)
        return apply_homography(warp, fractions * size - 0.5)

    def outline(self, size: int, warp: np.ndarray | None = None) -> list[np.ndarray]:
        """The shape's polygons in pixels.

        Args:
            size: image side in pixels.
            warp: optional ``(3, 3)`` homography, source pixels to target pixels.

        Returns:
            One ``(N_i, 2)`` float64 vertex array per template polygon.
        """
        return [self.to_pixels(p, size, warp) for p in template(self.class_name).polygons]

    def keypoints(self, size: int, warp: np.ndarray | None = None) -> np.ndarray:
        """The template's keypoints in pixels.

        Args:
            size: image side in pixels.
            warp: optional ``(3, 3)`` homography, source pixels to target pixels.

        Returns:
            ``(K, 2)`` float64 pixel x/y, in the template's keypoint order.
        """
        return self.to_pixels(template(self.class_name).keypoints, size, warp)


@dataclass(frozen=True)
class ToyBackground:
    """A background: a two-colour ramp, soft waves and pixel noise (nothing class-related).

    Attributes:
        colour_a: RGB at the ramp's start.
        colour_b: RGB at the ramp's end.
        direction: ramp direction in radians.
        waves: ``(fx, fy, phase, amplitude)`` of each soft brightness wave (cycles per image,
            radians, grey levels).
        noise: standard deviation of the (grey, all channels alike) pixel noise in grey levels.
        noise_seed: seed of the pixel noise.
    """

    colour_a: tuple[int, int, int]
    colour_b: tuple[int, int, int]
    direction: float
    waves: tuple[tuple[float, float, float, float], ...]
    noise: float
    noise_seed: int


@dataclass(frozen=True)
class ToyLayout:
    """Everything that determines a toy picture, independent of the size it is painted at.

    Attributes:
        objects: the objects in paint order (back to front).
        background: the background.
    """

    objects: tuple[ToyObject, ...]
    background: ToyBackground


class DenseTargets(NamedTuple):
    """Per-pixel targets of a painted layout, aligned with its visible masks.

    Attributes:
        class_map: ``(H, W)`` uint8, 0 background, ``k + 1`` for ``TOY_CLASSES[k]``.
        part_map: ``(H, W)`` uint8, 0 background, else the global part id
            (:func:`~difflens.data.toy.shapes.part_ids`) of the object's keypoint nearest
            to the pixel centre (Euclidean, in pixels; every keypoint of the object counts,
            hidden or not).
    """

    class_map: np.ndarray
    part_map: np.ndarray


@dataclass
class Painting:
    """A layout painted at one size.

    Attributes:
        image: ``(S, S, 3)`` uint8 RGB, or ``None`` when only the geometry was wanted.
        owner: ``(S, S)`` int16, index of the object owning each pixel, -1 for background.
        full_pixels: ``(n,)`` int64, pixels of each object's whole shape inside the image.
        outlines: each object's polygons in pixels.
    """

    image: np.ndarray | None
    owner: np.ndarray
    full_pixels: np.ndarray
    outlines: list[list[np.ndarray]]


def apply_homography(warp: np.ndarray | None, xy: np.ndarray) -> np.ndarray:
    """Points mapped by a homography (unchanged when ``warp`` is ``None``).

    Args:
        warp: ``(3, 3)`` homography or ``None``.
        xy: ``(N, 2)`` x/y.

    Returns:
        ``(N, 2)`` float64 mapped x/y.
    """
    xy = np.asarray(xy, dtype=np.float64)
    if warp is None:
        return xy
    h = np.asarray(warp, dtype=np.float64)
    out = xy @ h[:2, :2].T + h[:2, 2]
    w = xy @ h[2, :2] + h[2, 2]
    return out / w[:, None]


def _source_fractions(xy: np.ndarray, size: int, warp: np.ndarray | None) -> np.ndarray:
    """Target pixel x/y back to fractions of the (unwarped) source image."""
    inverse = None if warp is None else np.linalg.inv(np.asarray(warp, dtype=np.float64))
    return (apply_homography(inverse, xy) + 0.5) / size


def _texture_weight(obj: ToyObject, q: np.ndarray) -> np.ndarray:
    """Weight of ``colour2`` (0..1) at canonical points ``q`` (``(P, 2)``)."""
    a = np.deg2rad(obj.texture_angle)
    u = (q[:, 0] * np.cos(a) + q[:, 1] * np.sin(a)) / obj.texture_period
    v = (-q[:, 0] * np.sin(a) + q[:, 1] * np.cos(a)) / obj.texture_period
    if obj.texture == "solid":
        return np.zeros(len(q))
    if obj.texture == "stripes":
        return (np.floor(u) % 2).astype(np.float64)
    if obj.texture == "checker":
        return ((np.floor(u) + np.floor(v)) % 2).astype(np.float64)
    if obj.texture == "dots":
        du, dv = u - np.round(u), v - np.round(v)
        return (du * du + dv * dv < 0.09).astype(np.float64)
    if obj.texture == "gradient":
        return np.clip(0.5 + 0.5 * q[:, 0] * np.cos(a) + 0.5 * q[:, 1] * np.sin(a), 0.0, 1.0)
    if obj.texture == "noise":
        grid = np.random.default_rng(obj.texture_seed).random((7, 7))
        gx = np.clip((q[:, 0] + 1.2) / 2.4 * 6, 0, 6 - 1e-9)
        gy = np.clip((q[:, 1] + 1.2) / 2.4 * 6, 0, 6 - 1e-9)
        ix, iy = gx.astype(int), gy.astype(int)
        fx, fy = gx - ix, gy - iy
        top = grid[iy, ix] * (1 - fx) + grid[iy, ix + 1] * fx
        bottom = grid[iy + 1, ix] * (1 - fx) + grid[iy + 1, ix + 1] * fx
        return top * (1 - fy) + bottom * fy
    raise ValueError(f"unknown texture {obj.texture!r}; known: {', '.join(TEXTURES)}")


def _object_colours(obj: ToyObject, xy: np.ndarray, size: int, warp) -> np.ndarray:
    """Colours of ``obj`` at target pixel centres ``xy`` (``(P, 2)``) as ``(P, 3)`` uint8."""
    fractions = _source_fractions(xy, size, warp) - (obj.cx, obj.cy)
    q = fractions @ np.linalg.inv(obj.linear).T
    w = _texture_weight(obj, q)[:, None]
    colour = np.asarray(obj.colour, np.float64) * (1 - w) + np.asarray(obj.colour2) * w
    return np.clip(colour + 0.5, 0, 255).astype(np.uint8)


def _background_field(background: ToyBackground, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Ramp and waves at fractions ``u``, ``v`` (broadcastable) as float32 RGB ``(..., 3)``."""
    d = background.direction
    t = np.clip(0.5 + (u - 0.5) * np.cos(d) + (v - 0.5) * np.sin(d), 0.0, 1.0)
    shade = np.zeros(np.broadcast_shapes(np.shape(u), np.shape(v)), dtype=np.float32)
    for fx, fy, phase, amplitude in background.waves:
        a, b = 2 * np.pi * fx * u + phase, 2 * np.pi * fy * v  # cos(a + b), separable
        shade += amplitude * (np.cos(a) * np.cos(b) - np.sin(a) * np.sin(b))
    a = np.asarray(background.colour_a, np.float32)
    b = np.asarray(background.colour_b, np.float32)
    return a + (b - a) * t[..., None].astype(np.float32) + shade[..., None]


def paint_background(
    background: ToyBackground, size: int, warp: np.ndarray | None = None
) -> np.ndarray:
    """The background at ``size`` px.

    Args:
        background: what to paint.
        size: image side in pixels.
        warp: optional ``(3, 3)`` homography, source pixels to target pixels.

    Returns:
        ``(size, size, 3)`` uint8 RGB.
    """
    if warp is None:
        axis = (np.arange(size, dtype=np.float32) + 0.5) / size
        field = _background_field(background, axis[None, :], axis[:, None])
    else:
        yy, xx = np.mgrid[0:size, 0:size]
        xy = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float64)
        u, v = _source_fractions(xy, size, warp).T
        field = _background_field(background, u, v).reshape(size, size, 3)
    noise = np.random.default_rng(background.noise_seed).standard_normal(
        (size, size, 1), dtype=np.float32
    )
    field += background.noise * noise
    return np.clip(field + 0.5, 0, 255).astype(np.uint8)


def object_pixels(polygons: list[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """The pixels inside the union of ``polygons``, each once.

    Args:
        polygons: ``(N_i, 2)`` float vertex arrays, x/y in pixels.
        size: image side in pixels.

    Returns:
        ``(rows, cols)``, two ``(P,)`` int64 arrays.
    """
    parts = [fill_polygon(xy, size, size) for xy in polygons]
    parts = [p for p in parts if p[2].size]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    r0 = min(p[0] for p in parts)
    c0 = min(p[1] for p in parts)
    r1 = max(p[0] + p[2].shape[0] for p in parts)
    c1 = max(p[1] + p[2].shape[1] for p in parts)
    union = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    for row, col, mask in parts:
        union[row - r0 : row - r0 + mask.shape[0], col - c0 : col - c0 + mask.shape[1]] |= mask
    rr, cc = np.nonzero(union)
    return rr + r0, cc + c0


def paint(
    layout: ToyLayout, size: int, warp: np.ndarray | None = None, draw: bool = True
) -> Painting:
    """Paint a layout back to front.

    Args:
        layout: the objects and background.
        size: image side in pixels.
        warp: optional ``(3, 3)`` homography, source pixels to target pixels.
        draw: False to compute the geometry only (no colours; ``image`` is ``None``).

    Returns:
        The :class:`Painting`.
    """
    image = paint_background(layout.background, size, warp) if draw else None
    owner = np.full((size, size), -1, dtype=np.int16)
    full, outlines = [], []
    for index, obj in enumerate(layout.objects):
        polygons = obj.outline(size, warp)
        outlines.append(polygons)
        rr, cc = object_pixels(polygons, size)
        full.append(len(rr))
        owner[rr, cc] = index
        if image is not None and len(rr):
            xy = np.stack([cc, rr], axis=1).astype(np.float64)
            image[rr, cc] = _object_colours(obj, xy, size, warp)
    return Painting(image, owner, np.asarray(full, dtype=np.int64), outlines)


def keypoint_visibility(painting: Painting, index: int, xy: np.ndarray) -> np.ndarray:
    """Which keypoints of object ``index`` are visible: in the image and under no later object.

    Args:
        painting: the painted layout.
        index: the object's index in paint order.
        xy: ``(K, 2)`` its keypoints in pixels.

    Returns:
        ``(K,)`` bool; a point is in the image when ``0 <= x, y <= size - 1`` (within the
        pixel centres, as :func:`~difflens.data.keypoints.check_pair` requires).
    """
    size = painting.owner.shape[0]
    inside = np.all((xy >= 0) & (xy <= size - 1), axis=1)
    front = [xy_ for polygons in painting.outlines[index + 1 :] for xy_ in polygons]
    return inside & ~points_in_polygons(xy, front) if front else inside


def visible_box(mask: np.ndarray) -> np.ndarray:
    """The box of a mask's pixels, inclusive as SPair stores boxes.

    Args:
        mask: ``(H, W)`` bool with at least one True pixel.

    Returns:
        ``(4,)`` float32 ``x1, y1, x2, y2`` (first and last column and row of the mask).
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float32)


def dense_targets(layout: ToyLayout, size: int, warp: np.ndarray | None = None) -> DenseTargets:
    """The class map and part map of a layout painted at ``size`` px.

    Both come from the same owner map as the masks of :func:`render_scene` at this size, so
    ``class_map > 0`` is exactly the union of the scene's masks.

    Args:
        layout: the objects and background.
        size: image side in pixels.
        warp: optional ``(3, 3)`` homography, source pixels to target pixels.

    Returns:
        :class:`DenseTargets`.
    """
    return targets_from_painting(layout, paint(layout, size, warp, draw=False), warp)


def targets_from_painting(
    layout: ToyLayout, painting: Painting, warp: np.ndarray | None = None
) -> DenseTargets:
    """The class and part maps of an existing painting (see :func:`dense_targets`).

    Args:
        layout: the layout that was painted.
        painting: its painting.
        warp: the homography it was painted with, if any.

    Returns:
        :class:`DenseTargets`.
    """
    owner = painting.owner
    size = owner.shape[0]
    n = len(layout.objects)
    class_lut = np.array([0] + [class_id(o.class_name) for o in layout.objects], np.uint8)
    class_map = class_lut[owner.astype(np.int64) + 1]
    part_map = np.zeros(owner.shape, dtype=np.uint8)
    if n == 0:
        return DenseTargets(class_map, part_map)
    points = np.full((n, 8, 2), np.inf)
    ids = np.zeros((n, 8), dtype=np.uint8)
    for index, obj in enumerate(layout.objects):
        xy = obj.keypoints(size, warp)
        points[index, : len(xy)] = xy
        ids[index, : len(xy)] = part_ids(obj.class_name)
    flat = np.flatnonzero(owner.ravel() >= 0)
    who = owner.ravel()[flat].astype(np.int64)
    pixel = np.stack([flat % size, flat // size], axis=1).astype(np.float64)
    distance = ((pixel[:, None, :] - points[who]) ** 2).sum(axis=2)
    part_map.ravel()[flat] = ids[who, np.argmin(distance, axis=1)]
    return DenseTargets(class_map, part_map)


def render_scene(
    layout: ToyLayout,
    size: int,
    image_id: str,
    source_image: str | None = None,
    meta: dict | None = None,
    warp: np.ndarray | None = None,
) -> Scene:
    """Paint a layout as a :class:`~difflens.data.scene.Scene` with keypoints and boxes.

    Every object with at least one visible pixel becomes an instance (mask = its visible
    pixels); one whose visible mask is empty at this size (hidden, or outside the image) is
    left out and named in ``meta["skipped"]``. ``Scene.keypoints`` holds every keypoint of
    an instance with its visibility (:func:`keypoint_visibility`); ``Scene.boxes`` are the
    VISIBLE masks' boxes (as SPair's), the amodal boxes (of the whole outline, unclipped)
    are in ``meta["amodal_boxes"]``. ``meta["visible_fraction"]`` maps instance id to the
    visible share of the object's pixels inside the image, ``meta["truncated"]`` to
    whether part of its outline leaves the image, ``meta["layout"]`` is the layout (for
    :func:`dense_targets` at other sizes).

    Args:
        layout: the objects and background.
        size: image side in pixels.
        image_id: the scene's name.
        source_image: the picture it derives from (default: ``image_id``).
        meta: extra entries for ``Scene.meta``.
        warp: optional ``(3, 3)`` homography, source pixels to target pixels.

    Returns:
        The scene.
    """
    painting = paint(layout, size, warp)
    return scene_from_painting(layout, painting, image_id, source_image, meta, warp)


def scene_from_painting(
    layout: ToyLayout,
    painting: Painting,
    image_id: str,
    source_image: str | None = None,
    meta: dict | None = None,
    warp: np.ndarray | None = None,
) -> Scene:
    """The :class:`Scene` of an existing painting (see :func:`render_scene`).

    Args:
        layout: the layout that was painted.
        painting: its painting (with an image).
        image_id: the scene's name.
        source_image: the picture it derives from (default: ``image_id``).
        meta: extra entries for ``Scene.meta``.
        warp: the homography it was painted with, if any.

    Returns:
        The scene.
    """
    size = painting.owner.shape[0]
    masks, names, ids, keypoints, boxes, amodal, skipped = [], [], [], [], [], [], []
    fraction, truncated = {}, {}
    for index, obj in enumerate(layout.objects):
        mask = painting.owner == index
        count = int(mask.sum())
        if count == 0:
            skipped.append(
                f"empty mask: {obj.class_name} #{obj.instance_id} has no visible pixel at {size} px"
            )
            continue
        xy = obj.keypoints(size, warp)
        visible = keypoint_visibility(painting, index, xy)
        names_k = list(template(obj.class_name).keypoint_names)
        keypoints.append(InstanceKeypoints(names_k, xy, visible))
        masks.append(mask)
        names.append(obj.class_name)
        ids.append(obj.instance_id)
        boxes.append(visible_box(mask))
        vertices = np.concatenate(painting.outlines[index])
        amodal.append([*vertices.min(axis=0), *vertices.max(axis=0)])
        fraction[obj.instance_id] = count / max(1, int(painting.full_pixels[index]))
        truncated[obj.instance_id] = bool(np.any((vertices < -0.5) | (vertices > size - 0.5)))
    info = {
        "dataset": "toyworld",
        "layout": layout,
        "visible_fraction": fraction,
        "truncated": truncated,
        "amodal_boxes": np.asarray(amodal, dtype=np.float32).reshape(-1, 4),
        "skipped": skipped,
        **(meta or {}),
    }
    return Scene(
        image=painting.image,
        masks=np.stack(masks) if masks else np.zeros((0, size, size), dtype=bool),
        class_names=names,
        instance_ids=ids,
        image_id=image_id,
        source_image=source_image,
        meta=info,
        keypoints=keypoints,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
    )
