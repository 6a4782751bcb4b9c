"""spaCy / thinc component weights (``file:pipeline/ner/model``): msgpack, arrays in msgpack-numpy's layout.

The file is unpacked with ``msgpack`` (no pickles, no ``msgpack_numpy`` needed): an array is a map
``{nd: true, type: "<f4", shape: [...], data: bytes}``, decoded here after checking that ``data`` holds exactly
shape × itemsize bytes of a numeric dtype. Two layouts:

* thinc 8 (spaCy 3): ``{nodes, attrs, params, shims}``; ``params[i]`` maps a parameter name to its array for
  node ``nodes[i]`` (a layer name such as ``maxout``, ``linear``, ``hashembed``);
* thinc 7 (spaCy 2): ``{weights: [{dims, params: [{name, shape, value}]}]}``.

Roles: ``E`` / ``vectors`` (hash embedding table, rows × width) → embedding; ``W`` of 2-D → linear (thinc stores (nO, nI));
``W`` of 3-D maxout (nO, nP, nI) and 4-D precomputable affine (nF, nO, nP, nI) → one linear matrix with the
output-side axes stacked, (nO·nP, nI) / (nF·nO·nP, nI) — the note says so. Biases, layer-norm gains and
padding vectors are not matrices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scanner.errors import SourceError
from scanner.sources.formats._common import ITEMSIZE, Entry, FormatSource, numel

MAX_FILE_BYTES = 2 << 30
_NUMERIC = {"<f4": "float32", "<f8": "float64", "<f2": "float16", "<i4": "int32", "<i8": "int64", "|u1": "uint8",
            "<u8": "uint64", "|i1": "int8", "|b1": "bool", "<u4": "uint32", "<i2": "int16", "<u2": "uint16"}


class _Array:
    """A decoded array header and its bytes (not yet an ndarray)."""

    def __init__(self, dtype: str, shape: tuple[int, ...], data: bytes) -> None:
        self.dtype, self.shape, self.data = dtype, shape, data

    def load(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype=np.dtype(self.dtype).newbyteorder("<")).reshape(self.shape)


def _hook(obj: dict) -> Any:
    get = (lambda key: obj.get(key, obj.get(key.encode())))  # noqa: E731 (msgpack keys may be bytes or str)
    if get("nd") is None or get("type") is None:
        return obj
    kind = get("type")
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    dtype = _NUMERIC.get(kind)
    data = get("data")
    if dtype is None or not isinstance(data, bytes):
        return obj  # not a numeric array: left as a map, never read as weights
    shape_raw = get("shape") if get("nd") else ()
    if not isinstance(shape_raw, (list, tuple)) or not all(isinstance(d, int) and d >= 0 for d in shape_raw):
        raise ValueError(f"array shape {str(shape_raw)[:40]} is not a list of non-negative integers")
    shape = tuple(shape_raw)
    if numel(shape) * ITEMSIZE[dtype] != len(data):
        raise ValueError(f"array of shape {shape} and type {kind} holds {len(data)} bytes")
    return _Array(dtype, shape, data)


def _short(node_name: str) -> str:
    """The last layer of a thinc combinator name ("a>>b>>maxout" → "maxout")."""
    tail = node_name.rsplit(">>", 1)[-1].strip("()")
    return tail[:40] if tail else "node"


def _role(param: str, shape: tuple[int, ...]) -> tuple[str | None, tuple[int, ...], str]:
    """(family, PyTorch-layout shape, note) of one thinc parameter."""
    if param in ("E", "vectors") and len(shape) == 2:
        return "embedding", shape, ""
    if param == "W" and len(shape) == 2:
        return "linear", shape, ""
    if param == "W" and len(shape) == 3:
        return "linear", (shape[0] * shape[1], shape[2]), "maxout W (nO, nP, nI): pieces stacked as (nO*nP, nI)"
    if param == "W" and len(shape) == 4:
        return "linear", (shape[0] * shape[1] * shape[2], shape[3]), \
            "precomputable affine W (nF, nO, nP, nI): stacked as (nF*nO*nP, nI)"
    return None, shape, ""


def _entry(name: str, param: str, array: _Array) -> Entry:
    family, shape, note = _role(param, array.shape)
    nbytes = len(array.data)
    if family is None:  # biases (2-D for maxout), norm gains, padding: named by their thinc layer, not analysed
        return Entry(name, array.shape, array.dtype, nbytes, array.load, None, module_type="thinc parameter")
    return Entry(name, shape, array.dtype, nbytes, lambda: array.load().reshape(shape), family,
                 module_type="thinc " + name.split(".")[-2] if "." in name else "thinc", note=note)


def _thinc8(doc: dict) -> list[Entry]:
    nodes, params = doc.get("nodes"), doc.get("params")
    if not isinstance(nodes, list) or not isinstance(params, list):
        raise ValueError("'nodes' and 'params' are not lists")
    entries = []
    for i, node_params in enumerate(params):
        if not isinstance(node_params, dict):
            continue
        node = nodes[i] if i < len(nodes) and isinstance(nodes[i], dict) else {}
        layer = f"{i}.{_short(str(node.get('name', 'node')))}"
        for param, value in node_params.items():
            if isinstance(value, _Array):
                entries.append(_entry(f"{layer}.{param}", str(param), value))
    return entries


def _thinc7(doc: dict) -> list[Entry]:
    weights = doc.get("weights", doc.get(b"weights"))
    if not isinstance(weights, list):
        raise ValueError("'weights' is not a list")
    entries = []
    for i, layer in enumerate(weights):
        params = layer.get("params", layer.get(b"params")) if isinstance(layer, dict) else None
        for spec in params if isinstance(params, list) else []:
            if not isinstance(spec, dict):
                continue
            name = spec.get("name", spec.get(b"name"))
            value = spec.get("value", spec.get(b"value"))
            if isinstance(value, _Array):
                param = name.decode() if isinstance(name, bytes) else str(name)
                entries.append(_entry(f"{i}.{param}", param, value))
    return entries


def open_spacy(path: Path, model_id: str) -> FormatSource:
    """A ``FormatSource`` over a spaCy/thinc component's weights (see the module docstring).

    Raises:
        SourceError: not msgpack, an array whose bytes disagree with its shape, or no arrays.
    """
    import msgpack

    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise SourceError(f"{path}: {size} bytes is larger than a spaCy component ({MAX_FILE_BYTES}); refused")
    try:
        doc = msgpack.unpackb(path.read_bytes(), object_hook=_hook, raw=False, strict_map_key=False)
        if not isinstance(doc, dict):
            raise ValueError("the top level is not a map")
        entries = _thinc8(doc) if "nodes" in doc else _thinc7(doc)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            RecursionError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: not a readable spaCy/thinc model ({type(exc).__name__}: {str(exc)[:120]})") \
            from exc
    if not entries:
        raise SourceError(f"{path}: the spaCy/thinc model holds no arrays")
    return FormatSource(model_id, [path], entries)
