"""The paper's Fig. 2 example, against its formal definitions (Eqs. 11-15)."""

import itertools
import logging

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from difflens.analysis.aggregates import set_aggregates
from difflens.analysis.sets import SETS, distance_sets, set_pair_counts
from difflens.analysis.source_sums import SourcePairSums
from difflens.features.prototypes import PrototypeTable


def fig2_table() -> PrototypeTable:
    # image 1: a (person) and b (horse); image 2: c, d (horses); image 3 = image 2 flipped: e, f
    rows = [
        ("a", "img1", "img1", 1, "person"),
        ("b", "img1", "img1", 2, "horse"),
        ("c", "img2", "img2", 1, "horse"),
        ("d", "img2", "img2", 2, "horse"),
        ("e", "img2@hflip", "img2", 1, "horse"),
        ("f", "img2@hflip", "img2", 2, "horse"),
    ]
    meta = pd.DataFrame(
        {
            "object_key": [r[0] for r in rows],
            "image_id": [r[1] for r in rows],
            "source_image": [r[2] for r in rows],
            "instance_id": [r[3] for r in rows],
            "instance_key": [f"{r[2]}#{r[3]}" for r in rows],
            "class_name": [r[4] for r in rows],
            "source": ["original"] * 4 + ["hflip"] * 2,
            "area_fraction": 0.1,
        }
    )
    features = np.random.default_rng(0).normal(size=(6, 5))
    return PrototypeTable(meta, features)


def pairs_of(long, name):
    sub = long[long["set"] == name]
    return {"".join(sorted((a, b))) for a, b in zip(sub["a"], sub["b"])}


def test_fig2_sets_follow_the_equations():
    long = distance_sets(fig2_table(), metric="euclidean")
    assert pairs_of(long, "scsi") == {"cd", "ef"}
    assert pairs_of(long, "dcsi") == {"ab"}
    assert pairs_of(long, "dcdi") == {"ac", "ad", "ae", "af"}
    assert pairs_of(long, "scdi") == {"bc", "bd", "be", "bf", "ce", "cf", "de", "df"}
    assert pairs_of(long, "sidi") == {"ce", "df"}
    # every pair exactly once per set
    assert not long.duplicated(["set", "a", "b"]).any()


def test_scdi_without_same_instance_pairs():
    long = distance_sets(fig2_table(), metric="euclidean", scdi_same_instance=False)
    assert pairs_of(long, "scdi") == {"bc", "bd", "be", "bf", "cf", "de"}


@pytest.mark.parametrize("block", [1, 2, 4, 100])
def test_distances_in_sets_are_the_pair_distances(block):
    table = fig2_table()
    long = distance_sets(table, metric="euclidean", block=block)
    index = {k: i for i, k in enumerate(table.meta["object_key"])}
    for _, row in long.iterrows():
        f = table.features.astype(np.float64)
        expected = np.linalg.norm(f[index[row.a]] - f[index[row.b]])
        assert row.distance == pytest.approx(expected, rel=1e-9)
    # 15 unordered pairs; sidi pairs (2) are also in scdi
    assert len(long) == 15 + 2


# ---------------------------------------------------------------- beyond Fig. 2


def random_table(n_images=12, seed=0, dim=6, flip_every=3) -> PrototypeTable:
    """Images of 1-4 objects of 3 classes; every ``flip_every``-th image also flipped."""
    rng = np.random.default_rng(seed)
    rows, feats = [], []
    for img in range(n_images):
        objects = [(k, ["cat", "dog", "cow"][rng.integers(3)]) for k in range(rng.integers(1, 5))]
        copies = [("", "original")] + ([("@hflip", "hflip")] if img % flip_every == 0 else [])
        for suffix, source in copies:
            for k, cls in objects:
                rows.append(
                    {
                        "object_key": f"i{img}{suffix}:{k}",
                        "image_id": f"i{img}{suffix}",
                        "source_image": f"i{img}",
                        "instance_id": k,
                        "instance_key": f"i{img}#{k}",
                        "class_name": cls,
                        "source": source,
                        "area_fraction": 0.1,
                    }
                )
                feats.append(rng.normal(size=dim))
    return PrototypeTable(pd.DataFrame(rows), np.array(feats))


