"""TensorFlow.js models (``file:folder/model.json``, or the folder): ``weightsManifest`` and its binary shards.

Each manifest group lists shard files (``paths``, resolved inside the model's folder) whose bytes, concatenated,
hold the group's weights in order. A weight is ``{name, shape, dtype}`` plus an optional ``quantization``:
``{"dtype": "uint8"|"uint16", "scale", "min"}`` (value = q × scale + min) or ``{"dtype": "float16"}``. Every
offset is checked against the group's total size before anything is read; string weights are skipped.

Roles: a layers model (``format: layers-model``) names each layer's class in ``modelTopology``; a graph model
names the op consuming each weight node (``MatMul`` [in, out] unless ``transpose_b``, ``Conv2D`` HWIO,
``DepthwiseConv2dNative`` HWCM, ``Conv2DBackpropInput`` HWOI, fused variants). Otherwise the layout is
guessed from the rank and the name, and the row's note says so. See ``_common.tf_to_torch`` for the conversions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from scanner.errors import SourceError
from scanner.sources.formats._common import (
    ITEMSIZE,
    Entry,
    FormatSource,
    inside,
    keras_role,
    numel,
    read_bytes,
    tf_entry,
)

MAX_JSON_BYTES = 64 * 1024 * 1024
_DTYPES = {"float32": "float32", "int32": "int32", "bool": "bool", "float16": "float16", "uint8": "uint8",
           "int8": "int8", "uint16": "uint16", "int16": "int16", "complex64": None, "string": None}
_GRAPH_OPS = {"MatMul": "dense", "_FusedMatMul": "dense", "BatchMatMulV2": "dense", "Conv2D": "conv",
              "_FusedConv2D": "conv", "Conv3D": "conv", "Conv1D": "conv", "DepthwiseConv2dNative": "depthwise",
              "FusedDepthwiseConv2dNative": "depthwise", "Conv2DBackpropInput": "conv_transpose",
              "GatherV2": "embedding", "Gather": "embedding", "ResourceGather": "embedding"}


def _layer_classes(topology: Any) -> dict[str, str]:
    """layer name -> Keras class name, from a layers model's topology (nested models included)."""
    found: dict[str, str] = {}

    def visit(node: Any, depth: int = 0) -> None:
        if depth > 32:
            return
        if isinstance(node, dict):
            cls, config = node.get("class_name"), node.get("config")
            name = config.get("name", node.get("name")) if isinstance(config, dict) else None
            if isinstance(cls, str) and isinstance(config, dict) and isinstance(name, str):
                found.setdefault(name, cls)
                layer = config.get("layer")  # Bidirectional / TimeDistributed wrap a layer
                if isinstance(layer, dict) and isinstance(layer.get("class_name"), str):
                    found.setdefault(name, layer["class_name"])
            for value in node.values():
                visit(value, depth + 1)
        elif isinstance(node, list):
            for value in node:
                visit(value, depth + 1)

    visit(topology)
    return found


def _graph_roles(topology: Any) -> dict[str, tuple[str, str]]:
    """weight node name -> (role, op) from a graph model's nodes (the op consuming the weight)."""
    roles: dict[str, tuple[str, str]] = {}
    nodes = topology.get("node", []) if isinstance(topology, dict) else []
    for node in nodes if isinstance(nodes, list) else []:
        if not isinstance(node, dict) or node.get("op") not in _GRAPH_OPS:
            continue
        op = node["op"]
        inputs = [str(i).split(":")[0].lstrip("^") for i in node.get("input", []) if isinstance(i, str)]
        index = 0 if op in ("GatherV2", "Gather", "ResourceGather") else 1
        if op == "Conv2DBackpropInput":
            index = 1
        if len(inputs) > index:
            role = _GRAPH_OPS[op]
            attr = node.get("attr", {}) if isinstance(node.get("attr"), dict) else {}
            if role == "dense" and isinstance(attr.get("transpose_b"), dict) and attr["transpose_b"].get("b"):
                role = "dense_t"
            roles.setdefault(inputs[index], (role, op))
    return roles


def _role(name: str, shape: tuple[int, ...], classes: dict[str, str],
          graph: dict[str, tuple[str, str]]) -> tuple[str | None, str | None, str]:
    """(role, module type, assumption note) of one weight."""
    if name in graph:
        graph_role, op = graph[name]
        return graph_role, op, ""
    parts = name.split("/")
    leaf = parts[-1]
    cls = next((classes[p] for p in reversed(parts[:-1]) if p in classes), None)
    role, assumed = keras_role(cls, leaf, shape)
    if cls is None and len(shape) >= 2 and not classes and not graph:
        assumed = assumed or "layer class unknown"
    return role, cls, assumed


