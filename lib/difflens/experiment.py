"""What every notebook starts with: its images or videos, and an extractor with a cache.

The notebooks name their data with a few plain parameters (``dataset``, ``n_images``,
roots, an optional image list); these functions turn them into scenes, so the parameter
handling lives in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from pathlib import Path

from difflens.backbone import cache_dir, load_backbone
from difflens.extract import FeatureExtractor
from difflens.scene import Scene
from difflens.store import FeatureStore

LIST_TAGS = {"voc": "pascal", "pascal": "pascal", "coco": "coco", "davis": "davis"}


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
    """The first ``n_images`` scenes of ``dataset`` (all when ``None``), as a list.

    ``dataset`` is ``toyworld`` (offline; ``scene_size`` px, seeds ``seed, seed+1, ...``),
    ``voc`` or ``coco``. With ``data_list`` (a ``src,dataset`` CSV such as the authors'
    list) the images are the list's rows of that dataset, resolved under the roots;
    unresolved rows are reported, never dropped silently. Unreadable items are skipped
    and counted by the loaders.
    """
    from difflens.datasets import load
    from difflens.selection import resolve_list

    if dataset == "toyworld":
        return list(
            load("toyworld", n_images=n_images or 24, size=scene_size, seed=seed, **options)
        )
    roots = {"voc": voc_root, "pascal": voc_root, "coco": coco_root}
    if dataset not in roots:
        raise ValueError(f"dataset {dataset!r}: choose toyworld, voc or coco")
    if data_list:
        resolved = resolve_list(data_list, voc_root=voc_root, coco_root=coco_root)
        print(resolved.summary())
        source = resolved.load(LIST_TAGS[dataset], **options)
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
    """Frames of each video, in order: ``{sequence: frames}``.

    ``toyvideos`` (offline) or ``davis`` (``sequences`` default: the paper's 8; object
    classes ``"paper"`` = every object is a person, as in the paper's sequences, or a
    mapping, or ``None`` to read the dataset's semantics file).
    """
    from difflens.datasets import PAPER_DAVIS_CLASSES, PAPER_DAVIS_SEQUENCES, load

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


def make_extractor(
    model: str,
    image_size: int,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    cache: str | Path | None = None,
    **options,
) -> FeatureExtractor:
    """Load ``model`` and wrap it in an extractor whose prototypes are cached on disk.

    ``cache`` defaults to ``$DIFFLENS_CACHE/features``; pass ``""`` to switch caching off.
    """
    from difflens.backbone import parse_dtype

    backbone = load_backbone(model, device=device, dtype=parse_dtype(dtype))
    store = None
    if cache != "":
        store = FeatureStore(Path(cache) if cache else cache_dir() / "features")
    return FeatureExtractor(backbone, image_size=image_size, store=store, **options)
