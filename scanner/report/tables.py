"""Read one scan folder into Arrow tables and derive the tables the report shows.

A scan folder is ``<results>/<scan_id>/`` with ``scan.json`` and ``{models,layers,spectra}/*.parquet``
(docs/decisions.md, "Results on disk"). Files with ``.tmp-`` in their name (interrupted writes) are ignored.
The per-layer fit records (``PowerLawFit``, ``MPFit``) are rebuilt from the flat ``layers`` columns so the
plots draw exactly what the scan fitted.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from scanner.errors import StoreError
from scanner.records import MPFit, PowerLawFit
from scanner.storage import TMP_MARK


@dataclass(frozen=True)
class ScanTables:
    """The three tables of one scan, its manifest, and optional catalog/experiment rows keyed by model_id."""

    scan_dir: Path
    manifest: dict[str, Any]
    models: pa.Table
    layers: pa.Table
    spectra: pa.Table | None
    catalog: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_folder(folder: Path) -> pa.Table | None:
    """All committed Parquet files of one table folder, concatenated (None when there are none)."""
    files = sorted(p for p in Path(folder).glob("*.parquet") if TMP_MARK not in p.name)
    if not files:
        return None
    return pa.concat_tables([pq.read_table(p) for p in files], promote_options="default")


def _read_csv_rows(paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for path in paths:
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                rows[row["model_id"]] = {k: _number(v) for k, v in row.items()}
    return rows


def _number(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text else value


def load_scan(scan_dir: Path, catalogs: Sequence[Path] = (), runs: Sequence[Path] = ()) -> ScanTables:
    """Load ``scan_dir`` plus catalog CSVs (model_id, family, top1, …) and experiment run CSVs (batch_size, …).

    Raises:
        StoreError: the folder has no ``models`` or ``layers`` Parquet files.
    """
    scan_dir = Path(scan_dir)
    models, layers = read_folder(scan_dir / "models"), read_folder(scan_dir / "layers")
    if models is None or layers is None:
        raise StoreError(f"{scan_dir} holds no committed models/ and layers/ Parquet files; pass a scan folder "
                         "<results>/<scan_id> that a scan has written")
    manifest_path = scan_dir / "scan.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    return ScanTables(scan_dir, manifest, models, layers, read_folder(scan_dir / "spectra"),
                      _read_csv_rows([Path(p) for p in catalogs]), _read_csv_rows([Path(p) for p in runs]))


def eigenvalues_by_layer(spectra: pa.Table | None) -> dict[tuple[str, int], NDArray[np.float64]]:
    """(model_id, layer_index) → eigenvalues (ascending, raw units)."""
    if spectra is None:
        return {}
    cols = spectra.select(["model_id", "layer_index", "eigenvalues"]).to_pydict()
    return {(m, i): np.asarray(ev, dtype=np.float64)
            for m, i, ev in zip(cols["model_id"], cols["layer_index"], cols["eigenvalues"], strict=True)}


def power_law_of(row: dict[str, Any]) -> PowerLawFit | None:
    """The ``PowerLawFit`` stored in a ``layers`` row (None when the layer has no fit)."""
    if row.get("alpha") is None:
        return None
    return PowerLawFit(alpha=row["alpha"], xmin=row["xmin"], xmax=row["xmax"], ks_distance=row["ks_distance"],
                       alpha_sigma=row["alpha_sigma"], n_tail=row["n_tail"] or 0, n_fingers=row["n_fingers"] or 0,
                       alpha_raw=row["alpha_raw"], method=row["fit_method"] or "robust",
                       reliable=bool(row["fit_reliable"]), reason=row["fit_reason"] or "")


def mp_of(row: dict[str, Any]) -> MPFit | None:
    """The ``MPFit`` stored in a ``layers`` row (None when the layer has no MP fit)."""
    if row.get("mp_scale") is None:
        return None
    return MPFit(scale=row["mp_scale"], lambda_minus=row["mp_lambda_minus"], lambda_plus=row["mp_lambda_plus"],
                 lambda_plus_tw=row["mp_lambda_plus_tw"], n_spikes=row["num_spikes"] or 0,
                 softrank=row["mp_softrank"], bulk_ks=row["mp_bulk_ks"], bulk_fraction=row["mp_bulk_fraction"],
                 q=row["mp_q"])


def models_with_catalog(tables: ScanTables) -> pa.Table:
    """``models`` with the catalog's family and top1 (and the experiment's batch_size/seed when known)."""
    rows = tables.models.to_pylist()
    for row in rows:
        entry = tables.catalog.get(row["model_id"], {})
        run = tables.runs.get(row["model_id"], {})
        row["family"] = entry.get("family") or run.get("family") or row["model_id"].split(":", 1)[0]
        top1 = entry.get("top1")
        if top1 is None and run.get("test_accuracy") is not None:
            top1 = 100.0 * float(run["test_accuracy"])
        row["top1"] = top1
        row["batch_size"] = run.get("batch_size")
        row["seed"] = run.get("seed")
    return pa.Table.from_pylist(rows)


def phase_counts(layers: pa.Table, group_by: str = "model_id") -> dict[str, dict[str, int]]:
    """group → {phase: number of OK layers}; layers without a phase are not counted."""
    out: dict[str, Counter[str]] = {}
    for row in layers.select([group_by, "phase", "status"]).to_pylist():
        if row["status"] == "ok" and row["phase"]:
            out.setdefault(str(row[group_by]), Counter())[row["phase"]] += 1
    return {k: dict(v) for k, v in out.items()}


PHASE_TABLE_COLUMNS = ("batch_size", "seed", "layer_name", "shape", "q", "alpha", "alpha_weighted",
                       "num_spikes", "mp_softrank", "stable_rank", "phase", "train_accuracy", "test_accuracy")


def batch_size_phase_table(tables: ScanTables, layer_kinds: Sequence[str] = ("linear",)) -> list[dict[str, Any]]:
    """One row per (run, layer of the given kinds): batch size, seed, α, spikes, soft rank, phase, accuracy.

    Sorted by decreasing batch size, then seed, then layer order; models absent from ``runs`` are left out.
    """
    out = []
    for row in tables.layers.to_pylist():
        run = tables.runs.get(row["model_id"])
        if run is None or row["kind"] not in layer_kinds or row["status"] != "ok":
            continue
        item = {k: row.get(k) for k in PHASE_TABLE_COLUMNS if k in row}
        item.update(batch_size=run["batch_size"], seed=run["seed"], shape="×".join(map(str, row["shape"])),
                    train_accuracy=run.get("train_accuracy"), test_accuracy=run.get("test_accuracy"),
                    layer_index=row["layer_index"])
        out.append(item)
    out.sort(key=lambda r: (-int(r["batch_size"]), int(r["seed"]), r["layer_index"]))
    return [{k: r.get(k) for k in PHASE_TABLE_COLUMNS} for r in out]


def write_rows_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Write dict rows as CSV (column order from the first row; floats with 4 significant digits)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows([{k: format_value(v) for k, v in r.items()} for r in rows])
    return path


def format_value(value: Any) -> str:
    """A table cell: None → "", floats with 4 significant digits, enums and others via str."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(getattr(value, "value", value))


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as a GitHub-flavoured Markdown table."""
    if not rows:
        return "(no rows)\n"
    cols = list(columns or rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(format_value(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
