"""Norm metrics on matrices with known singular values."""

from __future__ import annotations

import numpy as np
import pytest

from scanner.spectra.esd import eigenvalues
from scanner.spectra.metrics import log_alpha_norm, near_zero_tolerance, norm_metrics, quantile_linear


def _with_singular_values(s: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((n, s.size)))
    v, _ = np.linalg.qr(rng.standard_normal((s.size, s.size)))
    return (u * s) @ v.T


def test_known_values():
    s = np.array([4.0, 2.0, 2.0, 1.0])
    lam = s**2  # 16, 4, 4, 1
    got = norm_metrics(eigenvalues(_with_singular_values(s, 10)), n=10, m=4, alpha=2.0)
    assert got.lambda_max == pytest.approx(16.0)
    assert got.log_norm == pytest.approx(np.log10(25.0))
    assert got.log_spectral_norm == pytest.approx(np.log10(16.0))
    assert got.stable_rank == pytest.approx(25.0 / 16.0)
    assert got.alpha_weighted == pytest.approx(2.0 * np.log10(16.0))
    assert got.log_alpha_norm == pytest.approx(np.log10(np.sum(lam**2.0)))
    p = lam / lam.sum()
    assert got.entropy == pytest.approx(-np.sum(p * np.log(p)) / np.log(4))
    assert got.rank_loss == 0


def test_uniform_spectrum_has_entropy_one_and_full_stable_rank():
    w = _with_singular_values(np.ones(50), 100)
    got = norm_metrics(eigenvalues(w), n=100, m=50)
    assert got.entropy == pytest.approx(1.0)
    assert got.stable_rank == pytest.approx(50.0)
    assert got.alpha_weighted is None and got.log_alpha_norm is None


def test_rank_loss_and_near_zero_count_exact_zeros():
    s = np.concatenate([np.linspace(1, 2, 30), np.zeros(20)])
    got = norm_metrics(eigenvalues(_with_singular_values(s, 80)), n=80, m=50)
    assert got.rank_loss == 20
    assert got.n_near_zero == 20


def test_scaling_shifts_log_norms_and_keeps_shape_metrics():
    w = np.random.default_rng(1).standard_normal((120, 60))
    a = norm_metrics(eigenvalues(w), n=120, m=60, alpha=3.0)
    b = norm_metrics(eigenvalues(10.0 * w), n=120, m=60, alpha=3.0)
    assert b.log_norm - a.log_norm == pytest.approx(2.0)
    assert b.log_spectral_norm - a.log_spectral_norm == pytest.approx(2.0)
    assert b.stable_rank == pytest.approx(a.stable_rank)
    assert b.entropy == pytest.approx(a.entropy)
    assert b.log_alpha_norm - a.log_alpha_norm == pytest.approx(6.0)


def test_log_alpha_norm_does_not_overflow():
    got = norm_metrics(np.array([1e300, 1e250, 1.0]), n=3, m=3, alpha=5.0)
    assert got.log_alpha_norm == pytest.approx(1500.0)


def test_quantile_linear_is_numpys_linear_quantile_bit_for_bit():
    """Sorted and unsorted input, every q kind: the ends, exact halves of the index step (numpy's _lerp switches
    at t = ½), and random q."""
    rng = np.random.default_rng(7)
    for trial in range(400):
        n = int(rng.integers(1, 40))
        x = rng.lognormal(0.0, 2.0, n)
        for q in (0.0, 0.25, 0.5, 0.9, 1.0, float(rng.random())):
            want = float(np.quantile(x, q))
            assert quantile_linear(x, q) == want, (trial, n, q)
            assert quantile_linear(np.sort(x), q, is_sorted=True) == want, (trial, n, q)
    for _ in range(2000):  # n = 3, q = ¼: the index 0.5 sits exactly on the switch
        x = rng.lognormal(0.0, 3.0, 3)
        assert quantile_linear(x, 0.25) == float(np.quantile(x, 0.25))


def test_near_zero_tolerance_by_hand():
    assert near_zero_tolerance(np.array([])) == 0.0
    spike = np.array([0.0] * 10 + [1.0])  # the 90th percentile is 0: λ_max stands in
    assert near_zero_tolerance(spike, is_sorted=True) == pytest.approx(1e-6)
    assert near_zero_tolerance(spike[::-1].copy()) == pytest.approx(1e-6)
    x = np.array([5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 7.0, 9.0, 8.0, 0.5])  # unsorted: q90 = 9.0
    assert near_zero_tolerance(x) == pytest.approx(9e-6)


def test_log_alpha_norm_is_scipys_logsumexp_bit_for_bit():
    from scipy.special import logsumexp

    def scipy_value(evals: np.ndarray, alpha: float) -> float:
        return float(logsumexp(alpha * np.log(evals[evals > 0])) / np.log(10.0))

    rng = np.random.default_rng(3)
    cases = [np.array([4.0, 4.0, 2.0, 2.0]), np.array([2.0, 2.0, 1.0]), np.array([3.0]), np.array([5.0, 5.0]),
             np.array([0.0, 1.0, 1.0, 1e-300])]
    cases += [rng.lognormal(0.0, 2.0, int(rng.integers(1, 300))) for _ in range(200)]
    for evals in cases:
        for alpha in (1.0, 2.5, 7.3):
            assert log_alpha_norm(evals, alpha) == scipy_value(evals, alpha), (evals[:4], alpha)
    assert log_alpha_norm(np.array([4.0, 4.0, 2.0, 2.0]), 1.0) == pytest.approx(np.log10(12.0))  # by hand
    assert log_alpha_norm(np.array([1.0, np.inf]), 2.0) == np.inf
    assert np.isnan(log_alpha_norm(np.array([1.0, 2.0]), float("nan")))