def open_tfjs(path: Path, model_id: str) -> FormatSource:
    """A ``FormatSource`` over a TFJS model's weights (see the module docstring).

    Raises:
        SourceError: model.json unreadable or without a ``weightsManifest``, shards missing or outside the folder,
            or weights that run past their shards.
    """
    if path.is_dir():
        path = path / "model.json"
    if path.stat().st_size > MAX_JSON_BYTES:
        raise SourceError(f"{path}: model.json is larger than {MAX_JSON_BYTES} bytes; refused")
    try:
        model = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SourceError(f"{path}: not a TFJS model.json ({type(exc).__name__})") from exc
    manifest = model.get("weightsManifest") if isinstance(model, dict) else None
    if not isinstance(manifest, list) or not manifest:
        raise SourceError(f"{path}: no 'weightsManifest' list; not a TensorFlow.js model.json")
    topology = model.get("modelTopology", {})
    classes = _layer_classes(topology) if model.get("format") != "graph-model" else {}
    graph = _graph_roles(topology)
    files: list[Path] = [path]
    entries: list[Entry] = []
    for group in manifest:
        entries.extend(_group_entries(path, group, files, classes, graph))
    return FormatSource(model_id, files, entries)


def _group_entries(path: Path, group: Any, files: list[Path], classes: dict[str, str],
                   graph: dict[str, tuple[str, str]]) -> list[Entry]:
    if not isinstance(group, dict) or not isinstance(group.get("paths"), list) or not isinstance(group.get("weights"),
                                                                                                  list):
        raise SourceError(f"{path}: a weightsManifest group lacks 'paths' or 'weights'")
    shards = [inside(path.parent, p, str(path)) for p in group["paths"]]
    files.extend(shards)
    sizes = [s.stat().st_size for s in shards]
    total, offset, entries = sum(sizes), 0, []
    for spec in group["weights"]:
        entry, offset = _weight_entry(path, spec, offset, total, shards, sizes, classes, graph)
        if entry is not None:
            entries.append(entry)
    return entries


def _weight_entry(path: Path, spec: Any, offset: int, total: int, shards: list[Path], sizes: list[int],
                  classes: dict[str, str], graph: dict[str, tuple[str, str]]) -> tuple[Entry | None, int]:
    from scanner.sources.base import check_shape

    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise SourceError(f"{path}: a weight entry has no name")
    name = spec["name"]
    try:
        shape = check_shape(spec.get("shape"), f"weight {name!r}")
    except ValueError as exc:
        raise SourceError(f"{path}: {exc}") from exc
    quant = spec.get("quantization") if isinstance(spec.get("quantization"), dict) else None
    dtype = _DTYPES.get(str(spec.get("dtype")))
    stored = str(quant.get("dtype")) if quant else dtype
    if dtype is None or stored not in ITEMSIZE:
        if spec.get("dtype") == "string":
            return None, _skip_strings(path, shards, sizes, offset, numel(shape))
        raise SourceError(f"{path}: weight {name!r} has unsupported dtype {spec.get('dtype')!r}")
    nbytes = numel(shape) * ITEMSIZE[stored]
    if offset + nbytes > total:
        raise SourceError(f"{path}: weight {name!r} needs bytes [{offset}, {offset + nbytes}) of shards holding "
                          f"{total}; the shards are truncated or the manifest lies")
    start = offset

    def read() -> np.ndarray:
        raw = _read_span(shards, sizes, start, nbytes)
        values = np.frombuffer(raw, dtype=np.dtype(stored).newbyteorder("<")).reshape(shape)
        if quant and stored in ("uint8", "uint16", "int8", "int16"):
            scale, low = float(quant.get("scale", 1.0)), float(quant.get("min", 0.0))
            return values.astype(np.float32) * np.float32(scale) + np.float32(low)
        return values.astype(np.float32) if stored == "float16" else values

    role, module_type, assumed = _role(name, shape, classes, graph)
    dequantized = bool(quant) and stored != "float16"
    if role == "dense_t":
        entry = Entry(name, shape, stored, nbytes, read, "linear", module_type=module_type, dequantized=dequantized,
                      note="MatMul with transpose_b: stored [out, in]")
    else:
        entry = tf_entry(name, shape, stored, nbytes, read, role, module_type=module_type, assumed=assumed,
                         dequantized=dequantized)
    return entry, offset + nbytes


def _read_span(shards: list[Path], sizes: list[int], start: int, nbytes: int) -> bytes:
    """Bytes [start, start + nbytes) of the shards taken as one stream."""
    out, position = bytearray(), 0
    for shard, size in zip(shards, sizes, strict=True):
        lo, hi = max(start, position), min(start + nbytes, position + size)
        if lo < hi:
            out += read_bytes(shard, lo - position, hi - lo)
        position += size
    return bytes(out)


def _skip_strings(path: Path, shards: list[Path], sizes: list[int], offset: int, count: int) -> int:
    """The offset after ``count`` strings (each a uint32 byte length, then the bytes)."""
    total = sum(sizes)
    for _ in range(count):
        if offset + 4 > total:
            raise SourceError(f"{path}: a string weight runs past the shards")
        offset += 4 + int.from_bytes(_read_span(shards, sizes, offset, 4), "little")
    return offset
