"""Randomization test: seeded, near-identity on i.i.d. matrices, traps from a large mean."""

from __future__ import annotations

import numpy as np
import pytest

from scanner.spectra.esd import FLOAT32_FLOOR, as_matrix_batch, eigenvalues
from scanner.spectra.mp import mp_quantile
from scanner.spectra.randomize import (
    SHUFFLE_STREAM,
    TW1_MEAN,
    analytic_null_eigenvalues,
    compare_with_randomized,
    esd_distance,
    histogram_counts,
    jensen_shannon_base2,
    null_eigenvalues,
    randomization_test,
    shuffled,
)
from scanner.spectra.synthetic import spiked_covariance

# -- known-truth checks of each step (hand-computed values, closed forms, exact boundaries) -------------------


def test_float32_shuffle_is_the_documented_key_sort():
    """Entry j goes where its key default_rng([seed, SHUFFLE_STREAM]).integers(0, 2³², n)[j] ranks."""
    assert int.from_bytes(b"zoos", "big") == SHUFFLE_STREAM
    values = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0], dtype=np.float32)
    for seed in (0, 1, 7, 123):
        keys = np.random.default_rng([seed, SHUFFLE_STREAM]).integers(0, 1 << 32, values.size, dtype=np.uint64)
        expected = values[np.argsort(keys, kind="stable")]
        np.testing.assert_array_equal(shuffled(values.reshape(1, 2, 5), seed).ravel(), expected)


def test_float32_shuffle_orders_tied_keys_by_the_entries_bits():
    """800×400 entries draw about 12 pairs of equal 32-bit keys: each pair is put in ascending order of its
    float32 bits, as a sort of (key << 32 | bits) would (np.lexsort here: key first, then bits)."""
    values = np.random.default_rng(8).standard_normal(800 * 400).astype(np.float32)
    keys = np.random.default_rng([0, SHUFFLE_STREAM]).integers(0, 1 << 32, values.size, dtype=np.uint64)
    assert np.unique(keys).size < values.size, "the case must hold tied keys"
    expected = values[np.lexsort((values.view(np.uint32), keys))]
    result = shuffled(values.reshape(1, 800, 400), 0).ravel()
    np.testing.assert_array_equal(result.view(np.uint32), expected.view(np.uint32))


def test_float64_shuffle_is_generator_shuffle_of_the_exact_values():
    values = np.array([np.pi, np.e, 1 / 3, 1e-300, -2.0, 7.0], dtype=np.float64)  # not float32-representable
    expected = values.copy()
    np.random.default_rng([5, SHUFFLE_STREAM]).shuffle(expected)
    np.testing.assert_array_equal(shuffled(values.reshape(1, 3, 2), 5, dtype=np.float64).ravel(), expected)


def test_views_are_shuffled_as_their_memory_order():
    """A transposed view is shuffled as its contiguous original, transposed back; any other view as its copy."""
    base = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)
    view = np.swapaxes(base, 1, 2)
    result = shuffled(view, 4)
    assert result.shape == (2, 3, 5)
    np.testing.assert_array_equal(result, np.swapaxes(shuffled(base, 4), 1, 2))
    strided = np.arange(2 * 8 * 3, dtype=np.float32).reshape(2, 8, 3)[:, ::2, :]
    assert not strided.flags.c_contiguous and not np.swapaxes(strided, 1, 2).flags.c_contiguous
    np.testing.assert_array_equal(shuffled(strided, 4), shuffled(np.ascontiguousarray(strided), 4))


def test_each_matrix_of_a_batch_keeps_its_own_entries():
    batch = np.arange(3 * 5 * 4, dtype=np.float32).reshape(3, 5, 4)  # 20 entries per matrix, 5 rows
    for seed in range(3):
        for original, mixed in zip(batch, shuffled(batch, seed), strict=True):
            np.testing.assert_array_equal(np.sort(mixed.ravel()), original.ravel())


