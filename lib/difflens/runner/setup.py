"""What a notebook starts with, in one call: its extractor, its images and its videos.

The numbered notebooks declare their data and model as plain parameters (papermill's
``parameters`` cell); :func:`study_from_parameters` reads the ones it knows from the
notebook's namespace and opens everything, so the setup is written once, here::

    study = study_from_parameters(globals())
    extractor, scenes = study.extractor, study.scenes
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from difflens.data.scene import Scene
from difflens.data.sources import open_images, open_videos
from difflens.features.extractor import FeatureExtractor, make_extractor

MODEL_KEYS = ("model", "image_size", "device", "dtype", "cache")
IMAGE_KEYS = (
    "datasets",
    "n_images",
    "scene_size",
    "data_list",
    "voc_root",
    "coco_root",
    "seed",
)
VIDEO_KEYS = (
    "video_dataset",
    "n_videos",
    "n_frames",
    "video_scene_size",
    "davis_root",
    "sequences",
    "seed",
)


@dataclass
class Study:
    """A notebook's extractor (``None`` without a model) and its data.

    Attributes:
        extractor: the feature extractor, with the prototype cache.
        scenes: ``dataset -> scenes`` of the image datasets.
        videos: ``sequence -> frames`` of the video dataset.
    """

    extractor: FeatureExtractor | None = None
    scenes: dict[str, list[Scene]] = field(default_factory=dict)
    videos: dict[str, Sequence[Scene]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Images per dataset and frames per video, for a first look.

        Returns:
            ``name -> count``.
        """
        return {
            **{name: len(s) for name, s in self.scenes.items()},
            **{name: len(f) for name, f in self.videos.items()},
        }


def _optional(value: str | Path | None) -> str | Path | None:
    """Notebook parameters write "no value" as an empty string."""
    return value or None


def open_study(
    model: str | None = None,
    image_size: int = 512,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    cache: str | Path | None = None,
    datasets: Sequence[str] = (),
    n_images: int | None = None,
    scene_size: int = 256,
    data_list: str | Path | None = None,
    voc_root: str | Path | None = None,
    coco_root: str | Path | None = None,
    seed: int = 0,
    video_dataset: str | None = None,
    n_videos: int = 2,
    n_frames: int = 48,
    video_scene_size: int = 256,
    davis_root: str | Path | None = None,
    sequences: Sequence[str] | None = None,
) -> Study:
    """Open a notebook's model and data.

    Args:
        model: ``"toy"``, ``"tiny"``, a local SD folder or a hub id; ``None`` for no model.
        image_size: the side images are resized to for the model.
        device: ``"cpu"`` or ``"cuda"``.
        dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        cache: the prototype cache folder (``None``: the default; ``""``: off).
        datasets: image datasets (``toyworld``, ``voc``, ``coco``).
        n_images: images per dataset (``None``: all).
        scene_size: toy-world render size in pixels.
        data_list: a ``src,dataset`` image list, or empty for the first images of the split.
        voc_root: the VOC 2012 folder.
        coco_root: the COCO folder.
        seed: first toy seed, and the seed of toy videos.
        video_dataset: ``toyvideos`` or ``davis``; ``None`` for no videos.
        n_videos: toy videos.
        n_frames: frames per toy video.
        video_scene_size: toy-video render size.
        davis_root: the DAVIS 2017 folder.
        sequences: DAVIS sequences (empty: the paper's eight).

    Returns:
        The :class:`Study`.
    """
    extractor = None
    if model:
        extractor = make_extractor(model, image_size, device=device, dtype=dtype, cache=cache)
    scenes = {
        name: open_images(
            name,
            n_images,
            seed=seed,
            scene_size=scene_size,
            data_list=_optional(data_list),
            voc_root=_optional(voc_root),
            coco_root=_optional(coco_root),
        )
        for name in datasets
    }
    videos: dict[str, Sequence[Scene]] = {}
    if video_dataset:
        videos = open_videos(
            video_dataset,
            n_videos=n_videos,
            n_frames=n_frames,
            seed=seed,
            scene_size=video_scene_size,
            davis_root=_optional(davis_root),
            sequences=sequences or None,
        )
    return Study(extractor, scenes, videos)


def study_from_parameters(namespace: Mapping[str, object]) -> Study:
    """:func:`open_study` with the parameters a notebook declares.

    Args:
        namespace: the notebook's variables (``globals()``); the keys of
            :data:`MODEL_KEYS`, :data:`IMAGE_KEYS` and :data:`VIDEO_KEYS` it holds are
            passed on, the others ignored.

    Returns:
        The :class:`Study`.
    """
    keys = dict.fromkeys((*MODEL_KEYS, *IMAGE_KEYS, *VIDEO_KEYS))
    return open_study(**{key: namespace[key] for key in keys if key in namespace})
