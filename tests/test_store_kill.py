"""Kill-during-write harness (issue 14): a writer process is SIGKILLed at random moments of write_model and
of compaction; after each kill, verify finds no bad file, every model the writer reported committed is done
on resume, and the views hold each model once with all its layers. A final uninterrupted run and
compaction give exactly the rows of a clean, never-killed store."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest

from scanner import query
from scanner.config import ScanConfig
from scanner.store import ResultStore, verify
from tests._factories import make_model

N_MODELS, N_LAYERS = 240, 12  # enough writes that most random kills land mid-work (a write is ~25 ms)
IDS = [f"timm:k{i:03d}" for i in range(N_MODELS)]
NO_CATALOGS = "/nonexistent-catalogs"

_CHILD = """
import sys
from scanner.config import ScanConfig
from scanner.store import ResultStore
from tests._factories import make_model
root, mode, N_MODELS, N_LAYERS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if mode == "compact":
    from scanner.compact import compact_scan
    print("ready", flush=True)
    while True:
        compact_scan(root, "s1")
        print("compacted", flush=True)
store = ResultStore(root, "s1")
store.open_scan(ScanConfig(), {}, {})
store.cleanup_tmp()
ids = [f"timm:k{i:03d}" for i in range(N_MODELS)]
print("ready", flush=True)
for model_id in store.resume_plan(ids).todo:
    model, layers, spectra = make_model(model_id, n_layers=N_LAYERS, seed=int(model_id[-3:]))
    store.write_model(model, layers, spectra, host="h", device="cpu")
    print("committed", model_id, flush=True)
store.finish_scan({})
print("done", flush=True)
"""


def _run_child(root, mode: str, kill_after: float | None) -> tuple[list[str], bool]:
    """Start a writer; SIGKILL it ``kill_after`` seconds after it is ready (None: let it finish).

    Returns the ids it reported committed and whether it was killed before it finished its work.
    """
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(root), mode, str(N_MODELS), str(N_LAYERS)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    if kill_after is None:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0
    else:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
    lines = out.splitlines()
    return [line.split()[1] for line in lines if line.startswith("committed")], "done" not in lines


def _snapshot(root) -> dict[str, list]:
    con = query.connect(root, threads=1, catalogs_dir=NO_CATALOGS)
    return {
        "models": con.execute("SELECT model_id, status, alpha_mean FROM models ORDER BY ALL").fetchall(),
        "layers": con.execute("SELECT model_id, layer_index, alpha FROM layers ORDER BY ALL").fetchall(),
        "spectra": con.execute("SELECT model_id, layer_index, eigenvalues FROM spectra ORDER BY 1, 2").fetchall(),
    }


def _check(root, committed: set[str]) -> None:
    report = verify(root)
    assert report.ok, report.bad  # nothing torn
    probe = ResultStore(root, "s1")
    plan_done = set(probe.resume_plan(IDS).done) if (root / "s1" / "scan.json").exists() else set()
    assert committed <= plan_done  # nothing lost
    snap = _snapshot(root)
    models = [row[0] for row in snap["models"]]
    assert len(models) == len(set(models)) == len(plan_done)  # nothing duplicated
    per_model: dict[str, int] = {}
    for row in snap["layers"]:
        per_model[row[0]] = per_model.get(row[0], 0) + 1
    assert set(per_model) == set(models) and set(per_model.values()) <= {N_LAYERS}  # whole models only


@pytest.mark.slow
def test_random_kills_during_writes_and_compaction(tmp_path) -> None:
    rng = random.Random(14)
    root = tmp_path / "killed"
    committed: set[str] = set()
    interrupted = 0
    for round_ in range(8):
        mode = "compact" if round_ % 3 == 2 and committed else "write"
        ids, killed = _run_child(root, mode, rng.uniform(0.1, 1.5))
        committed |= set(ids)
        interrupted += killed
        _check(root, committed)
    assert interrupted >= 4 and committed  # most kills landed mid-work
    _run_child(root, "write", None)
    assert _run_child(root, "write", None) == ([], False)  # resume of a finished scan: nothing to do
    assert not list(root.rglob("*.tmp-*"))  # the dead writers' tmp files were cleaned up
    reference = tmp_path / "clean"
    clean = ResultStore(reference, "s1")
    clean.open_scan(ScanConfig(), {}, {})
    for model_id in IDS:
        model, layers, spectra = make_model(model_id, n_layers=N_LAYERS, seed=int(model_id[-3:]))
        clean.write_model(model, layers, spectra, host="h", device="cpu")
    clean.finish_scan({})
    assert _snapshot(root) == _snapshot(reference)
    from scanner.compact import compact_scan

    compact_scan(root, "s1")
    assert _snapshot(root) == _snapshot(reference) and verify(root).ok
