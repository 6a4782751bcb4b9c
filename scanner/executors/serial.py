"""The serial executor: one model at a time on this machine, without Ray.

Two ways to run the model, both answering the driver within its wait timeout so that Ctrl-C is handled
at once (the eigensolver's threads are never waited for):

- in a thread of this process (default): cheapest; the thread cannot be stopped, so the driver exits the
  process on Ctrl-C instead of waiting for a running eigensolve;
- in a child process (``killable=True``, chosen by ``--timeout-per-model``): the child is SIGKILLed on a
  timeout (and on Ctrl-C) and a fresh one serves the next model.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

from scanner.cache import use
from scanner.config import ScanConfig
from scanner.errors import ScannerError
from scanner.executors import InFlight, ModelError, ModelOutcome
from scanner.faults import inject_fault
from scanner.prefetch import Prefetcher
from scanner.scan import ModelSpectra, PendingLayer, compute_spectra, finish_scan
from scanner.sources.hub import hub_outage

logger = logging.getLogger(__name__)

CHILD_START_S = 300.0  # a fresh interpreter importing numpy/scipy/torch on a loaded machine


def spectra_device(spectra: ModelSpectra) -> str:
    """"cuda" when any layer's eigenvalues were computed on a GPU, else "cpu"."""
    devices = {item.record.device for item in spectra.items if isinstance(item, PendingLayer)}
    return "cuda" if "cuda" in devices else "cpu"


def scan_one(model_id: str, config: ScanConfig, faults: Mapping[str, str], fault_dir: str = "", *,
             in_driver: bool = True) -> ModelOutcome:
    """Both steps of one model here; any exception becomes the outcome's error (never raised).

    ``in_driver``: the fault hook's kill/hang actions would hit the driver itself, so only raise/slow apply.
    """
    try:
        inject_fault(model_id, faults, "spectra", fault_dir, serial=in_driver)
        spectra = compute_spectra(model_id, config)
        if hub_outage(spectra.error_class):  # the hub failed, not the model: retried, not counted as an attempt
            return ModelOutcome(model_id, error=ModelError(spectra.error_class, spectra.reason, infrastructure=True))
        inject_fault(model_id, faults, "fit", fault_dir, serial=in_driver)
        return ModelOutcome(model_id, scan=finish_scan(spectra, config), host=socket.gethostname(),
                            device=spectra_device(spectra))
    except Exception as exc:  # one model's error must not stop the scan: it becomes its failed row
        return ModelOutcome(model_id, error=ModelError(type(exc).__name__, str(exc).strip()))


