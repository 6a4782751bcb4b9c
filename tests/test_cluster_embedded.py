"""The embedded default (no ``--address``) starts a Ray of its own and never joins a ``ray start`` cluster.

Ray's plain ``ray.init()`` joins the cluster named in ``$RAY_TMPDIR/ray/ray_current_cluster`` (written by
``ray start --head``); with ``--num-cpus`` it then fails with "When connecting to an existing cluster,
num_cpus and num_gpus must not be provided", and without it the "laptop" scan silently runs on the cluster.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests._ray_nodes import LocalCluster, ray_env
from tests.test_distributed import models_table, write_mlp

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_embedded_scan_ignores_a_ray_start_cluster_on_the_machine(tmp_path):
    models = [write_mlp(tmp_path / f"m{i}.safetensors", seed=i) for i in range(2)]
    with LocalCluster() as cluster:
        cluster.start_head(num_cpus=1)
        assert (cluster.root / "ray" / "ray_current_cluster").read_text().strip().endswith(f":{cluster.port}")
        argv = [sys.executable, "-m", "scanner", "scan", "--models", *models, "--results", str(tmp_path / "res"),
                "--scan-id", "emb", "--num-cpus", "2", "--no-randomize"]
        result = subprocess.run(argv, capture_output=True, text=True, env=ray_env(cluster.root), timeout=300,
                                check=False)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "2 ok, 0 failed" in result.stdout
        assert "existing cluster" not in result.stderr
    assert {row["status"] for row in models_table(tmp_path / "res", "emb").values()} == {"ok"}
