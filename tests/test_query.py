"""DuckDB views over a results folder and every SQL file of queries/ on a synthetic scan."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scanner import query
from scanner.config import ScanConfig
from scanner.errors import QueryError, StoreError
from scanner.store import ResultStore, model_key
from tests._factories import failed_model, make_model

MODELS = ["timm:resnet18.a1_in1k", "timm:resnet34.a1_in1k", "timm:resnet50.a1_in1k", "timm:resnet101.a1h_in1k",
          "timm:resnet152.a1h_in1k", "timm:vit_base_patch16_224.augreg_in21k_ft_in1k"]


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    results = ResultStore(root, "s1")
    results.open_scan(ScanConfig(), {}, {})
    written = {}
    for seed, model_id in enumerate(MODELS):
        model, layers, spectra = make_model(model_id, n_layers=8, seed=seed)
        results.write_model(model, layers, spectra, model_key=model_key(model_id), host="h", device="cpu")
        written[model_id] = (model, layers)
    broken = failed_model("file:broken.pt")
    results.write_model(broken, [], [], model_key=model_key(broken.model_id), host="h", device="cpu")
    return root, written


@pytest.fixture(scope="module")
def con(scan):
    return query.connect(scan[0], threads=1)


def test_views_hold_what_was_written(con, scan) -> None:
    _, written = scan
    assert con.execute("SELECT count(*) FROM models").fetchall()[0][0] == len(MODELS) + 1
    n_layers = sum(len(layers) for _, layers in written.values())
    assert con.execute("SELECT count(*) FROM layers").fetchall()[0][0] == n_layers
    assert con.execute("SELECT count(*) FROM spectra").fetchall()[0][0] == n_layers


def test_accuracy_is_joined_from_the_catalog(con) -> None:
    from scanner.catalog import load_catalog

    top1 = {e.model_id: e.top1 for e in load_catalog("timm_imagenet")}
    rows = con.execute("SELECT model_id, top1, family FROM models_with_accuracy WHERE model_id LIKE 'timm:%'").fetchall()
    assert len(rows) == len(MODELS)
    for model_id, got, family in rows:
        assert got == top1[model_id] and family in ("resnet", "vit")


def test_empty_results_folder_gives_empty_views(tmp_path) -> None:
    empty = query.connect(tmp_path)
    for view in ("layers", "models", "spectra", "models_with_accuracy"):
        assert empty.execute(f"SELECT count(*) FROM {view}").fetchall()[0][0] == 0
    for info in query.list_queries():
        assert query.run_query(empty, info.name).fetchall() == []


def test_missing_folder_or_scan_is_a_clear_error(tmp_path, scan) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        query.connect(tmp_path / "nope")
    with pytest.raises(StoreError, match="s1"):
        query.connect(scan[0], scan_id="s2")


@pytest.mark.parametrize("info", query.list_queries(), ids=lambda q: q.name)
def test_every_query_runs_and_returns_its_declared_columns(con, info) -> None:
    result = query.run_query(con, info.name)
    columns = [d[0] for d in result.description]
    assert columns == list(info.outputs)
    assert result.fetchall(), f"{info.name} returned no rows on the synthetic scan"


def test_phase_by_model_counts_the_records(con, scan) -> None:
    _, written = scan
    model, layers = written[MODELS[0]]
    expected: dict[str, int] = {}
    for layer in layers:
        if layer.spectrum is not None and layer.spectrum.phase is not None:
            expected[layer.spectrum.phase.phase.value] = expected.get(layer.spectrum.phase.phase.value, 0) + 1
    rows = query.run_query(con, "phase_by_model").fetchall()
    got = {phase: n for scan_id, model_id, phase, n, _ in rows if model_id == model.model_id}
    assert got == expected


def test_status_overview_counts_failures(con) -> None:
    rows = query.run_query(con, "status_overview", {"scan_id": "s1"}).fetchall()
    assert ("model", "failed", "SourceError", 1, "file:broken.pt") in rows
    assert ("model", "ok", "", len(MODELS), min(MODELS)) in rows
    skipped = [r for r in rows if r[0] == "layer" and r[1] == "skipped"]
    assert skipped and skipped[0][3] == len(MODELS)  # the factory skips the last layer of each model


def test_rank_models_orders_by_metric_and_reports_top1(con, scan) -> None:
    _, written = scan
    rows = query.run_query(con, "rank_models", {"metric": "alpha_mean", "family": "resnet"}).fetchall()
    values = [r[4] for r in rows]  # scan_id, family, dataset, model_id, metric_value, rank_by_metric, ...
    assert values == sorted(values) and [r[5] for r in rows] == list(range(1, 6))
    assert {r[3] for r in rows} == {m for m in MODELS if "resnet" in m}
    assert rows[0][4] == written[rows[0][3]][0].summary.alpha_mean


def test_histogram_counts_every_reliable_fit(con) -> None:
    n_fits = con.execute("SELECT count(*) FROM layers WHERE status = 'ok' AND fit_reliable").fetchall()[0][0]
    rows = query.run_query(con, "alpha_histogram", {"bins": "4", "lo": "0", "hi": "8"}).fetchall()
    assert sum(r[3] for r in rows) == n_fits and {r[0] for r in rows} <= {0, 1, 2, 3}
    assert abs(sum(r[4] for r in rows) - 1.0) < 1e-12


def test_unknown_query_or_parameter_is_refused(con) -> None:
    with pytest.raises(QueryError, match="available"):
        query.run_query(con, "nope")
    with pytest.raises(QueryError, match="min_models"):
        query.run_query(con, "metric_accuracy_correlation", {"min_model": 3})


def test_older_scans_without_a_new_column_read_as_null(tmp_path) -> None:
    results = ResultStore(tmp_path, "s1")
    results.open_scan(ScanConfig(), {}, {})
    model, layers, spectra = make_model("timm:a", n_layers=3)
    results.write_model(model, layers, spectra, model_key="b-new", host="h", device="cpu")
    old = pq.read_table(results.path("layers", "b-new")).drop_columns(["mp_softrank"])
    old = old.set_column(old.schema.get_field_index("scan_id"), "scan_id", pa.array(["s0"] * old.num_rows))
    for name in ("a-old", "b-old"):  # an older scan (no scan.json, or an older schema_version)
        (tmp_path / "s0" / "layers").mkdir(parents=True, exist_ok=True)
        pq.write_table(old, tmp_path / "s0" / "layers" / f"{name}.parquet")
    pq.write_table(old.drop_columns(["alpha"]), tmp_path / "s0" / "layers" / "c-older.parquet")
    con = query.connect(tmp_path)
    values = con.execute("SELECT scan_id, mp_softrank, alpha FROM layers ORDER BY scan_id, model_key").fetchall()
    assert len(values) == 12
    assert all(v[1] is None for v in values[:9]) and None not in {v[1] for v in values[9:11]}
    assert [v[2] is None for v in values[:9]].count(True) == 3 + 2  # c-older lacks alpha; 2 skipped layers


def test_resume_with_another_schema_version_is_refused(tmp_path) -> None:
    import json

    results = ResultStore(tmp_path, "s1")
    results.open_scan(ScanConfig(), {}, {})
    manifest = json.loads(results.manifest_path.read_text())
    results.manifest_path.write_text(json.dumps({**manifest, "schema_version": 0}))
    with pytest.raises(StoreError, match="schema version"):
        ResultStore(tmp_path, "s1").open_scan(ScanConfig(), {}, {})


def test_query_header_must_declare_every_parameter(tmp_path) -> None:
    (tmp_path / "bad.sql").write_text("-- purpose: x\n-- output: a\nSELECT $k AS a\n")
    with pytest.raises(QueryError, match="declared"):
        query.list_queries(tmp_path)
    (tmp_path / "bad.sql").write_text("-- purpose: x\n-- param: k = 3  -- a number\n-- output: a\nSELECT $k AS a\n")
    import duckdb

    assert query.run_query(duckdb.connect(), "bad", folder=tmp_path).fetchall() == [(3,)]
    assert query.run_query(duckdb.connect(), "bad", {"k": "NULL"}, folder=tmp_path).fetchall() == [(None,)]


def test_catalog_view_rejects_duplicates_across_files(tmp_path) -> None:
    header = "model_id,family,dataset\n"
    (tmp_path / "a.csv").write_text(header + "timm:x,x,imagenet-1k\n")
    (tmp_path / "b.csv").write_text(header + "timm:x,x,imagenet-1k\n")
    from scanner.errors import CatalogError

    with pytest.raises(CatalogError, match="duplicate"):
        query.catalog_table(tmp_path)
    assert isinstance(query.catalog_table(tmp_path / "none"), pa.Table)
