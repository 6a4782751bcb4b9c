"""Real Ray: a two-node local cluster scans a catalog with injected faults; every model ends as one row.

One ``ray.cluster_utils.Cluster`` (a head and a worker node, one CPU each) is shared by the module. Faults
come from the ``ZOOSCAN_FAULTS`` test hook (scanner.distributed): an exception, a worker SIGKILLed
mid-model (spectrum actor and fit task), a worker killed on every attempt, a hang past the timeout, and a
corrupt checkpoint.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scanner import distributed, runner
from scanner.config import ScanConfig
from scanner.records import Status
from tests.test_distributed import models_table, write_corrupt, write_mlp

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

ZOO = Path(__file__).resolve().parents[2] / "shared" / "zoo" / "akamaster_resnet_cifar10"
FAST = ScanConfig(randomize=False)


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "disabled")
    mp.setenv("OMP_NUM_THREADS", "1")
    ray_tmp = tempfile.mkdtemp(prefix="zr", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    mp.setenv("RAY_TMPDIR", ray_tmp)  # Cluster writes its address file there, not into the shared /tmp/ray
    local = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    local.add_node(num_cpus=1)
    ray.init(address=local.address, log_to_driver=False)
    local.wait_for_nodes()
    yield local
    ray.shutdown()
    local.shutdown()
    mp.undo()
    shutil.rmtree(ray_tmp, ignore_errors=True)


def test_cluster_has_two_nodes(cluster):
    alive = [node for node in ray.nodes() if node["Alive"]]
    assert len(alive) == 2 and ray.cluster_resources()["CPU"] == 2


def test_faults_end_as_exactly_one_row_per_model(cluster, tmp_path):
    resnets = [f"file:{ZOO / name}" for name in ("resnet20-12fca82f.th", "resnet32-d509ac18.th")]
    mlps = [write_mlp(tmp_path / f"mlp{i}.safetensors", seed=i) for i in range(5)]
    corrupt = write_corrupt(tmp_path / "corrupt.safetensors")
    raising, killed_once, fit_killed_once, always_killed = mlps[1:]
    faults = {raising: "raise@spectra", killed_once: "kill_once@spectra", resnets[1]: "kill_once@fit",
              fit_killed_once: "kill_once@fit", always_killed: "kill@spectra"}
    catalog = [*resnets, *mlps, corrupt]
    options = runner.RunOptions(results=str(tmp_path / "res"), scan_id="faults", faults=faults,
                                     fault_dir=str(tmp_path), max_attempts=2, max_in_flight=3)
    stats = distributed.run_ray(catalog, FAST, options)

    rows = models_table(tmp_path / "res", "faults")  # asserts no duplicates
    assert set(rows) == set(catalog)
    assert (stats.ok, stats.failed, stats.total) == (5, 3, 8)
    ok = {m for m, row in rows.items() if row["status"] == Status.OK.value}
    assert ok == {*resnets, mlps[0], killed_once, fit_killed_once}  # the killed-once models were retried
    assert rows[killed_once]["attempts"] == 2  # driver retry of the spectrum actor call
    assert rows[raising]["error_class"] == "InjectedFault" and "ZOOSCAN_FAULTS" in rows[raising]["reason"]
    assert rows[always_killed]["error_class"] in ("ActorDiedError", "ActorUnavailableError")
    assert rows[always_killed]["attempts"] == 2
    assert rows[corrupt]["status"] == "failed" and rows[corrupt]["error_class"]
    assert all(rows[m]["reason"] for m in rows if m not in ok)
    assert all(rows[m]["alpha_mean"] is not None for m in ok)
    layers = pq.read_table(tmp_path / "res" / "faults" / "layers").to_pylist()
    keys = [(row["model_id"], row["layer_index"]) for row in layers]
    assert len(keys) == len(set(keys))
    assert list((tmp_path / "res" / "faults").rglob("*.tmp-*")) == []


def test_ray_and_serial_runs_give_the_same_rows(cluster, tmp_path):
    catalog = [f"file:{ZOO / 'resnet20-12fca82f.th'}", *(write_mlp(tmp_path / f"m{i}.safetensors", i) for i in range(2))]
    distributed.run_ray(catalog, FAST, runner.RunOptions(results=str(tmp_path / "r"), scan_id="s"))
    runner.run_serial(catalog, FAST, runner.RunOptions(results=str(tmp_path / "q"), scan_id="s"))
    by_ray, by_serial = models_table(tmp_path / "r", "s"), models_table(tmp_path / "q", "s")
    assert set(by_ray) == set(by_serial) == set(catalog)
    for model_id in catalog:
        assert by_ray[model_id]["status"] == by_serial[model_id]["status"] == "ok"
        assert by_ray[model_id]["alpha_mean"] == pytest.approx(by_serial[model_id]["alpha_mean"], rel=1e-12)


def test_a_hanging_model_times_out_and_the_scan_goes_on(cluster, tmp_path):
    hang, after = (write_mlp(tmp_path / f"m{i}.safetensors", i) for i in range(2))
    options = runner.RunOptions(results=str(tmp_path / "res"), scan_id="t", faults={hang: "hang@spectra"},
                                     timeout_per_model=40.0, max_in_flight=1)
    stats = distributed.run_ray([hang, after], FAST, options)
    rows = models_table(tmp_path / "res", "t")
    assert rows[hang]["error_class"] == "Timeout" and "--timeout-per-model" in rows[hang]["reason"]
    assert rows[after]["status"] == "ok"  # ran on the restarted actor
    assert (stats.ok, stats.failed) == (1, 1)
