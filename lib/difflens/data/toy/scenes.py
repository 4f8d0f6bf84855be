"""Still toy scenes: seeded layouts of 1-4 shape instances, and the ``ToyWorld`` dataset.

Class is the shape alone. Colour, second colour, texture, size (area), aspect, position and
rotation of every object are drawn independently of its class (:class:`ToyConfig`), and so
is the background, so a model can only tell classes apart by shape.

Size is drawn as the object's whole (amodal) AREA, log-uniform in 5-16 % of the image by
default, the same for every class (a fixed radius would make some classes bigger than
others). The lower bound keeps an object over about 13 cells of the 16 x 16 feature map of
the toy model's 64 px input (one cell per 4 x 4 pixels; the object then spans 19-28 px, 5-7
cells, end to end), so each of its 4-6 keypoints has a cell or two of its own; the upper
bound lets four objects (about 38 % of the image on average) share a picture with
background still showing. Centres are uniform in 20-80 % of the image side, so about a
quarter of the objects are truncated by the border. Rotations stay within +-40 degrees so
"left" and "right" keep their meaning.

Objects are painted back to front. One whose visible share of its in-image pixels would
fall below ``min_visible`` (30 % by default) is removed from the layout before painting
(its area would make a meaningless mask), judged at 64 px so that a scene keeps the same
objects at every size; each removal is named in ``meta["dropped"]`` and counted in
``ToyWorld.skipped``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from difflens.core.skips import SkipLog
from difflens.data.scene import Scene
from difflens.data.toy.render import (
    TEXTURES,
    DenseTargets,
    ToyBackground,
    ToyLayout,
    ToyObject,
    object_pixels,
    paint,
    scene_from_painting,
    targets_from_painting,
)
from difflens.data.toy.seeds import SCENE_STREAM, absolute_seed
from difflens.data.toy.shapes import TOY_CLASSES, template

REFERENCE_SIZE = 64
"""Side in pixels at which occlusion is judged when a layout drops hidden objects."""


@dataclass(frozen=True)
class ToyConfig:
    """How toy objects are drawn (every setting independent of class).

    Attributes:
        n_objects: ``(low, high)`` objects per scene, both included (before hidden ones
            are dropped).
        classes: the classes to draw from (uniformly).
        area: ``(low, high)`` amodal area as a fraction of the image (log-uniform).
        max_aspect: aspect ``sx / sy`` log-uniform in ``[1 / max_aspect, max_aspect]``.
        max_rotation: rotation uniform in ``[-max_rotation, max_rotation]`` degrees.
        centre: ``(low, high)`` range of the centre's x and y, fractions of the image.
        textures: the textures to draw from.
        min_visible: an object keeps its place only if at least this share of its pixels
            inside the image stays visible (judged at :data:`REFERENCE_SIZE`).
        min_contrast: least RGB distance of an object's colour to both background colours.
    """

    n_objects: tuple[int, int] = (1, 4)
    classes: tuple[str, ...] = TOY_CLASSES
    area: tuple[float, float] = (0.05, 0.16)
    max_aspect: float = 1.25
    max_rotation: float = 40.0
    centre: tuple[float, float] = (0.2, 0.8)
    textures: tuple[str, ...] = TEXTURES
    min_visible: float = 0.3
    min_contrast: float = 80.0

    def __post_init__(self) -> None:
        for name in self.classes:
            template(name)
        low, high = self.n_objects
        if not 0 <= low <= high:
            raise ValueError(
                f"n_objects must be (low, high) with 0 <= low <= high, got {low, high}"
            )
        if not 0 < self.area[0] <= self.area[1] < 1:
            raise ValueError(f"area must be (low, high) within (0, 1), got {self.area}")
        unknown = set(self.textures) - set(TEXTURES)
        if unknown or not self.textures:
            raise ValueError(f"unknown textures {sorted(unknown)}; known: {', '.join(TEXTURES)}")


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def _far(a, b, distance: float) -> bool:
    return float(np.linalg.norm(np.subtract(a, b, dtype=np.float64))) >= distance


def draw_background(rng: np.random.Generator) -> ToyBackground:
    """A random background.

    Args:
        rng: the random stream.

    Returns:
        A :class:`~difflens.data.toy.render.ToyBackground`.
    """
    waves = tuple(
        (
            float(rng.uniform(-3, 3)),
            float(rng.uniform(-3, 3)),
            float(rng.uniform(0, 2 * np.pi)),
            float(rng.uniform(4, 20)),
        )
        for _ in range(2)
    )
    return ToyBackground(
        colour_a=_colour(rng),
        colour_b=_colour(rng),
        direction=float(rng.uniform(0, 2 * np.pi)),
        waves=waves,
        noise=float(rng.uniform(2, 10)),
        noise_seed=int(rng.integers(2**31)),
    )


def draw_object(
    rng: np.random.Generator,
    config: ToyConfig,
    class_name: str,
    instance_id: int,
    background: ToyBackground,
) -> ToyObject:
    """One object of ``class_name`` with every other property drawn independently.

    The colour is redrawn (at most 20 times) until it stands out from both background
    colours by ``config.min_contrast``, the second colour until it differs from the first
    by 60.

    Args:
        rng: the random stream.
        config: the drawing distribution.
        class_name: the object's class.
        instance_id: its instance id.
        background: the background it will stand on.

    Returns:
        The :class:`~difflens.data.toy.render.ToyObject`.
    """
    colour = _colour(rng)
    for _ in range(20):
        if _far(colour, background.colour_a, config.min_contrast) and _far(
            colour, background.colour_b, config.min_contrast
        ):
            break
        colour = _colour(rng)
    colour2 = _colour(rng)
    for _ in range(20):
        if _far(colour2, colour, 60.0):
            break
        colour2 = _colour(rng)
    low, high = np.log(config.area[0]), np.log(config.area[1])
    aspect = np.log(config.max_aspect)
    return ToyObject(
        class_name=class_name,
        cx=float(rng.uniform(*config.centre)),
        cy=float(rng.uniform(*config.centre)),
        area=float(np.exp(rng.uniform(low, high))),
        aspect=float(np.exp(rng.uniform(-aspect, aspect))),
        angle=float(rng.uniform(-config.max_rotation, config.max_rotation)),
        colour=colour,
        colour2=colour2,
        texture=str(config.textures[int(rng.integers(len(config.textures)))]),
        texture_period=float(rng.uniform(0.3, 0.6)),
        texture_angle=float(rng.uniform(0, 180)),
        texture_seed=int(rng.integers(2**31)),
        instance_id=instance_id,
    )


def draw_layout(
    rng: np.random.Generator, config: ToyConfig, classes: list[str] | None = None
) -> ToyLayout:
    """A random layout (nothing dropped yet).

    Args:
        rng: the random stream.
        config: the drawing distribution.
        classes: the class of each object, back to front; default: a number of objects
            uniform in ``config.n_objects``, each class uniform in ``config.classes``.

    Returns:
        The :class:`~difflens.data.toy.render.ToyLayout`, instance ids 1, 2, ...
    """
    background = draw_background(rng)
    if classes is None:
        n = int(rng.integers(config.n_objects[0], config.n_objects[1] + 1))
        classes = [str(config.classes[int(i)]) for i in rng.integers(len(config.classes), size=n)]
    objects = tuple(
        draw_object(rng, config, name, index + 1, background) for index, name in enumerate(classes)
    )
    return ToyLayout(objects, background)


def drop_hidden(
    layout: ToyLayout, min_visible: float, size: int = REFERENCE_SIZE
) -> tuple[ToyLayout, list[int], list[str]]:
    """The layout without the objects that would be mostly hidden.

    Front to back, an object stays if at least ``min_visible`` of its pixels inside the
    image (and at least one pixel) are not covered by the objects kept in front of it.
    Kept objects are renumbered 1, 2, ... in paint order.

    Args:
        layout: the layout.
        min_visible: the least visible share.
        size: the side in pixels at which occlusion is judged.

    Returns:
        ``(layout, kept, reasons)``: the new layout, the kept objects' indices in the old
        one, and one reason per dropped object.
    """
    covered = np.zeros((size, size), dtype=bool)
    kept, reasons = [], []
    for index in range(len(layout.objects) - 1, -1, -1):
        obj = layout.objects[index]
        rr, cc = object_pixels(obj.outline(size), size)
        visible = int((~covered[rr, cc]).sum())
        if len(rr) == 0 or visible < max(1.0, min_visible * len(rr)):
            share = visible / max(1, len(rr))
            reasons.append(
                f"hidden object: {obj.class_name} #{obj.instance_id} {share:.0%} visible "
                f"(< {min_visible:.0%})"
            )
            continue
        covered[rr, cc] = True
        kept.append(index)
    kept.reverse()
    objects = tuple(replace(layout.objects[i], instance_id=k + 1) for k, i in enumerate(kept))
    return ToyLayout(objects, layout.background), kept, reasons


def scene_name(split: str, offset: int, prefix: str = "toy") -> str:
    """The name of toy item ``offset`` of ``split``.

    Args:
        split: the split.
        offset: the seed offset within it.
        prefix: ``toy``, ``toyvid`` or ``toypair``.

    Returns:
        ``"toy_000007"`` for the test split, ``"toy_train_000007"`` otherwise.
    """
    middle = "" if split == "test" else f"{split}_"
    return f"{prefix}_{middle}{int(offset):06d}"


def toy_layout(
    seed: int, split: str = "test", config: ToyConfig | None = None
) -> tuple[ToyLayout, list[str]]:
    """The layout of toy scene ``seed`` of ``split``, hidden objects dropped.

    Args:
        seed: the seed offset within the split.
        split: ``"test"``, ``"validation"`` or ``"train"``.
        config: the drawing distribution (default :class:`ToyConfig`).

    Returns:
        ``(layout, dropped)``: the layout and a reason per dropped object.
    """
    config = config or ToyConfig()
    rng = np.random.default_rng([absolute_seed(split, seed), SCENE_STREAM])
    layout = draw_layout(rng, config)
    layout, _, dropped = drop_hidden(layout, config.min_visible)
    return layout, dropped


def _config(n_objects, classes, config: ToyConfig | None) -> ToyConfig:
    config = config or ToyConfig()
    changes = {}
    if n_objects is not None:
        changes["n_objects"] = tuple(int(n) for n in n_objects)
    if classes is not None:
        changes["classes"] = tuple(classes)
    return replace(config, **changes) if changes else config


def _painted(seed: int, size: int, split: str, config: ToyConfig):
    """The layout of a scene, its painting and its Scene (see :func:`make_toy_scene`)."""
    layout, dropped = toy_layout(seed, split, config)
    painting = paint(layout, size)
    meta = {"split": split, "offset": int(seed), "seed": absolute_seed(split, seed)}
    meta["dropped"] = dropped
    scene = scene_from_painting(layout, painting, scene_name(split, seed), meta=meta)
    return layout, painting, scene


def make_toy_example(
    seed: int,
    size: int = 64,
    n_objects: tuple[int, int] | None = None,
    classes: tuple[str, ...] | None = None,
    split: str = "test",
    config: ToyConfig | None = None,
) -> tuple[Scene, DenseTargets]:
    """A toy scene and its dense targets from one painting (for training).

    Args:
        seed: the seed offset within ``split``.
        size: image side in pixels.
        n_objects: ``(low, high)`` objects per scene (default: the config's, 1-4).
        classes: the classes to draw from (default: all of ``TOY_CLASSES``).
        split: ``"test"``, ``"validation"`` or ``"train"``.
        config: the drawing distribution (``n_objects`` and ``classes`` override it).

    Returns:
        ``(scene, targets)`` as :func:`make_toy_scene` and
        :func:`~difflens.data.toy.render.dense_targets` give them.
    """
    layout, painting, scene = _painted(seed, size, split, _config(n_objects, classes, config))
    return scene, targets_from_painting(layout, painting)


def make_toy_scene(
    seed: int,
    size: int = 256,
    n_objects: tuple[int, int] | None = None,
    classes: tuple[str, ...] | None = None,
    split: str = "test",
    config: ToyConfig | None = None,
) -> Scene:
    """Toy scene ``seed`` of ``split``, fully determined by the two.

    The scene has ``keypoints`` and ``boxes`` (visible extent) for every instance;
    ``meta`` holds ``split``, ``offset`` (= ``seed``), the absolute ``seed``, the
    ``layout``, ``dropped`` (hidden objects removed), ``skipped`` (objects with an empty
    mask at this size), ``visible_fraction``, ``truncated`` and ``amodal_boxes`` (see
    :func:`~difflens.data.toy.render.render_scene`).

    Args:
        seed: the seed offset within ``split``.
        size: image side in pixels.
        n_objects: ``(low, high)`` objects per scene (default: the config's, 1-4).
        classes: the classes to draw from (default: all of ``TOY_CLASSES``).
        split: ``"test"`` (held out, the default), ``"validation"`` or ``"train"``.
        config: the drawing distribution (``n_objects`` and ``classes`` override it).

    Returns:
        The scene, named ``toy_000007`` (test) or ``toy_<split>_000007``.
    """
    return _painted(seed, size, split, _config(n_objects, classes, config))[2]


@dataclass(frozen=True)
class ToyWorld:
    """``n_images`` toy scenes from seed offsets ``seed, seed + 1, ...`` of ``split``.

    Objects dropped because they would be hidden, and objects whose mask is empty at this
    size, are counted in ``skipped`` as the scenes are made (never raised).

    Attributes:
        n_images: number of scenes.
        size: image side in pixels.
        seed: the first seed offset within ``split``.
        n_objects: ``(low, high)`` objects per scene (default: the config's, 1-4).
        classes: the classes to draw from (default: the config's, all of ``TOY_CLASSES``).
        split: ``"test"`` (held out, the default), ``"validation"`` or ``"train"``.
        config: the drawing distribution (``n_objects`` and ``classes`` override it).
        skipped: dropped and skipped objects, one record each.

    Raises:
        ValueError: seeds ``seed .. seed + n_images - 1`` leave the split.
    """

    n_images: int = 24
    size: int = 256
    seed: int = 0
    n_objects: tuple[int, int] | None = None
    classes: tuple[str, ...] | None = None
    split: str = "test"
    config: ToyConfig | None = None
    skipped: SkipLog = field(
        default_factory=lambda: SkipLog(verbose=False), init=False, compare=False, repr=False
    )
    _counted: set[int] = field(default_factory=set, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        absolute_seed(self.split, self.seed, self.n_images)

    def __len__(self) -> int:
        return self.n_images

    def __iter__(self) -> Iterator[Scene]:
        for i in range(self.n_images):
            yield self[i]

    def __getitem__(self, index: int) -> Scene:
        if not 0 <= index < self.n_images:
            raise IndexError(f"ToyWorld has {self.n_images} images; index {index} is out of range")
        scene = make_toy_scene(
            self.seed + index, self.size, self.n_objects, self.classes, self.split, self.config
        )
        if index not in self._counted:  # a scene read twice is counted once
            self._counted.add(index)
            for reason in scene.meta["dropped"] + scene.meta["skipped"]:
                self.skipped.skip(scene.image_id, reason)
        return scene

    def with_(self, **changes: object) -> ToyWorld:
        """A copy with some fields changed.

        Args:
            **changes: new field values.

        Returns:
            The new dataset.
        """
        return replace(self, **changes)
