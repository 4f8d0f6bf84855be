"""The toy world: procedural scenes of shape instances, offline and deterministic.

Class is the shape. Colour, texture, size, rotation and position are drawn independently
of class, so a model can only separate classes by shape. Objects are painted back to front;
each instance mask holds the pixels that stay visible.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from difflens.scene import Scene

TOY_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
TEXTURES: tuple[str, ...] = ("solid", "stripes", "checker", "dots")


@dataclass(frozen=True)
class ToyObject:
    """Parameters of one painted object (positions and sizes as fractions of the image)."""

    class_name: str
    cx: float
    cy: float
    radius: float
    angle: float
    colour: tuple[int, int, int]
    colour2: tuple[int, int, int]
    texture: str
    instance_id: int


def _shape_mask(obj: ToyObject, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    x = (xx + 0.5) / size - obj.cx
    y = (yy + 0.5) / size - obj.cy
    c, s = np.cos(obj.angle), np.sin(obj.angle)
    u, v = (c * x + s * y) / obj.radius, (-s * x + c * y) / obj.radius
    if obj.class_name == "circle":
        return u * u + v * v <= 1.0
    if obj.class_name == "square":
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if obj.class_name == "triangle":
        # equilateral triangle with circumradius 1, pointing up in its own frame
        return (v <= 0.5) & (np.sqrt(3) * u - v <= 1.0) & (-np.sqrt(3) * u - v <= 1.0)
    if obj.class_name == "cross":
        arm = 0.33
        return ((np.abs(u) <= arm) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= arm) & (np.abs(u) <= 1.0))
    raise ValueError(f"unknown toy class {obj.class_name!r}; known: {TOY_CLASSES}")


def _texture(obj: ToyObject, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    period = max(2, size // 16)
    if obj.texture == "solid":
        pattern = np.zeros((size, size), dtype=bool)
    elif obj.texture == "stripes":
        pattern = ((xx + yy) // period) % 2 == 0
    elif obj.texture == "checker":
        pattern = ((xx // period) + (yy // period)) % 2 == 0
    elif obj.texture == "dots":
        pattern = ((xx % (2 * period)) < period // 2 + 1) & ((yy % (2 * period)) < period // 2 + 1)
    else:
        raise ValueError(f"unknown texture {obj.texture!r}; known: {TEXTURES}")
    out = np.empty((size, size, 3), dtype=np.uint8)
    out[:] = np.asarray(obj.colour, dtype=np.uint8)
    out[pattern] = np.asarray(obj.colour2, dtype=np.uint8)
    return out


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.integers(0, 256, size=3)
    other = rng.integers(0, 256, size=3)
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)
    horizontal = rng.random() < 0.5
    ramp = t[None, :, None] if horizontal else t[:, None, None]
    img = base[None, None, :] * (1 - ramp) + other[None, None, :] * ramp
    img = img + rng.normal(0.0, 8.0, size=(size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def random_objects(
    rng: np.random.Generator,
    n_objects: int,
    classes: tuple[str, ...] = TOY_CLASSES,
    min_radius: float = 0.1,
    max_radius: float = 0.22,
) -> list[ToyObject]:
    """Draw ``n_objects`` objects with class independent of colour, texture and size."""
    objects = []
    for k in range(n_objects):
        radius = float(rng.uniform(min_radius, max_radius))
        objects.append(
            ToyObject(
                class_name=str(rng.choice(classes)),
                cx=float(rng.uniform(radius, 1 - radius)),
                cy=float(rng.uniform(radius, 1 - radius)),
                radius=radius,
                angle=float(rng.uniform(0, 2 * np.pi)),
                colour=tuple(int(v) for v in rng.integers(0, 256, size=3)),
                colour2=tuple(int(v) for v in rng.integers(0, 256, size=3)),
                texture=str(rng.choice(TEXTURES)),
                instance_id=k + 1,
            )
        )
    return objects


def render(
    objects: list[ToyObject],
    size: int,
    background: np.ndarray,
    image_id: str,
    min_visible: float = 0.3,
    source_image: str | None = None,
    meta: dict | None = None,
) -> Scene:
    """Paint ``objects`` back to front on ``background``; drop objects mostly hidden.

    An object keeps its instance only if at least ``min_visible`` of its own area stays
    visible (and at least one pixel), so every mask in the scene is meaningful.
    """
    image = background.copy()
    owner = np.zeros((size, size), dtype=np.int32)  # index+1 of the visible object
    full_areas = []
    for index, obj in enumerate(objects):
        mask = _shape_mask(obj, size)
        full_areas.append(int(mask.sum()))
        image[mask] = _texture(obj, size)[mask]
        owner[mask] = index + 1
    masks, names, ids = [], [], []
    for index, obj in enumerate(objects):
        visible = owner == index + 1
        if full_areas[index] == 0 or visible.sum() < max(1, min_visible * full_areas[index]):
            continue
        masks.append(visible)
        names.append(obj.class_name)
        ids.append(obj.instance_id)
    mask_array = np.stack(masks) if masks else np.zeros((0, size, size), dtype=bool)
    return Scene(
        image=image,
        masks=mask_array,
        class_names=names,
        instance_ids=ids,
        image_id=image_id,
        source_image=source_image,
        meta={"dataset": "toyworld", **(meta or {})},
    )


def make_toy_scene(
    seed: int,
    size: int = 256,
    n_objects: tuple[int, int] = (2, 5),
    classes: tuple[str, ...] = TOY_CLASSES,
) -> Scene:
    """One toy scene, fully determined by ``seed``."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(n_objects[0], n_objects[1] + 1))
    objects = random_objects(rng, n, classes)
    background = _background(rng, size)
    return render(objects, size, background, image_id=f"toy_{seed:06d}", meta={"seed": seed})


@dataclass(frozen=True)
class ToyWorld:
    """An iterable dataset of ``n_images`` toy scenes drawn from seeds ``seed, seed+1, ...``."""

    n_images: int = 24
    size: int = 256
    seed: int = 0
    n_objects: tuple[int, int] = (2, 5)
    classes: tuple[str, ...] = TOY_CLASSES

    def __len__(self) -> int:
        return self.n_images

    def __iter__(self) -> Iterator[Scene]:
        for i in range(self.n_images):
            yield self[i]

    def __getitem__(self, index: int) -> Scene:
        if not 0 <= index < self.n_images:
            raise IndexError(f"ToyWorld has {self.n_images} images; index {index} is out of range")
        return make_toy_scene(self.seed + index, self.size, self.n_objects, self.classes)

    def with_(self, **changes) -> ToyWorld:
        return replace(self, **changes)
