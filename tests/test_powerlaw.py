"""Power-law (CSN) fit: reference mode against weightwatcher 0.7.7, the ``powerlaw`` package and a brute-force
CSN scan as oracles, known-truth Pareto samples and matrices, invariances, fingers and degenerate inputs."""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import logging
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.errors import ConfigError, FitError
from scanner.spectra.powerlaw import fit_power_law

HAVE_WW = importlib.util.find_spec("weightwatcher") is not None
HAVE_POWERLAW = importlib.util.find_spec("powerlaw") is not None


# ------------------------------------------------------------------------------------------------ generators


def anchor_matrix(kind: str, mu: float = 0.0, shape: tuple[int, int] = (1000, 500), seed: int = 42) -> np.ndarray:
    """numpy default_rng(seed); cast to float32 as an nn.Linear weight (docs/decisions.md, "Synthetic heavy-tailed
    matrices")."""
    r = np.random.default_rng(seed)
    if kind == "gauss":
        w = r.standard_normal(shape)
    elif kind == "student_t":
        w = r.standard_t(3, shape)
    else:
        sign = r.choice([-1, 1], size=shape)
        w = sign * (r.pareto(mu, shape) + 1)
    return w.astype(np.float32)


def evals_of(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of WᵀW the way weightwatcher gets them: float64 SVD of the float32 weight."""
    return np.linalg.svd(w.astype(np.float64), compute_uv=False) ** 2


def pareto_sample(alpha: float, n: int, seed: int) -> np.ndarray:
    """Classical Pareto with x_m = 1 and density ∝ x^(−α): numpy's Lomax(α − 1) + 1."""
    return np.random.default_rng(seed).pareto(alpha - 1.0, n) + 1.0


def csn_brute_force(x: np.ndarray, min_tail: int) -> tuple[float, float, float]:
    """The CSN scan written plainly, one candidate at a time: (xmin, α, D) of the first KS minimum."""
    x = np.sort(x)
    best = (np.inf, np.nan, np.nan)
    for xmin in np.unique(x)[:-1]:
        tail = x[x >= xmin]
        if tail.size < min_tail:
            break
        alpha = 1.0 + tail.size / np.sum(np.log(tail / xmin))
        d = np.max(np.abs(1.0 - (tail / xmin) ** (1.0 - alpha) - np.arange(tail.size) / tail.size))
        if d < best[0]:
            best = (d, xmin, alpha)
    return best[1], best[2], best[0]


# ------------------------------------------------------------- known truth, hand values and plain oracles (fast)


def reference_brute_force(x: np.ndarray) -> tuple[float, float, float, int] | None:
    """weightwatcher 0.7.7's fit written plainly, one candidate at a time: (xmin, α, D, n_tail), or None.

    Keeps λ > 1e-5. n ≥ 20: every sorted value but the last is a candidate (duplicates too), plain MLE.
    n < 20: candidates need ≥ 8 tail points and a log-sum > 1e-12, α = 1 + (n_i − 1)/Σ ln(λ/xmin), others
    count as D = 1; without any, the whole sample (if its log-sum > 1e-12). First argmin of D."""
    x = np.sort(x[x > 1e-5])
    n = x.size
    best = (np.inf, 0.0, 0.0, 0)
    for i in range(n - 1):
        tail = x[i:]
        total = float(np.sum(np.log(tail / x[i])))
        if n >= 20:
            if total <= 0:
                continue
            alpha = 1.0 + tail.size / total
        else:
            if tail.size < 8 or total <= 1e-12:
                continue
            alpha = 1.0 + (tail.size - 1) / total
        d = float(np.max(np.abs(1.0 - (tail / x[i]) ** (1.0 - alpha) - np.arange(tail.size) / tail.size)))
        if d < best[0]:
            best = (d, x[i], alpha, tail.size)
    if best[3] == 0 and n < 20:
        total = float(np.sum(np.log(x / x[0])))
        if total <= 1e-12:
            return None
        alpha = 1.0 + (n - 1) / total
        d = float(np.max(np.abs(1.0 - (x / x[0]) ** (1.0 - alpha) - np.arange(n) / n)))
        best = (d, x[0], alpha, n)
    return (best[1], best[2], best[0], best[3]) if best[3] else None


@pytest.mark.parametrize("n", [2, 5, 9, 12, 19, 20, 21, 40])
def test_reference_mode_equals_its_plain_definition(n):
    """The reference scan (both weightwatcher branches, ties included) against the definition written plainly."""
    rng = np.random.default_rng(n)
    for x in (pareto_sample(2.5, n, n), np.round(pareto_sample(2.0, n, n + 1), 1), rng.lognormal(0, 2, n)):
        fit = fit_power_law(x, method="reference")
        expected = reference_brute_force(x)
        if expected is None:
            assert fit.alpha is None
            continue
        xmin, alpha, ks, n_tail = expected
        assert (fit.xmin, fit.n_tail) == (xmin, n_tail), x
        assert fit.alpha == pytest.approx(alpha, rel=1e-9)
        assert fit.ks_distance == pytest.approx(ks, abs=1e-12)
        assert fit.xmax == np.max(x) and fit.alpha_sigma == pytest.approx((alpha - 1) / np.sqrt(n_tail))


def test_reference_hand_values():
    # two values: small-N fallback, the whole sample: α = 1 + (2 − 1)/ln(e/1) = 2
    fit = fit_power_law(np.array([1.0, np.e]), method="reference")
    assert fit.alpha == pytest.approx(2.0, rel=1e-12) and fit.xmin == 1.0 and fit.n_tail == 2
    # no tail of 8: the whole sample, although its upper tails are flat: α = 1 + 4/(4 ln 2)
    fit = fit_power_law(np.array([1.0, 2.0, 2.0, 2.0, 2.0]), method="reference")
    assert fit.alpha == pytest.approx(1.0 + 1.0 / np.log(2.0), rel=1e-12) and fit.n_tail == 5
    assert "1 eigenvalue(s) above" in fit_power_law(np.array([0.5, 1e-6]), method="reference").reason
    # nineteen 1s and one 2 (n = 20, plain MLE): the candidate with a tail of n_i points has α = 1 + n_i/ln 2 and
    # D = max((n_i − 2)/n_i, |1/n_i − e^(−n_i)|): 1/3 at n_i = 3 beats 0.365 (n_i = 2) and 1/2 (n_i = 4)
    fit = fit_power_law(np.array([1.0] * 19 + [2.0]), method="reference")
    assert fit.n_tail == 3 and fit.xmin == 1.0 and fit.ks_distance == pytest.approx(1 / 3, rel=1e-12)
    assert fit.alpha == pytest.approx(1.0 + 3.0 / np.log(2.0), rel=1e-12)


def test_reference_mode_keeps_eigenvalues_above_1e_minus_5_strictly():
    lam = np.concatenate([[1e-6, 1e-5, 1.5e-5], pareto_sample(2.5, 27, seed=3)])
    fit = fit_power_law(lam, method="reference")
    assert "only 28 eigenvalues fitted" in fit.reason  # 1.5e-5 and the 27, not 1e-5


def test_reference_flat_tails_give_no_alpha():
    fit = fit_power_law(np.full(30, 3.7), method="reference")  # n ≥ 20: α = ∞, D_i = 1 − 1/n_i: n_i = 2 wins
    assert fit.alpha is None and fit.n_tail == 2 and "placeholder" in fit.reason
    fit = fit_power_law(np.full(10, 3.7), method="reference")  # n < 20: no log-sum above 1e-12
    assert fit.alpha is None and fit.n_tail == 0 and "placeholder" in fit.reason


def test_reference_small_n_log_sum_threshold_is_1e_minus_12():
    """Ten values with log-sums 1.5e-12 (nine equal ones and one e^(1.5e-12) above): above the 1e-12 floor,
    so a fit (of a huge, unreliable α); at 0.5e-12 there is none."""
    for gap, fitted in ((1.5e-12, True), (0.5e-12, False)):
        x = np.concatenate([np.ones(9), [np.exp(gap)]])
        fit = fit_power_law(x, method="reference")
        assert (fit.alpha is not None) == fitted, gap


def test_robust_hand_values_and_the_numerical_zero_cut():
    """cut = λ_max·N·ε₆₄ (here 1·40·2.2e-16 = 8.9e-15): an eigenvalue at the cut is dropped, one above kept."""
    rest = pareto_sample(3.0, 37, seed=4)
    rest = rest / rest.max()
    cut = 1.0 * 40 * np.finfo(np.float64).eps
    lam = np.concatenate([[cut, 2 * cut, 1e-15], rest])
    fit = fit_power_law(lam, min_tail=5)
    assert "only 38 eigenvalues fitted" in fit.reason
    second = np.concatenate([[0.1, 1.0], np.full(30, 5e-15), np.linspace(0.2, 0.3, 8)])  # λ₂ = 0.3 ≠ λ_max
    assert "only 10 eigenvalues" in fit_power_law(second, min_tail=5).reason  # 5e-15 < 1·40·ε = 8.9e-15
    exact = np.geomspace(1.0, 100.0, 10)  # x.size = min_tail: one candidate, the whole sample
    fit = fit_power_law(exact)
    assert fit.xmin == 1.0 and fit.n_tail == 10
    assert fit.alpha == pytest.approx(1.0 + 10 / np.sum(np.log(exact)), rel=1e-12)


@pytest.mark.parametrize("evals, words", [
    (np.array([]), "no eigenvalues"),
    (np.zeros(20), "all eigenvalues are zero"),
    (np.concatenate([np.zeros(20), [5.0]]), "only 1 eigenvalues above"),
    (np.array([4.0]), "only 1 eigenvalues above"),
])
def test_robust_degenerate_reasons(evals, words):
    fit = fit_power_law(evals)
    assert fit.alpha is None and words in fit.reason and not fit.reliable and fit.n_tail == 0


def test_argument_checks_accept_the_documented_ranges():
    x = pareto_sample(2.5, 60, seed=2)
    assert fit_power_law(x, min_tail=2, max_fingers=0).alpha is not None
    for bad in ({"min_tail": 1}, {"min_tail": "3"}, {"max_fingers": -1}, {"max_fingers": 1.5}):
        with pytest.raises(ConfigError):
            fit_power_law(x, **bad)
    defaults = inspect.signature(fit_power_law).parameters
    assert defaults["min_tail"].default == 10  # WW's min_evals is 8–10
    assert defaults["max_fingers"].default == 10  # FINGER_P_VALUE × 10 ≤ 1e-3 family-wise


def _tail_fit(**kw):
    from scanner.spectra.powerlaw import _TailFit

    return _TailFit(**{"start": 0, "alpha": 3.0, "ks": 0.0, "n_tail": 100, **kw})


def test_doubts_at_their_boundaries():
    from scanner.spectra.powerlaw import _doubts

    assert _doubts(_tail_fit(alpha=8.0), 10) == []
    assert "α=8.01 > 8" in _doubts(_tail_fit(alpha=8.01), 10)[0]
    assert _doubts(_tail_fit(n_tail=10), 10) == [] or all("min_tail" not in r for r in _doubts(_tail_fit(n_tail=10), 10))
    assert "shorter than min_tail=10" in _doubts(_tail_fit(n_tail=9), 10)[0]
    # KS bar = max(1.949/√n, 0.1): n = 100 → 0.1949 (D at the bar passes), n = 1000 → 0.1
    assert _doubts(_tail_fit(ks=1.949 / 10.0), 10) == []
    assert "KS distance" in _doubts(_tail_fit(ks=0.196), 10)[0]
    assert _doubts(_tail_fit(ks=0.099, n_tail=1000), 10) == []
    assert "KS distance" in _doubts(_tail_fit(ks=0.101, n_tail=1000), 10)[0]


def test_record_fields_and_the_50_eigenvalue_floor():
    from scanner.spectra.powerlaw import _record

    x = np.geomspace(1.0, 50.0, 50)
    rec = _record(x, _tail_fit(start=10, n_tail=40, alpha=3.0, ks=0.05), "robust", 10)
    assert rec.reliable and rec.reason == "" and rec.n_fingers == 0 and rec.alpha_raw == 3.0
    assert (rec.xmin, rec.xmax) == (x[10], 50.0) and rec.alpha_sigma == pytest.approx(2.0 / np.sqrt(40))
    assert _record(x[:48], _tail_fit(n_tail=40), "robust", 10, n_fingers=2, alpha_raw=4.0).reliable  # 48 + 2
    flagged = _record(x[:49], _tail_fit(n_tail=40, alpha=9.0), "robust", 10, alpha_raw=9.5)
    assert not flagged.reliable and flagged.reason.startswith("only 49 eigenvalues") and flagged.alpha_raw == 9.5


def _tail_with_spacings(spacings):
    """Sorted ascending values whose descending scaled log-spacings T_j = j·ln(λ_(j)/λ_(j+1)) are ``spacings``."""
    logs = np.concatenate([[0.0], np.cumsum((np.asarray(spacings) / np.arange(1, len(spacings) + 1))[::-1])])
    return np.exp(logs)


def test_fingers_that_move_alpha_by_3_sigma_are_set_aside():
    """Eight fingers at 20–30× the top of a Pareto(3) sample: removing them raises α by
    (α_clipped − α_raw)·√n/(α_raw − 1) ≈ 3.3 σ_α, under the 5 σ limit, so the clipped fit is reported."""
    x = pareto_sample(3.0, 1000, seed=5)
    fingered = np.concatenate([x, x.max() * 20.0 * np.linspace(1.0, 1.5, 8)])
    fit = fit_power_law(fingered)
    assert fit.n_fingers == 8 and fit.alpha == pytest.approx(fit_power_law(x).alpha, abs=1e-12)
    rise = (fit.alpha - fit.alpha_raw) * np.sqrt(fit.n_tail + 8) / (fit.alpha_raw - 1)
    assert 3.0 < rise < 3.5

def _rise(fit, n_fingers):
    """(α_clipped − α_raw)·√n_raw/(α_raw − 1): how far removing the fingers moves α, in σ_α of the raw fit."""
    from scanner.spectra.powerlaw import _count_fingers, _csn_robust

    x = np.sort(fit)
    raw = _csn_robust(x, 10)
    assert _count_fingers(x, raw, 10, 10) == n_fingers
    clipped = _csn_robust(x[:-n_fingers], 10)
    return (clipped.alpha - raw.alpha) * np.sqrt(raw.n_tail) / (raw.alpha - 1), clipped


def test_fingers_that_would_move_alpha_by_more_than_5_sigma_are_kept():
    """Ten fingers at 100–150× the top of a Pareto(3) sample pass the gap test, but removing them would move α
    by 5.1 σ_α (> 5): the top of the tail counts as genuinely heavier, no finger is set aside."""
    x = pareto_sample(3.0, 1000, seed=5)
    fingered = np.concatenate([x, x.max() * 100.0 * np.linspace(1.0, 1.5, 10)])
    rise, _ = _rise(fingered, 10)
    assert 5.0 < rise < 5.5
    fit = fit_power_law(fingered)
    assert fit.n_fingers == 0 and fit.alpha == fit.alpha_raw


def test_fingers_are_kept_when_the_fit_without_them_is_not_heavy_tailed():
    """Three fingers on a Pareto(9) sample: significant gap and a small rise (1.3 σ), but the clipped fit has
    α ≈ 9.1 > 8 (not heavy-tailed), so it is not reported."""
    x = pareto_sample(9.0, 2000, seed=1)
    fingered = np.concatenate([x, x.max() * 5.0 * np.linspace(1.0, 1.2, 3)])
    rise, clipped = _rise(fingered, 3)
    assert rise < 5.0 and clipped.alpha > 8.0
    assert fit_power_law(fingered).n_fingers == 0

@pytest.mark.parametrize("big, fingers", [(-np.log(0.5e-4), 1), (-np.log(1.5e-4), 0)])
def test_finger_count_uses_p_below_1e_minus_4(big, fingers):
    """T_1 = −ln p with all other T_j = 1: p = exp(−T_1/1) is the finger's p-value."""
    from scanner.spectra.powerlaw import _count_fingers

    x = _tail_with_spacings([big] + [1.0] * 30)
    assert _count_fingers(x, _tail_fit(n_tail=x.size), 10, 10) == fingers


def test_finger_count_takes_the_largest_significant_k_and_the_body_below_it():
    from scanner.spectra.powerlaw import _count_fingers

    spacings = [1.0, 1.0, 12.0, 1.0, 1.0] + [1.0] * 30  # T_3 stands out: 3 fingers
    x = _tail_with_spacings(spacings)
    assert _count_fingers(x, _tail_fit(n_tail=x.size), 10, 10) == 3
    assert _count_fingers(x, _tail_fit(n_tail=x.size), 10, 2) == 0  # max_fingers = 2 cannot reach it
    both = _tail_with_spacings([12.0, 1.0, 1.0, 12.0] + [1.0] * 30)
    assert _count_fingers(both, _tail_fit(n_tail=both.size), 10, 10) == 4  # the largest k
    # the tail starts at raw.start: values below it are not part of the test
    padded = np.concatenate([np.linspace(0.1, 0.5, 5), x])
    assert _count_fingers(padded, _tail_fit(start=5, n_tail=x.size), 10, 10) == 3
    # k_max = min(max_fingers, spacings − min_tail): 1 here, and one significant finger is found
    short = _tail_with_spacings([12.0] + [1.0] * 10)
    assert _count_fingers(short, _tail_fit(n_tail=short.size), 10, 10) == 1
    assert _count_fingers(short, _tail_fit(n_tail=short.size), 11, 10) == 0  # k_max = 0


# ----------------------------------------------------------------------------------- reference: anchor table

# weightwatcher 0.7.7 default α (D, xmin, tail n) on the seeded 1000×500 matrices, measured by running it
# (docs/decisions.md, "Synthetic heavy-tailed matrices").
ANCHOR = [
    ("gauss", 0.0, 15.9495, 0.1128, 22),
    ("student_t", 0.0, 5.6900, 0.0409, 47),
    ("pareto", 3.0, 8.4047, 0.0505, 26),
    ("pareto", 2.0, 2.5634, 0.0536, 172),
    ("pareto", 1.0, 1.5024, 0.0528, 168),
]


@pytest.mark.parametrize(("kind", "mu", "alpha", "ks", "n_tail"), ANCHOR)
def test_reference_mode_reproduces_anchor_table(kind, mu, alpha, ks, n_tail):
    fit = fit_power_law(evals_of(anchor_matrix(kind, mu)), method="reference")
    assert round(fit.alpha, 4) == alpha
    assert round(fit.ks_distance, 4) == ks
    assert fit.n_tail == n_tail
    assert fit.method == "reference"


def test_reference_anchor_scaled_gaussian_gives_same_alpha():
    """Same Gaussian ÷ √1000: weightwatcher 0.7.7 gives α 15.9495, xmin 2.4551 (xmin 2455.1 unscaled)."""
    fit = fit_power_law(evals_of(anchor_matrix("gauss")) / 1000.0, method="reference")
    assert round(fit.alpha, 4) == 15.9495
    assert round(fit.xmin, 4) == 2.4551


# ------------------------------------------------------------------------------ reference: weightwatcher itself


def _ww_alpha(w: np.ndarray) -> float:
    import torch
    import weightwatcher as ww

    layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        details = ww.WeightWatcher(model=layer).analyze()
    assert len(details) == 1
    return float(details["alpha"].iloc[0])


WW_CASES = [
    pytest.param(anchor_matrix("gauss"), id="gauss-1000x500"),
    pytest.param(anchor_matrix("student_t", shape=(300, 120), seed=1), id="t3-300x120"),
    pytest.param(anchor_matrix("pareto", 1.5, shape=(256, 64), seed=2), id="pareto1.5-256x64"),
    pytest.param(anchor_matrix("gauss", shape=(90, 40), seed=3), id="gauss-90x40"),
    pytest.param(anchor_matrix("student_t", shape=(60, 12), seed=4), id="t3-60x12-smallN"),
    pytest.param(anchor_matrix("pareto", 2.0, shape=(40, 17), seed=5), id="pareto2-40x17-smallN"),
    pytest.param((anchor_matrix("student_t") * np.float32(3e-5)), id="t3-scaled3e-5-smallN-fallback"),
]


@pytest.mark.reference
@pytest.mark.skipif(not HAVE_WW, reason="weightwatcher is not installed (pip install -e '.[reference]')")
@pytest.mark.parametrize("w", WW_CASES)
def test_reference_mode_matches_weightwatcher_analyze(w):
    expected = _ww_alpha(w)
    fit = fit_power_law(evals_of(w), method="reference")
    assert fit.alpha == pytest.approx(expected, rel=1e-6)


@pytest.mark.reference
@pytest.mark.skipif(not HAVE_WW, reason="weightwatcher is not installed (pip install -e '.[reference]')")
def test_reference_mode_matches_wwfit_on_random_samples_with_ties():
    """The pruned KS argmin must pick weightwatcher's xmin exactly, also on ties and in the small-N branch."""
    from weightwatcher.WW_powerlaw import WWFit

    rng = np.random.default_rng(7)
    for trial in range(60):
        n = int(rng.integers(3, 400))
        kind = trial % 4
        if kind == 0:
            x = pareto_sample(rng.uniform(1.5, 5.0), n, trial)
        elif kind == 1:
            x = rng.lognormal(0.0, 2.0, n)
        elif kind == 2:
            x = np.round(pareto_sample(2.0, n, trial), 1)  # many ties
        else:
            x = rng.chisquare(3, n)
        with contextlib.redirect_stdout(io.StringIO()):
            expected = WWFit(x[x > 1e-5])
        fit = fit_power_law(x, method="reference")
        assert fit.alpha == pytest.approx(expected.alpha, rel=1e-9), (trial, n)
        assert fit.xmin == expected.xmin


# --------------------------------------------------------------------------------------- robust: CSN oracles


@pytest.mark.parametrize("seed", range(6))
def test_robust_scan_equals_brute_force_csn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(30, 600))
    x = [pareto_sample(2.5, n, seed), rng.lognormal(0, 1.5, n), np.round(rng.exponential(1.0, n), 2) + 0.01][seed % 3]
    fit = fit_power_law(x, min_tail=5, max_fingers=0)
    xmin, alpha, ks = csn_brute_force(x, min_tail=5)
    assert fit.xmin == xmin
    assert fit.alpha == pytest.approx(alpha, rel=1e-9)
    assert fit.ks_distance == pytest.approx(ks, abs=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_pruned_scan_is_exact_on_near_constant_spectra(seed):
    """A float64 orthogonal 200×200 layer with gain 3.7: every λ ≈ 13.69 to ~1e-14, so α − 1 reaches ~1e15 and
    multiplies the rounding of the log-space bounds past the fixed slack; the pruned scan once chose position 84
    (D 0.163) where the full scan has 123 (D 0.142). The slack now grows with α − 1."""
    from scanner.spectra.csn import ks_argmin, ks_exact, tail_alphas

    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    evals = np.linalg.eigvalsh((3.7 * q).T @ (3.7 * q))
    x = np.sort(evals[evals > 1e-5])
    log_x = np.log(x) - np.log(x)[-1]
    starts = np.arange(x.size - 1)
    alphas = tail_alphas(x, log_x, starts)
    assert starts.size * x.size > 1 << 15  # the pruned path, not the small-ESD full pass
    ks, _ = ks_exact(x, starts, alphas)
    assert ks_argmin(x, log_x, starts, alphas) == (int(np.argmin(ks)), float(np.min(ks)))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.lists(st.one_of(st.floats(1.0, 1e6), st.sampled_from([1.0, 2.0, 3.5, 10.0])), min_size=3, max_size=120)
    | st.builds(lambda a, n, seed, digits: list(np.round(pareto_sample(a, n, seed), digits)),
                st.floats(1.3, 5.0), st.integers(20, 600), st.integers(0, 10_000), st.integers(0, 6)),
    st.integers(2, 12),
)
def test_pruned_scan_reaches_the_brute_force_minimum(values, min_tail):
    """Property: on any positive data (ties included) the chosen xmin attains the minimum KS distance."""
    x = np.array(values)
    fit = fit_power_law(x, min_tail=min_tail, max_fingers=0)
    xmin, _, ks = csn_brute_force(x, min_tail)
    if np.isnan(xmin):
        assert fit.alpha is None
        return
    assert fit.ks_distance == pytest.approx(ks, abs=1e-12)
    tail = np.sort(x)[np.sort(x) >= fit.xmin]
    alpha = 1.0 + tail.size / np.sum(np.log(tail / fit.xmin))
    assert fit.alpha == pytest.approx(alpha, rel=1e-9)


