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
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb
import numpy as np
import pyarrow

from scanner.catalog import CatalogEntry, write_catalog
from scanner.config import ScanConfig
from scanner.query import connect, list_queries, run_query
from scanner.store import ResultStore, model_key
from tests._factories import make_model

FAMILIES = 10


def write_scan(root: Path, n_models: int, n_layers: int, num_evals: int) -> float:
    """Write the synthetic scan and its catalog; returns seconds spent writing."""
    results = ResultStore(root / "results", "bench")
    results.open_scan(ScanConfig(), {"catalog": "synthetic"}, {"hostname": platform.node()})
    rng = np.random.default_rng(0)
    entries = []
    start = time.perf_counter()
    for i in range(n_models):
        model_id = f"timm:fam{i % FAMILIES}_m{i:05d}.synthetic"
        model, layers, spectra = make_model(model_id, n_layers=n_layers, seed=i, num_evals=num_evals)
        results.write_model(model, layers, spectra, model_key=model_key(model_id), host="bench", device="cpu")
        entries.append(CatalogEntry(model_id, f"fam{i % FAMILIES}", "imagenet-1k", top1=float(rng.uniform(60, 90))))
    elapsed = time.perf_counter() - start
    (root / "catalogs").mkdir()
    write_catalog(root / "catalogs" / "synthetic.csv", entries)
    return elapsed


def time_queries(root: Path, repeat: int, threads: int) -> list[tuple[str, float, int]]:
    timings = []
    opened = []
    for _ in range(repeat):
        start = time.perf_counter()
        con = connect(root / "results", catalogs_dir=root / "catalogs", threads=threads)
        opened.append(time.perf_counter() - start)
    timings.append(("(connect: create views + load catalog)", statistics.median(opened), 0))
    for info in list_queries():
        seconds, rows = [], 0
        for _ in range(repeat):
            start = time.perf_counter()
            rows = len(run_query(con, info.name).fetchall())
            seconds.append(time.perf_counter() - start)
        timings.append((info.name, statistics.median(seconds), rows))
    return timings


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
        sizes = {t: sum(p.stat().st_size for p in (root / "results" / "bench" / t).glob("*.parquet"))
                 for t in ("models", "layers", "spectra")}
        timings = time_queries(root, args.repeat, args.threads)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    print(f"machine: {cpu}; {os.cpu_count()} logical CPUs (shared with other jobs); {platform.platform()}")
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
