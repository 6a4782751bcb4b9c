"""Marchenko–Pastur law and bulk fit: exact formulas, Gaussian calibration, BBP spikes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from scanner.errors import FitError
from scanner.spectra.esd import eigenvalues
from scanner.spectra.mp import fit_marchenko_pastur, mp_cdf, mp_density, mp_edges, mp_quantile
from scanner.spectra.synthetic import spiked_covariance


@pytest.mark.parametrize("q", [1.0, 1.7, 4.0, 10.67])
def test_density_integrates_to_one_and_cdf_matches_quadrature(q):
    lo, hi = mp_edges(q, 2.5)
    total = quad(lambda x: mp_density(np.array([x]), q, 2.5)[0], lo, hi, limit=400)[0]
    assert total == pytest.approx(1.0, abs=1e-6)
    for frac in (0.1, 0.5, 0.9):
        x = lo + frac * (hi - lo)
        exact = quad(lambda t: mp_density(np.array([t]), q, 2.5)[0], lo, x, limit=400)[0]
        assert float(mp_cdf(x, q, 2.5)) == pytest.approx(exact, abs=2e-6)
    p = np.linspace(0.01, 0.99, 25)
    np.testing.assert_allclose(mp_cdf(mp_quantile(p, q, 2.5), q, 2.5), p, atol=1e-6)


def test_mean_of_law_is_scale():
    q, scale = 3.0, 0.7
    lo, hi = mp_edges(q, scale)
    mean = quad(lambda x: x * mp_density(np.array([x]), q, scale)[0], lo, hi, limit=400)[0]
    assert mean == pytest.approx(scale, rel=1e-6)


@pytest.mark.parametrize("m", [64, 256, 1024])
@pytest.mark.parametrize("q", [1.0, 2.0, 10.67])
def test_gaussian_matrices_have_no_spikes_and_right_scale(m, q):
    n = int(round(m * q))
    for seed in range(3):
        w = np.random.default_rng(seed).standard_normal((n, m)) * 0.05
        fit = fit_marchenko_pastur(eigenvalues(w), q=n / m, n=n)
        assert fit.n_spikes == 0
        assert fit.scale == pytest.approx(n * 0.05**2, rel=0.05)
        assert fit.bulk_ks < 0.06
        assert fit.bulk_fraction == 1.0


def test_bbp_spikes_are_found_where_theory_puts_them():
    n, m = 2000, 500
    y = m / n
    betas = np.array([3.0, 6.0, 12.0])  # all above the BBP threshold √y = 0.5
    fit_evals = eigenvalues(spiked_covariance(n, m, betas, seed=0))
    fit = fit_marchenko_pastur(fit_evals, q=n / m, n=n)
    assert fit.n_spikes == 3
    predicted = np.sort((1 + betas) * (1 + y / betas))  # spike locations for unit scale
    np.testing.assert_allclose(fit_evals[-3:] / fit.scale, predicted, rtol=0.05)
    assert fit.softrank < 0.5


def test_spikes_below_bbp_threshold_stay_in_the_bulk():
    n, m = 2000, 500
    betas = np.full(3, 0.3)  # below √y = 0.5: no outlier separates (BBP transition)
    fit = fit_marchenko_pastur(eigenvalues(spiked_covariance(n, m, betas, seed=1)), q=n / m, n=n)
    assert fit.n_spikes == 0


def test_bad_input():
    with pytest.raises(FitError, match="Q = N/M"):
        fit_marchenko_pastur(np.ones(10), q=0.5, n=5)
    with pytest.raises(FitError, match="at least 4"):
        fit_marchenko_pastur(np.array([0.0, 0.0, 1.0]), q=2.0, n=6)
    with pytest.raises(FitError, match="NaN"):
        fit_marchenko_pastur(np.array([1.0, np.nan, 2.0, 3.0, 4.0]), q=2.0, n=10)
