"""``zooscan sql``: run any SQL over a results directory (views: layers, models, spectra, catalog,
models_with_accuracy, layers_with_family)."""

from __future__ import annotations

import argparse
import sys

from scanner.commands.query import add_output_arguments, emit, usage_error

EPILOG = """examples:
  zooscan sql "SELECT status, count(*) FROM models GROUP BY ALL" --results results
  zooscan sql "SELECT model_id, alpha_hat, top1 FROM models_with_accuracy ORDER BY alpha_hat" --results results --format csv

Exit status 1 when the statement fails or the results folder cannot be read, 2 on a usage error (no --results).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sql", help="one SQL statement; the views are layers, models, spectra, catalog, "
                        "models_with_accuracy and layers_with_family")
    add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import duckdb

    from scanner.errors import ScannerError, one_line
    from scanner.query import connect

    usage = usage_error(args)
    if usage:
        print(f"error: {usage}", file=sys.stderr)
        return 2
    con = None
    try:
        con = connect(args.results, scan_id=args.scan_id, catalogs_dir=args.catalogs)
        table = con.sql(args.sql).to_arrow_table()
    except (ScannerError, duckdb.Error) as exc:
        hint = ""
        if con is not None and isinstance(exc, duckdb.CatalogException) and "Table with name" in str(exc):
            views = [row[0] for row in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal "
                                               "ORDER BY view_name").fetchall() if not row[0].startswith("_")]
            hint = f"; the views are {', '.join(views)}"
        print(f"error: {one_line(exc)}{hint}", file=sys.stderr)
        return 1
    return emit(table, args.format, args.output)
