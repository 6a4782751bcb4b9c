"""Torch zip archives read without running code: TorchScript models and checkpoints that pickle config objects.

``torch.load(weights_only=True)`` refuses TorchScript archives and any pickle naming a class outside its
allow-list (a config dataclass, ``np.float64`` metadata); ``weights_only=False`` or ``torch.jit.load`` would
run code from the file. This module reads ``<archive>/data.pkl`` with an unpickler that **imports nothing**:
every global becomes an inert placeholder class that records its arguments and state, except

* the tensor rebuild functions (``torch._utils._rebuild_tensor_v2``, ``_rebuild_parameter``), which become
  lazy tensor records, checked against their storage before anything is read;
* ``collections.OrderedDict`` and ``_codecs.encode`` (plain containers and bytes).

A pickle that names a global able to run code when trusted (``builtins.exec``/``eval``/``getattr``, ``os``,
``subprocess``, ``importlib``, ``pickle``, ...) is refused with ``UnsafeCheckpointError`` naming that global:
nothing would run here either, but such a file is not a checkpoint.

Storages are the ``<archive>/data/<key>`` members; a tensor's storage is read only when the tensor is, after its
declared size has been checked against the member's size and the scan's ``max_layer_bytes``. Tensors are found
by walking the unpickled objects (dicts, lists, placeholder states) with dotted names; a placeholder that is a
``torch.nn`` module (``__torch__.torch.nn.modules.conv.Conv2d`` in TorchScript) gives its tensors a family.
Checkpoints holding optimizer state are read from their ``state_dict``/``model``/``model_state_dict`` entry.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scanner.errors import SourceError, UnsafeCheckpointError
from scanner.sources.formats._common import Entry, FormatSource

# legacy storage class name -> numpy dtype name
STORAGE_DTYPES = {"FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
                  "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
                  "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool"}
_ITEMSIZE = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "int16": 2, "int8": 1,
             "uint8": 1, "bool": 1}
NESTED_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "module", "net", "network", "params")
SKIPPED_KEYS = ("optimizer", "optimizer_state_dict", "optim", "optimizer_states", "scheduler", "lr_scheduler",
                "lr_schedulers", "scaler", "callbacks", "loops")
MAX_DEPTH = 64
_MODULE_FAMILIES = {"Linear": "linear", "NonDynamicallyQuantizableLinear": "linear", "Bilinear": None,
                    "Conv1d": "conv", "Conv2d": "conv", "Conv3d": "conv", "ConvTranspose1d": "conv_transpose",
                    "ConvTranspose2d": "conv_transpose", "ConvTranspose3d": "conv_transpose", "Embedding": "embedding",
                    "LSTM": "rnn", "GRU": "rnn", "RNN": "rnn", "LSTMCell": "rnn", "GRUCell": "rnn", "RNNCell": "rnn", "MultiheadAttention": "mha", "BatchNorm1d": "norm",
                    "BatchNorm2d": "norm", "BatchNorm3d": "norm", "LayerNorm": "norm", "GroupNorm": "norm",
                    "InstanceNorm1d": "norm", "InstanceNorm2d": "norm"}
_RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1, "LSTMCell": 4, "GRUCell": 3, "RNNCell": 1}


class Placeholder:
    """An inert stand-in for any class a pickle names: records its arguments, state and items; runs nothing."""

    qualname = "?"
    args: tuple
    kwargs: dict
    state: Any
    items: list

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:  # NEWOBJ calls __new__ alone
        self = super().__new__(cls)
        self.args, self.kwargs, self.state, self.items = args, kwargs, None, []
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.items.append((len(self.items), value))

    def extend(self, values: Any) -> None:
        for value in values:
            self.append(value)

    def __repr__(self) -> str:
        return f"<{self.qualname}>"


def _placeholder(module: str, name: str) -> type[Placeholder]:
    return type(name, (Placeholder,), {"qualname": f"{module}.{name}", "__module__": "zooscan.placeholder"})


@dataclass(frozen=True)
class StorageRef:
    """A storage of the archive: member ``data/<key>``, its dtype and declared element count."""

    key: str
    dtype: str
    numel: int


@dataclass(frozen=True)
class LazyTensor:
    """A tensor not yet read: a strided view of a storage."""

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


@dataclass(frozen=True)
class PickledArray:
    """A numpy array pickled by value (``numpy.core.multiarray._reconstruct`` + BUILD): its bytes are in the pickle."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    def load(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype=np.dtype(self.dtype)).reshape(self.shape)


