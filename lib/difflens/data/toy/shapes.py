"""The toy world's shape classes: polygon templates with named keypoints.

Each class is a template in a canonical frame: ``x`` to the right, ``y`` DOWN (image
convention), the shape inside ``[-1, 1] x [-1, 1]``. A template is a union of polygons
(curved outlines are sampled finely) and 4-6 named keypoints, each a vertex or a point on
the outline, so a keypoint names the same part on every instance. Shapes are drawn with
rotations of at most a few tens of degrees (see :class:`~difflens.data.toy.scenes.ToyConfig`),
so "left", "right", "upper" and "lower" keep their meaning on mirror-symmetric classes.

Global part ids number every (class, keypoint) over all classes in the order of
:data:`TOY_CLASSES`, from 1 (0 is the background), as the dense part maps use them
(:func:`difflens.data.toy.render.dense_targets`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from difflens.data.toy.raster import polygons_mask


@dataclass(frozen=True)
class ShapeTemplate:
    """One shape class in its canonical frame.

    Attributes:
        name: the class name (e.g. ``"arrow"``).
        polygons: ``(N_i, 2)`` float64 vertex arrays (x right, y down) whose union is the shape.
        keypoint_names: the part names, e.g. ``("tip", "upper barb", ...)`` (``K`` names).
        keypoints: ``(K, 2)`` float64 keypoint positions in the canonical frame.
    """

    name: str
    polygons: tuple[np.ndarray, ...]
    keypoint_names: tuple[str, ...]
    keypoints: np.ndarray

    @cached_property
    def area(self) -> float:
        """Area of the shape in canonical units (rasterised on a 1024 x 1024 grid)."""
        n, lo, hi = 1024, -1.05, 1.05
        step = (hi - lo) / n
        pixels = [(xy - lo) / step - 0.5 for xy in self.polygons]
        return float(polygons_mask(pixels, n, n).sum() * step * step)


def _arc(cx: float, cy: float, r: float, start: float, stop: float, n: int) -> np.ndarray:
    """``n`` points of a circle arc from angle ``start`` to ``stop`` (radians, both included)."""
    t = np.linspace(start, stop, n)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _template(name: str, polygons: list, keypoints: dict[str, tuple[float, float]]):
    return ShapeTemplate(
        name=name,
        polygons=tuple(np.asarray(p, dtype=np.float64) for p in polygons),
        keypoint_names=tuple(keypoints),
        keypoints=np.asarray(list(keypoints.values()), dtype=np.float64),
    )


def _arrow() -> ShapeTemplate:
    outline = [(-1, -0.3), (0, -0.3), (0, -0.8), (1, 0), (0, 0.8), (0, 0.3), (-1, 0.3)]
    points = {
        "tip": (1, 0),
        "upper barb": (0, -0.8),
        "lower barb": (0, 0.8),
        "upper tail": (-1, -0.3),
        "lower tail": (-1, 0.3),
    }
    return _template("arrow", [outline], points)


def _house() -> ShapeTemplate:
    body = [(-0.8, 1), (0.8, 1), (0.8, 0.05), (0, -0.8), (-0.8, 0.05)]
    chimney = [(0.3, -0.8), (0.55, -0.8), (0.55, -0.1), (0.3, -0.1)]
    points = {
        "apex": (0, -0.8),
        "left eave": (-0.8, 0.05),
        "right eave": (0.8, 0.05),
        "left base": (-0.8, 1),
        "right base": (0.8, 1),
        "chimney top": (0.425, -0.8),
    }
    return _template("house", [body, chimney], points)


def _ell() -> ShapeTemplate:
    outline = [(-0.75, -1), (-0.15, -1), (-0.15, 0.4), (0.85, 0.4), (0.85, 1), (-0.75, 1)]
    points = {
        "top left": (-0.75, -1),
        "top right": (-0.15, -1),
        "inner corner": (-0.15, 0.4),
        "toe top": (0.85, 0.4),
        "toe bottom": (0.85, 1),
        "heel": (-0.75, 1),
    }
    return _template("ell", [outline], points)


def _tee() -> ShapeTemplate:
    outline = [
        (-1, -0.9),
        (1, -0.9),
        (1, -0.35),
        (0.27, -0.35),
        (0.27, 1),
        (-0.27, 1),
        (-0.27, -0.35),
        (-1, -0.35),
    ]
    points = {
        "left arm top": (-1, -0.9),
        "right arm top": (1, -0.9),
        "left arm bottom": (-1, -0.35),
        "right arm bottom": (1, -0.35),
        "foot left": (-0.27, 1),
        "foot right": (0.27, 1),
    }
    return _template("tee", [outline], points)


def _flag() -> ShapeTemplate:
    outline = [(-0.8, -1), (0.9, -1), (0.4, -0.5), (0.9, 0), (-0.45, 0), (-0.45, 1), (-0.8, 1)]
    points = {
        "pole top": (-0.8, -1),
        "pole foot": (-0.625, 1),
        "upper fly": (0.9, -1),
        "notch": (0.4, -0.5),
        "lower fly": (0.9, 0),
    }
    return _template("flag", [outline], points)


def _key() -> ShapeTemplate:
    bow = _arc(-0.45, 0, 0.55, 0, 2 * np.pi, 9)[:-1]  # octagon, a vertex at each compass point
    shaft = [(-0.1, -0.22), (1, -0.22), (1, 0.22), (-0.1, 0.22)]
    bit = [(0.4, 0.1), (1, 0.1), (1, 0.65), (0.72, 0.65), (0.72, 0.45), (0.4, 0.45)]
    points = {
        "bow end": (-1, 0),
        "bow top": (-0.45, -0.55),
        "bow bottom": (-0.45, 0.55),
        "shaft tip": (1, -0.22),
        "bit corner": (1, 0.65),
        "bit heel": (0.4, 0.45),
    }
    return _template("key", [bow, shaft, bit], points)


def _crescent() -> ShapeTemplate:
    # outer circle r=1 at the origin minus a circle r=0.85 at (0.5, 0): opens to the right
    hx = (1.0 - 0.85**2 + 0.5**2) / (2 * 0.5)
    hy = float(np.sqrt(1.0 - hx * hx))
    outer_a = np.arctan2(hy, hx)
    inner_a = np.arctan2(hy, hx - 0.5)
    outer = _arc(0, 0, 1.0, -outer_a, -2 * np.pi + outer_a, 33)  # upper horn, back, lower horn
    inner = _arc(0.5, 0, 0.85, -2 * np.pi + inner_a, -inner_a, 33)[1:-1]  # lower to upper
    points = {
        "upper horn": (hx, -hy),
        "back": (-1, 0),
        "lower horn": (hx, hy),
        "inner curve": (0.5 - 0.85, 0),
    }
    return _template("crescent", [np.concatenate([outer, inner])], points)


def _heart_point(t: np.ndarray) -> np.ndarray:
    """The classic heart curve, tip down (y down), scaled into ``[-1, 1]``."""
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y - 2.5383], axis=-1) / 16.0


def _heart() -> ShapeTemplate:
    lobe = 0.908046  # parameter of the lobes' top points (the curve's highest points)
    special = np.array([-np.pi, -np.pi / 2, -lobe, 0.0, lobe, np.pi / 2])
    t = np.unique(np.concatenate([np.linspace(-np.pi, np.pi, 49)[:-1], special]))
    names = ("bottom tip", "left side", "left lobe top", "cleft", "right lobe top", "right side")
    # x = 16 sin^3 t: negative t is the left half
    points = {name: tuple(_heart_point(np.array(s))) for name, s in zip(names, special)}
    return _template("heart", [_heart_point(t)], points)


TEMPLATES: dict[str, ShapeTemplate] = {
    t.name: t
    for t in (
        _arrow(),
        _house(),
        _ell(),
        _tee(),
        _flag(),
        _key(),
        _crescent(),
        _heart(),
    )
}
"""Every shape class's template, by name."""

