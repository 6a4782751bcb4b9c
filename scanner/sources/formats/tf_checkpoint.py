"""TensorFlow checkpoints (``file:dir/model.ckpt.index``, or a SavedModel folder), read without TensorFlow.

A checkpoint is ``<prefix>.index`` plus ``<prefix>.data-<shard>-of-<n>``. The index is a LevelDB SSTable
(uncompressed blocks, each followed by a 5-byte trailer; a 48-byte footer with the index-block handle and the
magic ``0xdb4775248b80fb57``). Its keys are tensor names, its values ``BundleEntryProto`` messages
(dtype = 1, shape = 2, shard_id = 3, offset = 4, size = 5); the empty key holds the ``BundleHeaderProto``
(num_shards = 1). Both are decoded here with a minimal protobuf reader. Each entry's byte range is checked
against its data file before it is read.

Names: TF1 ``dense/kernel``; TF2 object graphs ``layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE``.
Optimizer slots, ``save_counter`` and the object graph itself are left out. Layer classes are not stored, so
the role of a tensor comes from its name (``kernel``, ``recurrent_kernel``, ``depthwise_kernel``, ``embeddings``)
and rank (2-D kernel → dense [in, out], 3- to 5-D → convolution (H)WIO); the row's note says what was assumed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from scanner.errors import SourceError
from scanner.sources.formats._common import (
    ITEMSIZE,
    Entry,
    FormatSource,
    check_range,
    keras_role,
    numel,
    read_bytes,
    tf_entry,
)

MAGIC = 0xDB4775248B80FB57
# DataType enum -> numpy dtype name
TF_DTYPES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 9: "int64", 10: "bool",
             14: "bfloat16", 17: "uint16", 19: "float16", 22: "uint32", 23: "uint64"}
_LEFT_OUT = re.compile(r"(\.OPTIMIZER_SLOT|^optimizer/|/Adam(_\d+)?$|/Momentum$|/RMSProp|_CHECKPOINTABLE_OBJECT_GRAPH|"
                       r"^save_counter|^global_step|/ExponentialMovingAverage$|^beta\d_power)")
MAX_INDEX_BYTES = 256 * 1024 * 1024


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints as ints, length-delimited as bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((field, value))
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated field")
            out.append((field, buf[pos:pos + length]))
            pos += length
        elif wire == 5:
            out.append((field, int.from_bytes(buf[pos:pos + 4], "little")))
            pos += 4
        elif wire == 1:
            out.append((field, int.from_bytes(buf[pos:pos + 8], "little")))
            pos += 8
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for field, value in _fields(buf):
        if field == 2 and isinstance(value, bytes):
            size = next((v for f, v in _fields(value) if f == 1), 0)
            dims.append(int(size) - (1 << 64) if int(size) >= 1 << 63 else int(size))
    return tuple(dims)


def _block_entries(data: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs of one SSTable block (prefix-compressed keys; restart array at the end)."""
    if offset + size + 5 > len(data) or size < 4:
        raise ValueError("block outside the index file")
    if data[offset + size] != 0:
        raise ValueError("compressed SSTable block (TensorFlow writes none)")
    block = data[offset:offset + size]
    restarts = int.from_bytes(block[-4:], "little")
    end = len(block) - 4 - 4 * restarts
    if end < 0:
        raise ValueError("bad restart count")
    pos, key, out = 0, b"", []
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + length > end:
            raise ValueError("entry outside its block")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        out.append((key, block[pos:pos + length]))
        pos += length
    return out


def read_index(path: Path) -> dict[str, tuple[str, tuple[int, ...], int, int, int]]:
    """name -> (dtype, shape, shard, offset, size) of every entry of a checkpoint index; ``""`` -> num_shards.

    Raises:
        SourceError: not an SSTable, or entries that do not decode.
    """
    size = path.stat().st_size
    if size < 48 or size > MAX_INDEX_BYTES:
        raise SourceError(f"{path}: {size} bytes is not the size of a TensorFlow checkpoint index")
    data = path.read_bytes()
    if int.from_bytes(data[-8:], "little") != MAGIC:
        raise SourceError(f"{path}: no SSTable magic at the end: not a TensorFlow checkpoint index")
    try:
        footer = data[-48:-8]
        _, pos = _varint(footer, 0)
        _, pos = _varint(footer, pos)  # metaindex handle
        index_offset, pos = _varint(footer, pos)
        index_size, pos = _varint(footer, pos)
        entries: dict[str, tuple[str, tuple[int, ...], int, int, int]] = {}
        for _, handle in _block_entries(data, index_offset, index_size):
            block_offset, p = _varint(handle, 0)
            block_size, _ = _varint(handle, p)
            for key, value in _block_entries(data, block_offset, block_size):
                entries[key.decode("utf-8", "replace")] = _bundle_entry(key, value)
    except (ValueError, IndexError) as exc:
        raise SourceError(f"{path}: damaged TensorFlow checkpoint index ({exc}); re-download it") from exc
    return entries