def test_batches_larger_than_one_key_block_keep_every_matrix():
    """8192 matrices of 16×16 (2²¹ entries, two blocks of SHUFFLE_BLOCK = 2²⁰ keys): every matrix is a
    permutation of its own entries, the second block's included."""
    from scanner.spectra.randomize import SHUFFLE_BLOCK

    batch = np.random.default_rng(13).standard_normal((8192, 16, 16)).astype(np.float32)
    assert batch.size == 2 * SHUFFLE_BLOCK
    mixed = shuffled(batch, 2)
    np.testing.assert_array_equal(np.sort(mixed.reshape(8192, -1), axis=1), np.sort(batch.reshape(8192, -1), axis=1))
    assert not np.array_equal(mixed[-1], batch[-1])


def _two_valued(n, m, high, low):
    """An n×m matrix (n·m = 16) with half its entries ``high`` and half ``low``."""
    return np.array([high, low] * 8, dtype=np.float64).reshape(1, n, m)


def _tw_edge(n, m, scale):
    """λ⁺ + TW1_MEAN·t_TW: (1 + 1/√Q)²·s − 1.2065·(s/N)(√N + √M)(1/√N + 1/√M)^(1/3)."""
    return scale * (1 + np.sqrt(m / n)) ** 2 - 1.2065 * (scale / n) * (np.sqrt(n) + np.sqrt(m)) * (
        1 / np.sqrt(n) + 1 / np.sqrt(m)) ** (1 / 3)


@pytest.mark.parametrize("n, m", [(4, 4), (8, 2)])
def test_closed_form_null_at_the_lower_mean_boundary(n, m):
    """Entries 1.25/−0.75: mean 1/4, σ² = 1, so θ/(σ²√NM) = (1/16)·16/4 = 1/4 (certified: ≤) and every
    centred entry has a² = 1 = ¼·σ²·√16 (certified: ≤). Null: MP quantiles of s = N at (i − ½)/M, the top
    one replaced by the expected λ_max = λ⁺ + TW1_MEAN·t_TW (hand values for 4×4: 16 − 1.2065·4)."""
    null = analytic_null_eigenvalues(_two_valued(n, m, 1.25, -0.75), min_width=1, max_edge_shift=np.inf)  # the
    # law at hand sizes: two-valued entries (κ = 1) in a 4×4 matrix shift the edge by 2 t_TW (tested below)
    assert null is not None
    expected = mp_quantile((np.arange(m) + 0.5) / m, n / m, float(n))
    expected[-1] = _tw_edge(n, m, float(n))
    np.testing.assert_allclose(null, np.sort(expected), rtol=1e-12)
    if n == m == 4:
        assert null[-1] == pytest.approx(16 - 1.2065 * 4, rel=1e-12)


@pytest.mark.parametrize("n, m, high, outlier", [(4, 4, 2.0, 25.0), (8, 2, 2.0, 27.0), (4, 4, 4.0, 100.0),
                                                 (8, 2, 4.0, 108.0)])
def test_closed_form_null_at_the_upper_mean_boundary(n, m, high, outlier):
    """Entries high/0: mean μ = high/2, σ² = μ², so θ/(σ²√NM) = μ²·16/(μ²·4) = 4 = 1/CERTIFY_RATIO exactly:
    the mean's outlier (θ + Nσ²)(θ + Mσ²)/θ with θ = 16μ² (hand values: 20·20/16, 24·18/16, 80·80/64,
    96·72/64) replaces the top MP quantile."""
    null = analytic_null_eigenvalues(_two_valued(n, m, high, 0.0), min_width=1, max_edge_shift=np.inf)
    assert null is not None
    var = (high / 2) ** 2
    expected = mp_quantile((np.arange(m) + 0.5) / m, n / m, n * var)
    expected[-1] = outlier
    np.testing.assert_allclose(null, np.sort(expected), rtol=1e-12)


