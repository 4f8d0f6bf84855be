"""Toy videos, the offline stand-in for DAVIS: shapes that move, turn, occlude and leave.

Each object follows smooth periodic paths measured in FRAMES (so a longer video shows
more of the same motion): its centre ``m + a * sin(2 pi f / P + phase)`` per axis, with
``m`` in 0.3-0.7, ``a`` in 0.05-0.3 and ``P`` in 70-150 frames, so paths cross (objects
pass in front of and behind each other in a fixed depth order). About a third of the
objects wander: along one axis their path is centred (``m = 0.5``) with ``a`` in
0.65-0.85, so they leave the frame and come back. An object turns by up to +-40 degrees in
all and its area breathes by a factor of up to ``exp(+-0.35)``. Per frame, the centre
moves at most :data:`MAX_CENTRE_STEP` of the image side, a keypoint at most
:data:`MAX_KEYPOINT_STEP`.

Every object is painted in every frame; a frame's instances are the objects with at least
one visible pixel (or ``min_visible`` of their in-image pixels), with the same instance id
in every frame. An object hidden or out of the frame is absent from that frame (named in
``meta["absent"]``), as in DAVIS, and comes back with its id. Frames have ``image_id``
``"toyvid_000007/00003"``, ``source_image`` the sequence name and ``meta["frame"]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from difflens.data.scene import Scene
from difflens.data.toy.render import ToyLayout, ToyObject, paint, scene_from_painting
from difflens.data.toy.scenes import ToyConfig, draw_layout, scene_name
from difflens.data.toy.seeds import VIDEO_STREAM, absolute_seed

CENTRE_MEAN = (0.3, 0.7)
"""Range of a path's mean position (fractions of the image)."""
CENTRE_AMPLITUDE = (0.05, 0.3)
"""Range of a path's amplitude per axis (fractions of the image)."""
WANDER_AMPLITUDE = (0.65, 0.85)
"""Range of the amplitude of a wandering object along its wandering axis (mean 0.5)."""
WANDER_SHARE = 0.35
"""Share of objects that wander out of the frame and back along one axis."""
PERIOD = (70.0, 150.0)
"""Range of the motion periods, in frames."""
MAX_GROWTH = 0.35
"""Largest amplitude of the log-area oscillation."""
MAX_CENTRE_STEP = float(2 * np.pi * np.hypot(WANDER_AMPLITUDE[1], CENTRE_AMPLITUDE[1]) / PERIOD[0])
"""Upper bound of the centre's motion per frame, fraction of the image side (about 0.08)."""
MAX_KEYPOINT_STEP = 0.14
"""Upper bound of a keypoint's motion per frame, fraction of the image side: the centre
step, plus at most 0.04 from turning (3.6 degrees per frame) and 0.01 from breathing, as
keypoints lie within 0.6 of their object's centre at the largest areas."""


@dataclass(frozen=True)
class ToyMotion:
    """How one object moves; ``at(frame)`` gives the object in that frame.

    Attributes:
        start: the object (class, colours, texture, base area and aspect, instance id).
        mean: ``(mx, my)`` mean centre.
        amplitude: ``(ax, ay)`` centre amplitude per axis.
        period: ``(px, py)`` centre periods in frames.
        phase: ``(phase_x, phase_y)`` in radians.
        angle: ``(base, amplitude, period, phase)`` of the rotation (degrees, frames).
        growth: ``(amplitude, period, phase)`` of the log-area oscillation.
    """

    start: ToyObject
    mean: tuple[float, float]
    amplitude: tuple[float, float]
    period: tuple[float, float]
    phase: tuple[float, float]
    angle: tuple[float, float, float, float]
    growth: tuple[float, float, float]

    def at(self, frame: float) -> ToyObject:
        """The object in frame ``frame``.

        Args:
            frame: the frame number (0 is the first frame).

        Returns:
            The moved, turned and scaled :class:`~difflens.data.toy.render.ToyObject`.
        """
        x, y = (
            m + a * np.sin(2 * np.pi * frame / p + ph)
            for m, a, p, ph in zip(self.mean, self.amplitude, self.period, self.phase)
        )
        base, spin, spin_period, spin_phase = self.angle
        g, g_period, g_phase = self.growth
        return replace(
            self.start,
            cx=float(x),
            cy=float(y),
            angle=float(base + spin * np.sin(2 * np.pi * frame / spin_period + spin_phase)),
            area=float(
                self.start.area * np.exp(g * np.sin(2 * np.pi * frame / g_period + g_phase))
            ),
        )


