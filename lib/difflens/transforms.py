"""Joint image + mask transforms that keep instance identity (the paper's Sec. 5.4, Fig. 8).

Each transform maps a :class:`Scene` to a new scene whose ``image_id`` is
``"<image_id>@<name>"``, whose ``source_image`` is the original's (so the same physical
object keeps its ``instance_key``) and whose ``source`` is the transform's name. Objects that
leave the picture are dropped; the others keep their instance ids.

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
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from difflens.scene import Scene

FILL = 0  # value of padded pixels


def _derived(
    scene: Scene, name: str, image: np.ndarray, masks: np.ndarray, extra: dict | None = None
) -> Scene:
    keep = [k for k in range(len(masks)) if masks[k].any()]
    return Scene(
        image=np.ascontiguousarray(image),
        masks=np.ascontiguousarray(masks[keep]) if keep else np.zeros((0, *image.shape[:2]), bool),
        class_names=[scene.class_names[k] for k in keep],
        instance_ids=[scene.instance_ids[k] for k in keep],
        image_id=f"{scene.image_id}@{name}",
        source_image=scene.source_image,
        source=name,
        meta={**scene.meta, "transform": name, "parent": scene.image_id, **(extra or {})},
    )


def hflip(scene: Scene) -> Scene:
    return _derived(scene, "hflip", scene.image[:, ::-1], scene.masks[:, :, ::-1])


def vflip(scene: Scene) -> Scene:
    return _derived(scene, "vflip", scene.image[::-1], scene.masks[:, ::-1])


def rotate(scene: Scene, degrees: int) -> Scene:
    """Rotate counter-clockwise by 90, 180 or 270 degrees (``np.rot90``)."""
    if degrees not in (90, 180, 270):
        raise ValueError(f"rotation must be 90, 180 or 270 degrees, got {degrees}")
    k = degrees // 90
    return _derived(
        scene,
        f"rot{degrees}",
        np.rot90(scene.image, k, axes=(0, 1)),
        np.rot90(scene.masks, k, axes=(1, 2)),
    )


def target_object(scene: Scene, target: str | int = "largest", seed: int = 0) -> int:
    """Index of the object the object-centred transforms work around."""
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
    """``(top, left, bottom, right)`` of a mask, bottom/right exclusive."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _paste(
    scene: Scene, box: tuple[int, int, int, int], at: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Copy the part of ``box`` inside the image onto a blank canvas at offset ``at``."""
    h, w = scene.size
    top, left, bottom, right = box
    t, lft, b, r = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
    image = np.full_like(scene.image, FILL)
    masks = np.zeros_like(scene.masks)
    if b <= t or r <= lft:
        return image, masks
    dy, dx = at[0] + (t - top), at[1] + (lft - left)
    image[dy : dy + b - t, dx : dx + r - lft] = scene.image[t:b, lft:r]
    masks[:, dy : dy + b - t, dx : dx + r - lft] = scene.masks[:, t:b, lft:r]
    return image, masks


def crop_pad(
    scene: Scene, target: str | int = "largest", placement: str = "in_place", seed: int = 0
) -> Scene:
    """Keep only the target's bounding box, padded back to the original size."""
    k = target_object(scene, target, seed)
    box = bounding_box(scene.masks[k])
    if placement == "in_place":
        at = box[:2]
    elif placement == "centre":
        h, w = scene.size
        at = ((h - (box[2] - box[0])) // 2, (w - (box[3] - box[1])) // 2)
    else:
        raise ValueError(f"placement must be 'in_place' or 'centre', got {placement!r}")
    image, masks = _paste(scene, box, at)
    return _derived(scene, "crop_pad", image, masks, {"target_instance": scene.instance_ids[k]})


def crop_resize(scene: Scene, target: str | int = "largest", seed: int = 0) -> Scene:
    """Crop the target's bounding box and resize it to the original size."""
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
    return _derived(
        scene, "crop_resize", np.asarray(crop), masks, {"target_instance": scene.instance_ids[k]}
    )


def crop_shift(
    scene: Scene, fraction: float, target: str | int = "largest", axes: str = "one", seed: int = 0
) -> Scene:
    """Shift the target's box by ``fraction`` of its size (seeded direction), crop, pad in place."""
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
    image, masks = _paste(scene, box, box[:2])
    name = f"crop_shift{int(round(fraction * 100))}"
    return _derived(
        scene, name, image, masks, {"target_instance": scene.instance_ids[k], "shift": (dy, dx)}
    )


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
    """Apply the named transform (see :data:`TRANSFORMS`)."""
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; known: {', '.join(TRANSFORMS)}")
    fn = TRANSFORMS[name]
    return fn(scene, seed=seed) if name.startswith("crop") else fn(scene)
