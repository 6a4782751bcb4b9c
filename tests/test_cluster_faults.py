"""Faults on a real multi-node Ray cluster on this machine (issue 11 item 3), with nodes that share no results folder.

Every cluster is a ``ray start --head --num-cpus 0`` plus worker nodes, each a separate ``ray start --block``
process started under ``unshare --mount`` with a private tmpfs over the results root, so a node cannot see the
driver's results (the driver writes every file). Each scenario runs ``python -m scanner scan --address …`` as
a user would, injects its fault mid-scan, and checks: the scan ends on its own (no hang), no model is lost
or duplicated, and the rows equal an uninterrupted serial scan on the deterministic columns (pyarrow). Every
Ray process is stopped by the PIDs (process groups) started here, never ``ray stop``.

Set ``ZOOSCAN_FAULT_MATRIX=<file>`` to append one Markdown table row per scenario to that file
(bench/results/cluster_faults.md was made so).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pyarrow.parquet as pq
import pytest

from scanner import runner
from scanner.config import ScanConfig
from tests._ray_nodes import LocalCluster, RayNode, ray_env
from tests.test_distributed import write_mlp

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="unshare needs root")]

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")
N_MODELS = 12
LAYER_COLUMNS = ["status", "phase", "num_evals", "alpha", "lambda_max", "n", "m"]
MODEL_COLUMNS = ["status", "n_layers", "n_ok", "alpha_mean", "alpha_hat"]
SCAN_TIMEOUT_S = 300  # far beyond a healthy run (~1 min here): reaching it means a hang


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Models (small MLPs of different shapes) and the reference: an uninterrupted serial scan of them."""
    root = tmp_path_factory.mktemp("zoo")
    models = [write_mlp(root / f"mlp{i:02d}.safetensors", seed=i, widths=(64 + 8 * i, 48, 40 + 4 * i, 32))
              for i in range(N_MODELS)]
    reference = root / "reference"
    stats = runner.run_serial(models, ScanConfig(randomize=False), runner.RunOptions(str(reference), "ref"))
    assert (stats.ok, stats.failed) == (N_MODELS, 0)
    return models, reference / "ref"


def rows_by_key(folder: Path, key: list[str], columns: list[str]) -> dict[tuple, tuple]:
    table = pq.read_table(folder, columns=[*key, *columns]).to_pylist()
    return {tuple(r[k] for k in key): tuple(r[c] for c in columns) for r in table}


def compare(results: Path, reference: Path, models: list[str]) -> dict[str, object]:
    """lost / duplicated models and whether the layer and model rows equal the reference's."""
    found = [row["model_id"] for row in pq.read_table(results / "models", columns=["model_id"]).to_pylist()]
    lost = sorted(set(models) - set(found))
    duplicated = len(found) - len(set(found))
    layers_equal = (rows_by_key(results / "layers", ["model_id", "layer_index"], LAYER_COLUMNS)
                    == rows_by_key(reference / "layers", ["model_id", "layer_index"], LAYER_COLUMNS))
    models_equal = (rows_by_key(results / "models", ["model_id"], MODEL_COLUMNS)
                    == rows_by_key(reference / "models", ["model_id"], MODEL_COLUMNS))
    return {"lost": len(lost), "duplicated": duplicated, "equal": layers_equal and models_equal}


RUNNING: list[Scan] = []  # scans started by the current test, stopped (by PID) when it ends