def brute_force_sets(table, metric="euclidean", scdi_same_instance=True):
    """Eqs. 11-15 written out pair by pair in plain Python."""
    m = table.meta
    d = cdist(table.features.astype(np.float64), table.features.astype(np.float64), metric)
    out = []
    for p, q in itertools.combinations(range(len(m)), 2):
        same_i = m.image_id[p] == m.image_id[q]
        same_c = m.class_name[p] == m.class_name[q]
        same_inst = m.instance_key[p] == m.instance_key[q]
        names = []
        if same_i and same_c and not same_inst:
            names.append("scsi")
        if not same_i and same_c and (scdi_same_instance or not same_inst):
            names.append("scdi")
        if not same_i and same_inst:
            names.append("sidi")
        if same_i and not same_c:
            names.append("dcsi")
        if not same_i and not same_c:
            names.append("dcdi")
        out += [(s, m.object_key[p], m.object_key[q], d[p, q]) for s in names]
    return sorted(out)


@pytest.mark.parametrize("scdi_same_instance", [True, False])
@pytest.mark.parametrize("metric", ["euclidean", "cityblock", "cosine", "correlation"])
def test_sets_match_a_pair_by_pair_reference(metric, scdi_same_instance):
    table = random_table()
    long = distance_sets(table, metric=metric, block=5, scdi_same_instance=scdi_same_instance)
    ours = sorted(
        zip(long["set"].astype(str), long["a"].astype(str), long["b"].astype(str), long["distance"])
    )
    ref = brute_force_sets(table, metric, scdi_same_instance)
    assert [r[:3] for r in ours] == [r[:3] for r in ref]
    np.testing.assert_allclose([r[3] for r in ours], [r[3] for r in ref], rtol=1e-6, atol=1e-12)
    counts = set_pair_counts(table.meta, scdi_same_instance=scdi_same_instance)
    assert counts == {s: sum(r[0] == s for r in ref) for s in SETS}


def test_long_form_rows_point_at_the_table():
    table = random_table(seed=1)
    long = distance_sets(table, metric="euclidean")
    keys = table.meta["object_key"].to_numpy()
    images = table.meta["image_id"].to_numpy()
    assert (long["i"] < long["j"]).all()
    assert (keys[long["i"]] == long["a"].astype(str)).all()
    assert (keys[long["j"]] == long["b"].astype(str)).all()
    assert (images[long["i"]] == long["image_a"].astype(str)).all()
    f = table.features.astype(np.float64)
    expected = np.linalg.norm(f[long["i"]] - f[long["j"]], axis=1)
    np.testing.assert_allclose(long["distance"], expected, rtol=1e-9)
    assert long.attrs["metric"] == "euclidean" and long.attrs["dropped_pairs"] == 0


def test_long_form_refuses_too_many_pairs():
    with pytest.raises(ValueError, match="set_aggregates"):
        distance_sets(random_table(), metric="cosine", max_pairs=10)


def test_zero_prototype_pairs_are_dropped_and_counted(caplog):
    table = random_table(seed=2)
    table.features[3] = 0.0
    n = len(table)
    with caplog.at_level(logging.WARNING, logger="difflens"):
        long = distance_sets(table, metric="cosine")
    assert "left out of every set" in caplog.text
    assert long.attrs["dropped_pairs"] == n - 1
    assert long.attrs["degenerate_objects"] == [table.meta.object_key[3]]
    assert np.isfinite(long["distance"]).all()
    assert not ((long["i"] == 3) | (long["j"] == 3)).any()
    assert len(long) == sum(set_pair_counts(table.meta).values()) - sum(
        1 for r in brute_force_sets(table) if table.meta.object_key[3] in r[1:3]
    )
    kept = distance_sets(table, metric="cosine", degenerate="orthogonal")
    assert (kept.loc[(kept["i"] == 3) | (kept["j"] == 3), "distance"] == 1.0).all()


