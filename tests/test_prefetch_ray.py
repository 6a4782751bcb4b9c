"""Prefetch under Ray: each spectrum worker fetches up to ``--prefetch`` models ahead (the serial path's depth),
sticky to the worker that fetched them (``scanner.distributed.plan_prefetch``), checked against the local hub
server while a worker computes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from scanner.distributed import WorkerInfo, _Actor, plan_prefetch
from scanner.store import model_key
from tests._hub_server import FakeHub
from tests._ray_nodes import ray_env
from tests.test_hub import small_repo

REPO = Path(__file__).resolve().parents[1]


def actor(name: str, started: bool = True, busy: bool = False, next_models: tuple[str, ...] = ()) -> _Actor:
    info = WorkerInfo(name, 1, "cpu") if started else None
    return _Actor(handle=name, node_id="n", where=name, ready_ref=None, info=info, busy=busy, next_models=next_models)


def plans(actors: list[_Actor], model_ids: list[str], depth: int) -> dict[str, tuple[str, ...]]:
    return {a.where: plan for a, plan in plan_prefetch(actors, model_ids, depth)}


def test_each_worker_gets_up_to_depth_models_in_queue_order() -> None:
    workers = [actor("a", busy=True), actor("b"), actor("c", started=False)]
    assert plans(workers, list("123456"), 2) == {"a": ("2", "4"), "b": ("1", "3")}  # idle b gets the head
    assert plans(workers, list("12"), 3) == {"a": ("2",), "b": ("1",)}
    assert plans(workers, list("123"), 0) == {"a": (), "b": ()}


def test_a_worker_keeps_what_it_fetched_while_the_queue_moves() -> None:
    workers = [actor("a", next_models=("2", "4")), actor("b", busy=True, next_models=("1", "3"))]
    # "1" was submitted (to a): b keeps "3", a keeps "2" and "4"; the new models fill b first (fewest)
    assert plans(workers, list("23456"), 2) == {"a": ("2", "4"), "b": ("3", "5")}
    workers[0].next_models = ("9",)  # no longer upcoming (another worker took it): dropped
    assert plans(workers, list("345"), 2) == {"a": ("4", "5"), "b": ("3",)}


def downloads(server: FakeHub, repo_id: str) -> int:
    return len(server.hits("GET", rf"^/{repo_id}/resolve/.*safetensors$"))


@pytest.mark.ray
@pytest.mark.slow
def test_ray_worker_fetches_prefetch_models_ahead_while_it_computes(tmp_path: Path) -> None:
    repos = [small_repo(tmp_path, f"org/q{i}", seed=i) for i in range(5)]
    ids = [f"hf:{r.repo_id}" for r in repos]
    results, cache, faults = tmp_path / "results", tmp_path / "cache", tmp_path / "faults"
    faults.mkdir()
    with FakeHub(repos) as server:
        env = {**ray_env(), "HF_ENDPOINT": server.endpoint, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
               "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "ZOOSCAN_FAULTS": f"{ids[0]}=block", "ZOOSCAN_FAULT_DIR": str(faults)}
        argv = [sys.executable, "-m", "scanner", "scan", "--models", *ids, "--num-cpus", "2", "--prefetch", "3",
                "--no-randomize", "--results", str(results), "--scan-id", "pf", "--cache-dir", str(cache),
                "--cache-max-gb", "0.01"]
        log = tmp_path / "scan.log"
        with open(log, "wb") as out:
            scan = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            # one worker (2 CPUs, one kept for fits); it computes q0, held at its start by the fault hook
            while not all(downloads(server, f"org/q{i}") for i in (1, 2, 3)):
                assert scan.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, f"{server.requests}\n{log.read_text()[-3000:]}"
                time.sleep(0.2)
            time.sleep(1.0)  # give a wrong implementation the chance to fetch beyond the depth
            assert downloads(server, "org/q4") == 0 and downloads(server, "org/q0") == 0
            assert not list((results / "pf" / "models").glob("*.parquet"))  # q0 is still computing
            (faults / f"{model_key(ids[0])}.spectra.go").touch()
            assert scan.wait(timeout=300) == 0, log.read_text()[-3000:]
        finally:
            if scan.poll() is None:
                scan.kill()
                scan.wait()
        assert [downloads(server, f"org/q{i}") for i in range(5)] == [1] * 5, server.requests
    assert "5 ok, 0 failed" in log.read_text()
    assert not list(cache.glob("models--*"))  # every model's weights went after its commit
