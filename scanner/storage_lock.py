"""One writer per scan: an exclusive lock held for a whole run, refused to a second writer with one line.

Local folders and POSIX mounts: ``fcntl.flock`` on ``<scan>/.lock`` (released by the kernel when the holder
dies, so it never goes stale; on NFS the Linux client emulates it with a whole-file byte-range lock). The
holder writes its host, pid and start time into the file, for the refusal message.

Object stores have no lock primitive that ``pyarrow.fs`` exposes, so a candidate scheme is used, safe on
stores with strong read-after-write listing (S3 since 2020, GCS):

1. write a candidate object ``<scan>/.lock/<host>_<pid>_<uuid>.json`` (one PUT);
2. list ``<scan>/.lock/``; a candidate is *stale* when its last write is more than ``stale_s`` older than ours
   (both times are the store's clock, so the hosts' clocks do not matter); stale ones are deleted;
3. we hold the lock only if no other live candidate is listed; otherwise ours is deleted and we refuse.

Two writers can both refuse (each saw the other) but never both hold: whichever PUT came second lists the
first. The holder rewrites its candidate every ``heartbeat_s`` from a daemon thread, so a dead holder's lock
is taken over ``stale_s`` after its last heartbeat. A holder does not re-check that it still holds the lock, so
a holder stalled for longer than ``stale_s`` (300 s against a 30 s heartbeat) could be taken over while alive.

Within one process the lock is re-entrant (a refcount per scan), so opening a scan twice in one process, as
tests and the experiment runners do, does not refuse itself; a forked child is another writer.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Any

from scanner.errors import StoreError
from scanner.storage import Storage, writer_id

STALE_S = 300.0
HEARTBEAT_S = 30.0

_held: dict[tuple[int, str], ScanLock] = {}
_held_guard = threading.Lock()


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": datetime.now(timezone.utc).isoformat()}


def _describe(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "another writer"
    return f"pid {owner.get('pid')} on {owner.get('host')} (since {owner.get('since')})"


@dataclass
class ScanLock:
    """A held scan lock; ``release()`` gives it back (the last of this process's holders frees it)."""

    storage: Storage
    folder: PurePath
    acquired_at: float
    _handle: Any = None  # local: the open file holding the flock
    _candidate: PurePath | None = None  # object store: our candidate object
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _count: int = 1

    def release(self) -> None:
        with _held_guard:
            self._count -= 1
            if self._count > 0:
                return
            _held.pop((os.getpid(), str(self.folder)), None)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()  # a beat in flight must not re-create the candidate after the delete
        if self._handle is not None:
            self._handle.close()  # closing the descriptor drops the flock
            self._handle = None
        if self._candidate is not None:
            self.storage.delete(self._candidate)
            self._candidate = None


def acquire(storage: Storage, scan_dir: PurePath, *, stale_s: float = STALE_S,
            heartbeat_s: float = HEARTBEAT_S) -> ScanLock:
    """Hold the scan lock of ``scan_dir`` for this process, or raise StoreError naming the holder."""
    key = (os.getpid(), str(scan_dir))
    with _held_guard:
        lock = _held.get(key)
        if lock is not None:
            lock._count += 1
            return lock
    storage.makedirs(scan_dir)
    if storage.is_local:
        lock = _acquire_flock(storage, Path(scan_dir))
    else:
        lock = _acquire_object(storage, scan_dir, stale_s, heartbeat_s)
    with _held_guard:
        _held[key] = lock
    return lock


def _refusal(scan_dir: PurePath, holder: str, extra: str = "") -> StoreError:
    return StoreError(
        f"scan {scan_dir.name!r} in {scan_dir.parent} is being written by {holder}{extra}; wait for it to finish "
        "or use another --scan-id (one scan id is written by one driver at a time)"
    )


def _acquire_flock(storage: Storage, scan_dir: Path) -> ScanLock:
    import fcntl

    handle = open(scan_dir / ".lock", "a+b")  # noqa: SIM115 - held open for the lock's lifetime
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        try:
            owner = json.loads(handle.read() or b"null")
        except ValueError:
            owner = None
        handle.close()
        raise _refusal(scan_dir, _describe(owner)) from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(_owner()).encode())
    handle.flush()
    return ScanLock(storage, scan_dir, time.time(), _handle=handle)


def _acquire_object(storage: Storage, scan_dir: PurePath, stale_s: float, heartbeat_s: float) -> ScanLock:
    folder = scan_dir / ".lock"
    ours = folder / f"{writer_id()}_{uuid.uuid4().hex[:8]}.json"
    body = json.dumps(_owner()).encode()
    storage.write_atomic(ours, lambda handle: handle.write(body))
    entries = storage.list_files(folder)
    mine = next((e for e in entries if e.path == ours), None)
    now = mine.mtime if mine else time.time()
    others = []
    for entry in entries:
        if entry.path == ours:
            continue
        if now - entry.mtime > stale_s:
            storage.delete(entry.path)  # a holder silent for stale_s is dead: take over
        else:
            others.append(entry)
    if others:
        storage.delete(ours)
        try:
            owner = json.loads(storage.read_bytes(others[0].path))
        except (OSError, ValueError):
            owner = None
        age = now - others[0].mtime
        raise _refusal(scan_dir, _describe(owner), f", last heartbeat {age:.0f} s ago (taken over after {stale_s:.0f} s)")
    lock = ScanLock(storage, scan_dir, now, _candidate=ours)
    lock._thread = threading.Thread(target=_heartbeat, args=(lock, body, heartbeat_s), daemon=True,
                                    name=f"zooscan-lock-{scan_dir.name}")
    lock._thread.start()
    return lock


def _heartbeat(lock: ScanLock, body: bytes, every_s: float) -> None:
    while not lock._stop.wait(every_s):
        candidate = lock._candidate
        if candidate is None:
            return
        try:
            lock.storage.write_atomic(candidate, lambda handle: handle.write(body))
        except OSError:  # a transient store error; the next beat retries
            continue
