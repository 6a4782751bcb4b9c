"""Smoke runs of the two query benchmarks (bench/bench_compaction.py, bench/bench_duckdb_queries.py) on a tiny
synthetic scan: they share bench/_synthetic_scan.py and must keep running. No timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from scanner.query import list_queries

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--models", "20", "--layers", "3", "--evals", "8", "--repeat", "1", "--threads", "1"]


def _run(script: str, tmp_path: Path) -> str:
    done = subprocess.run([sys.executable, f"bench/{script}", *TINY, "--root", str(tmp_path / "data")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_bench_compaction_reports_every_query_with_equal_rows(tmp_path) -> None:
    out = _run("bench_compaction.py", tmp_path)
    assert "before: 60 files" in out and "after: 3 files" in out  # 20 models x 3 tables, then one file per table
    for info in list_queries():
        assert f"  {info.name} " in out
    assert "ROWS DIFFER" not in out
    phase_rows = next(line for line in out.splitlines() if line.strip().startswith("phase_by_model "))
    assert int(phase_rows.split()[-1]) > 0


def test_bench_duckdb_queries_reports_every_query(tmp_path) -> None:
    out = _run("bench_duckdb_queries.py", tmp_path)
    assert "20 models x 3 layers (60 layer rows)" in out
    for info in list_queries():
        assert f"  {info.name} " in out