def _powerlaw_fit(data: np.ndarray, **kwargs: object) -> Any:
    """powerlaw.Fit, quiet, with α allowed above 3 where the installed version bounds it."""
    import powerlaw

    params = inspect.signature(powerlaw.Fit.__init__).parameters
    if "parameter_ranges" in params:  # powerlaw 2.0 bounds α to [0, 3] by default and clips α > 3 there
        kwargs["parameter_ranges"] = {"alpha": [1.0, 100.0]}
    if "verbose" in params:
        kwargs["verbose"] = False
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return powerlaw.Fit(data, **kwargs)


@pytest.mark.reference
@pytest.mark.skipif(not HAVE_POWERLAW, reason="powerlaw is not installed (pip install -e '.[reference]')")
@pytest.mark.parametrize("alpha", [1.8, 2.5, 4.0])
def test_alpha_at_fixed_xmin_equals_powerlaw_package(alpha):
    x = pareto_sample(alpha, 800, seed=11) * np.random.default_rng(12).uniform(0.9, 1.1, 800)
    fit = fit_power_law(x)
    ref = _powerlaw_fit(x, xmin=fit.xmin)
    assert fit.alpha == pytest.approx(ref.power_law.alpha, rel=1e-9)


@pytest.mark.reference
@pytest.mark.skipif(not HAVE_POWERLAW, reason="powerlaw is not installed (pip install -e '.[reference]')")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_xmin_search_equals_powerlaw_package(seed):
    x = pareto_sample(2.5, 400, seed) * np.random.default_rng(seed + 50).lognormal(0.0, 0.3, 400)
    fit = fit_power_law(x, min_tail=2, max_fingers=0)  # powerlaw has no minimum tail and no finger rule
    ref = _powerlaw_fit(x)
    assert fit.xmin == ref.xmin
    assert fit.alpha == pytest.approx(ref.alpha, rel=1e-9)
    assert fit.ks_distance == pytest.approx(ref.D, abs=1e-9)


