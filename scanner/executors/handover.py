"""The handover executor: scan in this process while a local Ray starts, then hand the queue over to Ray.

Starting an embedded Ray (GCS, raylet, agents, workers that import torch) takes about 8 s on a 2-CPU machine,
during which a plain Ray scan computes nothing: a 10-model scan spent most of its time waiting, and 120 small
models went through embedded Ray at 0.94× the rate of ``--serial``. Here ``start`` returns at once; a thread
starts the Ray executor while a serial executor scans models in this process. Each model goes to Ray as soon
as Ray has a free worker; until Ray has returned its first model, the serial executor also takes the next one
whenever it is idle (a Ray worker's first model pays its imports: 6.6 s for a small timm model here, while
this process scanned models in 0.1–0.3 s each); afterwards it only finishes the model it holds. The rows are
those of either executor alone (both run ``scanner.scan`` on the same machine with the same config). A Ray
that fails to start on a bad setup (``ConfigError``) stops the scan as before; any other start failure (Ray's
registration timeout on an overloaded host) leaves every model to this process, with a warning, instead of
ending the scan.

Ray is started only when it can pay off: once the models still waiting, at this process's own pace
(:func:`projected_seconds`), would take ``start_after_s`` — by default ``RAY_PAYOFF_S``, the time before a fresh
local Ray returns anything (``ray.init`` plus a worker's first-model imports). A scan shorter than that, or
one whose last model is already running here, never starts Ray (the 10-model shared zoo: 1.2 s, against 8.1 s
when Ray was always started and had to finish starting before it could be stopped).

Used for CPU scans on an embedded Ray only (``handover_applies``): a cluster (``--address``) is already
running; on a GPU machine the driver would compete with the GPU actors; ``--timeout-per-model`` needs
workers that can be stopped; the fault hooks target Ray workers.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence

from scanner.errors import ConfigError, ScannerError
from scanner.executors import Executor, InFlight, ModelOutcome

logger = logging.getLogger(__name__)

POLL_S = 0.05  # while both executors hold models: how long each wait looks at one of them
GATE_POLL_S = 0.1  # before Ray is started: how often the projection is looked at while a model runs here
RAY_PAYOFF_S = 12.0  # ``ray.init`` (5.1 s wall) + a worker's first-model imports (6.6 s), 2-CPU VM


def projected_seconds(finished_seconds: Sequence[float], running_for: float, waiting: int) -> float:
    """Seconds this process alone would need for the ``waiting`` models (not yet started: the work Ray could
    take) at the pace of the models it finished — their mean wall time —, or of the running one when that has
    already taken longer (a slow model starts Ray without waiting for it to end)."""
    mean = sum(finished_seconds) / len(finished_seconds) if finished_seconds else 0.0
    return max(mean, running_for) * max(waiting, 0)


class HandoverExecutor:
    """``local`` computes while ``remote`` starts in a thread; then ``remote`` takes every new model."""

    def __init__(self, local: Executor, remote: Executor, *, start_after_s: float = RAY_PAYOFF_S) -> None:
        self.local, self.remote = local, remote
        self.start_after_s = start_after_s  # Ray starts once the projected waiting work reaches this; 0: at once
        self._models = 0
        self._local_models: dict[str, float] = {}  # model id → when this process took it (until its outcome)
        self._finished: list[float] = []  # wall seconds of each model this process finished
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._closing = threading.Event()
        self._start_error: BaseException | None = None
        self._handed_over = False
        self.fallback = ""  # why Ray did not start, when the scan went on here without it

    @property
    def name(self) -> str:
        """"ray" once Ray was started (and did start), else the local executor's name: nothing ran on Ray."""
        return self.remote.name if self._thread is not None and not self.fallback else self.local.name

    def start(self, models: int) -> None:
        self._models = models
        self.local.start(models)
        if self.start_after_s <= 0:
            self._start_remote()

    def _start_remote(self) -> None:
        _exit_on_sigterm()
        self._thread = threading.Thread(target=self._remote_lifetime, args=(self._models,), name="zooscan-ray",
                                        daemon=True)
        self._thread.start()

    def _start_remote_if_worth_it(self) -> None:
        """Start Ray when the waiting models are projected to take ``start_after_s`` here (module docstring)."""
        if self._thread is not None:
            return
        now = time.monotonic()
        running = self.local.in_flight()
        running_for = max((now - job.started for job in running), default=0.0)
        projected = projected_seconds(self._finished, running_for, self._models - len(self._finished) - len(running))
        if projected >= self.start_after_s:
            logger.info("about %.0f s of work waiting at this pace: starting the local Ray", projected)
            self._start_remote()

    def _remote_lifetime(self, models: int) -> None:
        """Start the remote executor, then wait for ``close`` and close it — in this one thread: Ray's driver
        shutdown took 15 s when called from another thread than its ``ray.init`` (1.4 s from the same one)."""
        try:
            with _quiet_sigterm_warning():
                self.remote.start(models)
        except BaseException as exc:  # raised in the driver's thread by the next call that needs Ray
            self._start_error = exc
        finally:
            self._ready.set()
        self._closing.wait()
        try:
            self.remote.close()
        except Exception as exc:  # the scan's rows are committed; a failed shutdown is only worth a line
            logger.warning("closing the local Ray: %s: %s", type(exc).__name__, exc)

    def _remote_ready(self) -> bool:
        """Whether Ray is up. A start that failed on a bad setup (``ConfigError``) raises here, in the driver's
        thread; any other failure (a Ray that could not start on an overloaded host) leaves the scan to this
        process, with one warning."""
        if not self._ready.is_set() or self.fallback:
            return False
        error = self._start_error
        if error is None:
            return True
        if isinstance(error, ConfigError) or not isinstance(error, Exception):
            raise error
        first_line = (str(error).strip().splitlines() or [""])[0]
        if isinstance(error, ScannerError):  # zooscan's own message, which says what failed
            self.fallback = first_line
            logger.warning("%s; scanning every model in this process instead", self.fallback)
        else:
            self.fallback = f"{type(error).__name__}: {first_line}"
            logger.warning("the local Ray did not start (%s); scanning every model in this process instead",
                           self.fallback)
        return False

    def _up(self) -> bool:
        return self._ready.is_set() and self._start_error is None

    def _local_busy(self) -> bool:
        return bool(self.local.in_flight())

    # -- the executor protocol -------------------------------------------------------------------------
    def free_slots(self) -> int:
        self._start_remote_if_worth_it()
        remote = self.remote.free_slots() if self._remote_ready() else 0
        local = 0 if self._handed_over else self.local.free_slots()
        return remote + local

    def submit(self, model_id: str) -> None:
        if self._remote_ready() and self.remote.free_slots() > 0:
            self.remote.submit(model_id)
            return
        self._local_models[model_id] = time.monotonic()
        self.local.submit(model_id)

    def wait(self, timeout: float) -> Sequence[ModelOutcome]:
        if self._thread is None:
            if not self._local_busy():  # this process took nothing (no free slot): only Ray can go on
                self._start_remote()
            else:
                outcomes = self._local_wait(min(timeout, GATE_POLL_S))
                self._start_remote_if_worth_it()
                return outcomes
        if not self._remote_ready():
            if self._local_busy():
                return self._local_wait(timeout)
            self._ready.wait(timeout)
            return []
        if not self._local_busy():
            return self._remote_wait(timeout)
        outcomes = list(self._local_wait(0.0))
        outcomes += self._remote_wait(0.0 if outcomes else min(timeout, POLL_S))
        return outcomes

    def _remote_wait(self, timeout: float) -> Sequence[ModelOutcome]:
        outcomes = self.remote.wait(timeout)
        if not self._handed_over and any(o.error is None or not o.error.infrastructure for o in outcomes):
            self._handed_over = True
            logger.info("Ray returned its first model: it takes the remaining ones")
        return outcomes

    def _local_wait(self, timeout: float) -> Sequence[ModelOutcome]:
        outcomes = self.local.wait(timeout)
        now = time.monotonic()
        for outcome in outcomes:
            seconds = now - self._local_models.pop(outcome.model_id, now)
            if not _may_come_back(outcome):  # a model the driver requeues is still waiting, not finished
                self._finished.append(seconds)
        return outcomes

    def in_flight(self) -> Sequence[InFlight]:
        remote = self.remote.in_flight() if self._up() else []
        return [*self.local.in_flight(), *remote]

    def abandon(self, model_id: str) -> None:
        if model_id in self._local_models:
            del self._local_models[model_id]
            self.local.abandon(model_id)
        elif self._remote_ready():
            self.remote.abandon(model_id)

    def workers(self) -> int:
        return max(self.remote.workers() if self._up() else 0, 1)

    def status(self) -> str:
        if self._thread is None:
            return self.local.status()
        if not self._ready.is_set():
            return "starting the local Ray (scanning in this process meanwhile)"
        return self.remote.status()

    def upcoming(self, model_ids: Sequence[str]) -> None:
        if not self._handed_over:
            self.local.upcoming(model_ids)
        if self._up():
            self.remote.upcoming(model_ids)

    def committed(self, model_id: str) -> None:
        self.local.committed(model_id)
        if self._up():
            self.remote.committed(model_id)

    def close(self) -> None:
        """Close both; a Ray still starting is waited for, so that it can be shut down."""
        self.local.close()
        if self._thread is None:
            if self._models:
                logger.info("the local Ray was not started: the scan's projected work stayed under %g s, the time "
                            "Ray takes to return its first model (--no-handover starts it anyway)", self.start_after_s)
            return
        waited = time.monotonic()
        if not self._ready.is_set():
            logger.info("waiting for the local Ray to finish starting, to stop it")
        self._closing.set()
        self._thread.join()
        logger.debug("the local Ray stopped in %.1f s", time.monotonic() - waited)


