"""The results store: one folder per scan, one Parquet file per model and table, written atomically.

The layout and the rule for which rows a scan holds are in ``scanner.storage_layout``; where the folder
lives (local path, POSIX mount, object store) in ``scanner.storage``; the one-writer lock in
``scanner.storage_lock``; compaction in ``scanner.compact``; checks and repair in ``scanner.storage_verify``.

Write order per model: ``spectra/``, ``layers/``, then ``models/`` last as the commit marker, each file
atomic (tmp + fsync + rename locally, one PUT on an object store), so a crash never leaves a half file under
a final name and a model counts as done only once its marker exists. Encoding: zstd everywhere, dictionary
encoding for strings only, BYTE_STREAM_SPLIT for the eigenvalue floats.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scanner import schema, storage_lock
from scanner.config import NOT_HASHED, RESULTS_REVISION, ScanConfig
from scanner.errors import SchemaError, StoreError
from scanner.records import LayerResult, ModelResult, Status
from scanner.storage import Storage, open_storage, pid_alive, tmp_writer
from scanner.storage_layout import (
    MARKER_COLUMNS,
    TABLES,
    Marker,
    ScanFiles,
    compacted_keys,
    read_markers,
    read_parquet,
    scan_files,
)

if TYPE_CHECKING:
    from scanner.scan import LayerEigenvalues

logger = logging.getLogger(__name__)

__all__ = ["TABLES", "ResultStore", "ResumePlan", "model_key", "verify", "write_parquet"]

KEY_SCHEME = 2  # 1: readable[:100] + 8 hex digits of SHA-256 (collides at scale); 2: readable[:40] + all 64
_SCAN_ID = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,127}$")
_KEY2 = re.compile(r"-[0-9a-f]{64}$")


def _readable(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("._")


def model_key(model_id: str) -> str:
    """The file stem of ``model_id``: a short readable prefix and the full SHA-256 of the id (64 hex digits).

    Characters outside ``[A-Za-z0-9._-]`` become ``_`` (``hf:org/name`` reads ``hf_org_name``), at most 40
    are kept; the 256-bit hash makes two ids share a key with probability ~n²/2²⁵⁷.
    """
    return f"{_readable(model_id)[:40]}-{hashlib.sha256(model_id.encode()).hexdigest()}"


def legacy_model_key(model_id: str) -> str:
    """Key scheme 1 (scans created before key scheme 2): 100 readable characters and 8 hex digits."""
    return f"{_readable(model_id)[:100]}-{hashlib.sha256(model_id.encode()).hexdigest()[:8]}"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def write_parquet(store: Storage, path: PurePath, table: pa.Table) -> None:
    """Write ``table`` atomically with zstd, string dictionaries and BYTE_STREAM_SPLIT floats in lists."""
    store.write_atomic(path, lambda handle: pq.write_table(table, handle, **parquet_options(table.schema)))


def parquet_options(arrow_schema: pa.Schema) -> dict[str, Any]:
    """The writer options of every results file (compression, dictionaries, float encodings)."""
    encodings = {f"{f.name}.list.element": "BYTE_STREAM_SPLIT" for f in arrow_schema
                 if pa.types.is_list(f.type) and pa.types.is_floating(f.type.value_type)}
    strings = [f.name for f in arrow_schema if pa.types.is_string(f.type)]
    return {"compression": "zstd", "use_dictionary": strings, "column_encoding": encodings or None}


@dataclass(frozen=True)
class ResumePlan:
    """What a run of a scan does with each requested model id (``ResultStore.resume_plan``).

    Attributes:
        todo: ids to scan, in the order given (new ones and redos).
        done: ids committed with this scan's config and their own id (skipped).
        redo: (id, reason) for the ids of ``todo`` that had a commit row that does not count.
    """

    todo: tuple[str, ...]
    done: tuple[str, ...]
    redo: tuple[tuple[str, str], ...]


class ResultStore:
    """Writes one scan's results under ``<root>/<scan_id>/``; safe to resume after a crash.

    ``root`` is a local path, a POSIX mount or an object-store URI (``scanner.storage.open_storage``).
    ``open_scan`` takes the scan lock (one writer per scan id); ``finish_scan`` or ``close`` give it back.
    """

    def __init__(self, root: str | os.PathLike[str] | Storage, scan_id: str) -> None:
        if not _SCAN_ID.match(scan_id):
            raise StoreError(
                f"scan_id must start with a letter and use only letters, digits, '.', '_' or '-'; got {scan_id!r}"
            )
        self.storage = open_storage(root)
        self.root = self.storage.root
        self.scan_id = scan_id
        self.scan_dir = self.root / scan_id
        self._config_hash: str | None = None
        self._key_scheme = KEY_SCHEME
        self._lock: storage_lock.ScanLock | None = None

    # -- scan manifest and lock ----------------------------------------------------------------------
    @property
    def manifest_path(self) -> PurePath:
        return self.scan_dir / "scan.json"

    def read_manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.storage.read_bytes(self.manifest_path))
        except FileNotFoundError as exc:
            raise StoreError(f"{self.manifest_path} does not exist; call open_scan() first") from exc
        except ValueError as exc:
            raise StoreError(f"{self.manifest_path} is not valid JSON ({exc}); restore or delete it") from exc

    def _write_manifest(self, manifest: Mapping[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
        self.storage.write_atomic(self.manifest_path, lambda handle: handle.write(text))

    def lock(self) -> storage_lock.ScanLock:
        """Hold the scan lock (re-entrant within this process); StoreError names another live writer."""
        if self._lock is None:
            self._lock = storage_lock.acquire(self.storage, self.scan_dir)
        return self._lock

    def close(self) -> None:
        """Give the scan lock back (no-op when not held)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def open_scan(
        self, config: ScanConfig, catalog_info: Mapping[str, Any], host_info: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Take the scan lock, then create ``scan.json`` (exclusive create) or validate it when resuming.

        Raises:
            StoreError: another writer holds the scan; or the scan was made with a different ``config_hash``
                or schema version; or ``scan.json`` is missing while committed rows of another config exist.
        """
        self.lock()
        try:
            return self._open_locked(config, catalog_info, host_info)
        except BaseException:
            self.close()
            raise

    def _open_locked(self, config: ScanConfig, catalog_info: Mapping[str, Any],
                     host_info: Mapping[str, Any]) -> dict[str, Any]:
        from scanner import __version__

        config_hash = config.config_hash()
        for table in TABLES:
            self.storage.makedirs(self.scan_dir / table)
        if not self.storage.exists(self.manifest_path):
            scheme = self._check_orphan_rows(config_hash)
            manifest: dict[str, Any] = {
                "scan_id": self.scan_id, "schema_version": schema.SCHEMA_VERSION, "scanner_version": __version__,
                "config": config.to_dict(), "config_hash": config_hash, "results_revision": RESULTS_REVISION,
                "catalog": dict(catalog_info),
                "host": dict(host_info), "started_at": _utcnow().isoformat(), "finished_at": None, "stats": None,
                "resumed_at": [], "key_scheme": scheme,
            }
            text = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
            if self.storage.create_exclusive(self.manifest_path, text):
                self._config_hash, self._key_scheme = config_hash, scheme
                return manifest
        manifest = self.read_manifest()
        if manifest.get("schema_version") != schema.SCHEMA_VERSION:
            raise StoreError(
                f"scan {self.scan_id!r} in {self.root} was written with schema version "
                f"{manifest.get('schema_version')!r}, this zooscan writes {schema.SCHEMA_VERSION}; files of "
                "one scan must share one schema. Start a new scan_id (old scans stay queryable)."
            )
        if manifest.get("config_hash") != config_hash:
            changed = changed_options(manifest.get("config"), config)
            if changed == []:  # the same options: an earlier revision's numbers
                raise StoreError(
                    f"scan {self.scan_id!r} in {self.root} was made by an earlier zooscan whose numbers differ "
                    f"for these options (results revision {manifest.get('results_revision', 1)}, this one "
                    f"{RESULTS_REVISION}); its rows cannot be resumed with this version's. Choose a new scan_id "
                    "(the old scan stays queryable)."
                )
            raise StoreError(
                f"scan {self.scan_id!r} in {self.root} was made with config_hash "
                f"{manifest.get('config_hash')!r}, but this run has {config_hash!r}"
                f"{' (' + '; '.join(changed) + ')' if changed else ''}. Resume with the same "
                "options, or choose a new scan_id for the new options."
            )
        manifest.setdefault("resumed_at", []).append(_utcnow().isoformat())
        self._write_manifest(manifest)
        self._config_hash, self._key_scheme = config_hash, int(manifest.get("key_scheme", 1))
        logger.info("resuming scan %s", self.scan_id)
        return manifest

    def _check_orphan_rows(self, config_hash: str) -> int:
        """Refuse to relabel committed rows of another config when ``scan.json`` is missing; the key scheme."""
        files = self.files()
        markers = [m for m in read_markers(self.storage, files).values() if not m.error]
        others = sorted({m.config_hash for m in markers} - {config_hash})
        if others:
            raise StoreError(
                f"scan {self.scan_id!r} in {self.root} has no scan.json but {len(markers)} committed model row(s) "
                f"made with config_hash {', '.join(others)} (this run: {config_hash}); restore scan.json, rerun "
                "with the options of those rows, or choose a new scan_id"
            )
        legacy = any(not _KEY2.search(m.key) for m in markers)
        return 1 if legacy else KEY_SCHEME

    def finish_scan(self, stats: Mapping[str, Any]) -> dict[str, Any]:
        """Record the end time and the run's counts in ``scan.json`` (atomically), then release the lock."""
        manifest = self.read_manifest()
        manifest["finished_at"] = _utcnow().isoformat()
        manifest["stats"] = dict(stats)
        manifest["models_committed"] = len(self.done_keys())
        self._write_manifest(manifest)
        self.close()
        return manifest

    # -- keys, files, resume -------------------------------------------------------------------------
    def key(self, model_id: str) -> str:
        """The file stem of ``model_id`` in this scan (key scheme 2, or 1 for scans created before it)."""
        return model_key(model_id) if self._key_scheme >= 2 else legacy_model_key(model_id)

    def path(self, table: str, key: str) -> PurePath:
        return self.scan_dir / table / f"{key}.parquet"

    def files(self) -> ScanFiles:
        return scan_files(self.storage, self.scan_dir)

    def done_keys(self) -> set[str]:
        """Keys with a ``models/`` marker or a row in a compacted ``models`` file (committed, any status)."""
        files = self.files()
        return set(files.live_keys) | compacted_keys(self.storage, files)

    def read_marker(self, model_id: str) -> Marker | None:
        """The live ``models/`` commit row of ``model_id`` (one file read, no listing), None when absent.

        For a read-back right after ``write_model``; an unreadable marker gives a Marker with ``error`` set.
        """
        path = self.path("models", self.key(model_id))
        if not self.storage.exists(path):
            return None
        try:
            rows = read_parquet(self.storage, path, MARKER_COLUMNS).to_pylist()
            row = rows[0] if len(rows) == 1 else {}
            return Marker(self.key(model_id), row["model_id"], row["config_hash"], row["status"])
        except (OSError, KeyError, pa.ArrowException) as exc:
            return Marker(self.key(model_id), error=f"{type(exc).__name__}: {exc}")

    def failed_keys(self) -> set[str]:
        """Keys whose commit row says "failed" or cannot be read (what ``--retry-failed`` redoes)."""
        markers = read_markers(self.storage, self.files()).values()
        return {m.key for m in markers if m.error or m.status == Status.FAILED.value}

    def resume_plan(self, model_ids: Iterable[str], retry_failed: bool = False) -> ResumePlan:
        """Which of ``model_ids`` (canonical ids) to scan and which are done, from the commit rows.

        A model is done when its commit row (its marker, or its compacted row) holds its own ``model_id``
        and this scan's ``config_hash`` (and is not failed, when ``retry_failed``). An unreadable marker,
        one of another id or another config means redo, never a crash.

        Raises:
            StoreError: two distinct ids map to one key (they would overwrite each other's files).
        """
        ids = list(dict.fromkeys(model_ids))
        keys: dict[str, str] = {}
        for model_id in ids:
            key = self.key(model_id)
            if keys.setdefault(key, model_id) != model_id:
                raise StoreError(f"model ids {keys[key]!r} and {model_id!r} map to one file key {key!r}; "
                                 "scan them under different scan ids")
        config_hash = self._config_hash or self.read_manifest().get("config_hash")
        markers = read_markers(self.storage, self.files(), keys)
        todo, done, redo = [], [], []
        for model_id in ids:
            marker = markers.get(self.key(model_id))
            reason = None if marker is None else _redo_reason(marker, model_id, config_hash, retry_failed)
            if marker is not None and reason is None:
                done.append(model_id)
                continue
            todo.append(model_id)
            if reason:
                redo.append((model_id, reason))
                logger.info("redo %s: %s", model_id, reason)
        return ResumePlan(tuple(todo), tuple(done), tuple(redo))

    # -- per-model files -----------------------------------------------------------------------------
    def write_model(
        self,
        model: ModelResult,
        layers: Sequence[LayerResult],
        spectra: Sequence[LayerEigenvalues],
        *,
        host: str,
        device: str,
        model_key: str | None = None,
    ) -> None:
        """Write spectra/ and layers/ first, then models/ last as the commit marker.

        Args:
            model: the model's outcome and aggregates.
            layers: its layer rows (may be empty for a failed model).
            spectra: one ``scanner.scan.LayerEigenvalues`` record per layer; empty writes no spectra file.
            host, device: where the model was scanned.
            model_key: file stem; default (and what resume and verify expect) ``self.key(model.model_id)``.
        """
        if self._config_hash is None:
            raise StoreError("call open_scan(config, ...) before write_model(); it fixes the config_hash")
        key = model_key or self.key(model.model_id)
        context = {"scan_id": self.scan_id, "model_key": key, "config_hash": self._config_hash}
        foreign = sorted({layer.model_id for layer in layers} - {model.model_id})
        if foreign:
            raise SchemaError(f"layers of {model.model_id!r} carry other model ids {foreign}; pass one model's layers")
        if spectra:
            rows = [schema.spectra_row(s.layer_index, s.layer_name, np.asarray(s.evals, float).tolist(), model_id=model.model_id, **context)
                    for s in spectra]
            write_parquet(self.storage, self.path("spectra", key), schema.to_table(rows, schema.SPECTRA))
        else:  # a redo without eigenvalues must not leave an earlier attempt's spectra beside the new rows
            self.storage.delete(self.path("spectra", key))
        layer_rows = [schema.layer_row(layer, **context) for layer in layers]
        write_parquet(self.storage, self.path("layers", key), schema.to_table(layer_rows, schema.LAYERS))
        row = schema.model_row(model, host=host, device=device, finished_at=_utcnow(), **context)
        write_parquet(self.storage, self.path("models", key), schema.to_table([row], schema.MODELS))
        logger.debug("committed %s (%d layers, %d spectra)", model.model_id, len(layers), len(spectra))

    def cleanup_tmp(self) -> list[PurePath]:
        """Remove tmp files of dead writers; returns what was removed.

        A tmp file names its writer (``<name>.tmp-<host>_<pid>_<uuid>``). It is removed when that writer is
        on this host and its pid is gone, or, for another host or an unnamed writer, when the file is older
        than this process's hold on the scan lock (a live writer would hold the lock). Object stores have no
        tmp files.
        """
        held_since = self._lock.acquired_at if self._lock else float("-inf")
        removed = []
        for entry in self.files().tmp:
            writer = tmp_writer(entry.name)
            if writer and writer[0] == socket.gethostname():
                dead = writer[1] != os.getpid() and not pid_alive(writer[1])
            else:
                dead = entry.mtime < held_since
            if dead:
                self.storage.delete(entry.path)
                removed.append(entry.path)
        if removed:
            logger.info("removed %d tmp files of dead writers from %s", len(removed), self.scan_dir)
        return removed


def _redo_reason(marker: Any, model_id: str, config_hash: str | None, retry_failed: bool) -> str | None:
    if marker.error:
        return f"unreadable commit row ({marker.error})"
    if marker.model_id != model_id:
        return f"its key holds another model id {marker.model_id!r}"
    if marker.config_hash != config_hash:
        return f"committed with config_hash {marker.config_hash!r}, this scan has {config_hash!r}"
    if retry_failed and marker.status == Status.FAILED.value:
        return "failed earlier (--retry-failed)"
    return None


def verify(root: str | os.PathLike[str] | Storage, **options: Any) -> Any:
    """``scanner.storage_verify.verify`` (kept here for callers that import it from the store)."""
    from scanner.storage_verify import verify as run

    return run(root, **options)


def changed_options(recorded: object, config: ScanConfig) -> list[str] | None:
    """The options that can change results and differ between a manifest's recorded ones and ``config``, as
    "name: value here, value in the scan" (None when the manifest records none); an option hashed only away
    from its default (``config.HASHED_UNLESS_DEFAULT``) that a scan.json written before it existed lacks counts
    as that default."""
    if not isinstance(recorded, dict):
        return None
    mine = json.loads(json.dumps({k: v for k, v in config.to_dict().items() if k not in NOT_HASHED}, default=str))
    recorded = {**config.implied_defaults(), **recorded}
    return [f"{k}: {v!r} here, {recorded[k]!r} in the scan" if k in recorded else f"{k}: not recorded in the scan"
            for k, v in mine.items() if k not in recorded or recorded[k] != v]
