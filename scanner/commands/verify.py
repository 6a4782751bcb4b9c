"""``zooscan verify``: open every results file's footer and report torn, mis-shaped or uncommitted ones.

DuckDB fails a whole query on one torn Parquet file, so run this on a results folder that was copied,
synced or written by another tool before querying it. Exit status 1 when a file is bad.
"""

from __future__ import annotations

import argparse

EPILOG = """examples:
  zooscan verify results
  zooscan verify /mnt/shared/results --quiet && zooscan query status_overview --results /mnt/shared/results
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", help="results root (the folder holding <scan_id>/ folders)")
    parser.add_argument("--quiet", action="store_true", help="print only problems")


def run(args: argparse.Namespace) -> int:
    from scanner.store import verify

    report = verify(args.results)
    for path, problem in report.bad:
        print(f"bad: {path}: {problem}")
    for scan_id, key in report.uncommitted:
        print(f"uncommitted (redone on resume): {scan_id}/{key}")
    for path in report.tmp_files:
        print(f"leftover temporary file (harmless): {path}")
    if not args.quiet:
        print(f"{report.checked} file(s) checked, {len(report.bad)} bad, {len(report.uncommitted)} uncommitted, "
              f"{len(report.tmp_files)} temporary")
    return 0 if report.ok else 1
