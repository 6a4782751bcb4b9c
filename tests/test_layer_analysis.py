"""One layer end to end on arrays: bad input gives a clear error; small input gives no phase, not a crash."""

from __future__ import annotations

import numpy as np
import pytest

from scanner.config import ScanConfig
from scanner.errors import SpectrumError
from scanner.records import Phase
from scanner.spectra.layer import analyse_matrices, analyse_spectrum, layer_eigenvalues

CONFIG = ScanConfig(randomize=False)


def test_gaussian_layer_has_every_field():
    w = np.random.default_rng(0).standard_normal((600, 300)).astype(np.float32)
    spectrum = analyse_matrices(w, ScanConfig(seed=3)).spectrum
    assert (spectrum.n, spectrum.m, spectrum.num_evals, spectrum.n_matrices) == (600, 300, 300, 1)
    assert spectrum.q == pytest.approx(2.0)
    assert spectrum.mp is not None and spectrum.mp.n_spikes == 0
    assert spectrum.randomization is not None and spectrum.randomization.seed == 3
    assert spectrum.phase.phase is Phase.RANDOM_LIKE


def test_two_steps_equal_one():
    w = np.random.default_rng(1).standard_normal((9, 80, 40))
    config = ScanConfig(seed=5)
    joint = analyse_matrices(w, config).spectrum
    split = analyse_spectrum(layer_eigenvalues(w, randomize=True, seed=5), config).spectrum
    assert joint == split


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (np.full((40, 20), np.nan), "non-finite"),
        (np.where(np.eye(30, 20) > 0, np.inf, 1.0), "non-finite"),
        (np.zeros((50, 20)), "all-zero"),
        (np.ones((8, 8), dtype=bool), "not real numbers"),
    ],
)
def test_bad_layers_raise_a_clear_error(weights, match):
    with pytest.raises(SpectrumError, match=match):
        analyse_matrices(weights, CONFIG)


def test_integer_weights_are_analysed():
    w = np.random.default_rng(2).integers(-127, 128, size=(200, 100)).astype(np.int8)
    spectrum = analyse_matrices(w, CONFIG).spectrum
    assert spectrum.num_evals == 100
    assert spectrum.phase.phase is Phase.RANDOM_LIKE


def test_tiny_layer_gets_no_phase_and_no_alpha():
    spectrum = analyse_matrices(np.random.default_rng(3).standard_normal((5, 3)), CONFIG).spectrum
    assert spectrum.num_evals == 3
    assert spectrum.power_law.alpha is None and spectrum.power_law.reason
    assert spectrum.mp is None and spectrum.phase is None


def test_one_by_n_matrix():
    spectrum = analyse_matrices(np.random.default_rng(4).standard_normal((1, 500)), CONFIG).spectrum
    assert (spectrum.n, spectrum.m, spectrum.num_evals) == (500, 1, 1)
    assert spectrum.power_law.alpha is None


def test_rank_collapse_of_a_dead_layer():
    w = np.random.default_rng(5).standard_normal((300, 200))
    w[:, 60:] = 0.0  # 70 % dead input units
    spectrum = analyse_matrices(w, CONFIG).spectrum
    assert spectrum.phase.phase is Phase.RANK_COLLAPSE
    assert spectrum.norms.rank_loss == 140


# The fast paths of the per-layer fits must equal the library calls they replace, bit for bit (the golden file
# and the null validation pin results computed with those calls).


def _esds():
    rng = np.random.default_rng(11)
    for n in (1, 2, 3, 10, 11, 144, 577):
        yield rng.pareto(1.5, n)
        yield np.round(rng.random(n), 1)  # ties
        yield np.concatenate([np.zeros(n // 2), rng.random(n - n // 2) ** 3])  # a near-zero peak


def test_quantile_and_log_alpha_norm_equal_numpy_and_scipy_exactly():
    from scipy.special import logsumexp

    from scanner.spectra.metrics import log_alpha_norm, near_zero_tolerance, quantile_linear

    for lam in _esds():
        ordered = np.sort(lam)
        for q in (0.05, 0.5, 0.9, 0.999):
            assert quantile_linear(lam, q) == float(np.quantile(lam, q))
            assert quantile_linear(ordered, q, is_sorted=True) == float(np.quantile(lam, q))
        assert near_zero_tolerance(ordered, is_sorted=True) == near_zero_tolerance(lam)
        if (lam > 0).any():
            for alpha in (0.7, 2.3, 11.0):
                assert log_alpha_norm(lam, alpha) == float(logsumexp(alpha * np.log(lam[lam > 0])) / np.log(10.0))


def test_mp_scale_from_cached_quantiles_equals_the_direct_formula():
    from scanner.spectra import mp

    for lam in _esds():
        lam = np.sort(lam[lam > 0])
        if lam.size < 2:
            continue
        count = lam.size
        p = (np.arange(1, count + 1) - 0.5) / count
        use = (p >= mp.FIT_QUANTILES[0]) & (p <= mp.FIT_QUANTILES[1])
        if np.count_nonzero(use) < 2:
            use = np.ones(count, dtype=bool)
        theory = mp.mp_quantile(p[use], 2.0)
        direct = max(float(np.dot(theory, lam[use]) / float(np.dot(theory, theory))), np.finfo(float).tiny)
        assert mp._fit_scale(lam, 2.0) == direct


def test_small_esd_csn_argmin_equals_the_pruned_search(monkeypatch):
    from scanner.spectra import csn
    from scanner.spectra.powerlaw import fit_power_law

    rng = np.random.default_rng(5)
    cases = [rng.pareto(a, n) + 1e-3 for a in (0.8, 2.0, 4.0) for n in (30, 150, 170)]
    for method in ("robust", "reference"):
        one_pass = [fit_power_law(lam, method=method) for lam in cases]
        monkeypatch.setattr(csn, "_FULL_SCAN_ELEMENTS", 0)
        pruned = [fit_power_law(lam, method=method) for lam in cases]
        monkeypatch.undo()
        assert one_pass == pruned


def test_layer_wide_shuffle_equals_the_matrix_by_matrix_shuffle(monkeypatch):
    from scanner.spectra import randomize

    def by_matrix(batch, seed):
        rng = np.random.default_rng([seed, randomize.SHUFFLE_STREAM])
        out = np.empty((batch.shape[0], batch.shape[1] * batch.shape[2]), dtype=np.float32)
        for values, row in zip(batch.reshape(batch.shape[0], -1), out, strict=True):
            keys = rng.integers(0, 1 << 32, row.size, dtype=np.uint64) << np.uint64(32)
            keys |= np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
            keys.sort()
            np.copyto(row.view(np.uint32), keys, casting="unsafe")
        return out.reshape(batch.shape)

    rng = np.random.default_rng(2)
    for shape in ((9, 16, 16), (1, 64, 10), (5, 7, 3)):
        batch = rng.standard_normal(shape)
        np.testing.assert_array_equal(randomize.shuffled(batch, 4), by_matrix(batch, 4))
        monkeypatch.setattr(randomize, "SHUFFLE_BLOCK", 2 * shape[1] * shape[2] - 1)  # one matrix per block
        np.testing.assert_array_equal(randomize.shuffled(batch, 4), by_matrix(batch, 4))
        monkeypatch.undo()
