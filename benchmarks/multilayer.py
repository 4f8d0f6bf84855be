"""Benchmark: L layers x S timesteps in one batched pass vs one pass per (layer, timestep).

Diffusion Hyperfeatures' inputs at SD 1.5 scale (random weights; ``build_sd_backbone("1.5")``):
the residual branches of the 12 up-path ResNets (``up{i}.res{j}.conv2``) at 11 timesteps,
reached here by adding noise (``scheduler.add_noise``, the noise path of
``difflens.features.trajectory``): Hyperfeatures' inversion timesteps -1, 60, 160, ..., 960
with the clean latent's -1 read as 0. Every map is resized to a common grid (bilinear,
``align_corners=False``) and the stack is stored as float16 in a ``FeatureStore``.

- **difflens**: ``collect_stacks`` -- one U-Net batch of S rows per image (one row per
  timestep), every layer captured from each row by forward hooks, resized, concatenated, cast to
  float16 and written to the store (time includes the VAE encoding, hashing and the write).
- **straightforward**: one forward pass per (layer, timestep), each capturing its one layer
  (``FeatureExtractor.features_from_latents``, which stops after that layer), resized and
  concatenated in float32 (the VAE encoding done once, timed as well).

Both stacks are compared value by value: the largest absolute difference relative to the
largest value (float16 storage rounds at 2**-11 = 4.9e-4 relative). Bytes per image: the
stored float16 stack (computed and on disk), the same at float32, and the maps at their native
resolutions (float32 and float16) for comparison.

    python benchmarks/multilayer.py                    # 256 px, 11 timesteps, grid 32
    python benchmarks/multilayer.py --size 512 --grid 64   # Hyperfeatures' full size
    python benchmarks/multilayer.py --json --markdown docs/benchmarks/multilayer.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HF_TIMESTEPS = (0, 60, 160, 260, 360, 460, 560, 660, 760, 860, 960)
"""Hyperfeatures' 11 inversion timesteps (notes 2.1), the first (-1) read as 0."""
HEADERS = ["quantity", "difflens (one batched pass)", "one pass per (layer, timestep)", "ratio"]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=256, help="image side in pixels (SD: 512)")
    p.add_argument("--grid", type=int, default=32, help="common grid side (SD at 512: 64)")
    p.add_argument("--timesteps", type=int, default=11, help="how many of the 11 timesteps")
    p.add_argument("--images", type=int, default=1, help="images timed (per-image means)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--markdown", type=Path, default=None, help="write the table as Markdown")
    return p.parse_args(argv)


