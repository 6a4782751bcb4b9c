"""The Parquet schema of a results directory: three fixed tables, every column declared once.

``layers`` holds one row per weight matrix, ``models`` one row per model, ``spectra`` the eigenvalues of
each layer. The schema is fixed: scan options fill nullable columns and never add or remove columns;
a missing value is null (never -1), with ``status`` and ``reason`` saying why.

Each column is declared once in ``_LAYER_COLUMNS`` / ``_MODEL_COLUMNS`` / ``_SPECTRA_COLUMNS`` as
``(name, pyarrow type, record path, description)``. The record path names the field of
``scanner.records`` the value comes from (``("spectrum", "power_law", "alpha")`` reads
``LayerResult.spectrum.power_law.alpha``); a ``None`` anywhere along the path gives null. The row
builders below walk these paths, so the schema and the flattening cannot drift apart, and
``tests/test_schema.py`` asserts that every field of every record is mapped to a column.

Units follow ``scanner.records``: eigenvalues λ are squared singular values of W in raw scale; logs are
base 10; times are seconds.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa

from scanner.errors import SchemaError
from scanner.records import PHASE_ORDER, LayerResult, ModelResult

SCHEMA_VERSION = 2  # 2: layers gained dtype_stored, dequantized, note

Path = tuple[str, ...]
_F64, _I32, _I64, _STR, _BOOL = pa.float64(), pa.int32(), pa.int64(), pa.string(), pa.bool_()

# Context columns: values passed to the row builders, not read from a record.
_CTX = ("_ctx",)

_PROVENANCE: list[tuple[str, pa.DataType, Path, str]] = [
    ("schema_version", _I32, _CTX, "version of this Parquet schema (scanner.schema.SCHEMA_VERSION)"),
    ("scanner_version", _STR, _CTX, "zooscan version that wrote the row (scanner.__version__)"),
    ("scan_id", _STR, _CTX, "scan this row belongs to (the results sub-folder name)"),
    ("config_hash", _STR, _CTX, "ScanConfig.config_hash() of the options that produced the row"),
    ("model_id", _STR, ("model_id",), "model id with its source prefix, e.g. timm:resnet50.a1_in1k"),
    ("model_key", _STR, _CTX, "filesystem-safe key of the model, the stem of its Parquet files"),
]

_LAYER_COLUMNS: list[tuple[str, pa.DataType, Path, str]] = [
    *_PROVENANCE,
    ("layer_index", _I32, ("layer_index",), "position of the matrix in the model's traversal order, from 0"),
    ("layer_name", _STR, ("layer_name",), "name of the weight tensor in the checkpoint"),
    ("kind", _STR, ("kind",), "layer kind (linear, conv2d, embedding, attention_q, ...)"),
    ("shape", pa.list_(_I64), ("shape",), "shape of the original weight tensor"),
    ("status", _STR, ("status",), "ok | skipped | failed"),
    ("reason", _STR, ("reason",), "why the layer was skipped or failed; empty when ok"),
    ("num_params", _I64, ("num_params",), "number of values in the weight tensor"),
    ("seconds_esd", _F64, ("seconds_esd",), "time spent computing eigenvalues (s)"),
    ("seconds_fit", _F64, ("seconds_fit",), "time spent fitting and classifying (s)"),
    ("device", _STR, ("device",), "device that computed the eigenvalues (cpu or cuda)"),
    ("dtype_stored", _STR, ("dtype_stored",), "how the file stored the values: float32, float16, bfloat16, int8, uint8, ..."),
    ("dequantized", _BOOL, ("dequantized",), "true when quantised values were dequantised (scale, zero point) before the analysis"),
    ("note", _STR, ("note",), "how the tensor was cut (qkv, gates, groups) and what the reader assumed about the stored layout"),
    ("n", _I32, ("spectrum", "n"), "rows N of the oriented matrix W (N >= M)"),
    ("m", _I32, ("spectrum", "m"), "columns M of the oriented matrix W"),
    ("q", _F64, ("spectrum", "q"), "aspect ratio Q = N/M"),
    ("n_matrices", _I32, ("spectrum", "n_matrices"), "matrices pooled into this ESD (conv kernel positions)"),
    ("num_evals", _I32, ("spectrum", "num_evals"), "number of eigenvalues in the ESD"),
    ("lambda_max", _F64, ("spectrum", "norms", "lambda_max"), "largest eigenvalue = ||W||_2^2 (raw units)"),
    ("lambda_min", _F64, ("spectrum", "norms", "lambda_min"), "smallest eigenvalue (raw units)"),
    ("log_norm", _F64, ("spectrum", "norms", "log_norm"), "log10 sum(lambda) = log10 ||W||_F^2"),
    ("log_spectral_norm", _F64, ("spectrum", "norms", "log_spectral_norm"), "log10 lambda_max"),
    ("stable_rank", _F64, ("spectrum", "norms", "stable_rank"), "sum(lambda) / lambda_max"),
    ("entropy", _F64, ("spectrum", "norms", "entropy"), "matrix entropy -sum p ln p / ln R, in [0, 1]"),
    ("alpha_weighted", _F64, ("spectrum", "norms", "alpha_weighted"), "alpha-hat = alpha * log10 lambda_max"),
    ("log_alpha_norm", _F64, ("spectrum", "norms", "log_alpha_norm"), "log10 sum(lambda^alpha)"),
    ("rank_loss", _I32, ("spectrum", "norms", "rank_loss"), "eigenvalues at or below the numerical-rank tolerance (lambda_max*(max(N,M)*eps32)^2), over all pooled matrices"),
    ("n_near_zero", _I32, ("spectrum", "norms", "n_near_zero"), "eigenvalues in the near-zero peak: lambda <= 1e-6 * the 90th-percentile eigenvalue (rank collapse)"),
    ("alpha", _F64, ("spectrum", "power_law", "alpha"), "power-law exponent of the ESD tail (CSN MLE)"),
    ("xmin", _F64, ("spectrum", "power_law", "xmin"), "lower cutoff of the power-law tail (raw lambda)"),
    ("xmax", _F64, ("spectrum", "power_law", "xmax"), "largest eigenvalue used in the fit (raw lambda)"),
    ("ks_distance", _F64, ("spectrum", "power_law", "ks_distance"), "Kolmogorov-Smirnov distance D of the fit"),
    ("alpha_sigma", _F64, ("spectrum", "power_law", "alpha_sigma"), "standard error (alpha - 1)/sqrt(n_tail)"),
    ("n_tail", _I32, ("spectrum", "power_law", "n_tail"), "eigenvalues >= xmin used in the fit"),
    ("n_fingers", _I32, ("spectrum", "power_law", "n_fingers"), "top eigenvalues excluded as fingers"),
    ("alpha_raw", _F64, ("spectrum", "power_law", "alpha_raw"), "alpha before finger removal"),
    ("fit_method", _STR, ("spectrum", "power_law", "method"), "robust | reference"),
    ("fit_reliable", _BOOL, ("spectrum", "power_law", "reliable"), "false when the fit should not be trusted"),
    ("fit_reason", _STR, ("spectrum", "power_law", "reason"), "why the fit is unreliable; empty otherwise"),
    ("mp_scale", _F64, ("spectrum", "mp", "scale"), "fitted Marchenko-Pastur scale s = N*sigma^2, the mean eigenvalue of the bulk (raw lambda)"),
    ("mp_lambda_minus", _F64, ("spectrum", "mp", "lambda_minus"), "MP bulk lower edge (raw lambda)"),
    ("mp_lambda_plus", _F64, ("spectrum", "mp", "lambda_plus"), "MP bulk upper edge (raw lambda)"),
    ("mp_lambda_plus_tw", _F64, ("spectrum", "mp", "lambda_plus_tw"), "MP edge + Tracy-Widom margin"),
    ("num_spikes", _I32, ("spectrum", "mp", "n_spikes"), "eigenvalues above mp_lambda_plus_tw"),
    ("mp_softrank", _F64, ("spectrum", "mp", "softrank"), "MP soft rank lambda_plus / lambda_max"),
    ("mp_bulk_ks", _F64, ("spectrum", "mp", "bulk_ks"), "KS distance of the bulk to the fitted MP law"),
    ("mp_bulk_fraction", _F64, ("spectrum", "mp", "bulk_fraction"), "fraction of eigenvalues in the bulk"),
    ("mp_q", _F64, ("spectrum", "mp", "q"), "aspect ratio used by the MP fit"),
    ("rand_seed", _I64, ("spectrum", "randomization", "seed"), "seed of the element-wise shuffle"),
    ("rand_lambda_max", _F64, ("spectrum", "randomization", "lambda_max_rand"), "lambda_max of shuffled W"),
    ("rand_num_traps", _I32, ("spectrum", "randomization", "n_traps"), "correlation traps in shuffled W"),
    ("rand_distance", _F64, ("spectrum", "randomization", "rand_distance"), "JS distance ESD(W) vs ESD(shuffled)"),
    ("rand_softrank", _F64, ("spectrum", "randomization", "softrank"), "lambda_max_rand / lambda_max"),
    ("phase", _STR, ("spectrum", "phase", "phase"), "5+1 phase label (scanner.records.Phase value)"),
    ("phase_reason", _STR, ("spectrum", "phase", "reason"), "the rule that fired, in words"),
    ("very_heavy_tailed", _BOOL, ("spectrum", "phase", "very_heavy_tailed"), "alpha < 2 (atypical)"),
    ("phase_rule", _STR, ("spectrum", "phase", "rule"), "short id of the rule that fired"),
]

PHASE_COUNT_COLUMNS: dict[str, str] = {phase.value: f"n_{phase.value}" for phase in PHASE_ORDER}

_MODEL_COLUMNS: list[tuple[str, pa.DataType, Path, str]] = [
    *_PROVENANCE,
    ("source", _STR, ("source",), "source prefix of model_id (timm, hf, file, random)"),
    ("status", _STR, ("status",), "ok | skipped | failed"),
    ("reason", _STR, ("reason",), "why the model was skipped or failed; empty when ok"),
    ("error_class", _STR, ("error_class",), "exception class name when failed"),
    ("digest", _STR, ("digest",), "digest of the weights that were read"),
    ("num_params", _I64, ("num_params",), "parameters read from the checkpoint"),
    ("seconds_load", _F64, ("seconds_load",), "time to open the weight source (s); tensors are read lazily while layers are analysed, so reading large checkpoints counts in seconds_total, not here"),
    ("seconds_total", _F64, ("seconds_total",), "wall time of the whole model (s)"),
    ("attempts", _I32, ("attempts",), "attempts needed (1 = first try)"),
    ("host", _STR, _CTX, "host name of the worker"),
    ("device", _STR, _CTX, "device of the worker (cpu or cuda)"),
    ("finished_at", pa.timestamp("us", tz="UTC"), _CTX, "when the model row was written (UTC)"),
    ("n_layers", _I32, ("summary", "n_layers"), "layer rows of the model"),
    ("n_ok", _I32, ("summary", "n_ok"), "layers with status ok"),
    ("n_skipped", _I32, ("summary", "n_skipped"), "layers with status skipped"),
    ("n_failed", _I32, ("summary", "n_failed"), "layers with status failed"),
    ("n_alpha", _I32, ("summary", "n_alpha"), "layers with a reliable power-law fit (averaged below)"),
    ("alpha_mean", _F64, ("summary", "alpha_mean"), "mean alpha over reliable fits"),
    ("alpha_median", _F64, ("summary", "alpha_median"), "median alpha over reliable fits"),
    ("alpha_std", _F64, ("summary", "alpha_std"), "standard deviation of alpha over reliable fits"),
    ("alpha_hat", _F64, ("summary", "alpha_hat"), "mean alpha * log10 lambda_max (NC21 alpha-hat)"),
    ("log_alpha_norm_mean", _F64, ("summary", "log_alpha_norm_mean"), "mean log10 sum(lambda^alpha)"),
    ("log_norm_mean", _F64, ("summary", "log_norm_mean"), "mean log10 ||W||_F^2"),
    ("log_spectral_norm_mean", _F64, ("summary", "log_spectral_norm_mean"), "mean log10 lambda_max"),
    ("stable_rank_mean", _F64, ("summary", "stable_rank_mean"), "mean stable rank"),
    ("frac_alpha_lt2", _F64, ("summary", "frac_alpha_lt2"), "share of OK layers with a fitted alpha (reliable or not) that have alpha < 2"),
    ("frac_alpha_gt6", _F64, ("summary", "frac_alpha_gt6"), "share of OK layers with a fitted alpha (reliable or not) that have alpha > 6"),
    *[
        (column, _I32, ("summary", "phase_counts", phase), f"layers in phase {phase}")
        for phase, column in PHASE_COUNT_COLUMNS.items()
    ],
]

_SPECTRA_COLUMNS: list[tuple[str, pa.DataType, Path, str]] = [
    *_PROVENANCE,
    ("layer_index", _I32, _CTX, "layer_index of the layers row these eigenvalues belong to"),
    ("layer_name", _STR, _CTX, "layer_name of the layers row"),
    ("num_evals", _I32, _CTX, "number of eigenvalues"),
    ("eigenvalues", pa.list_(_F64), _CTX, "eigenvalues lambda = s^2 of W, ascending, raw units (float64)"),
]


def _schema(columns: list[tuple[str, pa.DataType, Path, str]], name: str) -> pa.Schema:
    fields = [pa.field(col, typ, nullable=True, metadata={"description": desc}) for col, typ, _, desc in columns]
    return pa.schema(fields, metadata={"zooscan.table": name, "zooscan.schema_version": str(SCHEMA_VERSION)})


LAYERS: pa.Schema = _schema(_LAYER_COLUMNS, "layers")
MODELS: pa.Schema = _schema(_MODEL_COLUMNS, "models")
SPECTRA: pa.Schema = _schema(_SPECTRA_COLUMNS, "spectra")
SCHEMAS: dict[str, pa.Schema] = {"layers": LAYERS, "models": MODELS, "spectra": SPECTRA}

LAYER_PATHS: dict[str, Path] = {col: path for col, _, path, _ in _LAYER_COLUMNS if path != _CTX}
MODEL_PATHS: dict[str, Path] = {col: path for col, _, path, _ in _MODEL_COLUMNS if path != _CTX}


def _plain(value: Any) -> Any:
    """Turn record values into Parquet-ready values (enums to their value, tuples to lists)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def _lookup(record: Any, path: Path) -> Any:
    value = record
    for i, name in enumerate(path):
        if value is None:
            return None
        if name in PHASE_COUNT_COLUMNS and path[i - 1] == "phase_counts":
            return dict(value).get(name, 0)
        value = getattr(value, name)
    return _plain(value)


