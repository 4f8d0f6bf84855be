"""The data stage's command line: ``python -m difflens.data download|resolve|select ...``.

- ``download voc|coco|davis|spair|pf-pascal|pf-willow|cub [--root DIR]``: fetch, verify
  and unpack a dataset's archives (and pair lists);
- ``download authors-list [--out PATH]``: fetch the authors' image list and check its
  SHA-256;
- ``resolve LIST``: resolve an image list against the dataset folders;
- ``select voc|coco --root DIR``: a seeded sample of images passing the paper's rules.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from difflens.data.download import (
    AUTHORS_LIST_NAME,
    AUTHORS_LIST_URL,
    DATASET_ARCHIVES,
    DEFAULT_PARTS,
    DownloadError,
    download_authors_list,
    download_dataset,
    read_checksum_table,
)

AUTHORS_LIST = "authors-list"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m difflens.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    down = sub.add_parser(
        "download", help="fetch, verify and unpack a dataset's archives, or the authors' list"
    )
    down.add_argument("name", choices=[*sorted(DATASET_ARCHIVES), AUTHORS_LIST])
    down.add_argument("--root", default="data", help="data folder (default: data)")
    down.add_argument(
        "--parts",
        help="comma-separated archives; default: "
        + "; ".join(f"{k}: {','.join(v)}" for k, v in DEFAULT_PARTS.items())
        + " (coco also has train2017, 18 GB)",
    )
    down.add_argument("--mirror", help="base URL serving the same file names")
    down.add_argument(
        "--checksums", help='JSON table {file name: {"md5"|"sha1"|"sha256": hex, "size": bytes}}'
    )
    down.add_argument(
        "--delete-archives", action="store_true", help="delete archives after unpacking"
    )
    down.add_argument("--timeout", type=float, default=30.0, help="network timeout, seconds")
    down.add_argument(
        "--out",
        help=f"{AUTHORS_LIST} only: where to write it (default data_lists/{AUTHORS_LIST_NAME})",
    )
    down.add_argument(
        "--url", help=f"{AUTHORS_LIST} only: where to fetch it (default {AUTHORS_LIST_URL})"
    )

    res = sub.add_parser("resolve", help="resolve an image list against the dataset folders")
    res.add_argument("list", help="CSV with columns src,dataset")
    res.add_argument("--voc", help="Pascal-VOC 2012 folder")
    res.add_argument("--coco", help="COCO 2017 folder")
    res.add_argument("--davis", help="DAVIS 2017 folder")
    res.add_argument("--out", help="write every row with its file, split and status here")

    sel = sub.add_parser("select", help="a seeded sample of images passing the paper's rules")
    sel.add_argument("name", choices=["voc", "coco"])
    sel.add_argument("--root", required=True, help="dataset folder")
    sel.add_argument("--n", type=int, default=1000, help="images to select (default 1000)")
    sel.add_argument("--seed", type=int, default=0)
    sel.add_argument("--split", help="split to draw from (default: VOC trainval, COCO val2017)")
    sel.add_argument("--class-rule", default="any_voc", choices=["any_voc", "all_voc"])
    sel.add_argument("--min-area", type=float, default=0.01, help="area fraction (default 0.01)")
    sel.add_argument("--out", help="CSV path (default data_lists/<dataset>_n<N>_seed<S>.csv)")
    return parser


def _download(args) -> int:
    if args.name == AUTHORS_LIST:
        out = args.out or f"data_lists/{AUTHORS_LIST_NAME}"
        path = download_authors_list(out, url=args.url or AUTHORS_LIST_URL, timeout=args.timeout)
        print(f"{AUTHORS_LIST}: verified in {path}")
        return 0
    if args.out or args.url:
        raise ValueError(f"--out and --url are for {AUTHORS_LIST}; datasets take --root/--mirror")
    table = read_checksum_table(args.checksums) if args.checksums else None
    parts = [p.strip() for p in args.parts.split(",")] if args.parts else None
    folder = download_dataset(
        args.name,
        args.root,
        parts=parts,
        mirror=args.mirror,
        checksum_table=table,
        keep_archives=not args.delete_archives,
        timeout=args.timeout,
    )
    print(f"{args.name}: ready in {folder}")
    return 0


def _resolve(args) -> int:
    from difflens.data.lists import resolve_list

    resolved = resolve_list(
        args.list, voc_root=args.voc, coco_root=args.coco, davis_root=args.davis
    )
    print(resolved.summary(max_names=20))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        resolved.frame.to_csv(args.out, index=False)
        print(f"rows written to {args.out}")
    return 0 if resolved.unresolved().empty else 1


def _select(args) -> int:
    from difflens.data.registry import load
    from difflens.data.selection import SelectionRules, select

    dataset = load(args.name, args.root, split=args.split)
    rules = SelectionRules(min_area_fraction=args.min_area, class_rule=args.class_rule)
    selection = select(dataset, args.n, seed=args.seed, rules=rules)
    tag = selection.dataset
    out = args.out or f"data_lists/{tag}_n{args.n}_seed{args.seed}.csv"
    csv_path, record_path = selection.write(out)
    print(
        f"{tag}: {len(selection.src)} of {args.n} selected from {selection.n_candidates} "
        f"candidates ({selection.examined} examined, rejected {dict(selection.rejected)}, "
        f"{selection.skipped.summary()}); wrote {csv_path} and {record_path}"
    )
    return 0 if selection.complete else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command.

    Args:
        argv: the arguments after ``python -m difflens.data`` (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 done, 1 incomplete (unresolved rows, too few images selected),
        2 an error (its message printed to stderr).
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.command == "download":
            return _download(args)
        if args.command == "resolve":
            return _resolve(args)
        return _select(args)
    except (DownloadError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
