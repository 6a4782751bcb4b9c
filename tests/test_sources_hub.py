"""hf: and timm: sources, offline, from hand-made Hugging Face caches (no network at test time)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from scanner.errors import SourceError
from scanner.layers import LayerMatrix, iter_layers
from scanner.sources import open_source
from tests._fixtures_sources import hub_offline, make_hub_cache  # noqa: F401 (fixture)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _tiny_gpt2_state() -> dict[str, torch.Tensor]:
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    config = GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=16)
    return {k: v.contiguous() for k, v in GPT2Model(config).state_dict().items()}


@pytest.mark.usefixtures("hub_offline")
def test_hf_gpt2_from_offline_cache_splits_conv1d_c_attn(tmp_path: Path) -> None:
    state = _tiny_gpt2_state()
    weights = tmp_path / "w.safetensors"
    save_file(state, str(weights))
    config = json.dumps({"model_type": "gpt2", "n_head": 2, "n_embd": 32}).encode()
    make_hub_cache(tmp_path / "cache", "org/tiny-gpt2", {"model.safetensors": weights, "config.json": config},
                   commit=COMMIT)
    for model_id in ("hf:org/tiny-gpt2", f"hf:org/tiny-gpt2@{COMMIT}"):
        source = open_source(model_id, cache_dir=str(tmp_path / "cache"))
        assert source.model_id == model_id
        layers = {m.name: m for m in iter_layers(source) if isinstance(m, LayerMatrix)}
        assert {layers[f"h.0.attn.c_attn.{p}"].matrices.shape for p in "qkv"} == {(1, 32, 32)}
        assert layers["h.0.attn.c_attn.q"].kind == "conv1d_hf" and layers["h.1.mlp.c_fc"].kind == "conv1d_hf"
        c_attn = state["h.0.attn.c_attn.weight"].numpy()  # (in, 3·out): q, k, v are column blocks
        np.testing.assert_array_equal(layers["h.0.attn.c_attn.k"].matrices[0], c_attn[:, 32:64])
        assert layers["wte"].kind == "embedding" and layers["wpe"].kind == "embedding"
        assert source.num_params == sum(v.numel() for v in state.values())


@pytest.mark.usefixtures("hub_offline")
def test_hf_falls_back_to_pytorch_model_bin(tmp_path: Path) -> None:
    weights = tmp_path / "pytorch_model.bin"
    linear = torch.randn(12, 8)
    torch.save({"encoder.fc.weight": linear}, weights)
    make_hub_cache(tmp_path / "cache", "org/bin-only", {"pytorch_model.bin": weights})
    (layer,) = [m for m in iter_layers(open_source("hf:org/bin-only", cache_dir=str(tmp_path / "cache")))]
    np.testing.assert_array_equal(layer.matrices[0], linear.numpy())


@pytest.mark.usefixtures("hub_offline")
def test_hf_not_cached_and_offline_names_the_model_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as info:
        open_source("hf:org/never-downloaded", cache_dir=str(tmp_path))
    message = str(info.value)
    assert "hf:org/never-downloaded" in message and "unreachable" in message and "cache" in message


@pytest.mark.usefixtures("hub_offline")
def test_timm_pretrained_from_offline_cache_uses_meta_module_types(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    weights = tmp_path / "model.safetensors"
    save_file(state, str(weights))
    make_hub_cache(tmp_path / "cache", "timm/test_vit.r160_in1k", {"model.safetensors": weights})
    source = open_source("timm:test_vit.r160_in1k", cache_dir=str(tmp_path / "cache"))
    rows = list(iter_layers(source))
    layers = {r.name: r for r in rows if isinstance(r, LayerMatrix)}
    qkv = state["blocks.0.attn.qkv.weight"].numpy()
    dim = qkv.shape[1]
    np.testing.assert_array_equal(layers["blocks.0.attn.qkv.v"].matrices[0], qkv[2 * dim:])
    assert layers["patch_embed.proj"].kind == "conv2d"
    skipped = {r.name: r.reason for r in rows if not isinstance(r, LayerMatrix)}
    assert "bare parameter" in skipped["pos_embed"] and "bare parameter" in skipped["cls_token"]
    via_file = open_source(f"timm:test_vit.r160_in1k?file={weights}")
    assert [r.name for r in iter_layers(via_file)] == [r.name for r in rows]


@pytest.mark.usefixtures("hub_offline")
def test_timm_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="unreachable") as offline:
        open_source("timm:test_vit.r160_in1k", cache_dir=str(tmp_path))
    message = str(offline.value)  # names the cache, the offline switch, --cache-dir and the local way out
    assert str(tmp_path) in message and "HF_HUB_OFFLINE=1" in message and "--cache-dir" in message
    assert "'timm:test_vit.r160_in1k?file=<path>'" in message
    with pytest.raises(SourceError, match="no architecture 'not_a_model'"):
        open_source("timm:not_a_model.tag")
    with pytest.raises(SourceError, match="no pretrained weights named"):
        open_source("timm:resnet18.no_such_tag", cache_dir=str(tmp_path))


@pytest.mark.usefixtures("hub_offline")
def test_real_minilm_through_an_offline_hf_cache(tmp_path: Path) -> None:
    from tests._fixtures_sources import minilm_safetensors

    weights = minilm_safetensors()
    make_hub_cache(tmp_path, "sentence-transformers/all-MiniLM-L6-v2",
                   {"model.safetensors": weights, "config.json": weights.parent / "config.json"}, link=True)
    source = open_source("hf:sentence-transformers/all-MiniLM-L6-v2", cache_dir=str(tmp_path))
    layers = [r for r in iter_layers(source) if isinstance(r, LayerMatrix)]
    assert len(layers) == 40 and sum(m.kind == "embedding" for m in layers) == 3
    assert source.num_params == 22_713_216  # 22,713,728 values in the file less the 512 int64 position ids
    assert source.digest() == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # sha256 of the file
