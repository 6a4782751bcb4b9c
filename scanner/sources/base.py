"""What every weight source yields: named tensors, one at a time, plus a digest of what was read.

A source never instantiates a model it does not have to and never runs code from a checkpoint; it only
hands out tensors in their original dtype on the CPU, with whatever is known about the module that owns
each one (its class name, a canonical family, conv groups, RNN gate count, attention heads). Turning
tensors into matrices is ``scanner.layers``' job.
"""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Canonical module families, decided once when a module is known (isinstance), so that subclasses
# (timm's StdConv2d, torch's NonDynamicallyQuantizableLinear, ...) are treated like their base.
FAMILIES = ("linear", "conv", "conv_transpose", "conv1d_hf", "embedding", "rnn", "mha", "experts", "norm")

# Buffers of BatchNorm layers: running statistics, not weights (excluded from num_params).
RUNNING_STAT_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class ModuleInfo:
    """What is known about the module owning a tensor (from ``named_modules()``, never from file names).

    Attributes:
        module_type: the owning module's class name ("Linear", "Conv2d", "LSTM", "Conv1D", ...).
        family: one of ``FAMILIES`` when the class is a recognised layer type, else None.
        groups: conv groups (1 for dense convs, ``in_channels`` for depthwise).
        gates: stacked gate blocks in RNN weights: 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n), 1 (RNN).
        heads: attention heads, needed to de-interleave per-head fused qkv ("query_key_value").
        is_buffer: a registered buffer, not a trainable parameter.
        derived: computed from other parameters (a parametrized weight, e.g. weight norm's g·v/‖v‖): analysed,
            but not counted in ``num_params`` (its stored components are).
    """

    module_type: str | None = None
    family: str | None = None
    groups: int = 1
    gates: int | None = None
    heads: int | None = None
    is_buffer: bool = False
    derived: bool = False


