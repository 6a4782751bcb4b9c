"""``zooscan verify``: check every results file (torn, mis-shaped, mislabelled, uncommitted) before querying.

Exit status 0 when every file is good, 1 when a file is bad (or, with ``--repair``, was bad and was moved
aside), 2 when the results root is missing, is a file, or names no scan. ``--repair`` moves bad files into
``<scan>/quarantine/`` and drops their models' commit markers, so that rerunning the scan (same command,
same ``--scan-id``) redoes exactly those models. The results root is ``--results``, as for every other
command; a positional root still works and prints a deprecation note.
"""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  zooscan verify --results results
  zooscan verify --results results --repair     # then rerun the scan to redo the repaired models
  zooscan verify --results s3://bucket/zoo --scan-id zoo1 --quiet && zooscan query status_overview --results s3://bucket/zoo

Exit status 0 when every file is good, 1 when a file is bad (with --repair: was bad and was moved aside), 2 when
the results root is missing, is a file, or names no scan.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", help="results root: a folder, a mounted folder or an object-store URI "
                        "(the location holding <scan_id>/ folders)")
    parser.add_argument("legacy_results", nargs="?", metavar="RESULTS",
                        help="deprecated: the results root as a positional argument (use --results)")
    parser.add_argument("--scan-id", help="check only this scan (default: every scan under the root)")
    parser.add_argument("--repair", action="store_true",
                        help="move bad files to <scan>/quarantine/ and drop their models' commit markers "
                             "(the next run of the scan redoes them)")
    parser.add_argument("--quiet", action="store_true", help="print only problems")


def run(args: argparse.Namespace) -> int:
    from scanner.errors import StoreError
    from scanner.store import verify

    results = args.results or args.legacy_results
    if args.legacy_results and not args.results:
        print("note: 'zooscan verify RESULTS' is deprecated; write 'zooscan verify --results RESULTS'", file=sys.stderr)
    if not results:
        print("error: pass the results root with --results", file=sys.stderr)
        return 2
    try:
        report = verify(results, scan_id=args.scan_id, repair=args.repair)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path, problem in report.bad:
        print(f"bad: {path}: {problem}")
    for path in report.quarantined:
        print(f"moved to quarantine: {path}")
    for folder, scan_id in report.copies:
        print(f"copy: folder {folder!r} holds scan {scan_id!r} (a copied or renamed scan; queries label its rows "
              f"{folder!r}; move it out of the results root if it is a backup)")
    for scan_id, key in report.uncommitted:
        print(f"uncommitted (redone on resume): {scan_id}/{key}")
    for path in report.tmp_files:
        print(f"leftover temporary file (removed by the next run of its scan): {path}")
    if not args.quiet:
        print(f"{report.checked} file(s) checked, {len(report.bad)} bad, {len(report.uncommitted)} uncommitted, "
              f"{len(report.tmp_files)} temporary")
    if report.bad and not args.repair:
        print(f"advice: 'zooscan verify --results {results} --repair' moves the bad files to <scan>/quarantine/ "
              "and drops their commit markers; rerunning the scan then redoes those models", file=sys.stderr)
    elif report.bad:
        print("advice: rerun the scan with the same --scan-id to redo the repaired models", file=sys.stderr)
    return 0 if report.ok else 1
