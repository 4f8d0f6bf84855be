"""Store keys are stable: a cache written by an earlier release is read back, not recomputed.

``tests/fixtures/store_v1`` holds a store written by difflens before its package layout
changed (latents and prototypes of two toy scenes on the built-in tiny model, two
settings), the scenes themselves, and a summary of what was stored. A key that changes
(a renamed field, a moved default) would miss every entry and recompute.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from difflens.data.scene import Scene
from difflens.features.batch import PrototypeSpec, prototype_tables
from difflens.features.extractor import FeatureExtractor
from difflens.features.store import FeatureStore

FIXTURE = Path(__file__).parent / "fixtures" / "store_v1"


def fixture_scenes() -> list[Scene]:
    arrays = np.load(FIXTURE / "scenes.npz")
    described = json.loads((FIXTURE / "scenes.json").read_text())
    return [
        Scene(image=arrays[f"image{i}"], masks=arrays[f"masks{i}"], **fields)
        for i, fields in enumerate(described)
    ]


def test_a_store_written_before_the_layout_change_is_hit_without_any_forward(
    tiny_backbone, tmp_path
):
    expected = json.loads((FIXTURE / "expected.json").read_text())
    if tiny_backbone.fingerprint() != expected["fingerprint"]:
        pytest.fail(
            "the built-in tiny model's weights differ from those the fixture was written with "
            f"({tiny_backbone.fingerprint()} != {expected['fingerprint']}): a diffusers release "
            "changed its default initialisation; rebuild tests/fixtures/store_v1"
        )
    shutil.copytree(FIXTURE / "store", tmp_path / "store")
    store = FeatureStore(tmp_path / "store")
    extractor = FeatureExtractor(tiny_backbone, image_size=64, store=store)
    calls = []
    handle = tiny_backbone.unet.register_forward_pre_hook(lambda *args: calls.append(1))
    try:
        specs = [PrototypeSpec("down2.attn0"), PrototypeSpec("up1.attn0", timestep=50, ensemble=2)]
        tables = prototype_tables(fixture_scenes(), extractor, specs, progress=False)
    finally:
        handle.remove()
    assert calls == [], "the U-Net ran: a stored entry was missed"
    assert tables.counts["cached"] == 2 and tables.counts["done"] == 0
    assert store.stats["misses"] == 0 and store.stats["writes"] == 0
    assert sorted(str(p.relative_to(store.root)) for p in store.entries()) == expected["entries"]
    for label, summary in expected["tables"].items():
        table = tables[label]
        assert list(table.features.shape) == summary["shape"]
        assert table.meta["object_key"].tolist() == summary["object_keys"]
        assert float(table.features.astype(np.float64).sum()) == pytest.approx(
            summary["features_sum"], rel=1e-12
        )