def random_motion(rng: np.random.Generator, obj: ToyObject, max_rotation: float = 40.0):
    """A random smooth motion for ``obj`` (ranges in the module docstring).

    Args:
        rng: the random stream.
        obj: the object (its class, colours, texture, area, aspect and id are kept).
        max_rotation: the rotation stays within ``[-max_rotation, max_rotation]`` degrees.

    Returns:
        The :class:`ToyMotion`.
    """
    base = float(rng.uniform(-0.4, 0.4) * max_rotation)
    mean = rng.uniform(*CENTRE_MEAN, size=2)
    amplitude = rng.uniform(*CENTRE_AMPLITUDE, size=2)
    if rng.random() < WANDER_SHARE:
        axis = int(rng.integers(2))
        mean[axis], amplitude[axis] = 0.5, rng.uniform(*WANDER_AMPLITUDE)
    return ToyMotion(
        start=obj,
        mean=(float(mean[0]), float(mean[1])),
        amplitude=(float(amplitude[0]), float(amplitude[1])),
        period=tuple(float(v) for v in rng.uniform(*PERIOD, size=2)),
        phase=tuple(float(v) for v in rng.uniform(0, 2 * np.pi, size=2)),
        angle=(
            base,
            float(rng.uniform(0, max_rotation - abs(base))),
            float(rng.uniform(*PERIOD)),
            float(rng.uniform(0, 2 * np.pi)),
        ),
        growth=(
            float(rng.uniform(0, MAX_GROWTH)),
            float(rng.uniform(*PERIOD)),
            float(rng.uniform(0, 2 * np.pi)),
        ),
    )


def toy_sequence_name(seed: int, split: str = "test") -> str:
    """The name of toy video ``seed`` of ``split``.

    Args:
        seed: the seed offset within ``split``.
        split: the split.

    Returns:
        ``"toyvid_000007"`` for the test split, ``"toyvid_<split>_000007"`` otherwise.
    """
    return scene_name(split, seed, "toyvid")


def _keep_visible(scene: Scene, min_visible: float) -> Scene:
    """The scene without the instances under ``min_visible`` of their in-image pixels."""
    fraction = scene.meta["visible_fraction"]
    keep = [k for k, iid in enumerate(scene.instance_ids) if fraction[iid] >= min_visible]
    if len(keep) == scene.n_objects:
        return scene
    return replace(
        scene,
        masks=scene.masks[keep],
        class_names=[scene.class_names[k] for k in keep],
        instance_ids=[scene.instance_ids[k] for k in keep],
        keypoints=[scene.keypoints[k] for k in keep],
        boxes=scene.boxes[keep],
    )


def toy_video(
    seed: int,
    n_frames: int = 16,
    size: int = 256,
    n_objects: tuple[int, int] | None = (2, 4),
    classes: tuple[str, ...] | None = None,
    min_visible: float = 0.0,
    split: str = "test",
    config: ToyConfig | None = None,
) -> list[Scene]:
    """Toy video ``seed`` of ``split``, one :class:`Scene` per frame.

    Args:
        seed: the seed offset within ``split``.
        n_frames: number of frames (the motion is in frames: more frames, longer video).
        size: image side in pixels.
        n_objects: ``(low, high)`` objects in the video (``None``: the config's).
        classes: the classes to draw from (default: the config's, all of ``TOY_CLASSES``).
        min_visible: an object is an instance of a frame when at least this share of its
            in-image pixels is visible (0: any visible pixel, as DAVIS annotates).
        split: ``"test"`` (held out, the default), ``"validation"`` or ``"train"``.
        config: how objects are drawn (``n_objects`` and ``classes`` override it).

    Returns:
        The frames; each has ``keypoints``, ``boxes`` and ``meta`` with ``sequence``,
        ``frame``, ``split``, ``offset``, ``seed`` (absolute), ``visible_fraction``,
        ``absent`` (ids of the objects left out of this frame) and ``layout``.

    Raises:
        ValueError: ``n_frames < 1`` or a seed outside the split.
    """
    if n_frames < 1:
        raise ValueError(f"a toy video needs at least one frame, got n_frames={n_frames}")
    config = config or ToyConfig()
    if n_objects is not None:
        config = replace(config, n_objects=tuple(int(n) for n in n_objects))
    if classes is not None:
        config = replace(config, classes=tuple(classes))
    absolute = absolute_seed(split, seed)
    rng = np.random.default_rng([absolute, VIDEO_STREAM])
    start = draw_layout(rng, config)
    motions = [random_motion(rng, obj, config.max_rotation) for obj in start.objects]
    name = toy_sequence_name(seed, split)
    frames = []
    for index in range(n_frames):
        layout = ToyLayout(tuple(m.at(index) for m in motions), start.background)
        meta = {"seed": absolute, "split": split, "offset": int(seed), "sequence": name}
        meta["frame"] = index
        scene = scene_from_painting(
            layout, paint(layout, size), f"{name}/{index:05d}", name, meta=meta
        )
        scene = _keep_visible(scene, min_visible)
        scene.meta["absent"] = sorted(
            {o.instance_id for o in layout.objects} - set(scene.instance_ids)
        )
        frames.append(scene)
    return frames


