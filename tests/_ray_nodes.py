"""A real multi-node Ray cluster on this machine for tests: ``ray start --block`` processes started and stopped here.

Each node is one ``ray start --block`` process in its own session (process group), with its own ``--temp-dir``
(Ray 2.60 accepts one per node) and its own free ports, so nothing collides with another Ray on the machine and
the ``ray_current_cluster`` address file lands in our folder, not in ``/tmp/ray``. Stopping kills exactly the
process groups started here (never ``ray stop``, which ends every Ray on the machine). A node can run in a
private mount namespace (``unshare --mount``, root only) with a tmpfs over a folder, so it cannot see the
driver's files there: the "no shared filesystem" case of a real cluster.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
MAX_RESTARTS = 2  # starts of a node that timed out registering with the GCS (see LocalCluster.wait_started)


_HANDED_OUT: set[int] = set()  # ports given to a node of this test process: never given twice


def free_port() -> int:
    """A free TCP port on 127.0.0.1 not handed out before by this process. The kernel may return a port it just
    gave (a closed probe socket frees it), and a node binds its ports only seconds later, so without the set
    two components of one node drew the same port ("metrics_export is trying to use a port number … used by
    other components")."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def ray_env(tmp_root: Path | None = None) -> dict[str, str]:
    """Environment for Ray processes and drivers of these tests (no auth token, our own temp root).

    ``RAY_agent_register_timeout_ms`` widens the window in which a node's Python agents must register with
    their raylet (Ray's default 30 s) to 3 minutes. It does not widen the raylet's wait for the agents' port
    files (~15 s, fixed in Ray 2.60): agents held back 40 s at start-up still end ``ray.init`` after ~17 s with
    "Timed out waiting for file …metrics_agent_port…" in raylet.out, with or without the setting."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]), RAY_agent_register_timeout_ms="180000")
    if tmp_root is not None:
        env["RAY_TMPDIR"] = str(tmp_root)
    return env


@dataclass
class RayNode:
    name: str
    process: subprocess.Popen[bytes]
    temp_dir: Path
    log: Path
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    restarts: int = 0

    def launch(self, root: Path) -> None:
        """(Re)start the node's ``ray start`` process in a session of its own, appending to its log."""
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=root,
                                            start_new_session=True)

    def pids(self) -> list[int]:
        """PIDs of this node's processes: its ``ray start`` and every process under it (raylet, workers...)."""
        return _descendants(self.process.pid)

    def raylet_pid(self) -> int:
        for pid in self.pids():
            if _comm(pid) == "raylet":
                return pid
        raise RuntimeError(f"no raylet under node {self.name}; log:\n{self.log.read_text()[-2000:]}")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _descendants(root: int) -> list[int]:
    """``root`` and every live process below it (from /proc; no psutil needed)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        if Path(f"/proc/{pid}").exists():
            found.append(pid)
        stack.extend(parents.get(pid, []))
    return found


def listening_sockets(pids: list[int]) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every TCP socket in LISTEN state held by ``pids`` (from /proc)."""
    owners: dict[str, str] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        owners[target[8:-1]] = _comm(pid)
    found = []
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{os.getpid()}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] != "0A" or fields[9] not in owners:  # 0A: LISTEN
                    continue
                address, port = fields[1].split(":")
                raw = bytes.fromhex(address)
                # the kernel prints each 32-bit word of the address in host (little-endian) order
                ip = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
                mapped = getattr(ip, "ipv4_mapped", None)
                found.append((str(mapped or ip), int(port, 16), owners[fields[9]]))
    return found


def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


