"""D6/D9 (issue 14): verify takes --results, fails on a wrong root, repairs; views survive a torn file, glob
characters in the results path, and a copied scan folder."""

from __future__ import annotations

import logging
import shutil

import pyarrow.parquet as pq
import pytest

from scanner import query
from scanner.cli import main
from scanner.config import ScanConfig
from scanner.errors import StoreError
from scanner.store import ResultStore, model_key
from tests._factories import make_model

IDS = ["timm:a", "timm:b", "timm:c"]
NO_CATALOGS = "/nonexistent-catalogs"  # the views under test do not need the repository's catalogs


def _scan(root, scan_id="s1") -> ResultStore:
    results = ResultStore(root, scan_id)
    results.open_scan(ScanConfig(), {}, {})
    for seed, model_id in enumerate(IDS):
        model, layers, spectra = make_model(model_id, n_layers=3, seed=seed)
        results.write_model(model, layers, spectra, model_key=model_key(model_id), host="h", device="cpu")
    results.finish_scan({})
    return results


def _count(root, view="models", **options) -> int:
    return query.connect(root, threads=1, catalogs_dir=NO_CATALOGS, **options).execute(f"SELECT count(*) FROM {view}").fetchall()[0][0]


def test_verify_exits_non_zero_on_a_missing_root_or_a_file(tmp_path, capsys) -> None:
    missing = tmp_path / "nope"
    assert main(["verify", str(missing)]) == 2  # before: "0 file(s) checked, 0 bad", exit 0
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["verify", "--results", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_verify_takes_results_and_repair_moves_bad_files_aside_and_redoes_the_model(tmp_path, capsys) -> None:
    results = _scan(tmp_path)
    assert main(["verify", "--results", str(tmp_path)]) == 0
    torn = results.path("layers", model_key("timm:b"))
    torn.write_bytes(torn.read_bytes()[:64])
    assert main(["verify", "--results", str(tmp_path), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "bad:" in captured.out and "--repair" in captured.err
    assert main(["verify", "--results", str(tmp_path), "--repair"]) == 1  # it was bad; now moved aside
    assert not torn.exists() and not results.path("models", model_key("timm:b")).exists()
    assert sorted(p.name.split(".parquet")[0] for p in (tmp_path / "s1" / "quarantine").rglob("*.parquet*")) == [
        model_key("timm:b")] * 2
    again = ResultStore(tmp_path, "s1")
    again.open_scan(ScanConfig(), {}, {})
    assert again.resume_plan(IDS).todo == ("timm:b",)
    assert main(["verify", "--results", str(tmp_path)]) == 0


def test_views_survive_one_torn_file_and_name_it(tmp_path, caplog) -> None:
    results = _scan(tmp_path)
    marker = results.path("models", model_key("timm:a"))
    marker.write_bytes(marker.read_bytes()[:100])
    (tmp_path / "s1" / "spectra" / f"{model_key('timm:c')}.parquet").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        con = query.connect(tmp_path, threads=1, catalogs_dir=NO_CATALOGS)
        assert con.execute("SELECT count(*) FROM models").fetchall()[0][0] == 2  # before: the query failed
        assert con.execute("SELECT count(DISTINCT model_id) FROM layers").fetchall()[0][0] == 2  # a's layers too
        assert con.execute("SELECT count(DISTINCT model_id) FROM spectra").fetchall()[0][0] == 1
    assert marker.name in caplog.text and "verify" in caplog.text and "--repair" in caplog.text


def test_results_paths_with_glob_characters_work(tmp_path) -> None:
    root = tmp_path / "runs[1]*?"
    _scan(root)
    assert _count(root) == 3 and _count(root, "layers") == 9  # before: 0 rows (the glob matched nothing)


def test_a_copied_scan_folder_does_not_double_a_scans_rows(tmp_path, caplog) -> None:
    _scan(tmp_path)
    shutil.copytree(tmp_path / "s1", tmp_path / "s1_backup")
    with caplog.at_level(logging.WARNING):
        con = query.connect(tmp_path, threads=1, catalogs_dir=NO_CATALOGS)
        by_scan = dict(con.execute("SELECT scan_id, count(*) FROM models GROUP BY ALL").fetchall())
    assert by_scan == {"s1": 3, "s1_backup": 3}  # before: {"s1": 6}
    assert "s1_backup" in caplog.text and "same scan" in caplog.text
    assert _count(tmp_path, scan_id="s1") == 3
    assert main(["verify", "--results", str(tmp_path)]) == 0


def test_uncommitted_files_are_not_in_the_views(tmp_path) -> None:
    results = _scan(tmp_path)
    key = model_key("timm:z")
    table = pq.read_table(results.path("layers", model_key("timm:a")))
    pq.write_table(table, results.path("layers", key))  # layers written, marker not (a crash in between)
    assert _count(tmp_path, "layers") == 9


def test_layers_with_family_gives_the_relative_depth_of_each_layer(tmp_path) -> None:
    _scan(tmp_path)
    _scan(tmp_path, "s2")  # the same models in a second scan: depth is per scan and model
    con = query.connect(tmp_path, threads=1, catalogs_dir=NO_CATALOGS)
    rows = con.execute("SELECT scan_id, model_id, layer_index, depth, family FROM layers_with_family "
                       "ORDER BY ALL").fetchall()
    assert len(rows) == 2 * len(IDS) * 3
    assert all(depth == (index + 0.5) / 3 and family == "timm" for _, _, index, depth, family in rows)


def test_a_scan_folder_given_as_the_results_root_is_refused(tmp_path, capsys) -> None:
    _scan(tmp_path)
    assert main(["verify", "--results", str(tmp_path / "s1")]) == 2  # before: "0 file(s) checked, 0 bad", exit 0
    assert "--scan-id s1" in capsys.readouterr().err
    with pytest.raises(StoreError, match="is a scan folder"):
        query.connect(tmp_path / "s1", catalogs_dir=NO_CATALOGS)