TOY_CLASSES: tuple[str, ...] = tuple(TEMPLATES)
"""The toy classes, in the order that class ids (``k + 1`` in class maps) follow."""

_OFFSETS = np.cumsum([0] + [len(TEMPLATES[c].keypoint_names) for c in TOY_CLASSES])

PART_NAMES: tuple[str, ...] = tuple(
    f"{c}/{name}" for c in TOY_CLASSES for name in TEMPLATES[c].keypoint_names
)
"""Global part names ``"class/keypoint"``; part id ``i + 1`` is ``PART_NAMES[i]``."""

KEYPOINT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
)
"""RGB colour of a class's ``k``-th keypoint (the same for every class), for drawing."""


def template(class_name: str) -> ShapeTemplate:
    """The template of a class.

    Args:
        class_name: one of :data:`TOY_CLASSES`.

    Returns:
        Its :class:`ShapeTemplate`.

    Raises:
        ValueError: unknown class name.
    """
    if class_name not in TEMPLATES:
        raise ValueError(f"unknown toy class {class_name!r}; known: {', '.join(TOY_CLASSES)}")
    return TEMPLATES[class_name]


def class_id(class_name: str) -> int:
    """The class id of the class maps: ``k + 1`` for ``TOY_CLASSES[k]`` (0 is background).

    Args:
        class_name: one of :data:`TOY_CLASSES`.

    Returns:
        The id, 1 .. ``len(TOY_CLASSES)``.
    """
    return TOY_CLASSES.index(template(class_name).name) + 1


def part_ids(class_name: str) -> np.ndarray:
    """The global part ids of a class's keypoints, in the template's order.

    Args:
        class_name: one of :data:`TOY_CLASSES`.

    Returns:
        ``(K,)`` int64, consecutive ids from ``1 + (parts of the classes before it)``.
    """
    k = class_id(class_name) - 1
    return np.arange(_OFFSETS[k], _OFFSETS[k + 1], dtype=np.int64) + 1


def part_palette() -> np.ndarray:
    """Colours to draw a part map: row ``i`` is the colour of part id ``i``.

    Returns:
        ``(len(PART_NAMES) + 1, 3)`` uint8; row 0 (background) is black, part ``k`` of a
        class has ``KEYPOINT_COLOURS[k]``.
    """
    rows = [(0, 0, 0)]
    for c in TOY_CLASSES:
        rows += [KEYPOINT_COLOURS[k] for k in range(len(TEMPLATES[c].keypoint_names))]
    return np.asarray(rows, dtype=np.uint8)
