"""Every column of every table survives the store: records with a distinct value in every field are written
through ``ResultStore.write_model`` and read back with pyarrow and with DuckDB (its ``read_parquet`` and the
``scanner.query`` views users query). Each column must hold the value of the record field it is declared to
come from, with the declared type, so a column reading the wrong field (``xmin`` ↔ ``xmax``) or a lossy type
fails here.

The expected values are taken from the records by a walk written in this file, not by ``scanner.schema``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scanner import schema
from scanner.config import ScanConfig
from scanner.records import (
    LayerResult,
    LayerSpectrum,
    ModelResult,
    ModelSummary,
    MPFit,
    NormMetrics,
    Phase,
    PhaseCall,
    PowerLawFit,
    RandomizationResult,
    Status,
)
from scanner.scan import LayerEigenvalues
from scanner.store import ResultStore

MODEL_ID = "file:roundtrip/model.safetensors"
SCAN_ID = "roundtrip"
CONFIG = ScanConfig(randomize=False, device="cpu")
CONTEXT_COLUMNS = {"schema_version", "scanner_version", "scan_id", "config_hash", "model_key", "host", "device",
                   "finished_at"}


class _Values:
    """Distinct, exactly representable values: every float field gets its own number, every int its own."""

    def __init__(self) -> None:
        self.k = 0

    def next(self) -> int:
        self.k += 1
        return self.k

    def fill(self, cls: type, **fixed: Any) -> Any:
        kwargs: dict[str, Any] = {}
        hints = {f.name: f.type for f in dataclasses.fields(cls)}
        for name, hint in hints.items():
            if name in fixed:
                continue
            text = str(hint)
            if text.startswith("float"):
                kwargs[name] = self.next() + 0.25  # 1.25, 2.25, ...: exact in binary, never an int
            elif text.startswith("int"):
                kwargs[name] = self.next() + 100
            elif text.startswith("str"):
                kwargs[name] = f"{name}-{self.next()}"
            elif text.startswith("bool"):
                kwargs[name] = bool(self.next() % 2)
            else:
                raise AssertionError(f"{cls.__name__}.{name}: {text} has no filler; add one to this test")
        return cls(**kwargs, **fixed)


def _layers() -> list[LayerResult]:
    v = _Values()
    spectrum = v.fill(
        LayerSpectrum,
        norms=v.fill(NormMetrics),
        power_law=v.fill(PowerLawFit, reliable=False, method="reference"),
        mp=v.fill(MPFit),
        randomization=v.fill(RandomizationResult),
        phase=v.fill(PhaseCall, phase=Phase.BULK_DECAY, very_heavy_tailed=True),
    )
    full = v.fill(LayerResult, model_id=MODEL_ID, shape=(64, 32, 3, 3), status=Status.OK, spectrum=spectrum)
    partial_spectrum = dataclasses.replace(spectrum, mp=None, randomization=None, phase=None,
                                           power_law=PowerLawFit(None, None, None, None, None, 0, reliable=False,
                                                                 reason="no tail"))
    partial = v.fill(LayerResult, model_id=MODEL_ID, shape=(10, 20), status=Status.OK, spectrum=partial_spectrum)
    skipped = LayerResult(MODEL_ID, 7, "skipped.weight", "norm", (5,), Status.SKIPPED, reason="not a matrix",
                          num_params=5)
    return [full, partial, skipped]


def _model() -> ModelResult:
    v = _Values()
    v.k = 1000
    counts = tuple((phase.value, i + 1) for i, phase in enumerate(Phase))  # 1..6: a swap of two is visible
    summary = v.fill(ModelSummary, phase_counts=counts)
    return v.fill(ModelResult, model_id=MODEL_ID, source="file", status=Status.OK, summary=summary)


def _expected(record: Any, path: tuple[str, ...]) -> Any:
    value = record
    for i, name in enumerate(path):
        if value is None:
            return None
        if i and path[i - 1] == "phase_counts":
            return dict(value)[name]
        value = getattr(value, name)
    if isinstance(value, enum.Enum):
        return value.value
    return list(value) if isinstance(value, tuple) else value


EVALS = [np.array([0.0, 1e-300, 0.5, 2.0 / 3.0, math.pi, 1e300]), np.linspace(0.1, 9.9, 50)]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, list[LayerResult], ModelResult]:
    root = tmp_path_factory.mktemp("results")
    layers, model = _layers(), _model()
    spectra = [LayerEigenvalues(layer.layer_index, layer.layer_name, ev) for layer, ev in zip(layers[:2], EVALS, strict=True)]
    store = ResultStore(root, SCAN_ID)
    store.open_scan(CONFIG, {}, {})
    try:
        store.write_model(model, layers, spectra, host="host-1", device="cuda")
    finally:
        store.close()
    return root, layers, model


def _file(root: Path, table: str) -> Path:
    files = sorted((root / SCAN_ID / table).glob("*.parquet"))
    assert len(files) == 1, files
    return files[0]


def _expected_rows(table: str, layers: list[LayerResult], model: ModelResult) -> list[dict[str, Any]]:
    if table == "layers":
        return [{c: _expected(layer, p) for c, p in schema.LAYER_PATHS.items()} for layer in layers]
    return [{c: _expected(model, p) for c, p in schema.MODEL_PATHS.items()}]


def _same(column: str, got: Any, want: Any) -> None:
    if isinstance(want, float):
        assert isinstance(got, float) and got == want, (column, got, want)  # exact: no float32 on the way
    elif isinstance(want, bool):
        assert got is want, (column, got, want)
    else:
        assert got == want and type(got) is type(want), (column, got, want)


def test_distinct_values_make_a_swap_visible():
    layers, model = _layers(), _model()
    values = [v for v in _expected_rows("layers", layers, model)[0].values() if isinstance(v, float)]
    assert len(values) == len(set(values)) >= 25
    model_values = [v for v in _expected_rows("models", layers, model)[0].values() if isinstance(v, int | float)]
    assert len(model_values) == len(set(model_values))


@pytest.mark.parametrize("table", ["layers", "models"])
def test_pyarrow_reads_every_column_back(written, table):
    root, layers, model = written
    read = pq.read_table(_file(root, table))
    assert read.schema.names == schema.SCHEMAS[table].names
    for field in schema.SCHEMAS[table]:
        assert read.schema.field(field.name).type.equals(field.type), field.name
    rows = read.to_pylist()
    expected = _expected_rows(table, layers, model)
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        for column, value in want.items():
            _same(column, got[column], value)
        assert set(got) - set(want) <= CONTEXT_COLUMNS


@pytest.mark.parametrize("table", ["layers", "models"])
def test_context_columns(written, table):
    root, _, _ = written
    rows = pq.read_table(_file(root, table)).to_pylist()
    for row in rows:
        assert row["schema_version"] == schema.SCHEMA_VERSION
        assert row["scan_id"] == SCAN_ID
        assert row["config_hash"] == CONFIG.config_hash()
        assert row["model_id"] == MODEL_ID
        assert row["model_key"] == _file(root, table).stem
    assert json.loads((root / SCAN_ID / "scan.json").read_text())["key_scheme"] == 2  # full-hash keys
    if table == "models":
        assert rows[0]["host"] == "host-1" and rows[0]["device"] == "cuda"
        assert isinstance(rows[0]["finished_at"], datetime) and rows[0]["finished_at"].utcoffset().total_seconds() == 0


def test_spectra_round_trip_exactly(written):
    root, layers, _ = written
    read = pq.read_table(_file(root, "spectra"))
    for field in schema.SPECTRA:
        assert read.schema.field(field.name).type.equals(field.type), field.name
    rows = read.to_pylist()
    assert [(r["layer_index"], r["layer_name"]) for r in rows] == [(x.layer_index, x.layer_name) for x in layers[:2]]
    for row, ev in zip(rows, EVALS, strict=True):
        assert row["num_evals"] == len(ev)
        assert row["eigenvalues"] == ev.tolist()  # bit-exact float64, in order


DUCKDB_TYPES = {
    pa.float64(): "DOUBLE", pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.string(): "VARCHAR",
    pa.bool_(): "BOOLEAN", pa.list_(pa.int64()): "BIGINT[]", pa.list_(pa.float64()): "DOUBLE[]",
    pa.timestamp("us", tz="UTC"): "TIMESTAMP WITH TIME ZONE",
}


def _duckdb_rows(con: duckdb.DuckDBPyConnection, source: str, table: str) -> tuple[dict[str, str], list[dict]]:
    types = {name: kind for name, kind, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    # timestamps as epoch microseconds: fetching TIMESTAMPTZ values into Python needs pytz
    columns = [f"epoch_us({f.name}) AS {f.name}" if pa.types.is_timestamp(f.type) else f.name
               for f in schema.SCHEMAS[table]]
    cursor = con.execute(f"SELECT {', '.join(columns)} FROM {source} ORDER BY 1, 2")
    names = [d[0] for d in cursor.description]
    return types, [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@pytest.mark.parametrize("how", ["read_parquet", "query_views"])
@pytest.mark.parametrize("table", ["layers", "models", "spectra"])
def test_duckdb_reads_every_column_back(written, table, how):
    root, layers, model = written
    if how == "read_parquet":
        con = duckdb.connect(":memory:")
        source = f"read_parquet('{_file(root, table)}')"
    else:
        from scanner.query import connect

        con = connect(root, scan_id=SCAN_ID)
        source = table
    types, rows = _duckdb_rows(con, source, table)
    for field in schema.SCHEMAS[table]:
        assert types[field.name] == DUCKDB_TYPES[field.type], (field.name, types[field.name])
    arrow_rows = pq.read_table(_file(root, table)).to_pylist()
    if table == "layers":
        rows.sort(key=lambda r: r["layer_index"])
        arrow_rows.sort(key=lambda r: r["layer_index"])
    assert len(rows) == len(arrow_rows)
    for got, want in zip(rows, arrow_rows, strict=True):
        for field in schema.SCHEMAS[table]:
            value = want[field.name]
            if isinstance(value, datetime):
                value = round(value.timestamp() * 1_000_000)
            _same(field.name, got[field.name], value)
    if table == "layers":  # and against the records themselves, not only against pyarrow
        expected = _expected_rows("layers", layers, model)
        for got, want in zip(rows, sorted(expected, key=lambda r: r["layer_index"]), strict=True):
            for column, value in want.items():
                _same(column, got[column], value)
