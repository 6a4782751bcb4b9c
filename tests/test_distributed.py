"""The serial runner, resume and the pure pieces of scanner.distributed (no Ray started here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from scanner import distributed
from scanner.config import ScanConfig
from scanner.errors import ConfigError
from scanner.records import Status
from scanner.sources import canonical_id
from scanner.store import ResultStore, model_key

FAST = ScanConfig(randomize=False)


def write_mlp(path: Path, seed: int, widths: tuple[int, ...] = (96, 64, 48)) -> str:
    """A small safetensors checkpoint of Linear weights (seeded Gaussian); returns its file: id."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {f"fc{i}.weight": rng.standard_normal((out, inp)).astype(np.float32)
               for i, (inp, out) in enumerate(zip(widths[:-1], widths[1:], strict=True))}
    save_file(tensors, str(path))
    return f"file:{path}"


def write_corrupt(path: Path) -> str:
    path.write_bytes(b"\x00\x01not a safetensors file" * 10)
    return f"file:{path}"


def models_table(results: Path, scan_id: str) -> dict[str, dict]:
    rows = pq.read_table(results / scan_id / "models").to_pylist()
    assert len(rows) == len({row["model_id"] for row in rows}), "duplicate model rows"
    return {row["model_id"]: row for row in rows}


def test_parse_faults_reads_actions_and_stages():
    faults = distributed.parse_faults("file:/a.safetensors=raise; file:/b.th=kill_once@fit;")
    assert faults == {"file:/a.safetensors": "raise@spectra", "file:/b.th": "kill_once@fit"}
    assert distributed.parse_faults("") == {} and distributed.parse_faults(None) == {}
    for bad in ("file:/a=explode", "no-equals-sign", "file:/a=raise@nowhere"):
        with pytest.raises(ConfigError, match="ZOOSCAN_FAULTS"):
            distributed.parse_faults(bad)


def test_inject_fault_only_at_its_stage(tmp_path):
    faults = {"file:/m": "raise@fit"}
    distributed.inject_fault("file:/m", faults, "spectra")  # other stage: nothing happens
    distributed.inject_fault("file:/other", faults, "fit")
    with pytest.raises(distributed.InjectedFault):
        distributed.inject_fault("file:/m", faults, "fit")


@pytest.mark.parametrize(
    ("cpus", "gpus", "device", "expected"),
    [
        (2, 0, "auto", (1, 1.0, 0.0)),  # one CPU left for the fit tasks (deadlock trap)
        (1, 0, "auto", (1, 0.0, 0.0)),  # a one-CPU node: the actor holds no CPU
        (16, 0, "cpu", (15, 1.0, 0.0)),
        (16, 2, "auto", (2, 1.0, 1.0)),
        (16, 2, "cpu", (15, 1.0, 0.0)),  # GPUs ignored when the CPU is asked for
        (2, 2, "cuda", (2, 0.0, 1.0)),  # not enough CPUs for both actors and the fits: actors hold none
    ],
)
def test_plan_workers_leaves_cpus_for_fit_tasks(cpus, gpus, device, expected):
    plan = distributed.plan_workers(cpus, gpus, device)
    assert (plan.workers, plan.num_cpus, plan.num_gpus) == expected
    assert plan.workers * plan.num_cpus < cpus


def test_plan_workers_fractional_gpus_and_cuda_without_gpu():
    assert distributed.plan_workers(16, 1, "auto", gpus_per_worker=0.5).workers == 2
    with pytest.raises(ConfigError, match="declares no GPU"):
        distributed.plan_workers(8, 0, "cuda")


def test_serial_scan_writes_one_row_per_model_and_failures_as_rows(tmp_path):
    good = [write_mlp(tmp_path / f"m{i}.safetensors", seed=i) for i in range(2)]
    corrupt = write_corrupt(tmp_path / "corrupt.safetensors")
    raising = write_mlp(tmp_path / "raises.safetensors", seed=9)
    options = distributed.RunOptions(results=str(tmp_path / "res"), scan_id="s1",
                                     faults=distributed.parse_faults(f"{raising}=raise"))
    stats = distributed.run_serial([*good, corrupt, raising, good[0]], FAST, options)
    assert (stats.total, stats.ok, stats.failed, stats.resumed) == (4, 2, 2, 0)  # the repeated id counts once
    rows = models_table(tmp_path / "res", "s1")
    assert {rows[m]["status"] for m in good} == {Status.OK.value}
    assert rows[corrupt]["status"] == "failed" and rows[corrupt]["reason"]
    assert rows[raising]["error_class"] == "InjectedFault"
    layers = pq.read_table(tmp_path / "res" / "s1" / "layers").to_pylist()
    assert {row["model_id"] for row in layers if row["status"] == "ok"} == set(good)
    manifest = ResultStore(tmp_path / "res", "s1").read_manifest()
    assert manifest["stats"]["ok"] == 2 and manifest["host"]["versions"]["numpy"] == np.__version__


