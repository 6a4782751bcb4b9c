"""Scan many models on Ray into a ``ResultStore``; the only module that imports ``ray``.

Topology (research/ray_duckdb.md §0–1.7, measured on Ray 2.60)::

    driver ── lists models, drops keys already committed (resume), keeps ≤ max_in_flight models in flight,
              consumes results with ray.wait in completion order, enforces the per-model timeout
      SpectrumWorker actor  num_gpus=1 where GPUs exist, else num_cpus=1 on all CPUs but one;
                            runs scan.compute_spectra and returns eigenvalues only (numpy, never tensors)
      _fit_and_commit task  num_cpus=1, max_retries=3 (system failures), retry_exceptions=TRANSIENT_IO;
                            runs scan.finish_scan and writes spectra/, layers/, then models/ (commit marker)
      driver, on a final failure, writes the model's failed row itself

Failure handling: a model whose weights cannot be read comes back from ``compute_spectra`` as a failed
row; an exception anywhere becomes a failed row with its class and message; a worker killed mid-model
(SIGKILL, OOM) is retried (by Ray for the fit task; by the driver, up to ``max_attempts``, for actor
calls); a model past ``timeout_per_model`` gets its actor killed and restarted
(``ray.kill(actor, no_restart=False)``; a running actor call cannot be cancelled) and a failed row.
Actor calls are not retried by Ray (``max_task_retries=0``) so that a killed hang is not replayed on the
restarted actor. Every model ends exactly once as one ``models/`` row, ok or failed.

Test hook: ``ZOOSCAN_FAULTS`` injects faults into the actor and the fit task; see ``scanner.faults``.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from scanner.config import ScanConfig
from scanner.errors import ConfigError
from scanner.faults import FAULT_DIR_ENV, FAULTS_ENV, InjectedFault, inject_fault, parse_faults
from scanner.progress import ScanProgress
from scanner.records import Status
from scanner.runner import (
    RunOptions,
    ScanStats,
    commit_failure,
    commit_scan,
    models_to_do,
    open_store,
    run_serial,
    set_torch_threads,
    spectra_device,
)
from scanner.scan import ModelSpectra, compute_spectra, finish_scan
from scanner.store import ResultStore

logger = logging.getLogger(__name__)

# Re-exported for the ``zooscan scan`` command and the tests: one import gives both runners.
__all__ = [
    "FAULTS_ENV", "FAULT_DIR_ENV", "InjectedFault", "RunOptions", "ScanStats", "inject_fault", "parse_faults",
    "plan_workers", "run_ray", "run_serial",
]

# Exceptions worth retrying inside the fit task (e.g. a network filesystem); everything else is final.
TRANSIENT_IO: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, InterruptedError, BlockingIOError)


@dataclass(frozen=True)
class WorkerPlan:
    """How many spectrum actors to start and what each declares."""

    workers: int
    num_cpus: float
    num_gpus: float


@dataclass(frozen=True)
class WorkerOutput:
    """What a spectrum actor returns: eigenvalues (inside ``spectra``) and where they were computed."""

    spectra: ModelSpectra
    host: str
    device: str


# -- Ray runner --------------------------------------------------------------------------------------
def actor_config(config: ScanConfig, plan: WorkerPlan) -> ScanConfig:
    """The config a spectrum actor scans with: ``threads`` = the CPUs it holds (at least 1) unless the user
    set it, so that actors never solve more layers at once than Ray gave them cores (an inherited
    ``OMP_NUM_THREADS`` would otherwise decide). ``threads`` does not change results or the config hash."""
    if config.threads > 0:
        return config
    return replace(config, threads=max(1, int(plan.num_cpus)))


def plan_workers(cluster_cpus: float, cluster_gpus: float, device: str, gpus_per_worker: float = 1.0) -> WorkerPlan:
    """Size the spectrum-actor pool so that fit tasks always find a CPU (the deadlock trap, §1.3).

    With GPUs (and device not "cpu"): ``gpus / gpus_per_worker`` actors, each holding one CPU only when
    CPUs remain for the fit tasks. Without: ``cpus − 1`` actors of one CPU (one actor of zero CPUs on a
    one-CPU node).

    Raises:
        ConfigError: device "cuda" on a cluster that declares no GPU.
    """
    if cluster_gpus >= gpus_per_worker > 0 and device != "cpu":
        workers = max(1, int(cluster_gpus / gpus_per_worker))
        return WorkerPlan(workers, 1.0 if cluster_cpus >= workers + 1 else 0.0, gpus_per_worker)
    if device == "cuda":
        raise ConfigError("device 'cuda' was asked for but the Ray cluster declares no GPU; use --device auto or "
                          "cpu, or add GPU nodes (--num-gpus for local Ray)")
    cpus = int(cluster_cpus)
    return WorkerPlan(max(1, cpus - 1), 1.0 if cpus >= 2 else 0.0, 0.0)


class _SpectrumWorker:
    """Long-lived actor: imports torch (and CUDA) once, computes one model's eigenvalues per call."""

    def __init__(self, config: ScanConfig, faults: Mapping[str, str], fault_dir: str) -> None:
        import ray

        self.config, self.faults, self.fault_dir = config, dict(faults), fault_dir
        if ray.get_gpu_ids():  # device "auto" picks the GPU only once torch is imported (scanner.spectra.esd)
            import torch

            logger.info("spectrum worker on %s", torch.cuda.get_device_name(0) if torch.cuda.is_available() else
                        "a logical GPU without CUDA (computing on the CPU)")

    def spectra(self, model_id: str) -> WorkerOutput:
        import ray

        set_torch_threads(ray.get_runtime_context().get_assigned_resources().get("CPU", 1) or 1)
        inject_fault(model_id, self.faults, "spectra", self.fault_dir)
        spectra = compute_spectra(model_id, self.config)
        return WorkerOutput(spectra, socket.gethostname(), spectra_device(spectra))


