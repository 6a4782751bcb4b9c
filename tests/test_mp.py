"""Marchenko–Pastur law and bulk fit: exact formulas, Gaussian calibration, BBP spikes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from scanner.errors import FitError
from scanner.spectra.esd import eigenvalues
from scanner.spectra.mp import (
    fit_marchenko_pastur,
    mp_cdf,
    mp_density,
    mp_edges,
    mp_quantile,
    spike_threshold,
    tracy_widom_scale,
)
from scanner.spectra.synthetic import spiked_covariance

# -- closed forms and hand-computed values (fast; run first) ----------------------------------------------------

def test_edges_are_scale_times_one_minus_plus_root_y_squared():
    assert mp_edges(4.0) == (0.25, 2.25)  # y = 1/4: (1 ∓ 1/2)²
    assert mp_edges(4.0, 2.0) == (0.5, 4.5)
    assert mp_edges(1.0, 3.0) == (0.0, 12.0)


def test_density_hand_values_and_support():
    """ρ(x) = √((λ⁺ − x)(x − λ⁻)) / (2π·s·y·x): Q = 1, s = 1 at x = 1 → √3/(2π); Q = 4, s = 2 (y = 1/4,
    edges 0.5, 4.5) at x = 2 → √(2.5·1.5)/(2π·2·¼·2)."""
    assert float(mp_density(1.0, 1.0)) == pytest.approx(np.sqrt(3) / (2 * np.pi), rel=1e-12)
    assert float(mp_density(2.0, 4.0, 2.0)) == pytest.approx(np.sqrt(3.75) / (2 * np.pi), rel=1e-12)
    assert float(mp_density(0.5, 1.0, 0.5)) == pytest.approx(np.sqrt(1.5 * 0.5) / (2 * np.pi * 0.5 * 0.5), rel=1e-12)
    outside = mp_density(np.array([0.0, 0.5, 0.49, 4.5, 4.51, 9.0]), 4.0, 2.0)
    np.testing.assert_array_equal(outside, 0.0)  # edges included: √0 = 0, and no 0/0 at λ⁻ = 0
    assert float(mp_density(0.0, 1.0)) == 0.0


def test_defaults_are_the_unit_scale_law():
    """Scale 1 means mean eigenvalue 1: ∫xρ = 1, and the default-scale CDF/quantile/density agree with it."""
    q = 2.0
    lo, hi = mp_edges(q)
    assert (lo, hi) == mp_edges(q, 1.0)
    mean = quad(lambda x: x * mp_density(np.array([x]), q)[0], lo, hi, limit=400)[0]
    assert mean == pytest.approx(1.0, rel=1e-6)
    half = float(mp_quantile(0.5, q))
    assert float(mp_cdf(half, q)) == pytest.approx(0.5, abs=1e-6)
    assert quad(lambda x: mp_density(np.array([x]), q)[0], lo, half, limit=400)[0] == pytest.approx(0.5, abs=2e-6)


def test_cdf_is_0_below_and_1_above_the_bulk():
    np.testing.assert_array_equal(mp_cdf(np.array([0.0, 0.4, 0.5]), 4.0, 2.0), 0.0)
    np.testing.assert_array_equal(mp_cdf(np.array([4.5, 5.0, 100.0]), 4.0, 2.0), 1.0)


def test_tracy_widom_scale_hand_value():
    """t_TW = σ²(√N + √M)(1/√N + 1/√M)^(1/3), σ² = s/N: N = 400, M = 100, s = 4 → 0.01·30·0.15^(1/3)."""
    assert tracy_widom_scale(400, 100, 4.0) == pytest.approx(0.3 * 0.15 ** (1 / 3), rel=1e-12)
    assert tracy_widom_scale(64, 64, 64.0) == pytest.approx(16 * 0.25 ** (1 / 3), rel=1e-12)


def test_spike_threshold_is_edge_plus_3_3_tw_plus_2_percent():
    t = 0.3 * 0.15 ** (1 / 3)
    edge, edge_tw = spike_threshold(4.0, 400, 100, 4.0)
    assert edge == 9.0  # 4·(1 + 1/2)²
    assert edge_tw == pytest.approx(9.0 + 3.3 * t + 0.02 * 9.0, rel=1e-12)


def _exact_bulk(count, q, scale):
    """A bulk that *is* the law: scale × the unit MP quantiles at the plotting positions (i − ½)/count."""
    return scale * mp_quantile((np.arange(count) + 0.5) / count, q)


def _least_squares_scale(values, q):
    """The slope through the origin of sorted ``values`` on unit MP quantiles at p ∈ [0.05, 0.85]."""
    p = (np.arange(values.size) + 0.5) / values.size
    use = (p >= 0.05) & (p <= 0.85)
    t = mp_quantile(p[use], q)
    return float(t @ values[use] / (t @ t))


def test_an_exact_bulk_is_fitted_exactly():
    q, n, scale = 4.0, 400, 2.5
    lam = _exact_bulk(100, q, scale)
    fit = fit_marchenko_pastur(lam[::-1], q=q, n=n)  # any order
    assert fit.scale == pytest.approx(scale, rel=1e-12)
    assert (fit.lambda_minus, fit.lambda_plus) == pytest.approx(mp_edges(q, scale), rel=1e-12)
    assert fit.lambda_plus_tw == pytest.approx(spike_threshold(q, n, 100, fit.scale)[1], rel=1e-12)
    assert fit.n_spikes == 0 and fit.bulk_fraction == 1.0 and fit.softrank == 1.0 and fit.q == q
    assert fit.bulk_ks == pytest.approx(0.5 / 100, abs=1e-6)  # a sample at the exact quantiles: D = 1/(2n)


def test_fit_uses_only_the_central_quantiles_0_05_to_0_85():
    """Distort the eigenvalues at p < 0.05, p ∈ [0.05, 0.1) and p > 0.85 (all still below the edge): the
    scale is the least-squares slope over p ∈ [0.05, 0.85] exactly."""
    q, n, count = 2.0, 400, 200
    lam = _exact_bulk(count, q, 1.0)
    p = (np.arange(count) + 0.5) / count
    lam = lam * np.where(p < 0.1, 0.8 + 2 * p, 1.0) * np.where(p > 0.85, 1 - 0.2 * (p - 0.85), 1.0)
    assert np.all(np.diff(lam) > 0)
    fit = fit_marchenko_pastur(lam, q=q, n=n)
    assert fit.n_spikes == 0
    assert fit.scale == pytest.approx(_least_squares_scale(lam, q), rel=1e-12)
    assert abs(fit.scale - 1.0) > 5e-5  # the distortion in [0.05, 0.1) counts


def test_the_central_window_is_closed_at_both_ends():
    """With 10 eigenvalues the plotting positions 0.05 (i = 1) and 0.85 (i = 9) lie on the window's ends and
    are used: distorting them moves the scale to the least-squares slope that includes them."""
    q = 4.0
    lam = _exact_bulk(10, q, 1.0)
    lam[0] *= 0.9
    lam[8] *= 1.01
    fit = fit_marchenko_pastur(lam, q=q, n=40)
    assert fit.n_spikes == 0
    p = (np.arange(10) + 0.5) / 10
    assert p[0] == 0.05 and p[8] == 0.85
    t = mp_quantile(p[:9], q)
    assert fit.scale == pytest.approx(float(t @ lam[:9] / (t @ t)), rel=1e-12)
    assert abs(fit.scale - 1.0) > 1e-4

def test_spikes_are_left_out_of_the_scale_fit_and_counted():
    q, n, scale = 4.0, 400, 2.0
    bulk = _exact_bulk(100, q, scale)
    spikes = np.array([30.0, 40.0, 50.0, 80.0, 200.0])
    fit = fit_marchenko_pastur(np.concatenate([spikes, bulk]), q=q, n=n)
    assert fit.scale == pytest.approx(scale, rel=1e-12)
    assert fit.n_spikes == 5 and fit.bulk_fraction == pytest.approx(100 / 105, rel=1e-12)
    assert fit.softrank == pytest.approx(mp_edges(q, scale)[1] / 200.0, rel=1e-12)
    assert fit.bulk_ks == pytest.approx(0.5 / 100, abs=1e-6)


def test_at_most_half_of_the_eigenvalues_are_set_aside_as_spikes():
    """10 bulk values and 30 outliers spread over 17 decades: more than 20 lie above the edge fitted to the
    lowest 20, but the fit may set aside only half (20), so its scale is the least-squares slope of the
    lowest 20 values; every value above the edge still counts as a spike."""
    q, n = 4.0, 40
    lam = np.concatenate([_exact_bulk(10, q, 1.0), np.geomspace(1e3, 1e20, 30)])
    fit = fit_marchenko_pastur(lam, q=q, n=n)
    assert fit.scale == pytest.approx(_least_squares_scale(lam[:20], q), rel=1e-12)
    assert fit.n_spikes == np.count_nonzero(lam > fit.lambda_plus_tw) > 20


def test_an_eigenvalue_exactly_at_the_tw_edge_belongs_to_the_bulk():
    """The top value of an exact bulk lies outside the central quantiles, so setting it to λ⁺_TW itself
    leaves the scale bit-identical: it is not a spike (spikes are > λ⁺_TW) and it stays in the bulk."""
    q, n = 4.0, 400
    lam = _exact_bulk(100, q, 1.0)
    edge_tw = fit_marchenko_pastur(lam, q=q, n=n).lambda_plus_tw
    lam[-1] = edge_tw
    fit = fit_marchenko_pastur(lam, q=q, n=n)
    assert fit.lambda_plus_tw == edge_tw
    assert fit.n_spikes == 0 and fit.bulk_fraction == 1.0


def test_tw_margin_uses_the_columns_per_matrix():
    """M = round(N/Q), at least 1: N = 50 with Q = 50 is one column per matrix."""
    lam = _exact_bulk(10, 50.0, 1.0)
    fit = fit_marchenko_pastur(lam, q=50.0, n=50)
    assert fit.lambda_plus_tw == pytest.approx(spike_threshold(50.0, 50, 1, fit.scale)[1], rel=1e-12)
    fit = fit_marchenko_pastur(_exact_bulk(40, 2.5, 1.0), q=2.5, n=100)
    assert fit.lambda_plus_tw == pytest.approx(spike_threshold(2.5, 100, 40, fit.scale)[1], rel=1e-12)


def test_zeros_are_not_positive_eigenvalues():
    with pytest.raises(FitError, match="got 3"):
        fit_marchenko_pastur(np.array([0.0, 0.0, 0.0, 1.0, 2.0, 3.0]), q=2.0, n=12)
    fit = fit_marchenko_pastur(np.array([0.0, 0.2, 0.3, 0.5, 0.9]), q=2.0, n=10)  # 4 positive, all < 1
    assert fit.scale > 0
    with pytest.raises(FitError, match="Q = N/M"):
        fit_marchenko_pastur(np.ones(10), q=float("nan"), n=5)


def test_ks_distance_hand_values():
    from scanner.spectra.mp import _ks_distance

    q, scale = 4.0, 2.0
    assert _ks_distance(np.array([]), q, scale) == 1.0  # no bulk: the worst distance
    x = float(mp_quantile(0.3, q, scale))
    assert _ks_distance(np.array([x]), q, scale) == pytest.approx(0.7, abs=1e-6)  # max(1 − F, F)
    sample = _exact_bulk(8, q, scale)
    assert _ks_distance(sample, q, scale) == pytest.approx(1 / 16, abs=1e-6)
    shifted = mp_quantile(np.array([0.1, 0.2, 0.3, 0.9]), q, scale)  # steps 1/4: worst gap at 0.3 → 3/4 − 0.3
    assert _ks_distance(shifted, q, scale) == pytest.approx(0.45, abs=1e-6)


def test_fit_scale_of_one_eigenvalue():
    from scanner.spectra.mp import _fit_scale

    assert _fit_scale(np.array([2.0]), 4.0) == pytest.approx(2.0 / float(mp_quantile(0.5, 4.0)), rel=1e-12)


# -- the law against quadrature, and realistic matrices ------------------------------------------------------

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


def _square_cdf(x):
    """The Q = 1 law exactly: √λ follows the quarter circle √(4 − s²)/π on [0, 2], so
    F(x) = (s·√(4 − s²)/2 + 2·arcsin(s/2))/π at s = √x."""
    s = np.sqrt(x)
    return (s * np.sqrt(4.0 - s * s) / 2.0 + 2.0 * np.arcsin(s / 2.0)) / np.pi


def test_cdf_and_quantile_are_accurate_at_the_hard_edge_of_square_layers():
    """F rises as √x from λ⁻ = 0 (Q = 1); interpolating the table in x missed it by 5.6e-4 next to the edge and put
    the lowest plotting positions of a 4096² layer's null 2–8× too high."""
    from scipy.optimize import brentq

    xs = np.concatenate([np.geomspace(1e-12, 1e-2, 60), np.linspace(0.01, 4.0, 200)])
    np.testing.assert_allclose(mp_cdf(xs, 1.0), _square_cdf(xs), atol=1e-6, rtol=0)
    for m in (1024, 4096):
        p = (np.array([1, 2, 5]) - 0.5) / m
        exact = [brentq(lambda x, target=t: _square_cdf(x) - target, 0.0, 4.0, xtol=1e-18, rtol=1e-14) for t in p]
        np.testing.assert_allclose(mp_quantile(p, 1.0), exact, rtol=1e-3)


