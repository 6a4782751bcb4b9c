"""Compaction (issue 11 item 5): same rows before and after, no loss or duplicate at any crash point,
resume and verify afterwards, redone models supersede their compacted rows."""

from __future__ import annotations

import pytest

from scanner import compact, query
from scanner.cli import main
from scanner.config import ScanConfig
from scanner.store import ResultStore, verify
from tests._factories import failed_model, make_model, write_models

IDS = [f"timm:m{i}" for i in range(6)] + ["file:/zoo/broken.pt"]
NO_CATALOGS = "/nonexistent-catalogs"


def _scan(root, ids=IDS) -> ResultStore:
    results = ResultStore(root, "s1")
    results.open_scan(ScanConfig(), {}, {})
    write_models(results, ids, n_layers=4)
    results.finish_scan({})
    return results


SNAPSHOT = {
    "models": "SELECT model_id, model_key, status, alpha_mean FROM models ORDER BY ALL",
    "layers": "SELECT model_id, layer_index, status, alpha FROM layers ORDER BY ALL",
    "spectra": "SELECT model_id, layer_index, eigenvalues FROM spectra ORDER BY model_id, layer_index",
}


def _snapshot(root) -> dict[str, list]:
    con = query.connect(root, threads=1, catalogs_dir=NO_CATALOGS)
    return {table: con.execute(sql).fetchall() for table, sql in SNAPSHOT.items()}


def test_compaction_keeps_every_row_and_leaves_few_files(tmp_path) -> None:
    results = _scan(tmp_path)
    before = _snapshot(tmp_path)
    report = compact.compact_scan(tmp_path, "s1")
    assert report.models_merged == len(IDS) and report.files_before == 6 * 3 + 2
    assert report.files_after == 3 and report.generation == 1
    assert _snapshot(tmp_path) == before
    assert not [p for t in ("models", "layers", "spectra") for p in (tmp_path / "s1" / t).glob("*.parquet")]
    again = ResultStore(tmp_path, "s1")
    again.open_scan(ScanConfig(), {}, {})
    assert again.resume_plan(IDS).done == tuple(IDS)
    assert again.resume_plan(IDS, retry_failed=True).todo == ("file:/zoo/broken.pt",)
    again.close()
    assert verify(tmp_path).ok and verify(tmp_path).checked == 3
    del results


def test_a_model_redone_after_compaction_supersedes_its_compacted_rows(tmp_path) -> None:
    _scan(tmp_path)
    compact.compact_scan(tmp_path, "s1")
    results = ResultStore(tmp_path, "s1")
    results.open_scan(ScanConfig(), {}, {})
    model, layers, spectra = make_model("file:/zoo/broken.pt", n_layers=2, seed=9)  # the retry worked
    results.write_model(model, layers, spectra, host="h", device="cpu")
    results.write_model(failed_model("timm:m0"), [], [], host="h", device="cpu")  # a redo that failed
    results.finish_scan({})
    for _ in range(2):  # before and after a second compaction
        snap = _snapshot(tmp_path)
        statuses = {row[0]: row[2] for row in snap["models"]}
        assert len(snap["models"]) == len(IDS) and statuses["file:/zoo/broken.pt"] == "ok"
        assert statuses["timm:m0"] == "failed"
        assert not [r for r in snap["layers"] + snap["spectra"] if r[0] == "timm:m0"]
        assert len([r for r in snap["layers"] if r[0] == "file:/zoo/broken.pt"]) == 2
        assert verify(tmp_path).ok
        compact.compact_scan(tmp_path, "s1")


class Crash(Exception):
    pass


@pytest.mark.parametrize("point", ["write_file", "manifest", "remove", "delete_3"])
def test_a_crash_at_any_step_loses_and_duplicates_nothing(tmp_path, monkeypatch, point) -> None:
    _scan(tmp_path)
    compact.compact_scan(tmp_path, "s1")  # a previous generation exists too
    results = ResultStore(tmp_path, "s1")
    results.open_scan(ScanConfig(), {}, {})
    model, layers, spectra = make_model("timm:m1", n_layers=3, seed=42)
    results.write_model(model, layers, spectra, host="h", device="cpu")
    results.finish_scan({})
    before = _snapshot(tmp_path)
    storage_type = type(ResultStore(tmp_path, "s1").storage)
    real_write, real_delete = storage_type.write_atomic, storage_type.delete
    calls = {"delete": 0}

    def write_atomic(self, path, write):
        if (point == "write_file" and "compacted" in str(path) and "layers" in str(path)) or \
                (point == "manifest" and path.name == "manifest.json"):
            raise Crash(point)
        return real_write(self, path, write)

    def delete(self, path):
        calls["delete"] += 1
        if point == "delete_3" and calls["delete"] == 3:
            raise Crash(point)
        return real_delete(self, path)

    monkeypatch.setattr(storage_type, "write_atomic", write_atomic)
    monkeypatch.setattr(storage_type, "delete", delete)
    if point == "remove":
        monkeypatch.setattr(compact, "_remove_merged", lambda *a: (_ for _ in ()).throw(Crash(point)))
    with pytest.raises(Crash):
        compact.compact_scan(tmp_path, "s1")
    monkeypatch.undo()
    assert _snapshot(tmp_path) == before
    assert verify(tmp_path).ok
    compact.compact_scan(tmp_path, "s1")  # a later compaction finishes the job
    assert _snapshot(tmp_path) == before
    assert len(list((tmp_path / "s1" / "compacted").rglob("*.parquet"))) == 3


def test_compact_command(tmp_path, capsys) -> None:
    _scan(tmp_path)
    assert main(["compact", "--results", str(tmp_path), "--scan-id", "s1"]) == 0
    assert "7 model(s) merged, 20 -> 3 files" in capsys.readouterr().out
    assert main(["compact", "--results", str(tmp_path), "--scan-id", "nope"]) == 2
