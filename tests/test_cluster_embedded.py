"""The embedded default (no ``--address``) starts a Ray of its own, on loopback, and never joins a ``ray start``
cluster.

Ray's plain ``ray.init()`` joins the cluster named in ``$RAY_TMPDIR/ray/ray_current_cluster`` (written by
``ray start --head``) or in ``$RAY_ADDRESS``; with ``--num-cpus`` it then fails with "When connecting to an
existing cluster, num_cpus and num_gpus must not be provided", and without it the "laptop" scan silently runs on
the cluster. A local Ray also listens on every interface of the machine's outward IP unless told otherwise.
Its workers run at the scan's own priority (Ray's default niceness 15 made an embedded scan yield to every other job).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from scanner.store import model_key
from tests._ray_nodes import LocalCluster, _comm, _descendants, is_loopback, listening_sockets, ray_env
from tests.test_distributed import models_table, write_mlp

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_embedded_scan_ignores_a_ray_start_cluster_and_listens_on_loopback_only(tmp_path):
    models = [write_mlp(tmp_path / f"m{i}.safetensors", seed=i) for i in range(2)]
    faults = tmp_path / "faults"
    faults.mkdir()
    with LocalCluster() as cluster:
        cluster.start_head(num_cpus=1)
        assert (cluster.root / "ray" / "ray_current_cluster").read_text().strip().endswith(f":{cluster.port}")
        argv = [sys.executable, "-m", "scanner", "scan", "--models", *models, "--results", str(tmp_path / "res"),
                "--scan-id", "emb", "--num-cpus", "2", "--no-randomize"]
        env = {**ray_env(cluster.root), "RAY_ADDRESS": cluster.address,  # both ways Ray finds a cluster
               "ZOOSCAN_FAULTS": f"{models[0]}=block", "ZOOSCAN_FAULT_DIR": str(faults)}
        log = tmp_path / "scan.log"
        with open(log, "wb") as out:
            scan = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not any(_cmdline(p).startswith(b"ray::_SpectrumWorker") for p in _descendants(scan.pid)):
                assert scan.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
            tree = _descendants(scan.pid)  # the scan is held on its first model: its Ray is up
            sockets = listening_sockets(tree)
            assert "gcs_server" in {_comm(p) for p in tree}  # a GCS of its own: it did not join the head
            assert {name for _, _, name in sockets} >= {"gcs_server", "raylet"}, sockets
            assert [s for s in sockets if not is_loopback(s[0])] == [], sockets
            # its workers compute at the scan's own priority (Ray's default is niceness 15)
            workers = [p for p in tree if _cmdline(p).startswith(b"ray::_SpectrumWorker")]
            priority = os.getpriority(os.PRIO_PROCESS, scan.pid)
            assert workers and {os.getpriority(os.PRIO_PROCESS, p) for p in workers} == {priority}
            (faults / f"{model_key(models[0])}.spectra.go").touch()
            assert scan.wait(timeout=300) == 0, log.read_text()[-3000:]
        finally:
            if scan.poll() is None:
                os.killpg(scan.pid, signal.SIGKILL)  # its own session: the scan and the Ray it started
                scan.wait()
        text = log.read_text()
        assert "2 ok, 0 failed" in text
        assert "existing cluster" not in text
    assert {row["status"] for row in models_table(tmp_path / "res", "emb").values()} == {"ok"}


_SLOW_AGENTS = '''import os, sys, time
if any(part in " ".join(sys.argv) for part in ("dashboard/agent.py", "runtime_env/agent/main.py")):
    time.sleep(float(os.environ["ZOOSCAN_TEST_AGENT_DELAY_S"]))
'''


def _processes_naming(folder: Path, settle_s: float) -> list[str]:
    """Command lines of the processes that still name ``folder`` (Ray's temp root: every Ray process of that
    session has it in its arguments) once ``settle_s`` has passed or none is left."""
    needle = str(folder).encode()
    deadline = time.monotonic() + settle_s
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if needle in cmdline:
                    found.append(cmdline.replace(b"\0", b" ").decode(errors="replace")[:200])
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_a_local_ray_that_cannot_start_is_a_one_line_error_and_leaves_no_process(tmp_path):
    """Ray's agents held back 40 s at start-up (as on an overloaded machine) make the raylet give up after
    ~15 s. In-process: ``start_local_ray`` raises ClusterError naming Ray's logs and --serial, and stops the
    GCS, dashboard and monitors that the failed ``ray.init`` left running. Through the CLI (``--timeout-per-model``
    needs Ray, so no fallback to this process): exit status 1 and one ``error:`` line, no traceback."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_SLOW_AGENTS)
    ray_root = Path(tempfile.mkdtemp(prefix="zr", dir="/tmp"))  # Ray's socket paths must stay under 108 bytes
    env = {**ray_env(ray_root), "ZOOSCAN_TEST_AGENT_DELAY_S": "40",
           "PYTHONPATH": os.pathsep.join([str(hook), str(Path(__file__).resolve().parents[1])])}
    probe = ("from scanner.distributed import _ray_children, start_local_ray\nfrom scanner.errors import ClusterError\n"
             "try:\n    start_local_ray(1, None)\nexcept ClusterError as exc:\n    print('ERROR', exc)\n"
             "print('LEFT', sorted(_ray_children()))\n")
    try:
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
        # its raylet's agents (grandchildren, held back 40 s) exit by themselves once they wake: within a minute
        left = _processes_naming(ray_root, settle_s=90)
        model = write_mlp(tmp_path / "m.safetensors", seed=0)
        argv = [sys.executable, "-m", "scanner", "scan", "--models", model, "--results", str(tmp_path / "res"),
                "--num-cpus", "1", "--no-randomize", "--timeout-per-model", "60"]
        scan = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(ray_root, ignore_errors=True)
    lines = out.stdout.splitlines()
    error = next(line for line in lines if line.startswith("ERROR"))
    assert "the local Ray did not start: The current node timed out during startup" in error, out.stdout
    assert "--serial" in error and "raylet.out" in error, out.stdout
    assert lines[-1] == "LEFT []", out.stdout + out.stderr[-2000:]  # its GCS, dashboard and monitors stopped
    assert left == [], left

    assert scan.returncode == 1, scan.stderr[-3000:]  # the scan command's status for an error before any model
    assert "Traceback" not in scan.stderr
    errors = [line for line in scan.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the local Ray did not start" in errors[0], scan.stderr[-3000:]
