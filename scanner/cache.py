"""The per-node weight cache: hub downloads admitted under a budget and removed once their model is committed.

The cache is the Hugging Face hub cache (``models--org--name/{blobs,snapshots,refs}``) at ``cache_dir``, or
the hub's default (``HF_HUB_CACHE``, else ``HF_HOME``/hub). zooscan keeps its bookkeeping beside it in
``<root>/.zooscan/``:

    downloaded/<repo folder>          this repo was downloaded by zooscan (only such repos are ever deleted)
    pins/<repo folder>@<pid>@<model>  a model of process <pid> uses or has prefetched the repo; content: bytes
                                      reserved for its download
    lock                              flock that serialises admissions of the processes of one node

The budget (``max_gb``, 1 GB = 1e9 bytes) is compared with the node's usage: the sum over repo folders of
max(bytes on disk under the folder, bytes pinned for it), so a download in progress counts in full from its
start. A download is admitted when it fits; to make room zooscan first deletes repos it downloaded that no
live process pins (least recently used first). The model being scanned is always admitted if it alone fits
the budget (a prefetch waits instead); one larger than the budget is an error naming ``--cache-max-gb``.
``release(model_id)`` (after the model's rows are committed) unpins it and, unless ``keep_weights``,
deletes the repo when zooscan downloaded it and nobody else pins it. Repos that were already cached
before the scan are read in place and never deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from scanner.config import ScanConfig
from scanner.errors import ConfigError, SourceError
from scanner.sources import hub
from scanner.sources.hub import HubRequest, HubRetry
from scanner.storage import pid_alive

logger = logging.getLogger(__name__)

GB = 1e9


@dataclass(frozen=True)
class CacheSettings:
    """Where hub weights go and how much of the disk they may take (not part of the config hash).

    Attributes:
        cache_dir: hub cache folder (None: huggingface_hub's default, ``HF_HUB_CACHE``/``HF_HOME``).
        max_gb: budget of the cache on this node in GB (1e9 bytes); None: unlimited.
        keep_weights: keep downloaded weights after their model is committed (still evicted, least recently
            used first, when the budget needs room).
        prefetch: models downloaded ahead of the one being scanned (0: no prefetch).
        retry: attempts and backoff of hub calls.
    """

    cache_dir: str | None = None
    max_gb: float | None = None
    keep_weights: bool = False
    prefetch: int = 2
    retry: HubRetry = field(default_factory=HubRetry)

    def __post_init__(self) -> None:
        if self.max_gb is not None and not self.max_gb > 0:
            raise ConfigError(f"the 'cache_max_gb' option must be > 0 (or left out); got {self.max_gb!r} instead")
        if self.prefetch < 0:
            raise ConfigError(f"the 'prefetch' option must be >= 0; got {self.prefetch!r} instead")

    @property
    def max_bytes(self) -> int | None:
        return None if self.max_gb is None else int(self.max_gb * GB)


def repo_folder(repo_id: str) -> str:
    """The hub cache's folder name of a model repo: ``models--org--name``."""
    return "models--" + repo_id.replace("/", "--")


def disk_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed, so each blob counts once)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                stat = os.lstat(os.path.join(folder, name))
                if not os.path.islink(os.path.join(folder, name)):
                    total += stat.st_size
    return total