@pytest.mark.parametrize("q", [1.0001, 1.01])
def test_cdf_near_q_1_matches_quadrature_in_theta(q):
    """Just above Q = 1 the soft edge λ⁻ is tiny and the density rises within θ ≈ √(2λ⁻/h) of it: reference by
    adaptive quadrature of the θ-form of the density, split at that knee."""
    lo, hi = mp_edges(q)
    half, y = (hi - lo) / 2.0, 1.0 / q
    knee = np.sqrt(2.0 * lo / half)

    def exact(x):
        t = np.arccos(np.clip(1.0 - 2.0 * (x - lo) / (hi - lo), -1.0, 1.0))
        f = lambda th: half**2 * np.sin(th) ** 2 / (2 * np.pi * y * (lo + half * (1 - np.cos(th))))  # noqa: E731
        points = [k for k in (knee * 0.1, knee, knee * 10) if k < t]
        return quad(f, 0.0, t, points=points or None, epsabs=1e-12, epsrel=1e-10, limit=400)[0]

    for x in (lo + 1e-9, lo + 1e-7, 1e-5, 1e-3, 0.1, 1.0, 3.0):
        assert float(mp_cdf(x, q)) == pytest.approx(exact(x), abs=1e-6)


def test_mean_of_law_is_scale():
    q, scale = 3.0, 0.7
    lo, hi = mp_edges(q, scale)
    mean = quad(lambda x: x * mp_density(np.array([x]), q, scale)[0], lo, hi, limit=400)[0]
    assert mean == pytest.approx(scale, rel=1e-6)


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


