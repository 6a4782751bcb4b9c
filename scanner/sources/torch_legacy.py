"""Torch's legacy checkpoint format (``torch.save(..., _use_new_zipfile_serialization=False)``, every file saved
before torch 1.6), read with the C unpickler and an allow-list of tensors and containers.

``torch.load(weights_only=True)`` reads this format with torch's pure-Python restricted unpickler: 31.5 ms of
CPU for ResNet-56's 3.4 MB file on the 2-CPU host, against 6.9 ms here (best of 20 each, load average 2.2) —
about a tenth of that model's whole analysis. Safety is the same: the unpickler resolves only the globals in ``_ALLOWED`` (the tensor rebuild
functions, ``collections.OrderedDict``, ``_codecs.encode`` and the typed storage classes) to inert
stand-ins, so nothing is imported and no code from the file runs. Any other global (a pickled module, a
numpy scalar), a storage view, tensor metadata, a big-endian file or anything that does not add up returns
``None``: the caller then hands the file to ``torch.load(weights_only=True)``, whose answer (the tensors, or
its refusal or error message) is the one given — so this reader never accepts or refuses a file that torch
would not, it only reads plain state dicts faster.

The format (torch/serialization.py, ``_legacy_save``): five pickles in a row — the magic number
0x1950a86a20f9469cfc6c, the protocol version 1001, a sys-info dict (``little_endian``), the object whose
storages are persistent ids ``("storage", <X>Storage, key, location, numel, view)``, the sorted list of
storage keys — then, for each key in that order, an int64 element count and the storage's raw bytes.

The file is memory-mapped copy-on-write and each tensor is a ``torch.frombuffer`` view of its storage (copied
only when the storage's bytes are not aligned to its element size): pages are read when a layer is, and a
layer that ``max_layer_bytes`` skips is never read.
"""

from __future__ import annotations

import mmap
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from scanner.sources.formats.torch_archive import STORAGE_DTYPES, view_extent

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001


class NotPlain(Exception):
    """The file is not a plain legacy state dict; torch.load decides what it is."""


@dataclass(frozen=True, slots=True)  # no __dict__: a pickle's BUILD cannot rewrite it
class _StorageType:
    dtype: str


@dataclass(frozen=True, slots=True)  # no __dict__: a pickle's BUILD cannot rewrite it
class _Storage:
    key: str
    dtype: str
    numel: int


@dataclass(frozen=True, slots=True)  # no __dict__: a pickle's BUILD cannot rewrite it
class _PendingTensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _ints(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(type(v) is int and v >= 0 for v in value):
        raise NotPlain(f"size or stride {value!r}")
    return tuple(value)


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, _requires_grad: Any = False,
                       _hooks: Any = None, metadata: Any = None) -> _PendingTensor:
    if not isinstance(storage, _Storage) or type(offset) is not int or offset < 0 or metadata:
        raise NotPlain("tensor arguments")
    size_t, stride_t = _ints(size), _ints(stride)
    if len(size_t) != len(stride_t):
        raise NotPlain("size and stride lengths")
    if view_extent(offset, size_t, stride_t) > storage.numel:
        raise NotPlain("tensor view beyond its storage")
    return _PendingTensor(storage, offset, size_t, stride_t)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


