"""The results store on an object store (issue 11 item 1): a local S3 server (moto's, started as its own
process by these tests) behind ``s3://`` URIs: commit, resume, verify, queries without a DuckDB extension,
compaction, and the scan lock (a second writer refused, a dead writer's lock taken over)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("moto.server", reason="needs the test extra (moto[server])")

import pyarrow.fs as pafs

from scanner import compact, query, storage_lock
from scanner.config import ScanConfig
from scanner.errors import StoreError
from scanner.storage import ObjectStorage, open_storage
from scanner.store import ResultStore, verify
from tests._factories import write_models

IDS = ["timm:a", "timm:b", "file:/zoo/broken.pt"]
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_server():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("the moto S3 server did not start")
            time.sleep(0.2)
    old = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    arrow_fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", region="us-east-1",
                                 allow_bucket_creation=True)
    arrow_fs.create_dir("zoo")
    yield port
    proc.kill()
    proc.wait()
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _uri(port: int, prefix: str) -> str:
    return f"s3://zoo/{prefix}?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"


def _scan(uri: str) -> ResultStore:
    results = ResultStore(uri, "s1")
    results.open_scan(ScanConfig(), {}, {})
    write_models(results, IDS, n_layers=3)
    return results


def _counts(uri: str) -> tuple[int, int, int]:
    con = query.connect(uri, threads=1, catalogs_dir="/nonexistent-catalogs")
    loaded = con.execute("SELECT count(*) FROM duckdb_extensions() WHERE loaded AND extension_name IN "
                         "('httpfs', 'aws')").fetchall()[0][0]
    assert loaded == 0  # read through pyarrow.fs, no DuckDB extension
    return tuple(con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in ("models", "layers", "spectra"))


def test_s3_uri_is_an_object_store_not_a_local_folder(s3_server, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert isinstance(open_storage(_uri(s3_server, "x")), ObjectStorage)
    assert not list(tmp_path.iterdir())  # before: a local folder ./s3:/zoo/x


def test_commit_resume_verify_and_query_on_s3(s3_server) -> None:
    uri = _uri(s3_server, "round")
    results = _scan(uri)
    assert not [e for t in ("models", "layers") for e in results.storage.list_files(results.scan_dir / t) if ".tmp-" in e.name]
    results.finish_scan({})
    assert _counts(uri) == (3, 6, 6)
    again = ResultStore(uri, "s1")
    again.open_scan(ScanConfig(), {}, {})
    plan = again.resume_plan([*IDS, "timm:new"], retry_failed=True)
    assert plan.todo == ("file:/zoo/broken.pt", "timm:new") and plan.done == ("timm:a", "timm:b")
    again.close()
    report = verify(uri)
    assert report.ok and report.checked == 8  # 3 markers, 3 layers files (one empty), 2 spectra
    with pytest.raises(StoreError, match="config_hash"):
        ResultStore(uri, "s1").open_scan(ScanConfig(fit="reference"), {}, {})


def test_compaction_on_s3(s3_server) -> None:
    uri = _uri(s3_server, "compact")
    _scan(uri).finish_scan({})
    before = _counts(uri)
    report = compact.compact_scan(uri, "s1")
    assert report.models_merged == 3 and report.files_after == 3
    assert _counts(uri) == before
    assert verify(uri).ok


_HOLDER = """
import sys, time
from scanner.config import ScanConfig
from scanner.store import ResultStore
store = ResultStore(sys.argv[1], "s1")
store.open_scan(ScanConfig(), {}, {})
print("holding", flush=True)
time.sleep(60)
"""


def test_s3_lock_refuses_a_second_writer_and_takes_over_a_dead_ones(s3_server) -> None:
    uri = _uri(s3_server, "lock")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, uri], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(StoreError, match=f"pid {holder.pid} .* last heartbeat"):
            ResultStore(uri, "s1").open_scan(ScanConfig(), {}, {})
    finally:
        holder.kill()
        holder.wait()
    storage = open_storage(uri)
    scan_dir = storage.root / "s1"
    with pytest.raises(StoreError, match="being written"):  # killed: its candidate stays until it goes stale
        storage_lock.acquire(storage, scan_dir, stale_s=60)
    time.sleep(2.5)  # S3 times have one-second resolution
    lock = storage_lock.acquire(storage, scan_dir, stale_s=1.5)  # the dead holder's lock is taken over
    assert [e.name for e in storage.list_files(scan_dir / ".lock")] == [lock._candidate.name]
    lock.release()
    assert storage.list_files(scan_dir / ".lock") == []


def test_cli_commands_take_an_s3_results_uri(s3_server, capsys, tmp_path) -> None:
    from scanner.cli import main

    uri = _uri(s3_server, "cli")
    _scan(uri).finish_scan({})
    assert main(["verify", "--results", uri]) == 0
    assert main(["compact", "--results", uri, "--scan-id", "s1"]) == 0
    assert main(["sql", "SELECT count(*) AS n FROM layers", "--results", uri, "--catalogs", str(tmp_path),
                 "--format", "csv"]) == 0  # an empty catalogs folder (the CLI refuses a missing one)
    out = capsys.readouterr().out
    assert "8 file(s) checked, 0 bad" in out and "3 model(s) merged" in out and "\n6" in out


def test_a_write_that_fails_midway_leaves_no_object(s3_server) -> None:
    storage = open_storage(_uri(s3_server, "partial"))
    target = storage.root / "s1" / "models" / "k.parquet"

    def half_then_fail(handle) -> None:
        handle.write(b"PAR1 half a file")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        storage.write_atomic(target, half_then_fail)
    assert not storage.exists(target)  # closing the upload stream would have published the half file


_WRITER = """
import sys
from scanner.config import ScanConfig
from scanner.store import ResultStore
from tests._factories import make_model
store = ResultStore(sys.argv[1], "s1")
store.open_scan(ScanConfig(), {}, {})
ids = [f"timm:k{i:03d}" for i in range(40)]
print("ready", flush=True)
for model_id in store.resume_plan(ids).todo:
    model, layers, spectra = make_model(model_id, n_layers=6, seed=int(model_id[-3:]))
    store.write_model(model, layers, spectra, host="h", device="cpu")
    print("committed", model_id, flush=True)
store.finish_scan({})
"""


@pytest.mark.slow
def test_sigkilled_writers_on_s3_lose_and_duplicate_nothing(s3_server) -> None:
    import random
    import signal

    uri = _uri(s3_server, "killed")
    rng, committed = random.Random(11), set()
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, uri], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.2, 2.0))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        committed |= {line.split()[1] for line in out.splitlines() if line.startswith("committed")}
        storage = open_storage(uri)
        for entry in storage.list_files(storage.root / "s1" / ".lock"):  # a killed holder's lock: stale at once
            storage.delete(entry.path)
        assert verify(uri).ok
        done = set(ResultStore(uri, "s1").resume_plan([f"timm:k{i:03d}" for i in range(40)]).done)
        assert committed <= done
        con = query.connect(uri, threads=1, catalogs_dir="/nonexistent-catalogs")
        models = [r[0] for r in con.execute("SELECT model_id FROM models").fetchall()]
        layers = con.execute("SELECT model_id, count(*) FROM layers GROUP BY ALL").fetchall()
        assert len(models) == len(set(models)) == len(done) and {n for _, n in layers} <= {6}
    assert committed