@dataclass(frozen=True)
class NamedTensor:
    """One tensor of a model, on the CPU, in its stored dtype.

    Attributes:
        name: state-dict key ("layer1.0.conv1.weight"), with a DataParallel "module." prefix removed.
        tensor: the values (CPU, original dtype, never rescaled).
        module_type: the owning torch module's class name when known, else None (plain state dicts).
        family: canonical family (see ``FAMILIES``) when known, else None: kinds are then inferred from
            names and shapes by ``scanner.layers``.
        groups, gates, heads, is_buffer, derived: see ``ModuleInfo``.
        dtype_stored: how the values were stored in the file ("float32", "float16", "int8", "uint8", ...) when
            that differs from ``tensor.dtype`` or the reader knows it; None means ``tensor.dtype``.
        dequantized: the values were stored quantised and the reader dequantised them (scale, zero point).
        note: what the reader assumed or did to the layout ("stored [in, out] (Keras Dense), transposed").
        skip_reason: non-empty when the reader refused to read the values (a declared size over a budget);
            ``tensor`` is then a meta tensor of the declared shape, never allocated.
    """

    name: str
    tensor: torch.Tensor
    module_type: str | None = None
    family: str | None = None
    groups: int = 1
    gates: int | None = None
    heads: int | None = None
    is_buffer: bool = False
    derived: bool = False
    dtype_stored: str | None = None
    dequantized: bool = False
    note: str = ""
    skip_reason: str = ""

    @classmethod
    def with_info(cls, name: str, tensor: torch.Tensor, info: ModuleInfo | None, skip_reason: str = "") -> NamedTensor:
        """Attach what is known about the owning module (``info`` may be None) and the reader's ``skip_reason``."""
        if info is None:
            return cls(name, tensor, skip_reason=skip_reason)
        return cls(name, tensor, info.module_type, info.family, info.groups, info.gates, info.heads, info.is_buffer,
                   info.derived, skip_reason=skip_reason)


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a CPU tensor (any dtype, bfloat16 and float8 included), without a copy when contiguous."""
    import torch

    flat = tensor.detach().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())  # type: ignore[arg-type]  # ndarray is a buffer


def storage_key(tensor: torch.Tensor) -> tuple:
    """(storage address, offset, shape, strides, dtype): equal for views of the same memory (tied tensors)."""
    return (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride(),
            tensor.dtype)


def counts_as_param(item: NamedTensor) -> bool:
    """Whether a tensor counts towards ``num_params``: floating point (or dequantised), not a buffer, a running
    statistic or derived."""
    if item.is_buffer or item.derived or item.name.endswith(RUNNING_STAT_SUFFIXES):
        return False
    return bool(item.tensor.is_floating_point() or item.tensor.is_complex())


DEFAULT_MAX_LAYER_BYTES = 2 << 30  # 2 GiB of stored values per tensor (ScanConfig.max_layer_bytes)


def declared_size_reason(shape: tuple[int, ...], itemsize: int, *, max_bytes: int | None,
                         max_evals: int | None = None) -> str:
    """Why a tensor of a declared ``shape`` must not be read (checked before any allocation), or "".

    ``numel × itemsize`` against ``max_bytes`` (the ``max_layer_bytes`` budget), and a lower bound of the
    eigenvalues the tensor's largest matrix would give against ``max_evals``: min(rows, cols) / 4 for 2-D (a
    fused or gate-stacked matrix is cut in up to four), min(kernel positions × min(out, in), experts × min(rows,
    cols)) for 3-D, kernel positions × min(out, in) above (PyTorch layout). The exact check follows in the scan.
    """
    numel = 1
    for d in shape:
        numel *= d
    if max_bytes is not None and numel * itemsize > max_bytes:
        return (f"declared size {numel * itemsize} bytes ({'x'.join(map(str, shape))} x {itemsize} B) exceeds "
                f"max_layer_bytes={max_bytes}; not read (raise --max-layer-bytes to analyse it)")
    if max_evals is not None and len(shape) >= 2 and numel:
        if len(shape) == 2:
            evals = min(shape) // 4
        else:
            evals = numel // (shape[0] * shape[1]) * min(shape[0], shape[1])
            if len(shape) == 3:
                evals = min(evals, shape[0] * min(shape[1], shape[2]))
        if evals > max_evals:
            return f"{evals} eigenvalues exceed max_evals={max_evals}; not read (raise max_evals, --max-evals, to analyse it)"
    return ""


def check_shape(shape: object, what: str) -> tuple[int, ...]:
    """A declared shape as a tuple of non-negative ints; raises ValueError naming ``what`` otherwise
    (float, bool, negative or non-list dimensions)."""
    if not isinstance(shape, (list, tuple)):
        raise ValueError(f"{what}: shape {shape!r} is not a list of dimensions")
    dims = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int):
            raise ValueError(f"{what}: dimension {d!r} is not an integer")
        if d < 0:
            raise ValueError(f"{what}: negative dimension {d}")
        dims.append(int(d))
    return tuple(dims)


HASH_CHUNK_BYTES = 1 << 22  # read and hashed at a time: the memory a file digest holds


def sha256_files(paths: list[str], chunk_bytes: int = HASH_CHUNK_BYTES) -> str:
    """sha256 over the files' bytes in the given order (read in chunks; memory stays at one chunk)."""
    digest = _sha256_unless_stopped(paths, chunk_bytes, None)
    assert digest is not None  # nothing to stop it
    return digest


