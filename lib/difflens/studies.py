"""Studies: the same measurement under several settings (layers, timesteps, transforms).

The notebooks compare settings side by side; this module holds what they share: the
paper's resolution groups, one prototype table per setting, the distance sets of each and
one summary table across settings.

Reading of the paper's resolution groups ("64", "32", "16", "64+32+16"): the outputs of the
attention (transformer) layers at that resolution, in the encoder and the decoder,
concatenated along channels after bilinear resizing (the paper's step 3). On SD 1.x at
512 px, "16" is ``down2.attn0 + down2.attn1 + up1.attn0 + up1.attn1 + up1.attn2``. A model
without attention at a resolution falls back to its ResNet outputs there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from difflens.extract import FeatureExtractor
from difflens.layers import LayerRegistry
from difflens.pipeline import prototype_table
from difflens.prototypes import PrototypeTable
from difflens.scene import Scene
from difflens.sets import SETS, distance_sets
from difflens.stats import set_summary


def resolution_layers(
    registry: LayerRegistry, resolution: int, image_size: int, stage: str | None = None
) -> list[str]:
    """The layers making up one resolution group (see the module docstring)."""
    layers = registry.by_resolution(resolution, image_size, stage=stage, kinds=("attention",))
    if not layers:
        layers = registry.by_resolution(resolution, image_size, stage=stage, kinds=("resnet",))
    if not layers:
        where = f" in the {stage}" if stage else ""
        raise ValueError(
            f"no layer works at {resolution}x{resolution}{where} for {image_size} px images"
        )
    return layers


def resolution_group(
    registry: LayerRegistry, spec: str, image_size: int, stage: str | None = None
) -> str:
    """``"16"`` or ``"64+32+16"`` -> a ``+``-joined layer spec for :func:`prototype_table`."""
    layers: list[str] = []
    for part in str(spec).split("+"):
        layers += resolution_layers(registry, int(part), image_size, stage)
    return "+".join(layers)


@dataclass(frozen=True)
class Setting:
    """One column of a study: which layers, at which timestep, on which scenes."""

    name: str
    layers: str
    timestep: int = 0


def setting_tables(
    scenes: Sequence[Scene], extractor: FeatureExtractor, settings: Iterable[Setting], **options
) -> dict[str, PrototypeTable]:
    """A prototype table per setting (``options`` go to :func:`prototype_table`)."""
    return {
        s.name: prototype_table(scenes, extractor, s.layers, timestep=s.timestep, **options)
        for s in settings
    }


def sets_by_setting(
    tables: Mapping[str, PrototypeTable],
    metric: str = "cosine",
    sets: Sequence[str] = SETS,
    **options,
) -> dict[str, pd.DataFrame]:
    """The long-form distance sets of every table."""
    return {
        name: distance_sets(table, metric=metric, sets=sets, **options)
        for name, table in tables.items()
    }


def summary_by_setting(long_by_setting: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Count, mean, sd and median of every set under every setting, in one table."""
    frames = []
    for name, long in long_by_setting.items():
        summary = set_summary(long).reset_index()
        summary.insert(0, "setting", name)
        frames.append(summary)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@dataclass
class SetAnalysis:
    """Everything one figure panel and one table column need about one prototype table."""

    long: pd.DataFrame
    summary: pd.DataFrame
    kruskal: dict
    tests: pd.DataFrame
    bootstrap: object  # difflens.stats.BootstrapResult
    separation: float

    def numbers(self) -> dict:
        """The key numbers, JSON-ready (see :func:`difflens.plots.record_numbers`)."""
        intervals = self.bootstrap.intervals()
        orderings = self.bootstrap.orderings
        return {
            "means": self.summary["mean"].to_dict(),
            "counts": self.summary["n"].astype(int).to_dict(),
            "kruskal": {k: self.kruskal[k] for k in ("H", "p", "log10_p") if k in self.kruskal},
            "mean_ci95": {s: [float(r["low"]), float(r["high"])] for s, r in intervals.iterrows()},
            "orderings": {
                str(r["ordering"]): {
                    "holds": bool(r["holds"]),
                    "probability": float(r["probability"]),
                }
                for _, r in orderings.iterrows()
            },
            "separation_cliffs_delta": self.separation,
        }


def separation(long: pd.DataFrame, within: str = "scdi", between: str = "dcdi") -> float:
    """Cliff's delta of ``between`` over ``within`` distances: P(between > within) - P(<).

    1 when every different-class distance exceeds every same-class one, 0 without
    separation; the summary of the layer sweep.
    """
    from difflens.stats import cliffs_delta

    a = long.loc[long["set"] == between, "distance"].to_numpy()
    b = long.loc[long["set"] == within, "distance"].to_numpy()
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    return float(cliffs_delta(a, b))


def analyse_sets(
    table: PrototypeTable,
    metric: str = "correlation",
    sets: Sequence[str] = ("scsi", "scdi", "dcsi", "dcdi"),
    n_boot: int = 1000,
    seed: int = 0,
    **options,
) -> SetAnalysis:
    """Distance sets of ``table`` with their summary, Kruskal-Wallis, pairwise tests
    (Mann-Whitney, Dunn, Cliff's delta, Dunn indices), image-level bootstrap of the set
    means and orderings, and the scdi/dcdi separation."""
    from difflens.stats import bootstrap_set_means, kruskal_sets, pairwise_tests

    long = distance_sets(table, metric=metric, sets=sets, progress=False, **options)
    return SetAnalysis(
        long=long,
        summary=set_summary(long),
        kruskal=kruskal_sets(long),
        tests=pairwise_tests(long),
        bootstrap=bootstrap_set_means(long, table, n_boot=n_boot, seed=seed),
        separation=separation(long),
    )
