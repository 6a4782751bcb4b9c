"""Small writers of one known network in every weight format zooscan reads (test helpers, no TensorFlow).

``reference_weights()`` is the network in PyTorch layout (float32, seeded): a conv, a depthwise conv, a dense
layer, an LSTM, a GRU, an embedding and an output layer. Each ``write_*`` writes the same weights in that
format's own layout (TensorFlow HWIO/[in, out], TFLite OHWI, ONNX gate orders), so that a reader that
converts correctly gives the same eigenvalues as the PyTorch checkpoint.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

H_LSTM, H_GRU = 12, 10


def reference_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """name -> PyTorch-layout float32 array."""
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(shape[1] if len(shape) > 1 else 1)).astype(np.float32)

    return {
        "conv": w(16, 3, 3, 3), "dw": w(16, 1, 3, 3), "fc": w(32, 64),
        "lstm_ih": w(4 * H_LSTM, 32), "lstm_hh": w(4 * H_LSTM, H_LSTM),
        "gru_ih": w(3 * H_GRU, H_LSTM), "gru_hh": w(3 * H_GRU, H_GRU),
        "emb": w(50, 20), "out": w(10, 24),
    }


def blocks(w: np.ndarray, order: list[int]) -> np.ndarray:
    parts = np.split(w, len(order), axis=0)
    return np.concatenate([parts[i] for i in order], axis=0)


# ---------------------------------------------------------------- PyTorch
def write_torch(weights: dict[str, np.ndarray], path: Path) -> Path:
    import torch

    state = {
        "conv.weight": weights["conv"], "dw.weight": weights["dw"], "fc.weight": weights["fc"],
        "lstm.weight_ih_l0": weights["lstm_ih"], "lstm.weight_hh_l0": weights["lstm_hh"],
        "gru.weight_ih_l0": weights["gru_ih"], "gru.weight_hh_l0": weights["gru_hh"],
        "emb.weight": weights["emb"], "out.weight": weights["out"],
    }
    torch.save({k: torch.from_numpy(v.copy()) for k, v in state.items()}, path)
    return path


# ---------------------------------------------------------------- ONNX
def write_onnx(weights: dict[str, np.ndarray], path: Path, *, int8_fc: bool = False,
               external: bool = False) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [], []

    def init(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    f = TensorProto.FLOAT
    nodes.append(helper.make_node("Conv", ["x", init("conv.weight", weights["conv"])], ["c1"], name="conv"))
    nodes.append(helper.make_node("Conv", ["c1", init("dw.weight", weights["dw"])], ["c2"], group=16, name="dw"))
    nodes.append(helper.make_node("Flatten", ["c2"], ["flat"]))
    if int8_fc:
        q, scale = _int8_per_channel(weights["fc"], axis=0)
        init("fc.weight_q", q)
        init("fc.scale", scale)
        init("fc.zero", np.zeros(scale.shape, np.int8))
        nodes.append(helper.make_node("DequantizeLinear", ["fc.weight_q", "fc.scale", "fc.zero"], ["fc_w"], axis=0))
        nodes.append(helper.make_node("Gemm", ["flat", "fc_w"], ["h"], transB=1, name="fc"))
    else:
        nodes.append(helper.make_node("Gemm", ["flat", init("fc.weight", weights["fc"])], ["h"], transB=1, name="fc"))
    nodes.append(helper.make_node("Unsqueeze", ["h", init("axes0", np.array([0], np.int64))], ["seq"]))
    w_lstm = blocks(weights["lstm_ih"], [0, 3, 1, 2])[None]  # ONNX gate order i, o, f, c
    r_lstm = blocks(weights["lstm_hh"], [0, 3, 1, 2])[None]
    nodes.append(helper.make_node("LSTM", ["seq", init("lstm.W", w_lstm), init("lstm.R", r_lstm)], ["y", "yh", "yc"],
                                  hidden_size=H_LSTM, name="lstm"))
    nodes.append(helper.make_node("Squeeze", ["y", init("axes1", np.array([1], np.int64))], ["y2"]))
    w_gru = blocks(weights["gru_ih"], [1, 0, 2])[None]  # ONNX gate order z, r, h
    r_gru = blocks(weights["gru_hh"], [1, 0, 2])[None]
    nodes.append(helper.make_node("GRU", ["y2", init("gru.W", w_gru), init("gru.R", r_gru)], ["g", "gh"],
                                  hidden_size=H_GRU, name="gru"))
    nodes.append(helper.make_node("Gather", [init("emb.weight", weights["emb"]), "ids"], ["e"], name="emb"))
    nodes.append(helper.make_node("MatMul", ["e24", init("out.weight_t", weights["out"].T.copy())], ["logits"],
                                  name="out"))
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", f, [1, 3, 8, 8]),
                                             helper.make_tensor_value_info("ids", TensorProto.INT64, [4]),
                                             helper.make_tensor_value_info("e24", f, [1, 24])],
                              [helper.make_tensor_value_info("logits", f, [1, 10])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    return path


def _int8_per_channel(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    moved = np.moveaxis(w, axis, 0)
    scale = (np.abs(moved.reshape(moved.shape[0], -1)).max(axis=1) / 127.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


def dequantized_int8(w: np.ndarray, axis: int = 0) -> np.ndarray:
    """What an int8 per-channel round trip of ``w`` gives (the truth for dequantised readers)."""
    q, scale = _int8_per_channel(w, axis)
    shape = [1] * w.ndim
    shape[axis] = -1
    return q.astype(np.float32) * scale.reshape(shape)


# ---------------------------------------------------------------- TFLite (flatbuffers, schema field slots)
def write_tflite(  # noqa: C901 (one flatbuffer, written table by table)
    weights: dict[str, np.ndarray], path: Path, *, int8_fc: bool = False, fp16: bool = False,
    bad_opcode: bool = False) -> Path:
    """``bad_opcode``: the last operator names an operator code past the end of the table (a corrupt file)."""
    import flatbuffers

    b = flatbuffers.Builder(1024)
    buffers: list[bytes] = [b""]
    tensors: list[tuple[str, tuple[int, ...], int, int, tuple | None]] = []  # name, shape, type, buffer, quant

    def const(name: str, array: np.ndarray, ttype: int = 0, quant: tuple | None = None) -> int:
        buffers.append(np.ascontiguousarray(array).tobytes())
        tensors.append((name, tuple(array.shape), ttype, len(buffers) - 1, quant))
        return len(tensors) - 1

    def act(name: str) -> int:
        tensors.append((name, (1,), 0, 0, None))
        return len(tensors) - 1

    ops: list[tuple[int, list[int], list[int]]] = []  # opcode index, inputs, outputs
    codes = [3, 4, 9, 44, 36, 6]  # CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, UNI_LSTM, GATHER, DEQUANTIZE

    def weight(name: str, array: np.ndarray) -> int:
        if fp16:
            half = const(name + "_fp16", array.astype(np.float16), 1)
            out = act(name)
            ops.append((5, [half], [out]))
            return out
        return const(name, array)

    x = act("x")
    c1 = act("c1")
    ops.append((0, [x, weight("conv", weights["conv"].transpose(0, 2, 3, 1)), -1], [c1]))
    c2 = act("c2")
    ops.append((1, [c1, weight("dw", weights["dw"][:, 0].transpose(1, 2, 0)[None]), -1], [c2]))
    h = act("h")
    if int8_fc:
        q, scale = _int8_per_channel(weights["fc"], axis=0)
        fc = const("fc", q, 9, (scale, np.zeros(scale.shape, np.int64), 0))
    else:
        fc = weight("fc", weights["fc"])
    ops.append((2, [c2, fc, -1], [h]))
    gates_ih = np.split(weights["lstm_ih"], 4)
    gates_hh = np.split(weights["lstm_hh"], 4)
    y = act("y")
    lstm_in = [h] + [weight(f"lstm_ih_{g}", m) for g, m in zip("ifco", gates_ih, strict=True)] + \
        [weight(f"lstm_hh_{g}", m) for g, m in zip("ifco", gates_hh, strict=True)]
    ops.append((3, lstm_in, [y]))
    e = act("e")
    ops.append((4, [weight("emb", weights["emb"]), x], [e]))
    o = act("o")
    ops.append((len(codes) + 5 if bad_opcode else 2, [e, weight("out", weights["out"]), -1], [o]))

    def vec_int(values: list[int], start: object) -> int:
        start(b, len(values))  # type: ignore[operator]
        for v in reversed(values):
            b.PrependInt32(v)
        return b.EndVector()

    def start_vector(size: int) -> object:
        return lambda builder, n: builder.StartVector(size, n, size)

    buffer_offsets = []
    for data in buffers:
        vec = b.CreateByteVector(data) if data else None
        b.StartObject(3)
        if vec is not None:
            b.PrependUOffsetTRelativeSlot(0, vec, 0)
        buffer_offsets.append(b.EndObject())
    tensor_offsets = []
    for name, shape, ttype, buf, quant in tensors:
        name_off = b.CreateString(name)
        shape_off = vec_int(list(shape), start_vector(4))
        quant_off = None
        if quant is not None:
            scale, zero, dim = quant
            b.StartVector(4, len(scale), 4)
            for v in reversed(scale.tolist()):
                b.PrependFloat32(v)
            scale_off = b.EndVector()
            b.StartVector(8, len(zero), 8)
            for v in reversed(zero.tolist()):
                b.PrependInt64(v)
            zero_off = b.EndVector()
            b.StartObject(7)
            b.PrependUOffsetTRelativeSlot(2, scale_off, 0)
            b.PrependUOffsetTRelativeSlot(3, zero_off, 0)
            b.PrependInt32Slot(6, dim, 0)
            quant_off = b.EndObject()
        b.StartObject(8)
        b.PrependUOffsetTRelativeSlot(0, shape_off, 0)
        b.PrependInt8Slot(1, ttype, 0)
        b.PrependUint32Slot(2, buf, 0)
        b.PrependUOffsetTRelativeSlot(3, name_off, 0)
        if quant_off is not None:
            b.PrependUOffsetTRelativeSlot(4, quant_off, 0)
        tensor_offsets.append(b.EndObject())
    op_offsets = []
    for code, inputs, outputs in ops:
        in_off = vec_int(inputs, start_vector(4))
        out_off = vec_int(outputs, start_vector(4))
        b.StartObject(5)
        b.PrependUint32Slot(0, code, 0)
        b.PrependUOffsetTRelativeSlot(1, in_off, 0)
        b.PrependUOffsetTRelativeSlot(2, out_off, 0)
        op_offsets.append(b.EndObject())

    def table_vector(offsets: list[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    tensors_vec = table_vector(tensor_offsets)
    ops_vec = table_vector(op_offsets)
    in_vec = vec_int([x], start_vector(4))
    out_vec = vec_int([o], start_vector(4))
    b.StartObject(5)
    b.PrependUOffsetTRelativeSlot(0, tensors_vec, 0)
    b.PrependUOffsetTRelativeSlot(1, in_vec, 0)
    b.PrependUOffsetTRelativeSlot(2, out_vec, 0)
    b.PrependUOffsetTRelativeSlot(3, ops_vec, 0)
    subgraph = b.EndObject()
    code_offsets = []
    for code in codes:
        b.StartObject(4)
        b.PrependInt8Slot(0, min(code, 127), 0)
        b.PrependInt32Slot(2, 1, 1)
        b.PrependInt32Slot(3, code, 0)
        code_offsets.append(b.EndObject())
    codes_vec = table_vector(code_offsets)
    subgraphs_vec = table_vector([subgraph])
    buffers_vec = table_vector(buffer_offsets)
    b.StartObject(5)
    b.PrependUint32Slot(0, 3, 0)
    b.PrependUOffsetTRelativeSlot(1, codes_vec, 0)
    b.PrependUOffsetTRelativeSlot(2, subgraphs_vec, 0)
    b.PrependUOffsetTRelativeSlot(4, buffers_vec, 0)
    model = b.EndObject()
    b.Finish(model, file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path


# ---------------------------------------------------------------- Keras layout (TFJS, HDF5, TF checkpoint)
def keras_weights(weights: dict[str, np.ndarray]) -> list[tuple[str, str, str, np.ndarray]]:
    """(layer name, Keras class, variable name, TensorFlow-layout array) of the network."""
    return [
        ("conv2d", "Conv2D", "kernel", weights["conv"].transpose(2, 3, 1, 0)),
        ("depthwise_conv2d", "DepthwiseConv2D", "depthwise_kernel", weights["dw"][:, 0].transpose(1, 2, 0)[..., None]),
        ("dense", "Dense", "kernel", weights["fc"].T),
        ("lstm", "LSTM", "kernel", weights["lstm_ih"].T),
        ("lstm", "LSTM", "recurrent_kernel", weights["lstm_hh"].T),
        ("gru", "GRU", "kernel", blocks(weights["gru_ih"], [1, 0, 2]).T),
        ("gru", "GRU", "recurrent_kernel", blocks(weights["gru_hh"], [1, 0, 2]).T),
        ("embedding", "Embedding", "embeddings", weights["emb"]),
        ("dense_1", "Dense", "kernel", weights["out"].T),
    ]


def _topology(layers: list[tuple[str, str, str, np.ndarray]]) -> dict:
    seen: dict[str, str] = {}
    for layer, cls, _, _ in layers:
        seen.setdefault(layer, cls)
    return {"class_name": "Sequential", "config": {"name": "net", "layers": [
        {"class_name": cls, "config": {"name": name}} for name, cls in seen.items()]}}


def write_tfjs(weights: dict[str, np.ndarray], folder: Path, *, quantize: str | None = None) -> Path:
    """A layers-model ``model.json`` with two shards; ``quantize`` "uint8"/"uint16"/"float16" quantises the dense
    kernel the way tfjs-converter does (q = round((w − min) / scale))."""
    folder.mkdir(parents=True, exist_ok=True)
    layers = keras_weights(weights)
    specs, blob = [], bytearray()
    for layer, _, var, array in layers:
        spec: dict = {"name": f"{layer}/{var}", "shape": list(array.shape), "dtype": "float32"}
        if quantize and layer == "dense":
            if quantize == "float16":
                blob += array.astype("<f2").tobytes()
                spec["quantization"] = {"dtype": "float16"}
            else:
                levels = 255 if quantize == "uint8" else 65535
                low, high = float(array.min()), float(array.max())
                scale = (high - low) / levels
                q = np.round((array - low) / scale).astype(quantize)
                blob += q.astype("<" + np.dtype(quantize).str[1:]).tobytes()
                spec["quantization"] = {"dtype": quantize, "scale": scale, "min": low}
        else:
            blob += np.ascontiguousarray(array, "<f4").tobytes()
        specs.append(spec)
    half = len(blob) // 2
    (folder / "group1-shard1of2.bin").write_bytes(bytes(blob[:half]))
    (folder / "group1-shard2of2.bin").write_bytes(bytes(blob[half:]))
    model = {"format": "layers-model", "modelTopology": {"model_config": _topology(layers)},
             "weightsManifest": [{"paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"], "weights": specs}]}
    (folder / "model.json").write_text(json.dumps(model))
    return folder / "model.json"


def tfjs_dequantized(array: np.ndarray, quantize: str) -> np.ndarray:
    if quantize == "float16":
        return array.astype(np.float16).astype(np.float32)
    levels = 255 if quantize == "uint8" else 65535
    low, high = float(array.min()), float(array.max())
    scale = (high - low) / levels
    return np.round((array - low) / scale).astype(np.float32) * np.float32(scale) + np.float32(low)


def write_h5(weights: dict[str, np.ndarray], path: Path) -> Path:
    """A Keras 2 ``model.save`` layout: ``model_weights/<layer>/<layer>/<var>:0`` plus ``model_config``."""
    import h5py

    layers = keras_weights(weights)
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = json.dumps(_topology(layers))
        root = h5.create_group("model_weights")
        names = list(dict.fromkeys(layer for layer, _, _, _ in layers))
        root.attrs["layer_names"] = [n.encode() for n in names]
        for name in names:
            group = root.create_group(name)
            cell = "lstm_cell" if name == "lstm" else "gru_cell" if name == "gru" else None
            wnames = []
            for layer, _, var, array in layers:
                if layer == name:
                    wname = f"{name}/{cell + '/' if cell else ''}{var}:0"
                    group.create_dataset(wname, data=array)
                    wnames.append(wname.encode())
            group.attrs["weight_names"] = wnames
    return path


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    body = bytearray()
    for key, value in entries:
        body += _varint(0) + _varint(len(key)) + _varint(len(value)) + key + value
    return bytes(body) + struct.pack("<I", 0) + struct.pack("<I", 1)


def write_tf_checkpoint(weights: dict[str, np.ndarray], prefix: Path, *, lie: dict | None = None) -> Path:
    """``<prefix>.index`` (SSTable of BundleEntryProto) and ``<prefix>.data-00000-of-00001``, TF1 names.

    ``lie`` maps a tensor name to field overrides ({"size": ..., "offset": ..., "shape": ...}) for bad-input tests.
    """
    names = {"conv2d": "conv2d", "depthwise_conv2d": "depthwise_conv2d", "dense": "dense", "lstm": "lstm/lstm_cell",
             "gru": "gru/gru_cell", "embedding": "embedding", "dense_1": "dense_1"}
    data, entries = bytearray(), []
    for layer, _, var, array in keras_weights(weights):
        name = f"{names[layer]}/{var}"
        raw = np.ascontiguousarray(array, "<f4").tobytes()
        fields = {"offset": len(data), "size": len(raw), "shape": list(array.shape)}
        fields.update((lie or {}).get(name, {}))
        data += raw
        shape = b"".join(b"\x12" + _varint(len(d)) + d for d in (b"\x08" + _varint(n) for n in fields["shape"]))
        proto = b"\x08\x01" + b"\x12" + _varint(len(shape)) + shape + b"\x20" + _varint(fields["offset"]) + b"\x28" + \
            _varint(fields["size"])
        entries.append((name.encode(), proto))
    entries.append((b"", b"\x08\x01"))
    entries.sort()
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))
    blob = bytearray()
    data_block = _block(entries)
    blob += data_block + b"\x00\x00\x00\x00\x00"
    index_block = _block([(entries[-1][0] + b"\xff", _varint(0) + _varint(len(data_block)))])
    index_offset = len(blob)
    blob += index_block + b"\x00\x00\x00\x00\x00"
    meta_block = _block([])
    meta_offset = len(blob)
    blob += meta_block + b"\x00\x00\x00\x00\x00"
    footer = _varint(meta_offset) + _varint(len(meta_block)) + _varint(index_offset) + _varint(len(index_block))
    blob += footer + b"\x00" * (40 - len(footer)) + struct.pack("<Q", 0xDB4775248B80FB57)
    Path(f"{prefix}.index").write_bytes(bytes(blob))
    return Path(f"{prefix}.index")


def write_npz(weights: dict[str, np.ndarray], path: Path) -> Path:
    np.savez(path, fc=weights["fc"], emb=weights["emb"], out=weights["out"], conv=weights["conv"])
    return path
