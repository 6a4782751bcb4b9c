"""Atomic Parquet results store: one folder per scan, one file per model and table.

Layout (DESIGN.md, "Results on disk")::

    <root>/<scan_id>/scan.json                       config, versions, catalog, start/end, host info
    <root>/<scan_id>/models/<model_key>.parquet      one row per model, written last (commit marker)
    <root>/<scan_id>/layers/<model_key>.parquet      one row per matrix
    <root>/<scan_id>/spectra/<model_key>.parquet     eigenvalues per layer (list<double>), when any

Every file is written to ``<name>.tmp-<uuid>`` in its final folder, fsynced, then ``os.replace``-d, so a
crash never leaves a half file under a final name; a model counts as done once its ``models/`` file exists
(resume). Nothing is appended in place. Encoding follows research/ray_duckdb.md §4.2: zstd everywhere,
dictionary encoding for strings only, BYTE_STREAM_SPLIT for the eigenvalue floats.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scanner import schema
from scanner.config import ScanConfig
from scanner.errors import SchemaError, StoreError
from scanner.records import LayerResult, ModelResult

logger = logging.getLogger(__name__)

TABLES = ("models", "layers", "spectra")
_TMP_MARK = ".tmp-"
_SCAN_ID = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,127}$")


def model_key(model_id: str) -> str:
    """A filesystem-safe, collision-free file stem for ``model_id``.

    Characters outside ``[A-Za-z0-9._-]`` become ``_`` (so ``hf:org/name`` reads ``hf_org_name``), and the
    first 8 hex digits of the id's SHA-256 are appended so that distinct ids never share a file.
    """
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("._")[:100]
    return f"{readable}-{hashlib.sha256(model_id.encode()).hexdigest()[:8]}"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file)`` on ``<path>.tmp-<uuid>``, fsync, then rename over ``path``."""
    tmp = path.with_name(f"{path.name}{_TMP_MARK}{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_parquet(path: Path, table: pa.Table) -> None:
    """Write ``table`` atomically with zstd, string dictionaries and BYTE_STREAM_SPLIT floats in lists."""
    strings = [f.name for f in table.schema if pa.types.is_string(f.type)]
    encodings = {
        f"{f.name}.list.element": "BYTE_STREAM_SPLIT"
        for f in table.schema
        if pa.types.is_list(f.type) and pa.types.is_floating(f.type.value_type)
    }
    _atomic_write(
        path,
        lambda handle: pq.write_table(
            table, handle, compression="zstd", use_dictionary=strings, column_encoding=encodings or None
        ),
    )


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` found under a results root.

    Attributes:
        checked: Parquet files whose footer was opened.
        bad: (path, problem) for each torn, unreadable or mis-shaped file.
        tmp_files: leftover ``*.tmp-*`` files of interrupted writes (harmless; ``cleanup_tmp`` removes them).
        uncommitted: (scan_id, model_key) with layers/spectra but no models/ marker (will be redone on resume).
    """

    checked: int
    bad: tuple[tuple[str, str], ...]
    tmp_files: tuple[str, ...]
    uncommitted: tuple[tuple[str, str], ...]

    @property
    def ok(self) -> bool:
        return not self.bad


class ResultStore:
    """Writes one scan's results under ``<root>/<scan_id>/``; safe to resume after a crash."""

    def __init__(self, root: str | os.PathLike[str], scan_id: str) -> None:
        if not _SCAN_ID.match(scan_id):
            raise StoreError(
                f"scan_id must start with a letter and use only letters, digits, '.', '_' or '-'; got {scan_id!r}"
            )
        self.root = Path(root)
        self.scan_id = scan_id
        self.scan_dir = self.root / scan_id
        self._config_hash: str | None = None

    # -- scan manifest -------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.scan_dir / "scan.json"

    def read_manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError as exc:
            raise StoreError(f"{self.manifest_path} does not exist; call open_scan() first") from exc
        except json.JSONDecodeError as exc:
            raise StoreError(f"{self.manifest_path} is not valid JSON ({exc}); restore or delete it") from exc

    def _write_manifest(self, manifest: Mapping[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
        _atomic_write(self.manifest_path, lambda handle: handle.write(text))

    def open_scan(
        self, config: ScanConfig, catalog_info: Mapping[str, Any], host_info: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Create the scan folder and ``scan.json``, or validate them when resuming.

        Raises:
            StoreError: the folder holds a scan made with a different ``config_hash`` or schema version
                (so every file of a scan has the same schema, which lets queries skip ``union_by_name``).
        """
        from scanner import __version__

        config_hash = config.config_hash()
        for table in TABLES:
            (self.scan_dir / table).mkdir(parents=True, exist_ok=True)
        if self.manifest_path.exists():
            manifest = self.read_manifest()
            if manifest.get("schema_version") != schema.SCHEMA_VERSION:
                raise StoreError(
                    f"scan {self.scan_id!r} in {self.root} was written with schema version "
                    f"{manifest.get('schema_version')!r}, this zooscan writes {schema.SCHEMA_VERSION}; files of "
                    "one scan must share one schema. Start a new scan_id (old scans stay queryable)."
                )
            if manifest.get("config_hash") != config_hash:
                raise StoreError(
                    f"scan {self.scan_id!r} in {self.root} was made with config_hash "
                    f"{manifest.get('config_hash')!r}, but this run has {config_hash!r}. Resume with the same "
                    "options, or choose a new scan_id for the new options."
                )
            manifest.setdefault("resumed_at", []).append(_utcnow().isoformat())
            logger.info("resuming scan %s (%d models done)", self.scan_id, len(self.done_keys()))
        else:
            manifest = {
                "scan_id": self.scan_id,
                "schema_version": schema.SCHEMA_VERSION,
                "scanner_version": __version__,
                "config": config.to_dict(),
                "config_hash": config_hash,
                "catalog": dict(catalog_info),
                "host": dict(host_info),
                "started_at": _utcnow().isoformat(),
                "finished_at": None,
                "stats": None,
                "resumed_at": [],
            }
        self._write_manifest(manifest)
        self._config_hash = config_hash
        return manifest

    def finish_scan(self, stats: Mapping[str, Any]) -> dict[str, Any]:
        """Record the end time and the run's counts in ``scan.json`` (atomically)."""
        manifest = self.read_manifest()
        manifest["finished_at"] = _utcnow().isoformat()
        manifest["stats"] = dict(stats)
        manifest["models_committed"] = len(self.done_keys())
        self._write_manifest(manifest)
        return manifest

    # -- per-model files -----------------------------------------------------------------------------
    def path(self, table: str, key: str) -> Path:
        return self.scan_dir / table / f"{key}.parquet"

    def done_keys(self) -> set[str]:
        """Model keys whose ``models/`` file (the commit marker) exists."""
        folder = self.scan_dir / "models"
        if not folder.is_dir():
            return set()
        return {p.stem for p in folder.iterdir() if p.suffix == ".parquet" and _TMP_MARK not in p.name}

    def write_model(  # noqa: PLR0913 - keyword-only context, as in scanner.schema.model_row
        self,
        model: ModelResult,
        layers: Sequence[LayerResult],
        spectra: Sequence[tuple[int, str, np.ndarray]],
        *,
        model_key: str,
        host: str,
        device: str,
    ) -> None:
        """Write spectra/ and layers/ first, then models/ last as the commit marker.

        Args:
            model: the model's outcome and aggregates.
            layers: its layer rows (may be empty for a failed model).
            spectra: (layer_index, layer_name, eigenvalues) per layer; empty writes no spectra file.
            model_key: file stem (see ``model_key()``).
            host, device: where the model was scanned.
        """
        if self._config_hash is None:
            raise StoreError("call open_scan(config, ...) before write_model(); it fixes the config_hash")
        context = {"scan_id": self.scan_id, "model_key": model_key, "config_hash": self._config_hash}
        foreign = sorted({layer.model_id for layer in layers} - {model.model_id})
        if foreign:
            raise SchemaError(f"layers of {model.model_id!r} carry other model ids {foreign}; pass one model's layers")
        if spectra:
            rows = [schema.spectra_row(i, name, ev, model_id=model.model_id, **context) for i, name, ev in spectra]
            write_parquet(self.path("spectra", model_key), schema.to_table(rows, schema.SPECTRA))
        else:  # a redo without eigenvalues must not leave an earlier attempt's spectra beside the new rows
            self.path("spectra", model_key).unlink(missing_ok=True)
        layer_rows = [schema.layer_row(layer, **context) for layer in layers]
        write_parquet(self.path("layers", model_key), schema.to_table(layer_rows, schema.LAYERS))
        row = schema.model_row(model, host=host, device=device, finished_at=_utcnow(), **context)
        write_parquet(self.path("models", model_key), schema.to_table([row], schema.MODELS))
        logger.debug("committed %s (%d layers, %d spectra)", model.model_id, len(layers), len(spectra))

    def cleanup_tmp(self) -> list[Path]:
        """Remove leftover ``*.tmp-*`` files of interrupted writes in this scan; returns what was removed."""
        removed = [p for table in TABLES for p in (self.scan_dir / table).glob(f"*{_TMP_MARK}*")]
        removed += list(self.scan_dir.glob(f"scan.json{_TMP_MARK}*"))
        for tmp in removed:
            tmp.unlink(missing_ok=True)
        if removed:
            logger.info("removed %d stale tmp files from %s", len(removed), self.scan_dir)
        return removed


def _manifest_version(scan_dir: Path) -> int | None:
    try:
        return json.loads((scan_dir / "scan.json").read_text()).get("schema_version")
    except (OSError, ValueError):
        return None


def verify(root: str | os.PathLike[str]) -> VerifyReport:
    """Open the footer of every results file under ``root`` and report torn or mis-shaped ones.

    A file is bad when its footer cannot be read, or (in a scan of the current schema version) its schema
    lacks a column of its table or has another type. DuckDB fails a
    whole query on a single torn file (research/ray_duckdb.md §4.4), so run this before querying a
    results folder that was copied or written by another tool.
    """
    root = Path(root)
    checked, bad, tmp_files, uncommitted = 0, [], [], []
    for scan_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        keys: dict[str, set[str]] = {}
        current = _manifest_version(scan_dir) == schema.SCHEMA_VERSION  # older scans: footers only
        for table in TABLES:
            for path in sorted((scan_dir / table).glob("*")):
                if _TMP_MARK in path.name:
                    tmp_files.append(str(path))
                    continue
                if path.suffix != ".parquet":
                    continue
                checked += 1
                keys.setdefault(table, set()).add(path.stem)
                try:
                    found = pq.read_schema(path)
                    if current:
                        schema.check_schema(found, table)
                except (OSError, pa.ArrowException, SchemaError) as exc:
                    bad.append((str(path), f"{type(exc).__name__}: {exc}"))
        started = keys.get("layers", set()) | keys.get("spectra", set())
        uncommitted += [(scan_dir.name, key) for key in sorted(started - keys.get("models", set()))]
    return VerifyReport(checked, tuple(bad), tuple(tmp_files), tuple(uncommitted))