class WeightCache:
    """One node's hub cache under a budget (see the module docstring); safe across threads and processes."""

    def __init__(self, settings: CacheSettings | None = None) -> None:
        self.settings = settings or CacheSettings()
        self.root = hub.cache_root(self.settings.cache_dir)
        self.meta = self.root / ".zooscan"
        self._lock = threading.RLock()
        self.room_freed = threading.Condition(self._lock)

    # -- bookkeeping ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _node_lock(self) -> Iterator[None]:
        with self._lock:
            self.meta.mkdir(parents=True, exist_ok=True)
            with open(self.meta / "lock", "a+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def _pin_path(self, repo_id: str, model_id: str) -> Path:
        digest = hashlib.sha1(model_id.encode()).hexdigest()[:12]
        return self.meta / "pins" / f"{repo_folder(repo_id)}@{os.getpid()}@{digest}"

    def _pins(self) -> dict[str, int]:
        """Repo folder -> bytes pinned by live processes (pins of dead processes are removed)."""
        pinned: dict[str, int] = {}
        for path in (self.meta / "pins").glob("*@*@*"):
            folder, pid, _ = path.name.split("@")
            if not pid_alive(int(pid)):
                path.unlink(missing_ok=True)
                continue
            with contextlib.suppress(OSError, ValueError):
                pinned[folder] = pinned.get(folder, 0) + int(path.read_text() or 0)
        return pinned

    def _pin(self, repo_id: str, model_id: str, nbytes: int) -> None:
        path = self._pin_path(repo_id, model_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(nbytes))

    def usage(self) -> int:
        """Bytes the cache counts against the budget: Σ over repos of max(on disk, pinned)."""
        pinned = self._pins()
        folders = {p.name for p in self.root.glob("models--*")} | set(pinned)
        return sum(max(disk_bytes(self.root / f), pinned.get(f, 0)) for f in folders)

    def _evictable(self) -> list[Path]:
        """Repos zooscan downloaded that no live process pins, least recently used first."""
        pinned = self._pins()
        markers = [m for m in (self.meta / "downloaded").glob("models--*") if m.name not in pinned]
        return sorted(markers, key=lambda m: m.stat().st_mtime)

    def _delete(self, folder: str) -> int:
        freed = disk_bytes(self.root / folder)
        shutil.rmtree(self.root / folder, ignore_errors=True)
        shutil.rmtree(self.root / ".locks" / folder, ignore_errors=True)
        (self.meta / "downloaded" / folder).unlink(missing_ok=True)
        logger.info("weight cache: removed %s (%.1f MB)", folder, freed / 1e6)
        return freed

    def _admit(self, plan: hub.HubPlan, model_id: str, *, waiting: bool) -> bool:
        """Pin ``plan.nbytes`` for the model if the budget allows, after evicting what may go (node-locked)."""
        budget = self.settings.max_bytes
        if budget is not None and plan.nbytes > budget:
            raise SourceError(f"{model_id}: its weights are {plan.nbytes / GB:.2f} GB, more than the weight cache "
                              f"budget of {budget / GB:g} GB; raise --cache-max-gb")
        with self._node_lock():
            if budget is not None:
                for marker in self._evictable():
                    if self.usage() + plan.nbytes <= budget:
                        break
                    self._delete(marker.name)
                over = self.usage() + plan.nbytes - budget
                if over > 0 and waiting:
                    return False
                if over > 0:
                    logger.warning("%s: the weight cache goes %.2f GB over its %g GB budget (prefetched or "
                                   "in-use models of this node hold the rest)", model_id, over / GB, budget / GB)
            self._pin(plan.repo_id, model_id, plan.nbytes)
            (self.meta / "downloaded").mkdir(parents=True, exist_ok=True)
            (self.meta / "downloaded" / repo_folder(plan.repo_id)).touch()
        return True

    # -- the API -------------------------------------------------------------------------------------
    def fetch(self, request: HubRequest, model_id: str, *, waiting: bool = False) -> Path | None:
        """The local snapshot folder (or file) of ``request``: cached, or downloaded under the budget.

        ``waiting=True`` (a prefetch) returns None instead of going over the budget; the model being scanned
        (``waiting=False``) is admitted whenever it alone fits.

        Raises:
            SourceError: not cached and offline or unreachable; unknown repo/revision/file; larger than the
                budget; the hub failing after every retry.
        """
        retry = self.settings.retry
        found = hub.cached(request, self.settings.cache_dir)
        if found is not None:
            with self._lock, contextlib.suppress(OSError):  # a read-only cache (filled elsewhere) is fine
                self._pin(request.repo_id, model_id, 0)
                marker = self.meta / "downloaded" / repo_folder(request.repo_id)
                if marker.exists():
                    marker.touch()
            return found
        if hub.offline():
            wanted = list(request.candidates) or [", ".join(p) for p in request.patterns]
            raise SourceError(hub.not_cached_message(model_id, self.settings.cache_dir,
                                                     f"repo {request.repo_id}, files {wanted}"))
        hub.probe(model_id, retry)
        plan = hub.plan(request, model_id, retry)
        if not self._admit(plan, model_id, waiting=waiting):
            return None
        try:
            return hub.download(plan, self.settings.cache_dir, model_id, retry)
        except BaseException:
            self.release(model_id, repo_id=request.repo_id)
            raise

    def release(self, model_id: str, repo_id: str | None = None) -> int:
        """Unpin the model; delete its repo unless kept, pinned elsewhere or not downloaded by zooscan. Bytes freed."""
        freed = 0
        if not (self.meta / "pins").is_dir():
            return 0  # nothing was ever pinned here (e.g. a read-only cache)
        with self._node_lock():
            digest = hashlib.sha1(model_id.encode()).hexdigest()[:12]
            pins = [p for p in (self.meta / "pins").glob(f"*@{os.getpid()}@{digest}")
                    if repo_id is None or p.name.startswith(repo_folder(repo_id) + "@")]
            for pin in pins:
                pin.unlink(missing_ok=True)
                folder = pin.name.split("@")[0]
                downloaded = (self.meta / "downloaded" / folder).exists()
                if not self.settings.keep_weights and downloaded and folder not in self._pins():
                    freed += self._delete(folder)
            self.room_freed.notify_all()
        return freed


_CURRENT: WeightCache | None = None
_CURRENT_LOCK = threading.Lock()


def configure(settings: CacheSettings) -> WeightCache:
    """Make ``settings`` this process's weight cache (the scan driver and each worker call it once)."""
    global _CURRENT
    with _CURRENT_LOCK:
        if _CURRENT is None or _CURRENT.settings != settings:
            _CURRENT = WeightCache(settings)
        return _CURRENT


def settings_of(config: ScanConfig) -> CacheSettings:
    """The weight cache settings a ``ScanConfig`` carries (``cache_dir``, ``cache_max_gb``, ``keep_weights``,
    ``prefetch``; not hashed)."""
    return CacheSettings(cache_dir=config.cache_dir, max_gb=config.cache_max_gb, keep_weights=config.keep_weights,
                         prefetch=config.prefetch)


def use(config: ScanConfig) -> WeightCache:
    """Configure this process's weight cache from a scan's config (every process that reads weights calls it;
    the retry settings of an already configured cache are kept)."""
    settings = settings_of(config)
    with _CURRENT_LOCK:
        active = _CURRENT
    if active is not None:
        settings = replace(settings, retry=active.settings.retry)
    return configure(settings)


def current(cache_dir: str | None = None) -> WeightCache:
    """This process's weight cache; a plain one (no budget) at ``cache_dir`` when that names another folder."""
    global _CURRENT
    with _CURRENT_LOCK:
        if _CURRENT is None:
            _CURRENT = WeightCache(CacheSettings())
        active = _CURRENT
    if cache_dir is not None and hub.cache_root(cache_dir) != active.root:
        return WeightCache(replace(active.settings, cache_dir=cache_dir, max_gb=None))
    return active


def wait_for_room(cache: WeightCache, seconds: float) -> None:
    """Block until a release on this process frees room, or ``seconds`` pass (a prefetch's back-off)."""
    deadline = time.monotonic() + seconds
    with cache.room_freed:
        cache.room_freed.wait(max(0.0, deadline - time.monotonic()))