def _fit_and_commit(output: WorkerOutput, config: ScanConfig, store: ResultStore, attempts: int,
                    faults: Mapping[str, str], fault_dir: str) -> tuple[str, str]:
    """The CPU task: fits, phases and the three files of one model. Returns (status, reason)."""
    import ray

    set_torch_threads(ray.get_runtime_context().get_assigned_resources().get("CPU", 1) or 1)
    inject_fault(output.spectra.model_id, faults, "fit", fault_dir)
    model = commit_scan(store, finish_scan(output.spectra, config), host=output.host, device=output.device,
                        attempts=attempts)
    return model.status.value, model.reason


@dataclass
class _Job:
    model_id: str
    actor: Any
    spectra_ref: Any
    attempts: int
    started: float
    spectra_done: bool = False


def _error_of(exc: BaseException) -> tuple[str, str, bool]:
    """(error_class, reason, worth another attempt) of an exception raised by ``ray.get``.

    A task error is unwrapped to the exception the model raised (final); a dead or unreachable worker
    (SIGKILL, OOM kill, node loss), also when it reaches us through a dependent task, is worth a retry.
    """
    import ray.exceptions as rex

    system = (rex.ActorDiedError, rex.ActorUnavailableError, rex.WorkerCrashedError, rex.NodeDiedError)
    cause = exc
    while isinstance(cause, rex.RayTaskError) and isinstance(cause.cause, BaseException) and cause.cause is not cause:
        cause = cause.cause
    if isinstance(cause, rex.OutOfMemoryError):
        return "OutOfMemoryError", _first_line(cause), False
    if isinstance(cause, system) or isinstance(exc, system):
        name = next(c.__name__ for c in system if isinstance(cause, c) or isinstance(exc, c))
        return name, _first_line(cause), True
    if isinstance(cause, rex.RayTaskError):
        return type(cause).__name__, _first_line(cause), False
    return type(cause).__name__, str(cause).strip(), False


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def run_ray(model_ids: Sequence[str], config: ScanConfig, options: RunOptions, *,  # noqa: C901, PLR0915
            catalog_info: Mapping[str, Any] | None = None, progress: ScanProgress | None = None) -> ScanStats:
    """Scan ``model_ids`` on Ray (an already initialised one, ``options.address``, or embedded local Ray).

    Returns the run's counts; every model of ``model_ids`` ends with exactly one ``models/`` row.
    """
    import ray

    started = time.monotonic()
    store = open_store(config, options, catalog_info or {})
    todo, resumed = models_to_do(model_ids, store, options.retry_failed)
    progress = progress or ScanProgress(resumed + len(todo), resumed=resumed)
    progress.total, progress.resumed = resumed + len(todo), resumed
    if not todo:  # everything is committed: no cluster to start
        progress.close()
        stats = ScanStats("ray", resumed, resumed, 0, 0, time.monotonic() - started, 0)
        store.finish_scan(stats.to_dict())
        return stats
    started_here = not ray.is_initialized()
    if started_here:
        if options.address:
            ray.init(address=options.address, log_to_driver=False)
        else:
            # "local": always a new Ray of our own; never join a `ray start` cluster found on the machine
            ray.init(address="local", num_cpus=options.num_cpus, num_gpus=options.num_gpus,
                     include_dashboard=False, log_to_driver=False)
    try:
        resources = ray.cluster_resources()
        plan = plan_workers(resources.get("CPU", 1), resources.get("GPU", 0), config.device, options.gpus_per_worker)
        logger.info("ray: %s; %d spectrum worker(s) of %s CPU / %s GPU", resources, plan.workers, plan.num_cpus,
                    plan.num_gpus)
        worker_cls = ray.remote(_SpectrumWorker).options(num_cpus=plan.num_cpus, num_gpus=plan.num_gpus,
                                                         max_restarts=-1, max_task_retries=0)
        fit_task = ray.remote(_fit_and_commit).options(num_cpus=1, max_retries=3, retry_exceptions=list(TRANSIENT_IO))
        idle = [worker_cls.remote(actor_config(config, plan), options.faults, options.fault_dir)
                for _ in range(min(plan.workers, len(todo)))]
        limit = options.max_in_flight or 2 * len(idle)
        queue = [(model_id, 1) for model_id in reversed(todo)]
        jobs: dict[Any, _Job] = {}  # final ref -> job
        ok = failed = 0

        def fail(job: _Job, error_class: str, reason: str) -> None:
            nonlocal failed
            commit_failure(store, job.model_id, error_class, reason, job.attempts)
            failed += 1
            progress.finished(job.model_id, False, f"{error_class}: {reason}")

        while queue or jobs:
            while queue and idle and len(jobs) < limit:
                model_id, attempts = queue.pop()
                actor = idle.pop()
                spectra_ref = actor.spectra.remote(model_id)
                final_ref = fit_task.remote(spectra_ref, config, store, attempts, options.faults, options.fault_dir)
                jobs[final_ref] = _Job(model_id, actor, spectra_ref, attempts, time.monotonic())
                if attempts == 1:
                    progress.submitted(model_id)
            busy = {job.spectra_ref: job for job in jobs.values() if not job.spectra_done}
            timeout = 1.0 if options.timeout_per_model else None
            ready, _ = ray.wait([*busy, *jobs], num_returns=1, timeout=timeout)
            for ref in ready:
                if ref in busy:
                    busy[ref].spectra_done = True
                    idle.append(busy[ref].actor)
                    continue
                job = jobs.pop(ref)
                if not job.spectra_done:  # its fit task depends on the actor call, so that call has ended
                    job.spectra_done = True
                    idle.append(job.actor)
                try:
                    status, reason = ray.get(ref)
                except Exception as exc:  # every failure mode of a remote call ends as a row
                    error_class, reason, retry = _error_of(exc)
                    if retry and job.attempts < options.max_attempts:
                        logger.warning("retrying %s (attempt %d): %s", job.model_id, job.attempts + 1, reason)
                        queue.append((job.model_id, job.attempts + 1))
                    else:
                        fail(job, error_class, reason)
                    continue
                ok += status != Status.FAILED.value
                failed += status == Status.FAILED.value
                progress.finished(job.model_id, status != Status.FAILED.value, reason)
            if options.timeout_per_model:
                now = time.monotonic()
                for ref, job in list(jobs.items()):
                    if now - job.started <= options.timeout_per_model or ref in ready:
                        continue
                    del jobs[ref]
                    if job.spectra_done:
                        ray.cancel(ref, force=True)
                    else:
                        ray.kill(job.actor, no_restart=False)
                        idle.append(job.actor)
                    fail(job, "Timeout", f"no result within {options.timeout_per_model:g} s (--timeout-per-model); "
                                         "its worker was stopped. Raise the timeout or exclude the model")
        progress.close()
        stats = ScanStats("ray", resumed + len(todo), resumed, ok, failed, time.monotonic() - started, plan.workers)
        store.finish_scan(stats.to_dict())
        return stats
    finally:
        if started_here:
            ray.shutdown()
