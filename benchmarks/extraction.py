"""Extraction benchmark: the authors' path against difflens on the SD 1.5 architecture.

Random weights (the architecture built from its config, seed 0), 512 px toy-world images,
CPU by default (``--device cuda`` where one exists). Per image and workload it times

- **baseline** (the authors' path): VAE encode, then a full U-Net forward, once for every
  setting;
- **difflens**: latents read from the store (filled once before timing), early stop after
  the requested layer, every setting of the workload in one batched forward.

Workloads: ``one_setting`` (the paper's layer at t = 0) and ``timestep_study``
(t = 1, 50, 100, 200, 300, 400, 500). FLOPs are counted with ``torch.utils.flop_counter``
on a meta-device copy of the same modules running the same code (hooks and early stop
included), so counting costs no compute; ``peak_fraction`` is achieved FLOP/s over the
machine's matmul peak, measured with a timed ``torch.matmul``. ``peak_rss_mb`` is the
resident-set high-water mark while the difflens path ran (reset before each path through
``/proc/self/clear_refs`` on Linux; elsewhere the process's peak so far).

``--json`` prints one object: per workload ``baseline_s``, ``difflens_s``, ``speedup``,
``max_abs_diff``, ``flops`` (difflens, per image), ``peak_fraction`` (difflens) and
``peak_rss_mb``; with ``--bf16`` also a ``"bf16"`` object (difflens in bfloat16 against
fp32: time, feature difference, and how far prototype distances move).

Default: 1 image (the baseline timestep study alone is 7 VAE encodes + 7 full U-Net passes
per image, about 5 minutes in all on 2 CPU cores); ``--images N`` for more.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch
from scipy.stats import spearmanr
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from difflens.datasets import ToyWorld
from difflens.extract import FeatureExtractor, Setting, capture, run_unet
from difflens.layers import PAPER_LAYER
from difflens.prototypes import scene_prototypes
from difflens.sd_configs import SD_VAE, build_sd_backbone
from difflens.store import FeatureStore

WORKLOADS = {
    "one_setting": [0],
    "timestep_study": [1, 50, 100, 200, 300, 400, 500],
}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(device: str, dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """Best achieved FLOP/s of an ``n x n`` matrix product (the machine's practical peak)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


class PeakRSS:
    """Resident-set high-water mark in MB, resettable on Linux."""

    def reset(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            pass

    def read(self) -> float:
        try:
            with open("/proc/self/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1024**2


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def count_flops(fn) -> int:
    """FLOPs of ``fn()`` (CPU's fused attention counted like the CUDA kernels)."""
    aten = torch.ops.aten
    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return int(counter.get_total_flops())


class MetaModel:
    """Meta-device copies of the U-Net and VAE: the same code path, no memory, no compute."""

    def __init__(self, extractor: FeatureExtractor):
        from diffusers import AutoencoderKL, UNet2DConditionModel

        with torch.device("meta"):
            self.unet = UNet2DConditionModel(**extractor.backbone.unet.config).eval()
            self.vae = AutoencoderKL(**SD_VAE).eval()
        self.registry = type(extractor.registry)(self.unet, extractor.backbone.latent_scale)
        self.size = extractor.size
        self.context = extractor.text_embedding().shape

    def _inputs(self, rows: int):
        h, w = self.size[0] // 8, self.size[1] // 8
        latent = torch.zeros(rows, 4, h, w, device="meta")
        t = torch.zeros(rows, dtype=torch.long, device="meta")
        context = torch.zeros(rows, *self.context[1:], device="meta")
        return latent, t, context

    def encode(self) -> int:
        pixels = torch.zeros(1, 3, *self.size, device="meta")
        return count_flops(lambda: self.vae.encode(pixels))

    def unet_pass(self, layer: str, rows: int, stop_early: bool) -> int:
        latent, t, context = self._inputs(rows)

        def run():
            with capture(self.registry, [layer], stop_early=stop_early):
                run_unet(self.unet, latent, t, context)

        return count_flops(run)


def timed(fn, device: str, *args):
    """``fn(*args)`` and its wall-clock seconds (device synchronised)."""
    sync(device)
    start = time.perf_counter()
    out = fn(*args)
    sync(device)
    return out, time.perf_counter() - start


def authors_path(extractor: FeatureExtractor, image, layer: str, timestep: int):
    """VAE encode plus a full U-Net forward for one setting."""
    latents = extractor.encode([image])
    return extractor.features_from_latents(latents, [layer], timestep, stop_early=False)[layer]


def difflens_path(extractor: FeatureExtractor, image, layer: str, settings):
    """Latents from the store, then every setting in one early-stopped forward."""
    latents = extractor.encode([image])
    return [f[layer] for f in extractor.features_for_settings(latents, [layer], settings)]


def run_workload(timesteps, images, plain, cached, layer, device, rss):
    """Per-image seconds of both paths and their features."""
    settings = [Setting(t) for t in timesteps]
    baseline_s, baseline_maps = 0.0, []
    rss.reset()
    for image in images:
        per_setting = []
        for t in timesteps:
            fmap, seconds = timed(authors_path, device, plain, image, layer, t)
            baseline_s += seconds
            per_setting.append(fmap)
        baseline_maps.append(per_setting)
    baseline_rss = rss.read()
    difflens_s, difflens_maps = 0.0, []
    rss.reset()
    for image in images:
        maps, seconds = timed(difflens_path, device, cached, image, layer, settings)
        difflens_s += seconds
        difflens_maps.append(maps)
    difflens_rss = rss.read()
    diff = max(
        float((a - b).abs().max())
        for per_a, per_b in zip(baseline_maps, difflens_maps)
        for a, b in zip(per_a, per_b)
    )
    scale = max(float(a.abs().max()) for per in baseline_maps for a in per)
    n = len(images)
    return {
        "baseline_s": baseline_s / n,
        "difflens_s": difflens_s / n,
        "max_abs_diff": diff,
        "max_abs": scale,
        "baseline_rss_mb": baseline_rss,
        "peak_rss_mb": difflens_rss,
        "maps": difflens_maps,
    }


def distance_shift(scenes, maps_fp32, maps_low) -> dict:
    """How far cosine and Euclidean prototype distances move between two sets of maps."""
    from difflens.distances import pairwise

    shifts = {}
    for metric in ("cosine", "euclidean"):
        ref_all, low_all = [], []
        for j in range(len(maps_fp32[0])):  # per setting
            ref = np.concatenate(
                [scene_prototypes(m[j][0], s).features for s, m in zip(scenes, maps_fp32)]
            )
            low = np.concatenate(
                [scene_prototypes(m[j][0], s).features for s, m in zip(scenes, maps_low)]
            )
            iu = np.triu_indices(len(ref), 1)
            ref_all.append(np.asarray(pairwise(ref, metric=metric))[iu])
            low_all.append(np.asarray(pairwise(low, metric=metric))[iu])
        ref_d, low_d = np.concatenate(ref_all), np.concatenate(low_all)
        relative = np.abs(low_d - ref_d) / np.maximum(np.abs(ref_d), 1e-12)
        shifts[metric] = {
            "pairs": int(len(ref_d)),
            "median_rel_shift": float(np.median(relative)),
            "max_rel_shift": float(relative.max()),
            "spearman": float(spearmanr(ref_d, low_d)[0]) if len(ref_d) > 2 else None,
        }
    return shifts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1, help="number of images (default 1)")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--layer", default=PAPER_LAYER)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="also time difflens in bfloat16")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print

    rss = PeakRSS()
    log(f"building the SD 1.5 architecture (random weights) on {args.device} ...")
    backbone = build_sd_backbone("1.5", seed=0).to(device=args.device)
    world = ToyWorld(n_images=args.images, size=args.image_size, seed=11, n_objects=(5, 6))
    scenes = [world[i] for i in range(args.images)]  # 5-6 objects: 10-15 distances per image
    images = [scene.image for scene in scenes]
    peak = matmul_peak(args.device, torch.float32)
    results, extra = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        store = FeatureStore(folder)
        plain = FeatureExtractor(backbone, image_size=args.image_size)
        cached = FeatureExtractor(backbone, image_size=args.image_size, store=store)
        (_, cold_s) = timed(lambda: cached.encode(images), args.device)  # fills the cache
        cached.features_for_settings(cached.encode(images[:1]), [args.layer], [0])  # warm-up
        meta = MetaModel(plain)
        encode_flops = meta.encode()
        full_flops = meta.unet_pass(args.layer, 1, stop_early=False)
        for name, timesteps in WORKLOADS.items():
            log(f"{name}: {len(timesteps)} setting(s) x {args.images} image(s) ...")
            r = run_workload(timesteps, images, plain, cached, args.layer, args.device, rss)
            flops = meta.unet_pass(args.layer, len(timesteps), stop_early=True)
            baseline_flops = len(timesteps) * (encode_flops + full_flops)
            results[name] = {
                "baseline_s": round(r["baseline_s"], 3),
                "difflens_s": round(r["difflens_s"], 3),
                "speedup": round(r["baseline_s"] / r["difflens_s"], 2),
                "max_abs_diff": r["max_abs_diff"],
                "flops": flops,
                "peak_fraction": round(flops / r["difflens_s"] / peak, 4),
                "peak_rss_mb": round(r["peak_rss_mb"], 1),
            }
            extra[name] = {
                "baseline_flops": baseline_flops,
                "baseline_peak_fraction": baseline_flops / r["baseline_s"] / peak,
                "baseline_rss_mb": r["baseline_rss_mb"],
                "max_abs": r["max_abs"],
                "maps": r["maps"],
            }
        bf16 = {}
        if args.bf16:
            backbone.to(dtype=torch.bfloat16)
            low = FeatureExtractor(backbone, image_size=args.image_size, store=store)
            low.encode(images)  # bf16 latents, cached before timing
            low.features_for_settings(low.encode(images[:1]), [args.layer], [0])  # warm-up
            peak_bf16 = matmul_peak(args.device, torch.bfloat16)
            for name, timesteps in WORKLOADS.items():
                log(f"{name} in bf16 ...")
                settings = [Setting(t) for t in timesteps]
                seconds, maps = 0.0, []
                for image in images:
                    per_image, s = timed(
                        difflens_path, args.device, low, image, args.layer, settings
                    )
                    seconds += s
                    maps.append(per_image)
                ref = extra[name]["maps"]
                diff = max(
                    float((a - b).abs().max()) for pa, pb in zip(ref, maps) for a, b in zip(pa, pb)
                )
                bf16[name] = {
                    "difflens_s": round(seconds / len(images), 3),
                    "speedup_vs_fp32": round(
                        results[name]["difflens_s"] * len(images) / seconds, 2
                    ),
                    "max_abs_diff_vs_fp32": diff,
                    "max_abs_fp32": extra[name]["max_abs"],
                    "peak_fraction": round(
                        results[name]["flops"] / (seconds / len(images)) / peak_bf16, 4
                    ),
                    "distances": distance_shift(scenes, ref, maps),
                }
    report = dict(results)
    if bf16:
        report["bf16"] = bf16
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print_table(args, results, extra, bf16, peak, cold_s, encode_flops, full_flops)
    return 0


def print_table(args, results, extra, bf16, peak, cold_s, encode_flops, full_flops) -> None:
    from tabulate import tabulate

    print(
        f"\nSD 1.5 architecture, random weights, {args.image_size} px, layer {args.layer}, "
        f"{args.device}, {torch.get_num_threads()} threads, {args.images} image(s); "
        f"matmul peak {peak / 1e9:.0f} GFLOP/s"
    )
    print(
        f"VAE encode {encode_flops / 1e9:.0f} GFLOP, full U-Net {full_flops / 1e9:.0f} GFLOP; "
        f"filling the latent cache took {cold_s / args.images:.2f} s per image\n"
    )
    rows = []
    for name, r in results.items():
        e = extra[name]
        rows.append(
            [
                name,
                r["baseline_s"],
                r["difflens_s"],
                r["speedup"],
                f"{r['max_abs_diff']:.1e} (of {e['max_abs']:.1f})",
                f"{e['baseline_flops'] / 1e9:.0f} / {r['flops'] / 1e9:.0f}",
                f"{e['baseline_peak_fraction']:.2f} / {r['peak_fraction']:.2f}",
                f"{e['baseline_rss_mb']:.0f} / {r['peak_rss_mb']:.0f}",
            ]
        )
    headers = [
        "workload",
        "baseline s/img",
        "difflens s/img",
        "speedup",
        "max |diff|",
        "GFLOP/img (base / dl)",
        "peak frac (base / dl)",
        "peak RSS MB (base / dl)",
    ]
    print(tabulate(rows, headers=headers))
    if bf16:
        print("\nbf16 (difflens path) against fp32:")
        rows = []
        for name, b in bf16.items():
            d = b["distances"]
            rows.append(
                [
                    name,
                    b["difflens_s"],
                    b["speedup_vs_fp32"],
                    f"{b['max_abs_diff_vs_fp32']:.2e} (of {b['max_abs_fp32']:.1f})",
                    f"{d['cosine']['median_rel_shift']:.1e} / {d['cosine']['max_rel_shift']:.1e}",
                    f"{d['euclidean']['median_rel_shift']:.1e} / {d['euclidean']['max_rel_shift']:.1e}",
                    "n/a" if d["cosine"]["spearman"] is None else f"{d['cosine']['spearman']:.4f}",
                    d["cosine"]["pairs"],
                ]
            )
        headers = [
            "workload",
            "s/img",
            "x fp32",
            "max |diff|",
            "cosine shift med / max",
            "euclid shift med / max",
            "Spearman",
            "pairs",
        ]
        print(tabulate(rows, headers=headers))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
