"""A local stand-in for the Hugging Face hub's HTTP API, for tests and the prefetch benchmark (loopback only).

It speaks the part of the protocol that ``huggingface_hub`` (2.x) uses to download model files:

    GET  /api/models/<repo>[/revision/<rev>][?blobs=True]   model info: ``sha``, ``siblings`` (sizes with blobs)
    GET  /api/models/<repo>/tree/<rev>[/<path>]               the file listing ``snapshot_download`` reads
    HEAD /<repo>/resolve/<rev>/<file>                         ETag, X-Repo-Commit, Content-Length, Accept-Ranges
    GET  /<repo>/resolve/<rev>/<file>                         the bytes; ``Range: bytes=N-[M]`` answers 206

Errors carry the hub's ``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound) so that the client maps
them to its exception classes. ETags are what the hub sends: the sha256 of an LFS file (here: files over 1 MB),
the git blob sha1 of a small one. Faults are injected per request by ``Fault`` rules (status with headers, or a
connection closed after N body bytes); ``bandwidth`` throttles every body byte through one shared token bucket,
as one link would. Every request is logged in ``requests`` (method, path, status, time).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

LFS_MIN_BYTES = 1 << 20
CHUNK = 64 * 1024


@dataclass
class Fault:
    """Answer ``times`` requests whose method and path match with a status (and headers), or drop the
    connection after ``drop_after`` body bytes. ``path`` is a regular expression searched in the URL path."""

    method: str
    path: str
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    drop_after: int | None = None
    times: int = 1

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and re.search(self.path, path) is not None


@dataclass
class HubFile:
    data: bytes
    etag: str
    lfs: bool


class HubRepo:
    """One model repo at one commit: file name -> bytes, with the hashes the hub would report."""

    def __init__(self, repo_id: str, files: dict[str, Path | bytes], commit: str | None = None) -> None:
        self.repo_id = repo_id
        self.files: dict[str, HubFile] = {}
        for name, content in sorted(files.items()):
            data = content if isinstance(content, bytes) else Path(content).read_bytes()
            lfs = len(data) >= LFS_MIN_BYTES
            etag = (hashlib.sha256(data).hexdigest() if lfs else
                    hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())
            self.files[name] = HubFile(data, etag, lfs)
        self.commit = commit or hashlib.sha1(("\n".join(f"{n}:{f.etag}" for n, f in self.files.items()) +
                                               repo_id).encode()).hexdigest()

    def sibling(self, name: str, blobs: bool) -> dict:
        item: dict = {"rfilename": name}
        if blobs:
            hub_file = self.files[name]
            item.update(size=len(hub_file.data), blobId=hub_file.etag[:40])
            if hub_file.lfs:
                item["lfs"] = {"sha256": hub_file.etag, "size": len(hub_file.data), "pointerSize": 134}
        return item

    def tree_entry(self, name: str) -> dict:
        hub_file = self.files[name]
        entry: dict = {"type": "file", "path": name, "size": len(hub_file.data), "oid": hub_file.etag[:40]}
        if hub_file.lfs:
            entry["lfs"] = {"oid": hub_file.etag, "size": len(hub_file.data), "pointerSize": 134}
        return entry


class Throttle:
    """One token bucket shared by all connections: at most ``rate`` bytes per second (None: unthrottled)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.lock = threading.Lock()
        self.next_free = time.monotonic()

    def take(self, nbytes: int) -> None:
        if not self.rate:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_free)
            self.next_free = start + nbytes / self.rate
            wait = self.next_free - now
        if wait > 0:
            time.sleep(wait)


