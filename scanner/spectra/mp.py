"""Marchenko–Pastur (MP) law and a fast, robust fit of the ESD bulk.

The law. For W (N×M, N ≥ M, Q = N/M) with i.i.d. entries of variance σ², the eigenvalues λ of WᵀW (raw
scale) follow, as N, M → ∞, the MP density with scale s = N·σ² (the mean eigenvalue) and ratio y = 1/Q:

    ρ(λ) = √((λ⁺ − λ)(λ − λ⁻)) / (2π · s · y · λ),   λ^± = s·(1 ± √y)² = s·(1 ± 1/√Q)²,

(Marchenko & Pastur 1967; the form used by Martin & Mahoney, JMLR 2021 §3). The largest eigenvalue
fluctuates on the Tracy–Widom scale (Johnstone 2001, Ann. Stat. 29, Thm 1.1, in raw units):

    t_TW = σ²·(√N + √M)·(1/√N + 1/√M)^(1/3) = (s/N)·(√N + √M)·(1/√N + 1/√M)^(1/3).

Spikes are eigenvalues above λ⁺_TW = λ⁺ + c·t_TW + δ·λ⁺, where c = 3.3 is about the 99.9 % quantile of the
TW₁ law and δ = 0.02 absorbs the error of the fitted scale (calibrated so that Gaussian matrices from 64 to
2048 columns and Q from 1 to 16 show no spikes; see tests/test_mp.py). The reference tool instead adds
√(Q^(−1/2)·λ⁺^(2/3)·M^(−2/3)) (docs/decisions.md, "Marchenko–Pastur edge"), which is not a multiple of the TW scale.

The fit (ours, replacing the reference tool's 1–2 s KDE grid search with a closed-form quantile fit):
the k largest eigenvalues are set aside as candidate spikes, and the remaining M−k sorted eigenvalues are
matched to the MP quantiles q_Q(p_i) of unit scale at plotting positions p_i = (i − ½)/(M − k); s is the
least-squares slope through the origin over the central quantiles p ∈ [0.05, 0.85] (the upper bulk is left
out because bleeding eigenvalues bend it). k is updated to the number of spikes and the fit repeated until
k is stable (at most 8 rounds). Goodness of fit: the Kolmogorov–Smirnov distance between the eigenvalues
below λ⁺_TW and the fitted MP law (``bulk_ks``). Cost: O(M log M), well under a millisecond per layer.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from scanner.errors import FitError
from scanner.records import MPFit

TW_QUANTILE = 3.3
SCALE_MARGIN = 0.02
FIT_QUANTILES = (0.05, 0.85)
MAX_SPIKE_FRACTION = 0.5
_GRID = 4097


def mp_edges(q: float, scale: float = 1.0) -> tuple[float, float]:
    """Bulk edges (λ⁻, λ⁺) = scale·(1 ∓ 1/√Q)² for aspect ratio Q = N/M ≥ 1."""
    root = 1.0 / np.sqrt(q)
    return scale * (1.0 - root) ** 2, scale * (1.0 + root) ** 2


def mp_density(x: NDArray[np.floating] | float, q: float, scale: float = 1.0) -> NDArray[np.float64]:
    """MP density ρ(x) for aspect ratio Q = N/M ≥ 1 and scale s (the mean eigenvalue); 0 outside the bulk."""
    _check_q(q)
    x = np.asarray(x, dtype=np.float64)
    lo, hi = mp_edges(q, scale)
    y = 1.0 / q
    inside = (x > lo) & (x < hi)
    out = np.zeros_like(x)
    xi = x[inside]
    out[inside] = np.sqrt((hi - xi) * (xi - lo)) / (2.0 * np.pi * scale * y * xi)
    return out


@lru_cache(maxsize=256)
def _unit_cdf_table(q: float) -> tuple[float, float, NDArray[np.float64], NDArray[np.float64]]:
    """(λ⁻, λ⁺, θ, F) on a grid for the unit-scale MP law, via x = λ⁻ + (λ⁺−λ⁻)(1 − cos θ)/2, which makes the
    integrand ((λ⁺−λ⁻)/2)²·sin²θ / (2π y x) smooth on θ ∈ [0, π] (also at Q = 1, where λ⁻ = 0). F is
    interpolated in θ, where it is smooth: in x it rises as √x from a hard edge λ⁻ = 0 (Q = 1), which linear
    interpolation in x missed by 5.6e-4 next to the edge."""
    lo, hi = mp_edges(q)
    y = 1.0 / q
    half = (hi - lo) / 2.0
    theta = np.linspace(0.0, np.pi, _GRID)
    knee = np.sqrt(2.0 * lo / half)  # near θ = 0 the integrand rises as θ²/(θ² + knee²): sharp when λ⁻ ≪ λ⁺
    if 0.0 < knee < 0.1:  # Q close to 1: resolve the rise (a uniform grid missed 4e-4 of F at Q = 1.0001)
        theta = np.union1d(theta, np.geomspace(knee * 1e-3, min(knee * 1e3, 0.1), 241))
    x = lo + half * (1.0 - np.cos(theta))
    with np.errstate(divide="ignore", invalid="ignore"):
        integrand = half**2 * np.sin(theta) ** 2 / (2.0 * np.pi * y * x)
    if lo == 0.0:
        integrand[0] = 4.0 * half**2 / (hi * 2.0 * np.pi * y)  # limit of sin²θ/x at θ → 0 when λ⁻ = 0
    steps = 0.5 * (integrand[1:] + integrand[:-1]) * np.diff(theta)
    cdf = np.concatenate([[0.0], np.cumsum(steps)])
    cdf /= cdf[-1]
    return lo, hi, theta, cdf


def mp_cdf(x: NDArray[np.floating] | float, q: float, scale: float = 1.0) -> NDArray[np.float64]:
    """MP cumulative distribution function F(x) (numerical, error < 1e-6)."""
    _check_q(q)
    lo, hi, grid_theta, grid_f = _unit_cdf_table(float(q))
    u = 1.0 - 2.0 * (np.asarray(x, dtype=np.float64) / scale - lo) / (hi - lo)  # cos θ
    return np.interp(np.arccos(np.clip(u, -1.0, 1.0)), grid_theta, grid_f, left=0.0, right=1.0)


def mp_quantile(p: NDArray[np.floating] | float, q: float, scale: float = 1.0) -> NDArray[np.float64]:
    """Inverse of :func:`mp_cdf`: the x with F(x) = p."""
    _check_q(q)
    lo, hi, grid_theta, grid_f = _unit_cdf_table(float(q))
    theta = np.interp(np.asarray(p, dtype=np.float64), grid_f, grid_theta)
    return scale * (lo + (hi - lo) / 2.0 * (1.0 - np.cos(theta)))


def tracy_widom_scale(n: int, m: int, scale: float) -> float:
    """Tracy–Widom fluctuation scale of λ_max in raw units (Johnstone 2001), for mean eigenvalue ``scale``.
    Python floats (``math``): the same IEEE operations as numpy scalars, without their per-operation cost."""
    sigma2 = float(scale) / n
    root_n, root_m = math.sqrt(n), math.sqrt(m)
    return sigma2 * (root_n + root_m) * (1.0 / root_n + 1.0 / root_m) ** (1.0 / 3.0)


def spike_threshold(q: float, n: int, m: int, scale: float) -> tuple[float, float]:
    """(λ⁺, λ⁺_TW): the MP edge and the edge plus the TW and scale-error margins (see module docstring)."""
    _, edge = mp_edges(q, scale)
    return edge, edge + TW_QUANTILE * tracy_widom_scale(n, m, scale) + SCALE_MARGIN * edge


def fit_marchenko_pastur(evals: NDArray[np.floating], *, q: float, n: int) -> MPFit:
    """Fit the MP bulk of an ESD and count the spikes above its Tracy–Widom-corrected edge.

    Args:
        evals: eigenvalues (raw scale, any order). Pooled conv ESDs pass all k·M values; the per-matrix
            column count M then enters only through ``n`` and ``q``.
        q: aspect ratio N/M ≥ 1 of each matrix.
        n: rows N of each matrix (for the TW scale); with ``q`` it gives the columns M = N/Q of each matrix.

    Raises:
        FitError: fewer than 4 positive eigenvalues, or non-finite input.
    """
    _check_q(q)
    lam = np.sort(np.asarray(evals, dtype=np.float64))
    total = lam.size
    if total and not (math.isfinite(lam[0]) and math.isfinite(lam[-1])):  # sorted: -inf first, +inf and NaN last
        raise FitError("eigenvalues contain NaN/Inf; compute the ESD of a finite matrix first")
    n_positive = _split(lam, 0.0)[1]
    if n_positive < 4:
        raise FitError(f"an MP fit needs at least 4 positive eigenvalues; got {n_positive}")
    n_rows = int(n)
    m_eff = max(1, int(round(n_rows / q)))

    k = 0
    scale = 0.0
    for _ in range(8):
        scale = _fit_scale(lam[: total - k], q)
        edge, edge_tw = spike_threshold(q, n_rows, m_eff, scale)
        new_k = min(_split(lam, edge_tw)[1], int(MAX_SPIKE_FRACTION * total))
        if new_k == k:
            break
        k = new_k
    edge, edge_tw = spike_threshold(q, n_rows, m_eff, scale)
    lower, _ = mp_edges(q, scale)
    in_bulk, n_spikes = _split(lam, edge_tw)
    bulk = lam[:in_bulk]
    return MPFit(
        scale=scale,
        lambda_minus=lower,
        lambda_plus=edge,
        lambda_plus_tw=edge_tw,
        n_spikes=n_spikes,
        softrank=float(min(1.0, edge / lam[-1])),
        bulk_ks=_ks_distance(bulk, q, scale),
        bulk_fraction=float(bulk.size / total),
        q=float(q),
    )


def _split(lam: NDArray[np.float64], x: float) -> tuple[int, int]:
    """(#{λ ≤ x}, #{λ > x}) of sorted finite eigenvalues, by bisection: ``np.count_nonzero`` of both comparisons
    without a pass over them (the fit asks up to ten times per ESD). A NaN x is in neither, as in the
    comparisons (the bulk below a NaN edge is empty, with no spikes above it)."""
    if math.isnan(x):
        return 0, 0
    at_most = int(lam.searchsorted(x, "right"))
    return at_most, lam.size - at_most


@lru_cache(maxsize=1024)
def _fit_positions(count: int, q: float) -> tuple[slice, NDArray[np.float64], float]:
    """For ``count`` sorted eigenvalues: the slice of the central plotting positions p_i = (i − ½)/count
    in [0.05, 0.85] (all of them when fewer than 2 fall inside), the unit MP quantiles there and their
    squared norm. Depends only on (count, Q), so it is computed once per layer shape, not per fit round."""
    p = (np.arange(1, count + 1) - 0.5) / count
    use = np.flatnonzero((p >= FIT_QUANTILES[0]) & (p <= FIT_QUANTILES[1]))  # contiguous: p is increasing
    rows = slice(int(use[0]), int(use[-1]) + 1) if use.size >= 2 else slice(0, count)
    theory = mp_quantile(p[rows], q)
    theory.setflags(write=False)
    return rows, theory, float(np.dot(theory, theory))


def _fit_scale(sorted_bulk: NDArray[np.float64], q: float) -> float:
    """Least-squares scale s of sorted eigenvalues against unit MP quantiles over the central quantiles."""
    rows, theory, denom = _fit_positions(sorted_bulk.size, float(q))
    if denom <= 0.0:
        return float(np.mean(sorted_bulk))
    return max(float(np.dot(theory, sorted_bulk[rows]) / denom), np.finfo(float).tiny)


def _ks_distance(sorted_bulk: NDArray[np.float64], q: float, scale: float) -> float:
    """KS distance between sorted bulk eigenvalues (renormalised to their own count) and MP(q, scale)."""
    count = sorted_bulk.size
    if count == 0:
        return 1.0
    model = mp_cdf(sorted_bulk, q, scale)
    upper = np.arange(1, count + 1) / count
    lower = np.arange(0, count) / count
    return float(max(np.max(upper - model), np.max(model - lower)))


def _check_q(q: float) -> None:
    if not np.isfinite(q) or q < 1.0:
        raise FitError(f"the aspect ratio Q = N/M must be a finite number >= 1 (orient W so N >= M); got {q!r}")
