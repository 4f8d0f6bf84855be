"""Benchmark: windowed, chunked label propagation vs the dense affinity (DINO's / DIFT's way).

DAVIS scale with SD features (DIFT's setting): a 60 x 104 feature grid (832 x 480 frames at
stride 8), 640 channels, 29 context frames (the first + 28 recent), radius 15, top-k 15,
temperature 0.2, 4 label channels (background and three objects). Features and the context's
soft labels are random (the cost does not depend on them); each timed target frame is a new
random query against the same full context.

- windowed: ``difflens.correspondence.propagation.propagate_step`` (tiles of ``--chunk``
  query cells, keys gathered from the window only, one product per tile, top-k on the window);
- dense: the straightforward way, as DINO's ``label_propagation`` (used by DIFT's
  ``eval_davis.py``) does it: the affinity of every query with every key of every context
  frame (one product, ``exp(cos / T)``), then the window mask, the top-k over all keys, the
  normalisation and one product with the labels; float32, in place where it can be.

Both get the same normalised, channels-last inputs; the soft labels of every timed frame are
compared (largest absolute difference, and the argmax label of every cell). Memory: torch CPU
tensors are invisible to ``tracemalloc``, so the peak resident set size above its level at the
start of each method's run is reported (sampled every 2 ms by a thread; the inputs are
allocated before). The windowed method runs first.

    python benchmarks/propagation.py                 # human-readable table
    python benchmarks/propagation.py --json          # one JSON object
    python benchmarks/propagation.py --markdown docs/benchmarks/propagation.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _memory import PeakRSS

from difflens.correspondence.propagation import propagate_step


def window_mask(h: int, w: int, radius: int) -> torch.Tensor:
    """(h*w keys, h*w queries) float 0/1: key within ``radius`` cells of the query per axis."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    near = ((ys[:, None] - ys[None]).abs() <= radius) & ((xs[:, None] - xs[None]).abs() <= radius)
    return near.float()


def dense_step(query, context, labels, mask, temperature, topk):
    """DINO's ``label_propagation``: full affinity, window mask, top-k over all keys, sum."""
    n, h, w, c = context.shape
    hw = h * w
    aff = torch.mm(context.reshape(n * hw, c), query.reshape(hw, c).T)  # keys x queries
    aff.div_(temperature).exp_()
    aff.view(n, hw, hw).mul_(mask)
    threshold = torch.topk(aff, k=topk, dim=0).values.min(dim=0).values
    aff.masked_fill_(aff < threshold, 0)
    aff.div_(aff.sum(dim=0, keepdim=True))
    segs = labels.reshape(n * hw, -1).T  # L x keys
    return torch.mm(segs, aff).T.reshape(h, w, -1)


def make_inputs(args, seed: int):
    g = torch.Generator().manual_seed(seed)
    shape = (args.height, args.width, args.channels)
    context = F.normalize(torch.randn(args.context, *shape, generator=g), dim=-1)
    labels = torch.rand(args.context, args.height, args.width, args.labels, generator=g)
    queries = [F.normalize(torch.randn(*shape, generator=g), dim=-1) for _ in range(args.frames)]
    return context, labels, queries


def run_method(fn, queries) -> tuple[list[torch.Tensor], float, float]:
    """Outputs, seconds and peak RSS increase (MB) of ``fn`` over every query."""
    outs, seconds = [], 0.0
    meter = PeakRSS().start()
    for query in queries:
        t0 = time.perf_counter()
        outs.append(fn(query))
        seconds += time.perf_counter() - t0
    return outs, seconds, meter.stop()


def _is_markdown_arg(argv: list[str], i: int) -> bool:
    """Whether ``argv[i]`` is ``--markdown`` or its value (left out of the recorded command)."""
    a = argv[i]
    return (
        a == "--markdown" or a.startswith("--markdown=") or (i > 0 and argv[i - 1] == "--markdown")
    )


