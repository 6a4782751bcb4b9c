"""``zooscan ls``: list and filter catalog entries."""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  zooscan ls                                   # the shipped catalogs
  zooscan ls timm_imagenet --family resnet --max-params 30000000
  zooscan ls timm_imagenet --include 'resnet*' --exclude '*_gluon*'
  zooscan ls catalogs/cifar10_resnet.csv --format ids

Exit status 1 for a catalog that does not exist or does not parse, 2 on a usage error.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("catalog", nargs="?", help="catalog name (catalogs/<name>.csv) or a CSV path")
    parser.add_argument("--include", action="append", default=[], metavar="GLOB",
                        help="keep ids matching this glob (with or without the source: prefix); repeatable")
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="drop ids matching; repeatable")
    parser.add_argument("--family", help="keep one family")
    parser.add_argument("--max-params", type=int, metavar="N", help="keep models with at most N parameters")
    parser.add_argument("--format", choices=("table", "ids", "csv"), default="table",
                        help="table (default), ids (one per line, for scripts) or csv")


def run(args: argparse.Namespace) -> int:
    from scanner.catalog import COLUMNS, available_catalogs, filter_entries, load_catalog
    from scanner.errors import CatalogError

    if not args.catalog:
        for name in available_catalogs():
            print(f"{name:20s} {len(load_catalog(name)):6d} models")
        return 0
    try:
        entries = filter_entries(load_catalog(args.catalog), include=args.include, exclude=args.exclude,
                                 family=args.family, max_params=args.max_params)
    except CatalogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.format == "ids":
        sys.stdout.writelines(f"{e.model_id}\n" for e in entries)
    elif args.format == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([["" if getattr(e, c) is None else getattr(e, c) for c in COLUMNS] for e in entries])
    else:
        width = max([len(e.model_id) for e in entries] + [8])
        print(f"{'model_id':{width}s}  {'family':14s} {'dataset':12s} {'top1':>7s} {'params':>12s}")
        for e in entries:
            top1 = "" if e.top1 is None else f"{e.top1:.3f}"
            params = "" if e.num_params is None else f"{e.num_params:,}"
            print(f"{e.model_id:{width}s}  {e.family:14s} {e.dataset:12s} {top1:>7s} {params:>12s}")
        print(f"({len(entries)} models)")
    return 0
