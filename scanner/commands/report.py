"""``zooscan report``: write the zoo report (a folder: index.html, one page per model, ESD plots) for scans."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """examples:
  zooscan report results/cifar10_resnet                     # writes results/cifar10_resnet/report/index.html
  zooscan report results/zoo_a results/zoo_b -o zoo_report  # several scans in one report
  zooscan report results/cifar10_resnet --show-skipped --model file:zoo/akamaster_resnet_cifar10/resnet20-12fca82f.th

Published metrics come from the catalogs (default: every catalogs/*.csv of the repository): the columns
metric/metric_value/higher_is_better when a catalog has them, else top1. Models are compared within a group:
one family, one dataset, one published metric. ESD plots are drawn for whole models until --esd-budget plots
are drawn, plus every listed layer worth a look; --model draws all of one model's layers. A model in several
of the scans gets a page per scan and is ranked once, with its row from the last scan given where it did not fail.
Exit status 2 on an error: a missing or empty scan folder, an unreadable results file, a --model not in the scans."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scan_dirs", type=Path, nargs="+", metavar="SCAN_DIR",
                        help="scan folder(s) <results>/<scan_id>")
    parser.add_argument("--output", "-o", type=Path, default=None,
                        help="report folder (default <first SCAN_DIR>/report); open its index.html")
    parser.add_argument("--catalog", type=Path, nargs="*", default=None,
                        help="catalog CSVs with published metrics (default: the repository's catalogs/*.csv)")
    parser.add_argument("--esd-budget", type=int, default=100, metavar="N",
                        help="ESD plots of whole models drawn at most (default 100; each ~8 kB, ~0.25 s)")
    parser.add_argument("--model", action="append", default=[], metavar="ID",
                        help="draw every layer's ESD of this model id (repeatable)")
    parser.add_argument("--show-skipped", action="store_true",
                        help="list skipped tensors (biases, norms, buffers) in the model tables too")
    parser.add_argument("--jobs", type=int, default=0, metavar="N", help="processes drawing plots (0: min(2, CPUs))")
    parser.add_argument("--title", default="", help="page title")


def run(args: argparse.Namespace) -> int:
    from scanner.catalog import CATALOGS_DIR
    from scanner.report.site import Progress, ReportOptions, folder_size, write_site
    from scanner.report.zoo import load_zoo

    catalogs = args.catalog if args.catalog is not None else sorted(CATALOGS_DIR.glob("*.csv"))
    progress = Progress(sys.stderr)
    zoo = load_zoo(args.scan_dirs, catalogs=catalogs)
    progress("read", len(zoo.models), len(zoo.models))
    scanned = {m.model_id for m in zoo.models}
    unknown = [model_id for model_id in args.model if model_id not in scanned]
    if unknown:
        from scanner.errors import ConfigError

        raise ConfigError(f"--model {unknown[0]!r} is not in the scans given; their model ids are "
                          f"{', '.join(sorted(scanned)[:5])}{', …' if len(scanned) > 5 else ''} "
                          "(zooscan sql \"select model_id from models\" lists them all)")
    out = args.output or args.scan_dirs[0] / "report"
    options = ReportOptions(title=args.title, esd_budget=args.esd_budget, show_skipped=args.show_skipped,
                            jobs=args.jobs, models=tuple(args.model))
    index = write_site(zoo, out, options, progress)
    print(f"{index} (report folder {folder_size(out) / 1e6:.1f} MB, {len(zoo.models)} models)")
    return 0