@pytest.mark.parametrize("block", [4, 1000])
def test_aggregates_equal_the_long_form(block):
    table = random_table(n_images=30, seed=3)
    long = distance_sets(table, metric="euclidean")
    agg = set_aggregates(table, metric="euclidean", block=block, sample_per_set=40, bins=20000)
    summary = agg.summary()
    for name, values in long.groupby("set", observed=True)["distance"]:
        assert summary.loc[name, "n"] == len(values)
        assert summary.loc[name, "mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert summary.loc[name, "std"] == pytest.approx(values.std(), rel=1e-9)
        assert summary.loc[name, "min"] == pytest.approx(values.min(), rel=1e-12)
        assert summary.loc[name, "max"] == pytest.approx(values.max(), rel=1e-12)
        width = agg.edges[1] - agg.edges[0]
        assert abs(summary.loc[name, "median"] - values.median()) <= 2 * width
        assert abs(agg.quantile(name, 0.25) - np.quantile(values, 0.25)) <= 2 * width
    # the subsample: rows of the long form, about 40 per set, the same for any block size
    merged = agg.sample.merge(long, on=["set", "i", "j"], suffixes=("", "_full"))
    assert len(merged) == len(agg.sample)
    np.testing.assert_allclose(merged["distance"], merged["distance_full"], rtol=1e-12)
    reference = set_aggregates(table, metric="euclidean", block=7, sample_per_set=40)
    assert agg.sample[["set", "i", "j"]].equals(reference.sample[["set", "i", "j"]])
    for name, rate in agg.sample_rate.items():
        n_set = summary.loc[name, "n"]
        assert rate == pytest.approx(min(1.0, 40 / n_set))
        assert (
            abs((agg.sample["set"] == name).sum() - rate * n_set) <= 4 * np.sqrt(rate * n_set) + 1
        )


def test_source_sums_from_long_and_streamed_agree():
    table = random_table(n_images=15, seed=4)
    long = distance_sets(table, metric="cosine")
    from_long = SourcePairSums.from_long(long, table)
    streamed = set_aggregates(table, metric="cosine", block=6).sources
    names = list(from_long.source_names)
    for name in from_long.sets:
        s1, c1 = from_long.get(name)
        s2, c2 = streamed.get(name)
        np.testing.assert_allclose(s1, s2, rtol=1e-12)
        np.testing.assert_array_equal(c1, c2)
        # one cell by hand: pairs of the set between source images i0 and i3
        sub = long[(long["set"] == name)]
        src = table.meta["source_image"].to_numpy()
        sa, sb = src[sub["i"]], src[sub["j"]]
        lo, hi = np.minimum(sa, sb), np.maximum(sa, sb)
        for s, t in [("i0", "i0"), ("i0", "i3")]:
            sel = (lo == s) & (hi == t)
            assert s1[names.index(s), names.index(t)] == pytest.approx(sub["distance"][sel].sum())


def test_sparse_source_sums_equal_dense():
    table = random_table(n_images=15, seed=5)
    long = distance_sets(table, metric="euclidean")
    dense = SourcePairSums.from_long(long, table)
    sparse_sums = SourcePairSums.from_long(long, table, dense_limit=2)
    assert dense.dense and not sparse_sums.dense
    for name in dense.sets:
        np.testing.assert_allclose(sparse_sums.get(name)[0].toarray(), dense.get(name)[0])
        np.testing.assert_allclose(sparse_sums.get(name)[1].toarray(), dense.get(name)[1])
        # every pair's distance lands in exactly one cell: the totals are the set's
        assert dense.get(name)[0].sum() == pytest.approx(long.distance[long.set == name].sum())