@pytest.mark.parametrize("m", [64, 256, pytest.param(1024, marks=pytest.mark.slow)])  # 1024: ~40 s
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


# -- fast paths pinned to the plain computations they replace, bit for bit ------------------------------------


def test_split_counts_equal_the_comparison_counts():
    """Bisection on sorted eigenvalues counts what ``np.count_nonzero(lam <= x)`` and ``(lam > x)`` count: ties,
    values equal to x, x outside the range, ±inf, and NaN (which no comparison admits)."""
    from scanner.spectra.mp import _split

    rng = np.random.default_rng(5)
    for _ in range(300):
        lam = np.sort(np.round(rng.pareto(2.0, int(rng.integers(1, 300))), int(rng.integers(0, 4))))
        probes = np.concatenate([lam[rng.integers(0, lam.size, 5)], rng.uniform(-1.0, lam[-1] + 1.0, 5),
                                 [0.0, -np.inf, np.inf, np.nan]])
        for x in probes:
            assert _split(lam, float(x)) == (int(np.count_nonzero(lam <= x)), int(np.count_nonzero(lam > x)))


def test_scalar_math_equals_the_numpy_scalar_formulas():
    """``tracy_widom_scale`` in Python floats gives numpy's float64 result bit for bit (and ``mp_edges`` its
    documented formula)."""
    rng = np.random.default_rng(6)
    for _ in range(5000):
        n = int(rng.integers(1, 20000))
        m = int(rng.integers(1, n + 1))
        scale = float(10.0 ** rng.uniform(-8, 8))
        sigma2 = scale / n
        tw = float(sigma2 * (np.sqrt(n) + np.sqrt(m)) * (1.0 / np.sqrt(n) + 1.0 / np.sqrt(m)) ** (1.0 / 3.0))
        assert tracy_widom_scale(n, m, scale).hex() == tw.hex()
        root = 1.0 / np.sqrt(n / m)
        edges = (scale * (1.0 - root) ** 2, scale * (1.0 + root) ** 2)
        assert [float(v).hex() for v in mp_edges(n / m, scale)] == [float(v).hex() for v in edges]


def test_fit_rejects_nan_and_inf_anywhere():
    """The finiteness check reads only the ends of the sorted eigenvalues: NaN sorts last, -inf first."""
    base = np.linspace(0.1, 2.0, 50)
    for bad in (np.nan, np.inf, -np.inf):
        for at in (0, 25, 49):
            lam = base.copy()
            lam[at] = bad
            with pytest.raises(FitError, match="NaN/Inf"):
                fit_marchenko_pastur(lam, q=2.0, n=100)
