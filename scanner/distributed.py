"""Scan many models on Ray (or serially) into a ``ResultStore``; the only module that imports ``ray``.

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

Test hook: ``ZOOSCAN_FAULTS="<model_id>=<action>[@fit];..."`` injects faults (``parse_faults``):
``raise`` (an exception), ``kill`` (SIGKILL of the worker process, every attempt), ``kill_once`` (SIGKILL on
the first attempt only; needs ``ZOOSCAN_FAULT_DIR`` for its marker files), ``hang`` (sleeps an hour),
``slow`` (sleeps 2 s). ``@fit`` moves the fault from the spectrum actor to the fit task. The serial runner
honours ``raise`` and ``slow`` only (the others would hit the driver itself).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from scanner.config import ScanConfig
from scanner.errors import ConfigError, ScannerError
from scanner.progress import ScanProgress
from scanner.records import ModelResult, Status
from scanner.scan import ModelScan, ModelSpectra, PendingLayer, compute_spectra, finish_scan
from scanner.sources import parse_model_id
from scanner.store import ResultStore, model_key

logger = logging.getLogger(__name__)

FAULTS_ENV = "ZOOSCAN_FAULTS"
FAULT_DIR_ENV = "ZOOSCAN_FAULT_DIR"
FAULT_ACTIONS = ("raise", "kill", "kill_once", "hang", "slow")
FAULT_STAGES = ("spectra", "fit")
# Exceptions worth retrying inside the fit task (e.g. a network filesystem); everything else is final.
TRANSIENT_IO: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, InterruptedError, BlockingIOError)


class InjectedFault(RuntimeError):
    """Raised by the ``ZOOSCAN_FAULTS`` test hook (action ``raise``)."""


@dataclass(frozen=True)
class RunOptions:
    """Where and how a multi-model scan runs (the scientific options live in ``ScanConfig``).

    Attributes:
        results: results root; the scan goes to ``<results>/<scan_id>/``.
        scan_id: scan folder name; rerunning with the same id resumes.
        address: Ray cluster address (``auto``, ``ray://…``, ``host:port``); None starts embedded local Ray.
        num_cpus, num_gpus: resources of the embedded local Ray (None: detected). A logical GPU may be
            declared on a CPU machine: the actor is placed on it and computes on the CPU.
        max_in_flight: models submitted and not finished, at most (None: twice the number of workers).
        timeout_per_model: seconds before a model is abandoned as failed and its worker restarted (None: never).
        retry_failed: also redo models committed as failed by an earlier run.
        max_attempts: tries of a model whose spectrum worker died (SIGKILL, OOM, node loss).
        gpus_per_worker: GPU fraction per spectrum actor (0.5 puts two actors on each GPU).
        faults: model_id -> "action@stage" (the test hook, see the module docstring).
        fault_dir: folder for ``kill_once`` markers.
    """

    results: str
    scan_id: str
    address: str | None = None
    num_cpus: int | None = None
    num_gpus: float | None = None
    max_in_flight: int | None = None
    timeout_per_model: float | None = None
    retry_failed: bool = False
    max_attempts: int = 3
    gpus_per_worker: float = 1.0
    faults: Mapping[str, str] = field(default_factory=dict)
    fault_dir: str = ""

    def __post_init__(self) -> None:
        checks = (("num_cpus", self.num_cpus, 1), ("max_in_flight", self.max_in_flight, 1),
                  ("timeout_per_model", self.timeout_per_model, 1e-9), ("num_gpus", self.num_gpus, 0),
                  ("max_attempts", self.max_attempts, 1), ("gpus_per_worker", self.gpus_per_worker, 1e-9))
        for name, value, low in checks:
            if value is not None and value < low:
                raise ConfigError(f"the {name!r} option must be {'>= 1' if low == 1 else '> 0' if low else '>= 0'} "
                                  f"(or left out); got {value!r} instead")


@dataclass(frozen=True)
class ScanStats:
    """What one run of a scan did (written into ``scan.json``)."""

    runner: str
    total: int
    resumed: int
    ok: int
    failed: int
    seconds: float
    workers: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"runner": self.runner, "total": self.total, "resumed": self.resumed, "ok": self.ok,
                "failed": self.failed, "seconds": round(self.seconds, 3), "workers": self.workers}


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


# -- faults (test hook) ------------------------------------------------------------------------------
def parse_faults(text: str | None) -> dict[str, str]:
    """Parse ``"<model_id>=<action>[@fit];..."`` into {model_id: "action@stage"}.

    Raises:
        ConfigError: an entry without ``=``, an unknown action or stage.
    """
    faults: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in (text or "").split(";"))):
        model_id, sep, spec = entry.rpartition("=")
        action, _, stage = spec.partition("@")
        stage = stage or "spectra"
        if not sep or action not in FAULT_ACTIONS or stage not in FAULT_STAGES:
            raise ConfigError(f"{FAULTS_ENV} entry {entry!r} must read <model_id>=<action>[@fit] with action in "
                              f"{FAULT_ACTIONS}; unset {FAULTS_ENV} unless you are testing failures")
        faults[canonical_id(model_id)] = f"{action}@{stage}"
    return faults


def inject_fault(model_id: str, faults: Mapping[str, str], stage: str, fault_dir: str = "",
                 serial: bool = False) -> None:
    """Apply the fault configured for ``model_id`` at ``stage``, if any (see the module docstring)."""
    action, _, where = faults.get(model_id, "@").partition("@")
    if where != stage:
        return
    if action == "raise":
        raise InjectedFault(f"fault injected for {model_id} by {FAULTS_ENV} (test hook)")
    if action == "slow":
        time.sleep(2.0)
    if serial:
        return
    if action == "kill_once":
        marker = Path(fault_dir or os.environ.get(FAULT_DIR_ENV, "")) / f"{model_key(model_id)}.{stage}.killed"
        if not marker.parent.is_dir():
            raise ConfigError(f"kill_once needs {FAULT_DIR_ENV} (or RunOptions.fault_dir) set to an existing folder")
        if marker.exists():
            return
        marker.touch()
        action = "kill"
    if action == "kill":
        logger.warning("fault hook: SIGKILL of pid %d while scanning %s", os.getpid(), model_id)
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "hang":
        time.sleep(3600.0)


# -- pieces shared by both runners -------------------------------------------------------------------
def canonical_id(text: str) -> str:
    """The id a model's rows carry (``parse_model_id``), or ``text`` itself when it does not parse."""
    try:
        return parse_model_id(text).model_id
    except (ScannerError, ValueError):
        return text


def versions() -> dict[str, str]:
    """Installed versions of the packages that change results or runs (read from metadata, no imports)."""
    found = {}
    for name in ("zooscan", "torch", "ray", "numpy", "scipy", "pyarrow", "timm", "transformers"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = ""
    return found


def host_info() -> dict[str, Any]:
    """Host name, CPU count, GPU name (when torch sees one) and versions, for ``scan.json``."""
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {"hostname": socket.gethostname(), "cpu_count": os.cpu_count(), "gpu": gpu, "versions": versions()}


def committed_failed_keys(store: ResultStore) -> set[str]:
    """Model keys committed with status "failed" (what ``--retry-failed`` redoes)."""
    import pyarrow.parquet as pq

    keys = set()
    for key in store.done_keys():
        status = pq.read_table(store.path("models", key), columns=["status"]).column("status").to_pylist()
        if status and status[0] == Status.FAILED.value:
            keys.add(key)
    return keys


def models_to_do(model_ids: Iterable[str], store: ResultStore, retry_failed: bool) -> tuple[list[str], int]:
    """Distinct canonical ids still to scan, in catalog order, and how many are already committed."""
    done = store.done_keys() - (committed_failed_keys(store) if retry_failed else set())
    todo, seen, resumed = [], set(), 0
    for model_id in map(canonical_id, model_ids):
        if model_id in seen:
            continue
        seen.add(model_id)
        if model_key(model_id) in done:
            resumed += 1
        else:
            todo.append(model_id)
    return todo, resumed


def set_torch_threads(count: float) -> None:
    """Pin torch's thread count (a reused Ray worker keeps its first task's count otherwise, §1.3)."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(max(1, int(count)))


def commit_scan(store: ResultStore, scan: ModelScan, *, host: str, device: str, attempts: int) -> ModelResult:
    """Write one model's rows (spectra, layers, then the models/ marker); returns the model row."""
    model = replace(scan.model, attempts=attempts)
    spectra = [(item.layer_index, item.layer_name, item.evals) for item in scan.spectra]
    store.write_model(model, scan.layers, spectra, model_key=model_key(model.model_id), host=host, device=device)
    return model


def commit_failure(store: ResultStore, model_id: str, error_class: str, reason: str, attempts: int) -> ModelResult:
    """Write the failed row of a model that produced no result (exception, crash, timeout)."""
    model = ModelResult(model_id=model_id, source=model_id.split(":", 1)[0] if ":" in model_id else "",
                        status=Status.FAILED, reason=reason, error_class=error_class, attempts=attempts)
    store.write_model(model, [], [], model_key=model_key(model_id), host=socket.gethostname(), device="")
    logger.warning("failed %s after %d attempt(s): %s: %s", model_id, attempts, error_class, reason)
    return model


def spectra_device(spectra: ModelSpectra) -> str:
    """"cuda" when any layer's eigenvalues were computed on a GPU, else "cpu"."""
    devices = {item.record.device for item in spectra.items if isinstance(item, PendingLayer)}
    return "cuda" if "cuda" in devices else "cpu"


def open_store(config: ScanConfig, options: RunOptions, catalog_info: Mapping[str, Any]) -> ResultStore:
    store = ResultStore(options.results, options.scan_id)
    store.open_scan(config, catalog_info, host_info())
    store.cleanup_tmp()
    return store


# -- serial runner -----------------------------------------------------------------------------------
def run_serial(model_ids: Sequence[str], config: ScanConfig, options: RunOptions, *,
               catalog_info: Mapping[str, Any] | None = None, progress: ScanProgress | None = None) -> ScanStats:
    """Scan ``model_ids`` one after another in this process (no Ray); same rows as ``run_ray``."""
    started = time.monotonic()
    store = open_store(config, options, catalog_info or {})
    todo, resumed = models_to_do(model_ids, store, options.retry_failed)
    progress = progress or ScanProgress(resumed + len(todo), resumed=resumed)
    progress.total, progress.resumed = resumed + len(todo), resumed
    ok = failed = 0
    for model_id in todo:
        progress.submitted(model_id)
        try:
            inject_fault(model_id, options.faults, "spectra", serial=True)
            spectra = compute_spectra(model_id, config)
            inject_fault(model_id, options.faults, "fit", serial=True)
            model = commit_scan(store, finish_scan(spectra, config), host=socket.gethostname(),
                                device=spectra_device(spectra), attempts=1)
        except Exception as exc:  # one model's error must not stop the scan: it becomes its failed row
            model = commit_failure(store, model_id, type(exc).__name__, str(exc), attempts=1)
        ok += model.status is not Status.FAILED
        failed += model.status is Status.FAILED
        progress.finished(model_id, model.status is not Status.FAILED, model.reason)
    progress.close()
    stats = ScanStats("serial", resumed + len(todo), resumed, ok, failed, time.monotonic() - started)
    store.finish_scan(stats.to_dict())
    return stats


# -- Ray runner --------------------------------------------------------------------------------------
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
            ray.init(num_cpus=options.num_cpus, num_gpus=options.num_gpus, include_dashboard=False,
                     log_to_driver=False)
    try:
        resources = ray.cluster_resources()
        plan = plan_workers(resources.get("CPU", 1), resources.get("GPU", 0), config.device, options.gpus_per_worker)
        logger.info("ray: %s; %d spectrum worker(s) of %s CPU / %s GPU", resources, plan.workers, plan.num_cpus,
                    plan.num_gpus)
        worker_cls = ray.remote(_SpectrumWorker).options(num_cpus=plan.num_cpus, num_gpus=plan.num_gpus,
                                                         max_restarts=-1, max_task_retries=0)
        fit_task = ray.remote(_fit_and_commit).options(num_cpus=1, max_retries=3, retry_exceptions=list(TRANSIENT_IO))
        idle = [worker_cls.remote(config, options.faults, options.fault_dir)
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
