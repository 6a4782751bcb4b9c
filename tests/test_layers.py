"""scanner.layers on small in-memory modules and plain state dicts, where the right matrices are known exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from scanner.errors import ConfigError
from scanner.layers import LayerMatrix, SkippedTensor, iter_layers
from scanner.sources import open_source


def _layers(model: nn.Module | str, **kwargs: str) -> dict[str, LayerMatrix | SkippedTensor]:
    torch.manual_seed(0)
    rows = list(iter_layers(open_source(model), **kwargs))
    assert [r.index for r in rows] == list(range(len(rows)))
    return {r.name: r for r in rows}


def test_multihead_attention_in_proj_is_split_into_q_k_v() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(embed_dim=12, num_heads=3)
    rows = _layers(mha)
    w = mha.in_proj_weight.detach().numpy()
    for j, part in enumerate("qkv"):
        layer = rows[f"in_proj_weight.{part}"]
        assert layer.kind == "linear" and layer.shape == (36, 12) and layer.num_params == 144
        np.testing.assert_array_equal(layer.matrices[0], w[12 * j: 12 * (j + 1)])
    assert rows["out_proj"].kind == "linear" and rows["out_proj"].matrices.shape == (1, 12, 12)
    assert rows["in_proj_bias"].reason == "bias vector: not a matrix"


def test_qkv_fused_keeps_every_fused_projection_one_matrix(tmp_path: Path) -> None:
    """qkv="fused": MHA in_proj, timm qkv, GPT-2 Conv1D c_attn and per-head query_key_value (heads known) stay one
    matrix each, equal to the tensor as stored, with a note; the default cuts each of them in three."""
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    mha = nn.MultiheadAttention(embed_dim=12, num_heads=3)
    fused = _layers(mha, qkv="fused")
    layer = fused["in_proj_weight"]
    np.testing.assert_array_equal(layer.matrices[0], mha.in_proj_weight.detach().numpy())
    assert layer.kind == "linear" and "qkv='fused'" in layer.note
    assert "in_proj_weight.q" not in fused and "in_proj_weight.q" in _layers(mha)
    gpt2 = GPT2Model(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=40, n_positions=8))
    c_attn = _layers(gpt2, qkv="fused")["h.0.attn.c_attn"]
    assert c_attn.kind == "conv1d_hf" and c_attn.matrices.shape == (1, 16, 48)  # Conv1D stores (in, 3·out)
    assert {"h.0.attn.c_attn.q", "h.0.attn.c_attn.k", "h.0.attn.c_attn.v"} <= set(_layers(gpt2))
    state = {"blocks.0.attn.qkv.weight": torch.randn(24, 8), "layers.0.attention.query_key_value.weight":
             torch.randn(24, 8), "blocks.0.mlp.fc1.weight": torch.randn(16, 8)}
    save_file(state, str(tmp_path / "plain.safetensors"))
    rows = _layers(f"file:{tmp_path / 'plain.safetensors'}", qkv="fused")
    np.testing.assert_array_equal(rows["blocks.0.attn.qkv"].matrices[0], state["blocks.0.attn.qkv.weight"].numpy())
    assert rows["blocks.0.mlp.fc1"].note == ""  # not a fused projection: no note
    from transformers import GPTNeoXConfig, GPTNeoXModel

    from scanner.sources.modules import ModuleSource

    neox = GPTNeoXModel(GPTNeoXConfig(hidden_size=16, num_attention_heads=2, num_hidden_layers=1,
                                      intermediate_size=32, vocab_size=40))
    name = "layers.0.attention.query_key_value"
    split = {r.name for r in iter_layers(ModuleSource(neox, heads=2))}
    fused_rows = {r.name: r for r in iter_layers(ModuleSource(neox, heads=2), qkv="fused")}
    assert f"{name}.v" in split and name not in split and f"{name}.v" not in fused_rows
    np.testing.assert_array_equal(fused_rows[name].matrices[0],
                                  neox.layers[0].attention.query_key_value.weight.detach().numpy())
    assert "qkv='fused'" in fused_rows[name].note
    with pytest.raises(ConfigError, match="the 'qkv' option must be one of"):
        _layers(mha, qkv="joined")


@pytest.mark.parametrize(("cls", "letters", "kind"), [(nn.LSTM, "ifgo", "lstm"), (nn.GRU, "rzn", "gru")])
def test_rnn_weights_are_split_per_gate_with_and_without_module_types(tmp_path: Path, cls: type, letters: str,
                                                                      kind: str) -> None:
    torch.manual_seed(0)
    rnn = cls(input_size=10, hidden_size=20, num_layers=2, bidirectional=True)
    path = tmp_path / "rnn.pt"
    torch.save(rnn.state_dict(), path)
    for rows in (_layers(rnn), _layers(f"file:{path}")):
        w = rnn.weight_ih_l1_reverse.detach().numpy()  # (gates·20, 2·20): layer 1 reads both directions
        for j, letter in enumerate(letters):
            layer = rows[f"weight_ih_l1_reverse.{letter}"]
            assert layer.kind == kind and layer.matrices.shape == (1, 20, 40)
            np.testing.assert_array_equal(layer.matrices[0], w[20 * j: 20 * (j + 1)])
        assert rows[f"weight_hh_l0.{letters[-1]}"].matrices.shape == (1, 20, 20)
        assert sum(isinstance(r, LayerMatrix) for r in rows.values()) == 8 * len(letters)


def test_lstm_with_projection_and_plain_rnn(tmp_path: Path) -> None:
    lstm = nn.LSTM(input_size=6, hidden_size=16, proj_size=4)
    path = tmp_path / "lstm.safetensors"
    save_file({k: v.contiguous() for k, v in lstm.state_dict().items()}, str(path))
    for rows in (_layers(lstm), _layers(f"file:{path}")):
        assert rows["weight_hh_l0.o"].matrices.shape == (1, 16, 4)
        assert rows["weight_hr_l0"].kind == "linear"
    rows = _layers(nn.RNN(input_size=5, hidden_size=7))
    assert rows["weight_ih_l0"].kind == "rnn" and rows["weight_ih_l0"].matrices.shape == (1, 7, 5)


def test_conv_pooled_and_per_position_slices() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, kernel_size=(2, 3))
    w = conv.weight.detach().numpy()
    rows = _layers(nn.Sequential(conv))
    pooled = rows["0"]
    assert pooled.kind == "conv2d" and pooled.matrices.shape == (6, 16, 8) and pooled.num_params == w.size
    per = _layers(nn.Sequential(conv), conv="per_position")
    names = [n for n, r in per.items() if isinstance(r, LayerMatrix)]
    assert names == [f"0[{i},{j}]" for i in range(2) for j in range(3)]
    np.testing.assert_array_equal(per["0[1,2]"].matrices[0], w[:, :, 1, 2])
    np.testing.assert_array_equal(pooled.matrices[5], w[:, :, 1, 2])
    with pytest.raises(ConfigError, match="'conv' option"):
        list(iter_layers(open_source(conv), conv="unfold"))


def test_conv1d_conv3d_transpose_and_grouped() -> None:
    torch.manual_seed(0)
    model = nn.ModuleDict({
        "c1": nn.Conv1d(4, 6, 5), "c3": nn.Conv3d(2, 4, (2, 2, 2)), "t2": nn.ConvTranspose2d(6, 4, 3),
        "dw": nn.Conv2d(8, 8, 3, groups=8), "g": nn.Conv2d(8, 16, 1, groups=2),
    })
    rows = _layers(model)
    assert (rows["c1"].kind, rows["c1"].matrices.shape) == ("conv1d", (5, 6, 4))
    assert (rows["c3"].kind, rows["c3"].matrices.shape) == ("conv3d", (8, 4, 2))
    assert (rows["t2"].kind, rows["t2"].matrices.shape) == ("conv_transpose2d", (9, 6, 4))
    assert (rows["dw"].matrices.shape, rows["dw"].groups) == ((9, 8, 1), 8) and "groups=8" in rows["dw"].note
    assert (rows["g"].matrices.shape, rows["g"].groups) == ((1, 16, 4), 2)
    np.testing.assert_array_equal(rows["t2"].matrices[4], model["t2"].weight.detach().numpy()[:, :, 1, 1])


class _TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.norm = nn.LayerNorm(8)
        self.bn = nn.BatchNorm1d(8)
        self.zero_a, self.zero_b = nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False)
        nn.init.zeros_(self.zero_a.weight)
        nn.init.zeros_(self.zero_b.weight)
        self.head = nn.Linear(8, 50, bias=False)
        self.head.weight = self.embed.weight


def test_tied_weights_once_constant_twins_kept_and_skip_reasons() -> None:
    rows = _layers(_TiedLM())
    assert rows["embed"].kind == "embedding"
    assert rows["head"].reason == "duplicate of embed.weight (tied weights, analysed once)"
    assert isinstance(rows["zero_a"], LayerMatrix) and isinstance(rows["zero_b"], LayerMatrix)
    assert rows["norm"].reason == "norm layer weight: not a matrix" and rows["norm.bias"].kind == "bias"
    assert rows["bn.running_mean"].reason.startswith("BatchNorm running statistic")
    assert rows["bn.num_batches_tracked"].kind == "buffer"


def test_name_and_shape_rules_for_plain_state_dicts(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    state = {
        "transformer.wte.weight": torch.randn(30, 8, generator=g),
        "blocks.0.attn.qkv.weight": torch.randn(24, 8, generator=g),
        "blocks.0.attn.qkv_proj.weight": torch.randn(16, 8, generator=g),  # grouped-query: q 8 + k 4 + v 4 rows
        "layers.0.attention.query_key_value.weight": torch.randn(24, 8, generator=g),
        "pos_embed": torch.randn(1, 5, 8, generator=g),
        "stem.weight": torch.randn(4, 3, 3, 3, generator=g).to(torch.float16),
        "head.weight": torch.randn(10, 8, generator=g, dtype=torch.float64),
        "ln_f.weight": torch.ones(8),
        "q.weight_int8": torch.randint(-8, 8, (8, 8), generator=g, dtype=torch.int8),
        "h.0.attn.bias": torch.tril(torch.ones(1, 1, 4, 4)),  # GPT-2's causal mask, stored in old checkpoints
    }
    path = tmp_path / "plain.safetensors"
    save_file(state, str(path))
    rows = _layers(f"file:{path}")
    assert rows["transformer.wte"].kind == "embedding"
    np.testing.assert_array_equal(rows["blocks.0.attn.qkv.k"].matrices[0], state["blocks.0.attn.qkv.weight"][8:16])
    grouped = rows["blocks.0.attn.qkv_proj"]
    assert grouped.matrices.shape == (1, 16, 8) and "unequal" in grouped.note
    assert "heads unknown" in rows["layers.0.attention.query_key_value"].note
    assert rows["pos_embed"].kind == "bare_parameter"
    assert rows["stem"].kind == "conv2d" and rows["stem"].matrices.dtype == np.float32
    assert rows["head"].matrices.dtype == np.float64
    assert rows["ln_f"].reason == "norm layer weight: not a matrix"
    assert rows["q.weight_int8"].kind == "integer"
    assert "causal mask" in rows["h.0.attn.bias"].reason


def test_per_head_query_key_value_is_deinterleaved_when_heads_are_known() -> None:
    from transformers import GPTNeoXConfig, GPTNeoXModel

    torch.manual_seed(0)
    config = GPTNeoXConfig(hidden_size=16, num_attention_heads=2, num_hidden_layers=1, intermediate_size=32,
                           vocab_size=40)
    model = GPTNeoXModel(config)
    from scanner.sources.modules import ModuleSource

    rows = {r.name: r for r in iter_layers(ModuleSource(model, heads=2))}
    w = model.layers[0].attention.query_key_value.weight.detach().numpy().reshape(2, 3, 8, 16)
    np.testing.assert_array_equal(rows["layers.0.attention.query_key_value.v"].matrices[0], w[:, 2].reshape(16, 16))


def test_moe_expert_stacks_are_split_per_expert_and_router_is_linear() -> None:
    from transformers import MixtralConfig, MixtralModel

    torch.manual_seed(0)
    model = MixtralModel(MixtralConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                       num_key_value_heads=4, intermediate_size=48, vocab_size=100,
                                       num_local_experts=3))
    rows = {r.name: r for r in iter_layers(open_source(model))}
    gate_up = model.layers[0].mlp.experts.gate_up_proj.detach().numpy()  # (experts, 2·48, 32): [gate; up]
    np.testing.assert_array_equal(rows["layers.0.mlp.experts.gate_up_proj.2.up"].matrices[0], gate_up[2, 48:])
    assert rows["layers.0.mlp.experts.down_proj.1"].matrices.shape == (1, 32, 48)
    assert rows["layers.0.mlp.gate"].kind == "linear" and rows["layers.0.mlp.gate"].matrices.shape == (1, 3, 32)
    assert sum(isinstance(r, LayerMatrix) and ".experts." in r.name for r in rows.values()) == 9


def test_multi_query_fused_qkv_is_not_cut_into_equal_thirds() -> None:
    from transformers import FalconConfig, FalconModel

    torch.manual_seed(0)
    model = FalconModel(FalconConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, vocab_size=50))
    from scanner.sources.modules import ModuleSource

    rows = {r.name: r for r in iter_layers(ModuleSource(model, heads=4))}
    qkv = rows["h.0.self_attention.query_key_value"]  # multi-query: q 64 rows + k 16 + v 16
    assert qkv.matrices.shape == (1, 96, 64) and "unequal" in qkv.note


def test_parametrized_weight_is_analysed_once_as_computed() -> None:
    from torch.nn.utils.parametrizations import weight_norm

    torch.manual_seed(0)
    model = nn.Sequential(weight_norm(nn.Conv1d(4, 6, 3)))
    source = open_source(model)
    rows = {r.name: r for r in iter_layers(source)}
    np.testing.assert_allclose(rows["0"].matrices[2], model[0].weight.detach().numpy()[:, :, 2])
    assert rows["0.parametrizations.weight.original1"].reason.endswith("analysed as 0.weight")
    assert source.num_params == sum(p.numel() for p in model.parameters())


def test_float64_weights_whose_gram_matrix_overflows_are_skipped_with_a_reason() -> None:
    """D8: 1e300 values gave 'LinAlgError: Eigenvalues did not converge' instead of a reason."""
    import torch

    from scanner.layers import SkippedTensor, layer_items
    from scanner.sources.base import NamedTensor

    big = NamedTensor("fc.weight", torch.full((20, 30), 1e300, dtype=torch.float64) * torch.rand(20, 30,
                                                                                          dtype=torch.float64))
    (row,) = layer_items(big, "pooled", {}, 0)
    assert isinstance(row, SkippedTensor) and row.reason.startswith("Gram matrix overflows float64")
    fine = NamedTensor("fc.weight", torch.rand(20, 30, dtype=torch.float64) * 1e100)
    assert not isinstance(layer_items(fine, "pooled", {}, 0)[0], SkippedTensor)
