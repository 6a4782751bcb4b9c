"""The synthetic many-model scan that the query benchmarks share, and their timing loops.

``write_scan`` writes ``n_models`` seeded synthetic models (``tests/_factories.make_model``) through
``ResultStore.write_model``, one file per model and table as a real scan does (tmp -> fsync -> rename), and
a synthetic catalog: ``FAMILIES`` families (model ``i`` in family ``i % FAMILIES``), dataset
``imagenet-1k``, top-1 drawn uniformly from [60, 90) with seed 0, so that the accuracy join and the
correlation query have rows. ``time_named_queries`` times every ``queries/*.sql`` on one connection.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from scanner.catalog import CatalogEntry, write_catalog
from scanner.config import ScanConfig
from scanner.query import list_queries, run_query
from scanner.store import ResultStore
from tests._factories import make_model

FAMILIES = 10
SCAN_ID = "bench"

Timing = tuple[str, float, int, float]  # name, median wall seconds, rows, median CPU seconds of this process


def write_scan(root: Path, n_models: int, n_layers: int, num_evals: int) -> float:
    """Write the scan under ``root/results/bench`` and its catalog under ``root/catalogs``; seconds writing."""
    results = ResultStore(root / "results", SCAN_ID)
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


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(median wall seconds, median CPU seconds of this process over all threads, last result) of ``call``.

    CPU seconds do not grow with the machine's load the way wall time does; on an idle machine the wall
    time is at most about the CPU time (less when DuckDB's threads run in parallel).
    """
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        result = call()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def time_named_queries(con: Any, repeat: int) -> list[Timing]:
    """Every named query run ``repeat`` times on ``con`` (all rows fetched): one Timing each, by name."""
    timings = []
    for info in list_queries():
        wall, cpu, rows = timed(lambda name=info.name: len(run_query(con, name).fetchall()), repeat)
        timings.append((info.name, wall, rows, cpu))
    return timings


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return platform.processor() or "?"
    return next((line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
                 if line.startswith("model name")), platform.processor() or "?")