class SerialExecutor:
    """One model at a time (see the module docstring)."""

    name = "serial"

    def __init__(self, config: ScanConfig, faults: Mapping[str, str] | None = None, fault_dir: str = "", *,
                 killable: bool = False) -> None:
        self.config, self.faults, self.fault_dir, self.killable = config, dict(faults or {}), fault_dir, killable
        self._job: InFlight | None = None
        self._results: queue.Queue[ModelOutcome] = queue.Queue()
        self._child: Any = None
        self._conn: Connection | None = None
        self._weights: Prefetcher | None = None  # hub weights of the next models, in thread mode

    def start(self, models: int) -> None:
        if not self.killable:  # a child process fetches its own weights and releases them after each model
            self._weights = Prefetcher.for_scan(self.config)
        else:
            self._child_conn()  # start-up (imports) is not counted in the first model's timeout

    def upcoming(self, model_ids: Sequence[str]) -> None:
        if self._weights is not None:  # the submitted model is kept even if its thread has not claimed it yet
            self._weights.ahead(model_ids, keep=[self._job.model_id] if self._job is not None else [])

    def committed(self, model_id: str) -> None:
        if self._weights is not None:
            self._weights.done(model_id)

    def workers(self) -> int:
        return 1

    def status(self) -> str:
        return ""

    def free_slots(self) -> int:
        return 0 if self._job is not None else 1

    def in_flight(self) -> Sequence[InFlight]:
        return [self._job] if self._job is not None else []

    def submit(self, model_id: str) -> None:
        if self.killable:
            conn = self._child_conn()  # a fresh child after a timeout: its start-up is not the model's time
            self._job = InFlight(model_id, time.monotonic(), "child process")
            conn.send(model_id)
            return
        self._job = InFlight(model_id, time.monotonic(), "")
        thread = threading.Thread(target=self._scan, args=(model_id,), name="zooscan-serial", daemon=True)
        thread.start()

    def _scan(self, model_id: str) -> None:
        if self._weights is not None:
            self._weights.claim(model_id)  # waits for its download if the prefetch has it under way
        self._results.put(scan_one(model_id, self.config, self.faults, self.fault_dir))

    def wait(self, timeout: float) -> Sequence[ModelOutcome]:
        if self._job is None:
            return []
        outcome = self._wait_child(timeout) if self.killable else self._wait_thread(timeout)
        if outcome is not None:
            self._job = None
            return [outcome]
        return []

    def _wait_thread(self, timeout: float) -> ModelOutcome | None:
        try:
            return self._results.get(timeout=timeout)
        except queue.Empty:
            return None

    def _wait_child(self, timeout: float) -> ModelOutcome | None:
        assert self._conn is not None and self._job is not None
        try:
            if not self._conn.poll(timeout):
                return None
            outcome: ModelOutcome = self._conn.recv()
            return outcome
        except (EOFError, OSError):  # the child died while scanning (SIGKILL, OOM): worth another attempt
            code = self._child.exitcode if self._child is not None else None
            self._stop_child()
            return ModelOutcome(self._job.model_id, error=ModelError(
                "WorkerCrashedError", f"the scanning process died (exit code {code}) while scanning the model",
                retry=True))

    def abandon(self, model_id: str) -> None:
        if self._job is None or self._job.model_id != model_id:
            return
        if self.killable:
            self._stop_child()
        else:
            logger.warning("cannot stop %s: it runs in this process (use --timeout-per-model)", model_id)
        self._job = None

    def close(self) -> None:
        self._stop_child()
        self._job = None
        if self._weights is not None:
            self._weights.close()

    # -- the child process ---------------------------------------------------------------------------
    def _child_conn(self) -> Connection:
        if self._child is None or not self._child.is_alive():
            self._stop_child()
            context = multiprocessing.get_context("spawn")  # no fork of a threaded (BLAS, torch) parent
            parent, child = context.Pipe()
            self._child = context.Process(target=_child_main, name="zooscan-serial-child", daemon=True,
                                          args=(child, self.config, self.faults, self.fault_dir))
            self._child.start()
            child.close()
            self._conn = parent
            if not parent.poll(CHILD_START_S) or parent.recv() != "ready":
                self._stop_child()
                raise ScannerError(f"the scanning child process did not start within {CHILD_START_S:g} s")
        assert self._conn is not None
        return self._conn

    def _stop_child(self) -> None:
        if self._child is not None:
            if self._child.is_alive() and self._child.pid:
                os.kill(self._child.pid, signal.SIGKILL)
            self._child.join(timeout=10)
            self._child = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _child_main(conn: Connection, config: ScanConfig, faults: Mapping[str, str], fault_dir: str) -> None:
    """Serve model ids until the pipe closes; Ctrl-C is the parent's to handle (it kills this process)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import scanner.scan
    import scanner.sources.safetensors_reader
    import scanner.spectra.layer  # noqa: F401

    with contextlib.suppress(ImportError):  # readers import torch lazily; seconds on a loaded machine
        import torch  # noqa: F401

    conn.send("ready")
    while True:
        try:
            model_id = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(scan_one(model_id, config, faults, fault_dir, in_driver=False))
        use(config).release(model_id)  # its downloaded weights go (unless --keep-weights)
