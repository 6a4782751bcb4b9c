"""Time every queries/*.sql over a synthetic, uncompacted scan of many models (one file per model and table).

The scan is written through ``ResultStore`` exactly as a real scan would be (tmp -> fsync -> rename), with
seeded synthetic records from ``tests/_factories.py`` and a synthetic catalog (10 families, random top-1)
so that the accuracy join and the correlation query have rows. Each query runs ``--repeat`` times on one
connection; the median wall time is reported, plus the time to open the views.

Run from the repository root:
    OMP_NUM_THREADS=1 nice .venv/bin/python bench/bench_duckdb_queries.py > bench/results/duckdb_queries.txt
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb
import pyarrow

from bench._synthetic_scan import SCAN_ID, cpu_model, time_named_queries, timed, write_scan
from scanner.query import connect


def time_queries(root: Path, repeat: int, threads: int) -> list[tuple[str, float, int]]:
    """(name, median wall seconds, rows): opening the views, then every named query on one connection."""
    wall, _, con = timed(lambda: connect(root / "results", catalogs_dir=root / "catalogs", threads=threads), repeat)
    return [("(connect: create views + load catalog)", wall, 0),
            *((name, seconds, rows) for name, seconds, rows, _ in time_named_queries(con, repeat))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--layers", type=int, default=200)
    parser.add_argument("--evals", type=int, default=32, help="eigenvalues per layer in spectra/")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    parser.add_argument("--root", help="keep the data here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root or tmp)
        root.mkdir(parents=True, exist_ok=True)
        write_seconds = write_scan(root, args.models, args.layers, args.evals)
        sizes = {t: sum(p.stat().st_size for p in (root / "results" / SCAN_ID / t).glob("*.parquet"))
                 for t in ("models", "layers", "spectra")}
        timings = time_queries(root, args.repeat, args.threads)
    print(f"machine: {cpu_model()}; {os.cpu_count()} logical CPUs (shared with other jobs); {platform.platform()}")
    print(f"duckdb {duckdb.__version__}, pyarrow {pyarrow.__version__}, python {platform.python_version()}; "
          f"DuckDB threads={args.threads}")
    print(f"data: {args.models} models x {args.layers} layers ({args.models * args.layers:,} layer rows), "
          f"{args.evals} eigenvalues/layer, one file per model and table, uncompacted")
    print(f"write through ResultStore: {write_seconds:.1f} s ({write_seconds / args.models * 1e3:.1f} ms/model); "
          + ", ".join(f"{t} {b / 1e6:.1f} MB" for t, b in sizes.items()))
    print(f"median of {args.repeat} runs per query:")
    print(f"  {'query':42s} {'ms':>9s} {'rows':>7s}")
    for name, seconds, rows in timings:
        print(f"  {name:42s} {seconds * 1e3:9.1f} {rows:7d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