@dataclass(frozen=True)
class ToyVideos:
    """``n_videos`` toy videos from seed offsets ``seed, seed + 1, ...``; iterating yields frames.

    ``frames(sequence)`` (or ``video(index)``) gives one video's frames in order, as
    ``DAVISDataset.frames`` does for a DAVIS sequence.

    Attributes:
        n_videos: number of videos.
        n_frames: frames per video.
        size: image side in pixels.
        seed: the first seed offset within ``split``.
        n_objects: ``(low, high)`` objects per video (``None``: the config's).
        classes: the classes to draw from (default: the config's, all of ``TOY_CLASSES``).
        min_visible: least visible share of an object's in-image pixels for it to be an
            instance of a frame (0: any visible pixel).
        split: ``"test"`` (held out, the default), ``"validation"`` or ``"train"``.
        config: how objects are drawn (``n_objects`` and ``classes`` override it).

    Raises:
        ValueError: seeds ``seed .. seed + n_videos - 1`` leave the split.
    """

    n_videos: int = 4
    n_frames: int = 16
    size: int = 256
    seed: int = 0
    n_objects: tuple[int, int] | None = (2, 4)
    classes: tuple[str, ...] | None = None
    min_visible: float = 0.0
    split: str = "test"
    config: ToyConfig | None = None

    def __post_init__(self) -> None:
        absolute_seed(self.split, self.seed, self.n_videos)

    def __len__(self) -> int:
        return self.n_videos * self.n_frames

    def __iter__(self) -> Iterator[Scene]:
        for index in range(self.n_videos):
            yield from self.video(index)

    @property
    def sequences(self) -> list[str]:
        """The videos' sequence names, in order."""
        return [toy_sequence_name(self.seed + i, self.split) for i in range(self.n_videos)]

    def video(self, index: int) -> list[Scene]:
        """The frames of video ``index``.

        Args:
            index: 0 .. ``n_videos - 1``.

        Returns:
            Its frames, in order.

        Raises:
            IndexError: ``index`` out of range.
        """
        if not 0 <= index < self.n_videos:
            raise IndexError(f"ToyVideos has {self.n_videos} videos; index {index} is out of range")
        return toy_video(
            self.seed + index,
            self.n_frames,
            self.size,
            self.n_objects,
            self.classes,
            self.min_visible,
            self.split,
            self.config,
        )

    def frames(self, sequence: str) -> list[Scene]:
        """The frames of the video named ``sequence``.

        Args:
            sequence: one of :attr:`sequences`.

        Returns:
            Its frames, in order.

        Raises:
            KeyError: no such video.
        """
        if sequence not in self.sequences:
            raise KeyError(f"no toy video {sequence!r}; known: {self.sequences}")
        return self.video(self.sequences.index(sequence))

    def with_(self, **changes: object) -> ToyVideos:
        """A copy with some fields changed.

        Args:
            **changes: new field values.

        Returns:
            The new dataset.
        """
        return replace(self, **changes)
