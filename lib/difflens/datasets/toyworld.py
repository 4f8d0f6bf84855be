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


# --------------------------------------------------------------------------- video mode


@dataclass(frozen=True)
class ToyMotion:
    """How one object changes over a video; ``t`` runs from 0 (first frame) to 1 (last).

    The centre moves at constant velocity ``(vx, vy)`` (image fractions per video) and
    bounces off the borders; the radius is scaled by ``exp(growth * t)``; the shape turns by
    ``spin * t`` radians. The paint order (depth) stays fixed, so objects whose paths cross
    occlude each other.
    """

    start: ToyObject
    vx: float
    vy: float
    growth: float
    spin: float

    def at(self, t: float) -> ToyObject:
        radius = self.start.radius * float(np.exp(self.growth * t))
        return replace(
            self.start,
            cx=_bounce(self.start.cx + self.vx * t, radius, 1.0 - radius),
            cy=_bounce(self.start.cy + self.vy * t, radius, 1.0 - radius),
            radius=radius,
            angle=self.start.angle + self.spin * t,
        )


def _bounce(x: float, low: float, high: float) -> float:
    """``x`` reflected back and forth into ``[low, high]``."""
    span = high - low
    if span <= 0:
        return 0.5 * (low + high)
    y = (x - low) % (2.0 * span)
    return float(low + (y if y <= span else 2.0 * span - y))


def random_motions(rng: np.random.Generator, objects: list[ToyObject]) -> list[ToyMotion]:
    """Paths that all pass near one meeting point, each at its own time in [0.25, 0.75].

    Crossing paths make the objects occlude one another in the middle of the video.
    """
    meeting = rng.uniform(0.35, 0.65, size=2)
    motions = []
    for obj in objects:
        when = float(rng.uniform(0.25, 0.75))
        target = meeting + rng.normal(0.0, 0.12, size=2)
        motions.append(
            ToyMotion(
                start=obj,
                vx=float((target[0] - obj.cx) / when),
                vy=float((target[1] - obj.cy) / when),
                growth=float(rng.uniform(-0.5, 0.5)),
                spin=float(rng.uniform(-np.pi / 2, np.pi / 2)),
            )
        )
    return motions


def toy_sequence_name(seed: int) -> str:
    return f"toyvid_{seed:06d}"


def toy_video(
    seed: int,
    n_frames: int = 16,
    size: int = 256,
    n_objects: tuple[int, int] = (2, 4),
    classes: tuple[str, ...] = TOY_CLASSES,
    min_visible: float = 0.3,
) -> list[Scene]:
    """A toy video fully determined by ``seed``: one Scene per frame.

    Objects keep their instance id and class in every frame while they move, grow or shrink,
    turn and pass in front of / behind each other over a fixed background. ``n_frames``
    samples the same motion more or less finely (frame ``f`` is at ``t = f / (n_frames-1)``).
    A frame leaves out an object with less than ``min_visible`` of its area visible (as
    :func:`render` does), so an occluded object disappears and comes back with its id.
    Frames have ``image_id`` ``"toyvid_000007/00003"`` and ``source_image`` the sequence
    name; ``meta`` holds ``sequence``, ``frame`` and each object's ``visible_fraction``.
    """
    if n_frames < 1:
        raise ValueError(f"a toy video needs at least one frame, got n_frames={n_frames}")
    rng = np.random.default_rng([seed, 1])  # a stream of its own, apart from make_toy_scene
    n = int(rng.integers(n_objects[0], n_objects[1] + 1))
    objects = random_objects(rng, n, classes)
    background = _background(rng, size)
    motions = random_motions(rng, objects)
    name = toy_sequence_name(seed)
    frames = []
    for index in range(n_frames):
        t = index / max(1, n_frames - 1)
        moved = [motion.at(t) for motion in motions]
        scene = render(
            moved,
            size,
            background,
            image_id=f"{name}/{index:05d}",
            min_visible=min_visible,
            source_image=name,
            meta={"seed": seed, "sequence": name, "frame": index},
        )
        full = {obj.instance_id: int(_shape_mask(obj, size).sum()) for obj in moved}
        scene.meta["visible_fraction"] = {
            iid: float(mask.sum()) / max(1, full[iid])
            for iid, mask in zip(scene.instance_ids, scene.masks)
        }
        frames.append(scene)
    return frames


@dataclass(frozen=True)
class ToyVideos:
    """``n_videos`` toy videos from seeds ``seed, seed+1, ...``; iterating yields every frame.

    ``frames(sequence)`` (or ``video(index)``) gives one video's frames in order, as
    ``DAVISDataset.frames`` does for a DAVIS sequence.
    """

    n_videos: int = 4
    n_frames: int = 16
    size: int = 256
    seed: int = 0
    n_objects: tuple[int, int] = (2, 4)
    classes: tuple[str, ...] = TOY_CLASSES
    min_visible: float = 0.3

    def __len__(self) -> int:
        return self.n_videos * self.n_frames

    def __iter__(self) -> Iterator[Scene]:
        for index in range(self.n_videos):
            yield from self.video(index)

    @property
    def sequences(self) -> list[str]:
        return [toy_sequence_name(self.seed + i) for i in range(self.n_videos)]

    def video(self, index: int) -> list[Scene]:
        if not 0 <= index < self.n_videos:
            raise IndexError(f"ToyVideos has {self.n_videos} videos; index {index} is out of range")
        return toy_video(
            self.seed + index,
            self.n_frames,
            self.size,
            self.n_objects,
            self.classes,
            self.min_visible,
        )

    def frames(self, sequence: str) -> list[Scene]:
        if sequence not in self.sequences:
            raise KeyError(f"no toy video {sequence!r}; known: {self.sequences}")
        return self.video(self.sequences.index(sequence))

    def with_(self, **changes) -> ToyVideos:
        return replace(self, **changes)
