"""What every format reader shares: lazy tensor entries, the source that streams them, layout converters.

A reader parses a file's header or index into ``Entry`` records (name, declared shape, stored dtype, byte
size, a ``load`` callable) without reading any tensor; every declared byte range has already been checked
against the file's size. ``FormatSource`` then checks each entry against the scan's budgets
(``max_layer_bytes``, ``max_evals``) from the declared shape, *before* calling ``load``, and yields
``NamedTensor`` records in PyTorch layout (out, in, *kernel), so that ``scanner.layers`` cuts them like any
PyTorch checkpoint. Nothing here imports or runs code from a file.

TensorFlow layouts (Keras, TFJS, TF checkpoints) are converted by :func:`tf_to_torch`:

* dense kernel [in, out] → (out, in);
* convolution kernel HWIO (and W·IO, DHWIO) → (O, I, *kernel);
* depthwise kernel [H, W, C, M] → (C·M, 1, H, W) with groups = C (output channel c·M + m, as TF orders it);
* transposed-convolution kernel [H, W, out, in] → (in, out, H, W) (PyTorch ConvTranspose layout);
* RNN kernels [in, G·H] → (G·H, in) with the gate blocks reordered to PyTorch's order (LSTM i, f, g, o;
  GRU r, z, n): Keras LSTM is i, f, c, o (the same), Keras GRU z, r, h (blocks 1, 0, 2).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scanner.errors import SourceError
from scanner.sources.base import FilesDigest, NamedTensor, WeightSource, declared_size_reason

if TYPE_CHECKING:
    import torch

# numpy dtype name -> itemsize, for the stored dtypes readers report
ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "int16": 2,
            "int8": 1, "uint64": 8, "uint32": 4, "uint16": 2, "uint8": 1, "bool": 1, "int4": 1, "uint4": 1}


@dataclass(frozen=True)
class Entry:
    """One tensor of a file, not yet read.

    Attributes:
        name: the tensor's name in the file (a layer path, an initializer name).
        shape: the shape ``load`` returns (PyTorch layout after conversion).
        dtype_stored: how the file stores the values ("float32", "float16", "int8", ...).
        nbytes: bytes the stored values take (checked against the file before the entry was made).
        load: reads the values; returns a float32/float64 (or integer/bool, when not dequantised) numpy array
            of ``shape``.
        family, groups, gates, module_type: what is known about the layer (see ``scanner.sources.base``).
        dequantized: ``load`` dequantises stored integers (scale, zero point).
        note: the stored layout and what was assumed.
        skip: non-empty when the values are not read at all (an unsupported stored dtype): the reason.
    """

    name: str
    shape: tuple[int, ...]
    dtype_stored: str
    nbytes: int
    load: Callable[[], np.ndarray]
    family: str | None = None
    groups: int = 1
    gates: int | None = None
    module_type: str | None = None
    dequantized: bool = False
    note: str = ""
    is_buffer: bool = False
    skip: str = ""


_WEIGHT_FAMILIES = ("linear", "conv", "conv_transpose", "embedding")


class FormatSource(WeightSource):
    """A model read by a format reader: streams ``entries``, one tensor in memory at a time (two while a
    duplicate is confirmed: ``reread``).

    Args:
        model_id: the id recorded with the results.
        files: the files read, in order (their bytes make the digest).
        entries: the tensors, in file order.
        on_close: releases what the entries read from (an open archive or HDF5 file), called by ``close``.
    """

    rereadable = True  # an entry's reader can load it again

    def __init__(self, model_id: str, files: list[Path], entries: list[Entry],
                 on_close: Callable[[], None] | None = None) -> None:
        from scanner.sources.files import rnn_gates_from_shapes

        super().__init__(model_id)
        self._on_close = on_close
        self.files = files
        # plain arrays named like PyTorch RNN weights (weight_ih_l0, weight_hh_l0): gate count from the shapes
        gates = rnn_gates_from_shapes({e.name: e.shape for e in entries if e.family is None})
        self.entries = [dataclasses.replace(e, gates=gates[e.name]) if e.name in gates and e.gates is None else e
                        for e in entries]
        self._digest = FilesDigest([str(f) for f in files])

    def _iter_tensors(self) -> Iterator[NamedTensor]:
        import torch

        for entry in self.entries:
            info = {"module_type": entry.module_type, "family": entry.family, "groups": entry.groups,
                    "gates": entry.gates, "is_buffer": entry.is_buffer, "dtype_stored": entry.dtype_stored,
                    "dequantized": entry.dequantized, "note": entry.note}
            reason = entry.skip or declared_size_reason(entry.shape, ITEMSIZE.get(entry.dtype_stored, 4),
                                          max_bytes=self.max_layer_bytes, max_evals=self.max_evals)
            if reason:
                yield NamedTensor(entry.name, torch.empty(entry.shape, device="meta"), skip_reason=reason,
                                  **info)  # type: ignore[arg-type]
                continue
            yield NamedTensor(_yielded_name(entry), self._load(entry), **info)  # type: ignore[arg-type]

    def _load(self, entry: Entry) -> torch.Tensor:
        values = entry.load()
        if tuple(values.shape) != entry.shape:
            raise SourceError(f"{self.model_id}: tensor {entry.name!r} read as {tuple(values.shape)}, declared "
                              f"{entry.shape}; the file is inconsistent")
        return _as_tensor(values)

    def reread(self, position: int) -> torch.Tensor | None:
        """The entry yielded at ``position`` (one per entry, in order) loaded again by its reader."""
        return self._load(self.entries[position]) if 0 <= position < len(self.entries) else None

    def begin_digest(self) -> None:
        """Hash the files on a thread of their own from now on (:class:`~scanner.sources.base.FilesDigest`)."""
        self._digest.start()

    def digest(self) -> str:
        """sha256 over the files' bytes, in reading order (on its thread if begun, else here)."""
        return self._digest.value()

    def close(self) -> None:
        """Stop the digest's thread (a model given up before its digest was read), then ``on_close``."""
        self._digest.stop()
        if self._on_close is not None:
            self._on_close()


