"""The scan driver: one function, :func:`run_scan`, runs a multi-model scan with any executor.

It owns everything but the computing: the store (open, lock, resume plan, every write), progress, retries,
timeouts, failure rows, heartbeats and the exit status. Executors (``scanner.executors``) only turn a model
id into a ``ModelOutcome``; results travel back here and this process writes every file, so worker nodes need
no shared filesystem, and a model is reported done only after its ``models/`` marker reads back.

Retry rules: an error the executor marks ``infrastructure`` (node death, object loss, an actor that could
not start) is retried without spending one of the model's ``max_attempts`` (at most ``max_infra_retries``
times); a worker that died while scanning the model (``retry``) spends an attempt; anything else is final and
becomes the model's failed row. A model past ``timeout_per_model`` is abandoned (its worker stopped) and
committed as failed with error_class "Timeout".
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any, TextIO

from scanner.config import ScanConfig
from scanner.errors import ConfigError, StoreError
from scanner.executors import Executor, InFlight, ModelError, ModelOutcome
from scanner.progress import ScanProgress, format_duration
from scanner.records import ModelResult, Status
from scanner.scan import ModelScan, require_cuda_here
from scanner.sources import canonical_id, source_of
from scanner.store import ResultStore

logger = logging.getLogger(__name__)

UPCOMING = 64  # models of the queue's head the executor hears about (scanner.prefetch)
EXIT_OK = 0
EXIT_MODELS_FAILED = 3  # the scan finished, but more models failed than --max-failed-fraction allows
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


@dataclass(frozen=True)
class RunOptions:
    """Where and how a multi-model scan runs (the scientific options live in ``ScanConfig``).

    Attributes:
        results: results root; the scan goes to ``<results>/<scan_id>/``.
        scan_id: scan folder name; rerunning with the same id resumes.
        address: Ray cluster address (``auto``, ``ray://…``, ``host:port``); None starts a local Ray of its own
            (``address="local"``: it never joins a ``ray start`` cluster found on the machine).
        num_cpus, num_gpus: resources of that local Ray (None: detected). A logical GPU may be declared on a
            CPU machine: a GPU actor is placed on it and computes on the CPU (``--device auto``).
        max_in_flight: models submitted and not finished, at most (None: the executor's own limit, which is
            2 per spectrum actor on Ray and 1 in serial).
        timeout_per_model: seconds a model may compute before it is abandoned as failed and its worker stopped
            (None: never). ``--serial`` then runs each model in a child process that can be killed.
        retry_failed: also redo models committed as failed by an earlier run.
        max_attempts: tries of a model whose worker died while scanning it (SIGKILL, OOM).
        max_infra_retries: tries of a model lost to the cluster (node death, object loss); not attempts.
        gpus_per_worker: GPU fraction per spectrum actor (0.5 puts two actors on each GPU).
        wait_for_gpus: seconds to wait for a node able to compute (a GPU node for ``--device cuda``) before
            giving up; scans on an autoscaling cluster start with none.
        stall_s: seconds without a finished model before a heartbeat line names what is in flight.
        max_failed_fraction: failed models (this run's and earlier committed ones) over the scan's models
            above which the exit status is ``EXIT_MODELS_FAILED`` (default 0: any failure).
        faults: model_id -> "action@stage" (the test hook of ``scanner.faults``).
        fault_dir: folder for the ``kill_once`` and ``block`` markers.
        logical_gpus: let GPU actors on nodes without CUDA compute on the CPU even for ``--device cuda``
            (test hook ``ZOOSCAN_LOGICAL_GPUS=1``; for clusters that declare logical GPUs).
        handover: with a local Ray on a CPU machine, scan models in this process while Ray starts
            (``scanner.executors.handover``); False: only Ray's workers compute.
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
    max_infra_retries: int = 10
    gpus_per_worker: float = 1.0
    wait_for_gpus: float = 600.0
    stall_s: float = 120.0
    max_failed_fraction: float = 0.0
    faults: Mapping[str, str] = field(default_factory=dict)
    fault_dir: str = ""
    logical_gpus: bool = False
    handover: bool = True

    def __post_init__(self) -> None:
        checks = (("num_cpus", self.num_cpus, 1), ("max_in_flight", self.max_in_flight, 1),
                  ("timeout_per_model", self.timeout_per_model, 1e-9), ("num_gpus", self.num_gpus, 0),
                  ("max_attempts", self.max_attempts, 1), ("gpus_per_worker", self.gpus_per_worker, 1e-9),
                  ("max_infra_retries", self.max_infra_retries, 0), ("wait_for_gpus", self.wait_for_gpus, 0),
                  ("stall_s", self.stall_s, 1e-9), ("max_failed_fraction", self.max_failed_fraction, 0))
        for name, value, low in checks:
            if value is not None and value < low:
                raise ConfigError(f"the {name!r} option must be {'>= 1' if low == 1 else '> 0' if low else '>= 0'} "
                                  f"(or left out); got {value!r} instead")
        if self.max_failed_fraction > 1:
            raise ConfigError(f"the 'max_failed_fraction' option must be in [0, 1]; got {self.max_failed_fraction!r}")


@dataclass(frozen=True)
class ScanStats:
    """What one run of a scan did (written into ``scan.json``) and its exit status.

    Attributes:
        total: distinct models of the scan; resumed: skipped as committed by an earlier run, of which
            ``failed_before`` are failed rows (counted in the exit status; ``--retry-failed`` redoes them).
        ok, failed: models this run committed, by outcome. infra_retries: resubmissions after cluster faults.
        exit_status: ``EXIT_OK``, ``EXIT_MODELS_FAILED`` or ``EXIT_INTERRUPTED``.
    """

    runner: str
    total: int
    resumed: int
    ok: int
    failed: int
    seconds: float
    workers: int = 1
    failed_before: int = 0
    infra_retries: int = 0
    exit_status: int = EXIT_OK

    @property
    def failed_fraction(self) -> float:
        return (self.failed + self.failed_before) / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"runner": self.runner, "total": self.total, "resumed": self.resumed, "ok": self.ok,
                "failed": self.failed, "failed_before": self.failed_before, "seconds": round(self.seconds, 3),
                "workers": self.workers, "infra_retries": self.infra_retries, "exit_status": self.exit_status}

    def summary_line(self, scan_id: str) -> str:
        """The one line printed at the end of a scan."""
        earlier = f" (+{self.failed_before} failed earlier)" if self.failed_before else ""
        verdict = {EXIT_OK: "", EXIT_INTERRUPTED: "; interrupted, rerun to resume",
                   EXIT_MODELS_FAILED: f"; {self.failed_fraction:.1%} of models failed: exit {EXIT_MODELS_FAILED}"}
        return (f"scan {scan_id} {'stopped' if self.exit_status == EXIT_INTERRUPTED else 'finished'}: "
                f"{self.ok} ok, {self.failed} failed{earlier}, {self.resumed} already done, {self.seconds:.1f} s "
                f"({self.runner}, {self.workers} worker(s)){verdict.get(self.exit_status, '')}")


class ScanInterrupted(KeyboardInterrupt):
    """Ctrl-C during a scan: everything committed stays, models in flight are redone on resume."""

    def __init__(self, stats: ScanStats) -> None:
        super().__init__("interrupted")
        self.stats = stats


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


# -- the store side: resume plan, commits, read-back -----------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    todo: tuple[str, ...]
    resumed: int
    failed_before: int


def _plan(store: ResultStore, model_ids: Iterable[str], retry_failed: bool) -> _Plan:
    """Distinct canonical ids still to scan (catalog order), how many are committed, how many of those failed."""
    from scanner.storage_layout import read_markers

    ids = list(dict.fromkeys(map(canonical_id, model_ids)))
    plan = store.resume_plan(ids, retry_failed=retry_failed)
    markers = read_markers(store.storage, store.files(), [store.key(m) for m in plan.done])
    failed_before = sum(marker.status == Status.FAILED.value for marker in markers.values())
    for model_id, reason in plan.redo:
        logger.info("redoing %s: %s", model_id, reason)
    return _Plan(plan.todo, len(plan.done), failed_before)


def _commit(store: ResultStore, model: ModelResult, scan: ModelScan | None, host: str, device: str) -> ModelResult:
    """Write one model's files (spectra, layers, then the models/ marker) and read the marker back.

    Raises:
        StoreError: the marker does not read back as this model's row (a store that loses writes).
    """
    layers = scan.layers if scan is not None else ()
    spectra = scan.spectra if scan is not None else ()
    store.write_model(model, layers, spectra, host=host, device=device)
    found = store.read_marker(model.model_id)  # one file read, no listing: O(1) per commit
    problem = ("it is missing" if found is None else found.error if found.error
               else "" if found.model_id == model.model_id else "it holds another model")
    if problem:
        marker = store.path("models", store.key(model.model_id))
        raise StoreError(f"the commit marker of {model.model_id} does not read back from {marker} ({problem}); "
                         "check that the results folder is writable and not shared with another writer")
    return model


def failure_row(model_id: str, error: ModelError, attempts: int) -> ModelResult:
    return ModelResult(model_id=model_id, source=source_of(model_id), status=Status.FAILED, reason=error.reason,
                       error_class=error.error_class, attempts=attempts)


# -- the driver ------------------------------------------------------------------------------------------
MAX_ATTEMPTS_LOST = 3  # submissions of a model lost without an outcome before it gets a failed row
MAX_PENDING_WRITES = 32  # commits queued for the writer threads before the loop waits for them
# Writer threads: a model's commit is three fsynced files (10-130 ms here, mostly waiting on the disk, GIL
# released), so a few in parallel keep up with many workers (bench/results/cluster_results_path.txt).
WRITER_THREADS = 4


class _Writer:
    """The driver's writer threads: commits run beside the scheduling loop, so that a model's files (three
    fsynced Parquet writes and the read-back: 10-130 ms here) never keep idle workers waiting. Different
    models' files are independent; a commit counts (progress, ok/failed, ``executor.committed``) only once its
    marker has read back, in submission order."""

    def __init__(self, store: ResultStore, progress: ScanProgress, book: _Book, executor: Executor) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.store, self.progress, self.book, self.executor = store, progress, book, executor
        self.pool = ThreadPoolExecutor(WRITER_THREADS, "zooscan-writer")
        self.pending: deque[tuple[Any, ModelResult, str]] = deque()

    def commit(self, model: ModelResult, scan: ModelScan | None, host: str, device: str, reason: str) -> None:
        future = self.pool.submit(_commit, self.store, model, scan, host, device)
        self.pending.append((future, model, reason))
        if len(self.pending) > MAX_PENDING_WRITES:
            self.drain(block=True, keep=MAX_PENDING_WRITES // 2)

    def drain(self, block: bool = False, keep: int = 0) -> bool:
        """Count the commits that are done (all but ``keep`` when ``block``); True when any was counted.

        Raises:
            StoreError: a commit did not read back (see ``_commit``).
        """
        counted = False
        while self.pending and (self.pending[0][0].done() or (block and len(self.pending) > keep)):
            future, model, reason = self.pending.popleft()
            future.result()
            ok = model.status is not Status.FAILED
            self.book.ok += ok
            self.book.failed += not ok
            self.book.settled.add(model.model_id)
            self.progress.finished(model.model_id, ok, reason)
            self.executor.committed(model.model_id)  # its downloaded weights may go
            counted = True
        return counted

    def close(self) -> None:
        self.pool.shutdown(wait=True)



@dataclass
class _Book:
    """Per-model counters of one run (attempts spent, infrastructure retries) and the outcome counts."""

    attempts: dict[str, int] = field(default_factory=dict)
    infra: dict[str, int] = field(default_factory=dict)
    ok: int = 0
    failed: int = 0
    infra_retries: int = 0
    settled: set[str] = field(default_factory=set)  # models whose row this run committed


def run_scan(model_ids: Sequence[str], config: ScanConfig, options: RunOptions, executor: Executor, *,
             catalog_info: Mapping[str, Any] | None = None, stream: TextIO | None = None) -> ScanStats:
    """Scan ``model_ids`` into ``<results>/<scan_id>`` with ``executor``; every model ends as one row.

    Args:
        stream: where progress, heartbeats and the interrupt line go (None: nowhere, e.g. tests).

    Raises:
        ScanInterrupted: Ctrl-C; committed models stay, the lock is released.
        ConfigError, StoreError: a setup problem (e.g. another driver holds the scan, no GPU appeared).
    """
    started = time.monotonic()
    store = ResultStore(options.results, options.scan_id)
    store.open_scan(config, catalog_info or {}, host_info())
    try:
        store.cleanup_tmp()
        plan = _plan(store, model_ids, options.retry_failed)
        total = plan.resumed + len(plan.todo)
        progress = ScanProgress(total, resumed=plan.resumed, stream=stream)
        book = _Book()
        workers = 0
        try:
            if plan.todo:
                executor.start(len(plan.todo))
                _drive(plan.todo, config, options, executor, store, progress, book)
                workers = executor.workers()
        except KeyboardInterrupt:
            in_flight = [job.model_id for job in executor.in_flight()]
            executor.close()
            stats = _stats(executor.name, total, plan, book, started, workers, EXIT_INTERRUPTED)
            progress.note(f"interrupted: {book.ok + book.failed} model(s) committed by this run; "
                          f"{len(in_flight)} in flight will be redone when the same command is rerun")
            progress.close()
            store.finish_scan(stats.to_dict())
            raise ScanInterrupted(stats) from None
        finally:
            executor.close()
        progress.close()
        fraction_failed = (book.failed + plan.failed_before) / total if total else 0.0
        exit_status = EXIT_MODELS_FAILED if fraction_failed > options.max_failed_fraction else EXIT_OK
        stats = _stats(executor.name, total, plan, book, started, workers, exit_status)
        store.finish_scan(stats.to_dict())
        return stats
    finally:
        store.close()


def _stats(runner: str, total: int, plan: _Plan, book: _Book, started: float, workers: int,
           exit_status: int) -> ScanStats:
    return ScanStats(runner, total, plan.resumed, book.ok, book.failed, time.monotonic() - started, workers,
                     plan.failed_before, book.infra_retries, exit_status)


def _drive(todo: Sequence[str], config: ScanConfig, options: RunOptions, executor: Executor,
           store: ResultStore, progress: ScanProgress, book: _Book) -> None:
    """Submit, collect, retry, time out and heartbeat until every model of ``todo`` is committed."""
    queue: deque[str] = deque(todo)
    limit = options.max_in_flight
    last_event = last_beat = time.monotonic()
    writer = _Writer(store, progress, book, executor)
    try:
        while _account_for_every_model(todo, book, writer, queue, executor):
            while queue and executor.free_slots() > 0 and (limit is None or len(executor.in_flight()) < limit):
                model_id = queue.popleft()
                book.attempts[model_id] = book.attempts.get(model_id, 0) + 1
                if book.attempts[model_id] == 1 and not book.infra.get(model_id):
                    progress.submitted(model_id)
                executor.submit(model_id)
            executor.upcoming(list(itertools.islice(queue, UPCOMING)))  # hub weights are prefetched meanwhile
            if not queue and not executor.in_flight():
                writer.drain(block=True)
                continue
            for outcome in executor.wait(timeout=1.0):
                last_event = time.monotonic()
                _settle(outcome, options, writer, book, queue)
            if writer.drain():
                last_event = time.monotonic()
            now = time.monotonic()
            if options.timeout_per_model:
                for job in executor.in_flight():
                    if now - job.started > options.timeout_per_model:
                        executor.abandon(job.model_id)
                        last_event = now
                        error = ModelError("Timeout", f"no result within {options.timeout_per_model:g} s of "
                                           "computing (--timeout-per-model); its worker was stopped. Raise the "
                                           "timeout, or exclude the model")
                        _fail(job.model_id, error, writer, book)
            if now - max(last_event, last_beat) >= options.stall_s:
                last_beat = now
                progress.note(heartbeat_line(now - last_event, executor.in_flight(), executor.status(), now))
        writer.drain(block=True)
    finally:
        writer.close()  # waits for queued commits (also on Ctrl-C: they are quick and atomic)
        with contextlib.suppress(Exception):
            writer.drain(block=True)  # count them, for the interrupt line


def heartbeat_line(quiet_s: float, in_flight: Sequence[InFlight], status: str, now: float) -> str:
    """``no model finished for 2m00s; in flight: a (1m50s on node1), b (12s); waiting for …``."""
    jobs = ", ".join(f"{job.model_id} ({format_duration(now - job.started)}{' on ' + job.where if job.where else ''})"
                     for job in sorted(in_flight, key=lambda j: j.started)[:5])
    more = f" and {len(in_flight) - 5} more" if len(in_flight) > 5 else ""
    parts = [f"no model finished for {format_duration(quiet_s)}",
             f"in flight: {jobs}{more}" if jobs else "nothing in flight"]
    if status:
        parts.append(status)
    return "; ".join(parts)


def _settle(outcome: ModelOutcome, options: RunOptions, writer: _Writer, book: _Book, queue: deque[str]) -> None:
    """Commit an outcome, or requeue it (infrastructure fault, or a worker death with attempts left)."""
    model_id, error = outcome.model_id, outcome.error
    if error is not None and error.infrastructure and book.infra.get(model_id, 0) < options.max_infra_retries:
        book.infra[model_id] = book.infra.get(model_id, 0) + 1
        book.attempts[model_id] -= 1  # the cluster lost it: not the model's attempt
        book.infra_retries += 1
        logger.warning("resubmitting %s after a cluster fault (not counted as an attempt): %s: %s", model_id,
                       error.error_class, error.reason)
        queue.appendleft(model_id)
        return
    if error is not None and error.retry and book.attempts[model_id] < options.max_attempts:
        logger.warning("retrying %s (attempt %d of %d): %s: %s", model_id, book.attempts[model_id] + 1,
                       options.max_attempts, error.error_class, error.reason)
        queue.appendleft(model_id)
        return
    if error is not None or outcome.scan is None:
        _fail(model_id, error or ModelError("ExecutorError", "no result and no error"), writer, book)
        return
    model = replace(outcome.scan.model, attempts=book.attempts[model_id])
    if model.status is Status.FAILED:
        logger.warning("failed %s: %s: %s", model_id, model.error_class, model.reason)
    writer.commit(model, outcome.scan, outcome.host, outcome.device, model.reason)


def _account_for_every_model(todo: Sequence[str], book: _Book, writer: _Writer, queue: deque[str],
                             executor: Executor) -> bool:
    """Whether the driver loop goes on: True while models are queued, in flight or being written.

    Once nothing is, a model of ``todo`` that no outcome settled was lost by the executor: it is scanned again
    (each time counted as an attempt), and after ``MAX_ATTEMPTS_LOST`` attempts it gets a failed row, so a model
    is never silently missing from a scan."""
    if queue or executor.in_flight() or writer.pending:
        return True
    for model_id in todo:
        if model_id in book.settled:
            continue
        if book.attempts.get(model_id, 0) < MAX_ATTEMPTS_LOST:
            logger.warning("%s was lost by the executor without an outcome; scanning it again", model_id)
            queue.append(model_id)
        else:
            _fail(model_id, ModelError("LostByExecutor", "no outcome came back after "
                                       f"{MAX_ATTEMPTS_LOST} attempts (the executor lost the model)"), writer, book)
    return bool(queue or writer.pending)


def _fail(model_id: str, error: ModelError, writer: _Writer, book: _Book) -> None:
    attempts = max(1, book.attempts.get(model_id, 1))
    logger.warning("failed %s after %d attempt(s): %s: %s", model_id, attempts, error.error_class, error.reason)
    writer.commit(failure_row(model_id, error, attempts), None, socket.gethostname(), "",
                  f"{error.error_class}: {error.reason}")


def run_serial(model_ids: Sequence[str], config: ScanConfig, options: RunOptions, *,
               catalog_info: Mapping[str, Any] | None = None, stream: TextIO | None = None) -> ScanStats:
    """``run_scan`` with the serial executor (no Ray); same rows as a Ray scan."""
    from scanner.executors.serial import SerialExecutor

    if config.device == "cuda":
        require_cuda_here()
    executor = SerialExecutor(config, options.faults, options.fault_dir, killable=options.timeout_per_model is not None)
    return run_scan(model_ids, config, options, executor, catalog_info=catalog_info, stream=stream)
