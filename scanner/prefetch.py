"""Prefetch: download the next models' weights (and open their safetensors headers) while the current one computes.

A scan loop that processes models one after another on one worker uses it as::

    prefetch = Prefetcher(cache)                 # one per spectrum worker (per process)
    for i, model_id in enumerate(models):
        prefetch.ahead(models[i + 1:])          # what comes next, in order
        prefetch.claim(model_id)                 # waits for this model's download if it is under way
        ... compute and commit model_id ...      # open_source finds the weights in the cache
        prefetch.done(model_id)                  # release: the weights go unless --keep-weights
    prefetch.close()

One background thread fetches, in order, the first ``depth`` hub-backed models (``hf:``, ``timm:`` without
``?file=``) of the latest ``ahead`` list through ``WeightCache.fetch(waiting=True)``: a download starts only
when the node's budget has room (the model being computed is always admitted), otherwise the thread waits for
a release. A failed prefetch is forgotten: the model's own open repeats the fetch and reports its error.
Downloads are pinned in the cache until ``done``, so a prefetched model is never evicted before its turn.
"""

from __future__ import annotations

import contextlib
import json
import logging
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from scanner.cache import WeightCache, use, wait_for_room
from scanner.config import ScanConfig
from scanner.errors import ScannerError
from scanner.sources import parse_model_id
from scanner.sources.hub import HubRequest, weight_files

logger = logging.getLogger(__name__)

ROOM_POLL_S = 1.0


def hub_request(model_id: str) -> HubRequest | None:
    """The hub files a model id reads, or None for ids that do not come from the hub (file:, random:, ...).

    Raises:
        ScannerError: an id that does not parse, or timm weights that the hub does not have.
    """
    ref = parse_model_id(model_id)
    if ref.source == "hf":
        from scanner.sources.hf import hf_request

        return hf_request(ref.name, ref.revision)
    if ref.source == "timm" and "file" not in dict(ref.options):
        from scanner.sources.timm import timm_request

        return timm_request(ref.name, ref.model_id)
    return None


def open_headers(path) -> int:
    """Read the JSON header of every safetensors file of a fetched model; returns the tensors listed."""
    count = 0
    for file in weight_files(path):
        with open(file, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            count += sum(1 for key in json.loads(handle.read(size)) if key != "__metadata__")
    return count


@dataclass
class PrefetchStats:
    """What the prefetcher did: models fetched ahead, seconds spent downloading, models skipped after errors."""

    fetched: int = 0
    seconds: float = 0.0
    failed: int = 0


class Prefetcher:
    """Background downloads of the next ``depth`` hub models into ``cache`` (see the module docstring)."""

    def __init__(self, cache: WeightCache, depth: int | None = None) -> None:
        self.cache = cache
        self.depth = cache.settings.prefetch if depth is None else depth
        self.stats = PrefetchStats()
        self._cond = threading.Condition()
        self._wanted: list[str] = []
        self._ready: set[str] = set()  # fetched ahead (or not from the hub, or failed: nothing to wait for)
        self._claimed: set[str] = set()
        self._busy: str | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="zooscan-prefetch", daemon=True)
        if self.depth > 0:
            self._thread.start()

    @classmethod
    def for_scan(cls, config: ScanConfig) -> Prefetcher:
        """A prefetcher over this process's weight cache as ``config`` sets it (``config.prefetch`` ahead)."""
        return cls(use(config), depth=config.prefetch)

    def ahead(self, model_ids: Sequence[str], keep: Sequence[str] = ()) -> None:
        """The models this worker scans next, in order; replaces the previous list. Models fetched ahead that
        are no longer wanted (the scheduler gave them to another worker) are released, except ``keep``: the
        model already handed to this worker, whose ``claim`` may not have run yet."""
        with self._cond:
            self._wanted = [m for m in model_ids if m not in self._claimed][: max(self.depth, 0)]
            dropped = [m for m in self._ready if m not in self._wanted and m not in self._claimed and m not in keep]
            self._ready.difference_update(dropped)
            self._cond.notify_all()
        for model_id in dropped:
            self.cache.release(model_id)

    def claim(self, model_id: str) -> None:
        """``model_id`` is about to be scanned: drop it from the queue, or wait until its download ends."""
        with self._cond:
            self._claimed.add(model_id)
            self._wanted = [m for m in self._wanted if m != model_id]
            while self._busy == model_id:
                self._cond.wait()

    def done(self, model_id: str) -> int:
        """The model is committed: release its weights (deleted unless kept). Bytes freed."""
        with self._cond:
            self._ready.discard(model_id)
            self._claimed.discard(model_id)
        return self.cache.release(model_id)

    def close(self) -> None:
        """Stop the thread after the download in progress (its weights stay pinned until ``done``)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next(self) -> str | None:
        """The first wanted model not fetched yet (called with the condition held)."""
        return next((m for m in self._wanted if m not in self._ready and m not in self._claimed), None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and self._next() is None:
                    self._cond.wait()
                if self._closed:
                    return
                model_id = self._next()
                if model_id is None:
                    continue
                self._busy = model_id
            fetched: bool | None = None
            try:
                fetched = self._fetch(model_id)
            finally:
                with self._cond:
                    self._busy = None
                    if fetched is not False:
                        self._ready.add(model_id)
                    self._cond.notify_all()
            if fetched is False:
                wait_for_room(self.cache, ROOM_POLL_S)

    def _fetch(self, model_id: str) -> bool | None:
        """True: fetched; None: nothing to fetch (or failed, left to the model's own open); False: no room yet."""
        started = time.monotonic()
        try:
            request = hub_request(model_id)
            if request is None:
                return None
            path = self.cache.fetch(request, model_id, waiting=True)
            if path is None:
                return False
            open_headers(path)
        except (ScannerError, OSError, ValueError) as exc:
            self.stats.failed += 1
            logger.info("prefetch of %s failed (its scan will retry and report): %s", model_id, exc)
            with contextlib.suppress(Exception):
                self.cache.release(model_id)
            return None
        self.stats.fetched += 1
        self.stats.seconds += time.monotonic() - started
        return True
