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

The two paths' features are compared as ``max_abs_diff`` (largest |difference|) and,
since float32 rounds relative to the values' size, as ``max_rel_diff`` = ``max_abs_diff``
/ ``ref_max_abs``, the largest |value| of the baseline's features (``ref_rms``, their root
mean square, is reported for context). Differences of order 1e-6 relative or less are
float32 rounding (machine epsilon 1.2e-7, accumulated over the network's layers and
changed by the batch size), not a different computation.

``--json`` prints one object: per workload ``baseline_s``, ``difflens_s``, ``speedup``,
``max_abs_diff``, ``ref_max_abs``, ``ref_rms``, ``max_rel_diff``, ``flops`` (difflens, per
image), ``peak_fraction`` (difflens) and ``peak_rss_mb``; with ``--bf16`` also a ``"bf16"``
object (difflens in bfloat16 against fp32: time, absolute and relative feature difference,
and how far prototype distances move). ``--markdown PATH`` writes the result table as a
Markdown fragment (no heading; one closing line gives the date, CPU count and torch
version) for the documentation's benchmarks page.

Default: 1 image of 512 px (the baseline timestep study alone is 7 VAE encodes + 7 full
U-Net passes per image, about 5 minutes in all on 2 CPU cores); ``--images N`` for more,
``--image-size 64`` (the smallest) for a quick check of the output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from difflens.core.skips import SkipLog
from difflens.data.toy import ToyWorld
from difflens.features.extractor import FeatureExtractor
from difflens.features.hooks import capture, run_unet
from difflens.features.prototypes import scene_prototypes
from difflens.features.settings import Setting
from difflens.features.store import FeatureStore
from difflens.models.layers import PAPER_LAYER
from difflens.models.sd_configs import SD_VAE, build_sd_backbone

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
            self.unet = UNet2DConditionModel(**extractor.backbone.base_unet.config).eval()
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


def reference_scale(maps) -> dict:
    """Magnitude of the reference features: the scale a float32 rounding error is relative to.

    ``max_abs`` is the largest |value| of all reference maps (the denominator of every
    ``max_rel_diff``); ``rms`` their root mean square, for context.
    """
    flat = torch.cat([m.double().reshape(-1) for m in maps])
    return {"max_abs": float(flat.abs().max()), "rms": float(flat.square().mean().sqrt())}


def relative(diff: float, scale: float) -> float:
    """``diff / scale`` (``inf`` for a zero scale with a non-zero difference)."""
    if scale > 0:
        return diff / scale
    return 0.0 if diff == 0 else float("inf")


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
    scale = reference_scale([a for per in baseline_maps for a in per])
    n = len(images)
    return {
        "baseline_s": baseline_s / n,
        "difflens_s": difflens_s / n,
        "max_abs_diff": diff,
        "max_abs": scale["max_abs"],
        "rms": scale["rms"],
        "baseline_rss_mb": baseline_rss,
        "peak_rss_mb": difflens_rss,
        "maps": difflens_maps,
    }


def distance_shift(scenes, maps_fp32, maps_low) -> dict:
    """How far cosine and Euclidean prototype distances move between two sets of maps."""
    from difflens.analysis.distances import pairwise

    shifts = {}
    for metric in ("cosine", "euclidean"):
        ref_all, low_all = [], []
        for j in range(len(maps_fp32[0])):  # per setting
            ref = np.concatenate(
                [
                    scene_prototypes(m[j][0], s, skipped=SkipLog(verbose=False)).features
                    for s, m in zip(scenes, maps_fp32)
                ]
            )
            low = np.concatenate(
                [
                    scene_prototypes(m[j][0], s, skipped=SkipLog(verbose=False)).features
                    for s, m in zip(scenes, maps_low)
                ]
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


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1, help="number of images (default 1)")
    parser.add_argument(
        "--image-size", type=int, default=512, help="image side in px, a multiple of 64 (>= 64)"
    )
    parser.add_argument("--layer", default=PAPER_LAYER)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="also time difflens in bfloat16")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the result table as a Markdown fragment (no heading) to PATH",
    )
    return parser.parse_args(argv)


