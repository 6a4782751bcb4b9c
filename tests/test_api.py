"""The Python API a weightwatcher user expects: layer filter, summary, esd, describe, plot_esd, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scanner
from scanner.errors import ConfigError, ModelIdError, ScannerError, SourceError


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.ReLU(), torch.nn.Conv1d(8, 16, 3),
                               torch.nn.Linear(96, 48))


@pytest.fixture(scope="module")
def model():
    return small_model()


def test_layer_filter_by_kind_pattern_and_index(model):
    full = scanner.analyze(model, randomize=False)
    ok = [r for r in full.to_pylist() if r["status"] == "ok"]
    assert {r["kind"] for r in ok} == {"linear", "conv1d"}
    linear = scanner.analyze(model, layers="linear", randomize=False)
    assert set(linear.column("kind").to_pylist()) == {"linear"} and linear.num_rows == 2
    by_glob = scanner.analyze(model, layers="3*", randomize=False)
    assert by_glob.column("layer_name").to_pylist() == ["3", "3.bias"]
    assert scanner.analyze(model, layers="3", randomize=False).column("layer_name").to_pylist() == ["3"]
    first = ok[0]["layer_index"]
    by_index = scanner.analyze(model, layers=[first], randomize=False)
    assert by_index.column("layer_index").to_pylist() == [first]
    # the same numbers as the unfiltered table
    assert by_index.column("alpha").to_pylist() == [ok[0]["alpha"]]


def test_bad_layer_selector_and_option_are_config_errors(model):
    with pytest.raises(ConfigError, match="layers="):
        scanner.analyze(model, layers=[1.5])
    with pytest.raises(ConfigError, match=r"valid options are .*min_evals"):
        scanner.analyze(model, plot=True)
    with pytest.raises(ConfigError, match="fit"):
        scanner.analyze(model, fit="nonsense")


def test_summary_is_the_model_row(model):
    row = scanner.get_summary(model, randomize=False)
    table = scanner.analyze(model, randomize=False)
    ok = [r for r in table.to_pylist() if r["status"] == "ok"]
    assert row["n_ok"] == len(ok) and row["status"] == "ok"
    reliable = [r["alpha"] for r in ok if r["fit_reliable"]]
    if reliable:
        assert row["alpha_mean"] == pytest.approx(np.mean(reliable))
    assert row["n_layers"] == table.num_rows


def test_esd_returns_the_layer_eigenvalues(model):
    evals = scanner.esd(model, "0", randomize=False)
    weight = model[0].weight.detach().double().numpy()
    expected = np.sort(np.linalg.eigvalsh(weight.T @ weight if weight.shape[0] >= weight.shape[1]
                                          else weight @ weight.T))
    assert evals.shape == (64,)
    np.testing.assert_allclose(np.sort(evals), expected[-64:], rtol=1e-5, atol=1e-8)
    with pytest.raises(ConfigError, match="matches no analysed layer"):
        scanner.esd(model, "nosuch", randomize=False)
    with pytest.raises(ConfigError, match="2 layers"):
        scanner.esd(model, "linear", randomize=False)


def test_describe_lists_matrices_without_computing(model, monkeypatch):
    import scanner.spectra.layer as layer_mod

    def boom(*args, **kwargs):
        raise AssertionError("describe computed eigenvalues")

    monkeypatch.setattr(layer_mod, "layer_eigenvalues", boom)
    table = scanner.describe(model)
    rows = {r["layer_name"]: r for r in table.to_pylist()}
    assert rows["0"]["n"] == 96 and rows["0"]["m"] == 64 and rows["0"]["status"] == "analyse"
    assert rows["2"]["kind"] == "conv1d" and rows["2"]["n_matrices"] == 3 and rows["2"]["num_evals"] == 24
    assert any(r["status"] == "skip" and "bias" in r["reason"] for r in rows.values())
    assert scanner.describe(model, layers="conv1d").num_rows == 1


def test_plot_esd_draws_the_papers_pair(model, tmp_path):
    fig = scanner.plot_esd(model, "0", path=str(tmp_path / "esd.png"), randomize=False)
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log" and fig.axes[1].get_xscale() == "linear"
    assert (tmp_path / "esd.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("bad, error", [
    ("file:/nonexistent/model.safetensors", SourceError),
    ("nosuchsource:abc", ModelIdError),
    ("random:timm/resnet18?seed=abc", ScannerError),
])
def test_a_failing_model_raises_instead_of_returning_an_empty_table(bad, error):
    with pytest.raises(error, match="could not be analysed"):
        scanner.analyze(bad)
    with pytest.raises(error):
        scanner.get_summary(bad)


def test_file_source_honours_config_json_beside_the_weights(tmp_path):
    """file: on a save_pretrained GPT-2 folder splits c_attn into q, k, v like hf: does (issue 13)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=300, n_positions=64)
    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(config)
    gpt2.save_pretrained(tmp_path / "gpt2")
    expected = scanner.describe(gpt2)
    for model_id in (f"file:{tmp_path / 'gpt2'}", f"file:{tmp_path / 'gpt2' / 'model.safetensors'}"):
        table = scanner.describe(model_id)
        names = set(table.column("layer_name").to_pylist())
        assert {"transformer.h.0.attn.c_attn.q", "transformer.h.0.attn.c_attn.k"} <= names, sorted(names)
        kinds = {r["layer_name"]: r["kind"] for r in table.to_pylist()}
        assert kinds["transformer.h.0.attn.c_attn.q"] == "conv1d_hf"
        analysed = {r["layer_name"]: (r["n"], r["m"]) for r in table.to_pylist() if r["status"] == "analyse"}
        assert analysed == {r["layer_name"]: (r["n"], r["m"]) for r in expected.to_pylist() if r["status"] == "analyse"}
    (tmp_path / "gpt2" / "config.json").unlink()  # without it the fused matrix stays one linear layer
    names = set(scanner.describe(f"file:{tmp_path / 'gpt2'}").column("layer_name").to_pylist())
    assert "transformer.h.0.attn.c_attn.q" not in names


@pytest.mark.reference
def test_reference_fit_with_fused_qkv_gives_weightwatchers_layer_table_and_alphas():
    """fit="reference", qkv="fused": every layer weightwatcher 0.7.7 fits on a ViT (fused qkv included) has its
    row, with the same α to 1e-6; the default split gives q, k, v rows instead of weightwatcher's qkv row."""
    import timm
    import weightwatcher

    torch.manual_seed(0)
    vit = timm.create_model("test_vit", pretrained=False).eval()
    details = weightwatcher.WeightWatcher(model=vit).analyze()
    ok = details[details["status"] == "success"]
    ww = {str(name): float(alpha) for name, alpha in zip(ok["longname"], ok["alpha"], strict=True)}
    assert "blocks.0.attn.qkv" in ww
    for qkv in ("fused", "split"):
        rows = scanner.analyze(vit, fit="reference", randomize=False, qkv=qkv).to_pylist()
        zoo = {r["layer_name"]: r["alpha"] for r in rows if r["status"] == "ok"}
        if qkv == "fused":
            assert set(zoo) == set(ww)
            assert max(abs(zoo[name] - ww[name]) for name in ww) < 1e-6
        else:
            assert "blocks.0.attn.qkv" not in zoo and "blocks.0.attn.qkv.q" in zoo
