"""The Hugging Face hub, as zooscan talks to it: cache first, a fast probe, retries with backoff, one-line errors.

Every hub-backed model (``hf:`` repos, ``timm:`` pretrained weights) is a ``HubRequest``: a repo, a revision
and the files zooscan reads. ``fetch`` resolves it in this order:

1. The local cache (``local_files_only``): a cached model never touches the network. A cached branch
   (``main``) is not refreshed; pin ``@<commit>`` to scan an exact revision.
2. Offline (``HF_HUB_OFFLINE=1``): ``SourceError`` naming the cache folder and how to fill it.
3. One probe of ``HF_ENDPOINT`` (an HTTP HEAD of its root, ``probe_timeout_s``): an unreachable hub fails
   in seconds with a message naming ``HF_HUB_OFFLINE``, instead of huggingface_hub's own retries (a
   ``timm:`` id once waited 99 s with no output before failing). Any HTTP answer counts as reachable; the result is kept for 60 s.
4. A plan (``model_info`` with file sizes, or a HEAD per candidate file): what will be downloaded and how
   many bytes, so that the weight cache (``scanner.cache``) can make room first.
5. The download, ``tries`` attempts per call: HTTP 408/429/5xx and connection errors are retried after the
   server's ``Retry-After`` when it sends one, else after ``backoff_s · 2^k`` seconds (at most
   ``max_backoff_s``); huggingface_hub itself resumes a dropped body with a ranged GET. After the last try
   one line says what the hub answered, how often, and what to do.

``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` are read when a model is fetched (huggingface_hub reads them at import).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

from scanner.errors import SourceError

logger = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
PROBE_TTL_S = 60.0


class HubUnavailableError(SourceError):
    """The hub did not serve a model after every retry (408/429/5xx, dropped or refused connections, no
    answer to the probe): the hub's fault, not the model's, so a scan retries it later without counting it
    as one of the model's attempts."""


def hub_outage(error_class: str) -> bool:
    """True for the error class of ``HubUnavailableError`` (as a failed model's ``error_class`` carries it)."""
    return error_class == HubUnavailableError.__name__


@dataclass(frozen=True)
class HubRetry:
    """How hard zooscan tries the hub: attempts per call, backoff (seconds, doubling, capped), probe timeout."""

    tries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    probe_timeout_s: float = 5.0


@dataclass(frozen=True)
class HubRequest:
    """The files of one model on the hub.

    Attributes:
        repo_id: "org/name".
        revision: branch, tag or commit (None: main).
        patterns: for a snapshot, alternative pattern sets tried in order (the first set that matches a weight
            file wins: safetensors before pytorch_model.bin); empty for a single file.
        candidates: for a single file, the file names tried in order (the first the repo has wins).
    """

    repo_id: str
    revision: str | None = None
    patterns: tuple[tuple[str, ...], ...] = ()
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class HubPlan:
    """What a download of a ``HubRequest`` fetches: the commit, the file names and their total size in bytes."""

    repo_id: str
    commit: str
    files: tuple[str, ...]
    nbytes: int
    single: bool = False


@dataclass
class _Probe:
    lock: threading.Lock = field(default_factory=threading.Lock)
    results: dict[str, tuple[float, str]] = field(default_factory=dict)  # endpoint -> (time, "" or why not)


_PROBE = _Probe()


def endpoint() -> str:
    """The hub's base URL: ``HF_ENDPOINT`` when set, else huggingface_hub's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def offline() -> bool:
    """True when downloads are disabled (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``, as huggingface_hub sees it)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cache_root(cache_dir: str | None) -> Path:
    """The hub cache folder in use: ``cache_dir`` or huggingface_hub's (``HF_HUB_CACHE``, ``HF_HOME``/hub)."""
    from huggingface_hub import constants

    return Path(cache_dir or constants.HF_HUB_CACHE)