def measure_fp32(args, backbone, images, store, peak, log):
    """Both paths per workload, in float32: ``results`` (reported) and ``extra`` (context)."""
    results, extra = {}, {}
    plain = FeatureExtractor(backbone, image_size=args.image_size)
    cached = FeatureExtractor(backbone, image_size=args.image_size, store=store)
    (_, cold_s) = timed(lambda: cached.encode(images), args.device)  # fills the cache
    cached.features_for_settings(cached.encode(images[:1]), [args.layer], [0])  # warm-up
    meta = MetaModel(plain)
    extra["encode_flops"] = meta.encode()
    extra["full_flops"] = meta.unet_pass(args.layer, 1, stop_early=False)
    extra["cold_s"] = cold_s
    for name, timesteps in WORKLOADS.items():
        log(f"{name}: {len(timesteps)} setting(s) x {args.images} image(s) ...")
        r = run_workload(timesteps, images, plain, cached, args.layer, args.device, PeakRSS())
        flops = meta.unet_pass(args.layer, len(timesteps), stop_early=True)
        baseline_flops = len(timesteps) * (extra["encode_flops"] + extra["full_flops"])
        results[name] = {
            "baseline_s": round(r["baseline_s"], 3),
            "difflens_s": round(r["difflens_s"], 3),
            "speedup": round(r["baseline_s"] / r["difflens_s"], 2),
            "max_abs_diff": r["max_abs_diff"],
            "ref_max_abs": r["max_abs"],
            "ref_rms": r["rms"],
            "max_rel_diff": relative(r["max_abs_diff"], r["max_abs"]),
            "flops": flops,
            "peak_fraction": round(flops / r["difflens_s"] / peak, 4),
            "peak_rss_mb": round(r["peak_rss_mb"], 1),
        }
        extra[name] = {
            "baseline_flops": baseline_flops,
            "baseline_peak_fraction": baseline_flops / r["baseline_s"] / peak,
            "baseline_rss_mb": r["baseline_rss_mb"],
            "maps": r["maps"],
        }
    return results, extra


def measure_bf16(args, backbone, scenes, store, results, extra, log):
    """The difflens path in bfloat16 against the float32 maps of :func:`measure_fp32`."""
    images = [scene.image for scene in scenes]
    backbone.to(dtype=torch.bfloat16)
    low = FeatureExtractor(backbone, image_size=args.image_size, store=store)
    low.encode(images)  # bf16 latents, cached before timing
    low.features_for_settings(low.encode(images[:1]), [args.layer], [0])  # warm-up
    peak_bf16 = matmul_peak(args.device, torch.bfloat16)
    bf16 = {}
    for name, timesteps in WORKLOADS.items():
        log(f"{name} in bf16 ...")
        settings = [Setting(t) for t in timesteps]
        seconds, maps = 0.0, []
        for image in images:
            per_image, s = timed(difflens_path, args.device, low, image, args.layer, settings)
            seconds += s
            maps.append(per_image)
        ref = extra[name]["maps"]
        diff = max(float((a - b).abs().max()) for pa, pb in zip(ref, maps) for a, b in zip(pa, pb))
        scale = results[name]["ref_max_abs"]
        bf16[name] = {
            "difflens_s": round(seconds / len(images), 3),
            "speedup_vs_fp32": round(results[name]["difflens_s"] * len(images) / seconds, 2),
            "max_abs_diff_vs_fp32": diff,
            "max_abs_fp32": scale,
            "max_rel_diff_vs_fp32": relative(diff, scale),
            "peak_fraction": round(results[name]["flops"] / (seconds / len(images)) / peak_bf16, 4),
            "distances": distance_shift(scenes, ref, maps),
        }
    return bf16


def main(argv=None) -> int:
    args = parse_args(argv)
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print
    log(f"building the SD 1.5 architecture (random weights) on {args.device} ...")
    backbone = build_sd_backbone("1.5", seed=0).to(device=args.device)
    world = ToyWorld(n_images=args.images, size=args.image_size, seed=11, n_objects=(5, 6))
    scenes = [world[i] for i in range(args.images)]  # 5-6 objects: 10-15 distances per image
    images = [scene.image for scene in scenes]
    peak = matmul_peak(args.device, torch.float32)
    with tempfile.TemporaryDirectory() as folder:
        store = FeatureStore(folder)
        results, extra = measure_fp32(args, backbone, images, store, peak, log)
        bf16 = {}
        if args.bf16:
            bf16 = measure_bf16(args, backbone, scenes, store, results, extra, log)
    report = dict(results)
    if bf16:
        report["bf16"] = bf16
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown_fragment(args, results, extra, bf16))
        log(f"wrote {args.markdown}")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print_table(args, results, extra, bf16, peak)
    return 0


