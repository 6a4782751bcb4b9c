"""Local checkpoints: ``file:<path>`` (a .safetensors file, a folder of shards, or a torch state dict).

Safety: torch pickles are read with ``torch.load(..., weights_only=True)`` only, memory-mapped when the
file is in the zip format (torch ≥ 1.6), so tensors are paged in one at a time; a plain state dict in the
legacy format (torch < 1.6) is read by ``scanner.sources.torch_legacy`` first, which allows fewer globals than
torch and leaves every other file to torch.load. A pickle that needs more
than tensors and containers (a pickled ``nn.Module``, an optimizer, any custom class) is refused with
``UnsafeCheckpointError``; there is no fallback to ``weights_only=False`` and none to random weights.

Nesting: dicts are unwrapped through the keys ``state_dict``, ``model``, ``module``, ``net`` and
``model_state_dict``, ``model_state``, ``network`` (at most three levels); non-tensor values (epochs, accuracies) are ignored; a
DataParallel ``module.`` prefix is removed when every key carries it (when only some do, the names are
kept and the copies are caught as duplicates by ``scanner.layers``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from scanner.errors import SourceError, UnsafeCheckpointError
from scanner.paths import resolve_data_path
from scanner.sources.base import FilesDigest, ModuleInfo, NamedTensor, WeightSource, declared_size_reason
from scanner.sources.safetensors_reader import DTYPES, TensorEntry, read_header, read_tensor
from scanner.sources.torch_legacy import read_plain_legacy

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

TORCH_SUFFIXES = (".pt", ".pth", ".th", ".bin", ".ckpt")
# Messages of torch's weights-only unpickler that mean "needs code or classes", as opposed to a damaged file
# ("Unsupported operand", truncated data), which is a plain SourceError.
_UNSAFE_MARKERS = ("unsupported global", "can only build", "can only create new object", "allowlisted")
NESTED_KEYS = ("state_dict", "model", "module", "net", "model_state_dict", "model_state", "network")
SUPPORTED = ".safetensors, a folder of *.safetensors (+ model.safetensors.index.json), or " + ", ".join(TORCH_SUFFIXES)

# (name, shape) -> what is known about the owning module; None when nothing is.
Annotator = Callable[[str, tuple[int, ...]], "ModuleInfo | None"]

_RNN_WEIGHT = re.compile(r"^(?P<prefix>.*)weight_(?P<part>ih|hh|hr)_l(?P<layer>\d+)(?P<rev>_reverse)?$")


def rnn_gates_from_shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """Gate count of RNN weights in a plain state dict, from the row ratio of ``weight_hh_l<k>``.

    ``weight_hh_l<k>`` is (G·H, H) for G gates (LSTM 4, GRU 3, RNN 1); with an LSTM projection
    (``weight_hr_l<k>``, shape (P, H)) it is (4H, P) and H is read from ``weight_hr``. The ratio applies to
    ``weight_ih_l<k>`` (G·H, input) of the same layer and direction. Unclear ratios give no entry.
    """
    gates: dict[str, int] = {}
    for name, shape in shapes.items():
        match = _RNN_WEIGHT.match(name)
        if not match or match["part"] != "hh" or len(shape) != 2:
            continue
        tail = f"_l{match['layer']}{match['rev'] or ''}"
        hr_shape = shapes.get(f"{match['prefix']}weight_hr{tail}")
        hidden = hr_shape[1] if hr_shape and len(hr_shape) == 2 else shape[1]
        if hidden and shape[0] % hidden == 0 and shape[0] // hidden in (1, 3, 4):
            gates[name] = gates[f"{match['prefix']}weight_ih{tail}"] = shape[0] // hidden
    return gates


class FileSource(WeightSource):
    """Tensors of a local checkpoint file or folder (see the module docstring for formats and safety).

    Args:
        path: a file or a folder.
        model_id: id recorded with the results (default ``file:<path>``).
        annotate: optional (name, shape) -> ModuleInfo, e.g. module types learned from a meta-device model.
    """

    def __init__(self, path: str | os.PathLike, *, model_id: str | None = None, annotate: Annotator | None = None):
        self.path = Path(path)
        super().__init__(model_id or f"file:{self.path}")
        self._annotate = annotate
        if not self.path.exists():
            raise SourceError(f"{self.path}: no such file or folder; check the path after 'file:'")
        self.files = _resolve_files(self.path)
        self._digest = FilesDigest([str(f) for f in self.files])
        if self.files[0].suffix == ".safetensors":
            self._entries = [(str(f), read_header(str(f))) for f in self.files]
            shapes = {e.name: e.shape for _, entries in self._entries for e in entries}
            self._state_dict: dict[str, torch.Tensor] = {}
        else:
            self._state_dict = {}
            for file in self.files:
                self._state_dict.update(load_torch_state_dict(str(file)))
            shapes = {k: tuple(v.shape) for k, v in self._state_dict.items()}
        if not shapes:
            raise SourceError(f"{self.path}: the checkpoint holds no tensors")
        self._is_torch = self.files[0].suffix != ".safetensors"
        self.stable_storage = self._is_torch  # a loaded state dict stays in memory; safetensors are streamed
        self.rereadable = not self._is_torch  # a safetensors entry is read again by its offsets
        self._gates = rnn_gates_from_shapes(shapes)
        self.shapes = shapes

    def _info(self, name: str, shape: tuple[int, ...]) -> ModuleInfo | None:
        info = self._annotate(name, shape) if self._annotate else None
        if name in self._gates and (info is None or info.gates is None):
            info = dataclasses.replace(info or ModuleInfo(), gates=self._gates[name])
        return info

    def _iter_tensors(self) -> Iterator[NamedTensor]:
        if self._is_torch:
            for name, tensor in self._state_dict.items():
                info = self._info(name, tuple(tensor.shape))
                reason = self._too_large(tuple(tensor.shape), tensor.element_size())
                if reason:  # memory-mapped: the values are not touched, so nothing is allocated
                    tensor = tensor.to("meta")
                yield NamedTensor.with_info(name, tensor, info, reason)
            return
        for file, entries in self._entries:
            with open(file, "rb") as handle:
                for entry in entries:
                    reason = self._too_large(entry.shape, DTYPES[entry.dtype][1])
                    if reason:  # checked from the header, before a buffer is allocated
                        import torch

                        meta = torch.empty(entry.shape, dtype=getattr(torch, DTYPES[entry.dtype][0]), device="meta")
                        yield NamedTensor.with_info(entry.name, meta, self._info(entry.name, entry.shape), reason)
                        continue
                    yield self._read(handle, entry)

    def _too_large(self, shape: tuple[int, ...], itemsize: int) -> str:
        return declared_size_reason(shape, itemsize, max_bytes=self.max_layer_bytes, max_evals=self.max_evals)

    def _read(self, handle, entry: TensorEntry) -> NamedTensor:
        return NamedTensor.with_info(entry.name, read_tensor(handle, entry), self._info(entry.name, entry.shape))

    def reread(self, position: int) -> torch.Tensor | None:
        """The safetensors entry yielded at ``position`` read again from its file (None for a torch state dict:
        it stays in memory)."""
        if self._is_torch:
            return None
        entries = [(file, entry) for file, listed in self._entries for entry in listed]
        if not 0 <= position < len(entries):
            return None
        file, entry = entries[position]
        with open(file, "rb") as handle:
            return read_tensor(handle, entry)

    def begin_digest(self) -> None:
        """Hash the checkpoint files on a thread of their own from now on (:class:`FilesDigest`)."""
        self._digest.start()

    def digest(self) -> str:
        """sha256 over the checkpoint files' bytes, in reading order (on its thread if begun, else here)."""
        return self._digest.value()

    def close(self) -> None:
        """Drop the (memory-mapped) torch state dict, if any; the source is empty afterwards."""
        self._state_dict = {}
        self._digest.stop()


