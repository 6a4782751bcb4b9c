"""ONNX models (``file:model.onnx``): initializers, with each weight's role and orientation taken from the graph.

The protobuf is parsed with the ``onnx`` package (``load_external_data=False``: external data files are read
here, each entry resolved inside the model's folder and its byte range checked against the file). An
initializer's role comes from the node that consumes it, looking back through ``Identity``, ``Cast``,
``Transpose`` and ``DequantizeLinear``:

* ``Gemm`` input B: (out, in) when ``transB=1``, else [in, out] and transposed; ``MatMul`` input B [in, out],
  transposed; ``Gather`` data → embedding;
* ``Conv`` W (O, I/groups, *kernel) with its ``group`` attribute; ``ConvTranspose`` W (I, O/groups, *kernel);
* ``LSTM``/``GRU``/``RNN`` W [dirs, G·H, in] and R [dirs, G·H, H]: one tensor per direction, gate blocks
  reordered from ONNX's order (LSTM i, o, f, c; GRU z, r, h) to PyTorch's (i, f, g, o; r, z, n);
* quantised weights (``DequantizeLinear``, ``QLinearConv``, ``QLinearMatMul``, ``MatMulInteger``,
  ``ConvInteger``) are dequantised, (q − zero_point) × scale, per tensor or per axis.

Other initializers keep the consumer's op type as their module type (so ``scanner.layers`` names it in the
skip reason). Subgraphs (``If`` branches, ``Loop``/``Scan`` bodies) are read too: their initializers and nodes
join the main graph's (silero-vad keeps its 8 kHz and 16 kHz weights in the two branches of an ``If``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scanner.errors import SourceError
from scanner.sources.formats._common import (
    ITEMSIZE,
    Entry,
    FormatSource,
    check_range,
    inside,
    numel,
    read_bytes,
    reorder_gates,
    rnn_name,
)

# TensorProto.DataType -> numpy dtype name
ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
               10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}
_PASS_THROUGH = ("Identity", "Cast", "Transpose", "DequantizeLinear")
# op -> (weight input index, scale index, zero-point index) of integer-weight ops
_QUANT_OPS = {"QLinearConv": (3, 4, 5), "QLinearMatMul": (3, 4, 5), "MatMulInteger": (1, None, 3),
              "ConvInteger": (1, None, 3)}
_RNN_GATES = {"LSTM": (4, "iofc"), "GRU": (3, "zrh"), "RNN": (1, "")}


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


class _Graph:
    """Initializers (and Constant nodes) of a graph, with readers that check sizes before reading."""

    def __init__(self, path: Path, model: Any) -> None:
        import onnx

        self.path, self.folder, self.size = path, path.parent, path.stat().st_size
        graphs = _all_graphs(model.graph)
        self.tensors: dict[str, Any] = {t.name: t for g in graphs for t in g.initializer}
        self.order = list(self.tensors)
        self.initializer_names = set(self.order)
        self.producer: dict[str, Any] = {}
        self.consumers: dict[str, list[tuple[Any, int]]] = {}
        for node in (n for g in graphs for n in g.node):
            if node.op_type == "Constant" and node.output:
                value = _attr(node, "value", None)
                if isinstance(value, onnx.TensorProto):
                    value.name = node.output[0]
                    self.tensors[node.output[0]] = value
                    self.order.append(node.output[0])
                continue
            for out in node.output:
                self.producer[out] = node
            for i, name in enumerate(node.input):
                self.consumers.setdefault(name, []).append((node, i))
        self.files: list[Path] = [path]

    def dtype(self, name: str) -> str:
        code = self.tensors[name].data_type
        return ONNX_DTYPES.get(code, f"onnx_type_{code}")

    def shape(self, name: str) -> tuple[int, ...]:
        dims = tuple(int(d) for d in self.tensors[name].dims)
        if any(d < 0 for d in dims):
            raise SourceError(f"{self.path}: initializer {name!r} has a negative dimension {dims}; the file is corrupt")
        return dims

    def reader(self, name: str) -> Callable[[], np.ndarray]:
        """A function that reads the initializer; sizes are checked now, before anything is read."""
        import onnx

        t, dtype, shape = self.tensors[name], self.dtype(name), self.shape(name)
        nbytes = numel(shape) * ITEMSIZE.get(dtype, 1)
        if t.data_location == onnx.TensorProto.EXTERNAL:
            info = {e.key: e.value for e in t.external_data}
            file = inside(self.folder, info.get("location", ""), f"{self.path}: external data of {name!r}")
            offset, length = int(info.get("offset", 0) or 0), int(info.get("length", nbytes) or nbytes)
            if length != nbytes:
                raise SourceError(f"{self.path}: initializer {name!r} declares {length} external bytes for {shape} "
                                  f"of {dtype} ({nbytes} bytes); the file is corrupt")
            check_range(file, offset, nbytes, file.stat().st_size, name)
            if file not in self.files:
                self.files.append(file)
            return lambda: _from_bytes(read_bytes(file, offset, nbytes), dtype, shape)
        if t.raw_data:
            if len(t.raw_data) != nbytes:
                raise SourceError(f"{self.path}: initializer {name!r} holds {len(t.raw_data)} bytes, but {shape} of "
                                  f"{dtype} needs {nbytes}; the file is corrupt")
            return lambda: _from_bytes(t.raw_data, dtype, shape)
        stored = max(len(t.float_data), len(t.int32_data), len(t.int64_data), len(t.double_data), len(t.uint64_data))
        if stored != numel(shape):
            raise SourceError(f"{self.path}: initializer {name!r} holds {stored} values for shape {shape}; "
                              "the file is corrupt")
        return lambda: onnx.numpy_helper.to_array(t)

    def resolve(self, name: str) -> tuple[str, list[Any]] | None:
        """The initializer behind a node input, and the pass-through nodes on the way (nearest first)."""
        chain: list[Any] = []
        for _ in range(8):
            if name in self.tensors:
                return name, chain
            node = self.producer.get(name)
            if node is None or node.op_type not in _PASS_THROUGH or not node.input:
                return None
            chain.append(node)
            name = node.input[0]
        return None


def _all_graphs(graph: Any, depth: int = 0) -> list[Any]:
    """The graph and every subgraph of its nodes' attributes (If branches, Loop and Scan bodies), depth first."""
    import onnx

    found = [graph]
    if depth > 16:
        return found
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                found += _all_graphs(attribute.g, depth + 1)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    found += _all_graphs(sub, depth + 1)
    return found