def test_closed_form_null_of_a_gaussian_with_a_small_mean_is_mp_plus_tw():
    """i.i.d. N(0.001, 0.3²) entries (θ/(σ²√NM) ≈ 2e-3): s = N·σ̂², MP quantiles, top = λ⁺ + TW1_MEAN·t_TW."""
    w = 0.001 + 0.3 * np.random.default_rng(8).standard_normal((512, 256))
    mean, var = w.mean(), w.var()
    assert 0 < mean**2 * np.sqrt(w.size) / var < 0.25
    null = analytic_null_eigenvalues(w[None])
    expected = mp_quantile((np.arange(256) + 0.5) / 256, 2.0, 512 * var)
    expected[-1] = _tw_edge(512, 256, 512 * var)
    np.testing.assert_allclose(null, np.sort(expected), rtol=1e-9)
    assert pytest.approx(-1.2065, abs=1e-4) == TW1_MEAN  # E[TW₁] = −1.2065… (Tracy & Widom 1996)


def _kurtosis_shift(w):
    """|κ − 3|·λ⁺/(√(NM)·t_TW) by hand: κ from numpy's moments, λ⁺ = s(1 + √(M/N))², t_TW of Johnstone (2001)."""
    n, m = w.shape
    c = w - w.mean()
    kurtosis = np.mean(c**4) / np.mean(c**2) ** 2
    scale = n * np.mean(c**2)
    t_tw = (scale / n) * (np.sqrt(n) + np.sqrt(m)) * (1 / np.sqrt(n) + 1 / np.sqrt(m)) ** (1 / 3)
    return abs(kurtosis - 3) * scale * (1 + np.sqrt(m / n)) ** 2 / np.sqrt(n * m) / t_tw


def _pruned(fraction_kept, n=1000, m=500, seed=0):
    """A Gaussian layer with all but its ``fraction_kept`` largest-magnitude entries set to 0."""
    w = np.random.default_rng(seed).standard_normal((n, m))
    return np.where(np.abs(w) >= np.quantile(np.abs(w), 1 - fraction_kept), w, 0.0)


def _sparse_signs(density, n=1000, m=500, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, m)) < density) * np.sign(rng.standard_normal((n, m)))


def test_edge_shift_is_the_kurtosis_shift_in_tw_scales():
    from scanner.spectra.randomize import edge_shift_tw

    rng = np.random.default_rng(14)
    for w in (rng.standard_normal((512, 256)), rng.uniform(-1, 1, (1000, 500)), _pruned(0.02), _sparse_signs(0.05)):
        assert edge_shift_tw(w, float(w.mean()), float(w.var())) == pytest.approx(_kurtosis_shift(w), rel=1e-9)
    assert _kurtosis_shift(_pruned(0.02)) > 7 and _kurtosis_shift(rng.uniform(-1, 1, (1000, 500))) < 0.3
    w = _pruned(0.1, n=700, m=300).astype(np.float32)  # blocks of the pass: a part-block at the end; memory order
    for layout in (w, np.asfortranarray(w), w.T.copy().T):
        assert edge_shift_tw(layout, float(w.mean()), float(w.var())) == pytest.approx(_kurtosis_shift(
            w.astype(np.float64)), rel=1e-6)


@pytest.mark.parametrize("make, certified", [
    (lambda: np.random.default_rng(15).standard_normal((1000, 500)), True),  # κ = 3: no shift
    (lambda: np.random.default_rng(15).uniform(-1, 1, (1000, 500)), True),  # κ = 1.8: 0.22 t_TW
    (lambda: np.random.default_rng(15).laplace(size=(1000, 500)), True),  # κ = 6: 0.54 t_TW
    (lambda: _pruned(0.5), True),  # κ ≈ 3.5: half the entries pruned
    (lambda: _pruned(0.1), False),  # κ ≈ 11.6: 1.5 t_TW
    (lambda: _pruned(0.02), False),  # κ ≈ 53: 8 t_TW, traps in the exact null
    (lambda: _sparse_signs(0.01), False),  # κ ≈ 100: every entry passes the single-entry test
])
def test_sparse_and_pruned_layers_are_not_certified(make, certified):
    """Every entry of these passes the single-entry test, but a sparse matrix's shuffled edge moves beyond the MP
    law by |κ − 3|·λ⁺/√(NM): certified only within ``MAX_EDGE_SHIFT_TW`` (1 t_TW)."""
    from scanner.spectra.randomize import MAX_EDGE_SHIFT_TW

    w = make()
    c = w - w.mean()
    assert np.max(c**2) <= 0.25 * np.var(w) * np.sqrt(w.size)  # the single-entry test passes
    assert (_kurtosis_shift(w) <= MAX_EDGE_SHIFT_TW) == certified
    assert (analytic_null_eigenvalues(w[None]) is not None) == certified
    assert analytic_null_eigenvalues(w[None], max_edge_shift=np.inf) is not None