def not_cached_message(model_id: str, cache_dir: str | None, detail: str) -> str:
    """The error text for weights that are not cached while downloads are off (offline)."""
    return (f"{model_id}: weights are not in the Hugging Face cache {cache_root(cache_dir)} and the hub is "
            f"unreachable: downloads are off (HF_HUB_OFFLINE=1): {detail}. Fill the cache on a machine with access (`hf download <org/name>`, "
            "or run the scan there once) and copy it here, or point --cache-dir / HF_HUB_CACHE at it")


def probe(model_id: str, retry: HubRetry) -> None:
    """Fail fast when the hub does not answer: one HEAD of ``endpoint()`` within ``probe_timeout_s``.

    Raises:
        HubUnavailableError: no HTTP answer (DNS, refused, timeout); the message names HF_HUB_OFFLINE.
    """
    url = endpoint()
    now = time.monotonic()
    with _PROBE.lock:
        seen = _PROBE.results.get(url)
        if seen is None or now - seen[0] > PROBE_TTL_S:
            seen = (now, _answers(url, retry.probe_timeout_s))
            _PROBE.results[url] = seen
    if seen[1]:
        raise HubUnavailableError(f"{model_id}: the Hugging Face hub at {url} is unreachable ({seen[1]}); set "
                          "HF_HUB_OFFLINE=1 to scan from the local cache only, fix the network or HF_ENDPOINT, or "
                          "fill the cache elsewhere and point --cache-dir at it")


def _answers(url: str, timeout: float) -> str:
    """"" when ``url`` answers HTTP at all (any status), else a short reason."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/", method="HEAD"), timeout=timeout):
            return ""
    except urllib.error.HTTPError:
        return ""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"no answer within {timeout:g} s: {type(reason).__name__}: {reason}".rstrip(": ")


def forget_probes() -> None:
    """Drop remembered probe results (tests; a network that came back)."""
    with _PROBE.lock:
        _PROBE.results.clear()


def _http_status(exc: BaseException) -> tuple[int | None, float | None]:
    """(HTTP status, Retry-After seconds) of the first HTTP error in the exception's cause chain."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        response = getattr(current, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            value = (getattr(response, "headers", None) or {}).get("Retry-After", "")
            return status, float(value) if str(value).strip().replace(".", "", 1).isdigit() else None
        pending.extend((current.__cause__, current.__context__))
    return None, None


def _transient(exc: BaseException) -> bool:
    """A hub error worth another try: 408/429/5xx, a dropped or refused connection, a short body."""
    import httpx2
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError, GatedRepoError)):
        return False
    status, _ = _http_status(exc)
    if status is not None:
        return status in RETRY_STATUS
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return any(isinstance(e, (httpx2.TransportError, ConnectionError, TimeoutError)) or
               "Consistency check failed" in str(e) for e in chain)


def retrying(call: Callable[[], T], model_id: str, what: str, retry: HubRetry,
             sleep: Callable[[float], None] = time.sleep) -> T:
    """``call()`` with up to ``retry.tries`` attempts on transient hub errors (see the module docstring).

    Raises:
        HubUnavailableError: after the last attempt (one line: what, how often, the last answer, what to do).
        Exception: at once, an error that is not transient (unknown repo, revision or file, gated repo, 401/403).
    """
    started = time.monotonic()
    wait = retry.backoff_s
    for attempt in range(1, retry.tries + 1):
        try:
            return call()
        except SourceError:
            raise
        except Exception as exc:
            if not _transient(exc):
                raise
            status, retry_after = _http_status(exc)
            answer = f"HTTP {status}" if status else type(exc).__name__
            if attempt == retry.tries:
                fix = ("the hub is rate-limiting: set HF_TOKEN, lower the scan's concurrency or rerun later"
                       if status == 429 else "the hub or the network failed: rerun later (committed models are "
                       "skipped)")
                last = " ".join(str(exc).split())[:160]
                raise HubUnavailableError(f"{model_id}: {what} failed {retry.tries} times in "
                                  f"{time.monotonic() - started:.0f} s, last {answer} ({last}); {fix}") from exc
            delay = min(retry.max_backoff_s, retry_after if retry_after is not None else wait)
            logger.warning("%s: %s: %s, retry %d/%d in %.1f s", model_id, what, answer, attempt, retry.tries - 1,
                           delay)
            sleep(delay)
            wait = min(retry.max_backoff_s, wait * 2)
    raise AssertionError("unreachable")