def test_serial_resume_skips_committed_models_and_retry_failed_redoes_failures(tmp_path):
    ids = [write_mlp(tmp_path / f"m{i}.safetensors", seed=i) for i in range(3)]
    flaky = ids[1]
    results = str(tmp_path / "res")
    first = distributed.RunOptions(results=results, scan_id="s", faults={flaky: "raise@spectra"})
    assert distributed.run_serial(ids, FAST, first).failed == 1
    before = models_table(tmp_path / "res", "s")
    again = distributed.run_serial(ids, FAST, distributed.RunOptions(results=results, scan_id="s"))
    assert (again.resumed, again.ok, again.failed) == (3, 0, 0)
    retried = distributed.run_serial(ids, FAST, distributed.RunOptions(results=results, scan_id="s", retry_failed=True))
    assert (retried.resumed, retried.ok) == (2, 1)
    after = models_table(tmp_path / "res", "s")
    assert after[flaky]["status"] == "ok" and before[flaky]["status"] == "failed"
    assert after[ids[0]]["alpha_mean"] == before[ids[0]]["alpha_mean"]


def test_models_to_do_uses_canonical_ids(tmp_path):
    store = ResultStore(tmp_path, "s")
    store.open_scan(FAST, {}, {})
    path = tmp_path / "a.safetensors"
    todo, resumed = distributed.models_to_do([f"file:{path}", f"file:{path}"], store, retry_failed=False)
    assert todo == [canonical_id(f"file:{path}")] and resumed == 0
    assert model_key(todo[0]).startswith("file_")


def test_error_of_unwraps_task_errors_and_retries_dead_workers():
    rex = pytest.importorskip("ray.exceptions")
    task_error = rex.RayTaskError("fn", "traceback", ValueError("bad weights"))
    assert distributed._error_of(task_error) == ("ValueError", "bad weights", False)
    died = rex.ActorDiedError()
    error_class, _, retry = distributed._error_of(died)
    assert error_class == "ActorDiedError" and retry
    assert distributed._error_of(rex.WorkerCrashedError())[2]
    oom = distributed._error_of(rex.OutOfMemoryError("Task was killed due to the node running low on memory."))
    assert oom == ("OutOfMemoryError", "Task was killed due to the node running low on memory.", False)


def test_ray_runner_with_everything_committed_starts_no_cluster(tmp_path):
    ray = pytest.importorskip("ray")
    ids = [write_mlp(tmp_path / "m.safetensors", seed=0)]
    options = distributed.RunOptions(results=str(tmp_path / "res"), scan_id="s")
    distributed.run_serial(ids, FAST, options)
    stats = distributed.run_ray(ids, FAST, options)
    assert (stats.resumed, stats.ok, stats.failed, stats.workers) == (1, 0, 0, 0)
    assert not ray.is_initialized()


def test_only_distributed_imports_ray():
    import re
    import subprocess
    import sys

    package = Path(distributed.__file__).parent
    importers = sorted(str(path.relative_to(package)) for path in package.rglob("*.py")
                       if re.search(r"^\s*(import ray\b|from ray\b)", path.read_text(), flags=re.M))
    assert importers == ["distributed.py"]
    code = "import sys, scanner.distributed, scanner.commands.scan; print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"  # ray is imported inside the Ray runner only


@pytest.mark.parametrize("field", ["num_cpus", "max_in_flight", "timeout_per_model", "max_attempts"])
def test_run_options_refuse_values_that_would_stall_the_scan(field):
    with pytest.raises(ConfigError, match=field):
        distributed.RunOptions(results="r", scan_id="s", **{field: 0})
    with pytest.raises(ConfigError, match=field):
        distributed.RunOptions(results="r", scan_id="s", **{field: -1})


def test_actors_solve_as_many_layers_at_once_as_they_hold_cpus():
    plan = distributed.plan_workers(8, 0, "auto")
    assert distributed.actor_config(ScanConfig(), plan).threads == 1
    assert distributed.actor_config(ScanConfig(threads=3), plan).threads == 3  # the user's choice stands
    zero_cpu = distributed.plan_workers(1, 0, "auto")
    assert zero_cpu.num_cpus == 0.0 and distributed.actor_config(ScanConfig(), zero_cpu).threads == 1
    assert distributed.actor_config(ScanConfig(), plan).config_hash() == ScanConfig().config_hash()