def smooth_image(size: int, seed: int) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 8, 8, generator=g)
    image = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return (image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def straightforward(extractor, image, layers, timesteps, grid) -> torch.Tensor:
    """One pass per (layer, timestep); float32 ``(S, sum C, grid, grid)`` and seconds.

    The image is VAE-encoded once, inside the timing, as ``collect_stacks`` encodes it inside
    its own: both times are per image, everything included.
    """
    start = time.perf_counter()
    latents = extractor.encode([image])
    slices = []
    for t in timesteps:
        parts = []
        for layer in layers:
            fmap = extractor.features_from_latents(latents, [layer], t)[layer]
            parts.append(
                F.interpolate(fmap, size=(grid, grid), mode="bilinear", align_corners=False)
            )
        slices.append(torch.cat(parts, 1)[0])
    return torch.stack(slices), time.perf_counter() - start


def measure(args, log) -> dict:
    from difflens.features.extractor import FeatureExtractor
    from difflens.features.store import FeatureStore
    from difflens.features.trajectory import StackSpec, collect_stacks, stack_nbytes
    from difflens.models.sd_configs import build_sd_backbone

    log("building SD 1.5 (random weights) ...")
    backbone = build_sd_backbone("1.5", with_text=False)
    layers = tuple(f"up{i}.res{j}.conv2" for i in range(4) for j in range(3))
    timesteps = HF_TIMESTEPS[: args.timesteps]
    spec = StackSpec(layers, mode="noise", timesteps=timesteps, grid=args.grid)
    out = {"ours_s": [], "plain_s": [], "max_diff": [], "max_ref": []}
    with tempfile.TemporaryDirectory() as folder:
        store = FeatureStore(folder)
        extractor = FeatureExtractor(backbone, image_size=args.size, store=store)
        plain = FeatureExtractor(backbone, image_size=args.size)  # no store: no cached latents
        registry = extractor.registry
        for k in range(args.images):
            image = smooth_image(args.size, k)
            log(f"image {k}: difflens ...")
            start = time.perf_counter()
            stack = collect_stacks([image], extractor, spec)[0]
            out["ours_s"].append(time.perf_counter() - start)
            log(f"image {k}: {len(layers) * len(timesteps)} separate passes ...")
            ref, seconds = straightforward(plain, image, layers, timesteps, args.grid)
            out["plain_s"].append(seconds)
            out["max_diff"].append(float((stack.float() - ref).abs().max()))
            out["max_ref"].append(float(ref.abs().max()))
        out["disk_bytes"] = sum(p.stat().st_size for p in store.entries("stack")) / args.images
    channels = [registry.info(name).channels for name in layers]
    native = sum(
        registry.info(n).channels * np.prod(registry.feature_size(n, args.size)) for n in layers
    )
    out.update(
        stack_fp16=stack_nbytes(spec, channels, 2),
        stack_fp32=stack_nbytes(spec, channels, 4),
        native_fp32=int(native) * len(timesteps) * 4,
        native_fp16=int(native) * len(timesteps) * 2,
        layers=len(layers),
        timesteps=list(timesteps),
        channels=int(sum(channels)),
    )
    return out


def summary(args, m) -> dict:
    ours, plain = float(np.mean(m["ours_s"])), float(np.mean(m["plain_s"]))
    return {
        "size": args.size,
        "grid": args.grid,
        "layers": m["layers"],
        "timesteps": m["timesteps"],
        "channels": m["channels"],
        "images": args.images,
        "threads": torch.get_num_threads(),
        "seconds_per_image_ours": ours,
        "seconds_per_image_plain": plain,
        "speedup": plain / ours,
        "unet_rows_ours": len(m["timesteps"]),
        "unet_passes_plain": m["layers"] * len(m["timesteps"]),
        "max_abs_diff": max(m["max_diff"]),
        "max_abs_ref": max(m["max_ref"]),
        "relative_diff": max(m["max_diff"]) / max(m["max_ref"]),
        "bytes_stack_fp16": m["stack_fp16"],
        "bytes_stack_fp16_on_disk": m["disk_bytes"],
        "bytes_stack_fp32": m["stack_fp32"],
        "bytes_native_fp32": m["native_fp32"],
        "bytes_native_fp16": m["native_fp16"],
        # the stack grows linearly with the timesteps: its size at all 11 of Hyperfeatures'
        "bytes_stack_fp16_11_timesteps": m["stack_fp16"] // len(m["timesteps"]) * 11,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def table_rows(s) -> list[list[str]]:
    return [
        [
            "time per image",
            f"{s['seconds_per_image_ours']:.1f} s",
            f"{s['seconds_per_image_plain']:.1f} s",
            f"{s['speedup']:.1f}x faster",
        ],
        [
            "U-Net work",
            f"1 batch of {s['unet_rows_ours']} rows",
            f"{s['unet_passes_plain']} passes of 1 row",
            "",
        ],
        [
            "max abs diff / max abs value",
            f"{s['relative_diff']:.1e} (float16 storage)",
            "reference (float32)",
            "",
        ],
        [
            "bytes per image, stack on the grid",
            f"{mb(s['bytes_stack_fp16'])} float16 ({mb(s['bytes_stack_fp16_on_disk'])} on disk)",
            f"{mb(s['bytes_stack_fp32'])} float32",
            f"{s['bytes_stack_fp32'] / s['bytes_stack_fp16']:.1f}x smaller",
        ],
        [
            "bytes per image, stack at 11 timesteps",
            f"{mb(s['bytes_stack_fp16_11_timesteps'])} float16",
            f"{mb(2 * s['bytes_stack_fp16_11_timesteps'])} float32",
            "S x sum C x grid^2 x bytes",
        ],
        [
            "bytes per image, native resolutions",
            f"{mb(s['bytes_native_fp16'])} float16",
            f"{mb(s['bytes_native_fp32'])} float32",
            "for comparison",
        ],
    ]


def setup_line(s) -> str:
    return (
        f"SD 1.5 architecture with random weights, {s['size']} px, {s['layers']} up-ResNet residual "
        f"branches ({s['channels']} channels) x {len(s['timesteps'])} timesteps "
        f"({', '.join(map(str, s['timesteps']))}), grid {s['grid']} x {s['grid']}, "
        f"{s['images']} image(s), load average {s['load_average']:.1f} at the end"
    )


def markdown_fragment(s) -> str:
    from tabulate import tabulate

    lines = [tabulate(table_rows(s), headers=HEADERS, tablefmt="github", disable_numparse=True), ""]
    lines.append(
        f"Measured on {date.today().isoformat()} on {os.cpu_count()} CPU cores "
        f"({platform.machine()}), torch {torch.__version__}: {setup_line(s)}. "
        f"Command: `python benchmarks/multilayer.py --size {s['size']} --grid {s['grid']} "
        f"--timesteps {len(s['timesteps'])} --images {s['images']} --threads {s['threads']}`."
    )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    def log(message):
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    s = summary(args, measure(args, log))
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        from tabulate import tabulate

        print(tabulate(table_rows(s), headers=HEADERS))
        print(setup_line(s))
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown_fragment(s))
        log(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
