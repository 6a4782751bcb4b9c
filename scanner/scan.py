"""Scan one model, sequentially and without Ray: source → layers → spectra → phases → records.

Follow a model from catalog row to Parquet row: ``scan_model("file:…/resnet20.th")`` →
``scanner.sources.open_source`` (reads tensors, never runs checkpoint code) → ``scanner.layers.iter_layers``
(tensors → matrices with a kind) → :func:`compute_spectra` (eigenvalues: the GPU-able step) →
:func:`finish_scan` (``scanner.spectra.layer.analyse_spectrum``: fits and phase → ``LayerResult``;
``scanner.summary.summarize_layers`` → ``ModelResult``) → ``scanner.store`` writes them.

Nothing here raises for a bad model or a bad layer: a layer that cannot be analysed becomes a row with
``status="failed"`` (or ``"skipped"``) and a reason, and a model whose weights cannot be read becomes a
failed model row that keeps the layer rows read before the failure. The two steps are separate so that
``scanner.distributed`` can run :func:`compute_spectra` on a GPU actor (returning only eigenvalues, never
tensors) and :func:`finish_scan` on a CPU task.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from scanner.cache import use as use_weight_cache
from scanner.config import ScanConfig
from scanner.errors import ConfigError, FitError, ScannerError, SourceError, SpectrumError
from scanner.layers import LayerMatrix, SkippedTensor, iter_layers
from scanner.records import LayerResult, ModelResult, Status
from scanner.sources import ModelRef, open_source, parse_model_id, source_of
from scanner.spectra.esd import esd_device, resolve_backend
from scanner.spectra.layer import LayerEigen, analyse_spectrum, layer_eigenvalues
from scanner.spectra.metrics import FLOAT32_EPS
from scanner.summary import summarize_layers

logger = logging.getLogger(__name__)

LayerCallback = Callable[[LayerResult], None]
T = TypeVar("T")
WINDOW_PER_WORKER = 8
DEVICE_MIN_WIDTH = 512
IN_FLIGHT_BYTES = 1 << 24  # 16 MiB: ResNet-50 on 2 threads 81 -> 67 MiB peak at the same speed as 64 MiB


@dataclass(frozen=True)
class LayerEigenvalues:
    """The ESD of one analysed layer, kept for ``spectra/`` (plots, refits)."""

    layer_index: int
    layer_name: str
    evals: NDArray[np.float64]


@dataclass(frozen=True)
class PendingLayer:
    """A layer whose eigenvalues are computed (step 1) and whose fits are not (step 2)."""

    record: LayerResult  # identity fields filled, status OK, no spectrum yet
    eig: LayerEigen
    eps: float


@dataclass(frozen=True)
class ModelSpectra:
    """Step 1 for a whole model: finished rows (skipped/failed) and pending layers, in model order."""

    model_id: str
    items: tuple[LayerResult | PendingLayer, ...]
    status: Status = Status.OK
    reason: str = ""
    error_class: str = ""
    digest: str = ""
    num_params: int = 0
    seconds_load: float = 0.0
    seconds_esd: float = 0.0


@dataclass(frozen=True)
class ModelScan:
    """Everything a scan of one model produced."""

    model: ModelResult
    layers: tuple[LayerResult, ...]
    spectra: tuple[LayerEigenvalues, ...]


def model_id_of(model: Any) -> str:
    """The canonical id of a model given as an id string, a ``ModelRef`` or an in-memory module."""
    if isinstance(model, ModelRef):
        return model.model_id
    if isinstance(model, str):
        return parse_model_id(model).model_id
    return f"module:{type(model).__name__}"


def size_skip_reason(item: LayerMatrix, config: ScanConfig) -> str:
    """Why a matrix is too small or too large to analyse under ``config`` ("" when it is not)."""
    k, rows, cols = item.matrices.shape
    num_evals = k * min(rows, cols)
    if num_evals < config.min_evals:
        return (
            f"only {num_evals} eigenvalue(s) (< min_evals={config.min_evals}): too small for a spectral fit; "
            "lower min_evals (--min-evals) to analyse it anyway"
        )
    if config.max_evals is not None and num_evals > config.max_evals:
        return f"{num_evals} eigenvalues exceed max_evals={config.max_evals}; raise max_evals (--max-evals) to analyse it"
    return ""


def _weights_eps(matrices: np.ndarray) -> float:
    return float(np.finfo(matrices.dtype).eps) if np.issubdtype(matrices.dtype, np.floating) else FLOAT32_EPS


def _base_record(model_id: str, item: LayerMatrix | SkippedTensor, status: Status, reason: str = "",
                 **timing: Any) -> LayerResult:
    return LayerResult(
        model_id=model_id, layer_index=item.index, layer_name=item.name, kind=item.kind,
        shape=tuple(item.shape), status=status, reason=reason, num_params=item.num_params,
        dtype_stored=item.dtype_stored, dequantized=item.dequantized,
        note=item.note if isinstance(item, LayerMatrix) else "", **timing,
    )


def reference_scale(item: LayerMatrix, conv: str) -> float:
    """The reference tool's eigenvalue factor for a layer: Conv2d kernels are multiplied by √(rf/2) with
    rf = 1 when pooled and kh·kw per position (weightwatcher 0.7.7 ``conv2d_norm``), so λ by rf/2."""
    if item.kind != "conv2d" or len(item.shape) != 4:
        return 1.0
    return 0.5 if conv == "pooled" else item.shape[2] * item.shape[3] / 2.0


def layer_step_one(model_id: str, item: LayerMatrix | SkippedTensor, config: ScanConfig,
                   backend: str) -> LayerResult | PendingLayer:
    """Eigenvalues of one layer, or its finished skipped/failed row."""
    if isinstance(item, SkippedTensor):
        return _base_record(model_id, item, Status.SKIPPED, item.reason)
    reason = size_skip_reason(item, config)
    if reason:
        return _base_record(model_id, item, Status.SKIPPED, reason)
    started = time.perf_counter()
    try:
        eig = layer_eigenvalues(item.matrices, randomize=config.randomize, seed=config.seed, backend=backend,
                                reference_scale=reference_scale(item, config.conv), null=config.null)
    except SpectrumError as exc:
        return _base_record(model_id, item, Status.FAILED, str(exc))
    except Exception as exc:  # e.g. an eigensolver that did not converge, a GPU out of memory: this layer fails
        logger.exception("unexpected error computing the ESD of %s of %s", item.name, model_id)
        return _base_record(model_id, item, Status.FAILED, f"{type(exc).__name__}: {exc}")
    record = _base_record(model_id, item, Status.OK, seconds_esd=time.perf_counter() - started,
                          device=esd_device(backend))
    return PendingLayer(record=record, eig=eig, eps=_weights_eps(item.matrices))


def require_cuda_here() -> None:
    """Refuse ``device="cuda"`` (``--device cuda``) on a machine where torch sees no CUDA device: the scan would
    otherwise compute on the host (serial scans, a local Ray, ``zooscan analyze`` and the Python API)."""
    try:
        import torch

        available = bool(torch.cuda.is_available())
    except ImportError:
        available = False
    if not available:
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA device on this machine; use "
                          "--device auto (GPU when present) or cpu, or run on a GPU machine / --address a cluster "
                          "with GPU nodes")


def config_backend(config: ScanConfig) -> str:
    """The ESD backend for ``config.device``: "numpy" for cpu, "torch" for cuda, else auto-detected."""
    return resolve_backend({"cpu": "numpy", "cuda": "torch"}.get(config.device, "auto"))


def layer_backend(item: LayerMatrix | SkippedTensor, backend: str) -> str:
    """Where one layer's eigenvalues are computed: layers narrower than ``DEVICE_MIN_WIDTH`` (the smaller
    side of its matrices) go to the host (numpy, on the scan's threads) even when the model's backend is
    torch, because a device eigensolve of a small matrix is latency-bound: on an H100, float64 Gram +
    ``eigvalsh`` took 2 ms at 256² and 11 ms at 1024² (docs/decisions.md, "Matrices and the ESD"), while one host core
    here takes 2 ms at 256² and 80 ms at 1024² — so below 512 the host's cores, in parallel, win.
    Not yet measured on a GPU inside a scan (``bench/gpu_scan_check.py`` compares both routes)."""
    if backend != "torch" or not isinstance(item, LayerMatrix):
        return backend
    return backend if min(item.matrices.shape[1:]) >= DEVICE_MIN_WIDTH else "numpy"


def run_in_order(steps: Iterator[tuple[int, Callable[[], T]]], workers: int, *,
                 max_bytes: int = IN_FLIGHT_BYTES) -> Iterator[T]:
    """Call each step and yield the results in order, ``workers`` at a time on threads, BLAS on one thread.

    Args:
        steps: (bytes the step holds, the step) pairs.
        workers: threads; 1 runs the steps here, in order.
        max_bytes: steps submitted and not yet handed over hold at most about this much memory (beyond
            ``workers`` steps), and at most ``WINDOW_PER_WORKER``·workers steps are in flight: a deep window,
            so that a slow layer at the head does not idle the other threads (ResNet-50 full analysis on
            2 threads: 2.26 s with 2 steps per worker, 1.40 s with 8).

    A step that holds 0 bytes (a finished skipped row, no eigenvalues to compute) is called here at once
    rather than handed to a thread: the hand-over costs more than the step (ResNet-56: 221 of its 277 rows).

    Eigenvalue steps spend their time in BLAS/LAPACK and in numpy's shuffle, which release the GIL, so
    layers run in parallel. BLAS is held to one thread (``threadpoolctl``) even for ``workers=1``: on the
    matrices of real layers (M ≤ 4096) OpenBLAS's own threads were slower than one thread (ResNet-50 full
    analysis, 2-core VM: 4.9 s with a 2-thread BLAS, 2.1 s with one), and numpy and scipy each load their
    own OpenBLAS, whose spinning thread pools compete.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        if workers <= 1:
            for _, step in steps:
                yield step()
            return
        with ThreadPoolExecutor(workers, "zooscan-esd") as pool:
            window: deque[tuple[int, Future[T]]] = deque()
            held = 0
            try:
                for nbytes, step in steps:
                    window.append((nbytes, pool.submit(step) if nbytes else _done(step)))
                    held += nbytes
                    while len(window) >= WINDOW_PER_WORKER * workers or (len(window) > workers and held > max_bytes):
                        nbytes, future = window.popleft()
                        held -= nbytes
                        yield future.result()
            except Exception:  # the source failed mid-model: hand over the layers already submitted, then raise
                while window:
                    yield window.popleft()[1].result()
                raise
            while window:
                yield window.popleft()[1].result()


