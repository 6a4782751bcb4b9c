"""``zooscan compact``: merge a scan's per-model Parquet files into a few large ones (faster queries).

Safe at any moment of a crash (see ``scanner.compact``); refused while the scan is being written. Resume,
``verify`` and queries read the compacted files; models redone later supersede their compacted rows, and
compacting again merges them in.
"""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  zooscan compact --results results --scan-id zoo1
  zooscan compact --results s3://bucket/zoo --scan-id zoo1

Exit status 2 on an error (no such scan, a scan another process holds).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", required=True, help="results root: a folder, a mounted folder or an object-store URI")
    parser.add_argument("--scan-id", required=True, help="the scan to compact")


def run(args: argparse.Namespace) -> int:
    from scanner.compact import compact_scan, describe
    from scanner.errors import StoreError

    try:
        report = compact_scan(args.results, args.scan_id)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(describe(report))
    return 0