def _from_bytes(raw: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "bfloat16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)


def _dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int) -> np.ndarray:
    """(q − zero_point) × scale, per tensor (scalar scale) or along ``axis`` (1-D scale)."""
    values = q.astype(np.float32)
    scale = np.asarray(scale, dtype=np.float32)
    zero_f = np.zeros_like(scale) if zero is None else np.asarray(zero).astype(np.float32)
    if scale.ndim == 1 and scale.size > 1:
        view = [1] * q.ndim
        view[axis % q.ndim] = scale.size
        scale, zero_f = scale.reshape(view), zero_f.reshape(view)
    return (values - zero_f) * scale


class _Role:
    """What the graph says about one initializer."""

    def __init__(self, module_type: str) -> None:
        self.module_type = module_type
        self.family: str | None = None
        self.groups = 1
        self.transpose = False
        self.note = ""
        self.scale: str | None = None
        self.zero: str | None = None
        self.axis = 1
        self.perm: tuple[int, ...] | None = None
        self.rnn: tuple[str, int, str] | None = None  # (op, gates, order)
        self.recurrent = False
        self.node_name = ""


def _role_of(graph: _Graph, node: Any, index: int, chain: list[Any]) -> _Role:
    role = _Role(node.op_type)
    for step in chain:
        if step.op_type == "DequantizeLinear" and len(step.input) >= 2:
            role.scale, role.axis = step.input[1], int(_attr(step, "axis", 1))
            role.zero = step.input[2] if len(step.input) > 2 and step.input[2] else None
        elif step.op_type == "Transpose":
            role.perm = tuple(_attr(step, "perm", ())) or None
    op = node.op_type
    if op in _QUANT_OPS:
        w_index, s_index, z_index = _QUANT_OPS[op]
        if index != w_index:
            return role
        role.scale = node.input[s_index] if s_index is not None and len(node.input) > s_index else None
        role.zero = node.input[z_index] if len(node.input) > z_index and node.input[z_index] else None
        role.axis = 0 if "Conv" in op else 1
        op = "Conv" if "Conv" in op else "MatMul"
        if role.scale is None:
            role.note = "integer weights: zero point removed, no scale in the graph (spectrum up to a factor)"
    if op in ("Gemm", "MatMul") and index in (0, 1):
        role.family = "linear"
        role.transpose = index == 1 and not (op == "Gemm" and _attr(node, "transB", 0))
        role.note = _join(role.note, f"stored [in, out] ({op} input B), transposed" if role.transpose else "")
    elif op in ("Conv", "ConvTranspose") and index == 1:
        role.family = "conv" if op == "Conv" else "conv_transpose"
        role.groups = int(_attr(node, "group", 1))
    elif op == "Gather" and index == 0:
        role.family = "embedding"
    elif op in _RNN_GATES and index in (1, 2):
        gates, order = _RNN_GATES[op]
        role.family, role.rnn, role.recurrent = "rnn", (op, gates, order), index == 2
        role.node_name = node.name or node.input[1]
        if order:
            role.note = f"{op} gates stored in ONNX order {order}, reordered to PyTorch's"
    return role


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _dequantizing(graph: _Graph, read: Callable[[], np.ndarray], dtype: str,
                  role: _Role) -> tuple[Callable[[], np.ndarray], bool]:
    """(reader, dequantized): integer weights with a scale (and zero point) in the graph are dequantised."""
    integer = dtype in ("int8", "uint8", "int16", "uint16", "int32")
    if integer and role.scale is not None and role.scale in graph.tensors:
        scale_read = graph.reader(role.scale)
        zero_read = graph.reader(role.zero) if role.zero in graph.tensors else None
        axis = role.axis
        return lambda: _dequantize(read(), scale_read(), zero_read() if zero_read else None, axis), True
    if integer and role.note.startswith("integer weights") and role.zero in graph.tensors:
        zero_only = graph.reader(role.zero)
        axis = role.axis
        return lambda: _dequantize(read(), np.ones(1, np.float32), zero_only(), axis), True
    return read, False