# ------------------------------------------------------------------------------------------ robust: known truth


@pytest.mark.parametrize("alpha", [1.5, 2.0, 2.5, 3.0, 4.0])
@pytest.mark.parametrize("seed", [100, 101])
def test_pareto_samples_recover_alpha_within_four_standard_errors(alpha, seed):
    fit = fit_power_law(pareto_sample(alpha, 3000, seed))
    assert fit.reliable, fit.reason
    assert fit.n_fingers == 0
    assert abs(fit.alpha - alpha) <= 4.0 * fit.alpha_sigma


@pytest.mark.parametrize(("mu", "tolerance"), [(0.8, 0.1), (1.0, 0.1), (1.5, 0.15)])
def test_symmetric_pareto_matrix_gives_mu_over_two_plus_one(mu, tolerance):
    """α = μ/2 + 1 for μ < 2 (docs/decisions.md, "α ranges"); the finite-size bias grows as μ → 2."""
    alphas = [fit_power_law(evals_of(anchor_matrix("pareto", mu, shape=(600, 300), seed=s))).alpha for s in range(3)]
    assert np.mean(alphas) == pytest.approx(mu / 2 + 1, abs=tolerance)


# ------------------------------------------------------------------------------------------------ invariances


@pytest.mark.parametrize("scale", [1e-8, 1e-3, 0.37, 1e3, 1e8])
def test_robust_alpha_is_scale_invariant(scale):
    lam = evals_of(anchor_matrix("student_t", shape=(400, 200), seed=9))
    base = fit_power_law(lam)
    fit = fit_power_law(lam * scale)
    assert fit.alpha == pytest.approx(base.alpha, rel=1e-9)
    assert fit.n_tail == base.n_tail
    assert fit.xmin == pytest.approx(base.xmin * scale, rel=1e-12)


