"""The synthetic generators build what their docstrings promise: closed-form covariances, BBP outlier
locations, spike counts, Pareto tails and ranks (the known truth the phase classifier is tested against)."""

from __future__ import annotations

import numpy as np
import pytest

from scanner.records import Phase
from scanner.spectra import synthetic
from scanner.spectra.esd import eigenvalues
from scanner.spectra.synthetic import (
    bbp_threshold,
    bleeding_out,
    bulk_decay,
    bulk_plus_spikes,
    heavy_tailed,
    pareto_entries,
    random_like,
    rank_collapse,
    spiked_covariance,
)


@pytest.fixture
def captured_betas(monkeypatch):
    """The β vector each spiked generator passes to spiked_covariance (the real one still builds W)."""
    seen: list[np.ndarray] = []
    real = synthetic.spiked_covariance

    def spy(n, m, betas, seed):
        seen.append(np.array(betas, dtype=np.float64))
        return real(n, m, betas, seed)

    monkeypatch.setattr(synthetic, "spiked_covariance", spy)
    return seen


@pytest.mark.parametrize("n, m", [(3, 3), (2, 2), (5, 3), (7, 2)])
def test_every_shape_with_n_at_least_m_at_least_2_is_accepted(n, m):
    for make in (random_like, lambda n, m, seed: heavy_tailed(n, m, seed), rank_collapse):
        assert make(n, m, 0).matrix.shape == (n, m)


@pytest.mark.parametrize("n, m", [(2, 3), (5, 1), (1, 1)])
def test_shapes_outside_n_at_least_m_at_least_2_are_refused(n, m):
    with pytest.raises(ValueError, match="N >= M >= 2"):
        random_like(n, m, 0)


def test_random_like_entries_have_variance_one_over_n():
    """Scale s = N·σ² = 1: the mean eigenvalue of WᵀW (trace / M) is 1 (std √(2/NM) ≈ 0.003)."""
    result = random_like(2000, 100, seed=3)
    assert result.phase is Phase.RANDOM_LIKE
    assert np.sum(result.matrix**2) / 100 == pytest.approx(1.0, abs=0.015)


def test_spiked_covariance_has_population_covariance_i_plus_beta_vvt():
    """E[WᵀW] = C^(1/2)·E[ZᵀZ]·C^(1/2) = C = I + Σ β_i v_iv_iᵀ: eigenvalues 1 (M−k times) and 1 + β_i."""
    w = spiked_covariance(40_000, 5, np.array([3.0, 8.0]), seed=2)
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(w.T @ w)), [1, 1, 1, 4, 9], rtol=0.04)


def test_bbp_threshold_is_root_of_the_aspect_ratio():
    assert bbp_threshold(400, 100) == 0.5
    assert bbp_threshold(90, 10) == pytest.approx(1 / 3)


@pytest.mark.parametrize("m, k", [(50, 2), (500, 10)])
def test_bleeding_out_draws_two_percent_of_directions_between_2_5_and_4_thresholds(captured_betas, m, k):
    n, seed = 4 * m, 0
    result = bleeding_out(n, m, seed)
    assert result.phase is Phase.BLEEDING_OUT and result.params == {"k": k}
    (betas,) = captured_betas
    ratios = betas / np.sqrt(m / n)
    assert betas.size == k and np.all((ratios >= 2.5) & (ratios <= 4.0))
    # the seeded draw (reproducible from the seed): U(2.5, 4) from default_rng(seed + 7)
    np.testing.assert_allclose(ratios, np.random.default_rng(seed + 7).uniform(2.5, 4.0, size=k), rtol=1e-12)


def test_bleeding_out_outliers_sit_where_bbp_puts_them():
    """λ = (1 + β)(1 + y/β) for β above √y (unit scale), just past the bulk edge (1 + √y)²."""
    n, m = 2000, 500
    y = m / n
    result = bleeding_out(n, m, seed=1)
    k = result.params["k"]
    betas = np.sqrt(y) * np.random.default_rng(1 + 7).uniform(2.5, 4.0, size=k)
    evals = eigenvalues(result.matrix)
    np.testing.assert_allclose(evals[-k:], np.sort((1 + betas) * (1 + y / betas)), rtol=0.06)
    assert evals[-k - 1] < (1 + np.sqrt(y)) ** 2 * 1.05 < evals[-k]