@dataclass
class LocalCluster:
    """Head plus worker nodes; use as a context manager so every process started here is stopped."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="zc", dir="/tmp")))
    nodes: list[RayNode] = field(default_factory=list)
    port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, name: str, args: list[str], private_dirs: tuple[Path, ...] = ()) -> RayNode:
        # the head's temp dir is <root>/ray: a process with RAY_TMPDIR=<root> finds its ray_current_cluster file
        temp_dir = self.root / ("ray" if name == "head" else name)
        log = self.root / f"{name}.log"
        ports = ["--ray-client-server-port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                 "--metrics-export-port", "--runtime-env-agent-port", "--node-manager-port", "--object-manager-port"]
        cmd = [RAY, "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
               *args]
        for flag in ports:
            if flag == "--ray-client-server-port" and "--head" not in args:
                continue
            cmd.append(f"{flag}={free_port()}")
        if private_dirs:
            mounts = " && ".join(f"mount -t tmpfs tmpfs {os.fspath(d)}" for d in private_dirs)
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   f"{mounts} && exec {subprocess.list2cmdline(cmd)}"]
        # a dead node is noticed within ~3 s instead of Ray's default ~15-30 s health check
        env = {**ray_env(self.root), "RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
               "RAY_health_check_failure_threshold": "3", "RAY_raylet_start_wait_time_s": "180"}
        log.write_bytes(b"")
        node = RayNode(name, None, temp_dir, log, cmd, env)  # type: ignore[arg-type]  # launched just below
        node.launch(self.root)
        self.nodes.append(node)
        return node

    def start_head(self, num_cpus: float = 0, num_gpus: float = 0) -> RayNode:
        self.port = free_port()
        node = self._start("head", ["--head", f"--port={self.port}", "--include-dashboard=false",
                                    f"--num-cpus={num_cpus:g}", f"--num-gpus={num_gpus:g}"])
        self.wait_started(node)
        return node

    def add_node(self, num_cpus: float = 1, num_gpus: float = 0, resources: dict[str, float] | None = None,
                 private_dirs: tuple[Path, ...] = (), wait: bool = True) -> RayNode:
        """Start a worker node; ``private_dirs`` get a tmpfs of their own in the node's mount namespace."""
        index = len(self.nodes)
        args = [f"--address={self.address}", f"--num-cpus={num_cpus:g}", f"--num-gpus={num_gpus:g}",
                f"--resources={json.dumps({f'node{index}': 1, **(resources or {})})}"]
        node = self._start(f"node{index}", args, private_dirs)
        if wait:
            self.wait_started(node)
        return node

    def wait_started(self, node: RayNode, timeout: float = 300.0) -> None:
        """Wait for ``ray start`` to report the node up (its raylet registered with the head).

        Ray 2.60 gives a raylet a fixed 30 s to register with the GCS; on a loaded machine it can miss that
        ("timed out during startup") and ``ray start`` exits: the node is started again, twice at most.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = node.log.read_text(errors="replace")
            if "Ray runtime started" in text:
                return
            if node.process.poll() is not None:
                if "timed out during startup" not in text or node.restarts >= MAX_RESTARTS:
                    break
                _kill_group(node.process)
                node.restarts += 1
                node.launch(self.root)
            time.sleep(0.2)
        raise RuntimeError(f"node {node.name} did not start in {timeout:g} s:\n{node.log.read_text()[-2000:]}")

    def alive_count(self) -> int:
        """Alive nodes according to the GCS (asked by a short-lived subprocess: the test process stays Ray-free)."""
        code = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR');"
                "print(sum(n['Alive'] for n in ray.nodes()))")
        result = subprocess.run([sys.executable, "-c", code, self.address], capture_output=True, text=True,
                                env=ray_env(self.root), timeout=120, check=False)
        counts = [line for line in result.stdout.splitlines() if line.strip().isdigit()]
        return int(counts[-1]) if result.returncode == 0 and counts else 0

    def wait_nodes(self, count: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive_count() >= count:
                return
            time.sleep(1.0)
        logs = "\n".join(f"--- {n.name}\n{n.log.read_text()[-1500:]}" for n in self.nodes)
        raise RuntimeError(f"cluster did not reach {count} alive nodes in {timeout:g} s\n{logs}")

    def kill_node(self, node: RayNode) -> None:
        """SIGKILL every process of ``node`` (its whole process group): the machine is gone."""
        _kill_group(node.process)

    def kill_raylet(self, node: RayNode) -> int:
        """SIGKILL only the node's raylet (the node dies; ``ray start --block`` then ends the rest)."""
        pid = node.raylet_pid()
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self) -> None:
        for node in reversed(self.nodes):
            _kill_group(node.process)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group we created for ``process`` (its session), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