def markdown_table(out: dict) -> str:
    """The result as a heading-less Markdown table plus one line naming the run and machine."""
    rows = [
        "| method | s / frame | frames / s | peak memory (RSS increase) | labels |",
        "|---|---|---|---|---|",
        f"| windowed, chunked (`propagate_step`, chunk {out['chunk']}) "
        f"| {out['windowed_s_per_frame']:.2f} | {out['windowed_fps']:.3f} "
        f"| {out['windowed_peak_rss_mb']:,.0f} MB | reference |",
        f"| dense affinity, window mask, top-k (DINO's way) "
        f"| {out['dense_s_per_frame']:.2f} | {out['dense_fps']:.3f} "
        f"| {out['dense_peak_rss_mb']:,.0f} MB "
        f"| {out['same_argmax_cells']:,} / {out['cells']:,} cells equal; max abs. difference "
        f"{out['max_abs_diff']:.0e} |",
    ]
    command = " ".join(["python benchmarks/propagation.py", out["argv"]]).strip()
    machine = (
        f"Speedup {out['speedup']:.1f}x. Measured {datetime.date.today().isoformat()} with "
        f"`{command}` on {os.cpu_count()} CPUs, torch {torch.__version__} ({out['threads']} "
        f"threads), load average {out['load_average_1min']:.1f}; {out['height']} x "
        f"{out['width']} cells, {out['channels']} channels, {out['context']} context frames, "
        f"radius {out['radius']}, top-k {out['topk']}, {out['labels']} label channels, "
        f"{out['frames']} target frames, float32."
    )
    return "\n".join(rows) + "\n\n" + machine + "\n"


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2, help="target frames timed")
    parser.add_argument("--height", type=int, default=60, help="feature rows")
    parser.add_argument("--width", type=int, default=104, help="feature columns")
    parser.add_argument("--channels", type=int, default=640)
    parser.add_argument("--context", type=int, default=29, help="context frames (1 + recent)")
    parser.add_argument("--labels", type=int, default=4, help="label channels")
    parser.add_argument("--radius", type=int, default=15)
    parser.add_argument("--topk", type=int, default=15)
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--chunk", type=int, default=64, help="query cells per tile")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--markdown", metavar="PATH", help="also write the result table to PATH as Markdown"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    context, labels, queries = make_inputs(args, args.seed)
    settings = {"temperature": args.temperature, "topk": args.topk, "radius": args.radius}
    propagate_step(queries[0], context, labels, **settings, chunk=args.chunk)  # warm-up

    def windowed(query):
        return propagate_step(query, context, labels, **settings, chunk=args.chunk)

    ours, ours_s, ours_mb = run_method(windowed, queries)
    mask = window_mask(args.height, args.width, args.radius)

    def dense(query):
        return dense_step(query, context, labels, mask, args.temperature, args.topk)

    ref, ref_s, ref_mb = run_method(dense, queries)
    cells = args.frames * args.height * args.width
    same = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(ours, ref))
    out = {
        **{k: getattr(args, k) for k in ("frames", "height", "width", "channels", "context")},
        **{k: getattr(args, k) for k in ("labels", "radius", "topk", "temperature", "chunk")},
        "threads": torch.get_num_threads(),
        "windowed_s_per_frame": ours_s / args.frames,
        "windowed_fps": args.frames / ours_s,
        "windowed_peak_rss_mb": ours_mb,
        "dense_s_per_frame": ref_s / args.frames,
        "dense_fps": args.frames / ref_s,
        "dense_peak_rss_mb": ref_mb,
        "dense_affinity_mb": 4 * args.context * (args.height * args.width) ** 2 / 2**20,
        "speedup": ref_s / ours_s,
        "cells": cells,
        "same_argmax_cells": same,
        "max_abs_diff": max(float((a - b).abs().max()) for a, b in zip(ours, ref)),
        "load_average_1min": os.getloadavg()[0],
        "torch": torch.__version__,
        "argv": " ".join(a for i, a in enumerate(argv) if not _is_markdown_arg(argv, i)),
    }
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(markdown_table(out))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(markdown_table(out))
    return out


if __name__ == "__main__":
    main()
