"""Coverage: random-init timm architectures and tiny transformers models go through scanner.layers without a
crash, every matrix-shaped tensor is either analysed or skipped with a reason, and the counts are the known ones."""

from __future__ import annotations

import collections

import pytest
import torch

from scanner.layers import LayerMatrix, SkippedTensor, iter_layers
from scanner.sources import open_source

TIMM_ARCHS = [
    # timm's own tiny test architectures (0.27-1.1 M params), one per family
    "test_byobnet", "test_coatnet", "test_convnext", "test_convnext2", "test_convnext3", "test_efficientnet",
    "test_efficientnet_evos", "test_efficientnet_gn", "test_efficientnet_ln", "test_mambaout", "test_maxvit",
    "test_nfnet", "test_resnet", "test_vit", "test_vit2", "test_vit3", "test_vit4", "test_vit_relpos",
    # small real architectures (≤ 6 M params)
    "resnet10t", "mobilenetv3_small_050", "lcnet_050", "regnetx_002", "levit_128s", "mobilevit_xxs",
    "edgenext_xx_small", "efficientvit_m0", "xcit_nano_12_p16_224", "ghostnet_050", "tinynet_e", "semnasnet_050",
]


def _census(model: object) -> tuple[list[LayerMatrix], list[SkippedTensor], object]:
    source = open_source(model)
    rows = list(iter_layers(source))
    return [r for r in rows if isinstance(r, LayerMatrix)], [r for r in rows if isinstance(r, SkippedTensor)], source


@pytest.mark.parametrize("arch", TIMM_ARCHS)
def test_random_timm_architectures_yield_layers_or_reasons(arch: str) -> None:
    import timm

    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False)
    layers, skipped, source = _census(model)
    assert layers, f"{arch}: no matrices"
    assert all(s.reason for s in skipped)
    for layer in layers:
        assert layer.matrices.ndim == 3 and layer.matrices.size == layer.num_params > 0
    weights = {n for n, p in model.named_parameters() if p.ndim >= 2}
    covered = {m.tensor_name for m in layers} | {s.name for s in skipped} | {f"{s.name}.weight" for s in skipped}
    assert weights <= covered
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(m.kind == "conv2d" for m in layers) == len(convs)
    assert source.num_params == sum(p.numel() for p in model.parameters())


def test_random_timm_id_is_seeded() -> None:
    first = [m.matrices for m in iter_layers(open_source("random:timm/test_resnet?seed=1"))
             if isinstance(m, LayerMatrix)]
    again = [m.matrices for m in iter_layers(open_source("random:timm/test_resnet?seed=1"))
             if isinstance(m, LayerMatrix)]
    other = [m.matrices for m in iter_layers(open_source("random:timm/test_resnet?seed=2"))
             if isinstance(m, LayerMatrix)]
    assert all((a == b).all() for a, b in zip(first, again, strict=True))
    assert not (first[0] == other[0]).all()


TINY = "hidden_size=64&num_hidden_layers=2&num_attention_heads=4&intermediate_size=128&vocab_size=1000"


@pytest.mark.parametrize(
    ("model_id", "linear", "embedding", "other", "duplicates"),
    [
        # BERT: 2 layers × (query, key, value, attention output, intermediate, output) + pooler; 3 embeddings
        (f"random:transformers/bert?{TINY}", 13, 3, {}, 0),
        # Llama (grouped-query): 2 layers × (q, k, v, o, gate, up, down); embed_tokens
        (f"random:transformers/llama?{TINY}&num_key_value_heads=2", 14, 1, {}, 0),
        # ViT: 2 layers × 6 linears + pooler; patch embedding conv
        ("random:transformers/vit?hidden_size=64&num_hidden_layers=2&num_attention_heads=4&intermediate_size=128",
         13, 0, {"conv2d": 1}, 0),
        # T5: encoder 2 × (q, k, v, o, wi, wo), decoder 2 × (self q, k, v, o, cross q, k, v, o, wi, wo);
        # shared embedding + one relative-attention-bias table per stack; embed_tokens tied to shared (×2)
        ("random:transformers/t5?d_model=64&num_layers=2&num_heads=4&d_kv=16&d_ff=128&vocab_size=1000",
         32, 3, {}, 2),
    ],
)
def test_tiny_transformers_models(model_id: str, linear: int, embedding: int, other: dict, duplicates: int) -> None:
    layers, skipped, _ = _census(model_id)
    kinds = collections.Counter(m.kind for m in layers)
    assert kinds == collections.Counter({"linear": linear, "embedding": embedding, **other})
    assert sum(s.reason.startswith("duplicate of") for s in skipped) == duplicates


def test_gpt2_lm_head_is_tied_and_c_attn_split() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=1000, n_positions=32))
    layers, skipped, source = _census(model)
    kinds = collections.Counter(m.kind for m in layers)
    assert kinds == collections.Counter({"conv1d_hf": 2 * 6, "embedding": 2})  # c_attn q, k, v, c_proj, c_fc, c_proj
    assert [s.reason for s in skipped if s.name == "lm_head"] == [
        "duplicate of transformer.wte.weight (tied weights, analysed once)"]
    assert {m.matrices.shape for m in layers if ".c_attn." in m.name} == {(1, 64, 64)}
    assert source.num_params == sum(p.numel() for p in model.parameters())
