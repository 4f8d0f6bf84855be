"""Dense feature maps of pair images, through the existing extractor, cached and bounded.

Every feature goes through :func:`~difflens.features.batch.feature_maps`, so any registry
layer or whole block (``up1`` is the output of ``up_blocks[1]``), any timestep, ensembles, a
per-image prompt and the extractor's latent mode (posterior mean, one sample, or one sample
per ensemble copy as DIFT draws them) are available, and each image's maps are cached in the
content-addressed store under a key that includes the image's prompt.

The prompt of an image is the extractor's prompt with ``{class}`` replaced by the image's
category (DIFT: ``"a photo of a {class}"`` with SPair's folder name, e.g. ``pottedplant``);
an extractor prompt without ``{class}`` is used as it is.

:class:`MapCache` keeps recently used maps in memory up to a byte budget, so an evaluation
over thousands of pairs that share images (SPair-71k pairs reuse each image many times)
holds a bounded amount of memory and recomputes nothing that the store holds.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch

from difflens.features.batch import FeatureMaps, feature_maps
from difflens.features.extractor import FeatureExtractor
from difflens.features.settings import Setting
from difflens.features.store import FeatureStore, image_digest

__all__ = ["image_prompt", "image_key", "dense_features", "MapCache"]


def image_prompt(extractor: FeatureExtractor, category: str | None) -> str:
    """The prompt of one image: the extractor's template filled with its category.

    Args:
        extractor: the extractor (its ``prompt`` is text or a ``{class}`` template).
        category: the image's category; ``None`` or ``""`` fills the template with the
            extractor's default (``"object"``).

    Returns:
        The prompt text.
    """
    return extractor.prompt_for([category] if category else [])


def image_key(image: np.ndarray, prompt: str) -> str:
    """A name for an image under a prompt: its content hash and the prompt.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        prompt: the prompt its features are computed with.

    Returns:
        ``"<content hash>|<prompt>"``.
    """
    return f"{image_digest(np.asarray(image))}|{prompt}"


def dense_features(
    images: Sequence[np.ndarray],
    extractor: FeatureExtractor,
    layers: str | Sequence[str],
    settings: Sequence[Setting | int] = (0,),
    *,
    categories: Sequence[str | None] | None = None,
    keys: Sequence[str] | None = None,
    store: FeatureStore | None = None,
    batch_size: int = 4,
    progress: bool = False,
) -> FeatureMaps:
    """Feature maps of images, each with the prompt of its category, cached per image.

    Args:
        images: ``(H, W, 3)`` uint8 RGB arrays (any size; the extractor resizes them).
        extractor: the feature extractor.
        layers: a layer name, ``"a+b"`` or a list of names (blocks too: ``"up1"``).
        settings: timesteps or :class:`~difflens.features.settings.Setting` s (ensembles).
        categories: one category per image for the ``{class}`` template; ``None``: the
            extractor's prompt as it is for every image.
        keys: names of the images in the result (default: :func:`image_key`); unique.
        store: the feature cache (default: the extractor's).
        batch_size: images per U-Net batch.
        progress: show a progress bar.

    Returns:
        ``key -> [{layer: (C, h, w) float32 CPU tensor} per setting]`` (a
        :class:`~difflens.features.batch.FeatureMaps`, whose ``skipped`` names the images
        that could not be used and ``counts`` counts them).

    Raises:
        ValueError: ``categories`` or ``keys`` do not hold one entry per image, or keys
            repeat.
    """
    if categories is not None and len(categories) != len(images):
        raise ValueError(f"{len(categories)} categories for {len(images)} images")
    cats = list(categories) if categories is not None else [None] * len(images)
    prompts = [image_prompt(extractor, c) for c in cats]
    if keys is None:
        keys = [image_key(im, p) for im, p in zip(images, prompts)]
    return feature_maps(
        list(images),
        extractor,
        layers,
        settings,
        keys=list(keys),
        prompts=prompts,
        batch_size=batch_size,
        progress=progress,
        store=store,
    )


class MapCache:
    """Least-recently-used feature maps of images, bounded in bytes.

    Args:
        max_bytes: the budget; the least recently used entries are dropped beyond it
            (an entry larger than the budget is not kept at all).

    Attributes:
        max_bytes: as given.
        hits: lookups answered from memory.
        misses: lookups that were not.
    """

    def __init__(self, max_bytes: int = 512 * 2**20):
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[str, tuple[object, int]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def size_of(value: object) -> int:
        """Bytes of the tensors in a (nested) list / dict / tensor.

        Args:
            value: a tensor, or lists and dicts of them.

        Returns:
            The sum of ``numel * element_size`` over its tensors.
        """
        if isinstance(value, torch.Tensor):
            return value.numel() * value.element_size()
        if isinstance(value, dict):
            return sum(MapCache.size_of(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return sum(MapCache.size_of(v) for v in value)
        return 0

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def get(self, key: str) -> object | None:
        """The entry of ``key`` (marked as recently used), or ``None``.

        Args:
            key: the image's key.

        Returns:
            The stored value, or ``None`` when it is not held.
        """
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: str, value: object) -> None:
        """Keep ``value`` under ``key``, dropping the least recently used beyond the budget.

        Args:
            key: the image's key.
            value: its maps.
        """
        size = self.size_of(value)
        if key in self._entries:
            self._bytes -= self._entries.pop(key)[1]
        if size > self.max_bytes:
            return
        self._entries[key] = (value, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._bytes -= dropped
