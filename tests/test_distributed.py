"""The scan driver with the serial executor, resume, and the pure pieces of the Ray executor (no Ray started)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from scanner import distributed, runner
from scanner.config import ScanConfig
from scanner.errors import ConfigError
from scanner.executors import ModelError
from scanner.faults import InjectedFault, inject_fault, parse_faults
from scanner.records import Status
from scanner.store import ResultStore
from tests._ray_nodes import free_port

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
    faults = parse_faults("file:/a.safetensors=raise; file:/b.th=kill_once@fit;")
    assert faults == {"file:/a.safetensors": "raise@spectra", "file:/b.th": "kill_once@fit"}
    assert parse_faults("") == {} and parse_faults(None) == {}
    for bad in ("file:/a=explode", "no-equals-sign", "file:/a=raise@nowhere"):
        with pytest.raises(ConfigError, match="ZOOSCAN_FAULTS"):
            parse_faults(bad)


def test_inject_fault_only_at_its_stage(tmp_path):
    faults = {"file:/m": "raise@fit"}
    inject_fault("file:/m", faults, "spectra")  # other stage: nothing happens
    inject_fault("file:/other", faults, "fit")
    with pytest.raises(InjectedFault):
        inject_fault("file:/m", faults, "fit")


@pytest.mark.parametrize(
    ("cpus", "gpus", "device", "expected"),
    [
        (2, 0, "auto", (1, 1.0, 0.0)),  # one CPU kept for the fit tasks (deadlock trap)
        (1, 0, "auto", (1, 0.5, 0.0)),  # a one-CPU node: the actor holds half, the fits the other half
        (0, 0, "auto", (0, 0.0, 0.0)),  # a 0-CPU head never computes
        (0, 0, "cuda", (0, 0.0, 0.0)),
        (4, 0, "cuda", (0, 0.0, 0.0)),  # a CPU node for --device cuda: nothing
        (16, 0, "cpu", (15, 1.0, 0.0)),
        (16, 2, "auto", (2, 7.5, 1.0)),  # GPU actors share the node's CPUs but the reserve
        (16, 2, "cpu", (15, 1.0, 0.0)),  # GPUs ignored when the CPU is asked for
        (2, 2, "cuda", (2, 0.5, 1.0)),
        (8, 1, "auto", (1, 7.0, 1.0)),
    ],
)
def test_node_share_keeps_cpus_for_fit_tasks(cpus, gpus, device, expected):
    share = distributed.node_share(cpus, gpus, device)
    assert (share.actors, share.cpus, share.gpus) == expected
    assert share.actors * share.cpus <= cpus - min(distributed.FIT_RESERVE, cpus / 2) + 1e-9
    if cpus >= 1:
        assert cpus - share.actors * share.cpus >= distributed.FIT_CPUS  # a fit task always fits


def test_node_share_fractional_gpus():
    assert distributed.node_share(16, 1, "auto", gpus_per_worker=0.5).actors == 2


def test_serial_scan_writes_one_row_per_model_and_failures_as_rows(tmp_path):
    good = [write_mlp(tmp_path / f"m{i}.safetensors", seed=i) for i in range(2)]
    corrupt = write_corrupt(tmp_path / "corrupt.safetensors")
    raising = write_mlp(tmp_path / "raises.safetensors", seed=9)
    options = runner.RunOptions(results=str(tmp_path / "res"), scan_id="s1", faults=parse_faults(f"{raising}=raise"))
    stats = runner.run_serial([*good, corrupt, raising, good[0]], FAST, options)
    assert (stats.total, stats.ok, stats.failed, stats.resumed) == (4, 2, 2, 0)  # the repeated id counts once
    assert stats.exit_status == runner.EXIT_MODELS_FAILED
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
    first = runner.RunOptions(results=results, scan_id="s", faults={flaky: "raise@spectra"})
    assert runner.run_serial(ids, FAST, first).failed == 1
    before = models_table(tmp_path / "res", "s")
    again = runner.run_serial(ids, FAST, runner.RunOptions(results=results, scan_id="s"))
    assert (again.resumed, again.ok, again.failed, again.failed_before) == (3, 0, 0, 1)
    assert again.exit_status == runner.EXIT_MODELS_FAILED  # the earlier failure still counts
    tolerant = runner.run_serial(ids, FAST, runner.RunOptions(results=results, scan_id="s", max_failed_fraction=0.5))
    assert tolerant.exit_status == runner.EXIT_OK  # 1 of 3 failed, 50 % allowed
    retried = runner.run_serial(ids, FAST, runner.RunOptions(results=results, scan_id="s", retry_failed=True))
    assert (retried.resumed, retried.ok, retried.failed_before, retried.exit_status) == (2, 1, 0, runner.EXIT_OK)
    after = models_table(tmp_path / "res", "s")
    assert after[flaky]["status"] == "ok" and before[flaky]["status"] == "failed"
    assert after[ids[0]]["alpha_mean"] == before[ids[0]]["alpha_mean"]


def test_resume_plan_uses_canonical_ids(tmp_path):
    path = tmp_path / "a.safetensors"
    write_mlp(path, seed=0)
    options = runner.RunOptions(results=str(tmp_path / "res"), scan_id="s")
    stats = runner.run_serial([f"file:{path}", f"file:{path}"], FAST, options)
    assert (stats.total, stats.ok) == (1, 1)


def test_classify_sorts_model_errors_worker_deaths_and_cluster_faults():
    rex = pytest.importorskip("ray.exceptions")
    task_error = rex.RayTaskError("fn", "traceback", ValueError("bad weights"))
    assert distributed.classify(task_error) == ModelError("ValueError", "bad weights")
    died = distributed.classify(rex.ActorDiedError())
    assert died.error_class == "ActorDiedError" and died.retry and not died.infrastructure
    node_gone = distributed.classify(rex.ActorDiedError(), node_alive=False)
    assert node_gone.infrastructure and not node_gone.retry  # the node died: free retry, no attempt spent
    assert distributed.classify(rex.WorkerCrashedError()).retry
    assert distributed.classify(rex.NodeDiedError("node 1 died")).infrastructure
    assert distributed.classify(rex.ObjectLostError("ab" * 14, "owner", "call site")).infrastructure
    oom = distributed.classify(rex.OutOfMemoryError("Task was killed due to the node running low on memory."))
    assert oom == ModelError("OutOfMemoryError", "Task was killed due to the node running low on memory.")


def test_ray_runner_with_everything_committed_starts_no_cluster(tmp_path):
    ray = pytest.importorskip("ray")
    ids = [write_mlp(tmp_path / "m.safetensors", seed=0)]
    options = runner.RunOptions(results=str(tmp_path / "res"), scan_id="s")
    runner.run_serial(ids, FAST, options)
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
    code = "import sys, scanner.runner, scanner.executors.serial, scanner.commands.scan; print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"  # --serial never touches Ray
    code = "import sys, scanner.distributed; print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"  # ray is imported inside the Ray executor only


def test_a_fit_task_never_imports_torch(tmp_path):
    """The fit worker runs numpy/scipy fits only: importing torch there cost ~1.3 CPU-s and ~470 MB per node.
    A spectrum actor's output, pickled as Ray ships it, is fitted in a fresh process (the warm-up task first)."""
    import pickle

    from scanner.scan import compute_spectra

    model = write_mlp(tmp_path / "m.safetensors", seed=3)
    output = distributed.WorkerOutput(compute_spectra(model, ScanConfig()), "host", "cpu")
    (tmp_path / "output.pkl").write_bytes(pickle.dumps(output))
    code = ("import pickle, sys\nfrom scanner.config import ScanConfig\n"
            "from scanner.distributed import _fit, _warm_fit_worker\n_warm_fit_worker()\n"
            f"outcome = _fit(pickle.loads(open({str(tmp_path / 'output.pkl')!r}, 'rb').read()), ScanConfig(), {{}}, '')\n"
            "print(outcome.scan is not None and len(outcome.scan.layers), 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["2", "False"], result.stdout + result.stderr


def test_set_torch_threads_pins_a_loaded_torch():
    import torch

    before = torch.get_num_threads()
    try:
        distributed.set_torch_threads(1, only_if_loaded=True)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_distributed_re_exports_nothing_it_does_not_define():
    assert not hasattr(distributed, "__all__")
    for name in ("RunOptions", "ScanStats", "run_serial", "parse_faults", "FAULTS_ENV", "InjectedFault"):
        assert not hasattr(distributed, name), name


@pytest.mark.parametrize("field", ["num_cpus", "max_in_flight", "timeout_per_model", "max_attempts"])
def test_run_options_refuse_values_that_would_stall_the_scan(field):
    with pytest.raises(ConfigError, match=field):
        runner.RunOptions(results="r", scan_id="s", **{field: 0})
    with pytest.raises(ConfigError, match=field):
        runner.RunOptions(results="r", scan_id="s", **{field: -1})


def test_actors_solve_as_many_layers_at_once_as_they_hold_cpus():
    share = distributed.node_share(8, 0, "auto")
    assert distributed.actor_config(ScanConfig(), share).threads == 1
    assert distributed.actor_config(ScanConfig(threads=3), share).threads == 3  # the user's choice stands
    gpu_node = distributed.node_share(8, 1, "cuda")  # a GPU worker uses its node's CPUs for small layers
    assert distributed.actor_config(ScanConfig(), gpu_node).threads == 7
    half = distributed.node_share(1, 0, "auto")
    assert half.cpus == 0.5 and distributed.actor_config(ScanConfig(), half).threads == 1
    assert distributed.actor_config(ScanConfig(), share).config_hash() == ScanConfig().config_hash()


def test_an_actor_on_a_small_cpu_node_uses_the_idle_reserve_core():
    """2 CPUs: one 1-CPU actor beside the 1-CPU fit reserve; its layers run on both cores between fits
    (a scheduling reserve, not an idle core). Larger nodes keep one thread per actor."""
    two = distributed.node_share(2, 0, "auto")
    assert (two.actors, two.cpus, two.threads) == (1, 1.0, 2)
    assert distributed.actor_config(ScanConfig(), two).threads == 2
    three = distributed.node_share(3, 0, "auto")
    assert (three.actors, three.threads) == (2, 1)
    assert distributed.node_share(16, 0, "cpu").threads == 1
    assert distributed.node_share(2, 1, "auto").threads == 1  # a GPU actor: the CPUs it holds


def test_a_model_is_never_reported_done_unless_its_marker_reads_back(tmp_path, monkeypatch):
    from scanner.errors import StoreError

    lost = write_mlp(tmp_path / "m.safetensors", seed=0)
    monkeypatch.setattr(ResultStore, "write_model", lambda self, *args, **kwargs: None)  # a store that drops writes
    with pytest.raises(StoreError, match="does not read back"):
        runner.run_serial([lost], FAST, runner.RunOptions(results=str(tmp_path / "res"), scan_id="s"))


def test_an_address_nothing_listens_on_is_named_at_once():
    """Ray retries such an address for minutes; the probe says why in one phrase (loopback is resolved to this
    machine's IP, as ``ray.init`` resolves it, so the phrase names that IP)."""
    from scanner.distributed import unreachable_cluster

    port = free_port()
    why = unreachable_cluster(f"127.0.0.1:{port}", timeout_s=5)
    assert why is not None and why.endswith("does not accept connections (Connection refused)") and f":{port}" in why
    assert unreachable_cluster(f"ray://127.0.0.1:{port}", timeout_s=5) == (
        f"127.0.0.1:{port} does not accept connections (Connection refused)")
    assert unreachable_cluster("127.0.0.1:notaport", timeout_s=5) is not None


def test_an_address_whose_port_answers_passes_the_probe():
    from ray._private.services import get_node_ip_address

    from scanner.distributed import unreachable_cluster

    with socket.socket() as server:
        server.bind((get_node_ip_address(), 0))  # where Ray sends a loopback address
        server.listen()
        assert unreachable_cluster(f"127.0.0.1:{server.getsockname()[1]}", timeout_s=5) is None


def test_scan_on_an_unreachable_cluster_is_a_one_line_error(tmp_path):
    model = write_mlp(tmp_path / "m.safetensors", seed=0)
    argv = [sys.executable, "-m", "scanner", "scan", "--models", model, "--results", str(tmp_path / "res"),
            "--address", f"127.0.0.1:{free_port()}", "--no-randomize"]
    scan = subprocess.run(argv, capture_output=True, text=True, timeout=120,  # Ray alone waited over 3 minutes
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert scan.returncode == 1, scan.stderr[-3000:]  # the scan command's status for an error before any model
    errors = [line for line in scan.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot reach the Ray cluster at '127.0.0.1:" in errors[0], scan.stderr[-3000:]
    assert "ray status --address" in errors[0] and "Traceback" not in scan.stderr


def test_the_probe_reads_addresses_as_ray_init_does(monkeypatch, capfd):
    """"auto" is RAY_ADDRESS when set (a client address there is probed at its host:port, not refused as
    malformed); a malformed address, an out-of-range port and an invalid host name are each named, and Ray's
    traceback for the malformed one is not printed."""
    from scanner.distributed import join_cluster, unreachable_cluster

    port = free_port()
    monkeypatch.setenv("RAY_ADDRESS", f"ray://127.0.0.1:{port}")
    assert unreachable_cluster("auto", timeout_s=5) == f"127.0.0.1:{port} does not accept connections (Connection refused)"
    with pytest.raises(distributed.ClusterError, match="Ray client server is running") as caught:
        join_cluster("auto")
    assert "ray status" not in str(caught.value)
    monkeypatch.delenv("RAY_ADDRESS")
    assert (unreachable_cluster("127.0.0.1:70000", timeout_s=5) or "").endswith(":70000 has no valid port number")
    assert "has an invalid host name" in (unreachable_cluster("a..b:6379", timeout_s=5) or "")
    assert unreachable_cluster(":6379", timeout_s=5)
    assert "Traceback" not in capfd.readouterr().err
