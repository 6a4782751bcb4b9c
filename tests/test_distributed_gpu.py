"""GPU scheduling on a CPU machine: local Ray declares one logical GPU, the spectrum actor takes it and
the scan still works (the eigenvalues are computed on the CPU, since torch sees no CUDA device)."""

from __future__ import annotations

import pytest

from scanner import distributed
from scanner.config import ScanConfig
from scanner.progress import ScanProgress
from tests.test_distributed import models_table, write_mlp

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def gpu_ray():
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    mp.undo()


class GpuWatch(ScanProgress):
    """Records the cluster's free GPUs each time a model finishes (the actor holds the GPU then)."""

    free_gpus: list[float]

    def finished(self, model_id: str, ok: bool, reason: str = "") -> None:
        self.free_gpus.append(ray.available_resources().get("GPU", 0.0))
        super().finished(model_id, ok, reason)


def test_spectrum_actor_is_placed_on_the_logical_gpu(gpu_ray, tmp_path):
    models = [write_mlp(tmp_path / f"m{i}.safetensors", seed=i) for i in range(2)]
    watch = GpuWatch(len(models))
    watch.free_gpus = []
    options = distributed.RunOptions(results=str(tmp_path / "res"), scan_id="gpu")
    stats = distributed.run_ray(models, ScanConfig(randomize=False), options, progress=watch)
    assert ray.cluster_resources()["GPU"] == 1
    assert watch.free_gpus and all(free == 0.0 for free in watch.free_gpus)  # held by the one GPU actor
    assert (stats.workers, stats.ok, stats.failed) == (1, 2, 0)
    rows = models_table(tmp_path / "res", "gpu")
    assert {row["status"] for row in rows.values()} == {"ok"}
    assert {row["device"] for row in rows.values()} == {"cpu"}  # a logical GPU: torch computed on the CPU

