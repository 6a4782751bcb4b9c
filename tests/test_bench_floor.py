"""bench_floor.py and validate_null.py on tiny inputs (code paths only; no timing is asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_floor_bench_measures_the_same_layers_as_the_scan_and_reports_ratios():
    bench = _load("bench_floor")
    floor = bench.child("tiny", "floor", inner=1)
    full = bench.child("tiny", "full", inner=1)
    assert floor["layers"] == full["layers"] == 3 and floor["matrices"] == 11  # 9 conv positions + 2 Linear
    floor["best"], floor["best_cpu"], full["best"], full["best_cpu"] = 1.0, 1.0, 1.25, 1.2
    text = bench.report([floor, full], ["0.5 0.5 0.5"], ["- machine: test"])
    assert "| tiny | 11 (3) | 1.000 | 1.250 (1.25×) | — | — | — | — | — | — | yes |" in text
    assert "| tiny | 1.000 | 1.20× | — | — | — | — |" in text


def test_null_validation_row_compares_every_run():
    from scanner.spectra.synthetic import random_like

    validate = _load("validate_null")
    from scanner.spectra.layer import analyse_matrices

    matrix = random_like(512, 256, seed=0).matrix
    spectra = {}
    for run in validate.RUNS:
        validate._with_width(run)
        spectra[run] = analyse_matrices(matrix, validate._config(run)).spectrum
    validate._with_width("exact")
    row = validate._row("set", "layer", validate._certified(matrix), spectra)
    assert row.certified and row.phase["auto"] == row.phase["before"]
    assert "| set | 1 | 1 | 1 | 1 |" in "\n".join(validate.summary([row]))


def test_a_case_whose_checkpoint_is_not_fetched_is_an_error_row_naming_the_fetch(tmp_path):
    bench = _load("bench_floor")
    bench.CASES["mpnet_base_trained"] = (None, tmp_path / "missing.safetensors")
    row = bench.run_child("mpnet_base_trained", "full", inner=1, timeout=5)
    assert "missing.safetensors is missing; fetch it: zooscan zoo fetch registry_zoo --only 'all-mpnet*'" in row["error"]
    assert "Errors:" in bench.report([row], [], [])


def _row(validate, certified, before, auto, seed1, layer="l"):
    runs = {"before": before, "exact": before, "auto": auto, "before_s1": seed1}
    return validate.Row("set", layer, certified, {r: "random_like" for r in runs}, {r: 0 for r in runs}, runs,
                        {r: 1.0 for r in runs})


def test_null_validation_reports_certified_layers_by_quantile_and_the_largest_changes():
    """Known rows: four certified layers whose rand_distance moves by 0.0, 0.1, 0.2, 0.3 under ``auto`` and
    one uncertified layer (not counted in the certified table)."""
    validate = _load("validate_null")
    rows = [_row(validate, True, 0.5, 0.5 - d, 0.5 + d / 2, layer=f"c{i}") for i, d in enumerate((0.0, 0.1, 0.2, 0.3))]
    rows.append(_row(validate, False, 0.5, 0.5, 0.5, layer="u"))
    table = "\n".join(validate.certified_summary(rows))
    assert "| set | 4 | 0.200 / 0.300 / 0.300 / 0.300 | 0.100 / 0.150 / 0.150 / 0.150 | -0.1500 (+0.0750) | 2 |" in table, table
    largest = validate.largest_distance_changes(rows, count=2)
    assert [line.split(": ")[1].split(" (")[0] for line in largest] == ["c3", "c2"]
    assert "rand_distance before 0.5000, auto 0.2000" in largest[0]


def test_null_validation_leaves_out_registry_networks_not_fetched(tmp_path, monkeypatch):
    validate = _load("validate_null")
    monkeypatch.setattr(validate, "ROOT", tmp_path)  # no zoo/registry here: nothing fetched
    rows, missing = validate.registry_rows()
    assert rows == [] and len(missing) > 100 and all(m.startswith("file:zoo/registry/") for m in missing)


def test_floor_report_compares_alpha_of_reference_mode_and_weightwatcher_layer_by_layer():
    bench = _load("bench_floor")
    ref = {"case": "c", "measure": "ref", "round": 0, "alphas": {"a": 2.0, "b": 3.0, "q": 4.0, "n": None}}
    ww = {"case": "c", "measure": "ww", "round": 0, "alphas": {"a": 2.0 + 5e-7, "b": 3.0, "qkv": 4.0, "n": 5.0}}
    lines = "\n".join(bench.agreement_lines([ref, ww]))
    assert "| c | ref | 0 | 2 | 1 | 1 | 1 | 5.00e-07 | 2.50e-07 | a | on 2 of 4 |" in lines
    ww["alphas"]["b"] = 3.0 + 2e-6  # past the tolerance
    assert "| c | ref | 0 | 2 | 1 | 1 | 1 | 2.00e-06 | 1.25e-06 | b | no |" in "\n".join(bench.agreement_lines([ref, ww]))
    fused = {"case": "c", "measure": "ref_fused", "round": 0, "alphas": {"a": 2.0, "b": 3.0, "qkv": 4.0, "n": 5.0}}
    lines = "\n".join(bench.agreement_lines([ref, fused, ww]))  # the fused mode, when measured, is the one compared
    assert "| c | ref_fused | 0 | 4 | 0 | 0 | 0 | 2.00e-06 |" in lines and "| c | ref |" not in lines
    ww["alphas"]["b"] = 3.0  # every layer weightwatcher fits, each within the tolerance
    assert "| c | ref_fused | 0 | 4 | 0 | 0 | 0 | 5.00e-07 | 0.00e+00 | a | yes |" in "\n".join(
        bench.agreement_lines([ref, fused, ww]))
    assert bench.agreement_lines([ref]) == []  # no weightwatcher row: no table
    text = bench.report([ref, ww], [], [])
    assert "α agreement" in text and '"alphas"' not in text  # the raw rows in the report leave the α out


@pytest.mark.reference
def test_floor_bench_reference_mode_gives_weightwatchers_alpha_on_the_tiny_case():
    bench = _load("bench_floor")
    rows = [dict(bench.child("tiny", measure, inner=1), round=0) for measure in ("ref", "ww")]
    assert len(rows[0]["alphas"]) == 3
    assert "| tiny | ref | 0 | 3 | 0 | 0 | 0 |" in "\n".join(bench.agreement_lines(rows))
    assert "| yes |" in "\n".join(bench.agreement_lines(rows))


def test_null_cost_bench_times_the_parts_and_counts_the_certificate_verdicts(tmp_path):
    import torch
    from safetensors.torch import save_file

    bench = _load("null_cost")
    lines = bench.cost_lines(((64, 32),))
    assert lines[2].startswith("| 64×32 |") and len(lines[2].split("|")) == 9
    g = torch.Generator().manual_seed(0)
    heavy = torch.randn(512, 256, generator=g)
    heavy[3, 5] = 0.6 * float(heavy.std()) * (512 * 256) ** 0.25  # a² = 0.36 σ²√(NM): in the window
    signs = torch.randn(512, 256, generator=g).sign()
    sparse = torch.where(torch.rand(512, 256, generator=g) < 0.02, signs, torch.zeros(()))  # ±1 at 2 %: κ ≈ 50
    save_file({"a.weight": torch.randn(512, 256, generator=g), "b.weight": heavy,
               "c.weight": torch.randn(64, 32, generator=g), "d.weight": sparse}, str(tmp_path / "w.safetensors"))
    census = bench.census_lines(f"file:{tmp_path / 'w.safetensors'}")
    assert census == ["- certified: 1", "- fourth moment: 1", "- window: 1", "- beyond: 0", "- mean: 0",
                      "- narrower than the width limit: 1"]
    cost = bench.certificate_cost_lines(("tiny",))
    assert cost[2].startswith("| tiny |") and len(cost[2].split("|")) == 9 and cost[2].rstrip().endswith("% |")
