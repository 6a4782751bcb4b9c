"""The vectorised Clauset–Shalizi–Newman scan over every candidate xmin (used by ``scanner.spectra.powerlaw``).

For sorted eigenvalues x and candidate starts i, :func:`tail_alphas` gives every MLE exponent
α_i = 1 + n_i / Σ_{j≥i} ln(x_j/x_i) from one suffix sum, and :func:`ks_argmin` the candidate of smallest
Kolmogorov–Smirnov distance D_i = max_k |1 − (x_{i+k}/x_i)^(1−α_i) − k/n_i| — exactly the argmin of the full
O(n²) scan, found by pruning candidates with cheap lower bounds and evaluating only the survivors in memory-bounded
blocks (see :func:`ks_argmin`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

_SEEDS = 8  # rows evaluated exactly before any pruning, spread over the candidates
_FIRST_GRID = 8
_GRID_GROWTH = 4
_LEADERS = 4  # rows evaluated exactly per round (lowest bounds); their peaks become probes
_BETA_CAP = 1e300  # α = ∞ (a flat tail) as a finite slope: F = 0 at the tie, 1 above it
_BLOCK_ELEMENTS = 1 << 20  # elements of a 2-D block (8 MiB of float64 per temporary)
_PRUNE_SLACK = 1e-12  # bounds in log space vs exact D in ratio space differ by ~1e-15
_FULL_SCAN_ELEMENTS = 1 << 15  # up to this many (candidate, point) pairs every row is evaluated exactly at once


def tail_alphas(x: NDArray[np.float64], log_x: NDArray[np.float64], starts: NDArray[np.intp]) -> NDArray[np.float64]:
    """α_i = 1 + n_i / Σ_{j≥i} ln(x_j/x_i) for every start i at once (one suffix sum); ∞ for a flat tail."""
    suffix = np.cumsum(log_x[::-1])[::-1]
    tails = (x.size - starts).astype(np.float64)
    sums = suffix[starts] - tails * log_x[starts]
    flat = x[starts] == x[-1]
    with np.errstate(divide="ignore"):
        alphas = 1.0 + tails / np.where(flat, 0.0, np.maximum(sums, 0.0))
    return alphas


def ks_argmin(
    x: NDArray[np.float64], log_x: NDArray[np.float64], starts: NDArray[np.intp], alphas: NDArray[np.float64]
) -> tuple[int, float]:
    """Position in ``starts`` of the smallest KS distance (first on ties) and that distance.

    Candidates are pruned without being evaluated in full. A few rows are evaluated exactly, which sets
    the bar D_best (an upper bound of the minimum), and the data points where their deviation peaks are
    kept as probes. Every other row gets a lower bound of D_i: its deviation at K grid points of its tail
    and at the probes (neighbouring xmins tend to peak at the same data point, so this bound is tight).
    Rows whose bound exceeds D_best by more than its rounding (:func:`_bound_slack`) cannot be the argmin and
    are dropped; the most promising remaining
    rows are evaluated exactly, K grows ×4, until every surviving row has been evaluated exactly. Below
    ``_FULL_SCAN_ELEMENTS`` (candidates × points) all rows are evaluated exactly in one block instead: the
    same values, without the rounds' fixed cost (ResNet-56's 144-value ESDs: 0.33 vs 0.52 ms).
    """
    n = x.size
    beta = np.minimum(alphas - 1.0, _BETA_CAP)
    if starts.size * n <= _FULL_SCAN_ELEMENTS:  # small ESDs (≲ 180 values): one exact pass beats the rounds
        ks, _ = ks_exact(x, starts, alphas)
        best_pos = int(np.argmin(ks))
        return best_pos, float(ks[best_pos])
    slack = _bound_slack(x, log_x, beta)
    seeds = np.unique(np.linspace(0, starts.size - 1, _SEEDS).astype(np.intp))
    done_pos = [seeds]
    done_ks, done_peaks = ks_exact(x, starts[seeds], alphas[seeds])
    pending = np.ones(starts.size, dtype=bool)
    pending[seeds] = False
    pending = np.flatnonzero(pending)
    grid = _FIRST_GRID
    while pending.size:
        order = np.argsort(done_ks, kind="stable")[:_LEADERS]
        best = float(done_ks[order[0]])
        probes = np.unique(done_peaks[order].ravel())
        tails = n - starts[pending]
        exact = pending[tails <= grid + 1]
        large = pending[tails > grid + 1]
        pending = large[:0]
        if large.size:
            lower = np.maximum(_ks_lower_grid(log_x, starts[large], beta[large], grid),
                               _ks_probe(log_x, starts[large], beta[large], probes))
            alive = np.flatnonzero(lower <= best + slack[large])
            ranked = alive[np.argsort(lower[alive], kind="stable")]
            exact = np.concatenate([exact, large[ranked[:_LEADERS]]])
            pending = np.sort(large[ranked[_LEADERS:]])
        if exact.size:
            ks, peaks = ks_exact(x, starts[exact], alphas[exact])
            done_pos.append(exact)
            done_ks = np.concatenate([done_ks, ks])
            done_peaks = np.concatenate([done_peaks, peaks])
        grid *= _GRID_GROWTH
    positions = np.concatenate(done_pos)
    order = np.argsort(positions, kind="stable")
    best_pos = int(np.argmin(done_ks[order]))
    return int(positions[order][best_pos]), float(done_ks[order][best_pos])


def _bound_slack(x: NDArray[np.float64], log_x: NDArray[np.float64], beta: NDArray[np.float64]) -> NDArray[np.float64]:
    """How far each row's log-space bound may exceed its exact D through rounding: ``_PRUNE_SLACK`` plus the
    rounding of a log difference (a few ulps of the largest |ln x|, which shifting the logs keeps) times
    β = α − 1, the slope of F in it. β reaches 1e12–1e15 when eigenvalues agree to ~1e-12 (a float64
    orthogonal layer): those rows are then never pruned. Flat tails (β capped at ``_BETA_CAP``) make no such
    error — F is 0 at the tie and 1 above it — and get the plain slack."""
    magnitude = max(abs(float(np.log(x[0]))), abs(float(np.log(x[-1]))), float(np.max(np.abs(log_x))), 1.0)
    rounding = 8.0 * np.finfo(np.float64).eps * magnitude
    return _PRUNE_SLACK + np.where(beta < _BETA_CAP, beta * rounding, 0.0)


def _row_blocks(count: int, width: int) -> list[slice]:
    rows = max(1, _BLOCK_ELEMENTS // max(width, 1))
    return [slice(a, min(a + rows, count)) for a in range(0, count, rows)]


def ks_exact(
    x: NDArray[np.float64], starts: NDArray[np.intp], alphas: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """D_i exactly as defined in the module docstring (ratio form, as weightwatcher computes it), and
    for each row the data indices (rows × 2) where F − E and E − F peak."""
    n = x.size
    out = np.empty(starts.size)
    peaks = np.empty((starts.size, 2), dtype=np.intp)
    for rows in _row_blocks(starts.size, int(n - starts.min()) if starts.size else 1):
        s, a = starts[rows], alphas[rows]
        tails = n - s
        k = np.arange(int(tails.max()))
        idx = np.minimum(s[:, None] + k[None, :], n - 1)
        with np.errstate(over="ignore", invalid="ignore"):
            diff = 1.0 - (x[idx] / x[s][:, None]) ** (1.0 - a)[:, None]
        diff -= k[None, :] / tails[:, None].astype(np.float64)
        outside = k[None, :] >= tails[:, None]
        diff[outside] = 0.0
        high, low = diff.argmax(axis=1), diff.argmin(axis=1)
        line = np.arange(diff.shape[0])
        out[rows] = np.maximum(diff[line, high], -diff[line, low])
        peaks[rows, 0] = s + high
        peaks[rows, 1] = s + low
    return out, peaks


def _ks_lower_grid(
    log_x: NDArray[np.float64], starts: NDArray[np.intp], beta: NDArray[np.float64], grid: int
) -> NDArray[np.float64]:
    """max |F_i − E_i| over grid+1 evenly spaced points of each tail: a lower bound of D_i."""
    n = log_x.size
    lower = np.empty(starts.size)
    steps = np.arange(grid + 1)
    for rows in _row_blocks(starts.size, grid + 1):
        s, b = starts[rows], beta[rows]
        tails = (n - s)[:, None]
        k = (steps[None, :] * (tails - 1)) // grid
        model = -np.expm1(-b[:, None] * (log_x[s[:, None] + k] - log_x[s][:, None]))
        lower[rows] = np.abs(model - k / tails.astype(np.float64)).max(axis=1)
    return lower


def _ks_probe(
    log_x: NDArray[np.float64], starts: NDArray[np.intp], beta: NDArray[np.float64], probes: NDArray[np.intp]
) -> NDArray[np.float64]:
    """max |F_i − E_i| over the probe data indices inside each tail (a lower bound of D_i; 0 if none)."""
    n = log_x.size
    out = np.zeros(starts.size)
    if not probes.size:
        return out
    for rows in _row_blocks(starts.size, probes.size):
        s, b = starts[rows], beta[rows]
        k = probes[None, :] - s[:, None]
        inside = k >= 0
        gap = log_x[np.maximum(k, 0) + s[:, None]] - log_x[s][:, None]
        dev = np.abs(-np.expm1(-b[:, None] * gap) - k / (n - s)[:, None].astype(np.float64))
        out[rows] = np.where(inside, dev, 0.0).max(axis=1)
    return out
