"""What a scan folder holds, read without DuckDB: per-model files, commit markers, compacted files.

Layout of ``<root>/<scan_id>/``::

    scan.json                              config, versions, catalog, start/end, key scheme
    .lock (local) or .lock/<writer>.json   the scan lock (``scanner.storage_lock``)
    models/<key>.parquet                   one row per model, written last: the commit marker
    layers/<key>.parquet                   one row per matrix
    spectra/<key>.parquet                  eigenvalues per layer (list<double>), when any
    compacted/manifest.json                {"generation": g, "files": {table: [relative paths]}} (``zooscan compact``)
    compacted/<table>/<g>-<n>.parquet      many models' rows in one file, listed in the manifest
    quarantine/…                           bad files moved aside by ``zooscan verify --repair``

Which rows a scan holds (the rule that views, resume and verify share): a model whose ``models/`` marker
exists is read from its per-model files (a redo after compaction supersedes its compacted rows); any other
model is read from the compacted files listed in the manifest. ``layers/``/``spectra/`` files without a
marker are uncommitted (an interrupted write) and are not read. Compacted files not in the manifest are
leftovers of an interrupted compaction and are not read either.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scanner.errors import StoreError
from scanner.storage import TMP_MARK, Entry, Storage

TABLES = ("models", "layers", "spectra")
COMPACTED = "compacted"
QUARANTINE = "quarantine"
MARKER_COLUMNS = ["model_key", "model_id", "config_hash", "status"]


@dataclass(frozen=True)
class Marker:
    """What a committed ``models/`` row says about its model (``error`` set when it could not be read)."""

    key: str
    model_id: str = ""
    config_hash: str = ""
    status: str = ""
    error: str = ""


@dataclass(frozen=True)
class ScanFiles:
    """The files of one scan, sorted into what is read and what is not (see the module docstring).

    Attributes:
        live: per table, the per-model files of keys that have a ``models/`` marker.
        live_keys: the keys with a ``models/`` marker.
        uncommitted: ``layers/``/``spectra/`` files whose key has no marker.
        tmp: leftover ``*.tmp-*`` files of interrupted local writes (scan, table and compacted folders).
        compacted: per table, the compacted files the manifest lists.
        generation: the compaction manifest's generation (0: never compacted).
    """

    scan_dir: PurePath
    live: Mapping[str, tuple[Entry, ...]]
    live_keys: frozenset[str]
    uncommitted: tuple[Entry, ...]
    tmp: tuple[Entry, ...]
    compacted: Mapping[str, tuple[PurePath, ...]]
    generation: int

    def count(self) -> int:
        return sum(len(v) for v in self.live.values()) + sum(len(v) for v in self.compacted.values())


def compaction_manifest_path(scan_dir: PurePath) -> PurePath:
    return scan_dir / COMPACTED / "manifest.json"


def read_compaction(storage: Storage, scan_dir: PurePath) -> tuple[int, dict[str, list[str]]]:
    """(generation, {table: [paths relative to the scan]}) of the compaction manifest; (0, {}) when none."""
    path = compaction_manifest_path(scan_dir)
    try:
        data = json.loads(storage.read_bytes(path))
    except FileNotFoundError:
        return 0, {}
    except ValueError as exc:
        raise StoreError(f"{path} is not valid JSON ({exc}); restore it from a backup or delete it and rescan") from exc
    return int(data["generation"]), {t: list(data["files"].get(t, [])) for t in TABLES}


def scan_files(storage: Storage, scan_dir: PurePath) -> ScanFiles:
    """List ``scan_dir`` once and sort its files (see :class:`ScanFiles`)."""
    listed = {table: storage.list_files(scan_dir / table) for table in TABLES}
    folders = [scan_dir, scan_dir / COMPACTED, *(scan_dir / COMPACTED / table for table in TABLES)]
    tmp = tuple(e for entries in listed.values() for e in entries if TMP_MARK in e.name)
    tmp += tuple(e for folder in folders for e in storage.list_files(folder) if TMP_MARK in e.name)
    parquet = {t: [e for e in entries if e.name.endswith(".parquet") and TMP_MARK not in e.name]
               for t, entries in listed.items()}
    live_keys = frozenset(e.path.stem for e in parquet["models"])
    live = {t: tuple(e for e in entries if e.path.stem in live_keys) for t, entries in parquet.items()}
    uncommitted = tuple(e for t in ("layers", "spectra") for e in parquet[t] if e.path.stem not in live_keys)
    generation, files = read_compaction(storage, scan_dir)
    compacted = {t: tuple(scan_dir / rel for rel in files.get(t, [])) for t in TABLES}
    return ScanFiles(scan_dir, live, live_keys, uncommitted, tmp, compacted, generation)


def read_parquet(storage: Storage, path: PurePath, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file of ``storage`` (all columns, or the ones named)."""
    return pq.read_table(storage.arrow_path(path), columns=columns, filesystem=storage.arrow_fs)


def read_markers(storage: Storage, files: ScanFiles, keys: Iterable[str] | None = None) -> dict[str, Marker]:
    """The commit rows of ``keys`` (default: all): live markers first, compacted rows for the others.

    A live marker that cannot be read gives a Marker with ``error`` set (never an exception), so that a
    torn file means "redo" to resume and "bad" to verify.
    """
    wanted = None if keys is None else set(keys)
    found: dict[str, Marker] = {}
    for entry in files.live["models"]:
        key = entry.path.stem
        if wanted is not None and key not in wanted:
            continue
        try:
            rows = read_parquet(storage, entry.path, MARKER_COLUMNS).to_pylist()
            if len(rows) != 1:
                raise ValueError(f"{len(rows)} rows, expected 1")
            found[key] = Marker(key, rows[0]["model_id"] or "", rows[0]["config_hash"] or "", rows[0]["status"] or "")
        except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
            found[key] = Marker(key, error=f"{type(exc).__name__}: {exc}")
    for path in files.compacted["models"]:
        table = read_parquet(storage, path, MARKER_COLUMNS)
        for row in table.to_pylist():
            key = row["model_key"]
            if key in files.live_keys or (wanted is not None and key not in wanted):
                continue
            found[key] = Marker(key, row["model_id"] or "", row["config_hash"] or "", row["status"] or "")
    return found


def compacted_keys(storage: Storage, files: ScanFiles) -> set[str]:
    """Model keys held by the compacted ``models`` files."""
    keys: set[str] = set()
    for path in files.compacted["models"]:
        keys.update(read_parquet(storage, path, ["model_key"]).column("model_key").to_pylist())
    return keys


def without_keys(table: pa.Table, keys: Iterable[str]) -> pa.Table:
    """Rows of ``table`` whose ``model_key`` is not in ``keys`` (superseded compacted rows dropped)."""
    keys = list(keys)
    if not keys:
        return table
    return table.filter(pc.invert(pc.is_in(table.column("model_key"), value_set=pa.array(keys, pa.string()))))


def manifest_of(storage: Storage, scan_dir: PurePath) -> dict[str, Any] | None:
    """``scan.json`` of a scan as a dict, or None when it is missing or unreadable."""
    try:
        data = json.loads(storage.read_bytes(scan_dir / "scan.json"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