def _resolve_files(path: Path) -> list[Path]:
    """The checkpoint files to read, in order: one file, the shards of an index, or the folder's weights."""
    if not path.is_dir():
        from scanner.sources.formats import regular_file

        regular_file(path)
        if path.suffix == ".safetensors" or path.suffix in TORCH_SUFFIXES:
            return [path]
        raise SourceError(f"{path}: unknown checkpoint format {path.suffix!r}; supported: {SUPPORTED}")
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / index_name).is_file():
            return _shards_from_index(path, path / index_name)
    for pattern in ("model.safetensors", "*.safetensors", "pytorch_model.bin", "*.bin", "*.pt", "*.pth", "*.ckpt"):
        found = sorted(path.glob(pattern))
        if found:
            return found
    raise SourceError(f"{path}: no weight files in this folder; supported: {SUPPORTED}")


def _shards_from_index(folder: Path, index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SourceError(f"{index}: not a valid shard index (needs a 'weight_map' object): {exc}") from exc
    from scanner.sources.formats._common import inside

    if not isinstance(weight_map, dict):
        raise SourceError(f"{index}: 'weight_map' is not an object of tensor name -> shard file")
    return [inside(folder, name, f"{index}") for name in dict.fromkeys(weight_map.values())]


def _unpickler_reason(exc: BaseException) -> str:
    """What torch's weights-only unpickler objected to, without the advice around it (torch 2.6+ wraps it in a
    paragraph that suggests ``weights_only=False``, which zooscan never does)."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].split("Check the documentation", 1)[0]
    return " ".join(text.split()) or type(exc).__name__


def load_torch_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Load a torch checkpoint with ``weights_only=True`` (memory-mapped when zip format; a plain legacy state dict
    through ``read_plain_legacy``) and return its tensors.

    Raises:
        UnsafeCheckpointError: the pickle needs code execution (classes other than tensors and containers).
        SourceError: empty, truncated or corrupt file, or no tensors in it.
    """
    import torch

    if os.path.getsize(path) == 0:
        raise SourceError(f"{path}: empty file (0 bytes); re-download or re-save the checkpoint")
    is_zip = zipfile.is_zipfile(path)
    obj = None if is_zip else read_plain_legacy(path)
    if obj is not None:
        return _tensors_of(obj, path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        if any(marker in str(exc).lower() for marker in _UNSAFE_MARKERS):
            raise UnsafeCheckpointError(_unsafe_message(path, exc)) from exc
        raise SourceError(f"{path}: not a torch checkpoint, or a corrupt one (torch's weights-only reader: "
                          f"{_unpickler_reason(exc)}); re-download or re-save it") from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, ValueError... for damaged files
        raise SourceError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc
    return _tensors_of(obj, path)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_BLOCKED = re.compile(r"(?:GLOBAL|global)\s+([\w.]+)")


def _unsafe_message(path: str, exc: Exception) -> str:
    text = _ANSI.sub("", str(exc)).strip()
    blocked = _BLOCKED.search(text)
    first = f"blocked global {blocked.group(1)}" if blocked else (text.splitlines()[0] if text else type(exc).__name__)
    return (
        f"{path}: refused: this checkpoint is a pickle that needs code execution to load (torch.load with "
        f"weights_only=True failed: {first}). zooscan never runs code from checkpoints. To convert it, load it "
        "yourself in a trusted environment and save only the weights, e.g. "
        "torch.save(model.state_dict(), 'weights.pt') or safetensors.torch.save_file(state_dict, 'model.safetensors'), "
        "then scan 'file:<that file>'."
    )


def _tensors_of(obj: object, path: str) -> dict[str, torch.Tensor]:
    import torch

    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        nested = next((obj[k] for k in NESTED_KEYS if isinstance(obj.get(k), Mapping)), None)
        if tensors or nested is None:
            return _strip_module_prefix(tensors, path)
        obj = nested
    kind = type(obj).__name__
    raise SourceError(f"{path}: no state dict found (top-level object is a {kind}); save a dict of tensors instead")


def _strip_module_prefix(tensors: dict[str, torch.Tensor], path: str) -> dict[str, torch.Tensor]:
    if not tensors:
        raise SourceError(f"{path}: the checkpoint holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        return {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def open_file(ref, cache_dir: str | None = None) -> WeightSource:
    """Weights of ``file:<path>`` (``cache_dir`` is unused: local files are read in place).

    The format comes from ``scanner.sources.formats.READERS`` (magic bytes, then suffix); safetensors and torch
    pickles are read here; a TorchScript archive, or a torch zip whose pickle needs classes, goes through the
    restricted unpickler of ``scanner.sources.formats.torch_archive``."""
    from scanner.sources import formats

    path = resolve_data_path(ref.name)
    if path.is_dir():
        found = formats.folder_reader(path)
        if found is not None:
            return formats.open_with(found[0], found[1], ref.model_id)
    elif path.exists():
        reader = formats.reader_for(path)
        if reader is not None:
            return formats.open_with(reader, path, ref.model_id)
        if zipfile.is_zipfile(path):
            from scanner.sources.formats.torch_archive import is_torchscript, open_torch_archive

            if is_torchscript(path):
                return open_torch_archive(path, ref.model_id)
            try:
                return FileSource(str(path), model_id=ref.model_id, annotate=_config_annotator(path))
            except UnsafeCheckpointError:  # config objects or numpy metadata: read without importing them
                return open_torch_archive(path, ref.model_id)
    return FileSource(str(path), model_id=ref.model_id, annotate=_config_annotator(path))


def _config_annotator(path: Path) -> Annotator | None:
    """Hints from a transformers ``config.json`` in the weights' folder, read as ``hf:`` reads them (GPT-2's
    Conv1D layers, attention heads), so ``file:`` and ``hf:`` on the same files give the same layers."""
    folder = path if path.is_dir() else path.parent
    if not (folder / "config.json").is_file():
        return None
    from scanner.sources.hf import hf_annotator, read_config

    return hf_annotator(read_config(folder))
