"""The one entry point to every dataset: ``load(name, root, split=None, ids=None, **options)``.

Each dataset yields :class:`difflens.data.scene.Scene` objects:

- ``voc``: Pascal-VOC 2012 (:class:`VOCDataset`), ``coco``: COCO 2017 (:class:`COCODataset`),
  ``davis``: DAVIS 2017 frames (:class:`DAVISDataset`);
- ``toyworld``: procedural toy scenes (:class:`ToyWorld`; ``root`` is ignored);
  ``toyvideos``: toy videos (:class:`ToyVideos`).

The keypoint-pair datasets yield :class:`difflens.data.keypoints.KeypointPair` objects
through ``load_pairs(name, root, split=..., ids=None, **options)``:

- ``spair``: SPair-71k (:class:`SPairDataset`), ``pf-pascal``: PF-PASCAL
  (:class:`PFPascalDataset`), ``pf-willow``: PF-WILLOW (:class:`PFWillowDataset`),
  ``cub``: CUB-200-2011 within-class pairs (:class:`CUBPairs`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from difflens.data.base import SceneDataset
from difflens.data.coco import COCODataset
from difflens.data.cub import CUBPairs
from difflens.data.davis import DAVISDataset
from difflens.data.names import canonical_name, canonical_pair_name
from difflens.data.pairs import PairDataset
from difflens.data.pf import PFPascalDataset, PFWillowDataset
from difflens.data.spair import SPairDataset
from difflens.data.toy import ToyVideos, ToyWorld
from difflens.data.voc import VOCDataset

_LOADERS = {"voc": VOCDataset, "coco": COCODataset, "davis": DAVISDataset}
_PAIR_LOADERS = {
    "spair": SPairDataset,
    "pf-pascal": PFPascalDataset,
    "pf-willow": PFWillowDataset,
    "cub": CUBPairs,
}


def load(
    name: str,
    root: str | Path | None = None,
    split: str | None = None,
    ids: Iterable[str] | None = None,
    **options,
) -> SceneDataset | ToyWorld | ToyVideos:
    """A dataset by name, as an iterable of :class:`Scene` with ``len()``.

    On-disk datasets skip unreadable items with a logged reason and count them in
    ``dataset.skipped`` (``dataset.skipped.summary()``); iterating never stops at a bad item.

    Args:
        name: ``voc``, ``coco``, ``davis``, ``toyworld`` or ``toyvideos``, or an alias
            (``pascal``, ``VOC2012``, ...; see :mod:`difflens.data.names`).
        root: the dataset folder (see each loader); ignored by the toy datasets.
        split: the split to read (``train``/``val``/``trainval`` for VOC and DAVIS,
            ``val2017``/``train2017`` for COCO).
        ids: image ids, file names or DAVIS sequence names to read instead of a whole split.
        **options: passed to the loader, e.g. ``include_crowd``, ``non_voc`` (COCO),
            ``classes``, ``semantics`` (DAVIS), ``n_images``, ``size``, ``seed`` (toy).

    Returns:
        :class:`VOCDataset`, :class:`COCODataset`, :class:`DAVISDataset`,
        :class:`ToyWorld` or :class:`ToyVideos`.

    Raises:
        ValueError: a toy dataset given a split or ids, or an on-disk dataset without
            ``root`` (an unknown name raises it too, from
            :func:`~difflens.data.names.canonical_name`).
    """
    key = canonical_name(name)
    if key in ("toyworld", "toyvideos"):
        if split is not None or ids is not None:
            raise ValueError(
                f"{key} has no splits or ids; choose its images with n_images/n_videos and seed"
            )
        return ToyWorld(**options) if key == "toyworld" else ToyVideos(**options)
    if root is None:
        raise ValueError(f"load({key!r}) needs the dataset's root folder")
    return _LOADERS[key](root, split=split, ids=ids, **options)


def load_pairs(
    name: str,
    root: str | Path | None,
    split: str = "test",
    ids: Iterable[str] | None = None,
    **options,
) -> PairDataset:
    """A keypoint-pair dataset by name, as an iterable of :class:`KeypointPair` with ``len()``.

    Unreadable pairs are skipped with a logged reason and counted in ``dataset.skipped``;
    iterating never stops at a bad pair. Coordinates are x/y in original image pixels.

    Args:
        name: ``spair``, ``pf-pascal``, ``pf-willow`` or ``cub``, or an alias
            (``SPair-71k``, ``pfwillow``, ``CUB_200_2011``, ...; see
            :mod:`difflens.data.names`).
        root: the dataset folder or the folder above it (see each loader).
        split: the split (``test`` by default; SPair ``trn``/``val``, PF-PASCAL
            ``trn``/``val``, CUB ``train``).
        ids: pair ids to read instead of the whole split (SPair pair-file stems,
            ``"<row>-<source>-<target>"`` for PF, ``"<image id>-<image id>"`` for CUB).
        **options: passed to the loader, e.g. ``layout``, ``pairs_from``, ``categories``,
            ``max_pairs_per_category``, ``subset``, ``seed`` (SPair); ``box``,
            ``categories`` (PF-PASCAL); ``categories`` (PF-WILLOW); ``classes``,
            ``max_pairs``, ``seed`` (CUB).

    Returns:
        :class:`SPairDataset`, :class:`PFPascalDataset`, :class:`PFWillowDataset` or
        :class:`CUBPairs`.

    Raises:
        ValueError: an unknown name (from
            :func:`~difflens.data.names.canonical_pair_name`), or no ``root``.
    """
    key = canonical_pair_name(name)
    if root is None:
        raise ValueError(f"load_pairs({key!r}) needs the dataset's root folder")
    return _PAIR_LOADERS[key](root, split=split, ids=ids, **options)
