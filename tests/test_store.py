"""The results store: layout, round trip, commit order, resume, tmp cleanup and verify."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from scanner import schema, store
from scanner.config import ScanConfig
from scanner.errors import StoreError
from scanner.store import ResultStore, model_key, verify
from tests._factories import failed_model, make_model

HOST = {"host": "h", "device": "cpu"}


def _open(tmp_path, scan_id="s1", config=None) -> ResultStore:
    results = ResultStore(tmp_path, scan_id)
    results.open_scan(config or ScanConfig(), {"catalog": "synthetic"}, {"hostname": "h"})
    return results


def _write(results: ResultStore, model_id: str, seed: int = 0, n_layers: int = 5) -> str:
    model, layers, spectra = make_model(model_id, n_layers=n_layers, seed=seed)
    key = model_key(model_id)
    results.write_model(model, layers, spectra, model_key=key, **HOST)
    return key


def test_layout_and_round_trip(tmp_path) -> None:
    results = _open(tmp_path)
    model, layers, spectra = make_model("hf:org/name@main", n_layers=6, seed=3)
    key = model_key(model.model_id)
    results.write_model(model, layers, spectra, model_key=key, **HOST)
    scan = tmp_path / "s1"
    assert json.loads((scan / "scan.json").read_text())["config_hash"] == ScanConfig().config_hash()
    for table in ("models", "layers", "spectra"):
        assert (scan / table / f"{key}.parquet").is_file()
    layer_table = pq.read_table(scan / "layers" / f"{key}.parquet")
    assert layer_table.schema.remove_metadata().equals(schema.LAYERS.remove_metadata())
    got = layer_table.to_pylist()
    assert [r["alpha"] for r in got] == [
        None if x.spectrum is None else x.spectrum.power_law.alpha for x in layers
    ]
    assert [r["status"] for r in got] == [x.status.value for x in layers]
    evals = pq.read_table(scan / "spectra" / f"{key}.parquet").column("eigenvalues").to_pylist()
    for expected, stored in zip(spectra, evals, strict=True):
        np.testing.assert_array_equal(np.asarray(stored), expected.evals)  # float64, bit-exact
    row = pq.read_table(scan / "models" / f"{key}.parquet").to_pylist()[0]
    assert row["model_id"] == "hf:org/name@main" and row["alpha_mean"] == model.summary.alpha_mean
    assert row["host"] == "h" and row["finished_at"] is not None


def test_eigenvalues_use_byte_stream_split_and_zstd(tmp_path) -> None:
    results = _open(tmp_path)
    key = _write(results, "timm:a")
    meta = pq.ParquetFile(results.path("spectra", key)).metadata
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    column = meta.row_group(0).column(names.index("eigenvalues.list.element"))
    assert "BYTE_STREAM_SPLIT" in column.encodings and column.compression == "ZSTD"


def test_failed_model_commits_without_layers_or_spectra(tmp_path) -> None:
    results = _open(tmp_path)
    model = failed_model("file:broken.pt")
    results.write_model(model, [], [], model_key=model_key(model.model_id), **HOST)
    assert results.done_keys() == {model_key(model.model_id)}
    assert not results.path("spectra", model_key(model.model_id)).exists()


def test_a_redo_without_eigenvalues_removes_the_earlier_spectra(tmp_path) -> None:
    results = _open(tmp_path)
    key = _write(results, "file:flaky.pt")
    assert results.path("spectra", key).exists()
    results.write_model(failed_model("file:flaky.pt"), [], [], model_key=key, **HOST)
    assert not results.path("spectra", key).exists()
    assert pq.read_table(results.path("models", key)).column("status").to_pylist() == ["failed"]


def test_models_file_is_written_last(tmp_path, monkeypatch) -> None:
    results = _open(tmp_path)
    real = store.write_parquet
    written = []

    def failing(storage, path, table):
        if path.parent.name == "models":
            raise OSError("disk full")
        written.append(path.parent.name)
        real(storage, path, table)

    monkeypatch.setattr(store, "write_parquet", failing)
    with pytest.raises(OSError):
        _write(results, "timm:a")
    assert written == ["spectra", "layers"]
    assert results.done_keys() == set()  # not committed: a resume redoes it
    report = verify(tmp_path)
    assert report.ok and report.uncommitted == (("s1", model_key("timm:a")),)
    assert not list((tmp_path / "s1").rglob("*.tmp-*"))  # the failed write left no tmp file


def test_an_option_hashed_only_away_from_its_default_is_still_compared_on_resume(tmp_path) -> None:
    """A fused-qkv scan resumed with the default split is a change of options (not of zooscan version), and a
    scan.json written before the option existed counts as the default (tests/test_scan.py pins its hash)."""
    _open(tmp_path, config=ScanConfig(qkv="fused"))
    with pytest.raises(StoreError) as info:
        _open(tmp_path)
    assert "Resume with the same options" in str(info.value) and "earlier zooscan" not in str(info.value)
    assert "(qkv: 'split' here, 'fused' in the scan)" in str(info.value)  # which option changed
    with pytest.raises(StoreError, match=r"\(qkv: 'split' here, 'fused' in the scan; seed: 3 here, 0 in the scan\)"):
        _open(tmp_path, config=ScanConfig(seed=3))
    results = _open(tmp_path, "old")
    manifest = results.read_manifest()
    manifest["config"].pop("qkv")
    manifest["config_hash"] = "0123456789ab"  # as if a revision changed the numbers of these very options
    (tmp_path / "old" / "scan.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="earlier zooscan whose numbers differ"):
        _open(tmp_path, "old")


def test_resume_keeps_done_keys_and_refuses_other_config(tmp_path) -> None:
    results = _open(tmp_path)
    key = _write(results, "timm:a")
    first = results.read_manifest()
    again = _open(tmp_path)
    assert again.done_keys() == {key}
    manifest = again.read_manifest()
    assert manifest["started_at"] == first["started_at"] and len(manifest["resumed_at"]) == 1
    other = ScanConfig(fit="reference")
    with pytest.raises(StoreError) as info:
        _open(tmp_path, config=other)
    assert ScanConfig().config_hash() in str(info.value) and other.config_hash() in str(info.value)
    assert "new scan_id" in str(info.value)


def test_a_scan_of_an_earlier_results_revision_is_named_as_such(tmp_path, monkeypatch) -> None:
    """Same options, numbers of an earlier version: refused, saying so (not "use the same options")."""
    from scanner import config as config_module
    from scanner import store as store_module

    _open(tmp_path)
    assert json.loads((tmp_path / "s1" / "scan.json").read_text())["results_revision"] == config_module.RESULTS_REVISION
    newer = config_module.RESULTS_REVISION + 1
    monkeypatch.setattr(config_module, "RESULTS_REVISION", newer)
    monkeypatch.setattr(store_module, "RESULTS_REVISION", newer)
    with pytest.raises(StoreError, match=rf"earlier zooscan .*results revision {newer - 1}, this one {newer}"):
        _open(tmp_path)


def test_device_only_change_is_the_same_scan(tmp_path) -> None:
    _open(tmp_path, config=ScanConfig(device="cpu"))
    _open(tmp_path, config=ScanConfig(device="cuda"))  # device is excluded from config_hash


def test_write_before_open_is_refused(tmp_path) -> None:
    model, layers, spectra = make_model("timm:a")
    with pytest.raises(StoreError, match="open_scan"):
        ResultStore(tmp_path, "s1").write_model(model, layers, spectra, model_key="k", **HOST)


def test_cleanup_tmp_and_verify_torn_files(tmp_path) -> None:
    results = _open(tmp_path)
    key = _write(results, "timm:a")
    _write(results, "timm:b", seed=1)
    stale = results.path("layers", "x").with_name("x.parquet.tmp-deadbeef")
    stale.write_bytes(b"PAR1 half")
    os.utime(stale, (1, 1))  # no writer in the name: removed because it is older than this writer's lock
    torn = results.path("layers", key)
    torn.write_bytes(torn.read_bytes()[:100])
    report = verify(tmp_path)
    assert report.checked == 6 and not report.ok
    assert [path for path, _ in report.bad] == [str(torn)]
    assert report.tmp_files == (str(stale),)
    assert results.cleanup_tmp() == [stale] and not stale.exists()


def test_finish_scan_records_stats(tmp_path) -> None:
    results = _open(tmp_path)
    _write(results, "timm:a")
    manifest = results.finish_scan({"ok": 1, "failed": 0})
    assert manifest["stats"] == {"ok": 1, "failed": 0} and manifest["finished_at"]
    assert results.read_manifest()["models_committed"] == 1


def test_model_keys_are_safe_and_distinct() -> None:
    ids = ["hf:org/name@main", "hf:org/name@dev", "file:/a/b c.pt", "timm:resnet50.a1_in1k", "hf:org__name@main"]
    keys = [model_key(i) for i in ids]
    assert len(set(keys)) == len(keys)
    assert all(k.replace("-", "").replace("_", "").replace(".", "").isalnum() for k in keys)


@pytest.mark.parametrize("bad", ["", "1scan", "a/b", "../x"])
def test_bad_scan_ids_are_refused(tmp_path, bad) -> None:
    with pytest.raises(StoreError, match="scan_id"):
        ResultStore(tmp_path, bad)


def test_verify_checks_columns_only_in_scans_of_this_schema_version(tmp_path) -> None:
    results = _open(tmp_path)
    key = _write(results, "timm:a")
    narrow = pq.read_table(results.path("layers", key)).drop_columns(["alpha"])
    pq.write_table(narrow, results.path("layers", "narrow"))
    (tmp_path / "old" / "layers").mkdir(parents=True)  # an older scan without scan.json: footers only
    pq.write_table(narrow, tmp_path / "old" / "layers" / "narrow.parquet")
    report = verify(tmp_path)
    assert [(path, "alpha" in problem) for path, problem in report.bad] == [(str(results.path("layers", "narrow")), True)]