def test_reference_mode_is_not_scale_invariant_like_weightwatcher():
    """weightwatcher 0.7.7 on the Student-t matrix: α 5.69 for scales 1 … 1e-4, 4.16 at 3e-5 (its absolute 1e-5
    eigenvalue cut leaves 5 tail eigenvalues, the small-N branch)."""
    lam = evals_of(anchor_matrix("student_t"))
    assert round(fit_power_law(lam * (3e-5) ** 2, method="reference").alpha, 2) == 4.16
    assert round(fit_power_law(lam * (3e-5) ** 2).alpha, 2) == 5.69


@pytest.mark.parametrize("method", ["robust", "reference"])
def test_input_order_does_not_matter(method):
    lam = evals_of(anchor_matrix("pareto", 2.0, shape=(300, 150), seed=8))
    shuffled = np.random.default_rng(0).permutation(lam)
    assert fit_power_law(shuffled, method=method) == fit_power_law(lam, method=method)


# ------------------------------------------------------------------------------- random-like layers, fingers


@pytest.mark.parametrize("method", ["robust", "reference"])
def test_gaussian_matrix_is_not_a_reliable_alpha_16(method):
    fit = fit_power_law(evals_of(anchor_matrix("gauss")), method=method)
    assert not fit.reliable
    assert fit.alpha > 8.0 and "not heavy-tailed" in fit.reason
    assert fit.n_fingers == 0  # unlike weightwatcher's clip_xmax, which turns it into 4.58