def _done(step: Callable[[], T]) -> Future[T]:
    """A future already holding the result (or the exception) of ``step``, called here."""
    future: Future[T] = Future()
    try:
        future.set_result(step())
    except Exception as exc:  # handed over by the window in order, like a pool step's error
        future.set_exception(exc)
    return future


def _step_bytes(item: LayerMatrix | SkippedTensor, config: ScanConfig) -> int:
    """Memory a layer's step-one holds: its matrices when they will be solved, else 0 (a finished row)."""
    if isinstance(item, LayerMatrix) and not size_skip_reason(item, config):
        return int(item.matrices.nbytes)
    return 0


def compute_spectra(model: Any, config: ScanConfig | None = None) -> ModelSpectra:
    """Step 1 for a whole model: read weights, form matrices, compute eigenvalues. Never raises."""
    config = config or ScanConfig()
    try:
        model_id = model_id_of(model)
    except ScannerError as exc:
        return ModelSpectra(str(model), (), Status.FAILED, str(exc), type(exc).__name__)
    backend = config_backend(config)
    items: list[LayerResult | PendingLayer] = []
    outcome: dict[str, Any] = {}
    started = time.perf_counter()
    load_seconds = 0.0
    try:
        use_weight_cache(config)  # hub weights: --cache-dir, --cache-max-gb (scanner.cache)
        source = open_source(model)
        source.max_layer_bytes, source.max_evals = config.max_layer_bytes, config.max_evals  # checked before reading
        load_seconds = time.perf_counter() - started
        with source:
            source.begin_digest()  # a checkpoint file's sha256, beside the layers (recorded below)
            steps = ((_step_bytes(item, config),
                      partial(layer_step_one, model_id, item, config, layer_backend(item, backend)))
                     for item in iter_layers(source, conv=config.conv, qkv=config.qkv))
            items.extend(run_in_order(steps, config.layer_threads()))
            outcome = {"digest": source.digest(), "num_params": int(source.num_params or 0)}
    except SourceError as exc:
        outcome = {"status": Status.FAILED, "reason": str(exc), "error_class": type(exc).__name__}
    except Exception as exc:  # an unknown loader failure fails this model, not the scan
        logger.exception("unexpected error reading %s", model_id)
        outcome = {"status": Status.FAILED, "reason": f"{type(exc).__name__}: {str(exc) or 'out of memory'}",
                   "error_class": type(exc).__name__}
    if not items and outcome.get("status") is None:
        outcome.update(status=Status.FAILED, reason="the model has no weight tensors to analyse",
                       error_class="SourceError")
    return ModelSpectra(model_id, tuple(items), seconds_load=load_seconds,
                        seconds_esd=time.perf_counter() - started - load_seconds, **outcome)


