"""Scale metrics of one ESD, each defined once here (raw λ units; logarithms base 10 as in the papers).

Definitions (Martin & Mahoney JMLR 2021; Martin, Peng & Mahoney, Nat. Commun. 2021; weightwatcher 0.7.7
column names, docs/decisions.md "Metric definitions"):

- log_norm          = log10 Σλ            (= log10 ‖W‖_F², squared Frobenius norm)
- log_spectral_norm = log10 λ_max         (= log10 ‖W‖₂², squared spectral norm)
- stable_rank       = Σλ / λ_max
- alpha_weighted    = α · log10 λ_max     (α̂, the "weighted alpha")
- log_alpha_norm    = log10 Σ λ^α         (log of the Schatten α-norm to the power α)
- entropy           = −Σ p ln p / ln R, p = λ/Σλ over the R eigenvalues above the rank tolerance (in [0, 1])
- rank_loss         = #{λ ≤ λ_max·(max(N, M)·eps)²}: singular values below the usual numerical-rank
                      tolerance s_max·max(N, M)·eps, with eps of the weights' storage dtype (float32 by
                      default: the reference tool uses float64 eps on float32 data and so never sees it)
- n_near_zero       = #{λ ≤ 1e-6·λ_ref}, λ_ref the 90th-percentile eigenvalue (λ_max when that is 0): the
                      mass of the "large peak at λ ≈ 0" that defines rank collapse (JMLR Table 4). Relative
                      to the upper bulk rather than λ_max so that heavy tails do not inflate it; a square
                      Gaussian matrix (Q = 1, density ∝ λ^(−1/2) at 0) puts about 0.1 % of its mass there.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from scanner.records import NormMetrics

NEAR_ZERO_RELATIVE = 1e-6
NEAR_ZERO_QUANTILE = 0.9
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def rank_tolerance(lambda_max: float, n: int, m: int, eps: float = FLOAT32_EPS) -> float:
    """Eigenvalue below which a direction is numerically null: (s_max·max(N, M)·eps)²."""
    return float(lambda_max * (max(n, m) * eps) ** 2)


def quantile_linear(evals: NDArray[np.float64], q: float, *, is_sorted: bool = False) -> float:
    """``np.quantile(evals, q)`` (method "linear") of a non-empty finite 1-D array, bit for bit, without its
    per-call overhead (about 0.15 ms, five times per layer): the virtual index v = (n−1)·q between the order
    statistics x_⌊v⌋ and x_⌊v⌋+1, interpolated as numpy's ``_lerp`` does (from the upper end when the weight
    t = v − ⌊v⌋ ≥ ½). ``is_sorted``: ``evals`` is ascending, so the order statistics are read directly."""
    n = evals.size
    v = (n - 1) * q
    if v >= n - 1:
        return float(evals[-1] if is_sorted else evals.max())
    i = int(v)
    if is_sorted:
        a, b = float(evals[i]), float(evals[i + 1])
    else:
        part = np.partition(evals, (i, i + 1))
        a, b = float(part[i]), float(part[i + 1])
    t = v - i
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


def near_zero_tolerance(evals: NDArray[np.float64], *, is_sorted: bool = False) -> float:
    """λ threshold of the near-zero peak: 1e-6 × the 90th-percentile eigenvalue (λ_max if that is 0).
    ``is_sorted``: ``evals`` is ascending (saves a partition)."""
    if not evals.size:
        return 0.0
    reference = quantile_linear(evals, NEAR_ZERO_QUANTILE, is_sorted=is_sorted)
    if reference <= 0.0:
        reference = float(evals[-1] if is_sorted else evals.max())
    return NEAR_ZERO_RELATIVE * reference


def matrix_entropy(evals: NDArray[np.float64], tolerance: float) -> float | None:
    """Normalised spectral entropy −Σ p ln p / ln R over the R eigenvalues above ``tolerance``."""
    kept = evals[evals > tolerance]
    if kept.size < 2:
        return None
    p = kept / kept.sum()
    return float(-np.sum(p * np.log(p)) / np.log(kept.size))


def log_alpha_norm(evals: NDArray[np.float64], alpha: float) -> float:
    """log10 Σ λ^α, computed as logsumexp(α ln λ)/ln 10 so that large λ and α do not overflow.

    The log-sum-exp is scipy's ``logsumexp`` algorithm (1.17) written out for a finite 1-D array, bit for bit
    (its array-API dispatch costs ~0.1 ms a call): with a = α ln λ, a_max its maximum and m the number of
    entries equal to it, log(Σ e^a) = log1p(s) + log(m) + a_max, s = Σ_{a < a_max} e^(a − a_max) / m (the
    maxima enter the same pairwise sum as zeros). A non-finite maximum (λ = ∞, or α NaN) is the result, +∞ or
    NaN, as scipy's gives."""
    positive = evals[evals > 0]
    a = alpha * np.log(positive)
    a_max = a.max()
    if not np.isfinite(a_max):
        return float(a_max)
    top = a == a_max
    m = float(np.count_nonzero(top))
    shifted = a - a_max
    shifted[top] = -np.inf
    s = float(np.sum(np.exp(shifted)))
    if s != 0.0:
        s = s / m
    return float((np.log1p(s) + np.log(m) + a_max) / np.log(10.0))


def norm_metrics(
    evals: NDArray[np.floating], *, n: int, m: int, alpha: float | None = None, eps: float = FLOAT32_EPS
) -> NormMetrics:
    """All scale metrics of one ESD (see the module docstring for each definition).

    Args:
        evals: eigenvalues of WᵀW (raw scale), any order, at least one positive.
        n, m: rows and columns of each matrix (N ≥ M), for the rank tolerance.
        alpha: power-law exponent when a fit exists; the α-dependent metrics are None otherwise.
        eps: machine epsilon of the weights' storage dtype.
    """
    lam = np.sort(np.asarray(evals, dtype=np.float64))
    lambda_max = float(lam[-1])
    total = float(lam.sum())
    tolerance = rank_tolerance(lambda_max, n, m, eps)
    fitted = alpha if lambda_max > 0 else None  # the α metrics need λ_max > 0
    return NormMetrics(
        lambda_max=lambda_max,
        lambda_min=float(lam[0]),
        log_norm=float(np.log10(total)),
        log_spectral_norm=float(np.log10(lambda_max)),
        stable_rank=total / lambda_max,
        entropy=matrix_entropy(lam, tolerance),
        alpha_weighted=float(fitted * np.log10(lambda_max)) if fitted is not None else None,
        log_alpha_norm=log_alpha_norm(lam, fitted) if fitted is not None else None,
        rank_loss=int(np.count_nonzero(lam <= tolerance)),
        n_near_zero=int(np.count_nonzero(lam <= near_zero_tolerance(lam, is_sorted=True))),
    )