def _revision(request: HubRequest) -> str:
    return request.revision or "main"


def cached(request: HubRequest, cache_dir: str | None) -> Path | None:
    """The cached snapshot folder (or file) of ``request``, without any network call; None when not cached."""
    from huggingface_hub import snapshot_download, try_to_load_from_cache
    from huggingface_hub.errors import LocalEntryNotFoundError

    if request.candidates:
        for name in request.candidates:
            found = try_to_load_from_cache(request.repo_id, name, cache_dir=cache_dir, revision=_revision(request))
            if isinstance(found, str):
                return Path(found)
        return None
    for patterns in request.patterns:
        try:
            folder = Path(snapshot_download(request.repo_id, revision=request.revision, cache_dir=cache_dir,
                                            allow_patterns=list(patterns), local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError):
            return None
        if any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")):
            return folder
    return None


def plan(request: HubRequest, model_id: str, retry: HubRetry) -> HubPlan:
    """What to download for ``request`` (commit, files, bytes), asked of the hub with retries.

    Raises:
        SourceError: unknown repo or revision, no weight file, or the hub failing after every try.
    """
    from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    base = endpoint()
    try:
        if request.candidates:
            for name in request.candidates:
                url = hf_hub_url(request.repo_id, name, revision=_revision(request), endpoint=base)
                try:
                    meta = retrying(partial(get_hf_file_metadata, url), model_id, f"HEAD {name}", retry)
                except EntryNotFoundError:
                    continue
                return HubPlan(request.repo_id, meta.commit_hash or _revision(request), (name,), meta.size or 0, True)
            raise SourceError(f"{model_id}: repo {request.repo_id} has none of {list(request.candidates)}")
        info = retrying(lambda: HfApi(endpoint=base).model_info(request.repo_id, revision=request.revision,
                                                                files_metadata=True),
                        model_id, "model info", retry)
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise SourceError(f"{model_id}: no such repo or revision on the hub at {base} ({type(exc).__name__})") from exc
    sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or ()}
    for patterns in request.patterns:
        names = tuple(sorted(n for n in sizes if any(fnmatch.fnmatch(n, p) for p in patterns)))
        if any(n.endswith((".safetensors", ".bin")) for n in names):
            return HubPlan(request.repo_id, info.sha or _revision(request), names, sum(sizes[n] for n in names))
    raise SourceError(f"{model_id}: the repo has no model*.safetensors or pytorch_model*.bin weights "
                      f"(files: {sorted(sizes)[:10]})")


def download(plan_: HubPlan, cache_dir: str | None, model_id: str, retry: HubRetry) -> Path:
    """Download the planned files into the cache (each with retries); the snapshot folder, or the single file."""
    from huggingface_hub import hf_hub_download

    base = endpoint()
    paths = [Path(retrying(partial(hf_hub_download, plan_.repo_id, name, revision=plan_.commit,
                                   cache_dir=cache_dir, endpoint=base),
                           model_id, f"download of {name}", retry))
             for name in plan_.files]
    if plan_.single:
        return paths[0]
    return paths[0].parents[len(Path(plan_.files[0]).parts) - 1]  # snapshots/<commit>/


def weight_files(path: Path) -> Sequence[Path]:
    """The safetensors files of a fetched snapshot folder or file (whose headers a prefetch opens)."""
    return [path] if path.is_file() else sorted(path.glob("*.safetensors"))