def _may_come_back(outcome: ModelOutcome) -> bool:
    """Whether the driver may submit the model again (a hub outage, a worker that died while scanning it)."""
    return outcome.error is not None and (outcome.error.retry or outcome.error.infrastructure)


def _exit_on_sigterm() -> None:
    """What ``ray.init`` does in the main thread and cannot do in another: SIGTERM exits through ``sys.exit``, so
    the exit handlers (Ray's shutdown among them) run. Only where SIGTERM still has its default action."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(signum))


class _DropSigtermWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("SIGTERM handler is not set")


@contextlib.contextmanager
def _quiet_sigterm_warning() -> Iterator[None]:
    """Ray warns that a ``ray.init`` outside the main thread sets no SIGTERM handler; ``_exit_on_sigterm`` has."""
    ray_logger, dropped = logging.getLogger("ray._private.worker"), _DropSigtermWarning()
    ray_logger.addFilter(dropped)
    try:
        yield
    finally:
        ray_logger.removeFilter(dropped)


def handover_applies(address: str | None, device: str, num_gpus: float | None, timeout_per_model: float | None,
                     faults: object) -> bool:
    """Whether a Ray scan starts in this process while its local Ray starts (see the module docstring)."""
    if address is not None or device == "cuda" or num_gpus or timeout_per_model is not None or faults:
        return False
    try:
        import torch
    except ImportError:
        return True
    return not torch.cuda.is_available()
