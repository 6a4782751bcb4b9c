"""``zooscan report <results>/<scan_id>``: a self-contained HTML page with plots and tables for one scan."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  zooscan report results/cifar10_resnet                       # writes results/cifar10_resnet/report.html
  zooscan report results/batch_size_minialexnet --runs experiments/batch_size/runs.csv \\
      --catalog experiments/batch_size/catalog.csv --output experiments/batch_size/report.html

Accuracies for the alpha-vs-accuracy plot come from the catalogs (default: every catalogs/*.csv of the
repository); --runs adds experiment rows (batch_size, seed, accuracies) for the phase-versus-batch-size section."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scan_dir", type=Path, help="a scan folder <results>/<scan_id>")
    parser.add_argument("--output", "-o", type=Path, default=None, help="HTML file (default <scan_dir>/report.html)")
    parser.add_argument("--catalog", type=Path, nargs="*", default=None,
                        help="catalog CSVs with top1 (default: the repository's catalogs/*.csv)")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="experiment runs.csv files")
    parser.add_argument("--max-esd-models", type=int, default=12, help="draw layer ESDs for this many models")
    parser.add_argument("--title", default="", help="page title")


def run(args: argparse.Namespace) -> int:
    from scanner.catalog import CATALOGS_DIR
    from scanner.report.html import write_report
    from scanner.report.tables import load_scan

    catalogs = args.catalog if args.catalog is not None else sorted(CATALOGS_DIR.glob("*.csv"))
    tables = load_scan(args.scan_dir, catalogs=catalogs, runs=args.runs)
    output = write_report(tables, args.output or args.scan_dir / "report.html", args.title, args.max_esd_models)
    print(output)
    return 0
