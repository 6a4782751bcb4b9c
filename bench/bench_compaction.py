"""Query latency of every queries/*.sql before and after ``zooscan compact``, over synthetic models.

The scan is written through ``ResultStore.write_model`` (one file per model and table, as a real scan
writes), with seeded synthetic records from ``tests/_factories.py`` and a synthetic catalog (10 families,
random top-1) so the accuracy join and the correlation query have rows. Then ``compact_scan`` merges it.
For each state: the time to open the views (``connect``), and per named query the median wall time of
``--repeat`` runs on one connection (DuckDB threads as given), with the row count, which must be equal
before and after. The machine, CPU count and load average are printed, since other jobs share it.

Run from the repository root:
    .venv/bin/python bench/bench_compaction.py > bench/results/compaction.txt
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb
import pyarrow

from bench._synthetic_scan import SCAN_ID, Timing, cpu_model, time_named_queries, timed, write_scan
from scanner.compact import compact_scan, describe
from scanner.query import _JOINED_VIEWS as JOINED_VIEWS
from scanner.query import connect

CONNECT = "(connect: list files, create views, load catalog)"


def time_queries(root: Path, repeat: int, threads: int) -> list[Timing]:
    """Opening the views (``connect``), then every named query on one connection."""
    wall, cpu, con = timed(lambda: connect(root / "results", catalogs_dir=root / "catalogs", threads=threads),
                           repeat)
    return [(CONNECT, wall, 0, cpu), *time_named_queries(con, repeat)]


def time_in_memory(root: Path, repeat: int, threads: int) -> list[Timing]:
    """The same queries over in-memory copies of the three tables: the query's own cost, without file reads."""
    con = connect(root / "results", catalogs_dir=root / "catalogs", threads=threads)
    for table in ("models", "layers", "spectra"):
        con.execute(f"CREATE TABLE {table}_mem AS SELECT * FROM {table}")
        con.execute(f"DROP VIEW {table}")
        con.execute(f"ALTER TABLE {table}_mem RENAME TO {table}")
    con.execute(JOINED_VIEWS)
    return [(CONNECT, 0.0, 0, 0.0), *time_named_queries(con, repeat)]


def _files(root: Path) -> tuple[int, float]:
    paths = list((root / "results" / SCAN_ID).rglob("*.parquet"))
    return len(paths), sum(p.stat().st_size for p in paths) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--layers", type=int, default=60, help="layers per model (real CIFAR/timm: 20-200)")
    parser.add_argument("--evals", type=int, default=64, help="eigenvalues per layer in spectra/")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    parser.add_argument("--root", help="keep the data here (default: a temporary folder)")
    args = parser.parse_args()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root or tmp)
        root.mkdir(parents=True, exist_ok=True)
        write_seconds = write_scan(root, args.models, args.layers, args.evals)
        files_before = _files(root)
        before = time_queries(root, args.repeat, args.threads)
        start = time.perf_counter()
        report = compact_scan(root / "results", SCAN_ID)
        compact_seconds = time.perf_counter() - start
        files_after = _files(root)
        after = time_queries(root, args.repeat, args.threads)
        memory = time_in_memory(root, args.repeat, args.threads)
    load_end = os.getloadavg()
    print(f"machine: {cpu_model()}; {os.cpu_count()} logical CPUs (shared with other jobs); {platform.platform()}")
    print(f"load average (1/5/15 min) at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}; "
          f"at end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    print(f"duckdb {duckdb.__version__}, pyarrow {pyarrow.__version__}, python {platform.python_version()}; "
          f"DuckDB threads={args.threads}; local views: DuckDB's Parquet reader over explicit file lists "
          "(scanner.storage_views)")
    print(f"data: {args.models} models x {args.layers} layers ({args.models * args.layers:,} layer rows), "
          f"{args.evals} eigenvalues/layer")
    print(f"write through ResultStore.write_model: {write_seconds:.1f} s ({write_seconds / args.models * 1e3:.1f} "
          f"ms/model)")
    print(f"before: {files_before[0]} files, {files_before[1]:.1f} MB; after: {files_after[0]} files, "
          f"{files_after[1]:.1f} MB; compaction {compact_seconds:.1f} s ({describe(report)})")
    print(f"median of {args.repeat} runs per query, wall ms and (CPU ms of this process, all threads); in-mem: the same "
          "query over in-memory tables, no file reads")
    print(f"  {'query':52s} {'before':>15s} {'after':>15s} {'in-mem':>15s} {'rows':>7s}")
    worst = worst_cpu = 0.0
    for (name, t_before, rows_before, c_before), (_, t_after, rows_after, c_after), (_, t_mem, _, c_mem) in zip(
            before, after, memory, strict=True):
        same = "" if rows_before == rows_after else f"  ROWS DIFFER: {rows_before} vs {rows_after}"
        cells = " ".join(f"{w * 1e3:7.1f} ({c * 1e3:5.0f})" for w, c in ((t_before, c_before), (t_after, c_after),
                                                                          (t_mem, c_mem)))
        print(f"  {name:52s} {cells} {rows_after:7d}{same}")
        if not name.startswith("("):
            worst, worst_cpu = max(worst, t_after), max(worst_cpu, c_after)
    print(f"slowest named query after compaction: {worst * 1e3:.1f} ms wall, largest CPU time {worst_cpu * 1e3:.0f} ms "
          "(target < 100 ms wall)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