class Scan:
    """``python -m scanner scan`` against a cluster, as a background process (stopped by its PID)."""

    def __init__(self, cluster: LocalCluster, models: list[str], results: Path, scan_id: str, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.dir = results / scan_id
        self.log = results.parent / f"{scan_id}-{len(RUNNING)}.log"  # two drivers of one scan id: two logs
        environment = {**ray_env(cluster.root), "ZOOSCAN_FAULTS": ";".join(f"{m}=slow" for m in models),
                       **(env or {})}
        argv = [sys.executable, "-m", "scanner", "scan", "--models", *models, "--results", str(results),
                "--scan-id", scan_id, "--address", cluster.address, "--no-randomize", "--stall-minutes", "0.5",
                *extra]
        self.started = time.monotonic()
        RUNNING.append(self)
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(argv, cwd=REPO, env=environment, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def committed(self) -> int:
        folder = self.dir / "models"
        return len([p for p in folder.glob("*.parquet")]) if folder.is_dir() else 0

    def wait_committed(self, count: int, timeout: float = 240) -> None:
        assert poll(lambda: self.committed() >= count, timeout, self), \
            f"no {count} commits in {timeout} s\n{self.output()[-3000:]}"

    def finish(self, timeout: float = SCAN_TIMEOUT_S) -> tuple[int | None, bool]:
        """(exit status, hung): the scan is killed (by its PID) if it runs past ``timeout``."""
        try:
            return self.process.wait(timeout=max(1.0, timeout - (time.monotonic() - self.started))), False
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=30)
            return None, True

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def record(fault: str, outcome: dict[str, object], hung: bool, seconds: float) -> None:
    target = os.environ.get("ZOOSCAN_FAULT_MATRIX")
    if target:
        with open(target, "a") as handle:
            handle.write(f"| {fault} | {N_MODELS} | {outcome.get('lost', '?')} | {outcome.get('duplicated', '?')} | "
                         f"{'yes' if hung else 'no'} | {'yes' if outcome.get('equal') else 'no'} | {seconds:.0f} s |\n")


def check(scan: Scan, fault: str, models: list[str], reference: Path) -> dict[str, object]:
    code, hung = scan.finish()
    seconds = time.monotonic() - scan.started
    committed = scan.committed() > 0
    outcome = compare(scan.dir, reference, models) if committed else {"lost": N_MODELS, "duplicated": 0, "equal": False}
    record(fault, outcome, hung, seconds)
    text = scan.output()
    if committed and os.environ.get("ZOOSCAN_FAULT_ATTEMPTS"):  # how the faults were counted (notes only)
        stats = json.loads((scan.dir / "scan.json").read_text())["stats"] or {}
        attempts = [r["attempts"] for r in pq.read_table(scan.dir / "models", columns=["attempts"]).to_pylist()]
        with open(os.environ["ZOOSCAN_FAULT_ATTEMPTS"], "a") as handle:
            handle.write(f"| {fault} | {stats.get('infra_retries')} | {sum(a > 1 for a in attempts)} |\n")
    assert not hung, f"{fault}: the scan hung\n{text[-3000:]}"
    assert code == 0, f"{fault}: exit {code}\n{text[-3000:]}"
    assert outcome == {"lost": 0, "duplicated": 0, "equal": True}, f"{fault}: {outcome}\n{text[-3000:]}"
    assert f"{N_MODELS} ok, 0 failed" in text
    return outcome


@pytest.fixture(scope="module")
def head():
    """One 0-CPU head for the module (no scan work lands there); each test brings and stops its worker nodes."""
    with LocalCluster() as cluster:
        cluster.start_head(num_cpus=0)
        yield cluster


@pytest.fixture
def cluster(head):
    started = len(head.nodes)
    yield head
    while RUNNING:
        scan = RUNNING.pop()
        if scan.process.poll() is None:
            os.killpg(scan.process.pid, 9)
            scan.process.wait(timeout=30)
    for node in head.nodes[started:]:
        head.kill_node(node)


def add_nodes(cluster: LocalCluster, results: Path, count: int) -> list[RayNode]:
    """``count`` 1-CPU worker nodes that cannot see ``results`` (a private tmpfs over it)."""
    results.mkdir(parents=True, exist_ok=True)
    return [cluster.add_node(num_cpus=1, private_dirs=(results,)) for _ in range(count)]


def running(node: RayNode, title: bytes) -> int:
    """Ray workers on ``node`` whose process title starts with ``title`` (``ray::_SpectrumWorker``: spectrum
    actors; ``ray::_fit``: fit tasks running now)."""
    return sum(_cmdline(pid).startswith(title) for pid in node.pids())


def poll(condition: Callable[[], T], timeout: float, scan: Scan | None = None) -> T | None:
    """The first truthy value of ``condition()`` within ``timeout`` seconds (None if none came); with ``scan``,
    asserts the scan is still running at every try (a scan that ended cannot be waited for)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if scan is not None:
            assert scan.process.poll() is None, scan.output()[-3000:]
        time.sleep(0.2)
    return None


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_nodes_without_the_results_folder(zoo, cluster, tmp_path):
    models, reference = zoo
    results = tmp_path / "results"
    add_nodes(cluster, results, 2)
    scan = Scan(cluster, models, results, "private")
    check(scan, "none (2 worker nodes, results folder private to the driver)", models, reference)


def test_raylet_of_a_worker_node_killed_mid_scan(zoo, cluster, tmp_path):
    models, reference = zoo
    results = tmp_path / "results"
    nodes = add_nodes(cluster, results, 2)
    scan = Scan(cluster, models, results, "raylet")
    scan.wait_committed(3)
    cluster.kill_raylet(nodes[0])
    check(scan, "SIGKILL of a worker node's raylet at 3 committed", models, reference)


def test_node_holding_fit_tasks_killed_mid_scan(zoo, cluster, tmp_path):
    models, reference = zoo
    results = tmp_path / "results"
    nodes = add_nodes(cluster, results, 2)
    scan = Scan(cluster, models, results, "fitnode", env={"ZOOSCAN_FAULTS": ";".join(f"{m}=slow@fit" for m in models)})
    scan.wait_committed(3)
    victim = poll(lambda: next((n for n in nodes if running(n, b"ray::_fit")), None), 60, scan)
    assert victim is not None, "no fit task seen running"
    cluster.kill_node(victim)  # every process of the node: raylet, actor, fit workers
    check(scan, "SIGKILL of every process of the node running fit tasks at 3 committed", models, reference)


def test_node_added_mid_scan_gets_work(zoo, cluster, tmp_path):
    models, reference = zoo
    results = tmp_path / "results"
    add_nodes(cluster, results, 1)
    scan = Scan(cluster, models, results, "grow")
    scan.wait_committed(2)
    late = cluster.add_node(num_cpus=1, private_dirs=(results,))
    poll(lambda: running(late, b"ray::_SpectrumWorker") or scan.process.poll() is not None, 60)
    got_actor = running(late, b"ray::_SpectrumWorker") > 0  # seen while the scan ran (it may have ended since)
    check(scan, "worker node added at 2 committed (it got a spectrum worker)", models, reference)
    assert got_actor, "the node added mid-scan never got a spectrum worker"


def test_no_gpu_node_at_start_then_one_joins(zoo, cluster, tmp_path):
    models, reference = zoo
    results = tmp_path / "results"
    add_nodes(cluster, results, 1)  # CPU nodes only: --device cuda must wait
    scan = Scan(cluster, models, results, "gpu0", "--device", "cuda", "--wait-for-gpus", "240",
                env={"ZOOSCAN_LOGICAL_GPUS": "1"})
    poll(lambda: "waiting for a GPU node" in scan.output(), 120, scan)
    assert "waiting for a GPU node (--device cuda)" in scan.output()
    assert scan.committed() == 0
    cluster.add_node(num_cpus=2, num_gpus=1, private_dirs=(results,))  # a logical GPU
    check(scan, "no GPU node at start (--device cuda), a 1-GPU node joins later", models, reference)


def test_two_drivers_on_one_scan_id(zoo, cluster, tmp_path):
    models, reference = zoo
    results = tmp_path / "results"
    add_nodes(cluster, results, 2)
    first = Scan(cluster, models, results, "twice")
    first.wait_committed(1)
    second = Scan(cluster, models, results, "twice")
    code, hung = second.finish(timeout=120)
    assert not hung and code == 1, second.output()[-3000:]
    assert "is being written by pid" in second.output(), second.output()[-3000:]
    check(first, "a second driver on the same scan id (refused by the scan lock)", models, reference)
