"""``zooscan query`` and ``zooscan sql`` end to end on a small synthetic results folder."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from scanner.cli import main
from scanner.config import ScanConfig
from scanner.store import ResultStore, model_key
from tests._factories import failed_model, make_model


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    store = ResultStore(root, "s1")
    store.open_scan(ScanConfig(), {}, {})
    for seed, model_id in enumerate(["timm:resnet18.a1_in1k", "timm:resnet50.a1_in1k"]):
        model, layers, spectra = make_model(model_id, n_layers=4, seed=seed)
        store.write_model(model, layers, spectra, model_key=model_key(model_id), host="h", device="cpu")
    broken = failed_model("file:broken.pt")
    store.write_model(broken, [], [], model_key=model_key(broken.model_id), host="h", device="cpu")
    return root


def test_query_list(capsys) -> None:
    assert main(["query", "--list"]) == 0
    out = capsys.readouterr().out
    assert "metric_accuracy_correlation" in out and "min_models=5" in out


def test_query_csv_and_json(results, capsys) -> None:
    assert main(["query", "status_overview", "--results", str(results), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == '"level","status","why","n","example_model_id"'
    assert '"model","failed","SourceError",1,"file:broken.pt"' in lines
    assert main(["query", "rank_models", "--results", str(results), "--param", "metric=alpha_mean",
                 "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["rank_by_metric"] for r in rows] == [1, 2] and all(r["top1"] for r in rows)


def test_query_parquet_output(results, tmp_path) -> None:
    out = tmp_path / "q.parquet"
    assert main(["query", "phase_by_kind", "--results", str(results), "--format", "parquet",
                 "--output", str(out)]) == 0
    assert pq.read_table(out).column_names[:2] == ["kind", "phase"]
    assert main(["query", "phase_by_kind", "--results", str(results), "--format", "parquet"]) == 2


def test_query_errors(results, capsys) -> None:
    assert main(["query", "nope", "--results", str(results)]) == 1
    assert "available" in capsys.readouterr().err
    assert main(["query", "status_overview", "--results", str(results), "--param", "bogus=1"]) == 1
    assert main(["query", "status_overview"]) == 2


def test_sql_table_output(results, capsys) -> None:
    assert main(["sql", "SELECT status, count(*) AS n FROM models GROUP BY ALL ORDER BY status",
                 "--results", str(results)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["status", "n"] and out[2].split() == ["failed", "1"] and out[3].split() == ["ok", "2"]
    assert main(["sql", "SELECT * FROM no_such_view", "--results", str(results)]) == 1
    assert "no_such_view" in capsys.readouterr().err