def test_a_pruned_layer_gets_the_traps_of_its_shuffle():
    """98 % magnitude pruning of a 1000×500 Gaussian layer: the shuffled copies have eigenvalues beyond the MP
    edge (traps) that the MP law does not; ``null="auto"`` therefore shuffles it, as ``"exact"`` does."""
    from scanner.spectra.esd import batch_eigenvalues
    from scanner.spectra.randomize import compare_with_randomized, shuffled_eigenvalues

    batch = as_matrix_batch(_pruned(0.02).astype(np.float32))
    evals = batch_eigenvalues(batch)
    traps = [compare_with_randomized(evals, shuffled_eigenvalues(batch, seed), n=1000, m=500, seed=seed).n_traps
             for seed in range(3)]
    law = analytic_null_eigenvalues(batch, max_edge_shift=np.inf)
    assert max(traps) >= 1 and compare_with_randomized(evals, law, n=1000, m=500, seed=0).n_traps == 0
    np.testing.assert_array_equal(null_eigenvalues(batch, 1, null="auto"), shuffled_eigenvalues(batch, 1))


def _spiked_entry(ratio, sign, mean=2.0):
    """N(mean, 1) 512×256 entries plus one entry mean ± a with a² = ratio·σ̂²·√NM (checked on the sample)."""
    w = mean + np.random.default_rng(9).standard_normal((512, 256))
    w[3, 5] = mean + sign * np.sqrt(ratio * np.sqrt(w.size))
    centred = w[3, 5] - w.mean()
    actual = centred**2 / (w.var() * np.sqrt(w.size))
    assert actual == pytest.approx(ratio, rel=0.02)
    return w[None]


@pytest.mark.parametrize("ratio, sign, certified", [(0.15, 1, True), (0.15, -1, True), (0.35, 1, False),
                                                    (0.35, -1, False)])
def test_entry_certificate_is_a_squared_at_most_a_quarter_of_sigma2_root_nm(ratio, sign, certified):
    """The certificate reads the centred entry a = w − mean, positive or negative, against ¼·σ²√(NM)."""
    assert (analytic_null_eigenvalues(_spiked_entry(ratio, sign)) is not None) == certified


@pytest.mark.parametrize("relative_var, certified", [(1.5e-12, True), (0.5e-12, False)])
def test_variance_below_1e_12_of_the_mean_square_is_round_off(relative_var, certified):
    """var ≤ 1e-12·Σw²/NM means the mean swamps the spread: no closed form (constant matrices included)."""
    eps = np.sqrt(relative_var)
    w = 1.0 + eps * np.random.default_rng(10).standard_normal((512, 256))
    size = w.size
    mean = float(np.sum(w, dtype=np.float64)) / size
    var = float(np.sum(w * w)) / size - mean * mean
    assert var / (float(np.sum(w * w)) / size) == pytest.approx(relative_var, rel=0.1)
    assert (analytic_null_eigenvalues(w[None]) is not None) == certified
    assert analytic_null_eigenvalues(np.full((1, 512, 256), 0.5)) is None  # σ² = 0 exactly


def test_exact_null_shuffles_and_auto_null_uses_the_closed_form_where_certified():
    from scanner.spectra.randomize import shuffled_eigenvalues

    batch = as_matrix_batch(np.random.default_rng(12).standard_normal((512, 256)))
    assert analytic_null_eigenvalues(batch) is not None
    np.testing.assert_array_equal(null_eigenvalues(batch, 3, null="exact"), shuffled_eigenvalues(batch, 3))
    np.testing.assert_array_equal(null_eigenvalues(batch, 3, null="auto"), analytic_null_eigenvalues(batch))
    np.testing.assert_array_equal(null_eigenvalues(batch, 3), shuffled_eigenvalues(batch, 3))  # default: exact