def _entries_for(graph: _Graph, name: str, role: _Role | None) -> list[Entry]:
    shape, dtype = graph.shape(name), graph.dtype(name)
    nbytes = numel(shape) * ITEMSIZE.get(dtype, 1)
    if dtype not in ITEMSIZE:
        return [Entry(name, shape, dtype, 0, lambda: np.empty(0), module_type=role.module_type if role else None,
                      skip=f"ONNX element type {dtype} is not read (not a real-valued weight type)")]
    read = graph.reader(name)
    if role is None:
        return [Entry(name, shape, dtype, nbytes, read, None, module_type="(unused initializer)")]
    base, dequantized = _dequantizing(graph, read, dtype, role)
    if role.perm is not None and len(role.perm) == len(shape):
        perm, unpermuted = role.perm, base
        shape = tuple(shape[p] for p in perm)
        base = lambda: unpermuted().transpose(perm)  # noqa: E731
    if role.rnn is not None and len(shape) == 3:
        return _rnn_entries(name, shape, dtype, nbytes, base, role, dequantized)
    if role.rnn is not None and len(shape) == 2:
        return [Entry(rnn_name(role.node_name, role.recurrent), shape, dtype, nbytes, base, "rnn", gates=role.rnn[1],
                      module_type=role.module_type, dequantized=dequantized, note=role.note)]
    load = base
    if role.transpose and len(shape) == 2:
        shape = (shape[1], shape[0])
        load = lambda: base().T  # noqa: E731
    return [Entry(name, shape, dtype, nbytes, load, role.family, groups=role.groups, module_type=role.module_type,
                  dequantized=dequantized, note=role.note)]


def _rnn_entries(name: str, shape: tuple[int, ...], dtype: str, nbytes: int, load: Callable[[], np.ndarray],
                 role: _Role, dequantized: bool) -> list[Entry]:
    op, gates, order = role.rnn  # type: ignore[misc]
    dirs = shape[0]
    layer = role.node_name or name
    entries = []
    for d in range(dirs):
        def one(d: int = d) -> np.ndarray:
            w = load()[d]
            return reorder_gates(w, order) if order else w

        entries.append(Entry(rnn_name(layer, role.recurrent, reverse=d == 1), tuple(shape[1:]), dtype,
                             nbytes // max(dirs, 1), one, "rnn", gates=gates, module_type=op,
                             dequantized=dequantized, note=role.note))
    return entries