_NUMERIC_KINDS = "fiub"


def pickled_array(obj: Placeholder) -> PickledArray | None:
    """The array a ``_reconstruct`` placeholder describes, when numeric and consistent; else None (object arrays,
    lists instead of bytes, sizes that disagree are never read)."""
    state = obj.state
    if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[4], bytes)):
        return None
    _, shape, dtype, _fortran, data = state
    if not isinstance(dtype, Placeholder) or not dtype.args or not isinstance(dtype.args[0], str):
        return None
    order = dtype.state[1] if isinstance(dtype.state, tuple) and len(dtype.state) > 1 else "<"
    try:
        np_dtype = np.dtype(dtype.args[0]).newbyteorder("<" if order in ("<", "|", "=") else ">")
        dims = _ints(shape, "shape")
    except (TypeError, ValueError, SourceError):
        return None
    if np_dtype.kind not in _NUMERIC_KINDS or int(np.prod(dims, dtype=np.int64)) * np_dtype.itemsize != len(data):
        return None
    return PickledArray(np_dtype.str, dims, data)


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise SourceError(f"tensor {what} {value!r} is not a tuple of integers; the checkpoint is corrupt")
    if any(v < 0 for v in value):
        raise SourceError(f"tensor {what} {value!r} has a negative entry; the checkpoint is corrupt")
    return tuple(value)


def view_extent(offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> int:
    """Elements of its storage a strided view reaches: offset + Σ(size − 1)·stride + 1, or 0 for an empty view
    (non-negative sizes and strides of equal length)."""
    return offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True)) + 1 if all(size) else 0


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> LazyTensor | Placeholder:
    if not isinstance(storage, StorageRef):
        return Placeholder(storage, offset, size, stride)
    size_t, stride_t = _ints(size, "size"), _ints(stride, "stride")
    if not isinstance(offset, int) or offset < 0 or len(size_t) != len(stride_t):
        raise SourceError(f"tensor view (offset {offset!r}, size {size_t}, stride {stride_t}) is malformed")
    extent = view_extent(offset, size_t, stride_t)
    if extent > storage.numel:
        raise SourceError(f"tensor view {size_t} at offset {offset} reaches element {extent} of a storage of "
                          f"{storage.numel}; the checkpoint is corrupt")
    return LazyTensor(storage, offset, size_t, stride_t)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


def _codecs_encode(text: Any, encoding: str = "latin1") -> bytes:
    return text.encode(encoding) if isinstance(text, str) else b""


# Globals that run code when a pickle is trusted: a file naming one is refused, not read.
DENIED_MODULES = ("os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "runpy", "pickle",
                  "_pickle", "marshal", "ctypes", "code", "codeop", "pty", "webbrowser", "types", "functools",
                  "operator", "pathlib", "io", "_io", "tempfile", "multiprocessing", "asyncio", "signal", "torch.hub",
                  "torch.serialization", "torch.jit", "numpy.testing", "pdb", "commands", "platform", "ctypes.util")
# builtins that only build values (getattr appears in pickles of nested classes and enum members): placeholders
SAFE_BUILTINS = ("set", "frozenset", "slice", "complex", "bytearray", "bytes", "dict", "list", "tuple", "int", "float",
                 "str", "bool", "object", "range", "long", "unicode", "getattr", "type", "NotImplemented", "Ellipsis")


