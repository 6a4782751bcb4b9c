"""Keras HDF5 weights (``file:model.h5``), read with ``h5py`` (no Keras, no TensorFlow, no pickles).

Layouts understood:

* Keras 2 (``model.save`` → ``model_weights/<layer>/...``, ``save_weights`` → ``<layer>/...``): each layer
  group lists its variables in the ``weight_names`` attribute; the layer's class comes from the
  ``model_config`` attribute (JSON) when the file has one;
* Keras 3 ``.weights.h5`` (``layers/<layer>/vars/0, 1, ...``): variables are unnamed; the layer's class comes
  from the layer's name ("dense_1" → Dense) and from the variable's rank, and the note says so.

Conversions (``_common.tf_to_torch``): Dense [in, out] → (out, in); Conv HWIO → OIHW; DepthwiseConv2D; LSTM/GRU
kernel and recurrent kernel per gate (GRU reordered z, r, h → r, z, n). Dataset sizes are checked against the
file (contiguous storage) and against the scan's budget before they are read; object and string datasets are
never read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scanner.errors import SourceError
from scanner.sources.formats._common import ITEMSIZE, Entry, FormatSource, keras_role, numel, tf_entry

_NAME_CLASSES = (
    (re.compile(r"^(dense|fc|logits|classifier|output|out)(_\d+)?$", re.I), "Dense"),
    (re.compile(r"^conv1d(_\d+)?$", re.I), "Conv1D"), (re.compile(r"^conv2d(_\d+)?$", re.I), "Conv2D"),
    (re.compile(r"^conv3d(_\d+)?$", re.I), "Conv3D"), (re.compile(r"^depthwise_conv2d(_\d+)?$", re.I), "DepthwiseConv2D"),
    (re.compile(r"^conv2d_transpose(_\d+)?$", re.I), "Conv2DTranspose"), (re.compile(r"^embedding(_\d+)?$", re.I),
                                                                         "Embedding"),
    (re.compile(r"^lstm(_\d+)?$", re.I), "LSTM"), (re.compile(r"^gru(_\d+)?$", re.I), "GRU"),
    (re.compile(r"^simple_rnn(_\d+)?$", re.I), "SimpleRNN"),
)
# Keras 3 variable index -> leaf name, per class
_KERAS3_LEAVES = {"LSTM": ("kernel", "recurrent_kernel", "bias"), "GRU": ("kernel", "recurrent_kernel", "bias"),
                  "SimpleRNN": ("kernel", "recurrent_kernel", "bias"), "Embedding": ("embeddings",),
                  "DepthwiseConv2D": ("depthwise_kernel", "bias")}


def _model_classes(h5: Any) -> dict[str, str]:
    raw = h5.attrs.get("model_config")
    if raw is None:
        return {}
    try:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except (ValueError, RecursionError):
        return {}
    from scanner.sources.formats.tfjs_reader import _layer_classes

    return _layer_classes(config)


def _name_class(layer: str) -> str | None:
    return next((cls for pattern, cls in _NAME_CLASSES if pattern.match(layer)), None)


def _datasets(group: Any, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, Any]]:
    import h5py

    if depth > 16:
        return
    for key in group:
        item = group.get(key, getlink=False)
        name = f"{prefix}/{key}" if prefix else key
        if isinstance(item, h5py.Dataset):
            yield name, item
        elif isinstance(item, h5py.Group):
            yield from _datasets(item, name, depth + 1)


def _check_dataset(path: Path, name: str, ds: Any, size: int) -> tuple[tuple[int, ...], str]:
    dtype = ds.dtype
    if dtype.kind not in "fiub" or dtype.name not in ITEMSIZE:
        raise _Skip(f"HDF5 dataset of type {dtype}: not a weight array")
    shape = tuple(int(d) for d in ds.shape)
    nbytes = numel(shape) * dtype.itemsize
    if ds.chunks is None and ds.compression is None:
        offset = ds.id.get_offset()
        if offset is not None and offset + nbytes > size:
            raise SourceError(f"{path}: dataset {name!r} declares bytes [{offset}, {offset + nbytes}) of a "
                              f"{size}-byte file; the file is truncated or corrupt")
    return shape, dtype.name


class _Skip(Exception):
    """A dataset that is not read, with the reason."""


def open_h5(path: Path, model_id: str) -> FormatSource:
    """A ``FormatSource`` over a Keras HDF5 file's weights (see the module docstring).

    Raises:
        SourceError: not a readable HDF5 file, no datasets, or a dataset that runs past the file.
    """
    import h5py

    size = path.stat().st_size
    try:
        h5 = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: not a readable HDF5 file ({str(exc)[:120]}); re-download it") from exc
    try:
        classes = _model_classes(h5)
        root = h5.get("model_weights", h5)
        keras3 = "layers" in root and "model_weights" not in h5 and "layer_names" not in root.attrs
        entries = [_entry(path, h5, name, ds, size, classes, keras3) for name, ds in _datasets(root)
                   if not name.startswith(("optimizer_weights", "optimizer/"))]
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        h5.close()
        raise SourceError(f"{path}: damaged HDF5 file ({type(exc).__name__}: {str(exc)[:120]})") from exc
    if not entries:
        h5.close()
        raise SourceError(f"{path}: the HDF5 file holds no datasets")
    return FormatSource(model_id, [path], entries, on_close=h5.close)


def _entry(path: Path, h5: Any, name: str, ds: Any, size: int, classes: dict[str, str], keras3: bool) -> Entry:
    try:
        shape, dtype = _check_dataset(path, name, ds, size)
    except _Skip as exc:
        return Entry(name, tuple(int(d) for d in ds.shape), str(ds.dtype), 0, lambda: np.empty(0), skip=str(exc))
    nbytes = numel(shape) * ITEMSIZE[dtype]

    def read() -> np.ndarray:
        return np.asarray(ds[()]) if shape else np.asarray(ds[()]).reshape(())

    parts = name.split("/")
    if keras3 and len(parts) >= 3 and parts[-2] == "vars":
        layer = parts[-3]
        cls = classes.get(layer) or _name_class(layer)
        index = int(parts[-1]) if parts[-1].isdigit() else 0
        leaves = _KERAS3_LEAVES.get(cls or "", ("kernel", "bias"))
        leaf = leaves[index] if index < len(leaves) else f"var{index}"
        role, assumed = keras_role(cls, leaf, shape)
        if cls is not None and layer not in classes:
            assumed = "; ".join(a for a in (f"layer class {cls} inferred from the name {layer!r}", assumed) if a)
        return tf_entry(f"{'/'.join(parts[:-2])}/{leaf}", shape, dtype, nbytes, read, role, module_type=cls,
                        assumed=assumed)
    leaf = parts[-1].split(":")[0]
    cls = next((classes[p] for p in reversed(parts[:-1]) if p in classes), None)
    if cls is None:
        cls = next((c for p in reversed(parts[:-1]) if (c := _name_class(p))), None)
        inferred = f"layer class {cls} inferred from the name" if cls else ""
    else:
        inferred = ""
    role, assumed = keras_role(cls, leaf, shape)
    return tf_entry(name.replace(":0", ""), shape, dtype, nbytes, read, role, module_type=cls,
                    assumed="; ".join(a for a in (inferred, assumed) if a))