def test_matrices_narrower_than_the_width_limit_get_the_exact_null():
    """Below ``CLOSED_FORM_MIN_WIDTH`` columns the smooth law misses the sampling noise that the 64-bin
    histogram of a few hundred eigenvalues sees (module docstring), and the shuffle is cheap: exact null."""
    from scanner.spectra.randomize import CLOSED_FORM_MIN_WIDTH, shuffled_eigenvalues

    rng = np.random.default_rng(13)
    narrow = as_matrix_batch(rng.standard_normal((2 * CLOSED_FORM_MIN_WIDTH, CLOSED_FORM_MIN_WIDTH - 1)))
    wide = as_matrix_batch(rng.standard_normal((2 * CLOSED_FORM_MIN_WIDTH, CLOSED_FORM_MIN_WIDTH)))
    assert analytic_null_eigenvalues(narrow) is None
    assert analytic_null_eigenvalues(narrow, min_width=1) is not None  # certified: only the width decides
    np.testing.assert_array_equal(null_eigenvalues(narrow, 3, null="auto"), shuffled_eigenvalues(narrow, 3))
    assert analytic_null_eigenvalues(wide) is not None
    assert CLOSED_FORM_MIN_WIDTH == 256  # the validated limit (bench/results/null_validation.md)


def test_pooled_matrices_take_interleaved_plotting_positions():
    """k = 3 copies of one certified matrix: the pooled null is the MP quantiles at the 3·M plotting
    positions (l + ½)/(3M), each copy's top one (l = 3M − 3 + j) replaced by λ⁺ + TW1_MEAN·t_TW — not three
    copies of the M quantiles at (i + ½)/M."""
    n, m, k = 512, 256, 3
    w = np.random.default_rng(14).standard_normal((n, m))
    var = w.var()
    null = analytic_null_eigenvalues(np.stack([w] * k))
    pooled = mp_quantile((np.arange(k * m) + 0.5) / (k * m), n / m, n * var)
    pooled[-k:] = _tw_edge(n, m, n * var)  # slice j's top position is (m − 1 + (j + ½)/k)/m
    np.testing.assert_allclose(null, np.sort(pooled), rtol=1e-9)
    single = analytic_null_eigenvalues(w[None])
    assert len(np.unique(np.round(null[:-k], 12))) == k * m - k  # no point repeated, unlike k copies
    np.testing.assert_allclose(single[:-1], mp_quantile((np.arange(m) + 0.5) / m, n / m, n * var)[:-1], rtol=1e-9)


def test_sum_squares_argument_is_the_trace():
    w = np.random.default_rng(11).standard_normal((1, 512, 256))
    np.testing.assert_array_equal(analytic_null_eigenvalues(w, np.array([np.sum(w[0] ** 2)])),
                                  analytic_null_eigenvalues(w))


