"""Report plots and HTML: non-empty PNGs from synthetic spectra, densities that integrate correctly, sections."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from scanner.records import MPFit, PowerLawFit
from scanner.report import plots
from scanner.report.tables import markdown_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _gaussian_evals(n: int = 400, m: int = 100, seed: int = 0) -> np.ndarray:
    w = np.random.default_rng(seed).normal(size=(n, m))
    return np.linalg.eigvalsh(w.T @ w)


def _mp(q: float = 4.0, scale: float = 400.0) -> MPFit:
    lo, hi = scale * (1 - q ** -0.5) ** 2, scale * (1 + q ** -0.5) ** 2
    return MPFit(scale=scale, lambda_minus=lo, lambda_plus=hi, lambda_plus_tw=hi * 1.05, n_spikes=0, softrank=0.9,
                 bulk_ks=0.02, bulk_fraction=1.0, q=q)


def _pl(alpha: float = 3.0, xmin: float = 600.0, n_tail: int = 20) -> PowerLawFit:
    return PowerLawFit(alpha=alpha, xmin=xmin, xmax=900.0, ks_distance=0.1, alpha_sigma=0.4, n_tail=n_tail)


def _is_png(data: bytes) -> bool:
    return data.startswith(PNG_MAGIC) and len(data) > 2000


def test_log_binned_density_integrates_to_one():
    evals = np.random.default_rng(1).pareto(2.5, size=5000) + 1.0
    centres, density = plots.log_binned_density(evals, bins=50)
    edges = np.logspace(np.log10(evals.min()), np.log10(evals.max()), 51)
    full = np.zeros(50)
    full[np.isin(np.sqrt(edges[:-1] * edges[1:]), centres)] = density
    assert np.sum(full * np.diff(edges)) == pytest.approx(1.0, rel=1e-9)


def test_power_law_density_carries_the_tail_share():
    fit = _pl(alpha=2.5, xmin=2.0, n_tail=50)
    x = np.logspace(np.log10(2.0), 8, 200_001)
    mass = np.trapezoid(plots.power_law_density(x, fit, n_total=200), x)
    assert mass == pytest.approx(50 / 200, rel=1e-3)
    assert np.isnan(plots.power_law_density(np.array([1.0]), fit, 200)[0])


def test_mp_bulk_density_matches_the_histogram_of_a_gaussian_matrix():
    evals = _gaussian_evals(2000, 500, seed=2)
    mp = _mp(q=4.0, scale=2000.0)
    hist, edges = np.histogram(evals, bins=20, range=(mp.lambda_minus, mp.lambda_plus), density=False)
    centres = 0.5 * (edges[1:] + edges[:-1])
    predicted = plots.mp_bulk_density(centres, mp) * np.diff(edges) * evals.size
    assert np.max(np.abs(hist - predicted)) < 0.25 * hist.max()


def test_esd_figure_renders_a_png_with_both_fits():
    fig = plots.esd_figure(_gaussian_evals(), _pl(), _mp(), "fc1.weight", "bulk_plus_spikes")
    assert len(fig.axes) == 2
    assert any("α=3.00" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert _is_png(plots.to_png(fig))


def test_esd_figure_without_fits_still_renders():
    assert _is_png(plots.to_png(plots.esd_figure(_gaussian_evals(), None, None)))


def _layers_table() -> pa.Table:
    return pa.table({"model_id": ["a", "a", "a", "b"], "layer_index": [0, 1, 2, 0], "alpha": [2.5, 4.0, None, 7.0],
                     "phase": ["heavy_tailed", "bulk_decay", None, "random_like"],
                     "status": ["ok", "ok", "failed", "ok"]})


def test_alpha_by_depth_and_counts_and_grid_render():
    layers = _layers_table()
    fig = plots.alpha_by_depth_figure(layers.filter(pc.equal(layers["model_id"], "a")), "a")
    assert len(fig.axes[0].collections[0].get_offsets()) == 2  # the failed layer (α None) is not drawn
    assert _is_png(plots.to_png(fig))
    counts = {"a": {"heavy_tailed": 1, "bulk_decay": 1}, "b": {"random_like": 1}}
    assert _is_png(plots.to_png(plots.phase_counts_figure(["a", "b"], counts)))
    grid = {(500, "fc1"): "random_like", (2, "fc1"): "heavy_tailed", (2, "fc2"): "bulk_decay"}
    fig = plots.phase_grid_figure([500, 2], ["fc1", "fc2"], grid)
    assert [t.get_text() for t in fig.axes[0].texts] == ["Random-like", "Heavy-Tailed", "—", "Bulk-decay"]
    assert _is_png(plots.to_png(fig))


def test_alpha_vs_accuracy_renders_one_series_per_family():
    models = pa.table({"family": ["x", "x", "y"], "top1": [70.0, 75.0, None], "alpha_mean": [3.0, 2.5, 4.0],
                       "alpha_hat": [1.0, 0.8, 2.0]})
    fig = plots.alpha_vs_accuracy_figure(models)
    assert len(fig.axes) == 2 and len(fig.axes[0].collections) == 1  # family y has no accuracy
    assert _is_png(plots.to_png(fig))


def test_markdown_table_formats_numbers_and_nulls():
    text = markdown_table([{"a": 1.234567, "b": None, "c": "x"}])
    assert text.splitlines()[2] == "| 1.235 |  | x |"
