"""Benchmark: all-pairs distances, distance sets and Székely distance correlation.

N = 5,000 prototypes x d = 1,280 (float32): the four metrics of Table 1 for all pairs
(difflens.analysis.distances.pairwise, float64 products by default) and the extraction of the
distance sets in long form; distance correlation for all pairs of N = 2,000. The same
work done the straightforward way is timed in the same run: scipy's ``pdist`` for the four
metrics, and ``dcor.distance_correlation`` per pair (timed on a random subsample of pairs
and extrapolated to all pairs). Accuracy against both references is printed too.

    python benchmarks/distances.py            # human-readable
    python benchmarks/distances.py --json     # one JSON object
    python benchmarks/distances.py --quick    # small sizes, a smoke test
    python benchmarks/distances.py --markdown docs/benchmarks/distances.md
                                              # also write the result table as Markdown
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from difflens.analysis.distances import SCIPY_NAMES, distance_correlation_matrix, pairwise
from difflens.analysis.sets import distance_sets
from difflens.features.prototypes import PrototypeTable


def synthetic_table(n: int, d: int, seed: int = 0, n_classes: int = 20) -> PrototypeTable:
    """``n`` prototypes in images of 1-6 objects, with class structure in the features."""
    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(1, 7)))
    sizes[-1] -= sum(sizes) - n
    image = np.repeat(np.arange(len(sizes)), sizes)
    cls = rng.integers(0, n_classes, n)
    centres = rng.normal(size=(n_classes, d))
    features = (centres[cls] * 0.5 + rng.normal(size=(n, d))).astype(np.float32)
    instance = np.concatenate([np.arange(s) for s in sizes])
    meta = pd.DataFrame(
        {
            "object_key": [f"img{i}:{k}" for i, k in zip(image, instance)],
            "image_id": [f"img{i}" for i in image],
            "source_image": [f"img{i}" for i in image],
            "instance_id": instance,
            "instance_key": [f"img{i}#{k}" for i, k in zip(image, instance)],
            "class_name": [f"class{c}" for c in cls],
            "source": "original",
            "area_fraction": 0.1,
        }
    )
    return PrototypeTable(meta, features)


def _is_markdown_arg(argv: list[str], i: int) -> bool:
    """Whether ``argv[i]`` is ``--markdown`` or its value (left out of the recorded command)."""
    a = argv[i]
    return (
        a == "--markdown" or a.startswith("--markdown=") or (i > 0 and argv[i - 1] == "--markdown")
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


CPU_SECONDS: dict[int, float] = {}


def timed(fn):
    """(result, wall seconds); the CPU seconds of the process (all threads) go to CPU_SECONDS."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    CPU_SECONDS[id(out)] = time.process_time() - cpu
    return out, time.perf_counter() - start


def cpu_of(out) -> float:
    return CPU_SECONDS.pop(id(out), float("nan"))


def _seconds(s: float) -> str:
    """Seconds with three significant digits below 100 s, whole seconds above."""
    return f"{s:.0f} s" if s >= 100 else f"{s:.3g} s"


