"""GPU scheduling on a CPU machine with logical GPUs: local Ray declares one GPU and three CPUs.

The spectrum actor takes the GPU and the node's CPUs but the fit reserve (so it solves small layers on 2 host
threads, issue 11 item 7); the scan still works, computing on the CPU since torch sees no CUDA device.
``--device cuda`` is refused where torch sees no CUDA, unless the logical-GPU test hook says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from scanner import distributed, runner
from scanner.config import ScanConfig
from scanner.errors import ConfigError
from tests.test_distributed import models_table, write_mlp

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def gpu_ray():
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=3, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    mp.undo()


@dataclass
class Watch(distributed.RayExecutor):
    """Records free GPUs/CPUs and the actors' threads each time outcomes arrive (the actor is alive then)."""

    seen: list[tuple[float, float, tuple[int, ...]]] = field(default_factory=list)

    def wait(self, timeout):
        outcomes = super().wait(timeout)
        if outcomes:
            free = ray.available_resources()
            threads = tuple(a.info.threads for a in self.actors if a.info is not None)
            self.seen.append((free.get("GPU", 0.0), free.get("CPU", 0.0), threads))
        return outcomes


def test_spectrum_actor_takes_the_gpu_and_the_node_cpus(gpu_ray, tmp_path):
    models = [write_mlp(tmp_path / f"m{i}.safetensors", seed=i) for i in range(3)]
    options = runner.RunOptions(results=str(tmp_path / "res"), scan_id="gpu")
    watch = Watch(ScanConfig(randomize=False))
    stats = runner.run_scan(models, ScanConfig(randomize=False), options, watch)
    assert ray.cluster_resources()["GPU"] == 1
    assert watch.seen and all(gpu == 0.0 for gpu, _, _ in watch.seen)  # held by the one GPU actor
    assert all(threads == (2,) for _, _, threads in watch.seen)  # 3 CPUs - 1 reserved for the fits
    assert all(cpu <= 1.0 for _, cpu, _ in watch.seen)
    assert (stats.workers, stats.ok, stats.failed) == (1, 3, 0)
    rows = models_table(tmp_path / "res", "gpu")
    assert {row["status"] for row in rows.values()} == {"ok"}
    assert {row["device"] for row in rows.values()} == {"cpu"}  # a logical GPU: torch computed on the CPU


def test_device_cuda_without_cuda_is_refused_unless_gpus_are_declared_logical(gpu_ray, tmp_path):
    models = [write_mlp(tmp_path / "m.safetensors", seed=0)]
    cuda = ScanConfig(randomize=False, device="cuda")
    with pytest.raises(ConfigError, match="no CUDA device"):
        distributed.run_ray(models, cuda, runner.RunOptions(results=str(tmp_path / "r"), scan_id="c"))
    with pytest.raises(ConfigError, match="no CUDA device"):
        runner.run_serial(models, cuda, runner.RunOptions(results=str(tmp_path / "r"), scan_id="s"))
    stats = distributed.run_ray(models, cuda, runner.RunOptions(results=str(tmp_path / "r"), scan_id="l",
                                                                logical_gpus=True))
    assert (stats.ok, stats.failed) == (1, 0)
