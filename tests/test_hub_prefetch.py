"""Prefetch (scanner/prefetch.py) against the local hub server: the next models are downloaded ahead, within the
cache budget, and the scan of a prefetched model makes no further download."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from scanner.cache import CacheSettings, WeightCache, repo_folder
from scanner.config import ScanConfig
from scanner.prefetch import Prefetcher, hub_request
from scanner.scan import compute_spectra
from scanner.sources.hub import HubRetry
from tests._hub_server import FakeHub
from tests.test_hub import online, small_repo  # noqa: F401 (fixture)

FAST = HubRetry(tries=3, backoff_s=0.05, max_backoff_s=0.2, probe_timeout_s=2.0)


def config_of(cache: WeightCache) -> ScanConfig:
    settings = cache.settings
    return ScanConfig(randomize=False, threads=1, cache_dir=settings.cache_dir, cache_max_gb=settings.max_gb)


def eventually(condition: Callable[[], bool], within: float = 60.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def downloads(server: FakeHub, repo_id: str) -> int:
    return len(server.hits("GET", rf"^/{repo_id}/resolve/.*safetensors$"))


def test_hub_request_only_for_hub_ids() -> None:
    assert hub_request("hf:org/name@abc").repo_id == "org/name"
    assert hub_request("file:/tmp/x.safetensors") is None and hub_request("random:timm/resnet18") is None
    assert hub_request("timm:resnet18.a1_in1k?file=/tmp/r.pth") is None


def test_prefetched_models_are_scanned_without_another_download(online, tmp_path: Path) -> None:  # noqa: F811
    repos = [small_repo(tmp_path, f"org/p{i}", seed=i) for i in range(3)]
    with FakeHub(repos, bandwidth=4e6) as server:
        cache = online(server, CacheSettings(cache_dir=str(tmp_path / "cache"), retry=FAST))
        ids = ["hf:org/p0", "random:timm/resnet18", "hf:org/p1", "hf:org/p2"]
        with Prefetcher(cache, depth=2) as prefetch:
            prefetch.ahead(ids[1:])  # the random: id takes a slot but downloads nothing
            prefetch.claim(ids[0])
            assert compute_spectra(ids[0], config_of(cache)).status.value == "ok"
            assert eventually(lambda: downloads(server, "org/p1") == 1)
            assert downloads(server, "org/p2") == 0  # beyond the depth
            prefetch.done(ids[0])
            prefetch.ahead(ids[2:])
            prefetch.claim(ids[1])
            prefetch.done(ids[1])
            assert eventually(lambda: downloads(server, "org/p2") == 1)
            for model_id in ids[2:]:
                prefetch.claim(model_id)
                assert compute_spectra(model_id, config_of(cache)).status.value == "ok"
                prefetch.done(model_id)
            assert prefetch.stats.fetched == 2 and prefetch.stats.failed == 0
        assert [downloads(server, f"org/p{i}") for i in range(3)] == [1, 1, 1]
    assert not list((tmp_path / "cache").glob("models--*"))  # every model released after its commit


def test_prefetch_waits_for_the_budget(online, tmp_path: Path) -> None:  # noqa: F811
    repos = [small_repo(tmp_path, f"org/b{i}", seed=i) for i in range(3)]  # ~0.72 MB each
    with FakeHub(repos) as server:
        cache = online(server, CacheSettings(cache_dir=str(tmp_path / "cache"), max_gb=0.0016, retry=FAST))
        with Prefetcher(cache, depth=2) as prefetch:
            prefetch.claim("hf:org/b0")
            assert compute_spectra("hf:org/b0", config_of(cache)).status.value == "ok"
            prefetch.ahead(["hf:org/b1", "hf:org/b2"])
            assert eventually(lambda: downloads(server, "org/b1") == 1)
            time.sleep(0.5)  # give a wrong implementation the chance to go over the budget
            assert downloads(server, "org/b2") == 0 and cache.usage() <= cache.settings.max_bytes
            prefetch.done("hf:org/b0")  # committed: its weights go, the waiting prefetch starts
            assert eventually(lambda: downloads(server, "org/b2") == 1)
            assert not (tmp_path / "cache" / repo_folder("org/b0")).exists()
            assert cache.usage() <= cache.settings.max_bytes


@pytest.mark.parametrize("bad", ["hf:org/absent", "timm:resnet18.no_such_tag"])
def test_a_failed_prefetch_is_left_to_the_scan(online, tmp_path: Path, bad: str) -> None:  # noqa: F811
    with FakeHub([]) as server:
        cache = online(server, CacheSettings(cache_dir=str(tmp_path / "cache"), retry=FAST))
        with Prefetcher(cache, depth=1) as prefetch:
            prefetch.ahead([bad])
            assert eventually(lambda: prefetch.stats.failed == 1)
            prefetch.claim(bad)  # does not wait for anything
        spectra = compute_spectra(bad, config_of(cache))
        assert spectra.status.value == "failed" and ("no such repo" in spectra.reason or "no pretrained" in
                                                     spectra.reason)


def test_a_prefetched_model_given_to_another_worker_is_released(online, tmp_path: Path) -> None:  # noqa: F811
    with FakeHub([small_repo(tmp_path, "org/x")]) as server:
        cache = online(server, CacheSettings(cache_dir=str(tmp_path / "cache"), retry=FAST))
        with Prefetcher(cache, depth=1) as prefetch:
            prefetch.ahead(["hf:org/x"])
            assert eventually(lambda: prefetch.stats.fetched == 1)
            assert (tmp_path / "cache" / repo_folder("org/x")).exists()
            prefetch.ahead([])  # the scheduler gave hf:org/x to another worker
            assert not (tmp_path / "cache" / repo_folder("org/x")).exists()


def test_the_model_handed_to_the_worker_is_kept_before_its_claim(online, tmp_path: Path) -> None:  # noqa: F811
    with FakeHub([small_repo(tmp_path, "org/k"), small_repo(tmp_path, "org/l", seed=1)]) as server:
        cache = online(server, CacheSettings(cache_dir=str(tmp_path / "cache"), retry=FAST))
        with Prefetcher(cache, depth=1) as prefetch:
            prefetch.ahead(["hf:org/k"])
            assert eventually(lambda: prefetch.stats.fetched == 1)
            prefetch.ahead(["hf:org/l"], keep=["hf:org/k"])  # hf:org/k was submitted; its claim comes later
            prefetch.claim("hf:org/k")
            assert compute_spectra("hf:org/k", config_of(cache)).status.value == "ok"
            assert downloads(server, "org/k") == 1  # not deleted and downloaded again
