"""Video label propagation with diffusion features (the DINO / DIFT protocol), windowed and chunked.

The protocol (DINO's ``eval_video_segmentation.py``, as DIFT's ``eval_davis.py`` runs it with
Stable Diffusion features, ``Tsingularity/dift``)
-------------------------------------------------------------------------------------------
Every frame of a video is resized (:meth:`PropagationPreset.frame_size`) and turned into one
feature map ``(C, h, w)`` (a U-Net layer at a timestep, averaged over an ensemble of noise
draws, empty prompt). The first frame's annotation is resized with NEAREST to ``(h, w)`` and
one-hot encoded with ``max label + 1`` channels (:func:`first_frame_labels`). Then, for every
later frame (the *target*, whose cells are the queries):

1. the context is the first frame ALWAYS plus the ``n_last_frames`` most recent previous
   frames: their features and their soft, un-normalised propagated label maps (a FIFO);
2. the affinity of query cell ``q`` of the target with key cell ``k`` of context frame ``n``
   is ``exp(cos(f_target[q], f_n[k]) / temperature)``, kept only if ``k`` lies in the window
   ``|dy| <= radius`` and ``|dx| <= radius`` feature cells around ``q`` (0 outside it);
3. over ALL keys of all context frames jointly, each query keeps its ``topk`` largest
   affinities -- every affinity ``>=`` the ``topk``-th largest, so ties at the threshold are
   all kept -- and the others are set to 0; each query's weights are normalised to sum 1;
4. the target's soft labels are ``labels_ctx @ aff``: per query the weighted sum of the kept
   keys' soft labels (:func:`propagate_step`). They join the FIFO as they are;
5. the output label map: the soft labels are upsampled by the stride (bilinear,
   ``align_corners=False``), each channel with a maximum above 0 is min-max normalised, the
   argmax over channels is taken and resized with NEAREST to the original frame size
   (:func:`soft_to_labels`). Frame 0's output is the given annotation itself.

The windowed, chunked computation
---------------------------------
A query only ever sees keys within ``radius`` cells, so the affinities of all other keys are
never computed. The target's cells are cut into rectangular tiles of at most ``chunk`` cells
(the most square shape that fits, :func:`window_tiles`). The keys a tile can see -- its box
grown by ``radius`` cells on every side, cut at the border -- are scored with ONE matrix
product against the tile's queries: for a row of tiles, the context rows they reach are
copied once, column-major (``(w, N, rows, C)``), so that each tile's keys are a contiguous
block. The scores are then masked to each query's own window (-inf outside), the top-k
threshold is found, and the kept keys' soft labels are gathered and weighted. Memory and time
scale with the window, not with the frame: at DAVIS scale (60 x 104 cells, radius 15, 29
context frames of 640 channels, ``chunk=64``) a query scores about 1,100 keys per context frame
instead of 6,240, and a step holds the context, one row of tiles' keys and one tile's scores
(``benchmarks/propagation.py``). With ``radius=None`` (DINO's ``size_mask_neighborhood = 0``, no
window) a tile's keys are whole frames and the method is the dense one done in chunks.

The top-k threshold is found on the cosines (``exp`` is increasing, so the kept set is the
same) and only the kept ones are exponentiated; the result equals the dense computation's up
to floating-point rounding (tested against a dense implementation on random features in
``tests/test_propagation.py``).

Deliberate differences from DIFT's script (each one a documented choice):

1. An annotation value 255 (void) in the first frame is treated as background; DINO's one-hot
   encoding would give it a channel of its own (256 channels).
2. The context is not capped at 10 frames for the sequence ``shooting`` (DIFT's workaround for
   running out of GPU memory; chunking makes it unnecessary).
3. Frames are resized by the feature extractor (PIL bilinear), not with OpenCV; an ensemble
   shares one VAE latent (the posterior mean, or one seeded sample) across its noise draws,
   where DIFT draws a posterior sample per copy.
4. A channel whose values are all equal and above 0 makes DINO's min-max normalisation divide
   0 by 0 (NaN), and ``torch.max`` then picks that channel everywhere; here such a channel is
   set to ``+inf``, which gives the same label map without NaNs.
5. The exponential is shifted by each query's largest kept cosine, ``exp((cos - max) / T)``,
   which the normalisation cancels: DINO's ``exp(cos / T)`` overflows float32 for
   ``T < 0.0113``; here any temperature works.
6. ``n_last_frames=0`` keeps the first frame alone in the context (DINO's ``Queue(0)`` would be
   unbounded, and its ``get()`` on the empty queue would block).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from PIL import Image

from difflens.correspondence.davis_eval import (
    DavisResult,
    SequenceScores,
    bootstrap_over_sequences,
    evaluate_sequence,
    result_from_scores,
    write_csvs,
    write_results,
)
from difflens.data.scene import Scene
from difflens.features.batch import feature_maps
from difflens.features.extractor import FeatureExtractor
from difflens.features.settings import Setting
from difflens.features.store import FeatureStore

__all__ = [
    "DIFT_SD",
    "PRESETS",
    "TOY",
    "LabelPropagator",
    "LabelVideo",
    "PropagationPreset",
    "PropagationRun",
    "first_frame_labels",
    "frame_features",
    "frame_size",
    "compare_extractors",
    "label_map",
    "make_propagation_extractor",
    "open_label_videos",
    "propagate_features",
    "propagate_step",
    "propagate_video",
    "run_propagation",
    "search_layers",
    "soft_to_labels",
    "video_from_scenes",
    "window_tiles",
    "with_random_weights",
]

VOID_LABEL = 255
"""Label of void pixels in DAVIS annotations (background for propagation)."""


def frame_size(
    height: int, width: int, short_side: int = 480, multiple: int = 32
) -> tuple[int, int]:
    """The size a frame is resized to: short side ``short_side``, long side floored to ``multiple``.

    DIFT's ``eval_davis.py`` reading (``read_frame``): the short side becomes ``short_side``, the
    long side keeps the aspect ratio and is floored to a multiple of ``multiple``
    (854 x 480 -> 832 x 480). A square frame becomes ``short_side`` x ``short_side``.

    Args:
        height: the frame's height in pixels.
        width: the frame's width in pixels.
        short_side: the short side after resizing, in pixels.
        multiple: the long side is floored to a multiple of this, in pixels.

    Returns:
        ``(height, width)`` in pixels after resizing.

    Raises:
        ValueError: if a size is not positive, or the long side floors to 0.
    """
    if min(height, width, short_side, multiple) <= 0:
        raise ValueError(
            f"frame_size: sizes must be positive, got {height} x {width}, short side "
            f"{short_side}, multiple {multiple}"
        )
    if height <= width:
        long_side = int((short_side * width / height) // multiple * multiple)
        size = (short_side, long_side)
    else:
        long_side = int((short_side * height / width) // multiple * multiple)
        size = (long_side, short_side)
    if min(size) <= 0:
        raise ValueError(f"frame_size: {height} x {width} floors to {size}")
    return size


@dataclass(frozen=True)
class PropagationPreset:
    """Everything that shapes one propagation run: features, frame size and propagation.

    Attributes:
        name: the preset's name.
        layer: the registry name of the captured layer (``"up2"``: ``unet.up_blocks[2]``).
        timestep: the scheduler index the latent is noised to (0..T-1).
        ensemble: noise draws averaged per frame.
        temperature: the softmax temperature T of ``exp(cos / T)``.
        topk: affinities kept per query, over all context keys jointly.
        n_last_frames: recent frames in the context, besides the first frame.
        radius: the window's half side in feature cells (``size_mask_neighborhood``);
            ``None`` for no window (DINO's 0).
        short_side: frames are resized so that their short side is this many pixels.
        size_multiple: the long side is floored to a multiple of this many pixels.
        prompt: the text prompt (empty: the protocol's).
        latent: the VAE latent of the extractor, ``"mean"`` or ``"sample"``.
        model: the model the preset was set for (a hub id, ``"toy"``), or ``None``.
        chunk: query cells scored at once by default (a speed and memory knob, not part of
            the protocol; see :func:`propagate_step`).
    """

    name: str
    layer: str
    timestep: int
    ensemble: int
    temperature: float
    topk: int
    n_last_frames: int
    radius: int | None
    short_side: int
    size_multiple: int
    prompt: str = ""
    latent: str = "mean"
    model: str | None = None
    chunk: int = 64

    def frame_size(self, height: int, width: int) -> tuple[int, int]:
        """The size frames of ``height`` x ``width`` pixels are resized to (:func:`frame_size`).

        Args:
            height: the frame's height in pixels.
            width: the frame's width in pixels.

        Returns:
            ``(height, width)`` in pixels.
        """
        return frame_size(height, width, self.short_side, self.size_multiple)

    @property
    def setting(self) -> Setting:
        """The timestep and ensemble as a :class:`~difflens.features.settings.Setting`."""
        return Setting(self.timestep, self.ensemble)

    def with_(self, **changes: object) -> PropagationPreset:
        """A copy with some fields changed.

        Args:
            **changes: new field values.

        Returns:
            The new preset.
        """
        return replace(self, **changes)


DIFT_SD = PropagationPreset(
    name="dift_sd",
    layer="up2",
    timestep=51,
    ensemble=8,
    temperature=0.2,
    topk=15,
    n_last_frames=28,
    radius=15,
    short_side=480,
    size_multiple=32,
    prompt="",
    latent="sample",
    model="stabilityai/stable-diffusion-2-1",
)
"""DIFT's DAVIS settings for SD (the README's command, NOT ``eval_davis.py``'s argparse
defaults): SD 2.1, ``t=51``, ``up_ft_index=2`` (``up_blocks[2]``'s output, 640 channels at
stride 8: 60 x 104 cells for 832 x 480 frames), ``temperature=0.2``, ``topk=15``,
``n_last_frames=28``, ``ensemble=8``, ``size_mask_neighborhood=15``."""

TOY = PropagationPreset(
    name="toy",
    layer="up3",
    timestep=0,
    ensemble=1,
    temperature=0.2,
    topk=15,
    n_last_frames=28,
    radius=16,
    short_side=64,
    size_multiple=8,
    model="toy",
    chunk=64,
)
"""The offline toy model on 64 px frames. The layer and timestep were chosen on validation
toy videos only, by the trained model's J&F (:func:`search_layers`, as notebook 09 reruns it):
on 3 validation videos of 16 frames, 8 encoder and decoder layers x t = 0, 50, ``up3`` (the
last decoder block, 16 channels at 64 x 64) at t = 0 scored 0.848, ``up2`` 0.715, ``up2.res1``
0.647, ``up1`` 0.617, the 16 x 16 layers 0.43-0.54 and ``mid`` 0.40 (toy model ``toy-v2``);
on 6 validation videos of 24 frames ``up3`` 0.734, ``up2`` 0.594, ``up2.res1`` 0.585, ``up1``
0.531. The radius is a quarter of the map's side, as DIFT's 15 cells are of DAVIS's 60; the
other propagation settings are DIFT's."""


PRESETS: dict[str, PropagationPreset] = {p.name: p for p in (DIFT_SD, TOY)}
"""The presets by name."""


# ----------------------------------------------------------------------------- labels in


def label_map(scene: Scene) -> np.ndarray:
    """The label map of a scene: each instance's pixels hold its instance id, 0 elsewhere.

    Args:
        scene: a scene whose instance ids are 1..255 (toy videos number objects from 1, and
            an object keeps its id in every frame).

    Returns:
        ``(H, W)`` uint8 labels.

    Raises:
        ValueError: if an instance id is outside 1..254 (255 is DAVIS's void label), or
            two instances share a pixel.
    """
    labels = np.zeros(scene.masks.shape[1:], dtype=np.uint8)
    if scene.masks.shape[0] and int(scene.masks.sum(0).max()) > 1:
        raise ValueError(f"scene {scene.image_id!r}: instance masks overlap")
    for mask, instance in zip(scene.masks, scene.instance_ids):
        if not 1 <= int(instance) < VOID_LABEL:
            raise ValueError(
                f"scene {scene.image_id!r}: instance id {instance} is not a label in 1..254"
            )
        labels[mask] = int(instance)
    return labels


def first_frame_labels(mask: ArrayLike, size: tuple[int, int]) -> torch.Tensor:
    """The first frame's labels at feature resolution, one-hot (DINO's ``read_seg``).

    The annotation is resized with PIL's NEAREST filter to ``size`` and one-hot encoded with
    ``max + 1`` channels, the maximum taken AFTER resizing (as DINO's ``to_one_hot`` does: an
    object with the largest label that vanishes at feature resolution gets no channel and is
    never predicted). Void (255) is background (module docstring, difference 1).

    Args:
        mask: ``(H, W)`` integer labels in 0..255 (0 background).
        size: ``(h, w)`` of the feature map, in cells.

    Returns:
        ``(L, h, w)`` float32 one-hot labels, ``L = max label + 1``.

    Raises:
        ValueError: if ``mask`` is not 2-D or holds labels outside 0..255.
    """
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"first_frame_labels: expected an (H, W) mask, got shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError("first_frame_labels: labels must lie in 0..255")
    array = np.where(array == VOID_LABEL, 0, array).astype(np.uint8)
    small = np.asarray(Image.fromarray(array).resize((size[1], size[0]), Image.NEAREST))
    index = torch.from_numpy(small.astype(np.int64))
    return F.one_hot(index, int(index.max()) + 1).permute(2, 0, 1).float()


# ----------------------------------------------------------------------------- one step


def window_tiles(height: int, width: int, chunk: int) -> list[tuple[int, int, int, int]]:
    """Rectangular tiles of at most ``chunk`` cells covering a ``height`` x ``width`` grid.

    The tile is the most square ``ty x tx`` with ``ty * tx <= chunk`` (``ty <= height``,
    ``tx <= width``); the grid's last row and column of tiles may be smaller.

    Args:
        height: the grid's rows.
        width: the grid's columns.
        chunk: the most cells per tile (>= 1).

    Returns:
        ``(y0, y1, x0, x1)`` per tile, row-major; each tile is ``[y0, y1) x [x0, x1)``.

    Raises:
        ValueError: if ``chunk < 1`` or the grid is empty.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if height < 1 or width < 1:
        raise ValueError(f"window_tiles: empty grid {height} x {width}")
    ty = max(1, min(height, math.isqrt(chunk)))
    tx = max(1, min(width, chunk // ty))
    ty = max(1, min(height, chunk // tx))
    return [
        (y0, min(y0 + ty, height), x0, min(x0 + tx, width))
        for y0 in range(0, height, ty)
        for x0 in range(0, width, tx)
    ]


def _step_problem(query, context, labels, temperature, topk, radius) -> str | None:
    """What is wrong with the inputs of :func:`propagate_step`, or None."""
    if query.ndim != 3 or context.ndim != 4 or labels.ndim != 4:
        return (
            "propagate_step: expected query (h, w, C), context (N, h, w, C) and labels "
            f"(N, h, w, L); got {tuple(query.shape)}, {tuple(context.shape)}, "
            f"{tuple(labels.shape)}"
        )
    if context.shape[1:] != query.shape or labels.shape[:3] != context.shape[:3]:
        return (
            f"propagate_step: query {tuple(query.shape)}, context {tuple(context.shape)} and "
            f"labels {tuple(labels.shape)} do not fit"
        )
    if context.shape[0] < 1:
        return "propagate_step: the context holds no frame"
    if not temperature > 0 or topk < 1 or (radius is not None and radius < 0):
        return (
            f"propagate_step: need temperature > 0, topk >= 1 and radius >= 0 or None; got "
            f"{temperature}, {topk}, {radius}"
        )
    return None


def _window_mask(tile, keys, reach: int, device) -> torch.Tensor:
    """``(q, kx, ky)`` bool: key column ``kx``, row ``ky`` lies within ``reach`` of query ``q``."""
    y0, y1, x0, x1 = tile
    ky0, ky1, kx0, kx1 = keys
    dy = torch.arange(y0, y1, device=device)[:, None] - torch.arange(ky0, ky1, device=device)
    dx = torch.arange(x0, x1, device=device)[:, None] - torch.arange(kx0, kx1, device=device)
    near_y, near_x = dy.abs() <= reach, dx.abs() <= reach
    # query (qy, qx) row-major, key (kx, ky): near_y[qy, ky] & near_x[qx, kx]
    mask = near_x[None, :, :, None] & near_y[:, None, None, :]
    return mask.reshape((y1 - y0) * (x1 - x0), kx1 - kx0, ky1 - ky0)


def _tile_labels(
    scores: torch.Tensor, labels: torch.Tensor, temperature: float, topk: int
) -> torch.Tensor:
    """``(q, L)`` labels of a tile's queries from masked cosines ``(q, keys)`` (-inf: outside).

    Every score ``>=`` the ``topk``-th largest is kept (DINO's rule: ``aff[aff < min(topk)] =
    0``); the exponential is shifted by each query's largest kept score, which the
    normalisation cancels, so that no temperature overflows. Without ties at the threshold
    (the rule keeps exactly ``topk`` keys) only the top-k are weighted and gathered.
    """
    k = min(topk, scores.shape[1])
    if k < scores.shape[1]:
        # the (k+1)-th largest below the k-th: the rule keeps exactly the top k
        values, index = torch.topk(scores, k + 1, dim=1, sorted=True)
        if bool((values[:, k] < values[:, k - 1]).all()):
            values, index = values[:, :k], index[:, :k]
            weights = torch.exp((values - values[:, :1]) / temperature)
            weights = weights / weights.sum(dim=1, keepdim=True)
            return torch.einsum("qk,qkl->ql", weights, labels[index])
    # ties at the threshold, or at most k keys in the window: exp(-inf) = 0 drops the outside
    values = torch.topk(scores, k, dim=1, sorted=True).values
    threshold, top = values[:, k - 1 :], values[:, :1]
    weights = torch.where(scores >= threshold, torch.exp((scores - top) / temperature), 0.0)
    return (weights / weights.sum(dim=1, keepdim=True)) @ labels


def _key_band(context: torch.Tensor, labels: torch.Tensor, ky0: int, ky1: int):
    """Rows ``ky0:ky1`` of every context frame, column-major: ``(w, N, ky, C)``, ``(w, N, ky, L)``.

    One copy per band of tiles; a tile's keys (columns ``kx0:kx1``) are then a contiguous
    ``(kx * N * ky, C)`` block, scored without another copy.
    """
    return (
        context[:, ky0:ky1].permute(2, 0, 1, 3).contiguous(),
        labels[:, ky0:ky1].permute(2, 0, 1, 3).contiguous(),
    )


def propagate_step(
    query: torch.Tensor,
    context: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    topk: int,
    radius: int | None,
    chunk: int = 64,
) -> torch.Tensor:
    """Soft labels of one target frame from its context (steps 2-4 of the module docstring).

    Inputs are channels-last and L2-normalised over channels (the cosine is their dot
    product); see the module docstring for the windowed, chunked computation.

    Args:
        query: ``(h, w, C)`` the target's normalised features.
        context: ``(N, h, w, C)`` the context frames' normalised features.
        labels: ``(N, h, w, L)`` the context frames' soft labels.
        temperature: T of ``exp(cos / T)``.
        topk: affinities kept per query over all ``N`` frames jointly (ties at the threshold
            are all kept).
        radius: window half side in cells; ``None`` for the whole frame.
        chunk: the most query cells scored at once (memory: about
            ``chunk x N x (sqrt(chunk) + 2 radius)^2`` scores, plus one band of
            ``N x (sqrt(chunk) + 2 radius) x w`` keys).

    Returns:
        ``(h, w, L)`` soft labels, on the inputs' device and dtype; each query's are a convex
        combination of context labels.

    Raises:
        ValueError: if the shapes do not fit or a setting is out of range.
    """
    problem = _step_problem(query, context, labels, temperature, topk, radius)
    if problem:
        raise ValueError(problem)
    n, h, w, c = context.shape
    out = torch.empty((h, w, labels.shape[-1]), dtype=labels.dtype, device=labels.device)
    reach = max(h, w) if radius is None else radius
    band, band_of = None, None
    for y0, y1, x0, x1 in window_tiles(h, w, chunk):
        ky0, ky1 = max(0, y0 - reach), min(h, y1 + reach)
        kx0, kx1 = max(0, x0 - reach), min(w, x1 + reach)
        if band_of != (ky0, ky1):
            band, band_of = _key_band(context, labels, ky0, ky1), (ky0, ky1)
        q = query[y0:y1, x0:x1].reshape(-1, c)
        scores = (q @ band[0][kx0:kx1].view(-1, c).T).view(q.shape[0], kx1 - kx0, n, ky1 - ky0)
        valid = _window_mask((y0, y1, x0, x1), (ky0, ky1, kx0, kx1), reach, q.device)
        scores.masked_fill_(~valid[:, :, None, :], -math.inf)
        tile = _tile_labels(
            scores.view(q.shape[0], -1),
            band[1][kx0:kx1].reshape(-1, labels.shape[-1]),
            temperature,
            topk,
        )
        out[y0:y1, x0:x1] = tile.view(y1 - y0, x1 - x0, -1)
    return out


# ----------------------------------------------------------------------------- a video


class LabelPropagator:
    """One video's propagation state: the first frame and a FIFO of the most recent frames.

    Features and soft labels live in a preallocated ring buffer of ``1 + n_last_frames``
    frames, channels-last and L2-normalised (slot 0 the first frame, always); once the
    buffer is full, each new frame replaces the oldest recent one. The order of frames in
    the buffer does not matter: the context's keys are pooled.

    Args:
        first_features: ``(C, h, w)`` features of the first frame.
        first_labels: ``(L, h, w)`` its labels (:func:`first_frame_labels`).
        temperature: T of ``exp(cos / T)``.
        topk: affinities kept per query.
        n_last_frames: recent frames in the context besides the first (>= 0).
        radius: window half side in cells, ``None`` for the whole frame.
        chunk: query cells scored at once (see :func:`propagate_step`).
        dtype: the arithmetic's precision (float32 as DIFT; float64 for checks).

    Raises:
        ValueError: if the shapes differ or ``n_last_frames < 0``.
    """

    def __init__(
        self,
        first_features: torch.Tensor,
        first_labels: torch.Tensor,
        *,
        temperature: float,
        topk: int,
        n_last_frames: int,
        radius: int | None,
        chunk: int = 64,
        dtype: torch.dtype = torch.float32,
    ):
        if first_features.ndim != 3 or first_labels.ndim != 3:
            raise ValueError("LabelPropagator: expected (C, h, w) features and (L, h, w) labels")
        if first_features.shape[1:] != first_labels.shape[1:]:
            raise ValueError(
                f"LabelPropagator: features {tuple(first_features.shape)} and labels "
                f"{tuple(first_labels.shape)} differ in size"
            )
        if n_last_frames < 0:
            raise ValueError(f"n_last_frames must be >= 0, got {n_last_frames}")
        c, h, w = first_features.shape
        device = first_features.device
        self.settings = {"temperature": temperature, "topk": topk, "radius": radius, "chunk": chunk}
        self.dtype = dtype
        self.features = torch.empty((1 + n_last_frames, h, w, c), dtype=dtype, device=device)
        self.labels = torch.empty(
            (1 + n_last_frames, h, w, first_labels.shape[0]), dtype=dtype, device=device
        )
        self.features[0] = self._normalised(first_features)
        self.labels[0] = first_labels.to(device=device, dtype=dtype).permute(1, 2, 0)
        self.n_recent = 0
        self.pushed = 0

    def _normalised(self, features: torch.Tensor) -> torch.Tensor:
        """``(h, w, C)`` L2-normalised over channels (``F.normalize``, eps 1e-12)."""
        return F.normalize(features.to(dtype=self.dtype).permute(1, 2, 0), dim=-1)

    @property
    def n_context(self) -> int:
        """Frames in the context now: the first plus the recent ones."""
        return 1 + self.n_recent

    def step(self, features: torch.Tensor) -> torch.Tensor:
        """Propagate to the next frame, then put it into the FIFO.

        Args:
            features: ``(C, h, w)`` features of the next frame.

        Returns:
            ``(L, h, w)`` soft, un-normalised labels of that frame (float, the propagator's
            dtype, on the features' device).

        Raises:
            ValueError: if the features' shape differs from the first frame's.
        """
        if tuple(features.shape) != (self.features.shape[3], *self.features.shape[1:3]):
            raise ValueError(
                f"LabelPropagator.step: features {tuple(features.shape)}, the first frame's "
                f"are {(self.features.shape[3], *self.features.shape[1:3])}"
            )
        query = self._normalised(features)
        n = self.n_context
        soft = propagate_step(query, self.features[:n], self.labels[:n], **self.settings)
        capacity = self.features.shape[0] - 1
        if capacity > 0:
            slot = 1 + self.pushed % capacity
            self.features[slot], self.labels[slot] = query, soft
            self.n_recent = min(capacity, self.n_recent + 1)
            self.pushed += 1
        return soft.permute(2, 0, 1)


def soft_to_labels(soft: torch.Tensor, stride: int, size: tuple[int, int]) -> np.ndarray:
    """A frame's label map from its soft labels (step 5 of the module docstring).

    Bilinear upsampling by ``stride`` (``align_corners=False``), min-max normalisation of
    every channel whose maximum is above 0 (DINO's ``norm_mask``; a constant positive channel
    becomes ``+inf``, see difference 4), the first maximal channel per pixel
    (``torch.max``), then PIL's NEAREST resize to ``size``.

    Args:
        soft: ``(L, h, w)`` soft labels.
        stride: pixels per feature cell of the resized frame (8 for SD's ``up2``).
        size: ``(H, W)`` of the original frame, in pixels.

    Returns:
        ``(H, W)`` uint8 labels.

    Raises:
        ValueError: if ``soft`` is not 3-D, has more than 256 channels, or ``stride < 1``.
    """
    if soft.ndim != 3 or soft.shape[0] > 256 or stride < 1:
        raise ValueError(
            f"soft_to_labels: expected (L <= 256, h, w) labels and stride >= 1, got "
            f"{tuple(soft.shape)} and {stride}"
        )
    up = F.interpolate(
        soft[None].float(),
        scale_factor=stride,
        mode="bilinear",
        align_corners=False,
        recompute_scale_factor=False,
    )[0]
    low, high = up.amin(dim=(1, 2), keepdim=True), up.amax(dim=(1, 2), keepdim=True)
    span = high - low
    scaled = torch.where(span > 0, (up - low) / torch.where(span > 0, span, 1.0), math.inf)
    normalised = torch.where(high > 0, scaled, up)
    labels = torch.max(normalised, dim=0).indices.to(torch.uint8).cpu().numpy()
    return np.asarray(Image.fromarray(labels).resize((size[1], size[0]), Image.NEAREST))


def propagate_features(
    features: Iterable[torch.Tensor],
    first_mask: ArrayLike,
    frame_shape: tuple[int, int],
    preset: PropagationPreset,
    *,
    chunk: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Iterator[np.ndarray]:
    """Label maps of a video's frames from their feature maps (the whole protocol).

    Args:
        features: ``(C, h, w)`` feature maps of frames 0, 1, 2, ... (an iterable: computed
            lazily if it is a generator).
        first_mask: ``(H, W)`` integer annotation of frame 0 (0 background, 255 void).
        frame_shape: ``(height, width)`` of the resized frames the features were computed
            from, in pixels (the stride is ``height / h``).
        preset: the propagation settings (``temperature``, ``topk``, ``n_last_frames``,
            ``radius``; its feature fields are not used here).
        chunk: query cells scored at once (default: the preset's).
        dtype: the arithmetic's precision.

    Yields:
        ``(H, W)`` uint8 label maps: frame 0's annotation as given, then one per later frame.

    Raises:
        ValueError: if the first mask is not 2-D or the feature maps do not divide the frame
            shape into a whole stride.
    """
    mask = np.asarray(first_mask)
    if mask.ndim != 2:
        raise ValueError(f"propagate_features: first_mask must be (H, W), got {mask.shape}")
    stream = iter(features)
    first = next(stream, None)
    if first is None:
        return
    stride = _stride(frame_shape, tuple(first.shape[1:]))
    propagator = LabelPropagator(
        first,
        first_frame_labels(mask, tuple(first.shape[1:])),
        temperature=preset.temperature,
        topk=preset.topk,
        n_last_frames=preset.n_last_frames,
        radius=preset.radius,
        chunk=chunk or preset.chunk,
        dtype=dtype,
    )
    yield mask.astype(np.uint8)
    for fmap in stream:
        yield soft_to_labels(propagator.step(fmap), stride, mask.shape)


def _stride(frame_shape: tuple[int, int], map_shape: tuple[int, int]) -> int:
    """Pixels per feature cell, the same on both axes and whole."""
    height, width = frame_shape
    h, w = map_shape
    stride = height // h
    if stride < 1 or (h * stride, w * stride) != (height, width):
        raise ValueError(
            f"feature maps of {h} x {w} cells do not divide frames of {height} x {width} px "
            "into a whole stride"
        )
    return stride


def make_propagation_extractor(
    preset: PropagationPreset,
    frame_shape: tuple[int, int],
    model: str | None = None,
    **options: object,
) -> FeatureExtractor:
    """A feature extractor for a preset: its model, prompt, latent and frame size.

    Args:
        preset: the preset.
        frame_shape: ``(height, width)`` of the original frames in pixels (DAVIS 480p:
            ``(480, 854)``); the extractor resizes them to ``preset.frame_size``.
        model: overrides ``preset.model`` (a hub id, a folder, ``"toy"``).
        **options: further :func:`~difflens.features.extractor.make_extractor` arguments
            (``device``, ``dtype``, ``cache``, ``seed``, ...).

    Returns:
        The extractor.

    Raises:
        ValueError: if neither ``model`` nor the preset names a model.
        BadInputError: if the extractor does not accept the preset's frame size (a
            ``ValueError`` too): a side that is not a multiple of the VAE factor. DIFT's
            832 x 480 frames give SD a 104 x 60 latent, which diffusers' U-Net handles by
            upsampling to its skip connections' sizes.
    """
    from difflens.core.errors import BadInputError
    from difflens.features.extractor import make_extractor

    model = model or preset.model
    if not model:
        raise ValueError(f"preset {preset.name!r} names no model: pass model=")
    size = preset.frame_size(*frame_shape)
    options = {"prompt": preset.prompt, "latent": preset.latent, **options}
    try:
        return make_extractor(model, size, **options)  # type: ignore[arg-type]
    except BadInputError as error:
        raise BadInputError(
            f"preset {preset.name!r} resizes {frame_shape[0]} x {frame_shape[1]} frames to "
            f"{size[0]} x {size[1]} (short side {preset.short_side}, long side floored to "
            f"{preset.size_multiple}); the extractor refuses that size: {error}"
        ) from error


def frame_features(
    images: Iterable[np.ndarray],
    extractor: FeatureExtractor,
    preset: PropagationPreset,
    *,
    batch_size: int = 4,
    store: FeatureStore | None = None,
) -> Iterator[torch.Tensor]:
    """The preset's feature map of every frame, extracted ``batch_size`` frames at a time.

    Args:
        images: ``(H, W, 3)`` uint8 RGB frames in order (any iterable; read lazily).
        extractor: the feature extractor; its ``size`` is the resized frame size.
        preset: gives the layer, timestep and ensemble.
        batch_size: frames per U-Net batch.
        store: feature cache (default: the extractor's; cached per frame content).

    Yields:
        ``(C, h, w)`` float32 CPU feature maps, one per frame. A frame that cannot be used
        raises ``ValueError`` naming it and the reason.
    """
    batch: list[np.ndarray] = []
    index = 0
    for image in images:
        batch.append(image)
        if len(batch) == batch_size:
            yield from _batch_features(batch, index, extractor, preset, store)
            index, batch = index + len(batch), []
    if batch:
        yield from _batch_features(batch, index, extractor, preset, store)


def _batch_features(batch, start, extractor, preset, store) -> list[torch.Tensor]:
    keys = [f"frame {start + i}" for i in range(len(batch))]
    maps = feature_maps(
        batch,
        extractor,
        preset.layer,
        [preset.setting],
        keys=keys,
        batch_size=len(batch),
        progress=False,
        store=store,
    )
    missing = [key for key in keys if key not in maps]
    if missing:
        raise ValueError(f"no features for {', '.join(missing)}: {maps.skipped.summary()}")
    return [maps[key][0][preset.layer] for key in keys]


def propagate_video(
    images: Sequence[np.ndarray],
    first_mask: ArrayLike,
    extractor: FeatureExtractor,
    preset: PropagationPreset,
    *,
    chunk: int | None = None,
    batch_size: int = 4,
    store: FeatureStore | None = None,
    dtype: torch.dtype = torch.float32,
) -> np.ndarray:
    """Propagate the first frame's annotation through a video (the whole protocol).

    Args:
        images: the frames, ``(H, W, 3)`` uint8 RGB, all of one size (a lazy sequence, such
            as a DAVIS video, is read frame by frame).
        first_mask: ``(H, W)`` integer annotation of frame 0.
        extractor: made for the preset (:func:`make_propagation_extractor`): its ``size``
            must be ``preset.frame_size(H, W)``.
        preset: layer, timestep, ensemble and propagation settings.
        chunk: query cells scored at once (memory, see :func:`propagate_step`; default: the
            preset's).
        batch_size: frames per U-Net batch.
        store: feature cache (default: the extractor's).
        dtype: the propagation's precision.

    Returns:
        ``(T, H, W)`` uint8 label maps; frame 0 is ``first_mask``.

    Raises:
        ValueError: if the video is empty, the mask's size is not the frames', or the
            extractor's size is not the preset's frame size.
    """
    if len(images) == 0:
        raise ValueError("propagate_video: the video has no frames")
    shape = np.asarray(images[0]).shape[:2]
    if np.asarray(first_mask).shape != shape:
        raise ValueError(
            f"propagate_video: the first mask is {np.asarray(first_mask).shape}, the frames "
            f"are {shape}"
        )
    wanted = preset.frame_size(*shape)
    if tuple(extractor.size) != wanted:
        raise ValueError(
            f"the extractor resizes frames to {tuple(extractor.size)}; preset {preset.name!r} "
            f"needs {wanted} for {shape[0]} x {shape[1]} frames (make_propagation_extractor)"
        )
    features = frame_features(images, extractor, preset, batch_size=batch_size, store=store)
    maps = propagate_features(features, first_mask, wanted, preset, chunk=chunk, dtype=dtype)
    return np.stack(list(maps))


# ----------------------------------------------------------------------------- videos, J&F


@dataclass(frozen=True)
class LabelVideo:
    """A video to propagate labels through and score: frames, their annotations, names.

    Attributes:
        name: the sequence name (a plain folder name: results go to ``<results>/<name>/``).
        images: ``(H, W, 3)`` uint8 RGB frames in order (may be lazy, read when indexed).
        labels: ``(H, W)`` integer annotations, one per frame (may be lazy); frame 0's is
            propagated, the others are the ground truth of the J&F.
        frame_names: one name per frame, without extension (``"00000"``), as result PNGs
            are named.
        palette: ``(N, 3)`` uint8 colours for the result PNGs (None: the DAVIS palette).
    """

    name: str
    images: Sequence[np.ndarray]
    labels: Sequence[np.ndarray]
    frame_names: tuple[str, ...]
    palette: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.frame_names)


def video_from_scenes(name: str, frames: Sequence[Scene]) -> LabelVideo:
    """A :class:`LabelVideo` from a video's scenes (toy videos): labels from instance masks.

    Args:
        name: the sequence name.
        frames: the frames in order; an instance keeps its id in every frame (ids 1..254).

    Returns:
        The video, frames named ``00000``, ``00001``, ... by position.
    """
    return LabelVideo(
        name=name,
        images=[scene.image for scene in frames],
        labels=[label_map(scene) for scene in frames],
        frame_names=tuple(f"{i:05d}" for i in range(len(frames))),
    )


class _DavisLabels(Sequence):
    """A DAVIS video's annotations, read when indexed."""

    def __init__(self, video) -> None:
        self.video = video

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.video.labels(index)


def open_label_videos(
    dataset: str,
    *,
    n_videos: int = 4,
    n_frames: int = 24,
    seed: int = 0,
    scene_size: int = 64,
    split: str | None = None,
    davis_root: str | None = None,
    sequences: Sequence[str] | None = None,
) -> dict[str, LabelVideo]:
    """The videos of a propagation study, without classes.

    Args:
        dataset: ``"toyvideos"`` (offline) or ``"davis"``.
        n_videos: toy videos: how many.
        n_frames: toy videos: frames per video.
        seed: toy videos: the first seed within the split.
        scene_size: toy videos: frame side in pixels.
        split: ``toyvideos``: ``"test"`` (held out, default) or ``"validation"``;
            ``davis``: ``"val"`` (default), ``"train"`` or ``"trainval"``.
        davis_root: the DAVIS 2017 folder.
        sequences: ``davis``: these sequences instead of the split's.

    Returns:
        ``name -> LabelVideo``; DAVIS frames and annotations are read when indexed.

    Raises:
        ValueError: an unknown dataset, or ``davis`` without ``davis_root``.
    """
    from difflens.data.davis import DAVISDataset
    from difflens.data.toy.videos import ToyVideos

    if dataset == "toyvideos":
        toy = ToyVideos(n_videos, n_frames, scene_size, seed, split=split or "test")
        return {name: video_from_scenes(name, toy.frames(name)) for name in toy.sequences}
    if dataset != "davis":
        raise ValueError(f"dataset {dataset!r}: choose toyvideos or davis")
    if not davis_root:
        raise ValueError("dataset 'davis' needs davis_root")
    ids = list(sequences) if sequences else None
    davis = DAVISDataset(davis_root, split=None if ids else (split or "val"), ids=ids)
    out = {}
    for name in davis.sequences:
        video = davis.video(name)
        out[name] = LabelVideo(
            name, video, _DavisLabels(video), tuple(video.frame_names), video.palette
        )
    return out


@dataclass
class PropagationRun:
    """The outcome of :func:`run_propagation`.

    Attributes:
        result: the J&F (:class:`~difflens.correspondence.davis_eval.DavisResult`).
        predictions: ``name -> (T, H, W)`` uint8 label maps of the videos asked to be kept.
        results_dir: where the result PNGs and the two CSVs were written, or ``None``.
    """

    result: DavisResult
    predictions: dict[str, np.ndarray]
    results_dir: Path | None = None


def run_propagation(
    videos: Mapping[str, LabelVideo],
    extractor: FeatureExtractor,
    preset: PropagationPreset,
    *,
    results_dir: str | Path | None = None,
    set_name: str = "val",
    keep: bool | Collection[str] = True,
    chunk: int | None = None,
    batch_size: int = 4,
    store: FeatureStore | None = None,
    progress: bool = True,
) -> PropagationRun:
    """Propagate every video's first annotation and score the J&F, video by video.

    Each video is propagated (:func:`propagate_video`), its result PNGs written in the
    toolkit's layout (``<results_dir>/<name>/<frame>.png``) and scored against its
    annotations (:func:`~difflens.correspondence.davis_eval.evaluate_sequence`) before the
    next one starts, so only the kept predictions stay in memory. The global numbers are
    object-weighted, and the folder gets ``global_results-<set>.csv`` and
    ``per-sequence_results-<set>.csv``.

    Args:
        videos: ``name -> LabelVideo``.
        extractor: made for the preset (:func:`make_propagation_extractor`).
        preset: the settings.
        results_dir: the results folder (``None``: nothing written).
        set_name: the set name in the CSV file names.
        keep: keep every video's predictions (True), none (False) or those named.
        chunk: query cells scored at once (default: the preset's).
        batch_size: frames per U-Net batch.
        store: feature cache (default: the extractor's).
        progress: show a progress bar over videos.

    Returns:
        The :class:`PropagationRun`. A video that cannot be propagated or scored raises the
        ``ValueError`` of :func:`propagate_video` or
        :func:`~difflens.correspondence.davis_eval.evaluate_sequence`.
    """
    from tqdm.auto import tqdm

    scores, predictions = {}, {}
    folder = None if results_dir is None else Path(results_dir)
    for name, video in tqdm(
        videos.items(), desc=f"propagation {preset.name}", disable=not progress
    ):
        pred = propagate_video(
            video.images,
            video.labels[0],
            extractor,
            preset,
            chunk=chunk,
            batch_size=batch_size,
            store=store,
        )
        scores[name] = evaluate_sequence(pred, np.stack(list(video.labels)), sequence=name)
        if folder is not None:
            write_results(folder, name, video.frame_names, pred, video.palette)
        if keep is True or (keep is not False and name in keep):
            predictions[name] = pred
    result = result_from_scores(scores)
    if folder is not None:
        write_csvs(folder, result, set_name)
    return PropagationRun(result, predictions, folder)


def search_layers(
    videos: Mapping[str, LabelVideo],
    extractor: FeatureExtractor,
    layers: Sequence[str],
    timesteps: Sequence[int],
    preset: PropagationPreset,
    *,
    radius_fraction: float = 0.25,
    chunk: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """J&F of every layer and timestep on some videos (for choosing a preset's; use VALIDATION).

    Each frame's maps of all layers and timesteps come from one batched extraction; the
    propagation settings are the preset's, except the radius: ``radius_fraction`` of the
    map's short side (DIFT's 15 cells are a quarter of DAVIS's 60), at least 1.

    Args:
        videos: ``name -> LabelVideo`` (never the videos that will be reported on).
        extractor: the extractor (its size is the frame size).
        layers: layer names.
        timesteps: timesteps (each with the preset's ensemble).
        preset: the other settings.
        radius_fraction: window half side as a fraction of the map's short side.
        chunk: query cells scored at once (default: the preset's).
        progress: show a progress bar over videos.

    Returns:
        One row per layer and timestep, best first: ``layer``, ``timestep``, ``cells`` (the
        map's ``h x w``), ``radius``, ``J&F-Mean``, ``J-Mean``, ``F-Mean``.
    """
    from tqdm.auto import tqdm

    settings = [Setting(t, preset.ensemble) for t in timesteps]
    scores: dict[tuple[str, int], dict[str, SequenceScores]] = {}
    for name, video in tqdm(videos.items(), desc="layer search", disable=not progress):
        keys = [f"frame {i}" for i in range(len(video))]
        maps = feature_maps(
            list(video.images), extractor, layers, settings, keys=keys, progress=False
        )
        gt = np.stack(list(video.labels))
        for (s, setting), layer in product(enumerate(settings), layers):
            fmaps = [maps[key][s][layer] for key in keys]
            radius = max(1, round(radius_fraction * min(fmaps[0].shape[1:])))
            chosen = preset.with_(layer=layer, timestep=setting.timestep, radius=radius)
            pred = np.stack(
                list(propagate_features(fmaps, gt[0], tuple(extractor.size), chosen, chunk=chunk))
            )
            scores.setdefault((layer, setting.timestep), {})[name] = evaluate_sequence(
                pred, gt, sequence=name
            )
    return _search_table(scores, radius_fraction, extractor, videos)


def _search_table(scores, radius_fraction, extractor, videos) -> pd.DataFrame:
    """One row per (layer, timestep) with its object-weighted J&F, best first."""
    rows = []
    for (layer, timestep), per_video in scores.items():
        cells = extractor.registry.feature_size(layer, tuple(extractor.size))
        metrics = result_from_scores(per_video).global_metrics
        rows.append(
            {
                "layer": layer,
                "timestep": timestep,
                "cells": f"{cells[0]} x {cells[1]}",
                "radius": max(1, round(radius_fraction * min(cells))),
                **{key: float(metrics[key]) for key in ("J&F-Mean", "J-Mean", "F-Mean")},
            }
        )
    table = pd.DataFrame(rows)
    return table.sort_values("J&F-Mean", ascending=False, kind="stable").reset_index(drop=True)


def with_random_weights(extractor: FeatureExtractor, seed: int = 0) -> FeatureExtractor:
    """The same extractor with the U-Net re-initialised at random (the control arm).

    The backbone comes from :func:`difflens.analysis.controls.random_weights_backbone`
    (same architecture, text encoder, VAE and scheduler; diffusers' default initialisation,
    seeded); size, prompt, latent, noise and store are the extractor's.

    Args:
        extractor: the trained model's extractor.
        seed: seed of the random initialisation.

    Returns:
        A new extractor.
    """
    from difflens.analysis.controls import random_weights_backbone

    return FeatureExtractor(
        random_weights_backbone(extractor.backbone, seed),
        image_size=extractor.size,
        prompt=extractor.prompt,
        latent=extractor.latent,
        seed=extractor.seed,
        noise=extractor.noise,
        colour=extractor.colour,
        store=extractor.store,
        max_batch=extractor.max_batch,
    )


def compare_extractors(
    videos: Mapping[str, LabelVideo],
    extractors: Mapping[str, FeatureExtractor],
    preset: PropagationPreset,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    results_dir: str | Path | None = None,
    keep: bool | Collection[str] = True,
    chunk: int | None = None,
    progress: bool = True,
) -> tuple[dict[str, PropagationRun], pd.DataFrame]:
    """The J&F of several extractors (arms) on the same videos, with intervals over videos.

    Args:
        videos: ``name -> LabelVideo``.
        extractors: ``arm -> extractor`` (e.g. ``{"trained": ..., "random weights": ...}``).
        preset: the settings, the same for every arm.
        n_boot: bootstrap draws over videos
            (:func:`~difflens.correspondence.davis_eval.bootstrap_over_sequences`).
        seed: seed of the draws (the same draws for every arm).
        level: the intervals' coverage.
        results_dir: each arm's results go to ``<results_dir>/<arm>`` (spaces become ``-``).
        keep: which predictions to keep (see :func:`run_propagation`).
        chunk: query cells scored at once (default: the preset's).
        progress: show progress bars.

    Returns:
        ``(runs, table)``: each arm's :class:`PropagationRun`, and one row per arm and
        statistic (``J&F-Mean``, ``J-Mean``, ``F-Mean``) with ``estimate``, ``low``,
        ``high`` and ``n_sequences``.
    """
    runs, parts = {}, []
    for arm, extractor in extractors.items():
        folder = None if results_dir is None else Path(results_dir) / arm.replace(" ", "-")
        runs[arm] = run_propagation(
            videos,
            extractor,
            preset,
            results_dir=folder,
            keep=keep,
            chunk=chunk,
            progress=progress,
        )
        table = bootstrap_over_sequences(runs[arm].result, n_boot, seed, level)
        parts.append(table.reset_index().assign(arm=arm))
    table = pd.concat(parts, ignore_index=True)
    return runs, table[["arm", "statistic", "estimate", "low", "high", "n_sequences"]]