HEADERS = [
    "workload",
    "baseline s/img",
    "difflens s/img",
    "speedup",
    "max |diff|",
    "max |ref|",
    "max |diff| / max |ref|",
    "GFLOP/img (base / dl)",
    "peak frac (base / dl)",
    "peak RSS MB (base / dl)",
]
BF16_HEADERS = [
    "workload",
    "s/img",
    "x fp32",
    "max |diff|",
    "max |diff| / max |ref|",
    "cosine shift med / max",
    "euclid shift med / max",
    "Spearman",
    "pairs",
]


def table_rows(results, extra) -> list[list]:
    """One row per workload: times, speed-up, absolute and relative difference, cost."""
    rows = []
    for name, r in results.items():
        e = extra[name]
        rows.append(
            [
                name,
                r["baseline_s"],
                r["difflens_s"],
                r["speedup"],
                f"{r['max_abs_diff']:.1e}",
                f"{r['ref_max_abs']:.3g}",
                f"{r['max_rel_diff']:.1e}",
                f"{e['baseline_flops'] / 1e9:.0f} / {r['flops'] / 1e9:.0f}",
                f"{e['baseline_peak_fraction']:.2f} / {r['peak_fraction']:.2f}",
                f"{e['baseline_rss_mb']:.0f} / {r['peak_rss_mb']:.0f}",
            ]
        )
    return rows


def bf16_rows(bf16) -> list[list]:
    """One row per workload: bf16 time, speed-up and how far features and distances move."""
    rows = []
    for name, b in bf16.items():
        d = b["distances"]
        rows.append(
            [
                name,
                b["difflens_s"],
                b["speedup_vs_fp32"],
                f"{b['max_abs_diff_vs_fp32']:.2e}",
                f"{b['max_rel_diff_vs_fp32']:.1e}",
                f"{d['cosine']['median_rel_shift']:.1e} / {d['cosine']['max_rel_shift']:.1e}",
                f"{d['euclidean']['median_rel_shift']:.1e} / {d['euclidean']['max_rel_shift']:.1e}",
                "n/a" if d["cosine"]["spearman"] is None else f"{d['cosine']['spearman']:.4f}",
                d["cosine"]["pairs"],
            ]
        )
    return rows


def setup_line(args) -> str:
    return (
        f"SD 1.5 architecture, random weights, {args.image_size} px, layer {args.layer}, "
        f"{args.device}, {torch.get_num_threads()} threads, {args.images} image(s)"
    )


def print_table(args, results, extra, bf16, peak) -> None:
    from tabulate import tabulate

    print(f"\n{setup_line(args)}; matmul peak {peak / 1e9:.0f} GFLOP/s")
    print(
        f"VAE encode {extra['encode_flops'] / 1e9:.0f} GFLOP, full U-Net "
        f"{extra['full_flops'] / 1e9:.0f} GFLOP; filling the latent cache took "
        f"{extra['cold_s'] / args.images:.2f} s per image; max |ref| is the largest |value| of "
        "the baseline's features, the scale of the relative difference\n"
    )
    print(tabulate(table_rows(results, extra), headers=HEADERS, disable_numparse=True))
    if bf16:
        print("\nbf16 (difflens path) against fp32:")
        print(tabulate(bf16_rows(bf16), headers=BF16_HEADERS, disable_numparse=True))


def markdown_table(rows, headers) -> str:
    """A GitHub-flavoured Markdown table; ``|`` inside a cell is escaped."""
    from tabulate import tabulate

    def escape(cell) -> str:
        return str(cell).replace("|", "\\|")

    return tabulate(
        [[escape(cell) for cell in row] for row in rows],
        headers=[escape(h) for h in headers],
        tablefmt="github",
        disable_numparse=True,
    )


def markdown_fragment(args, results, extra, bf16) -> str:
    """The result table as Markdown (no heading) and one line on the machine and the date."""
    lines = [markdown_table(table_rows(results, extra), HEADERS), ""]
    if bf16:
        lines += [
            "bfloat16 (difflens path) against float32:",
            "",
            markdown_table(bf16_rows(bf16), BF16_HEADERS),
            "",
        ]
    lines.append(
        f"Measured on {date.today().isoformat()} on {os.cpu_count()} CPU cores "
        f"({platform.machine()}), torch {torch.__version__}: {setup_line(args)}. "
        "max |ref| is the largest |value| of the baseline's features; max |diff| / max |ref| "
        "compares with float32's relative precision (1.2e-7)."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