def denied(module: str, name: str) -> bool:
    """Whether a pickle global is one that can run code (see ``DENIED_MODULES``)."""
    if module in ("builtins", "__builtin__"):
        return name not in SAFE_BUILTINS
    return module in DENIED_MODULES or module.split(".")[0] in DENIED_MODULES


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): _codecs_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl`` of a torch archive importing nothing (see the module docstring)."""

    def __init__(self, data: bytes, storages: dict[str, int]) -> None:
        super().__init__(io.BytesIO(data))
        self.storages = storages  # key -> member size in bytes
        self.globals_seen: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        self.globals_seen.add(f"{module}.{name}")
        if denied(module, name):
            raise UnsafeCheckpointError(
                f"refused: this checkpoint is a pickle that needs code execution to load: it names the global "
                f"{module}.{name}, which runs code under torch.load(weights_only=False). zooscan never runs code from checkpoints. To convert a trusted "
                "file, load it yourself and save only the weights (torch.save(model.state_dict(), 'weights.pt') or "
                "safetensors.torch.save_file(state_dict, 'model.safetensors')).")
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        return _placeholder(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage" or len(pid) < 5:
            raise SourceError(f"unknown persistent id {str(pid)[:80]!r}; not a torch archive")
        _, storage_type, key, _location, count = pid[:5]
        dtype = storage_type if isinstance(storage_type, str) else None
        if isinstance(storage_type, (Placeholder, type)):
            dtype = STORAGE_DTYPES.get(getattr(storage_type, "__name__", ""))
        if dtype is None or not isinstance(count, int) or count < 0 or str(key) not in self.storages:
            raise SourceError(f"storage {key!r} ({storage_type!r}, {count!r} elements) is unknown or missing from the "
                              "archive; the checkpoint is corrupt")
        if count * _ITEMSIZE[dtype] > self.storages[str(key)]:
            raise SourceError(f"storage {key!r} declares {count} x {_ITEMSIZE[dtype]} bytes, more than its "
                              f"{self.storages[str(key)]}-byte member; the checkpoint is truncated or corrupt")
        return StorageRef(str(key), dtype, count)


def _walk(obj: Any, prefix: str, owner: Any, depth: int, seen: set[int]) -> Iterator[tuple[str, Any, Any]]:
    """(dotted name, LazyTensor or PickledArray, owning placeholder or None) for every tensor below ``obj``."""
    if depth > MAX_DEPTH or id(obj) in seen:
        return
    if isinstance(obj, LazyTensor):
        yield prefix, obj, owner
        return
    if isinstance(obj, Placeholder) and obj.qualname.endswith("multiarray._reconstruct"):
        array = pickled_array(obj)
        if array is not None:
            yield prefix, array, owner
        return
    seen.add(id(obj))
    if isinstance(obj, dict):
        for key, value in obj.items():
            if str(key) not in SKIPPED_KEYS:
                yield from _walk(value, _join(prefix, key), owner, depth + 1, seen)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _walk(value, _join(prefix, i), owner, depth + 1, seen)
    elif isinstance(obj, Placeholder):
        yield from _walk_placeholder(obj, prefix, depth, seen)


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _walk_placeholder(obj: Placeholder, prefix: str, depth: int, seen: set[int]) -> Iterator[tuple[str, Any, Any]]:
    """Tensors in a placeholder's items and state; an ``nn.Module`` pickled whole keeps its tensors in
    ``_parameters`` / ``_buffers`` / ``_modules``, whose keys are not part of the name."""
    for key, value in obj.items:
        yield from _walk(value, _join(prefix, key), obj, depth + 1, seen)
    state = obj.state
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):  # (dict, slots)
        state = {**state[0], **state[1]} if isinstance(state[0], dict) else state[1]
    if state is None and obj.args and isinstance(obj.args[0], dict):  # a reduce function given the module's dict
        state = obj.args[0]  # (torch.fx's reduce_graph_module(body, import_block))
    if not isinstance(state, dict):
        if state is not None:
            yield from _walk(state, prefix, obj, depth + 1, seen)
        return
    for key, value in state.items():
        if key in ("_parameters", "_buffers", "_modules") and isinstance(value, dict):
            yield from _walk(value, prefix, obj, depth + 1, seen)
        elif str(key) not in SKIPPED_KEYS:
            yield from _walk(value, _join(prefix, key), obj, depth + 1, seen)


def _root(obj: Any) -> Any:
    """The model part of a checkpoint: descend through ``NESTED_KEYS`` while the object is a dict without tensors."""
    for _ in range(4):
        if not isinstance(obj, dict) or any(isinstance(v, (LazyTensor, PickledArray)) for v in obj.values()):
            return obj
        nested = next((obj[k] for k in NESTED_KEYS if k in obj and not isinstance(obj[k], (str, int, float))), None)
        if nested is None:
            return obj
        obj = nested
    return obj


def _module_info(owner: Any, name: str) -> tuple[str | None, str | None, int, int | None]:
    """(module type, family, groups, gates) of the placeholder that owns a tensor."""
    if not isinstance(owner, Placeholder):
        return None, None, 1, None
    cls = owner.qualname.rsplit(".", 1)[-1]
    family = _MODULE_FAMILIES.get(cls)
    state = owner.state if isinstance(owner.state, dict) else {}
    groups = state.get("groups", 1) if isinstance(state.get("groups", 1), int) else 1
    gates = _RNN_GATES.get(cls) or _RNN_GATES.get(str(state.get("mode", "")).split("_")[0])
    if family is None and cls in ("Module", "Sequential", "ModuleList", "ModuleDict"):
        return None, None, 1, None
    return cls, family, groups, gates


def archive_members(zf: zipfile.ZipFile) -> tuple[str, dict[str, zipfile.ZipInfo]]:
    """The archive's folder prefix and its ``data/<key>`` members (key -> info)."""
    pkl = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if not pkl:
        raise SourceError("no <archive>/data.pkl member: not a torch zip archive")
    prefix = pkl[0].rsplit("/", 1)[0]
    data = {n[len(prefix) + 6:]: zf.getinfo(n) for n in zf.namelist() if n.startswith(f"{prefix}/data/")}
    return prefix, data


