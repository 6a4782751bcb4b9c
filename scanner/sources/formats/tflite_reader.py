"""TensorFlow Lite flatbuffers (``file:model.tflite``), parsed with the pure-Python ``tflite`` schema package.

Constant tensors are those whose buffer holds data (inline, or at an offset of the file for models over
2 GB); each buffer's range is checked against the file before it is read. Roles come from the operator that
consumes a tensor, looking back through ``DEQUANTIZE`` (fp16 or int8 weights expanded at run time):

* ``FULLY_CONNECTED`` weights (out, in): PyTorch layout already; ``BATCH_MATMUL`` constant operand [in, out];
* ``CONV_2D`` (and ``CONV_3D``) OHWI → OIHW; ``TRANSPOSE_CONV`` OHWI (output channels first) → (in, out, H, W)
  is analysed as out × in slices like PyTorch's ConvTranspose;
* ``DEPTHWISE_CONV_2D`` [1, H, W, C·M] → (C·M, 1, H, W), groups = C·M / M (M from the op's depth multiplier);
* ``UNIDIRECTIONAL_SEQUENCE_LSTM``/``LSTM``: the eight per-gate matrices are stacked to PyTorch's
  (4H, in) and (4H, H), gates i, f, g, o;
* ``EMBEDDING_LOOKUP``/``GATHER`` params → embedding.

Quantised tensors (int8, uint8, int16) are dequantised as (q − zero_point) × scale, per tensor or per channel
along ``quantized_dimension``; fp16 tensors are read as fp16 (``dtype_stored`` says so). Sparse tensors are not
densified (skipped with a reason).
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any

import numpy as np

from scanner.errors import SourceError
from scanner.sources.formats._common import ITEMSIZE, Entry, FormatSource, check_range, numel, rnn_name

# TensorType -> numpy dtype name
TFLITE_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8",
                 10: "float64", 12: "uint64", 15: "uint32", 16: "uint16"}
_QUANTISED = ("int8", "uint8", "int16", "uint16", "int32")
# builtin op code -> (name, {input index: role})
_OPS = {9: ("FULLY_CONNECTED", {1: "fc"}), 3: ("CONV_2D", {1: "conv"}), 132: ("CONV_3D", {1: "conv"}),
        4: ("DEPTHWISE_CONV_2D", {1: "depthwise"}), 67: ("TRANSPOSE_CONV", {1: "conv_transpose"}),
        126: ("BATCH_MATMUL", {0: "matmul_a", 1: "matmul"}), 7: ("EMBEDDING_LOOKUP", {1: "embedding"}),
        36: ("GATHER", {0: "embedding"})}
_LSTM_OPS = {16: "LSTM", 44: "UNIDIRECTIONAL_SEQUENCE_LSTM"}
_DEQUANTIZE = 6


def _op_codes(model: Any) -> list[int]:
    """The builtin code of each entry of the model's operator-code table (read once: an operator names its code
    by index, and reading the table entry again for each operator cost more than the rest of ``_roles``)."""
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        codes.append(max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode())))
    return codes


class _Tensors:
    """The constant tensors of subgraph 0 and their readers."""

    def __init__(self, path: Path, data: Any, model: Any) -> None:
        self.path, self.data, self.model, self.size = path, data, model, len(data)
        self.graph = model.Subgraphs(0)

    def info(self, index: int) -> tuple[str, tuple[int, ...], str] | None:
        """(name, shape, dtype) of a constant tensor, None when its buffer is empty (an activation)."""
        t = self.graph.Tensors(index)
        buffer = self.model.Buffers(t.Buffer())
        if buffer is None or (buffer.DataLength() == 0 and not buffer.Offset()):
            return None
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        if any(d < 0 for d in shape):
            raise SourceError(f"{self.path}: tensor {index} has a negative dimension {shape}; the file is corrupt")
        code = t.Type()
        return (t.Name() or b"").decode("utf-8", "replace") or f"tensor_{index}", shape, \
            TFLITE_DTYPES.get(code, f"tflite_type_{code}")

    def raw(self, index: int, dtype: str, shape: tuple[int, ...]) -> tuple[Any, int]:
        """(a reader of the stored array, stored bytes), the range checked against the file now."""
        t = self.graph.Tensors(index)
        buffer = self.model.Buffers(t.Buffer())
        nbytes = numel(shape) * ITEMSIZE[dtype]
        name = (t.Name() or b"").decode("utf-8", "replace")
        if buffer.Offset():
            offset, length = int(buffer.Offset()), int(buffer.Size())
        else:
            offset = buffer._tab.Vector(buffer._tab.Offset(4))
            length = buffer.DataLength()
        if length != nbytes:
            raise SourceError(f"{self.path}: tensor {name!r} declares {shape} of {dtype} ({nbytes} bytes) but its "
                              f"buffer holds {length}; the file is corrupt")
        check_range(self.path, offset, nbytes, self.size, name)
        data = self.data
        return (lambda: np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), count=numel(shape),
                                      offset=offset).reshape(shape)), nbytes

    def quantisation(self, index: int) -> tuple[np.ndarray, np.ndarray, int] | None:
        q = self.graph.Tensors(index).Quantization()
        if q is None or q.ScaleLength() == 0:
            return None
        scale = q.ScaleAsNumpy().astype(np.float32)
        zero = q.ZeroPointAsNumpy().astype(np.float32) if q.ZeroPointLength() else np.zeros_like(scale)
        return scale, zero, int(q.QuantizedDimension())


def _roles(tensors: _Tensors) -> dict[int, tuple[str, str, Any]]:
    """tensor index -> (role, op name, op) of the weight operands, looking back through DEQUANTIZE."""
    model, graph = tensors.model, tensors.graph
    table = _op_codes(model)
    ops = []  # (code, inputs, outputs, op) of every operator, each field read once
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        index = int(op.OpcodeIndex())
        if not 0 <= index < len(table):
            raise SourceError(f"{tensors.path}: operator {i} names operator code {index} of {len(table)}; the file "
                              "is corrupt")
        inputs = op.InputsAsNumpy().tolist() if op.InputsLength() else []
        outputs = op.OutputsAsNumpy().tolist() if op.OutputsLength() else []
        ops.append((table[index], inputs, outputs, op))
    dequant_source = {outputs[0]: inputs[0] for code, inputs, outputs, _ in ops
                      if code == _DEQUANTIZE and inputs and outputs}
    roles: dict[int, tuple[str, str, Any]] = {}
    for code, inputs, _, op in ops:
        if code in _LSTM_OPS:
            for j in range(1, 9):
                if j < len(inputs) and inputs[j] >= 0:
                    roles[dequant_source.get(inputs[j], inputs[j])] = (f"lstm{j}", _LSTM_OPS[code], op)
            continue
        if code not in _OPS:
            continue
        name, by_index = _OPS[code]
        for j, role in by_index.items():
            if j < len(inputs) and inputs[j] >= 0:
                roles.setdefault(dequant_source.get(inputs[j], inputs[j]), (role, name, op))
    return roles


def _depth_multiplier(op: Any) -> int:
    from tflite.DepthwiseConv2DOptions import DepthwiseConv2DOptions

    table = op.BuiltinOptions()
    if table is None:
        return 1
    options = DepthwiseConv2DOptions()
    options.Init(table.Bytes, table.Pos)
    return max(1, int(options.DepthMultiplier()))


def _layout(role: str, shape: tuple[int, ...], op: Any) -> tuple[tuple[int, ...], tuple[int, ...] | None, str, int]:
    """(PyTorch shape, axis permutation or None, family, groups) of a weight in ``role``."""
    if role == "conv" and len(shape) >= 3:
        return (shape[0], shape[-1], *shape[1:-1]), (0, len(shape) - 1, *range(1, len(shape) - 1)), "conv", 1
    if role == "conv_transpose" and len(shape) == 4:
        return (shape[3], shape[0], shape[1], shape[2]), (3, 0, 1, 2), "conv_transpose", 1
    if role == "depthwise" and len(shape) == 4:
        channels = shape[3]
        return (channels, 1, shape[1], shape[2]), (3, 0, 1, 2), "conv", channels // _depth_multiplier(op)
    if role == "matmul" and len(shape) == 2:
        return (shape[1], shape[0]), (1, 0), "linear", 1
    if role in ("fc", "matmul_a"):
        return shape, None, "linear", 1
    if role == "embedding":
        return shape, None, "embedding", 1
    return shape, None, "", 1


_NOTES = {"conv": "stored OHWI (TFLite conv), permuted to OIHW",
          "conv_transpose": "stored OHWI (TFLite transposed conv), as in x out slices",
          "depthwise": "stored [1, H, W, C*M] (TFLite depthwise), as C*M x 1 slices",
          "matmul": "stored [in, out] (BATCH_MATMUL operand), transposed"}


def _dequantise(read: Any, q: tuple[np.ndarray, np.ndarray, int] | None, ndim: int) -> Any:
    if q is None:
        return lambda: read().astype(np.float32)
    scale, zero, axis = q
    view = [1] * ndim
    if scale.size > 1 and ndim:
        view[axis % ndim] = scale.size
    return lambda: (read().astype(np.float32) - zero.reshape(view)) * scale.reshape(view)


def _entry(tensors: _Tensors, index: int, role_info: tuple[str, str, Any] | None) -> Entry | None:
    info = tensors.info(index)
    if info is None:
        return None
    name, shape, dtype = info
    t = tensors.graph.Tensors(index)
    module_type = role_info[1] if role_info else None
    if dtype not in ITEMSIZE:
        return Entry(name, shape, dtype, 0, lambda: np.empty(0), module_type=module_type,
                     skip=f"TFLite element type {dtype} is not read")
    if t.Sparsity() is not None:
        return Entry(name, shape, dtype, 0, lambda: np.empty(0), module_type=module_type,
                     skip="sparse TFLite tensor: not densified, not analysed")
    if role_info is None and (dtype in _QUANTISED or len(shape) < 2) and len(shape) < 2:
        return None  # integer plumbing (shapes, axes) and biases' quantised counterparts are no rows
    read, nbytes = tensors.raw(index, dtype, shape)
    quant = tensors.quantisation(index) if dtype in _QUANTISED else None
    dequantized = quant is not None
    load = _dequantise(read, quant, len(shape)) if dequantized or dtype == "float16" else read
    if role_info is None:
        return Entry(name, shape, dtype, nbytes, load, None, module_type="(no weight operator)",
                     dequantized=dequantized)
    role, op_name, op = role_info
    if role.startswith("lstm"):
        return None  # stacked by _lstm_entries
    torch_shape, perm, family, groups = _layout(role, shape, op)
    loader = load if perm is None else (lambda: load().transpose(perm))
    return Entry(name, torch_shape, dtype, nbytes, loader, family or None, groups=groups, module_type=op_name,
                 dequantized=dequantized, note=_NOTES.get(role, ""))


def _lstm_entries(tensors: _Tensors, roles: dict[int, tuple[str, str, Any]]) -> list[Entry]:
    """The per-gate LSTM matrices of each LSTM op stacked to (4H, in) and (4H, H), gates i, f, g (cell), o."""
    ops: dict[int, dict[int, int]] = {}
    for index, (role, _, op) in roles.items():
        if role.startswith("lstm"):
            ops.setdefault(id(op), {})[int(role[4:])] = index
    entries = []
    for n, parts in enumerate(ops.values()):
        for recurrent, first in ((False, 1), (True, 5)):
            indices = [parts.get(first + g) for g in range(4)]
            if any(i is None for i in indices):
                continue  # CIFG (no input gate): left out
            infos = [tensors.info(i) for i in indices]  # type: ignore[arg-type]
            if any(info is None or len(info[1]) != 2 for info in infos):
                continue
            loads, total = [], 0
            for i, (_, shape, dtype) in zip(indices, infos, strict=True):  # type: ignore[misc]
                read, nbytes = tensors.raw(i, dtype, shape)  # type: ignore[arg-type]
                quant = tensors.quantisation(i) if dtype in _QUANTISED else None  # type: ignore[arg-type]
                loads.append(_dequantise(read, quant, 2) if quant is not None or dtype == "float16" else read)
                total += nbytes
            shapes = [info[1] for info in infos]  # type: ignore[index]
            stacked = (sum(s[0] for s in shapes), shapes[0][1])
            dtype = infos[0][2]  # type: ignore[index]
            entries.append(Entry(rnn_name(f"lstm_{n}", recurrent), stacked, dtype, total, _stacked(loads), "rnn", gates=4,
                                 module_type="LSTM", dequantized=dtype in _QUANTISED,
                                 note="TFLite per-gate LSTM matrices stacked as i, f, g, o"))
    return entries


def _stacked(loads: list[Any]) -> Any:
    return lambda: np.concatenate([load() for load in loads], axis=0)


def open_tflite(path: Path, model_id: str) -> FormatSource:
    """A ``FormatSource`` over the constant tensors of a TFLite model's first subgraph (see the module docstring).

    Raises:
        SourceError: not a TFLite flatbuffer, or a tensor whose buffer disagrees with its declared shape.
    """
    from tflite.Model import Model

    if path.stat().st_size < 8:
        raise SourceError(f"{path}: truncated ({path.stat().st_size} bytes): not a TFLite model")
    with open(path, "rb") as handle:
        data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)  # pages are read only where tensors lie
    try:
        model = Model.GetRootAs(data, 0)
        if model.SubgraphsLength() < 1:
            raise SourceError(f"{path}: the TFLite model has no subgraph")
        tensors = _Tensors(path, data, model)
        roles = _roles(tensors)
        entries = [e for i in range(tensors.graph.TensorsLength()) if (e := _entry(tensors, i, roles.get(i)))]
        entries += _lstm_entries(tensors, roles)
    except SourceError:
        raise
    except Exception as exc:  # flatbuffers raise struct/index errors on a damaged file
        raise SourceError(f"{path}: not a readable TFLite flatbuffer ({type(exc).__name__}: {str(exc)[:120]}); "
                          "re-download it") from exc
    return FormatSource(model_id, [path], entries)
