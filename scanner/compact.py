"""``zooscan compact``: merge a scan's per-model files into a few large Parquet files, atomically.

Steps, under the scan lock (so no scan and no other compaction writes meanwhile):

1. read every committed per-model file (a model whose files do not all read is left as it is, for
   ``zooscan verify --repair``) and the rows of the current compacted files that no live marker supersedes;
2. write them to new files ``compacted/<table>/<generation>-<n>.parquet`` (atomic each; row groups of up to
   ``ROW_GROUP_ROWS`` rows; a new file after ``FILE_BYTES`` bytes of input);
3. replace ``compacted/manifest.json`` (atomic): from now on the views read the new files;
4. delete the merged per-model files, each model's ``models/`` marker first, then the previous generation's
   files and any unlisted leftovers of an interrupted compaction.

A crash before step 3 leaves unlisted files that nothing reads; after it, a model whose marker still exists
is read from its per-model files and its compacted rows are skipped (``scanner.storage_layout``), so no
step loses or duplicates a row. Resume and verify read the compacted rows as commits, and a model redone
after compaction supersedes its compacted rows by its new marker.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from scanner import schema
from scanner.errors import StoreError
from scanner.storage import Storage
from scanner.storage_layout import (
    COMPACTED,
    TABLES,
    ScanFiles,
    compacted_keys,
    compaction_manifest_path,
    manifest_of,
    read_compaction,
    read_parquet,
    scan_files,
    without_keys,
)
from scanner.store import ResultStore, parquet_options

logger = logging.getLogger(__name__)

ROW_GROUP_ROWS = 16_384  # several row groups per file let DuckDB scan with all its threads
FILE_BYTES = 512 << 20  # input bytes per output file (spectra of large models can be GBs in all)


@dataclass(frozen=True)
class CompactReport:
    """What one compaction did: models merged, files before/after (per-model + compacted), generation."""

    scan_id: str
    models_merged: int
    models_left: tuple[str, ...]
    files_before: int
    files_after: int
    generation: int


def _readable_keys(storage: Storage, files: ScanFiles) -> tuple[set[str], list[str]]:
    """Live keys whose per-model files all open (footer read), and the keys left out."""
    bad = set()
    for table in TABLES:
        for entry in files.live[table]:
            try:
                pq.read_metadata(storage.arrow_path(entry.path), filesystem=storage.arrow_fs)
            except (OSError, pa.ArrowException):
                bad.add(entry.path.stem)
    return set(files.live_keys) - bad, sorted(bad)


def _batches(storage: Storage, files: ScanFiles, table: str, keys: set[str]) -> Iterator[tuple[pa.Table, int]]:
    """(rows, input bytes) of ``table``: compacted rows not merged anew, then the live files of ``keys``."""
    target = schema.SCHEMAS[table]
    for path in files.compacted[table]:
        handle = pq.ParquetFile(storage.arrow_path(path), filesystem=storage.arrow_fs)
        for group in range(handle.num_row_groups):
            rows = without_keys(handle.read_row_group(group), keys)
            yield rows.select(target.names).cast(target), handle.metadata.row_group(group).total_byte_size
    for entry in files.live[table]:
        if entry.path.stem in keys:
            yield read_parquet(storage, entry.path).select(target.names).cast(target), entry.size


def _write_table(storage: Storage, scan_dir: PurePath, table: str, generation: int,
                 parts: Iterator[tuple[pa.Table, int]]) -> list[str]:
    """Stream ``parts`` into ``compacted/<table>/<generation>-<n>-<id>.parquet``; their scan-relative paths."""
    target = schema.SCHEMAS[table]
    options = parquet_options(target)
    storage.makedirs(scan_dir / COMPACTED / table)
    written: list[str] = []
    exhausted = False
    while not exhausted:
        relative = f"{COMPACTED}/{table}/{generation:06d}-{len(written)}-{uuid.uuid4().hex[:8]}.parquet"
        count = 0

        def write(handle: Any) -> None:
            nonlocal exhausted, count
            pending, rows, size = [], 0, 0
            with pq.ParquetWriter(handle, target, **options) as writer:
                for part, nbytes in parts:
                    pending.append(part)
                    rows, size = rows + part.num_rows, size + nbytes
                    if rows >= ROW_GROUP_ROWS:
                        writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                        count, pending, rows = count + rows, [], 0
                    if size >= FILE_BYTES:
                        break
                else:
                    exhausted = True
                if rows:
                    writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                    count += rows

        storage.write_atomic(scan_dir / relative, write)
        if count:
            written.append(relative)
        else:
            storage.delete(scan_dir / relative)
    return written


def compact_scan(root: str | os.PathLike[str] | Storage, scan_id: str) -> CompactReport:
    """Merge the committed per-model files of ``<root>/<scan_id>`` into compacted files (module docstring).

    Raises:
        StoreError: the scan is being written (scan lock), does not exist, or has another schema version.
    """
    store = ResultStore(root, scan_id)
    storage, scan_dir = store.storage, store.scan_dir
    manifest = manifest_of(storage, scan_dir)
    if manifest is None:
        raise StoreError(f"no readable scan.json in {scan_dir}; compact only scans written by this zooscan")
    if manifest.get("schema_version") != schema.SCHEMA_VERSION:
        raise StoreError(f"scan {scan_id!r} has schema version {manifest.get('schema_version')!r}, this zooscan "
                         f"writes {schema.SCHEMA_VERSION}; compaction keeps one schema per scan, so it is refused")
    store.lock()
    try:
        store.cleanup_tmp()  # an interrupted compaction's or scan's tmp files (their writers are dead)
        files = scan_files(storage, scan_dir)
        before = files.count()
        keys, left = _readable_keys(storage, files)
        if not keys and files.generation:  # nothing new to merge: finish an interrupted cleanup only
            _remove_merged(storage, files, set(), read_compaction(storage, scan_dir)[1])
            return CompactReport(scan_id, 0, tuple(left), before, scan_files(storage, scan_dir).count(),
                                 files.generation)
        generation = files.generation + 1
        listed = {table: _write_table(storage, scan_dir, table, generation, _batches(storage, files, table, keys))
                  for table in TABLES}
        body = json.dumps({"generation": generation, "files": listed}, indent=2).encode()
        storage.write_atomic(compaction_manifest_path(scan_dir), lambda handle: handle.write(body))
        _remove_merged(storage, files, keys, listed)
        after = scan_files(storage, scan_dir).count()
        logger.info("compacted %s: %d models merged, %d -> %d files", scan_id, len(keys), before, after)
        return CompactReport(scan_id, len(keys), tuple(left), before, after, generation)
    finally:
        store.close()


def _remove_merged(storage: Storage, files: ScanFiles, keys: set[str], listed: dict[str, list[str]]) -> None:
    """Delete merged per-model files (marker first) and compacted files the new manifest does not list."""
    by_key: dict[str, list[PurePath]] = {}
    for table in ("models", "layers", "spectra"):  # models first: without its marker a model reads compacted
        for entry in files.live[table]:
            if entry.path.stem in keys:
                by_key.setdefault(entry.path.stem, []).append(entry.path)
    for paths in by_key.values():
        for path in paths:
            storage.delete(path)
    merged = keys | compacted_keys(storage, files)
    for entry in files.uncommitted:  # a merged model's files left by an interrupted deletion
        if entry.path.stem in merged:
            storage.delete(entry.path)
    keep = {files.scan_dir / rel for rels in listed.values() for rel in rels}
    for table in TABLES:
        for entry in storage.list_files(files.scan_dir / COMPACTED / table):
            if entry.path not in keep:
                storage.delete(entry.path)


def describe(report: CompactReport) -> str:
    """One line for the CLI."""
    left = f"; {len(report.models_left)} model(s) with unreadable files left for 'zooscan verify --repair'" \
        if report.models_left else ""
    return (f"compacted scan {report.scan_id}: {report.models_merged} model(s) merged, {report.files_before} -> "
            f"{report.files_after} files (generation {report.generation}){left}")
