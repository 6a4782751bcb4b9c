"""numpy ``.npz`` archives (``file:weights.npz``): one array per member, ``allow_pickle=False``; and single
``.npy`` arrays (``file:vectors.npy``, or any file starting with the ``\x93NUMPY`` magic, such as a spaCy
pipeline's ``vocab/vectors`` word-vector table).

Each member's ``.npy`` header is parsed first (shape, dtype, order) and checked against the member's size
in the zip directory and against the scan's budget before the array is read. An npz says nothing about
layers, so arrays are analysed in their stored layout: 2-D as dense matrices (the spectrum of W and Wᵀ is
the same), 3- to 5-D as PyTorch-layout kernels (out, in, *k), which the note states as an assumption.
Object arrays (pickles) are never read.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from scanner.errors import SourceError
from scanner.sources.formats._common import ITEMSIZE, Entry, FormatSource, check_range, numel, read_bytes


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype, bool]:
    with zf.open(info) as handle:
        version = np.lib.format.read_magic(handle)
        reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in reader:
            raise ValueError(f".npy version {version} is not supported")
        shape, fortran, dtype = reader[version](handle)
    return tuple(int(d) for d in shape), dtype, bool(fortran)


def open_npz(path: Path, model_id: str) -> FormatSource:
    """A ``FormatSource`` over the arrays of an ``.npz`` archive (see the module docstring).

    Raises:
        SourceError: not a zip of ``.npy`` members, or a member whose header declares more bytes than it holds.
    """
    try:
        zf = zipfile.ZipFile(path)
        infos = [i for i in zf.infolist() if i.filename.endswith(".npy")]
    except (zipfile.BadZipFile, OSError) as exc:
        raise SourceError(f"{path}: not a readable .npz archive ({exc})") from exc
    entries = []
    for info in infos:
        name = info.filename[: -len(".npy")]
        try:
            shape, dtype, fortran = _header(zf, info)
        except (ValueError, zipfile.BadZipFile, OSError, EOFError) as exc:
            raise SourceError(f"{path}: member {info.filename!r} has no valid .npy header ({exc})") from exc
        if dtype.hasobject or dtype.name not in ITEMSIZE:
            entries.append(Entry(name, shape, str(dtype), 0, lambda: np.empty(0),
                                 skip=f"array of dtype {dtype}: not a numeric weight (object arrays are never read)"))
            continue
        nbytes = numel(shape) * dtype.itemsize
        if nbytes > info.file_size:
            raise SourceError(f"{path}: member {info.filename!r} declares {shape} of {dtype} ({nbytes} bytes) but "
                              f"holds {info.file_size}; the archive is truncated or lies")

        def read(info: zipfile.ZipInfo = info) -> np.ndarray:
            with zf.open(info) as handle:
                return np.lib.format.read_array(handle, allow_pickle=False)

        note = "npz: layout unknown, assumed PyTorch (out, in, *kernel)" if len(shape) >= 3 else ""
        entries.append(Entry(name, shape, dtype.name, nbytes, read, None, note=note))
        del fortran
    if not entries:
        raise SourceError(f"{path}: the .npz archive holds no arrays")
    return FormatSource(model_id, [path], entries, on_close=zf.close)


def open_npy(path: Path, model_id: str) -> FormatSource:
    """A ``FormatSource`` over the one array of a ``.npy`` file: 2-D is a dense matrix (a word-vector table is
    rows × width, analysed like an embedding), other ranks as in an npz.

    Raises:
        SourceError: no valid ``.npy`` header, an object dtype, or a shape that needs more bytes than the file has.
    """
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in reader:
                raise ValueError(f".npy version {version} is not supported")
            shape, fortran, dtype = reader[version](handle)
            offset = handle.tell()
    except (ValueError, OSError, EOFError) as exc:
        raise SourceError(f"{path}: no valid .npy header ({exc})") from exc
    shape = tuple(int(d) for d in shape)
    if dtype.hasobject or dtype.name not in ITEMSIZE:
        raise SourceError(f"{path}: a .npy of dtype {dtype} holds no numeric weights (object arrays are never read)")
    nbytes = numel(shape) * dtype.itemsize
    check_range(path, offset, nbytes, size, path.name)

    def read() -> np.ndarray:
        values = np.frombuffer(read_bytes(path, offset, nbytes), dtype=dtype)
        return values.reshape(shape[::-1]).T if fortran else values.reshape(shape)

    family = "embedding" if len(shape) == 2 else None
    note = "npy: layout unknown, assumed PyTorch (out, in, *kernel)" if len(shape) >= 3 else ""
    return FormatSource(model_id, [path], [Entry(path.name, shape, dtype.name, nbytes, read, family,
                                                 module_type="npy array", note=note)])
