"""Distance sets of the paper (Eqs. 11-15), in long form, each unordered pair once.

For two different objects ``I`` (image ``i``, class ``c``) and ``J`` (image ``j``, class ``k``):

========  ==============================  =========================================
set       condition                       meaning
========  ==============================  =========================================
``scsi``  ``i == j and c == k``           same class, same image
``scdi``  ``i != j and c == k``           same class, different image
``sidi``  ``I == J (same instance), i != j``  same instance, different image
``dcsi``  ``i == j and c != k``           different class, same image
``dcdi``  ``i != j and c != k``           different class, different image
========  ==============================  =========================================

"Same image" compares ``image_id`` (a transformed copy or another video frame is a
different image); "same instance" compares ``instance_key``. Eq. 12 puts a same-instance
pair such as (c, e) in the paper's Fig. 2 in ``scdi`` as well as in ``sidi``; that is the
default here (``scdi_same_instance=True``). Pass ``False`` to keep such pairs in ``sidi``
only, the reading in which ``scdi`` compares *different* objects of one class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from difflens.distances import pairwise
from difflens.prototypes import PrototypeTable

SETS = ("scsi", "scdi", "sidi", "dcsi", "dcdi")
PAPER_SETS = ("scsi", "scdi", "dcsi", "dcdi")


def pair_membership(
    meta: pd.DataFrame, i: np.ndarray, j: np.ndarray, scdi_same_instance: bool = True
) -> dict[str, np.ndarray]:
    """Boolean membership of the pairs ``(i[n], j[n])`` (row indices of ``meta``) in each set."""
    image = meta["image_id"].to_numpy()
    cls = meta["class_name"].to_numpy()
    inst = meta["instance_key"].to_numpy()
    same_image = image[i] == image[j]
    same_class = cls[i] == cls[j]
    same_instance = inst[i] == inst[j]
    scdi = ~same_image & same_class
    if not scdi_same_instance:
        scdi &= ~same_instance
    return {
        "scsi": same_image & same_class & ~same_instance,
        "scdi": scdi,
        "sidi": ~same_image & same_instance,
        "dcsi": same_image & ~same_class,
        "dcdi": ~same_image & ~same_class,
    }


def distance_sets(
    prototypes: PrototypeTable,
    metric: str = "cosine",
    sets: Sequence[str] = SETS,
    scdi_same_instance: bool = True,
    block: int = 1024,
) -> pd.DataFrame:
    """Every pair's distance with its set, in long form.

    Columns: ``set``, ``distance``, ``a`` and ``b`` (the two objects' ``object_key``),
    ``image_a``, ``image_b``. A pair that belongs to two sets (scdi and sidi) appears
    once per set. Distances are computed block by block, so memory stays bounded.
    """
    unknown = set(sets) - set(SETS)
    if unknown:
        raise ValueError(f"unknown sets {sorted(unknown)}; known: {SETS}")
    meta = prototypes.meta
    keys = meta["object_key"].to_numpy()
    images = meta["image_id"].to_numpy()
    n = len(meta)
    frames = []
    for start in range(0, n, block):
        stop = min(n, start + block)
        d = pairwise(prototypes.features[start:stop], prototypes.features[start:], metric=metric)
        ii, jj = np.triu_indices(stop - start, k=1, m=n - start)
        dist = d[ii, jj]
        ii, jj = ii + start, jj + start
        member = pair_membership(meta, ii, jj, scdi_same_instance)
        for name in sets:
            sel = member[name]
            if sel.any():
                frames.append(
                    pd.DataFrame(
                        {
                            "set": name,
                            "distance": dist[sel],
                            "a": keys[ii[sel]],
                            "b": keys[jj[sel]],
                            "image_a": images[ii[sel]],
                            "image_b": images[jj[sel]],
                        }
                    )
                )
    columns = ["set", "distance", "a", "b", "image_a", "image_b"]
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)
    out["set"] = pd.Categorical(out["set"], categories=list(SETS))
    return out.sort_values("set", kind="stable").reset_index(drop=True)
