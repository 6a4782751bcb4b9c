"""The grouped named queries against a straightforward Python computation over the same rows.

A seeded synthetic scan (three catalog families of 8, 7 and 7 models, models of a source prefix that no
catalog lists, 1 to 9 layer rows each, one failed model) is written through the store; the reference reads
the plain ``layers``/``models`` rows and the catalog the test wrote, and recomputes each query's groups with
numpy and scipy (quantiles by linear interpolation, as ``quantile_cont``; depth = (layer_index + 0.5) / layer
rows of the model; family = catalog family, else the id's source prefix). The SQL rewrites for speed (one
list quantile per column, family without the depth join, ranks from one sort, groups keyed by number) must
give these rows.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
from scipy import stats

from scanner import query
from scanner.catalog import CatalogEntry, write_catalog
from scanner.config import ScanConfig
from scanner.store import ResultStore
from tests._factories import failed_model, make_model

FAMILIES = ("resnet", "vit", "convnext")
METRICS = ("alpha_mean", "alpha_hat", "log_norm_mean", "log_spectral_norm_mean", "log_alpha_norm_mean",
           "stable_rank_mean")


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    results = ResultStore(root / "results", "s1")
    results.open_scan(ScanConfig(), {}, {})
    rng = np.random.default_rng(11)
    catalog: dict[str, tuple[str, float]] = {}
    for i in range(28):
        listed = i < 22  # resnet 8 models (with i = 21), vit and convnext 7
        model_id = f"timm:{FAMILIES[i % 3]}_{i}" if listed else f"hf:org/extra_{i}"
        model, layers, spectra = make_model(model_id, n_layers=1 + i % 9, seed=i)
        results.write_model(model, layers, spectra, host="h", device="cpu")
        if listed:
            catalog[model_id] = (FAMILIES[i % 3], round(float(rng.uniform(60, 85)), 1))  # rounded: ties
    results.write_model(failed_model("timm:resnet_broken"), [], [], host="h", device="cpu")
    results.finish_scan({})
    (root / "catalogs").mkdir()
    write_catalog(root / "catalogs" / "c.csv",
                  [CatalogEntry(m, family, "imagenet-1k", top1=top1) for m, (family, top1) in catalog.items()])
    con = query.connect(root / "results", catalogs_dir=root / "catalogs", threads=2)
    layers = _rows(con, "SELECT * FROM layers")
    models = _rows(con, "SELECT * FROM models")
    return con, layers, models, catalog


def _rows(con, sql: str) -> list[dict]:
    cursor = con.sql(sql)
    names = cursor.columns
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _family(model_id: str, catalog) -> str:
    return catalog[model_id][0] if model_id in catalog else model_id.split(":", 1)[0]


def _close(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name, value in want.items():
        if isinstance(value, float) and value is not None:
            assert got[name] is not None and math.isclose(got[name], value, rel_tol=1e-12, abs_tol=1e-12), name
        else:
            assert got[name] == value, name


def _check(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want) > 0
    for g, w in zip(got, want, strict=True):
        _close(g, w)


def _query(con, name: str, **params) -> list[dict]:
    cursor = query.run_query(con, name, params)
    names = cursor.columns
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@pytest.mark.parametrize("group_by", ["kind", "family", "model", "all"])
def test_alpha_quantiles_match_numpy(scan, group_by) -> None:
    con, layers, _, catalog = scan
    key = {"kind": lambda r: r["kind"], "family": lambda r: _family(r["model_id"], catalog),
           "model": lambda r: r["model_id"], "all": lambda r: "all"}[group_by]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in layers:
        if r["status"] == "ok" and r["alpha"] is not None and r["fit_reliable"]:
            groups[key(r)].append(r)
    want = []
    for grp in sorted(groups):
        alpha = np.array([r["alpha"] for r in groups[grp]])
        hat = np.array([r["alpha_weighted"] for r in groups[grp] if r["alpha_weighted"] is not None])
        q = np.quantile(alpha, [0.10, 0.25, 0.50, 0.75, 0.90])
        q_hat = np.quantile(hat, [0.10, 0.50, 0.90])
        want.append({"grp": grp, "n_layers": len(alpha), "alpha_mean": float(alpha.mean()),
                     **{f"alpha_q{p}": float(v) for p, v in zip((10, 25, 50, 75, 90), q, strict=True)},
                     "frac_alpha_lt2": float(np.mean(alpha < 2)), "frac_alpha_gt6": float(np.mean(alpha > 6)),
                     **{f"alpha_hat_q{p}": float(v) for p, v in zip((10, 50, 90), q_hat, strict=True)}})
    _check(_query(con, "alpha_quantiles", group_by=group_by), want)


def _phase_groups(rows, key) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    totals: dict = defaultdict(int)
    for (outer, _), members in groups.items():
        totals[outer] += len(members)
    want = []
    for (outer, phase), members in sorted(groups.items()):
        alphas = [r["alpha"] for r in members if r["alpha"] is not None]
        want.append({"outer": outer, "phase": phase, "models": {r["model_id"] for r in members},
                     "n_layers": len(members), "fraction": len(members) / totals[outer],
                     "alpha_median": float(np.median(alphas)) if alphas else None})
    return want


def test_phase_by_family_matches_python(scan) -> None:
    con, layers, _, catalog = scan
    ok = [r for r in layers if r["status"] == "ok" and r["phase"] is not None]
    want = [{"family": w["outer"], "phase": w["phase"], "n_models": len(w["models"]), "n_layers": w["n_layers"],
             "fraction": w["fraction"], "alpha_median": w["alpha_median"]}
            for w in _phase_groups(ok, lambda r: (_family(r["model_id"], catalog), r["phase"]))]
    assert {w["family"] for w in want} == {*FAMILIES, "hf"}
    _check(_query(con, "phase_by_family"), want)


@pytest.mark.parametrize("buckets", [5, 3])
def test_phase_by_depth_matches_python(scan, buckets) -> None:
    con, layers, _, _ = scan
    rows_of: dict[str, int] = defaultdict(int)
    for r in layers:
        rows_of[r["model_id"]] += 1  # every layer row of the model, analysed or not
    ok = [r for r in layers if r["status"] == "ok" and r["phase"] is not None]

    def bucket(r: dict) -> int:
        return min(math.floor((r["layer_index"] + 0.5) / rows_of[r["model_id"]] * buckets), buckets - 1)

    want = [{"depth_bucket": w["outer"], "phase": w["phase"], "n_layers": w["n_layers"], "fraction": w["fraction"],
             "alpha_median": w["alpha_median"]} for w in _phase_groups(ok, lambda r: (bucket(r), r["phase"]))]
    _check(_query(con, "phase_by_depth", buckets=buckets), want)


@pytest.mark.parametrize("min_models", [5, 8])
def test_metric_accuracy_correlation_matches_scipy(scan, min_models) -> None:
    con, _, models, catalog = scan
    by_family: dict[str, list[dict]] = defaultdict(list)
    for m in models:
        if m["status"] == "ok" and m["model_id"] in catalog:
            by_family[catalog[m["model_id"]][0]].append(m)
    want = []
    for family in sorted(by_family):
        for metric in sorted(METRICS):
            pairs = [(m[metric], catalog[m["model_id"]][1]) for m in by_family[family]
                     if m[metric] is not None and math.isfinite(m[metric])]
            if len(pairs) < min_models:
                continue
            x, y = (np.array(v) for v in zip(*pairs, strict=True))
            slope, intercept = np.polyfit(x, y, 1)
            want.append({"scan_id": "s1", "dataset": "imagenet-1k", "family": family, "metric": metric,
                         "n": len(x), "pearson": stats.pearsonr(x, y)[0], "spearman": stats.spearmanr(x, y)[0],
                         "kendall_tau": stats.kendalltau(x, y)[0], "r2": stats.pearsonr(x, y)[0] ** 2,
                         "rmse": float(np.sqrt(np.mean((y - (slope * x + intercept)) ** 2))),
                         "slope": slope, "intercept": intercept})
    assert {w["family"] for w in want} == ({"resnet"} if min_models == 8 else set(FAMILIES))
    got = _query(con, "metric_accuracy_correlation", min_models=min_models)
    assert [(g["family"], g["metric"]) for g in got] == [(w["family"], w["metric"]) for w in want]
    for g, w in zip(got, want, strict=True):
        for name, value in w.items():
            if isinstance(value, float | np.floating):
                assert math.isclose(g[name], value, rel_tol=1e-9, abs_tol=1e-9), (g["family"], g["metric"], name)
            else:
                assert g[name] == value
