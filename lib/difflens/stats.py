"""Statistics over distance sets: summaries and the Kruskal-Wallis test."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from difflens.sets import SETS


def set_summary(long: pd.DataFrame) -> pd.DataFrame:
    """Count, mean, standard deviation and median of the distances in each set."""
    grouped = long.groupby("set", observed=True)["distance"]
    table = grouped.agg(n="size", mean="mean", std="std", median="median")
    order = [s for s in SETS if s in table.index]
    return table.loc[order]


def kruskal_sets(long: pd.DataFrame) -> dict:
    """Kruskal-Wallis H test across the sets present in ``long``."""
    groups = [g["distance"].to_numpy() for _, g in long.groupby("set", observed=True) if len(g)]
    if len(groups) < 2:
        return {"H": float("nan"), "p": float("nan"), "k": len(groups)}
    result = sps.kruskal(*groups)
    return {"H": float(result.statistic), "p": float(result.pvalue), "k": len(groups)}


def ordering_holds(summary: pd.DataFrame, order=("scsi", "scdi", "dcsi", "dcdi")) -> bool:
    """True if the set means increase along ``order`` (the paper's Eq. 16 by default)."""
    means = [summary.loc[name, "mean"] for name in order if name in summary.index]
    return bool(np.all(np.diff(means) > 0))
