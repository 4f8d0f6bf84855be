"""Joint image, mask, keypoint and box transforms that keep instance identity (Fig. 8).

Each transform maps a :class:`Scene` to a new scene whose ``image_id`` is
``"<image_id>@<name>"``, whose ``source_image`` is the original's (so the same physical
object keeps its ``instance_key``) and whose ``source`` is the transform's name. Objects that
leave the picture (empty mask) are dropped with their keypoints and box; the others keep
their instance ids.

The object-centred transforms work around one *target* object per image: the largest
(default) or a seeded random one. Readings of the paper's one-line descriptions:

- ``crop_pad``: crop the target's bounding box and pad back to the original size. Placement
  ``"in_place"`` (default) keeps the crop where it was and blanks the rest, so only the
  context changes; ``"centre"`` centres the crop on the blank canvas.
- ``crop_resize``: crop the target's bounding box and resize it bilinearly to the original
  size (aspect ratio not kept); masks follow with nearest-neighbour resizing.
- ``crop_shift``: shift the target's bounding box by a fraction of its size in a seeded
  random direction, crop that box (clipped to the image) and pad back to the original size
  with the crop placed where the shifted box was. ``axes="one"`` (default) shifts along
  one axis, so a box-filling object keeps ``1 - fraction`` of its area; ``axes="both"``
  shifts along both, keeping ``(1 - fraction)^2``.
- ``hflip``, ``vflip``, ``rot90``, ``rot180``, ``rot270``: as named (counter-clockwise
  rotations, as ``np.rot90``).

Keypoints and boxes (:attr:`Scene.keypoints`, :attr:`Scene.boxes`) use x/y pixel
coordinates with pixel centres at integers (:mod:`difflens.data.keypoints`). Both move with
the pixels under them: a flip maps ``x`` to ``W - 1 - x``; ``rot90`` maps ``(x, y)`` to
``(y, W - 1 - x)``; a crop-pad shifts them with the copied window; a crop-resize maps
``x`` to ``(x - left + 0.5) * W / box_width - 0.5`` (PIL's pixel-centre convention). A
keypoint whose pixel (``floor(x + 0.5)``) falls outside the output image or on padding
becomes invisible (its moved position is kept). Boxes are transformed by their corners,
not recomputed from the masks, so a box keeps what its dataset meant (e.g. SPair's box of
the whole object, occluded parts included); the moved box is the min/max of the four
moved corners, clipped to the part of the output that shows picture content.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from difflens.data.keypoints import InstanceKeypoints
from difflens.data.scene import PIXEL_META_KEYS, Scene

FILL = 0
"""Value of padded pixels."""


@dataclass(frozen=True)
class Geometry:
    """Where a transform moves coordinates, and where the output shows picture content.

    Attributes:
        move: maps ``(N, 2)`` x/y of the input to ``(N, 2)`` x/y of the output (float64).
        window: ``(x0, y0, x1, y1)``, the first and last output pixel columns and rows that
            hold input pixels (inclusive); outside it is padding or off the image.
    """

    move: Callable[[np.ndarray], np.ndarray]
    window: tuple[int, int, int, int]

    def shows(self, xy: np.ndarray) -> np.ndarray:
        """Which output points lie on picture content.

        Args:
            xy: ``(N, 2)`` output x/y.

        Returns:
            ``(N,)`` bool, True where the point's pixel lies inside :attr:`window`
            (False for NaN).
        """
        pixel = np.floor(np.asarray(xy, dtype=np.float64) + 0.5)
        x0, y0, x1, y1 = self.window
        with np.errstate(invalid="ignore"):
            return (
                (pixel[:, 0] >= x0)
                & (pixel[:, 0] <= x1)
                & (pixel[:, 1] >= y0)
                & (pixel[:, 1] <= y1)
            )

    def keypoints(self, points: InstanceKeypoints | None) -> InstanceKeypoints | None:
        """One instance's keypoints after the transform.

        Args:
            points: the input keypoints, or ``None``.

        Returns:
            Moved keypoints, invisible where they no longer show; ``None`` for ``None``.
        """
        if points is None:
            return None
        xy = self.move(points.xy.astype(np.float64))
        return InstanceKeypoints(points.names, xy, points.visible & self.shows(xy))

    def boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes after the transform, from their moved corners.

        Args:
            boxes: ``(K, 4)`` ``x1, y1, x2, y2``.

        Returns:
            ``(K, 4)`` float32 ``x1, y1, x2, y2``: min/max of the four moved corners,
            clipped to :attr:`window`.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        x1, y1, x2, y2 = boxes.T
        corners = np.stack([[x1, y1], [x2, y1], [x1, y2], [x2, y2]])  # (4, 2, K)
        moved = self.move(corners.transpose(0, 2, 1).reshape(-1, 2)).reshape(4, -1, 2)
        low, high = moved.min(0), moved.max(0)
        x0, y0, xe, ye = self.window
        out = np.stack([low[:, 0], low[:, 1], high[:, 0], high[:, 1]], axis=1)
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], x0, xe)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], y0, ye)
        return out.astype(np.float32)


def _whole(height: int, width: int) -> tuple[int, int, int, int]:
    return (0, 0, width - 1, height - 1)


def _derived(
    scene: Scene,
    name: str,
    image: np.ndarray,
    masks: np.ndarray,
    geometry: Geometry,
    extra: dict | None = None,
) -> Scene:
    """The transformed scene: objects with an empty mask are dropped with their points.

    ``meta`` is the parent's without :data:`~difflens.data.scene.PIXEL_META_KEYS` (they
    describe the parent's pixels), plus ``transform`` and ``parent``.
    """
    keep = [k for k in range(len(masks)) if masks[k].any()]
    keypoints = (
        None if scene.keypoints is None else [geometry.keypoints(scene.keypoints[k]) for k in keep]
    )
    boxes = None if scene.boxes is None else geometry.boxes(scene.boxes[keep])
    return Scene(
        image=np.ascontiguousarray(image),
        masks=np.ascontiguousarray(masks[keep]) if keep else np.zeros((0, *image.shape[:2]), bool),
        class_names=[scene.class_names[k] for k in keep],
        instance_ids=[scene.instance_ids[k] for k in keep],
        image_id=f"{scene.image_id}@{name}",
        source_image=scene.source_image,
        source=name,
        meta={
            **{k: v for k, v in scene.meta.items() if k not in PIXEL_META_KEYS},
            "transform": name,
            "parent": scene.image_id,
            **(extra or {}),
        },
        keypoints=keypoints,
        boxes=boxes,
    )


def hflip(scene: Scene) -> Scene:
    """Mirror left to right.

    Args:
        scene: the input scene.

    Returns:
        The flipped scene (``source`` ``"hflip"``); keypoints and boxes map ``x`` to
        ``W - 1 - x``.
    """
    h, w = scene.size
    geometry = Geometry(lambda xy: np.stack([w - 1 - xy[:, 0], xy[:, 1]], 1), _whole(h, w))
    return _derived(scene, "hflip", scene.image[:, ::-1], scene.masks[:, :, ::-1], geometry)


def vflip(scene: Scene) -> Scene:
    """Mirror top to bottom.

    Args:
        scene: the input scene.

    Returns:
        The flipped scene (``source`` ``"vflip"``); keypoints and boxes map ``y`` to
        ``H - 1 - y``.
    """
    h, w = scene.size
    geometry = Geometry(lambda xy: np.stack([xy[:, 0], h - 1 - xy[:, 1]], 1), _whole(h, w))
    return _derived(scene, "vflip", scene.image[::-1], scene.masks[:, ::-1], geometry)


def _rotation(k: int, h: int, w: int) -> Geometry:
    """Coordinates under ``np.rot90(image, k)`` of an ``h x w`` image."""
    moves = {
        1: lambda xy: np.stack([xy[:, 1], w - 1 - xy[:, 0]], 1),
        2: lambda xy: np.stack([w - 1 - xy[:, 0], h - 1 - xy[:, 1]], 1),
        3: lambda xy: np.stack([h - 1 - xy[:, 1], xy[:, 0]], 1),
    }
    out_h, out_w = (w, h) if k % 2 else (h, w)
    return Geometry(moves[k], _whole(out_h, out_w))


def rotate(scene: Scene, degrees: int) -> Scene:
    """Rotate counter-clockwise by a multiple of 90 degrees, as ``np.rot90``.

    Args:
        scene: the input scene.
        degrees: 90, 180 or 270.

    Returns:
        The rotated scene (``source`` ``"rot<degrees>"``; 90 and 270 swap height and
        width). ``rot90`` maps ``(x, y)`` to ``(y, W - 1 - x)``, ``rot180`` to
        ``(W - 1 - x, H - 1 - y)``, ``rot270`` to ``(H - 1 - y, x)``.

    Raises:
        ValueError: another angle.
    """
    if degrees not in (90, 180, 270):
        raise ValueError(f"rotation must be 90, 180 or 270 degrees, got {degrees}")
    k = degrees // 90
    return _derived(
        scene,
        f"rot{degrees}",
        np.rot90(scene.image, k, axes=(0, 1)),
        np.rot90(scene.masks, k, axes=(1, 2)),
        _rotation(k, *scene.size),
    )


def target_object(scene: Scene, target: str | int = "largest", seed: int = 0) -> int:
    """The object the object-centred transforms work around.

    Args:
        scene: the input scene.
        target: ``"largest"`` (most mask pixels), ``"random"`` (seeded by ``seed`` and the
            image id) or an object index.
        seed: the seed for ``"random"``.

    Returns:
        The object's index in the scene.

    Raises:
        ValueError: the scene has no objects, the index is out of range or ``target`` is
            not a known choice.
    """
    if scene.n_objects == 0:
        raise ValueError(f"scene {scene.image_id!r} has no objects to crop around")
    if isinstance(target, int):
        if not 0 <= target < scene.n_objects:
            raise ValueError(
                f"scene {scene.image_id!r}: target {target} out of range 0..{scene.n_objects - 1}"
            )
        return target
    if target == "largest":
        return int(np.argmax(scene.masks.reshape(scene.n_objects, -1).sum(1)))
    if target == "random":
        return int(
            np.random.default_rng([seed, _stable_hash(scene.image_id)]).integers(scene.n_objects)
        )
    raise ValueError(f"target must be 'largest', 'random' or an index, got {target!r}")


def _stable_hash(text: str) -> int:
    return int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little") ^ len(text)


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The pixel bounding box of a mask.

    Args:
        mask: ``(H, W)`` bool, with at least one True pixel.

    Returns:
        ``(top, left, bottom, right)`` in pixels, bottom and right exclusive (array slices).
    """
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _paste(
    scene: Scene, box: tuple[int, int, int, int], at: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """Copy the part of ``box`` inside the image onto a blank canvas at offset ``at``."""
    h, w = scene.size
    top, left, bottom, right = box
    t, lft, b, r = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
    image = np.full_like(scene.image, FILL)
    masks = np.zeros_like(scene.masks)
    dy, dx = at[0] - top, at[1] - left

    def move(xy: np.ndarray) -> np.ndarray:
        return xy + np.array([dx, dy], dtype=np.float64)

    if b <= t or r <= lft:
        return image, masks, Geometry(move, (0, 0, -1, -1))
    y0, x0 = t + dy, lft + dx
    image[y0 : y0 + b - t, x0 : x0 + r - lft] = scene.image[t:b, lft:r]
    masks[:, y0 : y0 + b - t, x0 : x0 + r - lft] = scene.masks[:, t:b, lft:r]
    return image, masks, Geometry(move, (x0, y0, x0 + r - lft - 1, y0 + b - t - 1))


def crop_pad(
    scene: Scene, target: str | int = "largest", placement: str = "in_place", seed: int = 0
) -> Scene:
    """Keep only the target's bounding box, padded back to the original size.

    Args:
        scene: the input scene.
        target: see :func:`target_object`.
        placement: ``"in_place"`` (the crop stays where it was) or ``"centre"``.
        seed: the seed for ``target="random"``.

    Returns:
        The scene (``source`` ``"crop_pad"``, ``meta["target_instance"]``); keypoints and
        boxes move with the crop, keypoints on the padding become invisible.

    Raises:
        ValueError: ``placement`` is not a known choice, or as :func:`target_object`.
    """
    k = target_object(scene, target, seed)
    box = bounding_box(scene.masks[k])
    if placement == "in_place":
        at = box[:2]
    elif placement == "centre":
        h, w = scene.size
        at = ((h - (box[2] - box[0])) // 2, (w - (box[3] - box[1])) // 2)
    else:
        raise ValueError(f"placement must be 'in_place' or 'centre', got {placement!r}")
    image, masks, geometry = _paste(scene, box, at)
    extra = {"target_instance": scene.instance_ids[k]}
    return _derived(scene, "crop_pad", image, masks, geometry, extra)


def crop_resize(scene: Scene, target: str | int = "largest", seed: int = 0) -> Scene:
    """Crop the target's bounding box and resize it to the original size.

    Args:
        scene: the input scene.
        target: see :func:`target_object`.
        seed: the seed for ``target="random"``.

    Returns:
        The scene (``source`` ``"crop_resize"``, ``meta["target_instance"]``): the image
        resized bilinearly, masks by nearest neighbour; keypoints and boxes scaled with
        PIL's pixel-centre convention, keypoints outside the crop invisible. A scene
        without objects or a bad ``target`` raises ``ValueError`` (see
        :func:`target_object`).
    """
    k = target_object(scene, target, seed)
    top, left, bottom, right = bounding_box(scene.masks[k])
    h, w = scene.size
    crop = Image.fromarray(scene.image[top:bottom, left:right]).resize((w, h), Image.BILINEAR)
    masks = np.stack(
        [
            np.asarray(
                Image.fromarray(m[top:bottom, left:right].astype(np.uint8)).resize(
                    (w, h), Image.NEAREST
                ),
                bool,
            )
            for m in scene.masks
        ]
    )
    scale = np.array([w / (right - left), h / (bottom - top)])
    origin = np.array([left, top], dtype=np.float64)
    geometry = Geometry(lambda xy: (xy - origin + 0.5) * scale - 0.5, _whole(h, w))
    extra = {"target_instance": scene.instance_ids[k]}
    return _derived(scene, "crop_resize", np.asarray(crop), masks, geometry, extra)


def crop_shift(
    scene: Scene, fraction: float, target: str | int = "largest", axes: str = "one", seed: int = 0
) -> Scene:
    """Shift the target's box by a fraction of its size (seeded direction), crop, pad in place.

    Args:
        scene: the input scene.
        fraction: the shift as a fraction of the box's height/width, in [0, 1].
        target: see :func:`target_object`.
        axes: ``"one"`` (a seeded choice of vertical or horizontal) or ``"both"``.
        seed: seeds the direction (with the image id and the fraction) and the target.

    Returns:
        The scene (``source`` ``"crop_shift<percent>"``, ``meta["shift"]`` ``(dy, dx)``);
        keypoints and boxes keep their coordinates, keypoints outside the kept window
        become invisible.

    Raises:
        ValueError: ``fraction`` outside [0, 1], unknown ``axes``, or as
            :func:`target_object`.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"crop_shift fraction must be in [0, 1], got {fraction}")
    k = target_object(scene, target, seed)
    top, left, bottom, right = bounding_box(scene.masks[k])
    rng = np.random.default_rng([seed, _stable_hash(scene.image_id), int(round(fraction * 1000))])
    bh, bw = bottom - top, right - left
    sy, sx = rng.choice([-1, 1], size=2)
    if axes == "one":
        vertical = bool(rng.integers(2))
        dy = int(sy * round(fraction * bh)) if vertical else 0
        dx = 0 if vertical else int(sx * round(fraction * bw))
    elif axes == "both":
        dy, dx = int(sy * round(fraction * bh)), int(sx * round(fraction * bw))
    else:
        raise ValueError(f"axes must be 'one' or 'both', got {axes!r}")
    box = (top + dy, left + dx, bottom + dy, right + dx)
    image, masks, geometry = _paste(scene, box, box[:2])
    name = f"crop_shift{int(round(fraction * 100))}"
    extra = {"target_instance": scene.instance_ids[k], "shift": (dy, dx)}
    return _derived(scene, name, image, masks, geometry, extra)


TRANSFORMS: dict[str, Callable[..., Scene]] = {
    "crop_pad": crop_pad,
    "crop_resize": crop_resize,
    "crop_shift20": lambda s, seed=0: crop_shift(s, 0.2, seed=seed),
    "crop_shift40": lambda s, seed=0: crop_shift(s, 0.4, seed=seed),
    "crop_shift60": lambda s, seed=0: crop_shift(s, 0.6, seed=seed),
    "hflip": hflip,
    "vflip": vflip,
    "rot90": lambda s: rotate(s, 90),
    "rot180": lambda s: rotate(s, 180),
    "rot270": lambda s: rotate(s, 270),
}
"""The paper's Fig. 8 transforms by name, in its order."""


def apply(name: str, scene: Scene, seed: int = 0) -> Scene:
    """Apply a transform by its name.

    Args:
        name: a key of :data:`TRANSFORMS`.
        scene: the input scene.
        seed: passed to the crop transforms (target and shift direction).

    Returns:
        The transformed scene.

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; known: {', '.join(TRANSFORMS)}")
    fn = TRANSFORMS[name]
    return fn(scene, seed=seed) if name.startswith("crop") else fn(scene)
