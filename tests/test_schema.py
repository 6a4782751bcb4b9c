"""The Parquet schema: every record field has a column, rows match the schema, missing values are null."""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime, timezone

import numpy as np
import pytest

from scanner import records, schema
from scanner.errors import SchemaError
from scanner.records import LayerResult, ModelResult, Phase, Status
from tests._factories import failed_model, make_layer, make_model

CTX = {"scan_id": "s1", "model_key": "k", "config_hash": "abc"}
MODEL_CTX = {**CTX, "host": "h", "device": "cpu", "finished_at": datetime(2026, 1, 1, tzinfo=timezone.utc)}


def _record_class(annotation: object) -> type | None:
    """The record dataclass inside an annotation such as ``MPFit | None``, else None."""
    members = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    found = [m for m in members if dataclasses.is_dataclass(m) and m.__module__ == records.__name__]
    return found[0] if found else None


def _leaf_paths(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        nested = _record_class(hints[field.name])
        if nested is not None:
            paths += _leaf_paths(nested, (*prefix, field.name))
        else:
            paths.append((*prefix, field.name))
    return paths


@pytest.mark.parametrize(("cls", "mapped"), [(LayerResult, schema.LAYER_PATHS), (ModelResult, schema.MODEL_PATHS)])
def test_every_record_field_has_a_column(cls: type, mapped: dict[str, tuple[str, ...]]) -> None:
    paths = set(mapped.values())
    for path in _leaf_paths(cls):
        if path[-1] == "phase_counts":  # one column per Phase
            assert {(*path, p.value) for p in Phase} <= paths
        else:
            assert path in paths, f"{cls.__name__}.{'.'.join(path)} has no column in scanner/schema.py"


def test_every_mapped_path_exists_in_the_records() -> None:
    leaves = set(_leaf_paths(LayerResult)) | set(_leaf_paths(ModelResult))
    for path in [*schema.LAYER_PATHS.values(), *schema.MODEL_PATHS.values()]:
        assert path in leaves or path[:-1] in {p for p in leaves if p[-1] == "phase_counts"}, path


def test_columns_are_unique_and_described() -> None:
    for table, sch in schema.SCHEMAS.items():
        assert len(set(sch.names)) == len(sch.names), table
        for name, _, description in schema.describe(table):
            assert description.strip(), f"{table}.{name} has no description"
        for required in ("scan_id", "model_id", "model_key", "schema_version", "scanner_version", "config_hash"):
            assert required in sch.names


def test_layer_row_has_exactly_the_schema_columns_and_the_record_values() -> None:
    layer, _ = make_layer("timm:a", 3, np.random.default_rng(0))
    row = schema.layer_row(layer, **CTX)
    assert list(row) == schema.LAYERS.names
    spectrum = layer.spectrum
    assert row["alpha"] == spectrum.power_law.alpha
    assert row["ks_distance"] == spectrum.power_law.ks_distance
    assert row["mp_softrank"] == spectrum.mp.softrank
    assert row["num_spikes"] == spectrum.mp.n_spikes
    assert row["phase"] == spectrum.phase.phase.value
    assert row["status"] == "ok" and row["shape"] == [32, 16]
    assert row["schema_version"] == schema.SCHEMA_VERSION and row["scan_id"] == "s1"
    table = schema.to_table([row], schema.LAYERS)
    assert table.schema.equals(schema.LAYERS) and table.num_rows == 1


def test_options_fill_nullable_columns_never_sentinels() -> None:
    rng = np.random.default_rng(1)
    bare, _ = make_layer("timm:a", 0, rng, with_mp=False, with_rand=False, with_phase=False)
    skipped, _ = make_layer("timm:a", 1, rng, status=Status.SKIPPED)
    full, _ = make_layer("timm:a", 2, rng)
    rows = [schema.layer_row(r, **CTX) for r in (bare, skipped, full)]
    assert [list(r) for r in rows] == [schema.LAYERS.names] * 3  # same columns whatever the options
    for column in ("mp_softrank", "num_spikes", "rand_distance", "phase", "phase_reason"):
        assert rows[0][column] is None
    from_spectrum = [c for c, path in schema.LAYER_PATHS.items() if path[0] == "spectrum"]
    assert len(from_spectrum) > 30
    assert all(rows[1][c] is None for c in from_spectrum)
    assert rows[1]["reason"] == "synthetic skipped"
    assert -1 not in [v for r in rows for v in r.values() if isinstance(v, int) and not isinstance(v, bool)]


def test_model_row_flattens_summary_and_phase_counts() -> None:
    model, _, _ = make_model("timm:b", n_layers=7, seed=2)
    row = schema.model_row(model, **MODEL_CTX)
    assert list(row) == schema.MODELS.names
    counts = dict(model.summary.phase_counts)
    for phase, column in schema.PHASE_COUNT_COLUMNS.items():
        assert row[column] == counts.get(phase, 0)
    assert row["alpha_hat"] == model.summary.alpha_hat and row["n_ok"] == model.summary.n_ok
    failed = schema.model_row(failed_model("file:x.pt"), **MODEL_CTX)
    assert failed["alpha_mean"] is None and failed["n_random_like"] is None and failed["status"] == "failed"
    schema.to_table([row, failed], schema.MODELS)


def test_unknown_phase_in_counts_is_refused() -> None:
    model, _, _ = make_model("timm:b", n_layers=3)
    bad = dataclasses.replace(model, summary=dataclasses.replace(model.summary, phase_counts=(("typo", 1),)))
    with pytest.raises(SchemaError, match="typo"):
        schema.model_row(bad, **MODEL_CTX)


def test_spectra_row_and_schema_check() -> None:
    evals = np.array([0.5, 1.0, 2.0])
    row = schema.spectra_row(4, "w", evals, model_id="timm:c", **CTX)
    assert row["eigenvalues"] == [0.5, 1.0, 2.0] and row["num_evals"] == 3
    table = schema.to_table([row], schema.SPECTRA)
    schema.check_schema(table.schema, "spectra")
    with pytest.raises(SchemaError, match="eigenvalues"):
        schema.check_schema(table.drop_columns(["eigenvalues"]).schema, "spectra")