def is_torchscript(path: Path) -> bool:
    """Whether a zip is a TorchScript archive (it has ``<archive>/constants.pkl``, as torch itself checks)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("constants.pkl") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def open_torch_archive(path: Path, model_id: str) -> FormatSource:
    """A ``FormatSource`` over the tensors of a torch zip archive, read with the restricted unpickler.

    Raises:
        SourceError: not a torch zip, a malformed pickle, storages that disagree with their members, no tensors.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            prefix, members = archive_members(zf)
            data = zf.read(f"{prefix}/data.pkl")
            unpickler = RestrictedUnpickler(data, {k: info.file_size for k, info in members.items()})
            obj = unpickler.load()
    except SourceError as exc:
        raise type(exc)(f"{path}: {exc}") from exc
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, RecursionError, MemoryError, OverflowError) as exc:
        raise SourceError(f"{path}: not a readable torch archive ({type(exc).__name__}: {str(exc)[:200]})") from exc
    tensors = list(_walk(_root(obj), "", None, 0, set()))
    if not tensors:
        raise SourceError(f"{path}: the archive holds no tensors")
    kind = "TorchScript archive" if is_torchscript(path) else "pickled checkpoint with non-tensor objects"
    return FormatSource(model_id, [path], tensor_entries(tensors, kind, path, prefix))


