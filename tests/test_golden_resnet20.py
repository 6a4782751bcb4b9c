"""Every layers/models column of a real model (CIFAR ResNet-20) against the golden rows in
tests/golden/resnet20.json, with per-column tolerances; the failure names the columns that moved and by
how much. Regenerate only with ``python scripts/regen_golden.py``."""

from __future__ import annotations

import copy
import warnings

import pytest

from scanner.paths import resolve_data_path
from tests.golden import resnet20

CHECKPOINT = resolve_data_path(resnet20.MODEL_ID.removeprefix("file:"))


@pytest.fixture(scope="module")
def current():
    if not CHECKPOINT.exists():
        pytest.fail(f"{CHECKPOINT} is missing: set ZOOSCAN_SHARED to the shared data folder (or put it at ../shared)")
    layers, model, _ = resnet20.scan_rows()
    return layers, model


def test_resnet20_matches_the_golden_rows(current):
    layers, model = current
    golden = resnet20.read_golden()
    diff = resnet20.compare(golden, layers, model)
    if diff.notes():
        warnings.warn("\n".join(diff.notes()), stacklevel=1)
    assert not diff.failed, diff.message()


def test_golden_file_is_a_real_scan():
    golden = resnet20.read_golden()
    model, layers = golden["model"], golden["layers"]
    assert model["status"] == "ok" and model["n_ok"] == 20 and model["n_failed"] == 0
    assert model["n_layers"] == len(layers)
    ok = [row for row in layers if row["status"] == "ok"]
    assert len(ok) == 20 and {row["kind"] for row in ok} == {"conv2d", "linear"}
    assert sum(model[f"n_{p}"] for p in ("random_like", "bleeding_out", "bulk_plus_spikes", "bulk_decay",
                                          "heavy_tailed", "rank_collapse")) == 20
    reliable = [row["alpha"] for row in ok if row["fit_reliable"]]
    assert model["n_alpha"] == len(reliable)
    assert model["alpha_mean"] == pytest.approx(sum(reliable) / len(reliable))
    assert all(row["xmin"] <= row["xmax"] for row in ok if row["alpha"] is not None)
    assert golden["config"]["device"] == "cpu"


def _perturbed(golden, column, index, factor):
    layers = copy.deepcopy(golden["layers"])
    ok = [row for row in layers if row["status"] == "ok"]
    ok[index][column] *= factor
    return layers, ok[index]


def test_diff_names_the_column_the_layer_and_the_size():
    golden = resnet20.read_golden()
    layers, row = _perturbed(golden, "alpha", 3, 1.01)
    model = dict(golden["model"], alpha_mean=golden["model"]["alpha_mean"] + 0.5)
    diff = resnet20.compare(golden, layers, model)
    assert diff.failed
    assert len(diff.moved) == 2, diff.moved
    assert diff.moved[0].startswith("layers.alpha: 1/")
    assert row["layer_name"] in diff.moved[0] and "rel 0.01" in diff.moved[0]
    assert diff.moved[1].startswith("models.alpha_mean: moved, largest |Δ| 0.5")
    assert "regen_golden.py" in diff.message()


def test_diff_within_tolerance_passes_and_new_or_missing_columns_are_reported_not_compared():
    golden = resnet20.read_golden()
    layers, _ = _perturbed(golden, "alpha", 0, 1 + 1e-9)
    for row in layers:
        row["brand_new_column"] = "float32"
        del row["entropy"]
    model = {k: v for k, v in golden["model"].items() if k != "alpha_hat"}
    diff = resnet20.compare(golden, layers, model)
    assert not diff.failed, diff.message()
    assert diff.new_columns == ["layers.brand_new_column"]
    assert diff.missing_columns == ["layers.entropy", "models.alpha_hat"]
    assert "brand_new_column" in "\n".join(diff.notes())


def test_diff_reports_type_and_null_changes_and_lost_rows():
    golden = resnet20.read_golden()
    layers = copy.deepcopy(golden["layers"])
    ok = [row for row in layers if row["status"] == "ok"]
    ok[0]["phase"] = "heavy_tailed" if ok[0]["phase"] != "heavy_tailed" else "random_like"
    ok[1]["alpha"] = None
    diff = resnet20.compare(golden, layers[:-1], golden["model"])
    text = diff.message()
    assert "layers.phase: 1/" in text and "layers.alpha: 1/" in text
    assert "only in golden" in diff.layer_rows
