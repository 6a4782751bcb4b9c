"""Result integrity (issue 14, D1 and D2): keys that do not collide, resume that checks what a commit row
holds, one writer and one config per scan id, tmp cleanup that spares live writers."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from scanner import store as store_mod
from scanner.config import ScanConfig
from scanner.errors import StoreError
from scanner.store import ResultStore, model_key, verify
from tests._factories import failed_model, make_model

HOST = {"host": "h", "device": "cpu"}
PREFIX = "file:/zoo/" + "experiment_sweep_" * 6 + "/"  # a 100-character shared prefix, as deep checkpoint trees


def _legacy_key(model_id: str) -> str:  # the key of the code before the fix: 100 characters + 8 hex digits
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("._")[:100]
    return f"{readable}-{hashlib.sha256(model_id.encode()).hexdigest()[:8]}"


def _legacy_collision() -> tuple[str, str]:
    """Two ids that share a legacy key (found in ~18k sha256 calls, 0.3 s)."""
    seen: dict[str, str] = {}
    i = 0
    while True:
        model_id = f"{PREFIX}ckpt_{i}.pt"
        key = _legacy_key(model_id)
        if key in seen:
            return seen[key], model_id
        seen[key] = model_id
        i += 1


def _open(root, scan_id="s1", config=None) -> ResultStore:
    results = ResultStore(root, scan_id)
    results.open_scan(config or ScanConfig(), {}, {"hostname": "h"})
    return results


def _write(results: ResultStore, model_id: str, seed: int = 0, failed: bool = False) -> str:
    key = model_key(model_id)
    if failed:
        results.write_model(failed_model(model_id), [], [], model_key=key, **HOST)
    else:
        model, layers, spectra = make_model(model_id, n_layers=3, seed=seed)
        results.write_model(model, layers, spectra, model_key=key, **HOST)
    return key


def _todo(results: ResultStore, ids: list[str], retry_failed: bool) -> tuple[list[str], int]:
    plan = results.resume_plan(ids, retry_failed)  # what the scan driver runs (runner._plan)
    return list(plan.todo), len(plan.done)


# -- D1 ------------------------------------------------------------------------------------------------
def test_d1_ids_that_collided_under_the_old_key_are_both_kept(tmp_path) -> None:
    first, second = _legacy_collision()
    assert _legacy_key(first) == _legacy_key(second)
    assert model_key(first) != model_key(second) and len(model_key(first)) <= 40 + 1 + 64
    results = _open(tmp_path)
    _write(results, first)
    todo, resumed = _todo(results, [first, second], False)
    assert (todo, resumed) == ([second], 1)  # before: ([], 2), "2 already done" with one row stored
    _write(results, second, seed=1)
    stored = {r["model_id"] for p in results.files().live["models"] for r in pq.read_table(p.path).to_pylist()}
    assert stored == {first, second}


def test_d1_resume_checks_the_model_id_inside_the_marker(tmp_path) -> None:
    results = _open(tmp_path)
    key_a = _write(results, "file:/zoo/a.pt")
    foreign = results.path("models", model_key("file:/zoo/b.pt"))
    os.link(results.path("models", key_a), foreign)  # b's marker file holds a's row (a collision, a copy)
    todo, resumed = _todo(results, ["file:/zoo/a.pt", "file:/zoo/b.pt"], False)
    assert (todo, resumed) == (["file:/zoo/b.pt"], 1)
    plan = results.resume_plan(["file:/zoo/b.pt"])
    assert plan.todo == ("file:/zoo/b.pt",) and "another model id" in plan.redo[0][1]


def test_d1_two_ids_with_one_key_are_refused(tmp_path, monkeypatch) -> None:
    results = _open(tmp_path)
    monkeypatch.setattr(store_mod, "model_key", lambda model_id: "same-key")
    with pytest.raises(StoreError, match="map to one file key"):
        _todo(results, ["timm:a", "timm:b"], False)


def test_d1_d6_retry_failed_redoes_a_torn_marker_instead_of_crashing(tmp_path) -> None:
    results = _open(tmp_path)
    key_a = _write(results, "timm:a")
    _write(results, "timm:b", failed=True)
    _write(results, "timm:c", seed=2)
    marker = results.path("models", key_a)
    marker.write_bytes(marker.read_bytes()[:50])  # torn
    todo, resumed = _todo(results, ["timm:a", "timm:b", "timm:c"], True)
    assert (todo, resumed) == (["timm:a", "timm:b"], 1)  # before: pyarrow.lib.ArrowInvalid
    plan = results.resume_plan(["timm:a", "timm:b", "timm:c"], retry_failed=False)
    assert plan.todo == ("timm:a",) and plan.done == ("timm:b", "timm:c") and "unreadable" in plan.redo[0][1]


def test_d1_a_marker_of_another_config_is_redone(tmp_path) -> None:
    results = _open(tmp_path)
    key = _write(results, "timm:a")
    table = pq.read_table(results.path("models", key))
    index = table.schema.get_field_index("config_hash")
    pq.write_table(table.set_column(index, "config_hash", [["0ther"]]), results.path("models", key))
    plan = results.resume_plan(["timm:a"])
    assert plan.todo == ("timm:a",) and "config_hash '0ther'" in plan.redo[0][1]


# -- D2 ------------------------------------------------------------------------------------------------
_HOLDER = """
import sys, time
from scanner.config import ScanConfig
from scanner.store import ResultStore
store = ResultStore(sys.argv[1], "s1")
store.open_scan(ScanConfig(fit=sys.argv[2]), {}, {})
print("holding", flush=True)
time.sleep(60)
"""


def _hold(root, fit="robust") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(root), fit], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_d2_a_second_writer_is_refused_with_one_line(tmp_path) -> None:
    holder = _hold(tmp_path)
    try:
        with pytest.raises(StoreError) as info:
            _open(tmp_path)
        message = str(info.value)
        assert f"pid {holder.pid}" in message and "another --scan-id" in message and "\n" not in message
        with pytest.raises(StoreError, match="being written"):
            _open(tmp_path, config=ScanConfig(fit="reference"))
    finally:
        holder.kill()
        holder.wait()
    _open(tmp_path)  # the kernel dropped the dead holder's lock


def _race(barrier, queue, root: str, fit: str) -> None:
    barrier.wait()
    try:
        results = _open(root, config=ScanConfig(fit=fit))
        for i in range(3):
            _write(results, f"timm:{fit}{i}", seed=i)
        queue.put((fit, "ok"))
    except StoreError as exc:
        queue.put((fit, str(exc)))


def test_d2_two_configs_started_together_never_mix(tmp_path) -> None:
    context = multiprocessing.get_context("fork")
    for attempt in range(3):
        root = tmp_path / f"r{attempt}"
        barrier, queue = context.Barrier(2), context.Queue()
        procs = [context.Process(target=_race, args=(barrier, queue, str(root), fit)) for fit in ("robust", "reference")]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        outcomes = dict(queue.get(timeout=5) for _ in procs)
        assert sorted(v == "ok" for v in outcomes.values()) == [False, True], outcomes
        manifest = json.loads((root / "s1" / "scan.json").read_text())
        hashes = {pq.read_table(p, columns=["config_hash"])[0][0].as_py() for p in (root / "s1" / "models").iterdir()
                  if p.suffix == ".parquet"}
        assert hashes == {manifest["config_hash"]}


def test_d2_scan_json_is_created_exclusively(tmp_path) -> None:
    results = ResultStore(tmp_path, "s1")
    target = results.manifest_path
    target.parent.mkdir(parents=True)
    assert results.storage.create_exclusive(target, b"{}") is True
    assert results.storage.create_exclusive(target, b"{\"other\": 1}") is False
    assert target.read_bytes() == b"{}" and not list(target.parent.glob("*.tmp-*"))


def test_d2_tmp_cleanup_removes_only_dead_writers_files(tmp_path) -> None:
    results = _open(tmp_path)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = os.uname().nodename
    folder = tmp_path / "s1" / "layers"
    live_tmp = folder / f"k.parquet.tmp-{host}_{live.pid}_abc"
    dead_tmp = folder / f"k.parquet.tmp-{host}_{dead.pid}_abc"
    own_tmp = folder / f"j.parquet.tmp-{host}_{os.getpid()}_abc"
    for path in (live_tmp, dead_tmp, own_tmp):
        path.write_bytes(b"half")
        os.utime(path, (1.0, 1.0))  # far older than the lock: on this host the pid decides, not the age
    try:
        removed = results.cleanup_tmp()
    finally:
        live.kill()
        live.wait()
    assert removed == [dead_tmp] and live_tmp.exists()  # before: both removed (a live peer's write failed)
    assert own_tmp.exists()


def test_d2_rerun_after_scan_json_was_deleted_never_relabels_rows(tmp_path) -> None:
    results = _open(tmp_path)
    _write(results, "timm:a")
    results.finish_scan({})
    (tmp_path / "s1" / "scan.json").unlink()
    with pytest.raises(StoreError, match="no scan.json but 1 committed model row"):
        _open(tmp_path, config=ScanConfig(fit="reference"))
    again = _open(tmp_path)  # the same options recreate the manifest and resume
    assert again.resume_plan(["timm:a"]).done == ("timm:a",)


def test_d2_verify_checks_every_rows_config_and_key(tmp_path) -> None:
    results = _open(tmp_path)
    _write(results, "timm:a")
    key_b = _write(results, "timm:b", seed=1)
    results.finish_scan({})
    assert verify(tmp_path).ok
    manifest = json.loads(results.manifest_path.read_text())
    results.manifest_path.write_text(json.dumps({**manifest, "config_hash": "relabelled"}))
    report = verify(tmp_path)
    assert len(report.bad) == 6 and all("config_hash" in problem for _, problem in report.bad)
    results.manifest_path.write_text(json.dumps(manifest))
    os.replace(results.path("layers", key_b), results.path("layers", model_key("timm:zzz")))
    (problem,) = [p for _, p in verify(tmp_path).bad]
    assert "model_key" in problem or "file of key" in problem


def test_legacy_scans_keep_their_keys_on_resume(tmp_path) -> None:
    results = _open(tmp_path)
    legacy = store_mod.legacy_model_key("timm:a")
    model, layers, spectra = make_model("timm:a", n_layers=2)
    results.write_model(model, layers, spectra, model_key=legacy, **HOST)
    manifest = json.loads(results.manifest_path.read_text())
    manifest.pop("key_scheme")  # a scan created before key scheme 2
    results.manifest_path.write_text(json.dumps(manifest))
    results.finish_scan({})
    again = _open(tmp_path)
    assert again.key("timm:a") == legacy and again.resume_plan(["timm:a"]).done == ("timm:a",)
    assert verify(tmp_path).ok


@pytest.mark.parametrize("text", ["s3:/bucket/x", "nosuchscheme://bucket/x"])
def test_unknown_or_malformed_schemes_are_errors_not_local_folders(tmp_path, monkeypatch, text) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match="URI|results location"):
        ResultStore(text, "s1")
    assert not list(tmp_path.iterdir())


def test_read_marker_reads_one_commit_row(tmp_path) -> None:
    results = _open(tmp_path)
    assert results.read_marker("timm:a") is None
    key = _write(results, "timm:a")
    marker = results.read_marker("timm:a")
    assert (marker.model_id, marker.status, marker.error) == ("timm:a", "ok", "")
    results.path("models", key).write_bytes(b"torn")
    assert results.read_marker("timm:a").error
