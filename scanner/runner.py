"""Running a multi-model scan: options, resume bookkeeping, commits, and the serial runner (no Ray).

``scanner.distributed.run_ray`` and :func:`run_serial` produce the same rows: every model of the list
ends as exactly one ``models/`` row, ok or failed; models already committed are skipped (resume).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any

from scanner.config import ScanConfig
from scanner.errors import ConfigError
from scanner.faults import inject_fault
from scanner.progress import ScanProgress
from scanner.records import ModelResult, Status
from scanner.scan import ModelScan, ModelSpectra, PendingLayer, compute_spectra, finish_scan
from scanner.sources import canonical_id, source_of
from scanner.store import ResultStore, model_key

logger = logging.getLogger(__name__)


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
    model = ModelResult(model_id=model_id, source=source_of(model_id),
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