def _js(p, q):
    """Jensen–Shannon distance, base 2, of two probability vectors (hand formula)."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    mid = (p + q) / 2

    def kl(a):
        return sum(x * np.log2(x / y) for x, y in zip(a, mid, strict=True) if x > 0)

    return np.sqrt((kl(p) + kl(q)) / 2)


@pytest.mark.parametrize("unit", [1.0, 1e-3])
def test_distance_uses_64_bins_of_log10_lambda(unit):
    """Over log10 ∈ [0, 2] the bins are 1/32 wide: 10^0.031 shares bin 0 with 1, 10^0.0316 is in bin 1."""
    same_bin = np.array([1.0, 10**0.031, 100.0]) * unit
    next_bin = np.array([1.0, 10**0.0316, 100.0]) * unit
    reference = np.array([1.0, 1.0, 100.0]) * unit
    assert esd_distance(same_bin, reference) == 0.0
    expected = _js([1 / 3, 1 / 3, 1 / 3], [2 / 3, 0, 1 / 3])  # bins 0, 1, 63
    assert esd_distance(next_bin, reference) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.45554, abs=1e-5)


def test_distance_grid_spans_both_esds_and_cuts_at_the_floor():
    """[10, 100] vs [100, 1000]: log range [1, 3], bins 0, 32 vs 32, 63 → JS = √½; eigenvalues at or below
    ``floor`` (here 1.0) are left out, as are near-zero ones (≤ 1e-6 × the 90th percentile)."""
    assert esd_distance(np.array([10.0, 100.0]), np.array([100.0, 1000.0])) == pytest.approx(np.sqrt(0.5))
    assert esd_distance(np.array([1.0, 10.0, 100.0]), np.array([1.0, 100.0, 1000.0]), floor=1.0) == \
        pytest.approx(np.sqrt(0.5), rel=1e-12)
    with_round_off = np.array([1e-18, 1.0, 10**0.0316, 100.0])
    assert esd_distance(with_round_off, np.array([1.0, 1.0, 100.0])) == pytest.approx(
        _js([1 / 3, 1 / 3, 1 / 3], [2 / 3, 0, 1 / 3]), rel=1e-12)
    # log range [−1, 0]: the grid may straddle λ = 1 (bins 0, 63 vs 0, 0)
    assert esd_distance(np.array([0.1, 1.0]), np.array([0.1, 0.1])) == pytest.approx(
        _js([0.5, 0.5], [1.0, 0.0]), rel=1e-12)


def test_distance_edge_cases():
    assert esd_distance(np.array([5.0]), np.array([5.0])) == 0.0  # one point each, same place
    assert esd_distance(np.array([1e-3]), np.array([1.0, 2.0]), floor=0.5) == 1.0  # nothing left of one ESD
    assert esd_distance(np.array([1.0, 2.0]), np.array([1e-3]), floor=0.5) == 1.0
    # disjoint point masses are resolved down to a log range of 1e-12 decades
    assert esd_distance(np.array([1.0]), np.array([10 ** 1.5e-12])) == pytest.approx(1.0)


def test_comparison_reads_the_largest_shuffled_eigenvalue_and_its_ratio():
    rand = np.array([4.0, 1.0, 10.0, 2.0, 3.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    result = compare_with_randomized(np.linspace(1.0, 20.0, 10), rand, n=40, m=10, seed=3)
    assert result.lambda_max_rand == 10.0 and result.softrank == 0.5 and result.seed == 3
    half = compare_with_randomized(np.array([0.1, 0.5]), rand, n=40, m=10, seed=3)
    assert half.softrank == 20.0  # λ_max = 0.5 < 1 still divides
    assert compare_with_randomized(np.zeros(10), rand, n=40, m=10, seed=3).softrank == 0.0


def test_traps_need_four_eigenvalues_above_the_float32_floor():
    """[f, 1, 2, 50] with f = FLOAT32_FLOOR·50 exactly: f is not above the floor, 3 values remain, no fit
    (0 traps); [1, 2, 3, 50]: the fit runs and 50 is a trap."""
    evals = np.linspace(1.0, 50.0, 4)
    floor = FLOAT32_FLOOR * 50.0
    assert compare_with_randomized(evals, np.array([floor, 1.0, 2.0, 50.0]), n=4, m=4, seed=0).n_traps == 0
    assert compare_with_randomized(evals, np.array([1e-9, 1.0, 2.0, 50.0]), n=4, m=4, seed=0).n_traps == 0
    assert compare_with_randomized(evals, np.array([1.0, 2.0, 3.0, 50.0]), n=4, m=4, seed=0).n_traps == 1


def test_float32_round_off_eigenvalues_change_nothing():
    """Eigenvalues below FLOAT32_FLOOR·λ_max,rand (here 5e-6·λ_max, above the near-zero cut) are float32
    round-off: adding 60 of them to the shuffled ESD changes neither the traps nor the distance."""
    w = np.random.default_rng(1).standard_normal((1600, 400)) * 100
    evals = eigenvalues(w)
    polluted = np.concatenate([evals, np.full(60, 5e-6 * evals[-1])])
    clean = compare_with_randomized(evals, evals, n=1600, m=400, seed=0)
    assert compare_with_randomized(evals, polluted, n=1600, m=400, seed=0) == clean
    assert clean.n_traps == 0 and clean.rand_distance == 0.0


def test_a_mean_above_its_transition_is_a_trap_of_a_tall_matrix():
    """4096×256 (Q = 16), mean 0.05σ: θ/(σ²√NM) = 0.0025·1024 = 2.6 > 1, so the shuffled matrix has one
    outlier above its MP edge; the comparison must use the batch's own N and M."""
    w = np.random.default_rng(0).standard_normal((4096, 256)) + 0.05
    result = randomization_test(w, eigenvalues(w), null="exact")
    assert result.n_traps == 1
    assert result.seed == 0  # the default seed, recorded