def markdown_table(out: dict) -> str:
    """The result as a heading-less Markdown table plus one line naming the run and machine."""
    n, nd = f"{out['n']:,}", f"{out['n_dcor']:,}"
    scipy = out.get("scipy_metric_s", {})
    err = out["max_rel_err_vs_scipy"]
    rows = [
        "| work | difflens | straightforward | agreement |",
        "|---|---|---|---|",
        f"| four metrics, all pairs of {n} | {_seconds(out['four_metrics_s'])} "
        f"({_seconds(out['four_metrics_cpu_s'])} CPU); float32 products "
        f"{_seconds(out['four_metrics_float32_s'])} | "
        + (f"scipy `pdist` {_seconds(out['scipy_s'])}" if scipy else "not timed")
        + f" | max rel. error vs scipy {max(err.values()):.0e} |",
    ]
    for metric, seconds in out["metric_s"].items():
        ref = f"scipy `pdist` {_seconds(scipy[metric])}" if metric in scipy else ""
        rows.append(f"| {metric} | {_seconds(seconds)} | {ref} | {err[metric]:.0e} |")
    rows.append(
        f"| long form of the sets ({out['sets_rows']:,} rows, correlation) "
        f"| {_seconds(out['sets_s'])} | | |"
    )
    rows.append(
        f"| dCor, all pairs of {nd} | {_seconds(out['dcor_s'])} "
        f"({_seconds(out['dcor_cpu_s'])} CPU) | `dcor` per pair, timed on "
        f"{out['dcor_ref_pairs_timed']} pairs and extrapolated: {_seconds(out['dcor_ref_s'])} "
        f"| max abs. error {out['dcor_max_abs_err']:.0e} |"
    )
    if "aggregates_s" in out:
        rows.append(
            f"| streamed set aggregates, {out['aggregates_n']:,} objects "
            f"({out['aggregates_pairs']:,} pairs) | {_seconds(out['aggregates_s'])} | | |"
        )
    command = " ".join(["python benchmarks/distances.py", out["argv"]]).strip()
    machine = (
        f"Measured {datetime.date.today().isoformat()} with `{command}` on {os.cpu_count()} "
        f"CPUs, torch {torch.__version__} ({out['threads']} threads), load average "
        f"{out['load_average_1min']:.1f}; N = {n} x d = {out['d']:,} float32 prototypes, dCor "
        f"on N = {nd}; peak resident memory {out['peak_rss_mb']:,.0f} MB."
    )
    return "\n".join(rows) + "\n\n" + machine + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="prototypes for the four metrics")
    parser.add_argument("--d", type=int, default=1280, help="feature dimension")
    parser.add_argument("--n-dcor", type=int, default=2000, help="prototypes for dCor")
    parser.add_argument("--ref-pairs", type=int, default=200, help="dcor pairs timed")
    parser.add_argument("--skip-scipy", action="store_true", help="do not time scipy's pdist")
    parser.add_argument(
        "--n-aggregates",
        type=int,
        default=0,
        help="also time the streamed set aggregates for this many prototypes (e.g. 20000)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--markdown", metavar="PATH", help="also write the result table to PATH as Markdown"
    )
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    if args.quick:
        args.n, args.d, args.n_dcor, args.ref_pairs = 300, 64, 100, 20

    from scipy.spatial.distance import pdist, squareform

    table = synthetic_table(args.n, args.d)
    x = table.features
    pairwise(x[:8], metric="manhattan")  # compile the numba kernels outside the timings
    pairwise(x[:8], metric="manhattan", dtype=torch.float32)
    distance_correlation_matrix(x[:4, :16])
    out: dict = {
        "n": args.n,
        "d": args.d,
        "n_dcor": args.n_dcor,
        "threads": torch.get_num_threads(),
        "argv": " ".join(a for i, a in enumerate(argv) if not _is_markdown_arg(argv, i)),
    }

    metric_s, metric_f32_s, max_rel_err, cpu_s = {}, {}, {}, 0.0
    for metric, scipy_name in SCIPY_NAMES.items():
        ours, metric_s[metric] = timed(lambda m=metric: pairwise(x, metric=m))
        cpu_s += cpu_of(ours)
        _, metric_f32_s[metric] = timed(lambda m=metric: pairwise(x, metric=m, dtype=torch.float32))
        rows = np.random.default_rng(1).choice(args.n, size=min(args.n, 200), replace=False)
        ref = squareform(pdist(x[rows].astype(np.float64), scipy_name))
        mine = ours[np.ix_(rows, rows)]
        off = ~np.eye(len(rows), dtype=bool)
        max_rel_err[metric] = float(np.max(np.abs(mine[off] - ref[off]) / np.abs(ref[off])))
        del ours
    out["metric_s"] = metric_s
    out["four_metrics_s"] = sum(metric_s.values())
    out["four_metrics_cpu_s"] = cpu_s
    out["four_metrics_float32_s"] = sum(metric_f32_s.values())
    out["max_rel_err_vs_scipy"] = max_rel_err

    long, out["sets_s"] = timed(lambda: distance_sets(table, metric="correlation", progress=False))
    out["sets_rows"] = len(long)
    del long

    xd = x[: args.n_dcor]
    dc, out["dcor_s"] = timed(lambda: distance_correlation_matrix(xd))
    out["dcor_cpu_s"] = cpu_of(dc)
    import dcor

    rng = np.random.default_rng(2)
    pairs = rng.integers(0, args.n_dcor, size=(args.ref_pairs, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    xd64 = xd.astype(np.float64)
    dcor.distance_correlation(xd64[0], xd64[1])  # compile
    ref, per = timed(lambda: [dcor.distance_correlation(xd64[i], xd64[j]) for i, j in pairs])
    n_pairs = args.n_dcor * (args.n_dcor - 1) / 2
    out["dcor_ref_s"] = per / len(pairs) * n_pairs
    out["dcor_ref_pairs_timed"] = len(pairs)
    out["dcor_max_abs_err"] = float(np.max(np.abs(dc[pairs[:, 0], pairs[:, 1]] - np.array(ref))))

    if not args.skip_scipy:
        scipy_s = {}
        for metric, scipy_name in SCIPY_NAMES.items():
            _, scipy_s[metric] = timed(lambda n=scipy_name: pdist(x, n))
        out["scipy_metric_s"] = scipy_s
        out["scipy_s"] = sum(scipy_s.values())
    if args.n_aggregates:
        from difflens.analysis.aggregates import set_aggregates

        big = synthetic_table(args.n_aggregates, args.d, seed=3)
        agg, out["aggregates_s"] = timed(
            lambda: set_aggregates(big, metric="correlation", progress=False)
        )
        out["aggregates_n"] = args.n_aggregates
        out["aggregates_pairs"] = int(sum(agg.n.values()))
        del agg, big
    out["peak_rss_mb"] = peak_rss_mb()
    out["load_average_1min"] = os.getloadavg()[0]
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(markdown_table(out))

    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"N = {args.n} x d = {args.d} float32, {out['threads']} threads")
        for metric in SCIPY_NAMES:
            line = f"  {metric:12s} {metric_s[metric]:6.2f} s (float32 products {metric_f32_s[metric]:5.2f} s)"
            if "scipy_metric_s" in out:
                line += f"  scipy pdist {out['scipy_metric_s'][metric]:6.2f} s"
            print(line + f"  max rel err {max_rel_err[metric]:.1e}")
        print(
            f"four metrics: {out['four_metrics_s']:.2f} s, {out['four_metrics_cpu_s']:.2f} CPU s "
            f"(float32 products {out['four_metrics_float32_s']:.2f} s)"
        )
        if "scipy_s" in out:
            print(f"scipy pdist, four metrics: {out['scipy_s']:.2f} s")
        print(f"distance sets (long form, {out['sets_rows']:,} rows): {out['sets_s']:.2f} s")
        print(
            f"distance correlation, N = {args.n_dcor}: {out['dcor_s']:.2f} s "
            f"({out['dcor_cpu_s']:.0f} CPU s); dcor per pair "
            f"extrapolated: {out['dcor_ref_s']:.0f} s; max abs err {out['dcor_max_abs_err']:.1e}"
        )
        if "aggregates_s" in out:
            print(
                f"streamed set aggregates, N = {out['aggregates_n']} "
                f"({out['aggregates_pairs']:,} pairs): {out['aggregates_s']:.1f} s"
            )
        print(f"peak RSS: {out['peak_rss_mb']:.0f} MB; load average {out['load_average_1min']:.1f}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
