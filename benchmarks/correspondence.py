"""Correspondence benchmark: (a) keypoint matching, (b) the ``dift_sd`` feature extraction.

(a) Matching at SPair-71k scale
-------------------------------
A 1280 x 48 x 48 feature map for each image of a pair (SD 2.1 ``up_blocks[1]`` at 768 x 768,
DIFT's setting), images of about 500 x 375 (long side 500, short side drawn in 280-500,
either orientation), 10 keypoints per pair, 200 pairs.
``difflens.correspondence.matching.match_keypoints`` (bilinear, the exact decomposition, no
upsampled map) is timed against ``match_reference`` -- the straightforward way, as
``Tsingularity/dift: eval_spair.py`` does it: ``F.interpolate`` of both maps to the original
sizes, ``F.normalize``, one matrix-vector product and ``torch.argmax`` per keypoint, float32.
The predictions are compared keypoint by keypoint; where they differ, the exact float64
cosines of the two pixels are compared (a difference below the float32 rounding of the
reference is a near-tie, not an error). Synthetic features are spatially smooth (a 12 x 12
random field upsampled to 48 x 48 plus noise) and the target map is the source map shifted by
a random offset plus noise, so that matches are meaningful and mostly away from the border.
Memory: the peak resident set size above its level at the start of each method's run
(``/proc/self/statm`` sampled every 2 ms; torch CPU tensors are invisible to tracemalloc).

(b) The ``dift_sd`` extraction per image
----------------------------------------
The SD 2.x architecture with random weights (``build_sd_backbone("2")``), one photograph
(``skimage.data.astronaut``) resized to the preset's size beforehand (so neither path
resizes), t = 261, an ensemble of 8, the prompt ``"a photo of a cat"``:

- **DIFT's path** (plain torch and diffusers, no difflens code): the image repeated 8 times,
  ``vae.encode`` of the 8 copies, one posterior sample per copy (``mean + std * e_k``),
  ``scheduler.add_noise`` with one noise draw per copy, ONE U-Net pass with a plain forward
  hook on ``unet.up_blocks[1]`` that stops the pass, the mean over the copies
  (``Tsingularity/dift: src/models/dift_sd.py``);
- **difflens**: :func:`difflens.correspondence.dense.dense_features` with the ``dift_sd``
  preset's extractor (``latent="sample-per-draw"``): ONE VAE encode, 8 posterior samples
  from it, the same U-Net batch, stopped after ``up1``; no store (a cold extraction).

Both paths use the same draws (the ``e_k`` and the noise come from the seeds the extractor
documents, generated outside the timings) and the same text embedding (DIFT precomputes it),
so their features must agree to float32 rounding; the largest absolute and relative
differences are reported. Target: at least as fast as DIFT's path. The default size is the
preset's 768 px (8 VAE encodes at 768 px for DIFT's path: minutes on a CPU); ``--size 256``
for a quick check. The first path to run also pays one-off costs (allocator, kernel
selection): ``--order`` says which runs first, ``--repeats R`` alternates the paths R times
and keeps each one's fastest run.

    python benchmarks/correspondence.py                       # both parts, a table
    python benchmarks/correspondence.py --parts a --pairs 20  # a short matching run
    python benchmarks/correspondence.py --json --markdown PATH
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _memory import PeakRSS

from difflens.correspondence.dense import dense_features
from difflens.correspondence.matching import cosine_map, match_keypoints, match_reference
from difflens.correspondence.presets import get_preset, preset_extractor

# --------------------------------------------------------------------------- shared


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- (a) matching


def make_pair(
    i: int, c: int, h: int, n_kps: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int], tuple[int, int], torch.Tensor]:
    """Pair ``i``: smooth source map, shifted noisy target map, image sizes, keypoints."""
    g = torch.Generator().manual_seed(seed * 100_003 + i)
    coarse = torch.randn(1, c, h // 4, h // 4, generator=g)
    fs = F.interpolate(coarse, size=(h, h), mode="bilinear", align_corners=False)[0]
    fs = fs + 0.3 * torch.randn(c, h, h, generator=g)
    dy, dx = (int(v) for v in torch.randint(-h // 6, h // 6 + 1, (2,), generator=g))
    ft = torch.roll(fs, shifts=(dy, dx), dims=(1, 2)) + 0.5 * torch.randn(c, h, h, generator=g)

    def size() -> tuple[int, int]:
        short = int(torch.randint(280, 501, (1,), generator=g))
        return (short, 500) if torch.rand(1, generator=g) < 0.5 else (500, short)

    src_size, trg_size = size(), size()
    xs = torch.randint(src_size[1] // 10, src_size[1] * 9 // 10, (n_kps,), generator=g)
    ys = torch.randint(src_size[0] // 10, src_size[0] * 9 // 10, (n_kps,), generator=g)
    return fs, ft, src_size, trg_size, torch.stack([xs, ys], 1)


def _timed_matches(fn, pair, n: int, mode: str) -> tuple[list, float, float]:
    results, seconds = [], 0.0
    meter = PeakRSS().start()
    for i in range(n):
        fs, ft, s_size, t_size, kps = pair(i)
        t0 = time.perf_counter()
        results.append(fn(fs, ft, s_size, t_size, kps, upsample=mode))
        seconds += time.perf_counter() - t0
    return results, seconds, meter.stop()


def part_matching(args) -> dict:
    """Exact matching against upsample + argmax: time, memory, identical predictions."""

    def pair(i: int):
        return make_pair(i, args.channels, args.feat, args.keypoints, args.seed)

    fs, ft, s_size, t_size, kps = pair(0)  # warm-up outside the timings
    match_keypoints(fs, ft, s_size, t_size, kps, upsample=args.mode)
    exact, exact_s, exact_rss = _timed_matches(match_keypoints, pair, args.pairs, args.mode)
    ref, ref_s, ref_rss = _timed_matches(match_reference, pair, args.pairs, args.mode)
    largest = max(
        4 * args.channels * (pair(i)[2][0] * pair(i)[2][1] + 2 * np.prod(pair(i)[3]))
        for i in range(args.pairs)
    )
    n_kps = args.pairs * args.keypoints
    same = sum(int((a.pred == b.pred).all(1).sum()) for a, b in zip(exact, ref))
    max_gap = 0.0  # exact cosine of our pick minus that of the reference's pick, where they differ
    for i, (a, b) in enumerate(zip(exact, ref)):
        differ = torch.nonzero((a.pred != b.pred).any(1)).flatten().tolist()
        fs, ft, s_size, t_size, kps = pair(i)
        for k in differ:
            cmap = cosine_map(fs, ft, s_size, t_size, kps[k], upsample=args.mode)
            x, y = (int(v) for v in b.pred[k])
            max_gap = max(max_gap, float(a.score[k] - cmap[y, x]))
    return {
        "pairs": args.pairs,
        "keypoints": n_kps,
        "channels": args.channels,
        "feature_side": args.feat,
        "mode": args.mode,
        "exact_ms_per_pair": 1e3 * exact_s / args.pairs,
        "reference_ms_per_pair": 1e3 * ref_s / args.pairs,
        "speedup": ref_s / exact_s,
        "identical_predictions": same == n_kps,
        "n_identical": same,
        "max_cosine_gap_where_different": max_gap,
        "exact_peak_rss_delta_mb": exact_rss,
        "reference_peak_rss_delta_mb": ref_rss,
        "reference_largest_tensors_mb": largest / 2**20,
    }


# --------------------------------------------------------------------------- (b) extraction


def seeded_normal(shape, seed: int) -> torch.Tensor:
    """``torch.randn`` from a CPU generator seeded with ``seed``."""
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(seed)))


def posterior_seed(seed: int, draw: int) -> int:
    """The extractor's documented posterior seed: SHA-256 of 'seed:draw:vae-posterior'."""
    digest = hashlib.sha256(f"{seed}:{draw}:vae-posterior".encode()).hexdigest()
    return int(digest[:15], 16)