def finish_layer(pending: PendingLayer, config: ScanConfig) -> tuple[LayerResult, LayerEigenvalues | None]:
    """Step 2 for one layer: fits and phase from its eigenvalues. Errors become a failed row."""
    started = time.perf_counter()
    try:
        analysed = analyse_spectrum(pending.eig, config, eps=pending.eps)
    except (SpectrumError, FitError) as exc:
        return replace(pending.record, status=Status.FAILED, reason=str(exc)), None
    except Exception as exc:  # a bug in one layer must not lose the model: record it and go on
        logger.exception("unexpected error fitting %s", pending.record.layer_name)
        return replace(pending.record, status=Status.FAILED, reason=f"{type(exc).__name__}: {exc}"), None
    record = replace(pending.record, spectrum=analysed.spectrum, seconds_fit=time.perf_counter() - started)
    return record, LayerEigenvalues(record.layer_index, record.layer_name, analysed.evals)


def finish_scan(spectra: ModelSpectra, config: ScanConfig | None = None, *,
                on_layer: LayerCallback | None = None) -> ModelScan:
    """Step 2 for a whole model: fit every pending layer, aggregate, build the model row."""
    config = config or ScanConfig()
    started = time.perf_counter()
    layers: list[LayerResult] = []
    kept: list[LayerEigenvalues] = []
    for item in spectra.items:
        if isinstance(item, PendingLayer):
            record, evals = finish_layer(item, config)
            if evals is not None and config.save_spectra:
                kept.append(evals)
        else:
            record = item
        layers.append(record)
        if on_layer is not None:
            on_layer(record)
    failed = spectra.status is Status.OK and not any(layer.status is Status.OK for layer in layers)
    model = ModelResult(
        model_id=spectra.model_id,
        source=source_of(spectra.model_id),
        status=Status.FAILED if failed else spectra.status,
        reason="no analysable layer" if failed else spectra.reason,
        error_class="NoAnalysableLayer" if failed else spectra.error_class,
        digest=spectra.digest,
        num_params=spectra.num_params,
        summary=summarize_layers(layers),
        seconds_load=spectra.seconds_load,
        seconds_total=spectra.seconds_load + spectra.seconds_esd + time.perf_counter() - started,
    )
    return ModelScan(model, tuple(layers), tuple(kept))


def scan_model(model: Any, config: ScanConfig | None = None, *, on_layer: LayerCallback | None = None) -> ModelScan:
    """Scan one model into records (both steps, in this process). Never raises for bad weights.

    Args:
        model: a model id ("timm:…", "hf:…", "file:…", "random:…"), a ``ModelRef`` or a ``torch.nn.Module``.
        config: scan options (default ``ScanConfig()``).
        on_layer: called with each layer's record as soon as it is final (progress, logging).
    """
    config = config or ScanConfig()
    return finish_scan(compute_spectra(model, config), config, on_layer=on_layer)
