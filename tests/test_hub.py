"""The real huggingface_hub download path against a local hub server (tests/_hub_server.py, loopback only):
injected 429 with Retry-After, 500, a connection dropped mid-file, an unreachable hub, and the cache budget."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from scanner import cache as weight_cache
from scanner.cache import CacheSettings, WeightCache, repo_folder
from scanner.config import ScanConfig
from scanner.errors import SourceError
from scanner.scan import compute_spectra, finish_scan
from scanner.sources import hub
from scanner.sources.hf import hf_request
from scanner.sources.hub import HubRetry, HubUnavailableError
from tests._fixtures_sources import make_hub_cache, minilm_safetensors
from tests._hub_server import FakeHub, Fault, HubRepo

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
FAST = HubRetry(tries=3, backoff_s=0.05, max_backoff_s=0.2, probe_timeout_s=2.0)


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch):
    """huggingface_hub allowed to download (the suite runs with HF_HUB_OFFLINE=1); a fresh process cache."""
    import huggingface_hub.constants as constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(weight_cache, "_CURRENT", None)
    hub.forget_probes()

    def use(server: FakeHub | str, settings: CacheSettings) -> WeightCache:
        monkeypatch.setenv("HF_ENDPOINT", server if isinstance(server, str) else server.endpoint)
        hub.forget_probes()
        return weight_cache.configure(settings)

    yield use
    hub.forget_probes()


def minilm_repo() -> HubRepo:
    weights = minilm_safetensors()
    return HubRepo(MINILM, {"model.safetensors": weights, "config.json": weights.parent / "config.json",
                            "README.md": weights.parent / "README.md"})


def small_repo(tmp_path: Path, repo_id: str, rows: int = 700, seed: int = 0) -> HubRepo:
    """A repo with one safetensors file of about rows·256·4 bytes (two linear layers)."""
    torch.manual_seed(seed)
    path = tmp_path / f"{repo_id.replace('/', '_')}.safetensors"
    save_file({"fc1.weight": torch.randn(rows, 128), "fc2.weight": torch.randn(rows, 128)}, str(path))
    return HubRepo(repo_id, {"model.safetensors": path, "config.json": b'{"model_type": "mlp"}'})


def eigenvalues(model_id: str, cache: WeightCache | None = None) -> dict[str, np.ndarray]:
    settings = cache.settings if cache is not None else CacheSettings()
    config = ScanConfig(randomize=False, threads=1, cache_dir=settings.cache_dir, cache_max_gb=settings.max_gb,
                        keep_weights=settings.keep_weights)
    spectra = compute_spectra(model_id, config)
    assert spectra.status.value == "ok", spectra.reason
    return {item.layer_name: item.evals for item in finish_scan(spectra, config).spectra}


@pytest.mark.slow
def test_minilm_through_429_500_and_a_dropped_connection_equals_the_local_files(online, tmp_path: Path) -> None:
    with FakeHub([minilm_repo()]) as server:
        cache = online(server, CacheSettings(cache_dir=str(tmp_path / "cache"), retry=HubRetry(tries=4, backoff_s=0.2)))
        server.add_fault(Fault("GET", r"^/api/models/", status=429, headers={"Retry-After": "1"}))
        server.add_fault(Fault("GET", r"/resolve/.*/config\.json$", status=500, times=2))
        server.add_fault(Fault("GET", r"/resolve/.*/model\.safetensors$", drop_after=30_000_000))
        through_hub = eigenvalues(f"hf:{MINILM}", cache)
        info = server.hits("GET", r"^/api/models/")
        assert [r[2] for r in info] == [429, 200]
        assert info[1][3] - info[0][3] >= 1.0  # the retry waited for Retry-After
        assert [r[2] for r in server.hits("GET", r"config\.json$")] == [500, 500, 200]
        weights = [r[2] for r in server.hits("GET", r"model\.safetensors$")]
        assert weights[0] < 0 and weights[-1] == 206  # dropped mid-file, resumed with a ranged GET
        assert not server.hits("GET", r"README\.md$")  # only weights and config.json are fetched
    local = eigenvalues(f"file:{minilm_safetensors().parent}")
    assert sorted(through_hub) == sorted(local) and len(local) == 39
    for name, evals in local.items():
        np.testing.assert_array_equal(through_hub[name], evals)


def test_a_cached_model_needs_no_hub(online, tmp_path: Path) -> None:
    repo = small_repo(tmp_path, "org/cached")
    make_hub_cache(tmp_path / "cache", "org/cached", {n: f.data for n, f in repo.files.items()})
    cache = online("http://127.0.0.1:9", CacheSettings(cache_dir=str(tmp_path / "cache")))  # nothing listens there
    assert set(eigenvalues("hf:org/cached", cache)) == {"fc1", "fc2"}


def test_a_hub_that_keeps_failing_ends_in_one_clear_line(online, tmp_path: Path) -> None:
    with FakeHub([small_repo(tmp_path, "org/m")]) as server:
        cache = online(server, CacheSettings(cache_dir=str(tmp_path / "cache"), retry=FAST))
        server.add_fault(Fault("GET", r"^/api/models/", status=503, times=100))
        with pytest.raises(HubUnavailableError) as info:
            cache.fetch(hf_request("org/m", None), "hf:org/m")
        assert len(server.hits("GET", r"^/api/models/")) == FAST.tries
    message = str(info.value)
    assert "\n" not in message and "hf:org/m: model info failed 3 times" in message and "HTTP 503" in message
    assert "rerun later" in message


def test_rate_limit_exhausted_names_the_fix(online, tmp_path: Path) -> None:
    with FakeHub([small_repo(tmp_path, "org/m")]) as server:
        cache = online(server, CacheSettings(cache_dir=str(tmp_path / "cache"), retry=FAST))
        server.add_fault(Fault("GET", r"^/api/models/", status=429, headers={"Retry-After": "0"}, times=100))
        with pytest.raises(SourceError, match=r"HTTP 429 .*rate-limiting: set HF_TOKEN"):
            cache.fetch(hf_request("org/m", None), "hf:org/m")


def test_unknown_repo_is_not_retried(online, tmp_path: Path) -> None:
    with FakeHub([]) as server:
        cache = online(server, CacheSettings(cache_dir=str(tmp_path / "cache"), retry=FAST))
        with pytest.raises(SourceError, match="no such repo or revision"):
            cache.fetch(hf_request("org/absent", None), "hf:org/absent")
        assert len(server.hits("GET", r"^/api/models/")) == 1, server.requests


def test_unreachable_hub_fails_at_once_naming_hf_hub_offline(online, tmp_path: Path) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens on this port now: connections are refused
    cache = online(f"http://127.0.0.1:{port}", CacheSettings(cache_dir=str(tmp_path), retry=FAST))
    with pytest.raises(SourceError) as info:
        cache.fetch(hf_request("org/m", None), "hf:org/m")
    assert "unreachable" in str(info.value) and "HF_HUB_OFFLINE=1" in str(info.value)


def test_a_silent_hub_is_probed_once_with_a_timeout(online, tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])  # never answers
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    retry = HubRetry(tries=3, backoff_s=0.05, probe_timeout_s=0.5)
    cache = online(f"http://127.0.0.1:{listener.getsockname()[1]}", CacheSettings(cache_dir=str(tmp_path), retry=retry))
    try:
        for model_id in ("hf:org/a", "hf:org/b"):  # the second model reuses the probe's answer
            with pytest.raises(SourceError, match=r"unreachable \(no answer within 0.5 s"):
                cache.fetch(hf_request(model_id[3:], None), model_id)
        assert len(accepted) == 1
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


@pytest.mark.slow
def test_timm_pretrained_weights_through_the_hub(online, tmp_path: Path) -> None:
    import timm

    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in timm.create_model("test_vit", pretrained=False).state_dict().items()}
    weights = tmp_path / "model.safetensors"
    save_file(state, str(weights))
    with FakeHub([HubRepo("timm/test_vit.r160_in1k", {"model.safetensors": weights})]) as server:
        cache = online(server, CacheSettings(cache_dir=str(tmp_path / "cache"), retry=FAST))
        server.add_fault(Fault("HEAD", r"model\.safetensors$", status=502))
        through_hub = eigenvalues("timm:test_vit.r160_in1k", cache)
    local = eigenvalues(f"timm:test_vit.r160_in1k?file={weights}")
    assert sorted(through_hub) == sorted(local)
    for name, evals in local.items():
        np.testing.assert_array_equal(through_hub[name], evals)


def test_budget_removal_after_commit_and_keep_weights(online, tmp_path: Path) -> None:
    repos = [small_repo(tmp_path, f"org/m{i}", seed=i) for i in range(3)]  # ~0.72 MB each
    make_hub_cache(tmp_path / "cache", "org/users-own", {"model.safetensors": b"x" * 1000})
    with FakeHub(repos) as server:
        settings = CacheSettings(cache_dir=str(tmp_path / "cache"), max_gb=0.0016, retry=FAST)
        cache = online(server, settings)
        root = tmp_path / "cache"
        assert cache.fetch(hf_request("org/m0", None), "hf:org/m0") is not None
        assert cache.fetch(hf_request("org/m1", None), "hf:org/m1", waiting=True) is not None
        assert cache.fetch(hf_request("org/m2", None), "hf:org/m2", waiting=True) is None  # a prefetch waits
        assert cache.usage() <= settings.max_bytes
        assert cache.release("hf:org/m0") > 0 and not (root / repo_folder("org/m0")).exists()
        assert cache.fetch(hf_request("org/m2", None), "hf:org/m2", waiting=True) is not None
        for name in ("hf:org/m1", "hf:org/m2", "hf:org/users-own"):
            cache.release(name)
        assert sorted(p.name for p in root.glob("models--*")) == [repo_folder("org/users-own")]  # never deleted

        kept = online(server, CacheSettings(cache_dir=str(tmp_path / "cache"), max_gb=0.0016, keep_weights=True,
                                            retry=FAST))
        for i in range(3):
            kept.fetch(hf_request(f"org/m{i}", None), f"hf:org/m{i}")
            kept.release(f"hf:org/m{i}")  # kept, until the budget needs the room (least recently used first)
        assert sorted(p.name for p in root.glob("models--org--m*")) == [repo_folder("org/m1"), repo_folder("org/m2")]
        assert kept.usage() <= settings.max_bytes

        tiny = online(server, CacheSettings(cache_dir=str(tmp_path / "cache2"), max_gb=0.0005, retry=FAST))
        with pytest.raises(SourceError, match=r"more than the weight cache budget of 0.0005 GB; raise --cache-max-gb"):
            tiny.fetch(hf_request("org/m0", None), "hf:org/m0")


def test_a_cache_zooscan_cannot_write_to_is_read_in_place(online, tmp_path: Path) -> None:
    repo = small_repo(tmp_path, "org/ro")
    root = tmp_path / "cache"
    make_hub_cache(root, "org/ro", {n: f.data for n, f in repo.files.items()})
    (root / ".zooscan").write_text("")  # its bookkeeping folder cannot be created (as on a read-only mount)
    cache = online("http://127.0.0.1:9", CacheSettings(cache_dir=str(root)))
    assert set(eigenvalues("hf:org/ro", cache)) == {"fc1", "fc2"}
    assert cache.release("hf:org/ro") == 0