@pytest.mark.parametrize("alpha", [2.5, 3.0, 4.0])
def test_fingers_on_a_pareto_tail_are_set_aside(alpha):
    x = pareto_sample(alpha, 1000, seed=5)
    clean = fit_power_law(x)
    fingered = np.concatenate([x, x.max() * np.array([20.0, 25.0, 30.0])])
    fit = fit_power_law(fingered)
    assert fit.n_fingers == 3
    assert fit.alpha == pytest.approx(clean.alpha, abs=1e-12)
    assert fit.alpha_raw != fit.alpha
    assert fit.xmax == x.max()
    assert abs(fit.alpha - alpha) <= 4.0 * fit.alpha_sigma


@pytest.mark.parametrize("seed", range(5))
def test_genuine_heavy_tails_keep_their_top_eigenvalues(seed):
    lam = evals_of(anchor_matrix("student_t", shape=(500, 250), seed=seed))
    assert fit_power_law(lam).n_fingers == 0
    for alpha in (1.5, 2.5, 4.0):
        fit = fit_power_law(pareto_sample(alpha, 1500, seed))
        assert fit.n_fingers == 0 and fit.alpha == fit.alpha_raw


def test_a_tail_heavier_at_its_top_is_not_clipped_as_fingers():
    """Pooled ESD of 8 Student-t(3) 512×256 matrices (seed 3): its top 4 eigenvalues pass the gap test, but
    removing them would raise α by ~9 σ (the tail crosses over to a heavier law), so they are kept."""
    rng = np.random.default_rng(3)
    parts = []
    for _ in range(8):
        w = rng.standard_t(3, (512, 256)).astype(np.float32).astype(np.float64)
        parts.append(np.linalg.eigvalsh(w.T @ w))
    fit = fit_power_law(np.concatenate(parts))
    assert fit.n_fingers == 0 and fit.alpha == fit.alpha_raw
    assert fit.reliable


