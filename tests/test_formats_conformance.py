"""One network, every format: the readers give the same eigenvalues as the PyTorch checkpoint.

The network (conv, depthwise conv, dense, LSTM, GRU, embedding, output) is written by ``tests._format_writers`` in
each format's own layout (TensorFlow HWIO and [in, out], TFLite OHWI and per-gate LSTM matrices, ONNX gate orders
i, o, f, c and z, r, h). A reader that gets an orientation, a gate order or a depthwise layout wrong gives other
eigenvalues for that layer (gates are compared by name, not by best match), so each comparison can fail.
fp32 copies must agree to 1e-10 relative; dequantised copies to what the quantisation allows, measured against
the exact dequantised values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scanner.layers import LayerMatrix, iter_layers
from scanner.sources import open_source
from tests import _format_writers as fw

RNN_KEYS = {("lstm", "ih"): "lstm_ih", ("lstm", "hh"): "lstm_hh", ("gru", "ih"): "gru_ih", ("gru", "hh"): "gru_hh"}
GATES = {"lstm": "ifgo", "gru": "rzn"}
SHAPE_KEYS = {(9, 16, 3): "conv", (9, 16, 1): "dw", (1, 32, 64): "fc", (1, 50, 20): "emb", (1, 10, 24): "out"}


def eigenvalues(matrices: np.ndarray) -> np.ndarray:
    """Sorted λ = s² over the (k, a, b) stack, in float64."""
    return np.sort(np.concatenate([np.linalg.svd(m.astype(np.float64), compute_uv=False) ** 2 for m in matrices]))


def reference_spectra(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """key ("conv", "lstm_ih.f", ...) -> eigenvalues, from the PyTorch-layout weights."""
    out = {}
    for key, w in weights.items():
        if key.startswith(("lstm", "gru")):
            kind = key.split("_")[0]
            for letter, block in zip(GATES[kind], np.split(w, len(GATES[kind])), strict=True):
                out[f"{key}.{letter}"] = eigenvalues(block[None])
        elif w.ndim == 4:
            out[key] = eigenvalues(w.reshape(w.shape[0], w.shape[1], -1).transpose(2, 0, 1))
        else:
            out[key] = eigenvalues(w[None])
    return out


def key_of(row: LayerMatrix) -> str:
    if row.kind in ("lstm", "gru"):
        part = "hh" if ".weight_hh_" in row.name else "ih"
        return f"{RNN_KEYS[(row.kind, part)]}.{row.name.rsplit('.', 1)[-1]}"
    return SHAPE_KEYS[tuple(row.matrices.shape)]


def format_spectra(model_id: str) -> dict[str, tuple[np.ndarray, LayerMatrix]]:
    out = {}
    with open_source(model_id) as source:
        for row in iter_layers(source):
            if isinstance(row, LayerMatrix):
                key = key_of(row)
                assert key not in out, f"{model_id}: two rows map to {key}"
                out[key] = (eigenvalues(row.matrices), row)
    return out


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


WRITERS = {
    "torch": lambda w, d: fw.write_torch(w, d / "net.pt"),
    "onnx": lambda w, d: fw.write_onnx(w, d / "net.onnx"),
    "onnx_external_data": lambda w, d: fw.write_onnx(w, d / "ext.onnx", external=True),
    "tflite": lambda w, d: fw.write_tflite(w, d / "net.tflite"),
    "tfjs": lambda w, d: fw.write_tfjs(w, d / "tfjs"),
    "keras_h5": lambda w, d: fw.write_h5(w, d / "net.h5"),
    "tf_checkpoint": lambda w, d: fw.write_tf_checkpoint(w, d / "model.ckpt"),
}
ALL_KEYS = {"conv", "dw", "fc", "emb", "out", *(f"{k}.{g}" for k in ("lstm_ih", "lstm_hh") for g in "ifgo"),
            *(f"{k}.{g}" for k in ("gru_ih", "gru_hh") for g in "rzn")}
EXPECTED_KEYS = {name: ALL_KEYS for name in WRITERS}
EXPECTED_KEYS["tflite"] = ALL_KEYS - {k for k in ALL_KEYS if k.startswith("gru")}  # the writer has no GRU op


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_fp32_formats_match_the_pytorch_eigenvalues(tmp_path: Path, fmt: str) -> None:
    weights = fw.reference_weights()
    truth = reference_spectra(weights)
    found = format_spectra(f"file:{WRITERS[fmt](weights, tmp_path)}")
    assert set(found) == EXPECTED_KEYS[fmt]
    for key, (evals, row) in found.items():
        assert max_rel_diff(truth[key], evals) <= 1e-10, f"{fmt} {key} ({row.name})"
        assert row.dtype_stored == "float32" and row.dequantized is False


def test_folder_ids_open_tfjs_and_savedmodel_layouts(tmp_path: Path) -> None:
    weights = fw.reference_weights()
    fw.write_tfjs(weights, tmp_path / "tfjs")
    (tmp_path / "saved" / "variables").mkdir(parents=True)
    fw.write_tf_checkpoint(weights, tmp_path / "saved" / "variables" / "variables")
    assert set(format_spectra(f"file:{tmp_path / 'tfjs'}")) == ALL_KEYS
    assert set(format_spectra(f"file:{tmp_path / 'saved'}")) == ALL_KEYS


def test_fp16_tflite_is_read_as_float16(tmp_path: Path) -> None:
    weights = fw.reference_weights()
    found = format_spectra(f"file:{fw.write_tflite(weights, tmp_path / 'h.tflite', fp16=True)}")
    half = reference_spectra({k: v.astype(np.float16).astype(np.float32) for k, v in weights.items()})
    for key, (evals, row) in found.items():
        assert row.dtype_stored == "float16" and not row.dequantized
        assert max_rel_diff(half[key], evals) <= 1e-10, key


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_int8_per_channel_weights_are_dequantized(tmp_path: Path, fmt: str) -> None:
    weights = fw.reference_weights()
    path = (fw.write_onnx(weights, tmp_path / "q.onnx", int8_fc=True) if fmt == "onnx"
            else fw.write_tflite(weights, tmp_path / "q.tflite", int8_fc=True))
    evals, row = format_spectra(f"file:{path}")["fc"]
    assert row.dtype_stored == "int8" and row.dequantized is True
    exact = eigenvalues(fw.dequantized_int8(weights["fc"], axis=0)[None])
    assert max_rel_diff(exact, evals) <= 1e-6  # float32 arithmetic of (q - zp) * scale
    # and the quantisation itself moves the spectrum by no more than its step allows (8-bit: ~1 %)
    assert max_rel_diff(reference_spectra(weights)["fc"], evals) <= 2e-2


@pytest.mark.parametrize("quantize", ["uint8", "uint16", "float16"])
def test_tfjs_quantized_weights_are_dequantized(tmp_path: Path, quantize: str) -> None:
    weights = fw.reference_weights()
    found = format_spectra(f"file:{fw.write_tfjs(weights, tmp_path / 'q', quantize=quantize)}")
    evals, row = found["fc"]
    assert row.dtype_stored == quantize and row.dequantized is (quantize != "float16")
    exact = eigenvalues(fw.tfjs_dequantized(weights["fc"].T, quantize).T[None])
    assert max_rel_diff(exact, evals) <= 1e-6
    assert found["conv"][1].dtype_stored == "float32" and not found["conv"][1].dequantized


def test_npz_arrays_in_their_stored_layout(tmp_path: Path) -> None:
    weights = fw.reference_weights()
    found = format_spectra(f"file:{fw.write_npz(weights, tmp_path / 'w.npz')}")
    truth = reference_spectra(weights)
    assert set(found) == {"conv", "fc", "emb", "out"}
    for key, (evals, _) in found.items():
        assert max_rel_diff(truth[key], evals) <= 1e-10
    assert "assumed" in found["conv"][1].note


def test_torchscript_and_config_pickles_are_read_without_running_code(tmp_path: Path) -> None:
    import torch
    from torch import nn

    weights = fw.reference_weights()

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc, self.out = nn.Conv2d(3, 16, 3), nn.Linear(64, 32), nn.Linear(24, 10)
            self.lstm = nn.LSTM(32, fw.H_LSTM)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).sum() + self.fc.weight.sum() + self.out.weight.sum() + self.lstm.weight_ih_l0.sum()

    net = Net()
    with torch.no_grad():
        net.conv.weight.copy_(torch.from_numpy(weights["conv"]))
        net.fc.weight.copy_(torch.from_numpy(weights["fc"]))
        net.out.weight.copy_(torch.from_numpy(weights["out"]))
        net.lstm.weight_ih_l0.copy_(torch.from_numpy(weights["lstm_ih"]))
        net.lstm.weight_hh_l0.copy_(torch.from_numpy(weights["lstm_hh"]))
    torch.jit.trace(net, torch.zeros(1, 3, 8, 8)).save(str(tmp_path / "ts.pt"))
    truth = reference_spectra(weights)
    found = format_spectra(f"file:{tmp_path / 'ts.pt'}")
    assert set(found) == {"conv", "fc", "out", *(f"lstm_{p}.{g}" for p in ("ih", "hh") for g in "ifgo")}
    for key, (evals, row) in found.items():
        assert max_rel_diff(truth[key], evals) <= 1e-10, key
        assert "TorchScript" in row.note


def test_pickled_fx_graph_module_and_nested_model_state_are_read(tmp_path: Path) -> None:
    """Real zoo files: deeplc pickles a torch.fx GraphModule (weights_only refuses it), resemblyzer nests its
    weights under 'model_state' beside the optimizer's."""
    import torch
    from torch import fx, nn

    net = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 12))
    torch.save(fx.symbolic_trace(net), tmp_path / "fx.pt")
    found = format_spectra_any(f"file:{tmp_path / 'fx.pt'}")
    assert sorted(found) == ["0", "2"]
    np.testing.assert_array_equal(found["0"], net[0].weight.detach().numpy()[None])
    torch.save({"step": 3, "model_state": net.state_dict(), "optimizer_state": {"state": {}}}, tmp_path / "ms.pt")
    assert sorted(format_spectra_any(f"file:{tmp_path / 'ms.pt'}")) == ["0", "2"]


