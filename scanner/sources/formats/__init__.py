"""Weight-file formats: one registration table, ``READERS``, from a file's suffix or first bytes to its reader.

Every reader returns a ``WeightSource`` of named tensors in PyTorch layout, each saying how it was stored
(``dtype_stored``, ``dequantized``, a layout ``note``). No reader imports or runs code from a file: pickles
go through a restricted unpickler that imports nothing, and every declared byte range is checked against the
file before it is read, and against the scan's ``max_layer_bytes``/``max_evals`` before it is allocated.

A new format is one row here plus its module. Addressing (``file:`` ids):

=====================  ====================================================================================
``file:m.safetensors``  safetensors (a folder of shards with its index too)
``file:m.pt``           torch pickle (``.pt .pth .th .bin .ckpt .tar``): weights_only, or the restricted unpickler
                        for checkpoints holding config objects; TorchScript archives are detected by content
``file:m.onnx``         ONNX (external data next to it)
``file:m.tflite``       TensorFlow Lite flatbuffer
``file:d/model.json``   TensorFlow.js (layers or graph model) with its weight shards in the same folder
``file:m.h5``           Keras HDF5 (``.h5 .hdf5 .keras`` weights; Keras 2 and 3 layouts)
``file:d/x.index``      TensorFlow checkpoint (``x.index`` + ``x.data-*``); a SavedModel folder works too
``file:m.npz``          numpy archive (``allow_pickle=False``)
``file:v.npy``          one numpy array (also any file with the ``\x93NUMPY`` magic, e.g. spaCy ``vocab/vectors``)
``file:p/ner/model``    spaCy/thinc component (msgpack; spaCy 2 and 3)
``file:w.pkl``          plain pickle of numpy arrays (restricted unpickler: nothing imported)
``file:gnubg.wd``       GNU Backgammon binary weights (its evaluation MLPs, back to back)
=====================  ====================================================================================
"""

from __future__ import annotations

import importlib
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scanner.errors import SourceError
from scanner.sources.base import WeightSource


@dataclass(frozen=True)
class Reader:
    """One format: how to recognise it and where its opener lives.

    Attributes:
        name: short format name ("onnx", "tflite", ...), as the zoo catalog's ``format`` column spells it.
        suffixes: file-name endings that select it (lower case).
        magic: a test of the first 16 bytes that selects it regardless of the suffix (None: suffix only).
        opener: "module:function" taking (path, model_id) and returning a WeightSource.
    """

    name: str
    suffixes: tuple[str, ...]
    magic: Callable[[bytes], bool] | None
    opener: str


READERS: tuple[Reader, ...] = (
    Reader("tflite", (".tflite",), lambda head: head[4:8] == b"TFL3", "scanner.sources.formats.tflite_reader:open_tflite"),
    Reader("keras_h5", (".h5", ".hdf5", ".keras", ".weights.h5"), lambda head: head[:8] == b"\x89HDF\r\n\x1a\n",
           "scanner.sources.formats.keras_h5:open_h5"),
    Reader("onnx", (".onnx", ".ort.onnx"), None, "scanner.sources.formats.onnx_reader:open_onnx"),
    Reader("tfjs", ("model.json",), None, "scanner.sources.formats.tfjs_reader:open_tfjs"),
    Reader("tf_checkpoint", (".index",), None, "scanner.sources.formats.tf_checkpoint:open_checkpoint"),
    Reader("npz", (".npz",), None, "scanner.sources.formats.npz_reader:open_npz"),
    Reader("npy", (".npy",), lambda head: head[:6] == b"\x93NUMPY", "scanner.sources.formats.npz_reader:open_npy"),
    Reader("numpy_pickle", (".pkl", ".pickle"), None, "scanner.sources.formats.torch_archive:open_pickle"),
    # a spaCy component's weights file is named "model" (beside its "cfg"); msgpack maps start with 0x8_/0xde/0xdf
    Reader("spacy_msgpack", ("/model",), None, "scanner.sources.formats.spacy_reader:open_spacy"),
    # GNU Backgammon's binary weights start with the float32 magic 472.3782 (bytes 69 30 ec 43)
    Reader("gnubg_weights", (".wd",), lambda head: head[:4] == b"i0\xecC",
           "scanner.sources.formats.gnubg_reader:open_gnubg"),
)


def regular_file(path: Path) -> None:
    """Raise SourceError unless ``path`` is a regular file (FIFOs, devices and sockets are refused unread)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from exc
    if not stat.S_ISREG(mode):
        raise SourceError(f"{path}: not a regular file (a FIFO, device or socket); give a weight file")


def reader_for(path: Path) -> Reader | None:
    """The reader of a file, by magic bytes first, then by suffix; None when no table row matches."""
    regular_file(path)
    with open(path, "rb") as handle:
        head = handle.read(16)
    for reader in READERS:
        if reader.magic is not None and reader.magic(head):
            return reader
    name = "/" + path.name.lower()
    for reader in READERS:
        if name.endswith(reader.suffixes):
            return reader
    return None


def open_with(reader: Reader, path: Path, model_id: str) -> WeightSource:
    """Open ``path`` with ``reader`` (its module is imported only now)."""
    module_name, _, function = reader.opener.partition(":")
    return getattr(importlib.import_module(module_name), function)(path, model_id)


def folder_reader(path: Path) -> tuple[Reader, Path] | None:
    """A folder that is one model in a non-PyTorch format: a TFJS folder (``model.json``) or a SavedModel /
    checkpoint folder (``variables/variables.index`` or a single ``*.index``)."""
    by_name = {r.name: r for r in READERS}
    if (path / "model.json").is_file():
        return by_name["tfjs"], path / "model.json"
    if (path / "variables" / "variables.index").is_file():
        return by_name["tf_checkpoint"], path / "variables" / "variables.index"
    indexes = sorted(path.glob("*.index"))
    if len(indexes) == 1:
        return by_name["tf_checkpoint"], indexes[0]
    return None
