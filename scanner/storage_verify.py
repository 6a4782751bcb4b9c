"""Check every results file of a root (``zooscan verify``) and move bad ones aside (``--repair``).

A file is bad when its footer cannot be read, or, in a scan of the current schema version with a
``scan.json``: its schema lacks a column of its table or has another type; a row's ``config_hash`` differs
from the manifest's; a row's ``model_key`` is not the key of its ``model_id`` (under the scan's key
scheme); or a per-model file holds rows of another key than its name. Scans without a readable
``scan.json`` (older tools) get the footer check only.

Repair, per scan and under its scan lock (refused while a scan runs): each bad file is moved to
``<scan>/quarantine/<table>/`` and the ``models/`` marker of its model is moved there too, so that the next
run of the scan redoes the model. A bad compacted file is moved aside and dropped from the compaction
manifest, so its models are redone (unless a newer per-model commit exists).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from scanner import schema, storage_lock
from scanner.errors import SchemaError, StoreError
from scanner.storage import Storage, open_storage
from scanner.storage_layout import (
    QUARANTINE,
    TABLES,
    compaction_manifest_path,
    manifest_of,
    read_compaction,
    scan_files,
)

logger = logging.getLogger(__name__)

_ROW_COLUMNS = ["model_key", "model_id", "config_hash"]


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` found (and, with ``repair``, did) under a results root.

    Attributes:
        checked: Parquet files opened (per-model and compacted).
        bad: (path, problem) for each torn, unreadable, mis-shaped or mislabelled file.
        tmp_files: leftover ``*.tmp-*`` files of interrupted writes (removed when a scan of them starts).
        uncommitted: (scan folder, key) with layers/spectra but no models/ marker (redone on resume).
        copies: (scan folder, scan_id in its scan.json) where they differ: a copied or renamed scan folder.
        quarantined: files moved to ``<scan>/quarantine/`` by ``repair``.
    """

    checked: int
    bad: tuple[tuple[str, str], ...]
    tmp_files: tuple[str, ...]
    uncommitted: tuple[tuple[str, str], ...]
    copies: tuple[tuple[str, str], ...] = ()
    quarantined: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.bad


