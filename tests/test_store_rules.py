"""The store's rules at their edges: which key scheme a scan gets, what counts as failed or done on resume,
which tmp files are a dead writer's, and the pid probe they rely on."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys

import pytest

from scanner import storage
from scanner.config import ScanConfig
from scanner.store import KEY_SCHEME, ResultStore, legacy_model_key, model_key
from tests._factories import failed_model, make_model

HOST = {"host": "h", "device": "cpu"}


def _open(root, scan_id="s1", config=None) -> ResultStore:
    results = ResultStore(root, scan_id)
    results.open_scan(config or ScanConfig(), {}, {"hostname": "h"})
    return results


def _write(results: ResultStore, model_id: str, *, key: str | None = None, failed: bool = False) -> str:
    key = key or model_key(model_id)
    if failed:
        results.write_model(failed_model(model_id), [], [], model_key=key, **HOST)
    else:
        model, layers, spectra = make_model(model_id, n_layers=2)
        results.write_model(model, layers, spectra, model_key=key, **HOST)
    return key


def test_a_new_scan_records_key_scheme_2_and_uses_full_hash_keys(tmp_path) -> None:
    results = _open(tmp_path)
    assert KEY_SCHEME == 2
    assert json.loads(results.manifest_path.read_text())["key_scheme"] == 2
    key = results.key("hf:org/name")
    assert re.fullmatch(r"hf_org_name-[0-9a-f]{64}", key) and key == model_key("hf:org/name")


def test_a_legacy_keyed_scan_without_scan_json_reopens_with_its_own_keys(tmp_path) -> None:
    results = _open(tmp_path)
    legacy = legacy_model_key("timm:a")
    _write(results, "timm:a", key=legacy)
    results.finish_scan({})
    results.manifest_path.unlink()
    again = _open(tmp_path)  # the manifest is recreated from the rows: their keys are scheme 1
    assert json.loads(again.manifest_path.read_text())["key_scheme"] == 1
    assert again.key("timm:a") == legacy
    assert again.resume_plan(["timm:a"]).done == ("timm:a",)


def test_a_scheme_2_scan_without_scan_json_keeps_scheme_2(tmp_path) -> None:
    results = _open(tmp_path)
    _write(results, "timm:a")
    results.finish_scan({})
    results.manifest_path.unlink()
    again = _open(tmp_path)
    assert json.loads(again.manifest_path.read_text())["key_scheme"] == 2
    assert again.resume_plan(["timm:a", "timm:b"]).todo == ("timm:b",)


def test_failed_keys_are_failed_or_unreadable_commit_rows(tmp_path) -> None:
    results = _open(tmp_path)
    _write(results, "timm:ok")
    failed = _write(results, "timm:failed", failed=True)
    torn = _write(results, "timm:torn")
    results.path("models", torn).write_bytes(b"torn")
    assert results.failed_keys() == {failed, torn}


def test_failed_models_count_as_done_unless_retry_failed(tmp_path) -> None:
    results = _open(tmp_path)
    _write(results, "timm:ok")
    _write(results, "timm:failed", failed=True)
    ids = ["timm:ok", "timm:failed", "timm:new"]
    plain = results.resume_plan(ids)  # the default is no retry
    assert (plain.todo, plain.done, plain.redo) == (("timm:new",), ("timm:ok", "timm:failed"), ())
    retry = results.resume_plan(ids, retry_failed=True)
    assert retry.todo == ("timm:failed", "timm:new") and retry.done == ("timm:ok",)
    assert retry.redo == (("timm:failed", "failed earlier (--retry-failed)"),)


def test_resume_plan_of_a_store_not_opened_reads_the_config_from_scan_json(tmp_path) -> None:
    results = _open(tmp_path)
    _write(results, "timm:a")
    results.finish_scan({})
    reader = ResultStore(tmp_path, "s1")  # e.g. a status query: no open_scan, no lock
    plan = reader.resume_plan(["timm:a", "timm:b"])
    assert plan.done == ("timm:a",) and plan.todo == ("timm:b",) and plan.redo == ()


def test_tmp_files_of_other_hosts_are_removed_only_when_older_than_the_lock(tmp_path) -> None:
    """Strictly older than this process's hold on the scan lock (the docstring's rule): a file stamped at the
    very tick the lock was taken may have been written after it (coarse mtimes), so it is kept."""
    results = _open(tmp_path)
    folder = tmp_path / "s1" / "layers"
    names = {"older": "a.parquet.tmp-otherhost_12_abc", "same": "b.parquet.tmp-otherhost_12_abc",
             "newer": "c.parquet.tmp-otherhost_12_abc", "unnamed": "d.parquet.tmp-junk"}
    paths = {label: folder / name for label, name in names.items()}
    for path in paths.values():
        path.write_bytes(b"half")
    held_ns = 1_700_000_000_000_000_000
    os.utime(paths["same"], ns=(held_ns, held_ns))
    held = os.stat(paths["same"]).st_mtime  # the float the listing reports
    for label, offset in (("older", -10), ("unnamed", -10), ("newer", 10)):
        os.utime(paths[label], (held + offset, held + offset))
    assert results._lock is not None
    results._lock.acquired_at = held
    removed = results.cleanup_tmp()
    assert sorted(p.name for p in removed) == sorted([names["older"], names["unnamed"]])
    assert paths["same"].exists() and paths["newer"].exists()


def test_pid_alive_probes_without_signalling() -> None:
    assert storage.pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: the pid no longer exists
    assert not storage.pid_alive(child.pid)


def test_a_pid_of_another_user_counts_as_alive(monkeypatch) -> None:
    def refuse(pid: int, sig: int) -> None:
        assert sig == 0
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(storage.os, "kill", refuse)
    assert storage.pid_alive(12345) is True


@pytest.mark.parametrize("name, writer", [
    ("k.parquet.tmp-host_a_12_0f0f", ("host_a", 12)),
    ("k.parquet.tmp-junk", None),
    ("k.parquet", None),
])
def test_tmp_writer_reads_host_and_pid_from_the_name(name, writer) -> None:
    assert storage.tmp_writer(name) == writer


def _lock_is_free(scan_dir) -> bool:
    """Whether another open file description can take the scan's flock now (flock conflicts between
    descriptions even within one process)."""
    with open(scan_dir / ".lock", "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return True


def test_finish_scan_and_close_give_the_scan_lock_back(tmp_path) -> None:
    results = _open(tmp_path)
    assert not _lock_is_free(tmp_path / "s1")
    results.finish_scan({})
    assert _lock_is_free(tmp_path / "s1") and results._lock is None
    again = _open(tmp_path)
    again.close()
    assert _lock_is_free(tmp_path / "s1")
    again.close()  # not held: a no-op
    ResultStore(tmp_path, "s1").close()