def dift_path(backbone, pixels, embedding, eps, noise, timestep: int, device: str):
    """DIFT's extraction: 8 copies encoded, sampled, noised, one hooked U-Net pass, mean."""
    n = eps.shape[0]

    class Stop(Exception):
        pass

    captured = {}

    def hook(module, inputs, output):
        captured["up1"] = output
        raise Stop

    with torch.no_grad():
        posterior = backbone.vae.encode(pixels.repeat(n, 1, 1, 1)).latent_dist
        latents = (posterior.mean + posterior.std * eps) * backbone.vae.config.scaling_factor
        t = torch.full((n,), timestep, dtype=torch.long)
        noisy = backbone.scheduler.add_noise(latents.float().cpu(), noise, t).to(device)
        handle = backbone.unet.up_blocks[1].register_forward_hook(hook)
        try:
            backbone.unet(noisy, t.to(device), encoder_hidden_states=embedding.expand(n, -1, -1))
        except Stop:
            pass
        finally:
            handle.remove()
    return captured["up1"].mean(0).float().cpu()


def _image(size: int) -> np.ndarray:
    from PIL import Image
    from skimage.data import astronaut

    return np.asarray(Image.fromarray(astronaut()).resize((size, size), Image.BILINEAR))


def _dift_inputs(backbone, extractor, image, prompt, n, device):
    """DIFT's inputs: pixels in [-1, 1], the precomputed embedding, the draws (untimed)."""
    pixels = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255.0
    pixels = ((pixels - 0.5) * 2).to(device)
    tokens = backbone.tokenizer(
        prompt,
        padding="max_length",
        max_length=backbone.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        embedding = backbone.text_encoder(tokens.input_ids.to(device))[0]
    h, w = image.shape[0] // 8, image.shape[1] // 8
    eps = torch.stack(
        [seeded_normal((4, h, w), posterior_seed(extractor.seed, k)) for k in range(n)]
    )
    noise = torch.stack([seeded_normal((4, h, w), extractor.seed + k) for k in range(n)])
    return pixels, embedding, eps.to(device), noise


def part_extraction(args) -> dict:
    """DIFT's path against the preset's extractor: seconds per image, feature difference."""
    from difflens.models.sd_configs import build_sd_backbone

    preset = get_preset("dift_sd").with_(image_size=args.size)
    backbone = build_sd_backbone("2", seed=0).to(device=args.device)
    extractor = preset_extractor(preset, backbone)
    image, prompt, n = _image(args.size), extractor.prompt_for(["cat"]), preset.ensemble
    extractor.text_embedding(prompt)  # DIFT precomputes its embedding too
    pixels, embedding, eps, noise = _dift_inputs(backbone, extractor, image, prompt, n, args.device)
    gc.collect()
    rows = {}
    for _ in range(args.repeats):  # the paths alternate; each keeps its fastest run
        for name in args.order:
            meter = PeakRSS().start()
            sync(args.device)
            t0 = time.perf_counter()
            if name == "dift":
                fmap = dift_path(
                    backbone, pixels, embedding, eps, noise, preset.timestep, args.device
                )
            else:
                maps = dense_features(
                    [image], extractor, "up1", [preset.setting], categories=["cat"]
                )
                fmap = next(iter(maps.values()))[0]["up1"]
            sync(args.device)
            seconds, rss = time.perf_counter() - t0, meter.stop()
            best = rows.get(name, {"s": float("inf"), "rss_mb": 0.0})
            rows[name] = {
                "s": min(best["s"], seconds),
                "rss_mb": max(best["rss_mb"], rss),
                "map": fmap,
            }
            gc.collect()
    ref, ours = rows["dift"]["map"], rows["difflens"]["map"]
    diff = float((ref - ours).abs().max())
    return {
        "size": args.size,
        "ensemble": n,
        "timestep": preset.timestep,
        "shape": list(ours.shape),
        "device": args.device,
        "order": list(args.order),
        "repeats": args.repeats,
        "dift_s": rows["dift"]["s"],
        "difflens_s": rows["difflens"]["s"],
        "speedup": rows["dift"]["s"] / rows["difflens"]["s"],
        "max_abs_diff": diff,
        "ref_max_abs": float(ref.abs().max()),
        "max_rel_diff": diff / float(ref.abs().max()),
        "dift_peak_rss_delta_mb": rows["dift"]["rss_mb"],
        "difflens_peak_rss_delta_mb": rows["difflens"]["rss_mb"],
    }


# --------------------------------------------------------------------------- output


def table_rows(out: dict) -> list[list]:
    rows = []
    if "matching" in out:
        m = out["matching"]
        rows.append(
            [
                f"(a) matching, {m['pairs']} pairs x {m['keypoints'] // m['pairs']} kps, "
                f"{m['channels']} x {m['feature_side']}^2, {m['mode']}",
                f"{m['reference_ms_per_pair']:.1f} ms/pair",
                f"{m['exact_ms_per_pair']:.1f} ms/pair",
                f"{m['speedup']:.1f}",
                f"identical {m['n_identical']}/{m['keypoints']}"
                + (
                    ""
                    if m["identical_predictions"]
                    else f" (gap {m['max_cosine_gap_where_different']:.1e})"
                ),
                f"{m['reference_peak_rss_delta_mb']:.0f} / {m['exact_peak_rss_delta_mb']:.0f}",
            ]
        )
    if "extraction" in out:
        e = out["extraction"]
        rows.append(
            [
                f"(b) dift_sd extraction, {e['size']} px, t = {e['timestep']}, "
                f"ensemble {e['ensemble']}, {e['device']}, first: {e['order'][0]}, "
                f"best of {e['repeats']}",
                f"{e['dift_s']:.1f} s/img",
                f"{e['difflens_s']:.1f} s/img",
                f"{e['speedup']:.2f}",
                f"max |diff| {e['max_abs_diff']:.1e} (rel. {e['max_rel_diff']:.1e})",
                f"{e['dift_peak_rss_delta_mb']:.0f} / {e['difflens_peak_rss_delta_mb']:.0f}",
            ]
        )
    return rows


HEADERS = [
    "part",
    "straightforward",
    "difflens",
    "speedup",
    "agreement",
    "peak RSS +MB (base / dl)",
]


def shown_command(argv: list[str]) -> str:
    """The run's command line without its output options (``--json``, ``--markdown PATH``)."""
    shown, skip = [], False
    for arg in argv:
        if skip or arg == "--json":
            skip = False
            continue
        if arg == "--markdown":
            skip = True
            continue
        if not arg.startswith("--markdown="):
            shown.append(arg)
    return " ".join(["python benchmarks/correspondence.py", *shown])


def markdown_fragment(out: dict) -> str:
    from tabulate import tabulate

    cells = [[str(c).replace("|", "\\|") for c in row] for row in table_rows(out)]
    table = tabulate(cells, headers=HEADERS, tablefmt="github", disable_numparse=True)
    line = (
        f"Measured on {date.today().isoformat()} on {os.cpu_count()} CPU cores "
        f"({platform.machine()}), torch {torch.__version__}, {out['threads']} threads, "
        f"load average {out['load_average_1min']:.1f} at the start: "
        f"`{shown_command(out['argv'])}`. Straightforward: "
        "(a) upsample both maps + normalise + argmax per keypoint (DIFT's eval_spair.py), "
        "(b) DIFT's path (8 VAE encodes, one hooked U-Net batch); SD 2.x architecture with "
        "random weights."
    )
    return f"{table}\n\n{line}\n"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["a", "b"], choices=["a", "b"])
    parser.add_argument("--pairs", type=int, default=200, help="(a) image pairs")
    parser.add_argument("--channels", type=int, default=1280, help="(a) feature channels")
    parser.add_argument("--feat", type=int, default=48, help="(a) feature map side")
    parser.add_argument("--keypoints", type=int, default=10, help="(a) keypoints per pair")
    parser.add_argument("--mode", default="bilinear", choices=["bilinear", "bicubic"])
    parser.add_argument("--seed", type=int, default=0, help="(a) seed of the synthetic pairs")
    parser.add_argument("--size", type=int, default=768, help="(b) image side, multiple of 64")
    parser.add_argument("--device", default="cpu", help="(b) cpu or cuda")
    parser.add_argument(
        "--order", nargs=2, default=["dift", "difflens"], help="(b) which path runs first"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="(b) runs per path, alternating; the fastest counts"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--markdown", type=Path, default=None, metavar="PATH")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print
    out = {
        "argv": list(argv),
        "threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "torch": torch.__version__,
    }
    if "a" in args.parts:
        log(f"(a) matching: {args.pairs} pairs ...")
        out["matching"] = part_matching(args)
    if "b" in args.parts:
        log(f"(b) dift_sd extraction at {args.size} px on {args.device} ...")
        out["extraction"] = part_extraction(args)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown_fragment(out))
        log(f"wrote {args.markdown}")
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        from tabulate import tabulate

        print(tabulate(table_rows(out), headers=HEADERS, disable_numparse=True))
    return out


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