def _codecs_encode(text: Any, encoding: str = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise NotPlain("bytes encoding")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor_v2,  # torch < 1.0: (storage, offset, size, stride)
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): _codecs_encode,
    **{("torch", name): _StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class _Unpickler(pickle.Unpickler):
    """C unpickler that resolves only ``_ALLOWED`` and records storages; everything else raises NotPlain."""

    def __init__(self, file: Any, storages: dict[str, _Storage]) -> None:
        super().__init__(file, encoding="utf-8")
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise NotPlain(f"global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise NotPlain("persistent id")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or type(numel) is not int:
            raise NotPlain("storage id")
        if view is not None or numel < 0:
            raise NotPlain("storage view")
        storage = self.storages.setdefault(key, _Storage(key, storage_type.dtype, numel))
        if storage != _Storage(key, storage_type.dtype, numel):
            raise NotPlain("one storage key with two types or sizes")
        return storage


def _load(handle: Any, storages: dict[str, _Storage]) -> Any:
    return _Unpickler(handle, storages).load()


def read_plain_legacy(path: str) -> Any | None:
    """The object of a plain legacy torch checkpoint with its tensors (CPU, sharing the file's mapping), or None.

    None: the file is not a plain legacy state dict (zip or tar format, another global, a storage view,
    sizes that disagree, a truncated file...): call ``torch.load(path, weights_only=True)``, which reads it
    or says why not. Never raises for a damaged file.
    """
    try:
        with open(path, "rb") as handle:
            if _load(handle, {}) != MAGIC_NUMBER or _load(handle, {}) != PROTOCOL_VERSION:
                return None
            sys_info = _load(handle, {})
            if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
                return None
            storages: dict[str, _Storage] = {}
            obj = _load(handle, storages)
            keys = _load(handle, {})
            data_start = handle.tell()
            buffer = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    except (NotPlain, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RecursionError, MemoryError, OverflowError, OSError, struct.error):
        return None
    try:
        offsets = _storage_offsets(buffer, data_start, keys, storages)
        tensors = _tensors(buffer, offsets)
        return _resolve(obj, tensors, 0)
    except (NotPlain, ValueError, TypeError, RuntimeError, RecursionError, OverflowError, IndexError, KeyError,
            AttributeError, MemoryError, BufferError):
        return None


def _storage_offsets(buffer: mmap.mmap, start: int, keys: Any, storages: dict[str, _Storage]) -> dict[str, int]:
    """Byte offset of each storage's data: the keys' blocks follow one another, each an int64 count + bytes."""
    import torch

    if not isinstance(keys, list) or sorted(keys) != sorted(storages) or len(set(keys)) != len(keys):
        raise NotPlain("storage key list")
    offsets, position = {}, start
    for key in keys:
        storage = storages[key]
        if position + 8 > len(buffer):
            raise NotPlain("truncated")
        (count,) = struct.unpack_from("<q", buffer, position)
        nbytes = count * getattr(torch, storage.dtype).itemsize
        if count != storage.numel or position + 8 + nbytes > len(buffer):
            raise NotPlain("storage size")
        offsets[key] = position + 8
        position += 8 + nbytes
    return offsets


def _tensors(buffer: mmap.mmap, offsets: dict[str, int]) -> Any:
    """pending tensor -> torch tensor; the tensors of one storage share one flat tensor, as after torch.load."""
    import torch

    flats: dict[str, torch.Tensor] = {}

    def flat(storage: _Storage) -> torch.Tensor:
        if storage.key not in flats:
            dtype = getattr(torch, storage.dtype)
            offset, nbytes = offsets[storage.key], storage.numel * dtype.itemsize
            data: Any = buffer
            if offset % dtype.itemsize:  # elements off their alignment: an aligned copy, as torch.load makes
                data, offset = bytearray(memoryview(buffer)[offset:offset + nbytes]), 0
            flats[storage.key] = (torch.frombuffer(data, dtype=dtype, count=storage.numel, offset=offset)
                                  if storage.numel else torch.empty(0, dtype=dtype))
        return flats[storage.key]

    def tensor(pending: _PendingTensor) -> torch.Tensor:
        return flat(pending.storage).as_strided(pending.size, pending.stride, pending.offset)

    return tensor


def _resolve(obj: Any, tensor: Any, depth: int) -> Any:
    """``obj`` with every pending tensor built, through dicts, lists and tuples (torch.load's containers)."""
    if depth > 64:
        raise NotPlain("nesting")
    if isinstance(obj, _PendingTensor):
        return tensor(obj)
    if isinstance(obj, (_Storage, _StorageType)):
        raise NotPlain("a bare storage")
    if isinstance(obj, dict):
        for key, value in obj.items():
            obj[key] = _resolve(value, tensor, depth + 1)
        return obj
    if isinstance(obj, list):
        obj[:] = [_resolve(value, tensor, depth + 1) for value in obj]
        return obj
    if isinstance(obj, tuple):
        return tuple(_resolve(value, tensor, depth + 1) for value in obj)
    return obj