def _yielded_name(entry: Entry) -> str:
    """The entry's name, with ".weight" added to a known module's weight (as ``scanner.layers`` expects it)."""
    if entry.family in _WEIGHT_FAMILIES and not entry.name.endswith(".weight"):
        return entry.name + ".weight"
    return entry.name


def _as_tensor(values: np.ndarray) -> torch.Tensor:
    import torch

    values = np.ascontiguousarray(values)
    if not values.flags.writeable:
        values = values.copy()
    return torch.from_numpy(values)


def inside(folder: Path, name: str, what: str) -> Path:
    """``folder / name`` resolved, refused unless it stays inside ``folder`` (no ``..``, no absolute paths, no
    symlinks out) and is a regular file. The message names the entry, never the files around it."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise SourceError(f"{what}: an entry names no valid file ({name!r})")
    root = folder.resolve()
    target = (root / name).resolve()
    if os.path.isabs(name) or (target != root and root not in target.parents):
        raise SourceError(f"{what}: entry {name!r} points outside its folder; refused")
    if not target.is_file():
        raise SourceError(f"{what}: entry {name!r} is missing or not a regular file")
    return target


def check_range(path: Path | str, offset: int, nbytes: int, size: int, name: str) -> None:
    """Raise SourceError unless [offset, offset + nbytes) lies inside a file of ``size`` bytes."""
    if offset < 0 or nbytes < 0 or offset + nbytes > size:
        raise SourceError(f"{path}: tensor {name!r} declares bytes [{offset}, {offset + nbytes}) but the file has "
                          f"{size} bytes; the file is truncated or corrupt (re-download it)")


def read_bytes(path: Path | str, offset: int, nbytes: int) -> bytes:
    """``nbytes`` bytes of a file from ``offset`` (the range was checked when the entry was made)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(nbytes)
    if len(data) != nbytes:
        raise SourceError(f"{path}: truncated while reading {nbytes} bytes at {offset}; re-download it")
    return data


def numel(shape: tuple[int, ...]) -> int:
    total = 1
    for d in shape:
        total *= d
    return total


GATE_ORDER_TO_TORCH = {"ifco": (0, 1, 2, 3), "iofc": (0, 2, 3, 1), "ijfo": (0, 2, 1, 3), "zrh": (1, 0, 2)}


def reorder_gates(w: np.ndarray, order: str) -> np.ndarray:
    """Rows of a (G·H, in) gate-stacked matrix reordered from ``order`` to PyTorch's (LSTM i,f,g,o; GRU r,z,n)."""
    perm = GATE_ORDER_TO_TORCH[order]
    blocks = np.split(w, len(perm), axis=0)
    return np.concatenate([blocks[p] for p in perm], axis=0)


# role -> (family, note); see the module docstring
TF_ROLES = ("dense", "conv", "depthwise", "conv_transpose", "embedding", "lstm", "gru", "rnn")


def tf_shape(shape: tuple[int, ...], role: str) -> tuple[tuple[int, ...], int]:
    """(PyTorch-layout shape, groups) of a TensorFlow-layout tensor of ``shape`` in ``role``."""
    if role in ("dense", "lstm", "gru", "rnn") and len(shape) == 2:
        return (shape[1], shape[0]), 1
    if role == "conv" and len(shape) >= 3:
        return (shape[-1], shape[-2], *shape[:-2]), 1
    if role == "depthwise" and len(shape) == 4:
        return (shape[2] * shape[3], 1, shape[0], shape[1]), shape[2]
    if role == "conv_transpose" and len(shape) >= 3:
        return (shape[-1], shape[-2], *shape[:-2]), 1
    return shape, 1


def tf_to_torch(w: np.ndarray, role: str) -> np.ndarray:
    """A TensorFlow-layout array in PyTorch layout (see the module docstring); other roles unchanged."""
    if role in ("dense", "lstm", "rnn") and w.ndim == 2:
        return w.T
    if role == "gru" and w.ndim == 2:
        return reorder_gates(w.T, "zrh")
    if role in ("conv", "conv_transpose") and w.ndim >= 3:
        return np.moveaxis(np.moveaxis(w, -1, 0), -1, 1)
    if role == "depthwise" and w.ndim == 4:
        h, k, c, m = w.shape
        return w.transpose(2, 3, 0, 1).reshape(c * m, 1, h, k)
    return w


