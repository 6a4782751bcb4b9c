"""The rows of each scan as DuckDB SELECTs: local files through DuckDB's Parquet reader over explicit file
lists (no globs, so paths may hold ``*?[``), object stores through registered ``pyarrow.dataset`` objects (no
DuckDB extension download; any ``pyarrow.fs`` store).

For every scan folder and table, ``register_scans`` returns the SELECTs a view unions:

- the per-model files of committed models (``scanner.storage_layout``: keys with a ``models/`` marker;
  scans without ``scan.json``, written by older tools, contribute every file);
- the compacted files of the compaction manifest, minus rows whose model has a live marker (a redo after
  compaction supersedes the compacted rows).

Files that cannot be read are left out, with one warning naming them and ``zooscan verify --repair``:
locally, the Parquet tail (footer length and ``PAR1`` magic) of every file is checked, which catches torn,
truncated, empty and foreign files. Object stores are not probed per file (an object PUT is atomic, so a
writer never leaves a torn object; ``zooscan verify`` reads every footer there). A model whose marker is
unreadable is read from the compacted files if they hold it, else left out of every table.

Each row's ``scan_id`` is the scan's folder name, so a copied scan folder shows up as a second scan rather
than doubling the rows of the first; two folders holding one ``scan.json`` scan id are warned about.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from pathlib import PurePath

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from scanner import schema
from scanner.storage import Entry, Storage
from scanner.storage_layout import TABLES, manifest_of, scan_files

logger = logging.getLogger(__name__)

_MAGIC = b"PAR1"


def tail_ok(storage: Storage, entry: Entry) -> bool:
    """True when the file ends like a whole Parquet file: ``<footer length><PAR1>`` with a length that fits."""
    if entry.size < 12:
        return False
    try:
        tail = storage.read_tail(entry.path, entry.size, 8)
    except OSError:
        return False
    (footer,) = struct.unpack("<i", tail[:4])
    return tail[4:] == _MAGIC and 0 < footer <= entry.size - 12


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _source(con: duckdb.DuckDBPyConnection, storage: Storage, paths: Sequence[PurePath], table: str, name: str,
            homogeneous: bool) -> str:
    """A FROM item over ``paths``: DuckDB's reader over the explicit file list locally (one schema per scan
    of this version, ``union_by_name`` otherwise), or a registered Arrow dataset with the current schema on
    an object store (older files get NULLs for new columns)."""
    if storage.is_local:
        files = ", ".join(_sql_string(storage.arrow_path(p)) for p in paths)
        return f"read_parquet([{files}]{'' if homogeneous else ', union_by_name = true'})"
    con.register(name, ds.dataset([storage.arrow_path(p) for p in paths], schema=schema.SCHEMAS[table],
                                  format="parquet", filesystem=storage.arrow_fs))
    return name


def _readable(storage: Storage, entries: Sequence[Entry], skipped: list[str]) -> list[Entry]:
    if not storage.is_local:
        return list(entries)
    good: list[Entry] = []
    bad: list[Entry] = []
    for entry in entries:
        (good if tail_ok(storage, entry) else bad).append(entry)
    skipped.extend(str(e.path) for e in bad)
    return good


def _scan_selects(con: duckdb.DuckDBPyConnection, storage: Storage, number: int, name: str,
                  legacy: bool, homogeneous: bool, skipped: list[str]) -> dict[str, list[str]]:
    """Register one scan's datasets as ``_s<number>_…``; per table, its SELECTs."""
    files = scan_files(storage, storage.root / name)
    markers = _readable(storage, files.live["models"], skipped)
    live_keys = {e.path.stem for e in markers}
    label = _sql_string(name)
    selects: dict[str, list[str]] = {table: [] for table in TABLES}
    if live_keys:
        con.register(f"_s{number}_live", pa.table({"model_key": pa.array(sorted(live_keys), pa.string())}))
    for table in TABLES:
        if legacy:  # an older tool's scan without scan.json: every file
            found = [*files.live[table], *(e for e in files.uncommitted if e.path.parent.name == table)]
            paths = [e.path for e in _readable(storage, found, skipped)]
        elif table == "models":
            paths = [e.path for e in markers]
        else:
            found = [e for e in files.live[table] if e.path.stem in live_keys]
            paths = [e.path for e in _readable(storage, found, skipped)]
        if paths:
            source = _source(con, storage, paths, table, f"_s{number}_{table}", homogeneous)
            selects[table].append(f"SELECT * REPLACE ({label} AS scan_id) FROM {source}")
        if files.compacted[table]:
            source = _source(con, storage, files.compacted[table], table, f"_s{number}_{table}_c", True)
            where = f" WHERE model_key NOT IN (SELECT model_key FROM _s{number}_live)" if live_keys else ""
            selects[table].append(f"SELECT * REPLACE ({label} AS scan_id) FROM {source}{where}")
    return selects


def register_scans(con: duckdb.DuckDBPyConnection, storage: Storage, scans: Sequence[str]) -> dict[str, list[str]]:
    """Register each scan's datasets in ``con``; per table, the SELECTs whose union is the view."""
    selects: dict[str, list[str]] = {table: [] for table in TABLES}
    skipped: list[str] = []
    owners: dict[str, list[str]] = {}
    for number, name in enumerate(scans):
        manifest = manifest_of(storage, storage.root / name)
        if manifest is not None:
            owners.setdefault(str(manifest.get("scan_id", name)), []).append(name)
        homogeneous = manifest is not None and manifest.get("schema_version") == schema.SCHEMA_VERSION
        for table, parts in _scan_selects(con, storage, number, name, manifest is None, homogeneous,
                                          skipped).items():
            selects[table] += parts
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        logger.warning("left %d unreadable results file(s) out of the views: %s; run 'zooscan verify --results %s "
                       "--repair' to move them aside and redo their models", len(skipped), shown, storage)
    for scan_id, folders in owners.items():
        if len(folders) > 1:
            logger.warning("folders %s hold the same scan %r (a copy?); their rows are labelled by folder name, so "
                           "count one of them with --scan-id or move the copy out of %s", folders, scan_id, storage)
    return selects