def open_onnx(path: Path, model_id: str) -> FormatSource:
    """A ``FormatSource`` over the initializers of an ONNX model (see the module docstring).

    Raises:
        SourceError: not a parsable ONNX protobuf, or an initializer whose declared size disagrees with its data.
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError, RecursionError) as exc:
        raise SourceError(f"{path}: not a readable ONNX model ({type(exc).__name__}); re-download or re-export it") \
            from exc
    graph = _Graph(path, model)
    if not graph.tensors:
        raise SourceError(f"{path}: the ONNX graph has no initializers (no stored weights)")
    roles: dict[str, _Role] = {}
    for name in graph.order:
        for node, index in _consumers_through(graph, name):
            resolved = graph.resolve(node.input[index])
            chain = resolved[1] if resolved else []
            role = _role_of(graph, node, index, chain)
            if name not in roles or (roles[name].family is None and role.family is not None):
                roles[name] = role
    _rnn_cells_by_name(graph, roles)
    entries: list[Entry] = []
    for name in graph.order:
        if _is_side_input(graph, name) or _is_plumbing(graph, name, roles.get(name)):
            continue
        entries.extend(_entries_for(graph, name, roles.get(name)))
    return FormatSource(model_id, graph.files, entries)


def _rnn_cells_by_name(graph: _Graph, roles: dict[str, _Role]) -> None:
    """An RNN cell exported as plain ops (Slice, MatMul) keeps PyTorch's names: ``<cell>.weight_hh`` (G·H, H)
    and ``<cell>.weight_ih`` (G·H, in), G = 4 (LSTM) or 3 (GRU) read from weight_hh's shape. Such pairs, which no
    recognised op explains, become gate-stacked RNN weights (gate order i, f, g, o / r, z, n assumed)."""
    for name in graph.order:
        if not name.endswith("weight_hh") or (name in roles and roles[name].family is not None):
            continue
        shape = graph.shape(name)
        partner = name[: -len("weight_hh")] + "weight_ih"
        if len(shape) != 2 or not shape[1] or shape[0] % shape[1] or shape[0] // shape[1] not in (3, 4):
            continue
        gates = shape[0] // shape[1]
        for member, recurrent in ((name, True), (partner, False)):
            if member not in graph.tensors or (member in roles and roles[member].family is not None):
                continue
            role = _Role(roles[member].module_type if member in roles else "(RNN cell)")
            op = "LSTM" if gates == 4 else "GRU"
            role.family, role.rnn, role.recurrent = "rnn", (op, gates, ""), recurrent
            role.node_name = member.rsplit(".", 1)[0] if "." in member else member
            role.note = f"RNN cell inferred from the name and shape; gate order of PyTorch's {op}Cell assumed"
            roles[member] = role


def _consumers_through(graph: _Graph, name: str) -> list[tuple[Any, int]]:
    """(node, input index) pairs that consume ``name``, directly or after pass-through nodes."""
    found, frontier = [], [name]
    for _ in range(8):
        following = []
        for current in frontier:
            for node, index in graph.consumers.get(current, []):
                if node.op_type in _PASS_THROUGH and index == 0:
                    following.extend(node.output)
                else:
                    found.append((node, index))
        if not following:
            break
        frontier = following
    return found


def _is_plumbing(graph: _Graph, name: str, role: _Role | None) -> bool:
    """Integer scalars and vectors (shapes, axes, indices) and Constant-node tensors that are no weight: graph
    plumbing, not rows. Integer matrices are kept (they may be quantised weights the graph does not explain)."""
    tensor = graph.tensors[name]
    if role is not None and role.family is not None:
        return False
    is_float = graph.dtype(name) in ("float32", "float16", "float64", "bfloat16")
    return len(tensor.dims) < 2 and (not is_float or name not in graph.initializer_names)


def _is_side_input(graph: _Graph, name: str) -> bool:
    """Scales and zero points of quantised weights: read with their weight, not rows of their own."""
    uses = graph.consumers.get(name, [])
    if not uses:
        return False
    for node, index in uses:
        quant = _QUANT_OPS.get(node.op_type)
        if node.op_type == "DequantizeLinear" and index in (1, 2):
            continue
        if node.op_type == "QuantizeLinear" and index in (1, 2):
            continue
        if quant and index in (quant[1], quant[2]):
            continue
        if node.op_type in ("QLinearConv", "QLinearMatMul") and index in (1, 2, 6, 7):
            continue
        return False
    return True