def _bundle_entry(key: bytes, value: bytes) -> tuple[str, tuple[int, ...], int, int, int]:
    fields = dict(_fields(value))
    if key == b"":  # BundleHeaderProto: num_shards
        return "header", (), int(fields.get(1, 1) or 1), 0, 0
    code = int(fields.get(1, 0))
    shape = _shape(fields[2]) if isinstance(fields.get(2), bytes) else ()  # type: ignore[arg-type]
    dtype = TF_DTYPES.get(code, f"tf_type_{code}")
    return dtype, shape, int(fields.get(3, 0)), int(fields.get(4, 0)), int(fields.get(5, 0))


def _leaf(name: str) -> tuple[str, str]:
    """(display name, variable leaf) of a checkpoint key."""
    clean = name.replace("/.ATTRIBUTES/VARIABLE_VALUE", "")
    return clean, clean.rsplit("/", 1)[-1]


def open_checkpoint(path: Path, model_id: str) -> FormatSource:
    """A ``FormatSource`` over a TensorFlow checkpoint (``path`` is its ``.index`` file, or a SavedModel folder).

    Raises:
        SourceError: a damaged index, a missing data shard, or an entry outside its shard.
    """
    if path.is_dir():
        path = path / "variables" / "variables.index"
    index = read_index(path)
    prefix = str(path)[: -len(".index")]
    num_shards = index.pop("", ("header", (), 1, 0, 0))[2]
    shards = [Path(f"{prefix}.data-{i:05d}-of-{num_shards:05d}") for i in range(num_shards)]
    for file in shards:
        if not file.is_file():
            raise SourceError(f"{path}: data shard {file.name!r} is missing; the checkpoint is incomplete")
    sizes = [s.stat().st_size for s in shards]
    entries: list[Entry] = []
    for name, (dtype, shape, shard, offset, nbytes) in index.items():
        if _LEFT_OUT.search(name):
            continue
        entries.append(_entry(path, name, dtype, shape, (shard, offset, nbytes), shards, sizes))
    if not entries:
        raise SourceError(f"{path}: the checkpoint holds no model variables")
    return FormatSource(model_id, [path, *shards], entries)


def _entry(path: Path, name: str, dtype: str, shape: tuple[int, ...], where: tuple[int, int, int],
           shards: list[Path], sizes: list[int]) -> Entry:
    """One variable; ``where`` is (shard, offset, size in bytes) from the index."""
    shard, offset, nbytes = where
    display, leaf = _leaf(name)
    if dtype not in ITEMSIZE:
        return Entry(display, tuple(max(d, 0) for d in shape), dtype, 0, lambda: np.empty(0),
                     skip=f"TensorFlow type {dtype} is not read (strings, resources)")
    if any(d < 0 for d in shape):
        raise SourceError(f"{path}: tensor {display!r} has a negative dimension {shape}; the index is corrupt")
    expected = numel(shape) * ITEMSIZE[dtype]
    if nbytes != expected or not 0 <= shard < len(shards):
        raise SourceError(f"{path}: tensor {display!r} declares {nbytes} bytes in shard {shard} for {shape} of "
                          f"{dtype} ({expected} bytes); the index is corrupt")
    check_range(shards[shard], offset, nbytes, sizes[shard], display)
    file = shards[shard]

    def read() -> np.ndarray:
        raw = read_bytes(file, offset, nbytes)
        if dtype == "bfloat16":
            return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
        return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)

    role, assumed = keras_role(None, leaf, shape)
    if role is not None and leaf in ("kernel", "recurrent_kernel") and "lstm" in display.lower():
        role, assumed = "lstm", "LSTM inferred from the name (gates i, f, c, o assumed)"
    elif role is not None and leaf in ("kernel", "recurrent_kernel") and "gru" in display.lower():
        role, assumed = "gru", "GRU inferred from the name (gates z, r, h assumed)"
    return tf_entry(display, shape, dtype, nbytes, read, role, assumed=assumed)