# -- behaviour on realistic matrices -------------------------------------------------------------------

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


# -- fast paths pinned to the library computations they replace, bit for bit ----------------------------------


def test_histogram_counts_equal_numpy_histogram_exactly():
    """Random log-ESDs, ties, values on the edges and outside them: the same counts as np.histogram."""
    rng = np.random.default_rng(11)
    for trial in range(600):
        n = int(rng.integers(1, 700))
        values = np.log10(rng.pareto(rng.uniform(0.5, 4.0), n) + 1e-3)
        if trial % 3 == 0:
            values = np.round(values, 1)  # ties
        lo, hi = float(values.min()), float(values.max())
        if trial % 5 == 0:
            lo += 0.1 * (hi - lo)  # values below the first edge are not counted
        if hi - lo < 1e-12:
            continue
        edges = np.linspace(lo, hi, 65)
        if trial % 7 == 0:
            values = np.concatenate([values, edges[::3], edges[-1:]])  # exactly on edges, the last one included
        expected = np.histogram(values, bins=edges)[0].astype(np.float64)
        got = histogram_counts(values, edges)
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(histogram_counts(np.array([0.0, 0.5, 1.0, 1.0, 2.0]), np.array([0.0, 0.5, 1.0])),
                                  [1.0, 3.0])


def test_jensen_shannon_base2_equals_scipy_exactly():
    """Histograms with empty bins on either side, disjoint and identical ones: scipy's value, bit for bit."""
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(12)
    for _ in range(600):
        n = int(rng.integers(2, 130))
        a, b = rng.standard_normal(n) ** 2, rng.random(n)
        a[rng.random(n) < 0.3] = 0.0
        b[rng.random(n) < 0.3] = 0.0
        if a.sum() == 0.0 or b.sum() == 0.0:
            continue
        p, q = a / a.sum(), b / b.sum()
        assert jensen_shannon_base2(p, q).hex() == float(jensenshannon(p, q, base=2.0)).hex()
    assert jensen_shannon_base2(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == 1.0
    assert jensen_shannon_base2(np.array([0.25, 0.75]), np.array([0.25, 0.75])) == 0.0


def test_closed_form_null_with_known_extremes_equals_the_one_that_finds_them():
    """``extremes`` from ``esd.validated_batch`` only save passes: the same null (or None), bit for bit, on
    certified Gaussian batches (with and without a mean) and on uncertified heavy-tailed ones."""
    from scanner.spectra.esd import validated_batch

    rng = np.random.default_rng(21)
    outcomes = set()
    for trial in range(24):
        shape = (int(rng.integers(1, 4)), int(rng.integers(150, 300)), int(rng.integers(40, 80)))
        w = rng.standard_normal(shape) if trial % 2 else rng.standard_t(2.0, shape)
        w = (w + (0.0, 0.05, 3.0)[trial % 3]).astype(np.float32 if trial % 4 < 2 else np.float64)
        checked = validated_batch(w)
        squares = np.array([np.sum(np.square(m, dtype=np.float64)) for m in checked.values])
        plain = analytic_null_eigenvalues(checked.values, squares, min_width=1)
        fast = analytic_null_eigenvalues(checked.values, squares, (checked.highs, checked.lows), min_width=1)
        outcomes.add(plain is None)
        if plain is None:
            assert fast is None
        else:
            assert fast is not None and fast.tobytes() == plain.tobytes()
    assert outcomes == {True, False}  # both branches were exercised