def _file_problem(storage: Storage, path: PurePath, table: str, expect: dict[str, Any] | None) -> str | None:
    """Why ``path`` is bad, or None. ``expect``: config_hash, key function, and the file's key (per-model)."""
    try:
        handle = pq.ParquetFile(storage.arrow_path(path), filesystem=storage.arrow_fs)
        if expect is None:
            return None
        schema.check_schema(handle.schema_arrow, table)
        rows = handle.read(columns=_ROW_COLUMNS)
    except (OSError, pa.ArrowException, SchemaError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if table == "models" and expect["stem"] is not None and rows.num_rows != 1:
        return f"{rows.num_rows} rows in a per-model marker, expected 1"
    for key, model_id, config_hash in zip(*(rows.column(c).to_pylist() for c in _ROW_COLUMNS), strict=True):
        if config_hash != expect["config_hash"]:
            return f"row of {model_id!r} has config_hash {config_hash!r}, scan.json says {expect['config_hash']!r}"
        if key != expect["key"](model_id):
            return f"row of {model_id!r} has model_key {key!r}, expected {expect['key'](model_id)!r}"
        if expect["stem"] is not None and key != expect["stem"]:
            return f"row of {model_id!r} (key {key!r}) is in the file of key {expect['stem']!r}"
    return None


def _key_function(manifest: dict[str, Any]) -> Any:
    from scanner.store import legacy_model_key, model_key

    return model_key if int(manifest.get("key_scheme", 1)) >= 2 else legacy_model_key


def check_root(storage: Storage, root: str) -> None:
    """Refuse a results root that is missing, a file, or a scan folder itself (its parent is the root)."""
    if storage.is_local and not storage.is_dir(storage.root):
        if os.path.exists(root):
            raise StoreError(f"{root} is a file; pass the results root, the folder holding <scan_id>/ folders")
        raise StoreError(f"results folder {root} does not exist; pass the --results folder a scan wrote into")
    if storage.exists(storage.root / "scan.json"):
        raise StoreError(f"{root} is a scan folder; pass its parent as the results root and "
                         f"--scan-id {storage.root.name}")


def verify(root: str | os.PathLike[str] | Storage, *, scan_id: str | None = None, repair: bool = False) -> VerifyReport:
    """Check every file of every scan under ``root`` (or of ``scan_id``); see the module docstring.

    Raises:
        StoreError: ``root`` is missing or is a file, ``scan_id`` names no scan, or (``repair``) a scan
            is being written.
    """
    storage = open_storage(root)
    check_root(storage, os.fspath(root) if not isinstance(root, Storage) else str(root))
    scans = storage.list_dirs(storage.root)
    if scan_id is not None:
        if scan_id not in scans:
            raise StoreError(f"no scan {scan_id!r} under {storage}; scans there: {scans or 'none'}")
        scans = [scan_id]
    if not storage.is_local and not scans:
        raise StoreError(f"no scans under {storage}; pass the --results location a scan wrote into")
    checked, bad, tmp, uncommitted, copies, quarantined = 0, [], [], [], [], []
    for name in scans:
        scan_dir = storage.root / name
        manifest = manifest_of(storage, scan_dir)
        current = manifest is not None and manifest.get("schema_version") == schema.SCHEMA_VERSION
        if manifest is not None and manifest.get("scan_id") not in (None, name):
            copies.append((name, str(manifest.get("scan_id"))))
        files = scan_files(storage, scan_dir)
        found: list[tuple[str, PurePath, bool]] = []
        for table in TABLES:
            found += [(table, e.path, True) for e in files.live[table]]
            found += [(table, path, False) for path in files.compacted[table]]
        found += [(e.path.parent.name, e.path, True) for e in files.uncommitted]
        scan_bad = []
        for table, path, per_model in found:
            expect = None
            if current and manifest is not None:
                expect = {"config_hash": manifest.get("config_hash"), "key": _key_function(manifest),
                          "stem": path.stem if per_model else None}
            checked += 1
            problem = _file_problem(storage, path, table, expect)
            if problem:
                scan_bad.append((table, path, per_model, problem))
        bad += [(str(path), problem) for _, path, _, problem in scan_bad]
        tmp += [str(e.path) for e in files.tmp]
        uncommitted += sorted({(name, e.path.stem) for e in files.uncommitted})
        if repair and scan_bad:
            quarantined += _repair(storage, scan_dir, scan_bad)
    return VerifyReport(checked, tuple(bad), tuple(tmp), tuple(uncommitted), tuple(copies), tuple(quarantined))


def _repair(storage: Storage, scan_dir: PurePath, scan_bad: list[tuple[str, PurePath, bool, str]]) -> list[str]:
    """Move bad files and their models' markers to ``<scan>/quarantine/``; drop bad compacted files."""
    lock = storage_lock.acquire(storage, scan_dir)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    moved: list[str] = []
    try:
        def aside(path: PurePath, table: str) -> None:
            if storage.exists(path):
                target = scan_dir / QUARANTINE / table / f"{path.name}.{stamp}"
                storage.move(path, target)
                moved.append(str(path))

        bad_compacted = {str(path.relative_to(scan_dir)) for _, path, per_model, _ in scan_bad if not per_model}
        if bad_compacted:
            generation, listed = read_compaction(storage, scan_dir)
            kept = {t: [p for p in paths if p not in bad_compacted] for t, paths in listed.items()}
            body = json.dumps({"generation": generation, "files": kept}, indent=2).encode()
            storage.write_atomic(compaction_manifest_path(scan_dir), lambda handle: handle.write(body))
        for table, path, per_model, problem in scan_bad:
            logger.warning("quarantining %s: %s", path, problem)
            if per_model:
                aside(scan_dir / "models" / f"{path.stem}.parquet", "models")  # the marker first: redo the model
            aside(path, table if per_model else f"compacted-{table}")
    finally:
        lock.release()
    return moved