# ---------------------------------------------------------------------------------------------- degenerate


@pytest.mark.parametrize("method", ["robust", "reference"])
@pytest.mark.parametrize(
    ("evals", "words"),
    [
        (np.array([]), "eigenvalue"),
        (np.zeros(50), ""),
        (np.array([3.0]), ""),
        (np.full(40, 2.5), ""),
    ],
    ids=["empty", "zeros", "one", "constant"],
)
def test_degenerate_inputs_give_no_alpha_and_a_reason(evals, words, method):
    fit = fit_power_law(evals, method=method)
    assert fit.alpha is None and fit.xmin is None and fit.ks_distance is None
    assert not fit.reliable and fit.reason and words in fit.reason


def test_fewer_than_min_tail_usable_names_min_tail():
    lam = np.concatenate([np.zeros(20), np.arange(1.0, 9.0)])
    fit = fit_power_law(lam, min_tail=10)
    assert fit.alpha is None and "min_tail=10" in fit.reason
    ref = fit_power_law(lam, method="reference", min_tail=10)  # weightwatcher fits 8 points; we flag it
    assert ref.alpha is not None and not ref.reliable and "shorter than min_tail=10" in ref.reason


@pytest.mark.parametrize("method", ["robust", "reference"])
def test_a_fit_of_fewer_than_50_eigenvalues_is_made_but_flagged(method):
    fit = fit_power_law(pareto_sample(2.5, 30, seed=1), method=method)
    assert fit.alpha is not None and not fit.reliable and "at least 50" in fit.reason
    assert fit_power_law(pareto_sample(2.5, 300, seed=1), method=method).reliable


def test_a_gross_ks_misfit_is_flagged_at_any_tail_length():
    """Uniform values: no power law anywhere; D stays far above the 0.1 floor for every xmin."""
    fit = fit_power_law(np.random.default_rng(0).uniform(1.0, 2.0, 2000), min_tail=500)
    assert not fit.reliable and "KS distance" in fit.reason


def test_short_reference_tail_is_flagged():
    fit = fit_power_law(evals_of(anchor_matrix("gauss")), method="reference", min_tail=30)
    assert fit.n_tail == 22 and "shorter than min_tail=30" in fit.reason


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("method", ["robust", "reference"])
def test_non_finite_input_raises_fit_error_naming_the_fix(bad, method):
    lam = np.linspace(1.0, 10.0, 50)
    lam[7] = bad
    with pytest.raises(FitError, match="NaN/Inf.*finite weights"):
        fit_power_law(lam, method=method)


def test_bad_arguments_are_rejected():
    with pytest.raises(FitError, match="1-D"):
        fit_power_law(np.ones((3, 3)))
    with pytest.raises(ConfigError, match="robust"):
        fit_power_law(np.ones(30), method="powerlaw")
    with pytest.raises(ConfigError, match="min_tail"):
        fit_power_law(np.ones(30), min_tail=1)
