"""GNU Backgammon binary weights (``file:gnubg.wd``): the evaluation nets, one-hidden-layer MLPs, back to back.

Layout (little-endian; what gnubg's ``makeweights`` writes and its evaluator reads):

* file header: two float32, the magic ``472.3782`` and the format version (``1.0``);
* per net: int32 ``cInput, cHidden, cOutput, nTrained``, float32 ``rBetaHidden, rBetaOutput``, then float32
  arrays: hidden weights ``cInput × cHidden`` (input-major: the evaluator adds row ``i`` times input ``i`` to
  the hidden activations), output weights ``cOutput × cHidden`` (output-major), hidden thresholds
  ``cHidden``, output thresholds ``cOutput``.

Nets are named by their position in the file, ``net<k>``, with their sizes (``net0_250x128x5``); gnubg stores
them in the order it loads them (contact, race, crashed, then the pruning nets), which the note repeats
without relying on it. Hidden weights become (cHidden, cInput) linear matrices (transposed from the stored
input-major layout), output weights (cOutput, cHidden) as stored; thresholds are biases. Every declared size
is checked against the file before anything is read; nothing in the file is executed (there is no code in it).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from scanner.errors import SourceError
from scanner.sources.formats._common import Entry, FormatSource, check_range, read_bytes

MAGIC_BYTES = struct.pack("<f", 472.3782)  # 69 30 ec 43
_FILE_HEADER = struct.Struct("<2f")
_NET_HEADER = struct.Struct("<4i2f")
MAX_UNITS = 1 << 16  # a net with more inputs, hidden or output units than this is refused as a lying header
ORDER = ("contact", "race", "crashed", "pruning contact", "pruning crashed", "pruning race")


def is_gnubg(head: bytes) -> bool:
    """The first 8 bytes are gnubg's binary weights header (magic 472.3782, version 1.x)."""
    if len(head) < _FILE_HEADER.size:
        return False
    version = _FILE_HEADER.unpack_from(head)[1]
    return head[:4] == MAGIC_BYTES and 1.0 <= version < 2.0


def _array(path: Path, offset: int, shape: tuple[int, ...], transpose: bool) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        values = np.frombuffer(read_bytes(path, offset, 4 * int(np.prod(shape))), dtype="<f4").reshape(shape)
        return np.ascontiguousarray(values.T if transpose else values)
    return load


def open_gnubg(path: Path, model_id: str) -> FormatSource:
    """A ``FormatSource`` over every net of a gnubg binary weights file (see the module docstring).

    Raises:
        SourceError: not gnubg's header, a net header with impossible sizes, or sizes past the end of the file.
    """
    size = path.stat().st_size
    head = read_bytes(path, 0, min(size, _FILE_HEADER.size))
    if not is_gnubg(head):
        raise SourceError(f"{path}: not a GNU Backgammon binary weights file (no 472.3782 magic)")
    entries: list[Entry] = []
    offset, k = _FILE_HEADER.size, 0
    while offset < size:
        check_range(path, offset, _NET_HEADER.size, size, f"net {k} header")
        c_in, c_hidden, c_out, _trained, _beta_h, _beta_o = _NET_HEADER.unpack(read_bytes(path, offset,
                                                                                         _NET_HEADER.size))
        if not all(0 < c <= MAX_UNITS for c in (c_in, c_hidden, c_out)):
            raise SourceError(f"{path}: net {k} declares {c_in} inputs, {c_hidden} hidden, {c_out} outputs; "
                              f"each must be 1..{MAX_UNITS}: the file is damaged or not gnubg weights")
        offset += _NET_HEADER.size
        name = f"net{k}_{c_in}x{c_hidden}x{c_out}"
        role = f"gnubg net {k} (gnubg loads {ORDER[k]} here)" if k < len(ORDER) else f"gnubg net {k}"
        # (part, stored shape, shape read as, layer family)
        parts: tuple[tuple[str, tuple[int, ...], tuple[int, ...], str | None], ...] = (
            ("hidden", (c_in, c_hidden), (c_hidden, c_in), "linear"),
            ("output", (c_out, c_hidden), (c_out, c_hidden), "linear"),
            ("hidden_threshold", (c_hidden,), (c_hidden,), None), ("output_threshold", (c_out,), (c_out,), None))
        for part, stored, shape, family in parts:
            nbytes = 4 * int(np.prod(stored))
            check_range(path, offset, nbytes, size, f"{name}.{part}")
            transpose = stored != shape
            note = f"{role}; stored input-major {stored}, transposed to (out, in)" if transpose else role
            entries.append(Entry(f"{name}.{part}", shape, "float32", nbytes, _array(path, offset, stored, transpose),
                                 family, module_type="gnubg mlp" if family else "gnubg threshold", note=note))
            offset += nbytes
        k += 1
    if not entries:
        raise SourceError(f"{path}: the gnubg weights file holds no net")
    return FormatSource(model_id, [path], entries)
