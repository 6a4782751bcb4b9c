"""queries/metric_accuracy_correlation.sql against scipy/numpy on seeded synthetic models (ties included)."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from scanner.query import run_query

METRICS = ("alpha_mean", "alpha_hat", "log_norm_mean", "log_spectral_norm_mean", "log_alpha_norm_mean",
           "stable_rank_mean")


def _connection(rows: list[dict]) -> duckdb.DuckDBPyConnection:
    """A connection whose ``models_with_accuracy`` view holds ``rows`` (other columns filled in)."""
    base = {"scan_id": "s", "dataset": "d", "status": "ok", **{m: None for m in METRICS}}
    table = pa.Table.from_pylist([{**base, **r} for r in rows])
    con = duckdb.connect()
    con.register("_rows", table)
    con.execute("CREATE VIEW models_with_accuracy AS SELECT * FROM _rows")
    return con


def _oracle(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    slope, intercept = np.polyfit(x, y, 1)
    residuals = y - (slope * x + intercept)
    return {
        "pearson": stats.pearsonr(x, y)[0],
        "spearman": stats.spearmanr(x, y)[0],
        "kendall_tau": stats.kendalltau(x, y)[0],  # tau-b
        "r2": stats.pearsonr(x, y)[0] ** 2,
        "rmse": float(np.sqrt(np.mean(residuals**2))),
        "slope": slope,
        "intercept": intercept,
    }


def _results(con, **params) -> dict[tuple[str, str], dict]:
    cursor = run_query(con, "metric_accuracy_correlation", params)
    names = [d[0] for d in cursor.description]
    return {(r["family"], r["metric"]): r for r in (dict(zip(names, row, strict=True)) for row in cursor.fetchall())}


def test_matches_scipy_on_seeded_families_with_ties() -> None:
    rng = np.random.default_rng(7)
    rows, truth = [], {}
    for family, n in (("a", 12), ("b", 30), ("c", 7)):
        top1 = np.round(rng.uniform(60, 85, n), 1)  # rounded: ties in accuracy
        alpha = np.round(4 - 0.05 * top1 + rng.normal(0, 0.3, n), 1)  # rounded: ties in the metric
        alpha_hat = -0.1 * top1 + rng.normal(0, 1, n)
        for i in range(n):
            rows.append({"family": family, "model_id": f"timm:{family}{i}", "top1": float(top1[i]),
                         "alpha_mean": float(alpha[i]), "alpha_hat": float(alpha_hat[i])})
        truth[(family, "alpha_mean")] = _oracle(alpha, top1)
        truth[(family, "alpha_hat")] = _oracle(alpha_hat, top1)
    got = _results(_connection(rows))
    assert set(got) == set(truth)  # metrics that are all NULL produce no rows
    for key, expected in truth.items():
        assert got[key]["n"] == {"a": 12, "b": 30, "c": 7}[key[0]]
        for stat, value in expected.items():
            assert got[key][stat] == pytest.approx(value, rel=1e-9, abs=1e-12), (key, stat)


def test_min_models_dataset_and_nulls_filter() -> None:
    rows = [{"family": "a", "model_id": f"timm:a{i}", "top1": 70.0 + i, "alpha_mean": float(i % 3)} for i in range(6)]
    rows.append({"family": "a", "model_id": "timm:a_null", "top1": 99.0, "alpha_mean": None})
    rows.append({"family": "a", "model_id": "timm:a_noacc", "top1": None, "alpha_mean": 1.0})
    rows.append({"family": "a", "model_id": "timm:a_failed", "top1": 50.0, "alpha_mean": 9.0, "status": "failed"})
    con = _connection(rows)
    assert _results(con)[("a", "alpha_mean")]["n"] == 6
    assert _results(con, min_models=7) == {}
    assert _results(con, dataset="other") == {}


def test_perfect_inverse_relation_gives_minus_one() -> None:
    rows = [{"family": "vgg", "model_id": f"timm:v{i}", "top1": 70.0 + i, "alpha_hat": 2.0 - 0.1 * i} for i in range(6)]
    result = _results(_connection(rows))[("vgg", "alpha_hat")]
    for stat in ("pearson", "spearman", "kendall_tau"):
        assert result[stat] == pytest.approx(-1.0)
    assert result["r2"] == pytest.approx(1.0) and result["rmse"] == pytest.approx(0.0, abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=5, max_size=25))
def test_rank_statistics_match_scipy_under_heavy_ties(pairs) -> None:
    x = np.array([p[0] for p in pairs], dtype=float)
    y = np.array([p[1] for p in pairs], dtype=float)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return  # correlations are undefined for a constant variable
    rows = [{"family": "f", "model_id": f"timm:m{i:03d}", "top1": y[i], "alpha_mean": x[i]} for i in range(len(x))]
    result = _results(_connection(rows))[("f", "alpha_mean")]
    assert result["spearman"] == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    assert result["kendall_tau"] == pytest.approx(stats.kendalltau(x, y)[0], abs=1e-12)
