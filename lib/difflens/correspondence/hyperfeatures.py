"""Diffusion Hyperfeatures: a learned aggregation of many layers at many timesteps.

Luo, Darrell, Wang, Kanazawa and Holynski, NeurIPS 2023
(``diffusion-hyperfeatures/diffusion_hyperfeatures``: ``archs/aggregation_network.py``,
``archs/detectron2/resnet.py``, ``train_hyperfeatures.py``, ``configs/train.yaml``).

**Inputs.** A stack per image (:func:`~difflens.features.trajectory.collect_stacks`): ``L``
layers at ``S`` timesteps resized to a common grid, ``(S, sum of C_l, g, g)``, timestep-major.
Hyperfeatures uses the residual branches of SD's 12 up ResNets (``up{i}.res{j}.conv2``) at 11
of the 50 calls of a DDIM inversion, on a 64 x 64 grid.

**Network** (:class:`AggregationNetwork`). One bottleneck per LAYER, shared by all timesteps
(:class:`Bottleneck`, detectron2's ``BottleneckBlock`` with GroupNorm): 1x1 conv ``C -> b``,
GN, ReLU; 3x3 conv ``b -> b``, GN, ReLU; 1x1 conv ``b -> D``, GN; plus the shortcut -- a
projection (1x1 conv ``C -> D`` and GN) when ``C != D``, the identity otherwise -- then ReLU.
Convolutions have no bias and MSRA initialisation (``kaiming_normal_``, fan out, ReLU gain,
detectron2's ``c2_msra_fill``); GN weights 1, biases 0. ``b = D / 4`` (``D = 384`` in the
paper, so ``b = 96``). GN uses 32 groups where the width allows it, else the largest divisor
of the width below 32 (:func:`norm_groups`; the toy model's narrow layers need it). Mixing
weights: one scalar per (timestep, layer), initialised to 1, softmax-normalised over all
``S x L`` of them; the output is ``sum_{s,l} softmax(w)[s L + l] Bottleneck_l(stack[s, l])``,
``(D, g, g)``.

**Training** (:func:`train_aggregator`). One pair per step (its two images form the batch),
the symmetric contrastive loss of ``train_hyperfeatures.py`` (:func:`contrastive_loss`):
logits are ``(1 / 0.07) x`` the cosine between every source and every target grid cell (the
temperature is fixed, not learned); for every keypoint, the cross-entropy over the target grid
with the target keypoint's cell as the class, and the same from target to source; the mean of
the two directions. Keypoints map to the grid cell that holds them (:func:`grid_indices`).
AdamW (lr 1e-3, weight decay 0), pairs in a seeded permutation per epoch, validation PCK every
``val_every`` steps, checkpoints that resume bit for bit, a tqdm bar with the running loss and
the last validation PCK.

**Saved weights** carry :class:`AggregatorSettings` -- the model's name and weights
fingerprint, the image size, prompt and latent mode, the stack (layers, channels, timesteps or
inversion calls, grid) and the network's widths -- and :func:`load_aggregator` refuses weights
made for other settings, naming every field that differs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from difflens.core.paths import cache_dir
from difflens.correspondence.dense import MapCache, image_prompt
from difflens.correspondence.fusion import MapsRun, evaluate_maps
from difflens.data.keypoints import KeypointPair, check_pair
from difflens.features.distributed import average_gradients, current_shard, wait_for_everyone
from difflens.features.extractor import FeatureExtractor
from difflens.features.store import FeatureStore, digest, image_digest
from difflens.features.trajectory import StackSpec, collect_stacks, stack_timesteps

__all__ = [
    "TEMPERATURE",
    "norm_groups",
    "Bottleneck",
    "AggregationNetwork",
    "grid_indices",
    "contrastive_loss",
    "AggregatorSettings",
    "SettingsMismatchError",
    "save_aggregator",
    "load_aggregator",
    "TrainConfig",
    "StackSource",
    "TrainResult",
    "train_aggregator",
    "aggregate_pair",
    "evaluate_aggregator",
    "mixing_table",
    "default_folder",
]

TEMPERATURE = 0.07
"""CLIP's temperature, fixed in Hyperfeatures' loss (``logit_scale = log(1 / 0.07)``)."""
FORMAT = 1
"""Version of the saved-weights format."""


# --------------------------------------------------------------------------- the network


def norm_groups(channels: int, max_groups: int = 32) -> int:
    """GroupNorm groups for a width: ``max_groups`` if it divides it, else the largest divisor below.

    Args:
        channels: the width.
        max_groups: the preferred number of groups (32, detectron2's GN).

    Returns:
        The number of groups (1 at least).
    """
    for g in range(min(max_groups, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


def _conv_norm(c_in: int, c_out: int, kernel: int, max_groups: int) -> nn.Sequential:
    """Conv (no bias, MSRA fill) then GroupNorm."""
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return nn.Sequential(conv, nn.GroupNorm(norm_groups(c_out, max_groups), c_out))


class Bottleneck(nn.Module):
    """detectron2's ``BottleneckBlock`` with GroupNorm, as Hyperfeatures builds it.

    Args:
        in_channels: ``C``, the layer's channels.
        out_channels: ``D``, the output width.
        bottleneck_channels: ``b`` (Hyperfeatures: ``D / 4``).
        max_groups: GroupNorm's preferred number of groups (see :func:`norm_groups`).

    Attributes:
        conv1: 1x1 ``C -> b`` and GN.
        conv2: 3x3 ``b -> b`` and GN.
        conv3: 1x1 ``b -> D`` and GN.
        shortcut: 1x1 ``C -> D`` and GN when ``C != D``, else ``None`` (the identity).
    """

    def __init__(
        self, in_channels: int, out_channels: int, bottleneck_channels: int, max_groups: int = 32
    ):
        super().__init__()
        self.conv1 = _conv_norm(in_channels, bottleneck_channels, 1, max_groups)
        self.conv2 = _conv_norm(bottleneck_channels, bottleneck_channels, 3, max_groups)
        self.conv3 = _conv_norm(bottleneck_channels, out_channels, 1, max_groups)
        self.shortcut = (
            _conv_norm(in_channels, out_channels, 1, max_groups)
            if in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output.

        Args:
            x: ``(N, C, H, W)``.

        Returns:
            ``(N, D, H, W)``.
        """
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out))
        out = self.conv3(out)
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + skip)


