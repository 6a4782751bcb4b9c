"""Read .safetensors files one tensor at a time, with plain file reads (no memory map, no model code).

Format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length n, then n bytes
of JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``, then the
data; offsets are relative to the end of the header. We parse the header ourselves so that a truncated
or corrupt file is reported before any tensor is read, and so that tensors come in storage order. Each
tensor is read into its own buffer: memory holds one tensor, not the file (``safe_open`` maps the whole
file, and every page it touches counts in the process's resident memory; see bench/bench_loader_memory.py).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scanner.errors import SourceError

if TYPE_CHECKING:
    import torch

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library refuses larger headers too

# safetensors dtype code -> (torch dtype attribute name, bytes per element)
DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
    "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1),
    "U64": ("uint64", 8), "U32": ("uint32", 4), "U16": ("uint16", 2), "U8": ("uint8", 1), "BOOL": ("bool", 1),
}


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies in a .safetensors file (absolute byte offsets)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def _fail(path: str, what: str) -> SourceError:
    return SourceError(f"{path}: {what}; the file is not a valid .safetensors checkpoint (re-download or re-save it)")


def read_header(path: str) -> list[TensorEntry]:
    """Parse and validate the header; return the entries sorted by their position in the file.

    Raises:
        SourceError: empty, truncated or corrupt file, unknown dtype, or offsets that disagree with shapes.
    """
    size = os.path.getsize(path)
    if size == 0:
        raise _fail(path, "empty file (0 bytes)")
    if size < 8:
        raise _fail(path, f"truncated ({size} bytes, shorter than the 8-byte header length)")
    with open(path, "rb") as handle:
        n = int.from_bytes(handle.read(8), "little")
        if n > min(size - 8, MAX_HEADER_BYTES):
            raise _fail(path, f"header length {n} exceeds the file ({size} bytes): truncated or not safetensors")
        raw = handle.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"header is not JSON ({exc})") from exc
    except RecursionError as exc:
        raise _fail(path, "header JSON is nested too deeply") from exc
    if not isinstance(header, dict):
        raise _fail(path, "header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict):
        raise _fail(path, f"__metadata__ is a {type(metadata).__name__}, not an object")
    start = 8 + n
    entries = sorted((_entry(path, name, spec, start, size) for name, spec in header.items()),
                     key=lambda e: (e.begin, e.end, e.name))
    for before, after in zip(entries, entries[1:], strict=False):
        if after.begin < before.end:
            raise _fail(path, f"tensors {before.name!r} and {after.name!r} have overlapping data_offsets")
    return entries


def _entry(path: str, name: str, spec: Any, start: int, size: int) -> TensorEntry:
    from scanner.sources.base import check_shape

    if not isinstance(spec, dict) or not {"dtype", "shape", "data_offsets"} <= set(spec):
        raise _fail(path, f"malformed header entry for {name!r} (needs dtype, shape and data_offsets)")
    dtype, offsets = spec["dtype"], spec["data_offsets"]
    try:
        shape = check_shape(spec["shape"], f"tensor {name!r}")
    except ValueError as exc:
        raise _fail(path, str(exc)) from exc
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(
            isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets):
        raise _fail(path, f"tensor {name!r}: data_offsets {str(offsets)[:60]} is not two non-negative integers")
    begin, end = offsets
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise _fail(path, f"tensor {name!r} has unknown dtype {str(dtype)[:40]!r}")
    expected = math.prod(shape) * DTYPES[dtype][1]
    if end - begin != expected or begin < 0:
        raise _fail(path, f"tensor {name!r}: offsets [{begin}, {end}) do not hold {shape} of {dtype}")
    if start + end > size:
        raise _fail(path, f"truncated: tensor {name!r} ends at byte {start + end} of a {size}-byte file")
    return TensorEntry(name, dtype, shape, start + begin, start + end)


def read_tensor(handle, entry: TensorEntry) -> torch.Tensor:
    """Read one tensor into a fresh CPU buffer (little-endian, as the format stores it)."""
    import torch

    dtype = getattr(torch, DTYPES[entry.dtype][0])
    if entry.end == entry.begin:
        return torch.empty(entry.shape, dtype=dtype)
    buffer = bytearray(entry.end - entry.begin)
    handle.seek(entry.begin)
    if handle.readinto(buffer) != len(buffer):
        raise SourceError(f"{handle.name}: truncated while reading {entry.name!r}; re-download the checkpoint")
    return torch.frombuffer(buffer, dtype=dtype).reshape(entry.shape)