def format_spectra_any(model_id: str) -> dict[str, np.ndarray]:
    with open_source(model_id) as source:
        return {row.name: row.matrices for row in iter_layers(source) if isinstance(row, LayerMatrix)}


def test_plain_pickles_of_numpy_arrays_are_read_without_numpy_code(tmp_path: Path) -> None:
    """g2pM ships its weights as a pickle of numpy arrays (np_ckpt.pkl): rebuilt from their bytes, numpy's
    reconstruct functions never called; RNN gates found from the PyTorch-style names."""
    import pickle

    weights = fw.reference_weights()
    state = {"fc.weight": weights["fc"], "lstm.weight_ih_l0": weights["lstm_ih"],
             "lstm.weight_hh_l0": weights["lstm_hh"], "step": np.int64(3), "names": np.array(["a", "b"])}
    path = tmp_path / "np_ckpt.pkl"
    path.write_bytes(pickle.dumps(state, protocol=2))
    truth = reference_spectra(weights)
    found = format_spectra(f"file:{path}")
    assert set(found) == {"fc", *(f"lstm_{p}.{g}" for p in ("ih", "hh") for g in "ifgo")}
    for key, (evals, _) in found.items():
        assert max_rel_diff(truth[key], evals) <= 1e-10, key


def test_restricted_unpickler_reads_strided_views_of_shared_storages(tmp_path: Path) -> None:
    import torch

    base = torch.randn(40, 30)
    state = {"a.weight": base[5:25:2, 3:20], "b.weight": base.t()[:, :12], "meta": np.float64(1.0)}
    torch.save(state, tmp_path / "views.pt")  # numpy metadata: weights_only refuses, the restricted reader reads it
    found = format_spectra_any(f"file:{tmp_path / 'views.pt'}")
    np.testing.assert_array_equal(found["a"][0], state["a.weight"].numpy())
    np.testing.assert_array_equal(found["b"][0], state["b.weight"].numpy())
