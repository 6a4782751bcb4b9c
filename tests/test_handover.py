"""The handover executor: models scanned in the driver while a local Ray starts, then by Ray — every model
exactly one row, Ray started and stopped in one thread, its start errors raised in the driver."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from scanner.config import ScanConfig
from scanner.errors import ClusterError, ConfigError
from scanner.executors import InFlight, ModelError, ModelOutcome
from scanner.executors.handover import HandoverExecutor, handover_applies, projected_seconds
from scanner.executors.serial import SerialExecutor
from scanner.runner import RunOptions, run_scan
from tests.test_distributed import models_table, write_mlp


@pytest.fixture
def models(tmp_path) -> list[str]:
    return [write_mlp(tmp_path / f"m{i}.safetensors", seed=i) for i in range(8)]

FAST = ScanConfig(randomize=False)


class FakeRemote:
    """A 'Ray' that starts when ``gate`` opens, has one worker, and runs each model with the serial code."""

    name = "ray"

    def __init__(self, gate: threading.Event, fail: BaseException | None = None) -> None:
        self.gate, self.fail = gate, fail
        self.worker = SerialExecutor(FAST)
        self.taken: list[str] = []
        self.threads: dict[str, int] = {}
        self.first_outcome: float | None = None

    def start(self, models: int) -> None:
        self.threads["start"] = threading.get_ident()
        self.gate.wait(30)
        if self.fail is not None:
            raise self.fail
        self.worker.start(models)

    def close(self) -> None:
        self.threads["close"] = threading.get_ident()
        self.worker.close()

    def free_slots(self) -> int:
        return self.worker.free_slots()

    def submit(self, model_id: str) -> None:
        self.taken.append(model_id)
        self.worker.submit(model_id)

    def wait(self, timeout: float) -> Sequence[ModelOutcome]:
        outcomes = self.worker.wait(timeout)
        if outcomes and self.first_outcome is None:
            self.first_outcome = time.monotonic()
        return outcomes

    def in_flight(self) -> Sequence[InFlight]:
        return self.worker.in_flight()

    def abandon(self, model_id: str) -> None:
        self.worker.abandon(model_id)

    def workers(self) -> int:
        return 1

    def status(self) -> str:
        return ""

    def upcoming(self, model_ids: Sequence[str]) -> None:
        pass

    def committed(self, model_id: str) -> None:
        pass


class CountingLocal(SerialExecutor):
    """The serial executor, recording what it took; opens ``gate`` once it has finished ``after`` models."""

    def __init__(self, gate: threading.Event, after: int) -> None:
        super().__init__(FAST)
        self.gate, self.after, self.taken, self.done = gate, after, [], 0
        self.submitted_at: list[float] = []

    def submit(self, model_id: str) -> None:
        self.taken.append(model_id)
        self.submitted_at.append(time.monotonic())
        super().submit(model_id)

    def wait(self, timeout: float) -> Sequence[ModelOutcome]:
        outcomes = super().wait(timeout)
        self.done += len(outcomes)
        if self.done >= self.after:
            self.gate.set()
        return outcomes


def _rows(root, scan_id: str) -> dict[str, tuple]:
    return {m: (r["status"], r["alpha_mean"], r["n_layers"]) for m, r in models_table(root, scan_id).items()}


def test_models_go_to_the_driver_until_ray_is_up_then_to_ray(tmp_path, models) -> None:
    gate = threading.Event()
    local, remote = CountingLocal(gate, after=3), FakeRemote(gate)
    executor = HandoverExecutor(local, remote, start_after_s=0)
    stats = run_scan(models, FAST, RunOptions(str(tmp_path), "h"), executor)
    assert (stats.ok, stats.failed) == (len(models), 0)
    # the driver scans from the queue's head until Ray is up, and beside Ray until Ray has returned a model;
    # from then on only Ray takes models
    assert local.taken[:3] == models[:3] and remote.taken and sorted(local.taken + remote.taken) == sorted(models)
    assert remote.first_outcome is not None and max(local.submitted_at) < remote.first_outcome
    assert remote.taken[-1] == models[-1]
    assert remote.threads["start"] == remote.threads["close"] != threading.get_ident(), \
        "Ray must be started and stopped in one thread of its own"
    serial = run_scan(models, FAST, RunOptions(str(tmp_path), "s"), SerialExecutor(FAST))
    assert serial.ok == len(models)
    assert _rows(tmp_path, "h") == _rows(tmp_path, "s")


def test_a_scan_that_ends_before_ray_is_up_waits_for_it_and_stops_it(models) -> None:
    gate = threading.Event()
    local, remote = CountingLocal(gate, after=len(models) + 1), FakeRemote(gate)
    executor = HandoverExecutor(local, remote, start_after_s=0)
    opener = threading.Timer(0.5, gate.set)  # Ray comes up only after the driver has done everything
    started = time.monotonic()
    executor.start(len(models))
    opener.start()
    done = []
    for model_id in models[:2]:
        assert executor.free_slots() == 1
        executor.submit(model_id)
        while not (out := executor.wait(1.0)):
            pass
        done += [o.model_id for o in out]
    assert executor.status().startswith("starting the local Ray") or gate.is_set()
    executor.close()
    assert done == models[:2] and remote.taken == []
    assert "close" in remote.threads and time.monotonic() - started >= 0.5


def test_a_ray_that_cannot_start_stops_the_scan_with_its_error(tmp_path, models) -> None:
    gate = threading.Event()
    gate.set()
    local = CountingLocal(threading.Event(), after=99)
    remote = FakeRemote(gate, fail=ConfigError("no node able to compute"))
    with pytest.raises(ConfigError, match="no node able to compute"):
        run_scan(models, FAST, RunOptions(str(tmp_path), "f"), HandoverExecutor(local, remote, start_after_s=0))
    assert "close" in remote.threads


def test_a_ray_that_fails_to_start_otherwise_leaves_the_scan_to_the_driver(tmp_path, models, caplog) -> None:
    gate = threading.Event()
    gate.set()
    local = CountingLocal(threading.Event(), after=99)
    remote = FakeRemote(gate, fail=RuntimeError("the raylet did not register within 30 s\nmore detail"))
    executor = HandoverExecutor(local, remote, start_after_s=0)
    stats = run_scan(models, FAST, RunOptions(str(tmp_path), "f"), executor)
    assert (stats.ok, stats.failed, stats.runner) == (len(models), 0, "serial")
    assert local.taken == models and remote.taken == []
    assert executor.fallback == "RuntimeError: the raylet did not register within 30 s"
    assert [r.getMessage() for r in caplog.records if "did not start" in r.getMessage()] == [
        "the local Ray did not start (RuntimeError: the raylet did not register within 30 s); scanning every model "
        "in this process instead"]


def test_a_local_ray_start_error_of_zooscan_is_warned_in_its_own_words(tmp_path, models, caplog) -> None:
    gate = threading.Event()
    gate.set()
    error = ClusterError("the local Ray did not start: The current node timed out during startup; its logs are in "
                         "/tmp/ray/session_latest/logs")
    executor = HandoverExecutor(CountingLocal(threading.Event(), after=99), FakeRemote(gate, fail=error),
                                start_after_s=0)
    stats = run_scan(models, FAST, RunOptions(str(tmp_path), "f"), executor)
    assert (stats.ok, stats.failed, stats.runner) == (len(models), 0, "serial")
    assert [r.getMessage() for r in caplog.records if "did not start" in r.getMessage()] == [
        f"{error}; scanning every model in this process instead"]


def test_the_projection_is_the_pace_of_the_finished_models_or_of_the_running_one_when_slower() -> None:
    assert projected_seconds([], 0.0, 10) == 0.0
    assert projected_seconds([], 0.25, 8) == 2.0  # nothing finished yet: the running model's time so far
    assert projected_seconds([1.0, 3.0], 0.5, 10) == 20.0  # mean 2 s × 10 models waiting
    assert projected_seconds([1.0, 3.0], 5.0, 10) == 50.0  # the running model has already taken 5 s
    assert projected_seconds([], 600.0, 0) == 0.0  # the last model runs here: nothing Ray could take
    assert projected_seconds([1.0], 0.0, -2) == 0.0  # retries can finish more models than were queued


def test_a_scan_too_short_for_ray_to_pay_off_never_starts_it(tmp_path, models, caplog) -> None:
    gate = threading.Event()
    gate.set()
    local, remote = CountingLocal(threading.Event(), after=99), FakeRemote(gate)
    executor = HandoverExecutor(local, remote, start_after_s=3600.0)
    with caplog.at_level("INFO", logger="scanner.executors.handover"):
        stats = run_scan(models, FAST, RunOptions(str(tmp_path), "short"), executor)
    assert (stats.ok, stats.failed, stats.runner) == (len(models), 0, "serial")
    assert local.taken == models and remote.taken == [] and remote.threads == {}, "Ray must not even be started"
    assert any("the local Ray was not started" in r.getMessage() for r in caplog.records)
    run_scan(models, FAST, RunOptions(str(tmp_path), "s"), SerialExecutor(FAST))
    assert _rows(tmp_path, "short") == _rows(tmp_path, "s")


class SlowLocal(CountingLocal):
    """The serial executor whose models report running for an hour (``in_flight`` started long ago)."""

    def in_flight(self) -> Sequence[InFlight]:
        return [InFlight(job.model_id, job.started - 3600.0) for job in super().in_flight()]


def test_a_slow_model_starts_ray_for_the_waiting_ones_but_never_for_the_last_one(tmp_path, models) -> None:
    gate = threading.Event()
    gate.set()
    local, remote = SlowLocal(threading.Event(), after=99), FakeRemote(gate)
    executor = HandoverExecutor(local, remote, start_after_s=60.0)
    stats = run_scan(models[:1], FAST, RunOptions(str(tmp_path), "one"), executor)
    assert (stats.ok, stats.runner) == (1, "serial") and remote.threads == {}, "one model: nothing for Ray to take"
    local, remote = SlowLocal(threading.Event(), after=99), FakeRemote(gate)
    executor = HandoverExecutor(local, remote, start_after_s=60.0)
    stats = run_scan(models[:2], FAST, RunOptions(str(tmp_path), "two"), executor)
    assert (stats.ok, stats.runner) == (2, "ray") and "start" in remote.threads  # 1 waiting × 1 h ≥ 60 s


class OutageLocal(SerialExecutor):
    """A driver-side executor whose first ``outages`` models end in a hub outage after 0.01 s (the driver retries
    them), the rest in a result after 0.2 s."""

    def __init__(self, outages: int) -> None:
        super().__init__(FAST)
        self.outages, self.held = outages, ""

    def free_slots(self) -> int:
        return 0 if self.held else 1

    def submit(self, model_id: str) -> None:
        self.held = model_id

    def in_flight(self) -> Sequence[InFlight]:
        return [InFlight(self.held, time.monotonic())] if self.held else []

    def wait(self, timeout: float) -> Sequence[ModelOutcome]:
        model_id, self.held = self.held, ""
        if self.outages:
            self.outages -= 1
            time.sleep(0.01)
            return [ModelOutcome(model_id, error=ModelError("HubUnavailable", "503", infrastructure=True))]
        time.sleep(0.2)
        return [ModelOutcome(model_id)]


def test_models_the_driver_will_retry_still_count_as_waiting() -> None:
    gate = threading.Event()
    executor = HandoverExecutor(OutageLocal(outages=5), FakeRemote(gate), start_after_s=0.3)
    executor.start(5)
    for _ in range(6):  # m0: five hub outages, each retried, then its result
        executor.free_slots()
        executor.submit("m0")
        assert executor.wait(1.0)
    executor.free_slots()  # m1 to m4 still wait: 4 × 0.2 s ≥ 0.3 s
    assert executor.name == "ray", "the retried outages were counted as finished models: Ray was not started"
    gate.set()
    executor.close()


def test_ray_starts_once_the_projected_work_reaches_the_threshold(tmp_path, models) -> None:
    gate = threading.Event()
    gate.set()
    local, remote = CountingLocal(threading.Event(), after=99), FakeRemote(gate)
    executor = HandoverExecutor(local, remote, start_after_s=1e-9)  # any time measured on the first model
    stats = run_scan(models, FAST, RunOptions(str(tmp_path), "long"), executor)
    assert (stats.ok, stats.failed, stats.runner) == (len(models), 0, "ray")
    assert local.taken[0] == models[0], "the first model is taken here before anything is projected"
    assert remote.threads["start"] == remote.threads["close"] != threading.get_ident()


def test_handover_only_for_an_embedded_cpu_ray_without_timeouts_or_faults() -> None:
    assert handover_applies(None, "auto", None, None, {}) is True  # (no CUDA on the test machines)
    assert handover_applies(None, "cpu", 0, None, {}) is True
    assert handover_applies("auto", "cpu", None, None, {}) is False  # a cluster is already running
    assert handover_applies(None, "cuda", None, None, {}) is False
    assert handover_applies(None, "auto", 1, None, {}) is False  # logical GPUs declared
    assert handover_applies(None, "auto", None, 30.0, {}) is False  # timeouts need workers that can be stopped
    assert handover_applies(None, "auto", None, None, {"m": "raise@spectra"}) is False


class TwoThenStop(SerialExecutor):
    """The serial executor taking the first two models only, so that the rest wait for the real Ray."""

    def __init__(self) -> None:
        super().__init__(FAST)
        self.taken: list[str] = []

    def free_slots(self) -> int:
        return 0 if len(self.taken) >= 2 else super().free_slots()

    def submit(self, model_id: str) -> None:
        self.taken.append(model_id)
        super().submit(model_id)


@pytest.mark.slow
def test_a_real_local_ray_takes_over_and_the_rows_equal_a_serial_scan(tmp_path, models) -> None:
    from scanner.distributed import RayExecutor
    from scanner.sources import canonical_id
    from tests._fixtures_sources import RESNETS, zoo_file

    ray = pytest.importorskip("ray")
    catalog = [f"file:{zoo_file(RESNETS, 'resnet20-12fca82f.th')}", *models[:4]]
    local, remote = TwoThenStop(), RayExecutor(FAST, num_cpus=2)
    stats = run_scan(catalog, FAST, RunOptions(str(tmp_path / "r"), "h"), HandoverExecutor(local, remote, start_after_s=0))
    assert (stats.ok, stats.failed, stats.runner) == (len(catalog), 0, "ray")
    assert local.taken == [canonical_id(m) for m in catalog[:2]]
    assert not ray.is_initialized(), "the local Ray must be shut down at the end"
    run_scan(catalog, FAST, RunOptions(str(tmp_path / "q"), "s"), SerialExecutor(FAST))
    assert _rows(tmp_path / "r", "h") == _rows(tmp_path / "q", "s")