def tensor_entries(tensors: list[tuple[str, Any, Any]], kind: str, path: Path, prefix: str) -> list[Entry]:
    """Entries for the walked tensors (torch storages read lazily from the archive, numpy arrays from the pickle)."""
    entries = []
    names = _strip_prefix([name for name, _, _ in tensors])
    for name, (_, lazy, owner) in zip(names, tensors, strict=True):
        module_type, family, groups, gates = _module_info(owner, name)
        if isinstance(lazy, PickledArray):
            entries.append(Entry(name, lazy.shape, np.dtype(lazy.dtype).name, len(lazy.data), lazy.load, family,
                                 module_type=module_type, note=f"numpy array read from a {kind} without running it"))
            continue
        if module_type in ("LSTMCell", "GRUCell", "RNNCell") and name.endswith(("weight_ih", "weight_hh")):
            name += "_l0"  # a cell is one layer of its RNN: PyTorch's RNN weight names, which scanner.layers splits
        dtype = lazy.storage.dtype
        nbytes = int(np.prod(lazy.size, dtype=np.int64)) * _ITEMSIZE[dtype] if lazy.size else _ITEMSIZE[dtype]
        entries.append(Entry(name, lazy.size, dtype, nbytes, _loader(path, prefix, lazy), family, groups=groups,
                             gates=gates, module_type=module_type,
                             note=f"read from a {kind} without running it"))
    return entries


def open_pickle(path: Path, model_id: str) -> FormatSource:
    """A plain pickle of arrays (``file:x.pkl``: a dict of numpy arrays, nested or not), read with the same
    unpickler: nothing imported, numpy arrays rebuilt from their bytes, other objects inert.

    Raises:
        UnsafeCheckpointError: the pickle names a global that runs code.
        SourceError: a damaged pickle, or no numeric arrays in it.
    """
    size = path.stat().st_size
    if size > 2 << 30:
        raise SourceError(f"{path}: a {size}-byte pickle is read whole; refused above 2 GiB")
    try:
        obj = RestrictedUnpickler(path.read_bytes(), {}).load()
    except SourceError as exc:
        raise type(exc)(f"{path}: {exc}") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RecursionError, MemoryError, OverflowError) as exc:
        raise SourceError(f"{path}: not a readable pickle ({type(exc).__name__}: {str(exc)[:200]})") from exc
    tensors = list(_walk(_root(obj), "", None, 0, set()))
    if not tensors:
        raise SourceError(f"{path}: the pickle holds no numeric arrays")
    return FormatSource(model_id, [path], tensor_entries(tensors, "pickle", path, ""))


def _strip_prefix(names: list[str]) -> list[str]:
    if names and all(n.startswith("module.") for n in names):
        return [n[len("module."):] for n in names]
    return names


def _loader(path: Path, prefix: str, lazy: LazyTensor) -> Any:
    """Reads only the span of the storage the view covers (a small view of a large shared storage reads little)."""

    def load() -> np.ndarray:
        storage = lazy.storage
        itemsize = _ITEMSIZE[storage.dtype]
        extent = 1 + sum((s - 1) * st for s, st in zip(lazy.size, lazy.stride, strict=True)) if all(lazy.size) else 0
        extent = max(extent, 1) if not lazy.size else extent
        with zipfile.ZipFile(path) as zf, zf.open(f"{prefix}/data/{storage.key}") as member:
            member.seek(lazy.offset * itemsize)
            raw = member.read(extent * itemsize)
        if len(raw) != extent * itemsize:
            raise SourceError(f"{path}: storage {storage.key!r} is shorter than its tensor view; the archive is truncated")
        if storage.dtype == "bfloat16":
            flat = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            flat = np.frombuffer(raw, dtype=np.dtype(storage.dtype).newbyteorder("<"))
        if not lazy.size:
            return flat[:1].reshape(())
        strides = tuple(s * flat.itemsize for s in lazy.stride)
        view = np.lib.stride_tricks.as_strided(flat, shape=lazy.size, strides=strides, writeable=False)
        return np.array(view)

    return load