@pytest.mark.parametrize("m, k", [(40, 1), (100, 2), (500, 8)])
def test_bulk_plus_spikes_places_outliers_between_2_and_8_bulk_edges(captured_betas, m, k):
    n, seed = 2 * m, 0
    y = m / n
    edge = (1 + np.sqrt(y)) ** 2
    result = bulk_plus_spikes(n, m, seed)
    assert result.phase is Phase.BULK_PLUS_SPIKES and result.params == {"k": k}
    (betas,) = captured_betas
    assert betas.size == k and np.all(betas > np.sqrt(y))  # the root above the BBP threshold
    located = (1 + betas) * (1 + y / betas)  # where each spike's outlier lands (unit scale)
    assert np.all((located >= 2 * edge) & (located <= 8 * edge))
    # the seeded draw of the targets: edge·U(2, 8) from default_rng(seed + 11)
    np.testing.assert_allclose(located, edge * np.random.default_rng(seed + 11).uniform(2.0, 8.0, size=k),
                               rtol=1e-10)


@pytest.mark.parametrize("m, k", [(20, 4), (100, 12)])
def test_bulk_decay_spikes_decay_geometrically_from_6_to_1_2_thresholds(captured_betas, m, k):
    n = 3 * m
    result = bulk_decay(n, m, seed=0)
    assert result.phase is Phase.BULK_DECAY and result.params == {"k": k}
    (betas,) = captured_betas
    ratios = betas / np.sqrt(m / n)
    assert ratios.size == k
    assert ratios[0] == pytest.approx(6.0) and ratios[-1] == pytest.approx(1.2)
    np.testing.assert_allclose(ratios[1:] / ratios[:-1], (1.2 / 6.0) ** (1 / (k - 1)))


@pytest.mark.parametrize("mu", [1.5, 3.0])
def test_pareto_entries_are_symmetric_classical_pareto_with_xm_1(mu):
    """|w| ~ Pareto(x_m = 1, μ): P(|w| > x) = x^(−μ) for x ≥ 1, the same for both signs (100k entries)."""
    w = pareto_entries(400, 250, mu, seed=5)
    size = w.size
    assert np.min(np.abs(w)) >= 1.0 and np.min(np.abs(w)) < 1.001
    assert np.mean(w < 0) == pytest.approx(0.5, abs=0.01)
    for part in (w[w > 0], -w[w < 0]):
        for x in (1.5, 2.0, 4.0):
            assert np.mean(part > x) == pytest.approx(x**-mu, abs=5 * np.sqrt(x**-mu / (size / 2)))
    hill = 1.0 / np.mean(np.log(np.abs(w)))  # MLE of μ for x_m = 1
    assert hill == pytest.approx(mu, rel=0.02)


def test_heavy_tailed_families():
    default = heavy_tailed(300, 200, seed=1)
    assert default.params == {"mu": 2.5} and default.name == "pareto_mu2.5" and default.phase is Phase.HEAVY_TAILED
    assert np.min(np.abs(default.matrix)) >= 1.0  # classical Pareto: no entry below x_m = 1
    t = heavy_tailed(300, 200, seed=1, mu=3.0, family="student_t").matrix
    assert 0.4 < np.mean(np.abs(t) < 1.0) < 0.8  # Student-t(3): P(|t| < 1) = 0.609
    assert np.var(t) == pytest.approx(3.0, rel=0.3)  # ν/(ν−2)
    with pytest.raises(ValueError, match="'family' option"):
        heavy_tailed(10, 5, seed=0, family="cauchy")


@pytest.mark.parametrize("n, m, fraction, rank", [(400, 40, None, 10), (400, 40, 0.5, 20), (8, 2, 0.25, 1)])
def test_rank_collapse_has_rank_r_plus_noise_of_1e_4(n, m, fraction, rank):
    result = (rank_collapse(n, m, seed=4) if fraction is None else
              rank_collapse(n, m, seed=4, rank_fraction=fraction))
    assert result.phase is Phase.RANK_COLLAPSE and result.params == {"rank": rank}
    s = np.linalg.svd(result.matrix, compute_uv=False)
    # the rank-r part: entries of variance 1/N, so Σ s_i² ≈ M over its r singular values
    assert np.sum(s[:rank] ** 2) == pytest.approx(m, rel=0.35 if m < 10 else 0.1)
    if rank < m:
        assert s[rank - 1] > 100 * s[rank]
        # the rest is the noise 1e-4·G/√N: singular values 1e-4·(1 ± √(M/N)) by MP, (M − r) of them
        assert 0.5e-4 < s[rank] < 1.5e-4 and 0.3e-4 < s[-1] < 1.1e-4
