"""``zooscan query``: run a named SQL file of ``queries/`` over a results directory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EPILOG = """examples:
  zooscan query --list
  zooscan query status_overview --results results
  zooscan query metric_accuracy_correlation --results results --param dataset=imagenet-1k --param min_models=5
  zooscan query rank_models --results results --param metric=alpha_hat --format csv --output ranks.csv

Exit status 1 when the query cannot run (an unknown query, scan or parameter, a value it cannot use, no results
folder), 2 on a usage error (no --results, --param without =, parquet without --output).
"""

FORMATS = ("table", "csv", "json", "parquet")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """--results, --scan-id, --catalogs, --format and --output, shared with ``zooscan sql``."""
    parser.add_argument("--results", metavar="DIR", help="results folder holding <scan_id>/ sub-folders")
    parser.add_argument("--scan-id", help="restrict the views to one scan")
    parser.add_argument("--catalogs", metavar="DIR", help="folder of catalog CSVs (default: the repo's catalogs/)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--output", metavar="FILE", help="write here instead of stdout (required for parquet)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="query name (a file stem in queries/)")
    parser.add_argument("--list", action="store_true", help="list the queries with their parameters and exit")
    parser.add_argument("--param", action="append", default=[], metavar="K=V",
                        help="bind $K to V (NULL, a number, or text); repeatable")
    add_output_arguments(parser)


def _format_table(table: Any) -> str:
    columns = table.column_names
    rows = [["" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values()]
            for row in table.to_pylist()]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    lines.append(f"({len(rows)} rows)")
    return "\n".join(lines) + "\n"


def distinct_names(names: list[str]) -> list[str]:
    """Column names made distinct: a repeated name gets _1, _2, … (``SELECT a.x, b.x`` gives two columns "x",
    which a row of the table, JSON or CSV output would have collapsed into one)."""
    seen: dict[str, int] = {}
    out = []
    taken = set(names)
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        new = name
        while count and (new == name or new in taken):
            new = f"{name}_{count}"
            count += 1
        taken.add(new)
        out.append(new)
    return out


def emit(table: Any, fmt: str, output: str | None) -> int:
    """Write an Arrow table in ``fmt`` to ``output`` (or stdout); returns the exit status."""
    if len(set(table.column_names)) < table.num_columns:
        table = table.rename_columns(distinct_names(table.column_names))
    if fmt == "parquet":
        if not output:
            print("error: --format parquet needs --output FILE", file=sys.stderr)
            return 2
        import pyarrow.parquet as pq

        pq.write_table(table, output, compression="zstd")
        return 0
    if fmt == "csv":
        import io

        import pyarrow.csv as pacsv

        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer)
        text = buffer.getvalue().decode()
    elif fmt == "json":
        text = json.dumps(table.to_pylist(), indent=1, default=str) + "\n"
    else:
        text = _format_table(table)
    if output:
        Path(output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def usage_error(args: argparse.Namespace) -> str:
    """What is wrong with --results / --catalogs before anything is read ("" when nothing), for query and sql."""
    if not args.results:
        return "give --results DIR (the folder a scan wrote into)"
    if args.catalogs is not None and not Path(args.catalogs).is_dir():
        return f"--catalogs {args.catalogs} is not a folder; give the folder holding the catalog CSVs (default: catalogs/)"
    return ""


def _params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --param takes K=V; got {pair!r}")
        params[key.strip()] = value
    return params


def run(args: argparse.Namespace) -> int:
    from scanner.errors import ScannerError, one_line
    from scanner.query import connect, list_queries, run_query

    if args.list or not args.name:
        for info in list_queries():
            params = "".join(f"\n      {p.name}={p.default if p.default is not None else 'NULL'}"
                             + (f"  -- {p.help}" if p.help else "") for p in info.params)
            print(f"{info.name}\n    {info.purpose}\n    params:{params or ' -'}\n    output: {', '.join(info.outputs)}")
        return 0 if args.list else 2
    usage = usage_error(args)
    if usage:
        print(f"error: {usage}", file=sys.stderr)
        return 2
    import duckdb

    bindings = _params(args.param)
    try:
        con = connect(args.results, scan_id=args.scan_id, catalogs_dir=args.catalogs)
        table = run_query(con, args.name, bindings).to_arrow_table()
        hint = empty_hint(con, args.name, bindings) if table.num_rows == 0 else ""
    except (ScannerError, duckdb.Error) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    status = emit(table, args.format, args.output)
    if hint:
        print(f"note: {hint}", file=sys.stderr)
    return status


def empty_hint(con: Any, name: str, params: dict[str, str]) -> str:
    """Why a query that groups models by family returned no rows, and what to change ("" when unknown)."""
    from scanner.query import bind_params

    bound = bind_params(name, params)  # the values the query ran with
    if "min_models" not in bound:
        return ""
    wanted = bound["min_models"]
    filters = {key: bound[key] for key in ("scan_id", "dataset") if bound.get(key) is not None}
    where = "".join(f" AND {key} = ?" for key in filters)
    # the query's groups: one scan, dataset and family (models of several scans are not pooled)
    sizes = con.execute("SELECT scan_id, dataset, family, count(*) AS n FROM models_with_accuracy WHERE status = 'ok' "
                        f"AND top1 IS NOT NULL AND family IS NOT NULL{where} GROUP BY ALL ORDER BY n DESC",
                        list(filters.values())).fetchall()
    within = "".join(f" with {key}={value}" for key, value in filters.items())
    if not sizes:
        return (f"no scanned model{within} has a published top-1 in the catalogs: give --catalogs DIR with catalog "
                "CSVs listing these model ids (zooscan sql \"SELECT model_id FROM models\" --results … shows them)")
    scan_id, dataset, family, n = sizes[0]
    if n < 2:
        return (f"each family{within} has at most one model with a published top-1 in one scan (e.g. {family} on "
                f"{dataset}): nothing to correlate")
    return (f"no family{within} has min_models={wanted} models with a published top-1 in one scan; the largest is "
            f"{family} on {dataset} in scan {scan_id} with {n}: rerun with --param min_models={n} (correlations of so "
            "few models are noisy)")
