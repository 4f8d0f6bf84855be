"""One process of a sharded extraction (run alone, or by ``accelerate launch`` in the tests).

Fills the store given on the command line with prototype tables and feature maps of toy
scenes, reads them back, and writes what this process saw to ``<out>/<process index>.json``:
its shard, the store writes it made, the counts, and a hash of every table and map it got.
With ``--train``, trains a small hyperfeatures aggregator on toy pairs instead (weights and
history in ``<out>``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from difflens.data.sources import open_images
from difflens.features.batch import PrototypeSpec, feature_maps, prototype_tables
from difflens.features.distributed import current_shard, finish
from difflens.features.extractor import make_extractor


def sha(array) -> str:
    array = np.ascontiguousarray(np.asarray(array))
    return hashlib.sha256(array.tobytes() + str(array.shape).encode()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--n-images", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--train", action="store_true")
    args = parser.parse_args()
    if args.train:
        train(args.store, args.out)
        finish()
        return
    extractor = make_extractor("tiny", 64, cache=args.store)
    scenes = open_images("toyworld", args.n_images, seed=0, scene_size=64)
    specs = [PrototypeSpec("down2.attn0"), PrototypeSpec("up1.attn0", timestep=50, name="up t50")]
    tables = prototype_tables(scenes, extractor, specs, batch_size=args.batch_size, progress=False)
    images = [scene.image for scene in scenes]
    maps = feature_maps(
        images, extractor, "down1.res1", [0, 20], batch_size=args.batch_size, progress=False
    )
    shard = current_shard()
    record = {
        "index": shard.index,
        "count": shard.count,
        "writes": extractor.store.stats["writes"],
        "counts": dict(tables.counts),
        "map_counts": dict(maps.counts),
        "tables": {
            label: {
                "rows": table.meta.astype(str).to_dict(orient="records"),
                "features": sha(table.features),
                "skipped": [list(r) for r in table.skipped.records],
            }
            for label, table in tables.items()
        },
        "maps": {
            key: [{name: sha(m.numpy()) for name, m in per.items()} for per in settings]
            for key, settings in maps.items()
        },
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{shard.index}.json").write_text(json.dumps(record, indent=1, sort_keys=True))
    finish()


TRAIN_LAYERS = ("up1.res2.conv2", "up2.res1.conv2")


def train(store: str, out: str) -> None:
    from difflens.correspondence.hyperfeatures import TrainConfig, train_aggregator
    from difflens.data.toy import ToyPairs
    from difflens.features.trajectory import StackSpec

    extractor = make_extractor("toy", 64, cache=store)
    pairs = list(ToyPairs(4, split="train", size=64))
    val = list(ToyPairs(1, split="validation", size=64))
    spec = StackSpec(TRAIN_LAYERS, mode="noise", timesteps=(50,), grid=8)
    config = TrainConfig(steps=2, val_every=2, checkpoint_every=1, seed=3)
    result = train_aggregator(
        pairs, val, extractor, spec, config=config, out_dim=16, folder=out, progress=False
    )
    shard = current_shard()
    Path(out, f"losses{shard.index}.json").write_text(json.dumps(result.losses))


if __name__ == "__main__":
    main()