class AggregationNetwork(nn.Module):
    """Hyperfeatures' aggregation network: a bottleneck per layer and softmax mixing weights.

    Args:
        channels: ``C_l`` of each of the ``L`` layers, in the stack's channel order.
        n_timesteps: ``S``, the timesteps of the stack.
        out_dim: ``D``, the descriptor width (384 in the paper).
        bottleneck_dim: ``b`` (default ``D // 4``).
        max_groups: GroupNorm's preferred number of groups.

    Attributes:
        channels: as given.
        n_timesteps: as given.
        out_dim: as given.
        bottlenecks: one :class:`Bottleneck` per layer.
        mixing_weights: ``(S * L,)`` parameter, initialised to 1, timestep-major.

    Raises:
        ValueError: no layers, ``n_timesteps < 1`` or a width below 1.
    """

    def __init__(
        self,
        channels: Sequence[int],
        n_timesteps: int,
        out_dim: int = 384,
        bottleneck_dim: int | None = None,
        max_groups: int = 32,
    ):
        super().__init__()
        if not channels or n_timesteps < 1 or out_dim < 1:
            raise ValueError("an aggregation network needs layers, timesteps and out_dim >= 1")
        self.channels = [int(c) for c in channels]
        self.n_timesteps = int(n_timesteps)
        self.out_dim = int(out_dim)
        b = int(bottleneck_dim) if bottleneck_dim else max(1, out_dim // 4)
        self.bottlenecks = nn.ModuleList(Bottleneck(c, out_dim, b, max_groups) for c in channels)
        self.mixing_weights = nn.Parameter(torch.ones(self.n_timesteps * len(self.channels)))

    def weights(self) -> torch.Tensor:
        """The softmax-normalised mixing weights.

        Returns:
            ``(S, L)``: entry ``[s, l]`` weighs layer ``l`` at timestep ``s``; they sum to 1.
        """
        return torch.softmax(self.mixing_weights, dim=0).reshape(self.n_timesteps, -1)

    def forward(self, stacks: torch.Tensor) -> torch.Tensor:
        """Aggregated descriptors.

        Args:
            stacks: ``(B, S, sum C_l, H, W)`` (or ``(B, S * sum C_l, H, W)``, timestep-major).

        Returns:
            ``(B, D, H, W)``.

        Raises:
            ValueError: the stacks do not have ``S`` timesteps of ``sum C_l`` channels.
        """
        total = sum(self.channels)
        b, h, w = stacks.shape[0], stacks.shape[-2], stacks.shape[-1]
        if stacks.numel() != b * self.n_timesteps * total * h * w:
            raise ValueError(
                f"stacks of shape {tuple(stacks.shape)} do not hold {self.n_timesteps} "
                f"timesteps x {total} channels"
            )
        x = stacks.reshape(b * self.n_timesteps, total, h, w)
        mix = self.weights()
        out = None
        start = 0
        for layer, (c, block) in enumerate(zip(self.channels, self.bottlenecks)):
            y = block(x[:, start : start + c]).reshape(b, self.n_timesteps, self.out_dim, h, w)
            term = (y * mix[:, layer].view(1, -1, 1, 1, 1)).sum(1)
            out = term if out is None else out + term
            start += c
        return out


# --------------------------------------------------------------------------- the loss


def grid_indices(
    points: np.ndarray | torch.Tensor, image_size: Sequence[int], grid: Sequence[int]
) -> torch.Tensor:
    """Flat indices ``row * g_w + col`` of the grid cells holding keypoints.

    A keypoint at pixel ``x`` of a ``W``-wide image lies in cell
    ``round((x + 0.5) g_w / W - 0.5)`` (pixel and cell centres, ``align_corners=False``),
    clipped to the grid; likewise for ``y``. (Hyperfeatures scales ``x g_w / W`` and rounds;
    the two differ by at most half a cell.)

    Args:
        points: ``(N, 2)`` x/y in image pixels.
        image_size: ``(H, W)`` of the image.
        grid: ``(g_h, g_w)``.

    Returns:
        ``(N,)`` long.
    """
    p = torch.as_tensor(np.asarray(points, dtype=np.float64)).reshape(-1, 2)
    (h, w), (gh, gw) = image_size, grid
    col = torch.round((p[:, 0] + 0.5) * gw / w - 0.5).clamp(0, gw - 1).long()
    row = torch.round((p[:, 1] + 0.5) * gh / h - 0.5).clamp(0, gh - 1).long()
    return row * gw + col


def contrastive_loss(
    source: torch.Tensor,
    target: torch.Tensor,
    source_index: torch.Tensor,
    target_index: torch.Tensor,
    temperature: float = TEMPERATURE,
) -> torch.Tensor:
    """Hyperfeatures' symmetric CLIP-style loss over the grid cells of two descriptor maps.

    ``logits[i, j] = cos(source cell i, target cell j) / temperature``; the loss is the mean
    of the cross-entropy of rows ``source_index`` against classes ``target_index`` and of
    the transposed logits' rows ``target_index`` against ``source_index``.

    Args:
        source: ``(D, H, W)`` source descriptors.
        target: ``(D, H, W)`` target descriptors.
        source_index: ``(N,)`` flat cell index of each source keypoint.
        target_index: ``(N,)`` flat cell index of the same keypoints in the target.
        temperature: the fixed temperature (0.07).

    Returns:
        Scalar tensor.
    """
    s = F.normalize(source.flatten(1), dim=0)
    t = F.normalize(target.flatten(1), dim=0)
    logits = s.T @ t / temperature
    forward = F.cross_entropy(logits[source_index], target_index)
    backward = F.cross_entropy(logits.T[target_index], source_index)
    return (forward + backward) / 2


# --------------------------------------------------------------------------- saved weights


@dataclass(frozen=True)
class AggregatorSettings:
    """Everything that produced an aggregator's inputs and shapes its weights.

    Attributes:
        model: the backbone's name.
        fingerprint: its weights fingerprint (:meth:`~difflens.models.backbone.Backbone.fingerprint`).
        image_size: ``(height, width)`` images are resized to.
        prompt: the extractor's prompt (template).
        latent: the extractor's latent mode.
        stack: the stack spec's key fields (layers, mode, timesteps or inversion calls and
            inversion config, grid, resize).
        channels: channels of each layer.
        timesteps: the timestep the U-Net saw for each stack slice.
        out_dim: ``D``.
        bottleneck_dim: ``b``.
        max_groups: GroupNorm's preferred groups.
    """

    model: str
    fingerprint: str
    image_size: tuple[int, int]
    prompt: str
    latent: str
    stack: dict
    channels: tuple[int, ...]
    timesteps: tuple[int, ...]
    out_dim: int = 384
    bottleneck_dim: int = 96
    max_groups: int = 32

    @classmethod
    def of(
        cls,
        extractor: FeatureExtractor,
        spec: StackSpec,
        out_dim: int = 384,
        bottleneck_dim: int | None = None,
        max_groups: int = 32,
    ) -> AggregatorSettings:
        """The settings of an extractor and a stack spec.

        Args:
            extractor: the extractor whose model, size, prompt and latent mode feed the stacks.
            spec: the stack spec.
            out_dim: ``D``.
            bottleneck_dim: ``b`` (default ``D // 4``).
            max_groups: GroupNorm's preferred groups.

        Returns:
            The settings.
        """
        registry = extractor.registry
        return cls(
            model=extractor.backbone.model_id,
            fingerprint=extractor.backbone.fingerprint(),
            image_size=tuple(extractor.size),
            prompt=extractor.prompt,
            latent=extractor.latent,
            stack=json.loads(json.dumps(spec.key_fields())),
            channels=tuple(registry.info(name).channels for name in spec.layers),
            timesteps=tuple(stack_timesteps(spec, extractor.backbone)),
            out_dim=out_dim,
            bottleneck_dim=bottleneck_dim or max(1, out_dim // 4),
            max_groups=max_groups,
        )

    def as_dict(self) -> dict:
        """JSON-able fields (tuples as lists).

        Returns:
            ``field -> value``.
        """
        return json.loads(json.dumps(asdict(self)))

    def differences(self, other: AggregatorSettings | dict) -> list[str]:
        """The fields that differ from ``other``, each with both values.

        Args:
            other: settings (or their :meth:`as_dict`).

        Returns:
            ``"field: <this> here, <other> there"`` lines; empty when equal.
        """
        mine = self.as_dict()
        theirs = other.as_dict() if isinstance(other, AggregatorSettings) else dict(other)
        return [
            f"{key}: {mine.get(key)!r} here, {theirs.get(key)!r} there"
            for key in sorted(set(mine) | set(theirs))
            if mine.get(key) != theirs.get(key)
        ]

    def build(self) -> AggregationNetwork:
        """A fresh network of these widths (MSRA-initialised from the global RNG).

        Returns:
            The :class:`AggregationNetwork`.
        """
        return AggregationNetwork(
            self.channels, len(self.timesteps), self.out_dim, self.bottleneck_dim, self.max_groups
        )


class SettingsMismatchError(ValueError):
    """Saved aggregator weights were made for other settings (the message names each field)."""


def save_aggregator(
    path: str | Path, model: AggregationNetwork, settings: AggregatorSettings
) -> Path:
    """Write an aggregator's weights with the settings that produced its inputs (atomically).

    Args:
        path: the file (``.pt``); its folder is created.
        model: the network.
        settings: its settings.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "settings": settings.as_dict(), "state_dict": model.state_dict()}
    _atomic_save(payload, path)
    return path


def _atomic_save(payload: dict, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_aggregator(
    path: str | Path, expected: AggregatorSettings | None = None
) -> tuple[AggregationNetwork, AggregatorSettings]:
    """Read saved weights, refusing them when they were made for other settings.

    Args:
        path: a file written by :func:`save_aggregator` (or a training checkpoint).
        expected: the settings they must have been made with (``None``: no check).

    Returns:
        The network (in eval mode) and its saved settings.

    Raises:
        SettingsMismatchError: the saved settings differ from ``expected``; the message
            lists every differing field with both values.
        ValueError: the file is not a difflens aggregator.
    """
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "settings" not in payload or "state_dict" not in payload:
        raise ValueError(f"{path} holds no difflens aggregator weights")
    saved = _settings_from(payload["settings"])
    if expected is not None:
        diff = expected.differences(saved)
        if diff:
            raise SettingsMismatchError(
                f"the aggregator in {path} was trained for other settings; refusing to load it:\n  "
                + "\n  ".join(diff)
            )
    model = saved.build()
    model.load_state_dict(payload["state_dict"])
    return model.eval(), saved


def _settings_from(fields: dict) -> AggregatorSettings:
    """Settings from their JSON form (lists back to tuples)."""
    values = dict(fields)
    for key in ("image_size", "channels", "timesteps"):
        values[key] = tuple(values[key])
    return AggregatorSettings(**values)


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    """How an aggregator is trained (Hyperfeatures' ``configs/train.yaml`` by default).

    Attributes:
        steps: optimiser steps, one pair each (theirs: one epoch of at most 5,000 pairs).
        lr: AdamW learning rate (1e-3).
        weight_decay: AdamW weight decay (0).
        temperature: the loss's fixed temperature (0.07).
        seed: seed of the initialisation and of the pair order.
        val_every: steps between validations (and at the end); 0: only at the end.
        checkpoint_every: steps between checkpoints (and at the end).
        val_alpha: alpha of the validation PCK (per image, target box).
        cache_bytes: memory budget of the stacks kept between steps.
    """

    steps: int = 5000
    lr: float = 1e-3
    weight_decay: float = 0.0
    temperature: float = TEMPERATURE
    seed: int = 0
    val_every: int = 1000
    checkpoint_every: int = 1000
    val_alpha: float = 0.1
    cache_bytes: int = 2 * 2**30


class StackSource:
    """The stacks of pair images, from the store (or computed) and kept in a bounded cache.

    Args:
        extractor: the extractor (model, size, prompt template, latent mode).
        spec: the stack spec.
        store: the feature store (default: the extractor's).
        cache_bytes: memory budget for stacks kept between calls.
        batch_size: images per computation when stacks are missing.

    Attributes:
        extractor: as given.
        spec: as given.
        store: the store used.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        spec: StackSpec,
        store: FeatureStore | None = None,
        cache_bytes: int = 2 * 2**30,
        batch_size: int = 4,
    ):
        self.extractor = extractor
        self.spec = spec
        self.store = extractor.store if store is None else store
        self._cache = MapCache(cache_bytes)
        self._batch_size = batch_size

    def _key(self, image: np.ndarray, prompt: str) -> str:
        return f"{image_digest(np.asarray(image))}|{prompt}"

    def prepare(self, pairs: Sequence[KeypointPair], progress: bool = True) -> int:
        """Compute (or find in the store) the stacks of every image of ``pairs``.

        Args:
            pairs: the pairs.
            progress: show a progress bar.

        Returns:
            The number of distinct images.
        """
        seen: dict[str, tuple[np.ndarray, str]] = {}
        for pair in pairs:
            for image in (pair.source_image, pair.target_image):
                prompt = image_prompt(self.extractor, pair.category)
                seen.setdefault(self._key(image, prompt), (image, prompt))
        keys = list(seen)
        shard = current_shard()
        if shard.count > 1 and self.store is not None:
            # under accelerate launch: each process stores its share, then all read them all
            self._collect(shard.take(keys, self._batch_size), seen, None, keep=False)
            wait_for_everyone()
        bar = tqdm(total=len(keys), desc="stacks", unit="image", disable=not progress)
        try:
            self._collect(keys, seen, bar.update, keep=True)
        finally:
            bar.close()
        return len(keys)

    def _collect(self, keys: list[str], seen: dict, progress, keep: bool) -> None:
        """Stacks of ``keys`` in whole batches, chunk by chunk (kept in the cache or not)."""
        chunk = 16 * self._batch_size  # stacks are handed to the bounded cache chunk by chunk
        for start in range(0, len(keys), chunk):
            part = keys[start : start + chunk]
            stacks = collect_stacks(
                [seen[k][0] for k in part],
                self.extractor,
                self.spec,
                prompts=[seen[k][1] for k in part],
                store=self.store,
                batch_size=self._batch_size,
                progress=progress,
            )
            for key, stack in zip(part, stacks if keep else ()):
                self._cache.put(key, stack)

    def pair(self, pair: KeypointPair) -> torch.Tensor:
        """The two stacks of a pair.

        Args:
            pair: the pair.

        Returns:
            ``(2, S, sum C_l, g_h, g_w)`` float32 CPU: source, then target.
        """
        prompt = image_prompt(self.extractor, pair.category)
        out = []
        for image in (pair.source_image, pair.target_image):
            key = self._key(image, prompt)
            stack = self._cache.get(key)
            if stack is None:
                stack = collect_stacks(
                    [image], self.extractor, self.spec, prompts=[prompt], store=self.store
                )[0]
                self._cache.put(key, stack)
            out.append(stack)
        return torch.stack(out).float()


@dataclass
class TrainResult:
    """What :func:`train_aggregator` returns.

    Attributes:
        model: the trained network (eval mode).
        settings: its :class:`AggregatorSettings`.
        history: one row per validation: ``step``, ``loss`` (the mean training loss since
            the previous row), ``val_pck`` (per image, target box) and ``val_loss``.
        losses: the training loss of every step.
        folder: where checkpoints and weights are written.
        resumed_from: the step the run resumed from (0: a fresh run).
    """

    model: AggregationNetwork
    settings: AggregatorSettings
    history: pd.DataFrame
    losses: list[float] = field(default_factory=list)
    folder: Path | None = None
    resumed_from: int = 0

    @property
    def weights_path(self) -> Path | None:
        """The final weights' file (``aggregator.pt``), or ``None`` without a folder."""
        return None if self.folder is None else self.folder / "aggregator.pt"


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _order(n: int, step: int, seed: int) -> int:
    """The pair of a step: epoch ``step // n`` is a permutation seeded by ``(seed, epoch)``."""
    epoch, k = divmod(step, n)
    return int(np.random.default_rng([seed, epoch]).permutation(n)[k])


def _pair_loss(
    model: AggregationNetwork,
    stacks: torch.Tensor,
    pair: KeypointPair,
    grid: tuple[int, int],
    temperature: float,
) -> torch.Tensor:
    """The contrastive loss of one pair (its two stacks as the batch)."""
    out = model(stacks.to(_device(model)))
    src = grid_indices(pair.source_points, pair.source_size, grid)
    trg = grid_indices(pair.target_points, pair.target_size, grid)
    return contrastive_loss(out[0], out[1], src, trg, temperature)


def aggregate_pair(
    model: AggregationNetwork, stacks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A pair's descriptor maps from its two stacks (no gradient).

    Args:
        model: the network.
        stacks: ``(2, S, sum C_l, g_h, g_w)``.

    Returns:
        Source and target ``(D, g_h, g_w)`` float32 maps.
    """
    with torch.no_grad():
        out = model(stacks.to(_device(model), torch.float32))
    return out[0], out[1]


def _validate(
    model: AggregationNetwork,
    source: StackSource,
    pairs: Sequence[KeypointPair],
    config: TrainConfig,
) -> tuple[float, float]:
    """Validation PCK (per image, target box, ``config.val_alpha``) and mean loss."""
    model.eval()
    losses = []

    def maps(pair: KeypointPair) -> tuple[torch.Tensor, torch.Tensor]:
        stacks = source.pair(pair)
        with torch.no_grad():
            losses.append(
                float(_pair_loss(model, stacks, pair, source.spec.size, config.temperature))
            )
        return aggregate_pair(model, stacks)

    run = evaluate_maps(pairs, maps, name="validation", alphas=(config.val_alpha,), n_boot=0)
    model.train()
    pck = run.pck(config.val_alpha)[0] if run.records else float("nan")
    return pck, float(np.mean(losses)) if losses else float("nan")


def default_folder(settings: AggregatorSettings, config: TrainConfig) -> Path:
    """Where a training run with these settings and config keeps its files.

    Args:
        settings: the aggregator settings.
        config: the training config.

    Returns:
        ``<cache>/hyperfeatures/<16 hex digits of the settings and config>``.
    """
    key = digest({"settings": settings.as_dict(), "config": asdict(config)})[:16]
    return cache_dir() / "hyperfeatures" / key


class _Checkpoint:
    """A training run's checkpoint file: model, optimiser, step, losses and history."""

    def __init__(self, folder: Path, settings: AggregatorSettings, config: TrainConfig):
        self.path = folder / "checkpoint.pt"
        self.settings = settings
        self.config = config

    def load(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, list, list]:
        """Restore a compatible checkpoint; ``(step, losses, history rows)``."""
        if not self.path.exists():
            return 0, [], []
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        diff = self.settings.differences(state["settings"])
        if diff:
            raise SettingsMismatchError(
                f"checkpoint {self.path} belongs to other settings:\n  " + "\n  ".join(diff)
            )
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        return int(state["step"]), list(state["losses"]), json.loads(state["history"])

    def save(self, model, optimizer, step: int, losses: list, history: list) -> None:
        """Write the checkpoint atomically."""
        payload = {
            "format": FORMAT,
            "settings": self.settings.as_dict(),
            "config": json.dumps(asdict(self.config)),
            "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "losses": list(losses),
            "history": json.dumps(history),
        }
        _atomic_save(payload, self.path)


def _fresh_model(settings: AggregatorSettings, seed: int) -> AggregationNetwork:
    """A seeded, freshly initialised network (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return settings.build()


def train_aggregator(
    train_pairs: Sequence[KeypointPair],
    val_pairs: Sequence[KeypointPair],
    extractor: FeatureExtractor,
    spec: StackSpec,
    *,
    config: TrainConfig | None = None,
    out_dim: int = 384,
    bottleneck_dim: int | None = None,
    max_groups: int = 32,
    folder: str | Path | None = None,
    store: FeatureStore | None = None,
    precompute: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train an aggregation network on keypoint pairs; resumes from the folder's checkpoint.

    Args:
        train_pairs: training pairs (toy TRAIN split, SPair-71k ``trn``), indexable (read
            one at a time, never all held); a step whose pair fails
            :func:`~difflens.data.keypoints.check_pair` makes no update and logs a NaN loss.
        val_pairs: validation pairs (toy VALIDATION split, SPair-71k ``val``).
        extractor: the extractor whose features feed the stacks.
        spec: the stack spec (layers, timesteps, grid).
        config: the training config (default :class:`TrainConfig`).
        out_dim: ``D``.
        bottleneck_dim: ``b`` (default ``D // 4``).
        max_groups: GroupNorm's preferred groups.
        folder: where checkpoints, weights and history go (default :func:`default_folder`).
        store: the feature store of the stacks (default: the extractor's).
        precompute: compute (or read) every image's stack before training; ``False``
            computes them when a step needs them, as Hyperfeatures does (SD 1.5 at 512 px on
            a 64 grid: 952 MB (908 MiB) per image in float16, too much to keep for SPair-71k).
        progress: show progress bars (stacks, then training with loss and validation PCK).
            The network runs on the backbone's device.

    Under ``accelerate launch`` (N processes) training is data-parallel: the stacks are
    stored in shares, each step takes N pairs (one per process) and averages their
    gradients, and only the main process writes the checkpoint, weights and history.

    Returns:
        The :class:`TrainResult`; ``aggregator.pt`` (weights with settings) and
        ``history.csv`` are written to the folder.

    Raises:
        ValueError: no training pair.
    """
    config = config or TrainConfig()
    train = train_pairs if hasattr(train_pairs, "__getitem__") else list(train_pairs)
    if not len(train):
        raise ValueError("no training pair")
    val = [p for p in val_pairs if _usable(p)]
    settings = AggregatorSettings.of(extractor, spec, out_dim, bottleneck_dim, max_groups)
    folder = Path(folder) if folder else default_folder(settings, config)
    source = StackSource(extractor, spec, store, config.cache_bytes)
    if precompute:
        source.prepare([p for p in train if _usable(p)] + val, progress)
    device = extractor.backbone.device
    model = _fresh_model(settings, config.seed).to(device).train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    checkpoint = _Checkpoint(folder, settings, config)
    start, losses, history = checkpoint.load(model, optimizer)
    loop = _Loop(model, optimizer, source, train, val, config, checkpoint)
    loop.run(start, losses, history, progress and current_shard().is_main)
    table = pd.DataFrame(history, columns=["step", "loss", "val_pck", "val_loss"])
    model.eval()
    if current_shard().is_main:
        save_aggregator(folder / "aggregator.pt", model, settings)
        table.to_csv(folder / "history.csv", index=False)
    wait_for_everyone()
    return TrainResult(model, settings, table, losses, folder, start)


def _usable(pair: KeypointPair) -> bool:
    try:
        check_pair(pair)
    except ValueError:
        return False
    return True


class _Loop:
    """The optimisation loop of :func:`train_aggregator`."""

    def __init__(self, model, optimizer, source, train, val, config, checkpoint):
        self.model, self.optimizer, self.source = model, optimizer, source
        self.train, self.val, self.config, self.checkpoint = train, val, config, checkpoint

    def _due(self, step: int, every: int) -> bool:
        return step == self.config.steps or (every > 0 and step % every == 0)

    def run(self, start: int, losses: list, history: list, progress: bool) -> None:
        """Steps ``start + 1 .. config.steps``, validating and checkpointing as configured."""
        config = self.config
        bar = tqdm(total=config.steps, initial=start, desc="aggregator", disable=not progress)
        last_pck = history[-1]["val_pck"] if history else float("nan")
        try:
            for step in range(start + 1, config.steps + 1):
                losses.append(self._step(step))
                if self._due(step, config.val_every):
                    last_pck = self._log(step, losses, history)
                if self._due(step, config.checkpoint_every):
                    if current_shard().is_main:  # one checkpoint, however many processes
                        self.checkpoint.save(self.model, self.optimizer, step, losses, history)
                    wait_for_everyone()
                bar.update(1)
                bar.set_postfix(loss=f"{np.nanmean(losses[-50:]):.3f}", val_pck=f"{last_pck:.3f}")
        finally:
            bar.close()

    def _step(self, step: int) -> float:
        """One optimiser step on the step's pair; its loss (NaN for an unusable pair, no update).

        Under ``accelerate launch`` each of the N processes takes its own pair of the step
        (draws ``(step - 1) N .. step N - 1`` of the pair order) and the gradients are
        averaged over the usable ones before the step (:func:`average_gradients`).
        """
        shard = current_shard()
        draw = (step - 1) * shard.count + shard.index
        self.optimizer.zero_grad()
        loss = None
        try:
            pair = check_pair(self.train[_order(len(self.train), draw, self.config.seed)])
        except ValueError:
            pair = None
        if pair is not None:
            stacks = self.source.pair(pair)
            value = _pair_loss(
                self.model, stacks, pair, self.source.spec.size, self.config.temperature
            )
            value.backward()
            loss = value.item()
        usable, mean = average_gradients(self.model.parameters(), loss)
        if usable:
            self.optimizer.step()
        return mean

    def _log(self, step: int, losses: list, history: list) -> float:
        """Validate and append a history row; the validation PCK."""
        previous = history[-1]["step"] if history else 0
        pck, val_loss = _validate(self.model, self.source, self.val, self.config)
        window = np.asarray(losses[previous:step], dtype=float)
        mean = float(np.nanmean(window)) if np.isfinite(window).any() else float("nan")
        history.append({"step": step, "loss": mean, "val_pck": pck, "val_loss": val_loss})
        return pck


def evaluate_aggregator(
    pairs: Sequence[KeypointPair],
    model: AggregationNetwork,
    source: StackSource,
    *,
    name: str = "learned aggregation",
    alphas: Sequence[float] = (0.05, 0.1, 0.15),
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> MapsRun:
    """PCK of a trained aggregator on pairs (descriptors matched as DIFT matches its maps).

    Args:
        pairs: the pairs (held-out TEST pairs for reporting).
        model: the network.
        source: the pairs' stacks (same extractor and spec as in training).
        name: the method's name.
        alphas: PCK alphas.
        n_boot: bootstrap resamples.
        seed: seed of the bootstrap.
        progress: show a progress bar.

    Returns:
        The :class:`~difflens.correspondence.fusion.MapsRun`.
    """
    model = model.eval()

    def maps(pair: KeypointPair) -> tuple[torch.Tensor, torch.Tensor]:
        return aggregate_pair(model, source.pair(pair))

    return evaluate_maps(
        pairs, maps, name=name, alphas=alphas, n_boot=n_boot, seed=seed, progress=progress
    )


def mixing_table(
    model: AggregationNetwork, layers: Sequence[str], timesteps: Sequence[int]
) -> pd.DataFrame:
    """The learned mixing weights as a layers x timesteps table (Hyperfeatures' Fig. 5).

    Args:
        model: the network.
        layers: the ``L`` layer names.
        timesteps: the ``S`` timesteps (labels of the columns).

    Returns:
        ``L x S`` data frame of softmax weights (summing to 1 over all cells).

    Raises:
        ValueError: the labels do not match the network's ``S`` and ``L``.
    """
    weights = model.weights().detach().cpu().numpy()
    if weights.shape != (len(timesteps), len(layers)):
        raise ValueError(f"weights are {weights.shape}, labels {len(timesteps)} x {len(layers)}")
    return pd.DataFrame(weights.T, index=list(layers), columns=[int(t) for t in timesteps])