TF_NOTES = {
    "dense": "stored [in, out] (TensorFlow dense kernel), transposed",
    "conv": "stored HWIO (TensorFlow conv kernel), permuted to OIHW",
    "depthwise": "stored [H, W, C, M] (TensorFlow depthwise kernel), as C*M x 1 slices, groups=C",
    "conv_transpose": "stored [H, W, out, in] (TensorFlow transposed conv), permuted to in x out x H x W",
    "lstm": "stored [in, 4H] (TensorFlow LSTM kernel, gates i, f, c, o), transposed",
    "gru": "stored [in, 3H] (TensorFlow GRU kernel, gates z, r, h), transposed and reordered to r, z, h",
    "rnn": "stored [in, H] (TensorFlow RNN kernel), transposed",
    "embedding": "",
}
TF_FAMILY = {"dense": "linear", "conv": "conv", "depthwise": "conv", "conv_transpose": "conv_transpose",
             "embedding": "embedding", "lstm": "rnn", "gru": "rnn", "rnn": "rnn"}
TF_GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def tf_entry(  # noqa: PLR0913 (the stored facts of one tensor, all needed)
             name: str, shape: tuple[int, ...], dtype_stored: str, nbytes: int, load: Callable[[], np.ndarray],
             role: str | None, *, module_type: str | None = None, assumed: str = "",
             dequantized: bool = False) -> Entry:
    """An entry for a TensorFlow-layout tensor whose ``role`` is known (or None: 1-D/unknown, left as stored).

    RNN kernels named ``recurrent_kernel`` are [H, G·H] and convert like the input kernel."""
    if role is None:
        return Entry(name, shape, dtype_stored, nbytes, load, None, module_type=module_type, dequantized=dequantized,
                     note=assumed)
    torch_shape, groups = tf_shape(shape, role)
    note = "; ".join(n for n in (TF_NOTES.get(role, ""), assumed) if n)
    if role in TF_GATES:
        name = rnn_name(name.rsplit("/", 1)[0], "recurrent" in name.rsplit("/", 1)[-1])
    return Entry(name, torch_shape, dtype_stored, nbytes, lambda: tf_to_torch(load(), role), TF_FAMILY[role],
                 groups=groups, gates=TF_GATES.get(role), module_type=module_type or f"({role}, inferred)",
                 dequantized=dequantized, note=note)


def rnn_name(layer: str, recurrent: bool, reverse: bool = False) -> str:
    """PyTorch's name for an RNN weight (``<layer>.weight_ih_l0``, ``weight_hh_l0``, ``_reverse``), which is
    what ``scanner.layers`` recognises as gate-stacked."""
    return f"{layer}.weight_{'hh' if recurrent else 'ih'}_l0{'_reverse' if reverse else ''}"


_KERAS_CLASS_ROLES = {
    "Dense": "dense", "EinsumDense": None, "Conv1D": "conv", "Conv2D": "conv", "Conv3D": "conv",
    "Convolution1D": "conv", "Convolution2D": "conv", "Convolution3D": "conv", "SeparableConv2D": None,
    "DepthwiseConv2D": "depthwise", "Conv2DTranspose": "conv_transpose", "Conv1DTranspose": "conv_transpose",
    "Conv3DTranspose": "conv_transpose", "Deconvolution2D": "conv_transpose", "Embedding": "embedding",
    "LSTM": "lstm", "GRU": "gru", "SimpleRNN": "rnn", "CuDNNLSTM": "lstm", "CuDNNGRU": "gru", "LSTMCell": "lstm",
    "GRUCell": "gru", "SimpleRNNCell": "rnn",
}


def keras_role(class_name: str | None, leaf: str, shape: tuple[int, ...]) -> tuple[str | None, str]:
    """(role, assumption note) of a Keras/TF variable from its layer class (when known) and its name.

    ``leaf`` is the variable's own name ("kernel", "recurrent_kernel", "depthwise_kernel", "embeddings", ...)."""
    leaf = leaf.split(":")[0]
    if len(shape) < 2:
        return None, ""
    if leaf == "depthwise_kernel":
        return "depthwise", ""
    if leaf == "pointwise_kernel":
        return "conv", ""
    if leaf == "embeddings":
        return "embedding", ""
    role = _KERAS_CLASS_ROLES.get(class_name or "", "?")
    if role is None:
        return None, f"{class_name} weight: layout not converted"
    if role in ("lstm", "gru", "rnn") and leaf in ("kernel", "recurrent_kernel"):
        return role, ""
    if role != "?" and leaf in ("kernel", "weight", "weights"):
        return role, ""
    # no class known: guess from the rank, and say so
    if leaf in ("kernel", "weights", "w") or class_name is None:
        if len(shape) == 2:
            return "dense", "layer class unknown: assumed a dense kernel [in, out]"
        if len(shape) in (3, 4, 5):
            return "conv", "layer class unknown: assumed a convolution kernel (H)WIO"
    return None, ""
