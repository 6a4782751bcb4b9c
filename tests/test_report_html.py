"""The HTML report end to end: scan a small trained-looking model with the real pipeline, store it, render."""

from __future__ import annotations

import re

import pytest
import torch

from scanner.config import ScanConfig
from scanner.experiments.batch_size import write_catalogs
from scanner.experiments.models import MLP3
from scanner.report.html import write_report
from scanner.report.tables import batch_size_phase_table, load_scan
from scanner.scan import scan_model
from scanner.store import ResultStore, model_key

SECTIONS = ("summary", "models", "phase-counts", "batch-size", "alpha-depth", "alpha-accuracy", "spectra", "layers")


@pytest.fixture(scope="module")
def scan_folder(tmp_path_factory):
    """Two MLP3 'runs' (batch sizes 500 and 2) scanned into a real results folder, with their catalogs."""
    root = tmp_path_factory.mktemp("results")
    store = ResultStore(root, "bs_test")
    config = ScanConfig(device="cpu", randomize=False)
    store.open_scan(config, {"name": "test"}, {"host": "test"})
    rows = []
    for bs, seed in ((500, 0), (2, 1)):
        torch.manual_seed(seed)
        model = MLP3()
        with torch.no_grad():  # a rank-one "signal" makes the small-batch model's FC1 spiked
            u, v = torch.randn(300, 1), torch.randn(1, 784)
            model.fc1.weight += (0.0 if bs == 500 else 0.02) * (u @ v)
        result = scan_model(model, config)
        model_id = f"file:/zoo/mlp3_bs{bs}_s0.safetensors"
        layers = [type(x)(**{**x.__dict__, "model_id": model_id}) for x in result.layers]
        res = type(result.model)(**{**result.model.__dict__, "model_id": model_id})
        store.write_model(res, layers, result.spectra, model_key=model_key(model_id), host="test", device="cpu")
        rows.append({"model_id": model_id, "family": "mlp3", "dataset": "mnist", "batch_size": bs, "seed": 0,
                     "epochs": 1, "train_subset": 10, "loss": "ce", "steps": 1, "final_loss": 1.0,
                     "train_accuracy": 0.5, "test_accuracy": 0.4 if bs == 500 else 0.6, "seconds": 1.0})
    catalog_csv, runs_csv = write_catalogs(rows, root / "exp")
    return store.scan_dir, catalog_csv, runs_csv


def test_report_has_every_section_images_and_tables(scan_folder, tmp_path):
    scan_dir, catalog_csv, runs_csv = scan_folder
    tables = load_scan(scan_dir, catalogs=[catalog_csv], runs=[runs_csv])
    page = write_report(tables, tmp_path / "r.html", max_esd_models=1).read_text(encoding="utf-8")
    found = re.findall(r'<section id="([a-z-]+)">', page)
    assert tuple(found) == SECTIONS
    # one ESD figure per analysed layer of the first model (3 FC layers), plus the summary plots
    assert page.count('alt="ESD ') == 3
    assert page.count("data:image/png;base64,") == 3 + 1 + 3 + 2 + 1
    assert "ESDs shown for the first 1 of 2 models" in page
    assert "mlp3_bs500_s0" in page and ">fc1<" in page
    assert page.count("<tr>") > 2 * 3  # the layers table lists every layer row


def test_batch_size_table_pairs_runs_with_layers(scan_folder):
    scan_dir, catalog_csv, runs_csv = scan_folder
    table = batch_size_phase_table(load_scan(scan_dir, catalogs=[catalog_csv], runs=[runs_csv]))
    assert [(r["batch_size"], r["layer_name"]) for r in table][:3] == [
        (500, "fc1"), (500, "fc2"), (500, "fc3")]
    assert {r["test_accuracy"] for r in table} == {0.4, 0.6}
    assert all(r["phase"] for r in table)


def test_load_scan_without_results_names_the_fix(tmp_path):
    with pytest.raises(Exception, match="scan folder"):
        load_scan(tmp_path)


def test_models_named_alike_get_labels_that_tell_them_apart(tmp_path):
    """Files with a generic name (``model.onnx`` in two packages) are labelled by their package folders, as in
    the zoo report, not both "model"."""
    store = ResultStore(tmp_path, "names")
    config = ScanConfig(device="cpu", randomize=False)
    store.open_scan(config, {"name": "test"}, {"host": "test"})
    torch.manual_seed(0)
    result = scan_model(torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.Linear(48, 40)), config)
    for model_id in ("file:zoo/alpha-pkg/1.0/model.onnx", "file:zoo/beta-pkg/2.1/model.onnx"):
        layers = [type(x)(**{**x.__dict__, "model_id": model_id}) for x in result.layers]
        res = type(result.model)(**{**result.model.__dict__, "model_id": model_id})
        store.write_model(res, layers, result.spectra, model_key=model_key(model_id), host="test", device="cpu")
    page = write_report(load_scan(store.scan_dir), tmp_path / "r.html", max_esd_models=0).read_text(encoding="utf-8")
    assert '<td class="t">alpha-pkg/model<' in page and '<td class="t">beta-pkg/model<' in page
    assert '<td class="t">model<' not in page
