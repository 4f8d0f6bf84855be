"""What every notebook reads: its images or videos, named by a few plain parameters."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from pathlib import Path

from difflens.data.davis import PAPER_DAVIS_CLASSES, PAPER_DAVIS_SEQUENCES
from difflens.data.lists import resolve_list
from difflens.data.names import canonical_name, list_tag
from difflens.data.registry import load
from difflens.data.scene import Scene


def open_images(
    dataset: str,
    n_images: int | None = None,
    *,
    seed: int = 0,
    scene_size: int = 256,
    data_list: str | Path | None = None,
    voc_root: str | Path | None = None,
    coco_root: str | Path | None = None,
    split: str | None = None,
    **options,
) -> list[Scene]:
    """The first ``n_images`` readable scenes of a dataset, as a list.

    With ``data_list`` (a ``src,dataset`` CSV such as the authors' list) the images are the
    list's rows of that dataset, resolved under the roots; unresolved rows are reported,
    never dropped silently. Unreadable items are skipped and counted by the loaders, and
    the count is printed.

    Args:
        dataset: ``toyworld`` (offline), ``voc`` or ``coco`` (or an alias).
        n_images: how many scenes; ``None`` for all (24 for ``toyworld``).
        seed: ``toyworld``: the first scene's seed (then ``seed + 1``, ...).
        scene_size: ``toyworld``: the side of each scene in pixels.
        data_list: an image list to read the images from.
        voc_root: the Pascal-VOC 2012 folder.
        coco_root: the COCO 2017 folder.
        split: the split to read when no list is given.
        **options: passed to the loader (e.g. ``non_voc`` for COCO).

    Returns:
        The scenes, in dataset or list order.

    Raises:
        ValueError: a dataset other than those three, or an on-disk dataset without its
            root.
    """
    dataset = canonical_name(dataset)
    if dataset == "toyworld":
        return list(
            load("toyworld", n_images=n_images or 24, size=scene_size, seed=seed, **options)
        )
    roots = {"voc": voc_root, "coco": coco_root}
    if dataset not in roots:
        raise ValueError(f"dataset {dataset!r}: choose toyworld, voc or coco")
    if data_list:
        resolved = resolve_list(data_list, voc_root=voc_root, coco_root=coco_root)
        print(resolved.summary())
        source = resolved.load(list_tag(dataset), **options)
    else:
        if roots[dataset] is None:
            raise ValueError(f"dataset {dataset!r} needs its root folder ({dataset}_root)")
        source = load(dataset, roots[dataset], split=split, **options)
    scenes = list(islice(iter(source), n_images))
    skipped = getattr(source, "skipped", None)
    if skipped is not None and len(skipped):
        print(f"{dataset}: {skipped.summary()}")
    return scenes


def open_videos(
    dataset: str,
    *,
    n_videos: int = 2,
    n_frames: int = 48,
    seed: int = 0,
    scene_size: int = 256,
    davis_root: str | Path | None = None,
    sequences: Sequence[str] | None = None,
    classes: dict | str | None = "paper",
    **options,
) -> dict[str, Sequence[Scene]]:
    """The frames of each video, in order.

    Args:
        dataset: ``toyvideos`` (offline) or ``davis``.
        n_videos: ``toyvideos``: how many videos.
        n_frames: ``toyvideos``: frames per video.
        seed: ``toyvideos``: the first video's seed.
        scene_size: ``toyvideos``: the side of each frame in pixels.
        davis_root: the DAVIS 2017 folder.
        sequences: ``davis``: the sequences to read (default: the paper's 8).
        classes: ``davis``: ``"paper"`` (every object a person, as in the paper's
            sequences), a ``classes`` mapping, or ``None`` to read the semantics file.
        **options: passed to the loader.

    Returns:
        ``{sequence: frames}``: toy videos as lists of scenes, DAVIS sequences as lazy
        :class:`~difflens.data.davis.FrameSequence` objects; every frame carries its frame
        number in ``meta["frame"]``.

    Raises:
        ValueError: a dataset other than those two, or ``davis`` without ``davis_root``.
    """
    dataset = canonical_name(dataset)
    if dataset == "toyvideos":
        videos = load(
            "toyvideos", n_videos=n_videos, n_frames=n_frames, size=scene_size, seed=seed, **options
        )
        return {name: videos.frames(name) for name in videos.sequences}
    if dataset != "davis":
        raise ValueError(f"dataset {dataset!r}: choose toyvideos or davis")
    if davis_root is None:
        raise ValueError("dataset 'davis' needs davis_root")
    if classes == "paper":
        classes = PAPER_DAVIS_CLASSES
    davis = load(
        "davis",
        davis_root,
        ids=list(sequences or PAPER_DAVIS_SEQUENCES),
        classes=classes,
        **options,
    )
    return {name: davis.frames(name) for name in davis.sequences}