class FakeHub:
    """``with FakeHub({...}) as hub:`` serves repos on ``hub.endpoint`` (http://127.0.0.1:<free port>)."""

    def __init__(self, repos: list[HubRepo], bandwidth: float | None = None) -> None:
        self.repos = {repo.repo_id: repo for repo in repos}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, int, float]] = []
        self.throttle = Throttle(bandwidth)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_fault(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    def arrive(self, method: str, path: str) -> int:
        """Log a request as it arrives (status 0 until answered), so a client that has its answer always finds
        its request in the log (logging after the answer raced with the client's next step)."""
        with self.lock:
            self.requests.append((method, path, 0, time.monotonic()))
            return len(self.requests) - 1

    def log(self, index: int, status: int) -> None:
        with self.lock:
            method, path, _, at = self.requests[index]
            self.requests[index] = (method, path, status, at)

    def hits(self, method: str, pattern: str) -> list[tuple[str, str, int, float]]:
        """Logged requests of ``method`` whose path matches ``pattern``."""
        with self.lock:
            return [r for r in self.requests if r[0] == method and re.search(pattern, r[1])]


_API = re.compile(r"^/api/models/(?P<repo>[^/]+(?:/[^/]+)??)(?:/revision/(?P<rev>[^/]+))?$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+|[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+|[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:  # noqa: C901 (one class per server, its routes)
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_HEAD(self) -> None:
            self.answer("HEAD")

        def do_GET(self) -> None:
            self.answer("GET")

        def answer(self, method: str) -> None:
            url = urlparse(self.path)
            path = unquote(url.path)
            index = self.index = hub.arrive(method, path)
            fault = hub.take_fault(method, path)
            if fault is not None and fault.status:
                self.send(fault.status, b'{"error": "injected"}', {"Content-Type": "application/json",
                                                                     **fault.headers}, method)
                return
            status = self.route(method, path, parse_qs(url.query), fault)
            hub.log(index, status)

        def send_response(self, code: int, message: str | None = None) -> None:
            hub.log(self.index, code)  # every answer's status, logged before the client can read it
            super().send_response(code, message)

        def send(self, status: int, body: bytes, headers: dict[str, str], method: str) -> None:
            self.send_response(status)
            for key, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(key, value)
            self.end_headers()
            if method == "GET":
                self.wfile.write(body)

        def error(self, status: int, code: str, method: str) -> int:
            self.send(status, json.dumps({"error": code}).encode(),
                      {"Content-Type": "application/json", "X-Error-Code": code}, method)
            return status

        def repo_at(self, repo_id: str, rev: str | None, method: str) -> HubRepo | int:
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self.error(404, "RepoNotFound", method)
            if rev not in (None, "main", repo.commit):
                return self.error(404, "RevisionNotFound", method)
            return repo

        def route(self, method: str, path: str, query: dict, fault: Fault | None) -> int:
            if match := _TREE.match(path):
                repo = self.repo_at(match["repo"], match["rev"], method)
                if isinstance(repo, int):
                    return repo
                prefix = (match["path"] or "").strip("/")
                entries = [repo.tree_entry(n) for n in repo.files if not prefix or n.startswith(prefix + "/")]
                self.send(200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, method)
                return 200
            if match := _API.match(path):
                repo = self.repo_at(match["repo"], match["rev"], method)
                if isinstance(repo, int):
                    return repo
                blobs = query.get("blobs", ["false"])[0].lower() == "true"
                info = {"id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.commit, "private": False,
                        "siblings": [repo.sibling(n, blobs) for n in repo.files]}
                self.send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, method)
                return 200
            if match := _RESOLVE.match(path):
                return self.resolve(match, method, fault)
            return self.error(404, "NotFound", method)

        def resolve(self, match: re.Match, method: str, fault: Fault | None) -> int:
            repo = self.repo_at(match["repo"], match["rev"], method)
            if isinstance(repo, int):
                return repo
            hub_file = repo.files.get(match["file"])
            if hub_file is None:
                self.send(404, b'{"error": "EntryNotFound"}', {"X-Error-Code": "EntryNotFound",
                                                               "X-Repo-Commit": repo.commit}, method)
                return 404
            data, start, status = hub_file.data, 0, 200
            headers = {"ETag": f'"{hub_file.etag}"', "X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes",
                       "Content-Type": "application/octet-stream"}
            if method == "GET" and (ranged := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))):
                start = int(ranged[1])
                end = int(ranged[2]) if ranged[2] else len(data) - 1
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data, status = data[start:end + 1], 206
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(key, value)
            self.end_headers()
            if method == "HEAD":
                return status
            limit = fault.drop_after if fault is not None and fault.drop_after is not None else None
            sent = 0
            for offset in range(0, len(data), CHUNK):
                chunk = data[offset:offset + CHUNK]
                if limit is not None and sent + len(chunk) > limit:
                    chunk = chunk[:max(0, limit - sent)]
                hub.throttle.take(len(chunk))
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return status
                sent += len(chunk)
                if limit is not None and sent >= limit:
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # the client sees the body end early
                    return -status
            return status

    return Handler