def _sha256_unless_stopped(paths: list[str], chunk_bytes: int, stop: threading.Event | None) -> str | None:
    """:func:`sha256_files`, or None once ``stop`` is set (checked before each chunk)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while block := handle.read(chunk_bytes):
                if stop is not None and stop.is_set():
                    return None
                digest.update(block)
    return digest.hexdigest()


class FilesDigest:
    """The model digest of a checkpoint read from files — sha256 of their bytes, in order — computed on a thread
    of its own from :meth:`start` (``WeightSource.begin_digest``, when a scan opens the source) on, beside the
    layers' eigensolves.

    Computed after the last layer, it was a sequential tail on one core: 0.36 s of sha256 over the 438 MB of
    all-mpnet-base-v2, about a tenth of its reference-mode scan on the 2-CPU VM, while the layer threads had
    finished. hashlib and file reads release the GIL, so the thread takes the cores' idle moments instead; the
    CPU time is the same. :meth:`value` waits for it (or computes it here if the thread was never started or
    was stopped); :meth:`stop` ends the thread at its next chunk (a model given up half-way)."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._value: str | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        """Begin hashing on a daemon thread (once; later calls do nothing)."""
        if self._thread is None and self._value is None:
            self._thread = threading.Thread(target=self._run, name="zooscan-digest", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._value = _sha256_unless_stopped(self.paths, HASH_CHUNK_BYTES, self._stop)
        except BaseException as exc:  # e.g. the file vanished: raised to the caller of value()
            self._error = exc

    def value(self) -> str:
        """The hex digest; raises what reading the files raised (OSError)."""
        thread = self._thread
        if thread is not None:
            thread.join()
            self._thread = None
            if self._error is not None:
                error, self._error = self._error, None
                raise error
        if self._value is None:
            self._value = sha256_files(self.paths)
        return self._value

    def stop(self) -> None:
        """Let a running thread end at its next chunk (the value is then computed on demand)."""
        self._stop.set()


class WeightSource(ABC):
    """A model's weights as a lazy stream of ``NamedTensor``.

    Subclasses implement ``_iter_tensors`` (one tensor in memory at a time where the format allows) and
    ``digest``. ``tensors()`` counts parameters on the way, so ``num_params`` is known after iteration.
    Use as a context manager, or call ``close()``.
    """

    model_id: str
    # Budgets checked from declared shapes before a tensor is read (set by the scan from ScanConfig).
    max_layer_bytes: int | None = DEFAULT_MAX_LAYER_BYTES
    max_evals: int | None = None
    # True when every yielded tensor stays alive for the whole iteration (a model in memory, a mapped state
    # dict), so that storage addresses identify tied tensors; False for streamed formats, where a freed
    # buffer's address may be reused by the next tensor.
    stable_storage: bool = False
    # True when ``reread`` can read one yielded tensor again (see there).
    rereadable: bool = False

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self._num_params: int | None = None

    def tensors(self) -> Iterator[NamedTensor]:
        """Yield every tensor of the model in storage order; afterwards ``num_params`` is set.

        Tied tensors (same storage, offset, shape and strides) are counted once in ``num_params`` when the
        source's storage is stable; they are still all yielded, so that ``scanner.layers`` can name the twins.
        """
        total = 0
        seen: set[tuple] = set()
        for item in self._iter_tensors():
            if counts_as_param(item):
                key = storage_key(item.tensor)
                if not (self.stable_storage and key in seen):
                    total += item.tensor.numel()
                    seen.add(key)
            yield item
            del item  # let the consumer's reference be the last one: one tensor in memory, not two
        self._num_params = total

    @abstractmethod
    def _iter_tensors(self) -> Iterator[NamedTensor]:
        """Yield the tensors (implemented by each source)."""

    def reread(self, position: int) -> torch.Tensor | None:
        """The tensor yielded at ``position`` (0-based, in the order of ``tensors()``), read again — the same
        values — or None where the source cannot read one tensor on its own (the default).

        A streamed source that can (``rereadable``) lets ``scanner.layers`` fingerprint each tensor by a
        sample of its entries instead of all of its bytes, and confirm a matching sample by comparing the
        two tensors' bytes; one that cannot is fingerprinted in full (sha256 of every byte), which is then the
        proof of a duplicate. Positions, not names: names need not be unique (shards, RNN nodes)."""
        return None

    def begin_digest(self) -> None:  # noqa: B027 (optional hook: only file sources hash on a thread)
        """Start computing :meth:`digest` in the background where the source can (its files: :class:`FilesDigest`),
        so that it overlaps reading and solving; called by the scan, which records the digest (a listing of the
        layers does not, and pays nothing for it). A no-op by default."""

    @abstractmethod
    def digest(self) -> str:
        """sha256 of the weights read: of the checkpoint files, or of names and tensor bytes in memory."""

    @property
    def num_params(self) -> int:
        """Number of floating-point parameter values (buffers and BatchNorm running statistics excluded).

        Raises:
            RuntimeError: before ``tensors()`` has been iterated to the end.
        """
        if self._num_params is None:
            raise RuntimeError(f"{self.model_id}: num_params is known only after tensors() has been fully iterated")
        return self._num_params

    def close(self) -> None:  # noqa: B027 (optional hook: most sources hold nothing to release)
        """Release open files or models (the default holds nothing)."""

    def __enter__(self) -> WeightSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_id!r})"