def _check_phase_counts(result: ModelResult) -> None:
    if result.summary is None:
        return
    unknown = sorted({name for name, _ in result.summary.phase_counts} - set(PHASE_COUNT_COLUMNS))
    if unknown:
        raise SchemaError(
            f"phase_counts has unknown phase(s) {unknown}; valid phases are {sorted(PHASE_COUNT_COLUMNS)}. "
            "Add a Phase member and a column in scanner/schema.py together."
        )


def _context(scan_id: str, model_key: str, config_hash: str) -> dict[str, Any]:
    from scanner import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "scanner_version": __version__,
        "scan_id": scan_id,
        "config_hash": config_hash,
        "model_key": model_key,
    }


def layer_row(result: LayerResult, *, scan_id: str, model_key: str, config_hash: str) -> dict[str, Any]:
    """Flatten one ``LayerResult`` into a ``LAYERS`` row (a dict with exactly the schema's columns)."""
    row = _context(scan_id, model_key, config_hash)
    row.update({col: _lookup(result, path) for col, path in LAYER_PATHS.items()})
    return {name: row[name] for name in LAYERS.names}


def model_row(
    result: ModelResult,
    *,
    scan_id: str,
    model_key: str,
    config_hash: str,
    host: str,
    device: str,
    finished_at: datetime,
) -> dict[str, Any]:
    """Flatten one ``ModelResult`` into a ``MODELS`` row; phase counts become one column per Phase.

    Raises:
        SchemaError: ``summary.phase_counts`` names a phase that has no column.
    """
    _check_phase_counts(result)
    row = _context(scan_id, model_key, config_hash)
    row.update({"host": host, "device": device, "finished_at": finished_at})
    row.update({col: _lookup(result, path) for col, path in MODEL_PATHS.items()})
    return {name: row[name] for name in MODELS.names}


