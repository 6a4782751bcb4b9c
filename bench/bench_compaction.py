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
from scanner.compact import compact_scan, describe
from scanner.config import ScanConfig
from scanner.query import _JOINED_VIEWS as JOINED_VIEWS
from scanner.query import connect, list_queries, run_query
from scanner.store import ResultStore
from tests._factories import make_model

FAMILIES = 10


def write_scan(root: Path, n_models: int, n_layers: int, num_evals: int) -> float:
    """Write the synthetic scan through the store API and its catalog; returns seconds spent writing."""
    results = ResultStore(root / "results", "bench")
    results.open_scan(ScanConfig(), {"catalog": "synthetic"}, {"hostname": platform.node()})
    rng = np.random.default_rng(0)
    entries = []
    start = time.perf_counter()
    for i in range(n_models):
        model_id = f"timm:fam{i % FAMILIES}_m{i:05d}.synthetic"
        model, layers, spectra = make_model(model_id, n_layers=n_layers, seed=i, num_evals=num_evals)
        results.write_model(model, layers, spectra, host="bench", device="cpu")
        entries.append(CatalogEntry(model_id, f"fam{i % FAMILIES}", "imagenet-1k", top1=float(rng.uniform(60, 90))))
    elapsed = time.perf_counter() - start
    results.finish_scan({"models": n_models})
    (root / "catalogs").mkdir()
    write_catalog(root / "catalogs" / "synthetic.csv", entries)
    return elapsed


def time_queries(root: Path, repeat: int, threads: int) -> list[tuple[str, float, int, float]]:
    """(name, median wall seconds, rows, median CPU seconds of this process) for connect and every query.

    CPU seconds (all threads) do not grow with the machine's load the way wall time does; on an idle machine
    the wall time is at most about the CPU time (less when DuckDB's threads run in parallel).
    """
    opened, opened_cpu = [], []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        con = connect(root / "results", catalogs_dir=root / "catalogs", threads=threads)
        opened.append(time.perf_counter() - start)
        opened_cpu.append(time.process_time() - cpu)
    timings = [("(connect: list files, create views, load catalog)", statistics.median(opened), 0,
                statistics.median(opened_cpu))]
    for info in list_queries():
        seconds, cpus, rows = [], [], 0
        for _ in range(repeat):
            start, cpu = time.perf_counter(), time.process_time()
            rows = len(run_query(con, info.name).fetchall())
            seconds.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
        timings.append((info.name, statistics.median(seconds), rows, statistics.median(cpus)))
    return timings


def time_in_memory(root: Path, repeat: int, threads: int) -> list[tuple[str, float, int, float]]:
    """The same queries over in-memory copies of the three tables: the query's own cost, without file reads."""
    con = connect(root / "results", catalogs_dir=root / "catalogs", threads=threads)
    for table in ("models", "layers", "spectra"):
        con.execute(f"CREATE TABLE {table}_mem AS SELECT * FROM {table}")
        con.execute(f"DROP VIEW {table}")
        con.execute(f"ALTER TABLE {table}_mem RENAME TO {table}")
    con.execute(JOINED_VIEWS)
    timings = [("(connect: list files, create views, load catalog)", 0.0, 0, 0.0)]
    for info in list_queries():
        seconds, cpus, rows = [], [], 0
        for _ in range(repeat):
            start, cpu = time.perf_counter(), time.process_time()
            rows = len(run_query(con, info.name).fetchall())
            seconds.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
        timings.append((info.name, statistics.median(seconds), rows, statistics.median(cpus)))
    return timings


def _files(root: Path) -> tuple[int, float]:
    paths = [p for p in (root / "results" / "bench").rglob("*.parquet")]
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
        report = compact_scan(root / "results", "bench")
        compact_seconds = time.perf_counter() - start
        files_after = _files(root)
        after = time_queries(root, args.repeat, args.threads)
        memory = time_in_memory(root, args.repeat, args.threads)
    load_end = os.getloadavg()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    print(f"machine: {cpu}; {os.cpu_count()} logical CPUs (shared with other jobs); {platform.platform()}")
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
