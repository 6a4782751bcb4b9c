"""Kill the driver (SIGKILL of ``python -m scanner scan``) mid-scan, rerun, and get an uninterrupted scan's rows.

The reference is a serial scan of the same catalog into another folder. The killed run and the rerun use
embedded local Ray in a subprocess; the subprocess gets its own session so that its Ray processes are
cleaned up after the test.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scanner import runner
from scanner.config import ScanConfig
from tests.test_distributed import models_table, write_corrupt, write_mlp

pytestmark = pytest.mark.ray
pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO.parent / "shared" / "zoo" / "akamaster_resnet_cifar10"


def write_catalog(path: Path, model_ids: list[str]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model_id", "family", "dataset"])
        writer.writerows([[model_id, "test", ""] for model_id in model_ids])
    return path


def scan_command(catalog: Path, results: Path) -> list[str]:
    return [sys.executable, "-m", "scanner", "scan", str(catalog), "--results", str(results), "--scan-id", "k",
            "--no-randomize", "--num-cpus", "2", "--max-failed-fraction", "0.2", "--no-handover"]


def stop_session(process: subprocess.Popen) -> None:
    """SIGKILL whatever is left of the subprocess's session (its raylet, GCS, workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def test_killed_driver_resumes_to_the_uninterrupted_result(tmp_path):
    models = [f"file:{ZOO / name}" for name in ("resnet20-12fca82f.th", "resnet32-d509ac18.th", "resnet44-014dd654.th")]
    models += [write_mlp(tmp_path / f"m{i}.safetensors", seed=i) for i in range(5)]
    models.append(write_corrupt(tmp_path / "corrupt.safetensors"))
    catalog = write_catalog(tmp_path / "catalog.csv", models)
    reference = runner.run_serial(models, ScanConfig(randomize=False),
                                       runner.RunOptions(results=str(tmp_path / "ref"), scan_id="k"))
    assert (reference.ok, reference.failed) == (8, 1)

    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           # every model sleeps 2 s in its worker, so the kill lands while models remain
           "ZOOSCAN_FAULTS": ";".join(f"{m}=slow" for m in models)}
    results = tmp_path / "res"
    committed = results / "k" / "models"
    first = subprocess.Popen(scan_command(catalog, results), cwd=REPO, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(list(committed.glob("*.parquet"))) < 2:
            assert first.poll() is None, first.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)  # the driver only; its Ray processes are stopped below
        first.wait(timeout=30)
    finally:
        stop_session(first)
    done_before = len(list(committed.glob("*.parquet")))
    assert 2 <= done_before < len(models), "the kill must land mid-scan"

    rerun = subprocess.run(scan_command(catalog, results), cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=400, start_new_session=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{done_before} already done" in rerun.stdout

    resumed, expected = models_table(results, "k"), models_table(tmp_path / "ref", "k")  # both check duplicates
    assert set(resumed) == set(expected) == set(models)
    for model_id, row in expected.items():
        assert resumed[model_id]["status"] == row["status"], model_id
        if row["alpha_mean"] is None:
            assert resumed[model_id]["alpha_mean"] is None
        else:
            assert resumed[model_id]["alpha_mean"] == pytest.approx(row["alpha_mean"], rel=1e-12)
    layer_keys = [(r["model_id"], r["layer_index"]) for r in pq.read_table(results / "k" / "layers").to_pylist()]
    assert len(layer_keys) == len(set(layer_keys))
    assert list((results / "k").rglob("*.tmp-*")) == []
