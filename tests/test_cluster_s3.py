"""A scan on a real multi-node Ray cluster into ``s3://`` results (issue 11 item 1, through the Ray path).

The cluster is a ``ray start --head --num-cpus 0`` plus two 1-CPU worker nodes, each a separate ``ray start``
process (``tests._ray_nodes``); the results go to the local S3 server of ``tests.test_s3_store`` (moto's,
started by the tests). Worker nodes never see the results URI: they return each model's rows and the driver
writes them, reading every ``models/`` marker back before it counts the model. Checked as a user runs it:
``python -m scanner scan --address … --results s3://…``, then the same command again (all done), then the rows
read back by the driver and by a query (Arrow datasets, no DuckDB extension).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("moto.server", reason="needs the test extra (moto[server])")

from scanner import query, runner
from scanner.config import ScanConfig
from scanner.store import ResultStore, verify
from tests._ray_nodes import LocalCluster, ray_env
from tests.test_distributed import write_mlp
from tests.test_s3_store import _uri, s3_server  # noqa: F401 (fixture)

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
N_MODELS = 4
COLUMNS = ["model_id", "status", "n_layers", "n_ok", "alpha_mean", "alpha_hat"]


def scan(cluster: LocalCluster, models: list[str], uri: str, cwd: Path) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "scanner", "scan", "--models", *models, "--results", uri, "--scan-id", "ray",
            "--address", cluster.address, "--no-randomize"]
    env = {**ray_env(cluster.root), "PYTHONPATH": str(REPO)}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def model_rows(root: str | os.PathLike[str], scan_id: str) -> list[tuple]:
    con = query.connect(root, scan_id=scan_id, threads=1, catalogs_dir="/nonexistent-catalogs")
    return con.execute(f"SELECT {', '.join(COLUMNS)} FROM models ORDER BY model_id").fetchall()


def test_ray_cluster_scan_into_s3_commits_resumes_and_queries(s3_server, tmp_path):  # noqa: F811
    models = [write_mlp(tmp_path / f"m{i}.safetensors", seed=i, widths=(64 + 8 * i, 48, 32)) for i in range(N_MODELS)]
    reference = tmp_path / "reference"
    runner.run_serial(models, ScanConfig(randomize=False), runner.RunOptions(str(reference), "ray"))
    uri = _uri(s3_server, "cluster")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    with LocalCluster() as cluster:
        cluster.start_head(num_cpus=0)
        nodes = [cluster.add_node(num_cpus=1, wait=False) for _ in range(2)]  # started side by side
        for node in nodes:
            cluster.wait_started(node)
        first = scan(cluster, models, uri, cwd)
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
        assert f"{N_MODELS} ok, 0 failed, 0 already done" in first.stdout
        again = scan(cluster, models, uri, cwd)
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"0 ok, 0 failed, {N_MODELS} already done" in again.stdout
    assert not list(cwd.iterdir())  # nothing written to a local ./s3:/… folder

    store = ResultStore(uri, "ray")
    markers = {m: store.read_marker(m) for m in models}
    assert all(marker is not None and marker.status == "ok" for marker in markers.values()), markers
    assert store.resume_plan(models).todo == ()
    assert store.storage.list_files(store.scan_dir / ".lock") == []  # both runs gave the scan lock back
    report = verify(uri)
    assert report.ok and report.checked == 3 * N_MODELS, report
    rows = model_rows(uri, "ray")
    assert len(rows) == N_MODELS and rows == model_rows(reference, "ray")
    con = query.connect(uri, scan_id="ray", threads=1, catalogs_dir="/nonexistent-catalogs")
    assert con.execute("SELECT count(*) FROM duckdb_extensions() WHERE loaded AND extension_name IN "
                       "('httpfs', 'aws')").fetchall()[0][0] == 0
    assert con.execute("SELECT count(*) FROM layers").fetchall()[0][0] == 2 * N_MODELS