def spectra_row(
    layer_index: int,
    layer_name: str,
    eigenvalues: Sequence[float],
    *,
    model_id: str,
    scan_id: str,
    model_key: str,
    config_hash: str,
) -> dict[str, Any]:
    """One ``SPECTRA`` row: the eigenvalues of one layer (any float sequence or numpy array)."""
    values = [float(v) for v in eigenvalues]
    row = _context(scan_id, model_key, config_hash)
    row.update(
        {
            "model_id": model_id,
            "layer_index": layer_index,
            "layer_name": layer_name,
            "num_evals": len(values),
            "eigenvalues": values,
        }
    )
    return {name: row[name] for name in SPECTRA.names}


def to_table(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table with exactly ``schema`` from rows made by the builders above."""
    try:
        return pa.Table.from_pylist(list(rows), schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        table = schema.metadata.get(b"zooscan.table", b"?").decode()
        raise SchemaError(f"rows do not fit the {table!r} schema: {exc}. Build rows with scanner.schema.*_row.") from exc


def check_schema(found: pa.Schema, table: str) -> None:
    """Raise SchemaError when a file's schema lacks a column or has a different type than ``table``'s."""
    expected = SCHEMAS[table]
    problems = []
    for field in expected:
        index = found.get_field_index(field.name)
        if index < 0:
            problems.append(f"missing column {field.name!r}")
        elif not found.field(index).type.equals(field.type):
            problems.append(f"column {field.name!r} is {found.field(index).type}, expected {field.type}")
    if problems:
        raise SchemaError(f"{table} file does not match schema v{SCHEMA_VERSION}: " + "; ".join(problems))


def describe(table: str) -> list[tuple[str, str, str]]:
    """(column, type, description) for every column of ``table`` ('layers', 'models' or 'spectra')."""
    return [(f.name, str(f.type), f.metadata[b"description"].decode()) for f in SCHEMAS[table]]
