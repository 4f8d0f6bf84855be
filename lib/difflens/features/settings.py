"""Extraction settings and their seeded noise: a timestep with an ensemble size, and its draws.

A :class:`Setting` says how the U-Net sees an image: at which timestep (a scheduler index
0..T-1; ``t = 0`` is the paper's clean latent) and averaged over how many noise draws (a
DIFT-style ensemble, Tang et al. 2023). Draw ``k`` of an extractor with seed ``s`` is
``torch.randn`` from a CPU generator seeded with ``s + k`` (shared noise), or with a hash
of ``(s, k, image content)`` (per-image noise), so features never depend on the batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from difflens.core.errors import BadInputError

NOISE_MODES = ("shared", "per-image")


@dataclass(frozen=True)
class Setting:
    """One way of running the U-Net on an image: a timestep and a noise-ensemble size.

    ``ensemble = n`` averages a layer's maps over ``n`` seeded noise draws (DIFT). At
    ``t = 0`` no noise is added, so every draw is the same and one forward is run.

    Attributes:
        timestep: scheduler index 0..T-1 (its range is checked by the extractor).
        ensemble: noise draws averaged, at least 1.

    Raises:
        BadInputError: a field is not an integer, or ``ensemble < 1``.
    """

    timestep: int = 0
    ensemble: int = 1

    def __post_init__(self) -> None:
        if int(self.timestep) != self.timestep or int(self.ensemble) != self.ensemble:
            raise BadInputError(f"setting {self}: timestep and ensemble must be integers")
        object.__setattr__(self, "timestep", int(self.timestep))
        object.__setattr__(self, "ensemble", int(self.ensemble))
        if self.ensemble < 1:
            raise BadInputError(f"setting {self}: ensemble must be >= 1")

    @property
    def draws(self) -> int:
        """Noise draws actually run (1 at ``t = 0``)."""
        return 1 if self.timestep == 0 else self.ensemble

    def normalized(self) -> Setting:
        """The equivalent setting used in cache keys.

        Returns:
            The same timestep with ``ensemble = draws`` (1 at ``t = 0``).
        """
        return Setting(self.timestep, self.draws)

    @property
    def label(self) -> str:
        """A short name: ``"t=50"``, or ``"t=50 x4"`` for an ensemble of four draws."""
        return f"t={self.timestep}" + (f" x{self.draws}" if self.draws > 1 else "")


def as_setting(value: Setting | int) -> Setting:
    """A :class:`Setting` from a setting or a bare timestep.

    Args:
        value: a :class:`Setting` (returned as is) or a timestep (scheduler index).

    Returns:
        The setting (ensemble 1 for a bare timestep).
    """
    return value if isinstance(value, Setting) else Setting(int(value))


def draw_seed(seed: int, draw: int, key: str | None = None) -> int:
    """Generator seed of noise draw ``draw``: ``seed + draw``, or hashed with an image key.

    Args:
        seed: the extractor's seed.
        draw: the draw index ``k`` (0 .. ensemble - 1).
        key: an image content key for per-image noise; ``None`` for shared noise.

    Returns:
        ``seed + draw``, or the first 60 bits of SHA-256 of ``"seed:draw:key"``.
    """
    if key is None:
        return int(seed) + int(draw)
    digest = hashlib.sha256(f"{seed}:{draw}:{key}".encode()).hexdigest()
    return int(digest[:15], 16)


def draw_noise(shape: Sequence[int], seed: int) -> torch.Tensor:
    """Standard normal noise from a CPU generator seeded with ``seed``.

    Args:
        shape: the tensor shape, e.g. ``(4, 64, 64)`` for one SD latent.
        seed: the generator seed (from :func:`draw_seed`).

    Returns:
        float32 CPU tensor of ``shape`` (the same on every device the model may run on).
    """
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32)
