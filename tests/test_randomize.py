"""Randomization test: seeded, near-identity on i.i.d. matrices, traps from a large mean."""

from __future__ import annotations

import numpy as np
import pytest

from scanner.spectra.esd import as_matrix_batch, eigenvalues
from scanner.spectra.randomize import (
    analytic_null_eigenvalues,
    compare_with_randomized,
    esd_distance,
    null_eigenvalues,
    randomization_test,
    shuffled,
)
from scanner.spectra.synthetic import spiked_covariance


def test_shuffle_is_seeded_and_a_permutation():
    batch = np.arange(2 * 6 * 4, dtype=np.float64).reshape(2, 6, 4)
    a, b = shuffled(batch, 3), shuffled(batch, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, batch)
    for original, mixed in zip(batch, a, strict=True):
        np.testing.assert_array_equal(np.sort(original.ravel()), np.sort(mixed.ravel()))


def test_iid_gaussian_is_its_own_randomization():
    w = np.random.default_rng(0).standard_normal((800, 400))
    result = randomization_test(w, eigenvalues(w), seed=0)
    assert result.n_traps == 0
    assert 0.95 < result.softrank < 1.05
    assert result.rand_distance < 0.1
    assert result.seed == 0


def test_learned_correlations_are_destroyed_by_shuffling():
    w = spiked_covariance(1000, 250, np.array([20.0, 10.0, 5.0]), seed=1)
    evals = eigenvalues(w)
    result = randomization_test(w, evals, seed=0)
    assert result.softrank < 0.5  # the spikes were correlations: the shuffled λ_max is much smaller
    assert result.n_traps == 0


def test_large_mean_is_a_correlation_trap():
    w = np.random.default_rng(2).standard_normal((600, 300)) + 0.5
    result = randomization_test(w, eigenvalues(w), seed=0)
    assert result.n_traps >= 1  # a rank-one mean survives shuffling


def test_distance_zero_for_identical_and_positive_for_different():
    x = np.geomspace(1, 100, 200)
    assert esd_distance(x, x) == 0.0
    assert esd_distance(x, x * 10) > 0.5


def _matrices():
    rng = np.random.default_rng(4)
    return {
        "gaussian square": rng.standard_normal((512, 512)),
        "student-t": rng.standard_t(2.5, size=(1024, 256)),
        "spiked": spiked_covariance(800, 400, np.array([30.0, 8.0]), seed=3),
        "mean": rng.standard_normal((600, 300)) + 0.3,
    }


@pytest.mark.parametrize("name", sorted(_matrices()))
def test_float32_null_model_gives_the_float64_comparison(name):
    """The shuffled ESD is solved in float32: every output of the comparison matches the float64 solve."""
    w = _matrices()[name]
    evals = eigenvalues(w)
    batch = shuffled(w[None], seed=0, dtype=np.float64)
    exact = compare_with_randomized(evals, eigenvalues(batch), n=w.shape[0], m=w.shape[1], seed=0)
    fast = compare_with_randomized(evals, eigenvalues(batch, precision="float32"), n=w.shape[0], m=w.shape[1],
                                   seed=0)
    assert fast.n_traps == exact.n_traps
    assert fast.lambda_max_rand == pytest.approx(exact.lambda_max_rand, rel=1e-5)
    assert abs(fast.rand_distance - exact.rand_distance) < 0.01


def test_float32_shuffle_is_a_uniform_permutation():
    """All 24 orders of 4 entries are equally likely (chi-square over 24,000 seeded shuffles)."""
    from itertools import permutations

    from scipy.stats import chisquare

    values = np.array([1.5, -2.0, 3.25, 0.125], dtype=np.float32)
    index = {order: i for i, order in enumerate(permutations(values.tolist()))}
    counts = np.zeros(len(index))
    for seed in range(24_000):
        counts[index[tuple(shuffled(values.reshape(1, 2, 2), seed).ravel().tolist())]] += 1
    assert chisquare(counts).pvalue > 1e-4
    assert counts.min() > 850  # expected 1,000 each


def test_float32_shuffle_keeps_signs_zeros_and_extremes():
    values = np.array([[-0.0, 0.0, -1e-38, 3e38, -3e38, 1e-45, np.float32(np.pi), -7.0]], dtype=np.float32)
    mixed = shuffled(values.reshape(1, 2, 4), seed=1).ravel()
    np.testing.assert_array_equal(np.sort(mixed.view(np.uint32)), np.sort(values.ravel().view(np.uint32)))


def test_shuffle_stream_is_independent_of_data_drawn_from_the_same_seed():
    """An i.i.d. matrix drawn from default_rng(0) and shuffled with seed 0 stays i.i.d.-like: no rank-one
    trap (with the shuffle keys taken from default_rng(0) itself, rows came out sorted by sign, λ_max 150×)."""
    from scanner.spectra.synthetic import heavy_tailed

    w = heavy_tailed(1024, 512, seed=0, mu=3.5).matrix
    result = randomization_test(w, eigenvalues(w), seed=0)
    assert 0.8 < result.softrank < 1.25
    assert result.n_traps == 0


def _with_entry(w, value):
    w[3, 5] = value
    return w


def _exact_and_auto(w):
    evals = eigenvalues(w)
    return (randomization_test(w, evals, seed=0, null="exact"), randomization_test(w, evals, seed=0, null="auto"))


def test_closed_form_null_is_used_for_light_tailed_entries_and_agrees_with_the_shuffle():
    w = np.random.default_rng(5).standard_normal((1024, 512))
    assert analytic_null_eigenvalues(as_matrix_batch(w)) is not None
    exact, auto = _exact_and_auto(w)
    assert exact.n_traps == auto.n_traps == 0
    assert auto.lambda_max_rand == pytest.approx(exact.lambda_max_rand, rel=0.02)
    assert abs(auto.rand_distance - exact.rand_distance) < 0.05
    assert auto.lambda_max_rand != exact.lambda_max_rand  # really the closed form, not a shuffle


def test_closed_form_null_places_a_large_mean_where_the_shuffle_finds_it():
    w = np.random.default_rng(6).standard_normal((600, 300)) + 0.5
    exact, auto = _exact_and_auto(w)
    assert exact.n_traps == auto.n_traps == 1
    assert auto.lambda_max_rand == pytest.approx(exact.lambda_max_rand, rel=0.01)


@pytest.mark.parametrize("make", [
    lambda rng: rng.standard_t(2.5, size=(1024, 256)),  # heavy-tailed entries: traps come from single entries
    lambda rng: rng.standard_normal((600, 300)) + 0.035,  # a mean near its BBP transition (θ/σ²√NM ≈ 0.9)
    lambda rng: _with_entry(rng.standard_normal((512, 512)), 40.0),  # one entry of 40σ: a trap on its own
])
def test_auto_null_falls_back_to_the_shuffle_when_not_certified(make):
    w = make(np.random.default_rng(7))
    assert analytic_null_eigenvalues(as_matrix_batch(w)) is None
    exact, auto = _exact_and_auto(w)
    assert auto == exact


def test_null_model_option_is_validated_and_hashed():
    from scanner.config import ScanConfig
    from scanner.errors import ConfigError

    with pytest.raises(ConfigError, match="'null' option"):
        ScanConfig(null="lanczos")
    assert ScanConfig(null="exact").config_hash() != ScanConfig().config_hash()
    with pytest.raises(ValueError, match="null model"):
        null_eigenvalues(as_matrix_batch(np.eye(4)), 0, null="bogus")
