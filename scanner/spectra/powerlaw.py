"""Power-law fit of an ESD tail (Clauset, Shalizi & Newman 2009, "CSN"), vectorised, in two modes.

For a candidate lower cutoff xmin = λ_i (eigenvalues sorted ascending, tail = the n_i eigenvalues
λ_j ≥ λ_i) the continuous maximum-likelihood exponent is (CSN eq. 3.1)

    α_i = 1 + n_i / Σ_{j≥i} ln(λ_j / λ_i),       σ_i = (α_i − 1) / √n_i   (CSN eq. 3.2),

and its Kolmogorov–Smirnov distance is

    D_i = max_k | 1 − (λ_{i+k} / λ_i)^(1−α_i) − k / n_i |,   k = 0 … n_i − 1,

the fitted CDF against the lower step of the tail's empirical CDF — the convention of the ``powerlaw``
package (``statistics.cdf``) and of weightwatcher's ``WWFit``. xmin = argmin_i D_i (first on ties).

All α_i come from one suffix sum of ln λ. The D_i are never formed as a full n×n array. A few
candidates are evaluated exactly; that sets the bar (the smallest D seen) and marks the data points where
their deviation peaks. Every other candidate gets a cheap lower bound of D_i — its deviation at K evenly
spaced points of its tail and at those peak points, where neighbouring xmins tend to peak too — and is
dropped when the bound exceeds the bar; the survivors with the lowest bounds are evaluated exactly, K
grows ×4, and so on until every survivor has been evaluated exactly (in row blocks of bounded memory).
Only candidates that cannot be the argmin are dropped, so the result equals the full O(n²) scan
(checked against it, and against weightwatcher, in tests/test_powerlaw.py); typically a few percent of
the n² work is done (bench/results/powerlaw_fit.txt). Adversarial data degrade to the blocked O(n²) scan.
The scan itself is ``scanner.spectra.csn``; this module picks candidates, modes, fingers and reliability.

Modes:

- ``"reference"`` reproduces weightwatcher 0.7.7's default ``analyze()`` fit (``fit='PL'``,
  ``pl_package='ww'``, ``xmax=None``, ``fix_fingers=False``; ``WW_powerlaw.WWFit``) on the same eigenvalues.
- ``"robust"`` (zooscan's default) is scale-invariant, has a minimum tail, removes statistically
  significant "fingers", and flags unreliable fits; see :func:`fit_power_law`.

Units: eigenvalues λ in raw scale (squared singular values); xmin and xmax in the same units.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from scanner.config import FIT_MODES
from scanner.errors import ConfigError, FitError
from scanner.records import PowerLawFit
from scanner.spectra.csn import ks_argmin, ks_exact, tail_alphas

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = FIT_MODES  # one definition: scanner.config

# weightwatcher 0.7.7 (constants.EVALS_THRESH, WW_powerlaw.SMALL_N_CUTOFF, WWFit.fit_powerlaw_smallN defaults).
REFERENCE_EVALS_THRESH = 1e-5
REFERENCE_SMALL_N = 20
REFERENCE_SMALL_N_MIN_TAIL = 8
REFERENCE_SMALL_N_FLAT = 1e-12

# Reliability rules (robust and reference modes).
ALPHA_MAX_RELIABLE = 8.0  # WW README: "no α should exceed 8"; above it the tail is not heavy-tailed
KS_CRITICAL_COEFFICIENT = 1.949  # asymptotic Kolmogorov critical value at the 0.1 % level: D > 1.949/√n
KS_GROSS = 0.1  # ... but a long tail is flagged only for a gross misfit (the KS test rejects any real ESD there)
MIN_EVALS_RELIABLE = 50  # WW README: "need at least 50 eigenvalues"; docs/decisions.md, "Power-law fit"
FINGER_P_VALUE = 1e-4  # per finger count tested; ≤ 1e-3 family-wise over max_fingers = 10
FINGER_MAX_RISE = 5.0  # removing fingers may raise α by at most 5 σ_α: more means the tail itself gets heavier



@dataclass(frozen=True)
class _TailFit:
    """One CSN fit of sorted eigenvalues ``x``: the tail x[start:], its α and KS distance."""

    start: int
    alpha: float
    ks: float
    n_tail: int


def fit_power_law(
    evals: NDArray[np.floating], *, method: str = "robust", min_tail: int = 10, max_fingers: int = 10
) -> PowerLawFit:
    """Fit p(λ) ∝ λ^(−α), λ ≥ xmin, to one layer's eigenvalues by the CSN method.

    ``method="reference"`` (weightwatcher 0.7.7 default fit, α equal to 1e-6 relative):
    keep λ > 1e-5 (absolute, ``EVALS_THRESH``); every sorted eigenvalue but the last is a candidate
    xmin, duplicates included, no minimum tail; plain MLE; D as above; first argmin. With fewer than 20
    kept eigenvalues weightwatcher 0.7.7 switches to its small-N branch: bias-corrected
    α = 1 + (n−1)/Σ ln(λ/xmin), tails of ≥ 8 points, xmin = first argmin of D (the branch ranks by
    D − 0.868/√n, but weightwatcher's fit then takes the argmin of D; whole sample if no tail qualifies).
    In reference mode ``min_tail`` only feeds the reliability flag and ``max_fingers`` is not used. Reported
    σ is always (α−1)/√n (weightwatcher reports a negative σ in its small-N fallback).

    ``method="robust"`` (zooscan default; each choice and its source):

    - numerical zeros: drop λ ≤ λ_max·n·ε₆₄, n the number of eigenvalues passed (M, or k·M when pooled):
      the rank tolerance of ``numpy.linalg.matrix_rank`` for a Hermitian matrix (here the M×M WᵀW), so the cut
      is relative and α(c·λ) = α(λ) for any c > 0.
    - candidates: distinct eigenvalues (ties belong to one tail, as ``powerlaw.Fit`` takes unique xmins),
      not the largest, with a tail of at least ``min_tail`` points (WW's default min_evals is 8–10;
      CSN fits of a handful of points are noise).
    - fingers (WW issues #102/#229; docs/decisions.md, "Power-law fit"): k top eigenvalues count as fingers
      when (1) the gap below them is improbable for a power law — by Rényi's representation the scaled
      log-spacings j·ln(λ_(j)/λ_(j+1)) of the tail are i.i.d. exponential, and the k-th must not exceed the
      mean of those below it so much that p = exp(−T_k/mean) < 1e-4 (≤ 1e-3 false alarms over ten k;
      the largest such k ≤ ``max_fingers`` is taken); (2) the fit redone without them is clean (α ≤ 8,
      D under its critical value); and (3) it raises α by at most 5 σ_α: outliers on top of one power law
      move the MLE by a few σ, whereas a bigger rise means the top of the tail is genuinely heavier than
      its lower part (a Student-t layer's ESD rises 8–13 σ; measured) and removing it would drive α up.
      Only then is the refit reported (``alpha_raw`` keeps the first fit). WW's ``clip_xmax`` instead
      accepts any α drop > 1, which turns a Gaussian's 15.9 into a "heavy-tailed" 4.6 (docs/decisions.md, "Power-law fit").
      The ``min_tail`` floor already stops a bunch of fewer than ``min_tail`` fingers from being fitted as
      the whole tail, the way #102's spuriously large α arise.
    - reliability: ``reliable=False`` with a reason when α > 8 (WW README: random-like, not heavy-tailed;
      a Gaussian matrix gives α ≈ 16 here, reported as fitted but unreliable), when fewer than 50
      eigenvalues were fitted (WW README; NC21's floor), when the tail is shorter than ``min_tail``, or
      when D > max(1.949/√n_tail, 0.1): the first fails even the lenient fully-specified KS test at 0.1 %
      (CSN §4.1: fitted parameters make D smaller); the floor 0.1 keeps long tails (≳ 400 points, where
      that test rejects any real ESD, e.g. a Student-t layer's D = 0.063 at n = 1123) to gross misfits.

    Args:
        evals: eigenvalues of one layer's ESD, raw scale, any order; zeros allowed.
        method: "robust" or "reference".
        min_tail: smallest tail the robust fit accepts; below it a fit is unreliable (both modes).
        max_fingers: largest number of top eigenvalues the robust fit may set aside as fingers.

    Returns:
        The fit; ``alpha=None`` with a reason when there are too few usable eigenvalues.

    Raises:
        FitError: NaN/Inf or non-1-D input.
        ConfigError: an unknown ``method`` or a bad ``min_tail``/``max_fingers``.
    """
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    if not (isinstance(min_tail, int) and min_tail >= 2):
        raise ConfigError(f"min_tail must be an int >= 2, got {min_tail!r}")
    if not (isinstance(max_fingers, int) and max_fingers >= 0):
        raise ConfigError(f"max_fingers must be an int >= 0, got {max_fingers!r}")
    lam = _validated(evals)
    if method == "reference":
        return _fit_reference(lam, min_tail)
    return _fit_robust(lam, min_tail, max_fingers)


def _validated(evals: NDArray[np.floating]) -> NDArray[np.float64]:
    try:
        lam = np.asarray(evals, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise FitError(f"eigenvalues must be numeric, got {type(evals).__name__}: pass a float array") from err
    if lam.ndim != 1:
        raise FitError(f"eigenvalues must be a 1-D array, got shape {lam.shape}: pass one layer's ESD (np.ravel)")
    bad = int(np.count_nonzero(~np.isfinite(lam)))
    if bad:
        raise FitError(
            f"{bad} of {lam.size} eigenvalues are NaN/Inf: recompute the ESD from finite weights "
            "(check the layer for NaN/Inf entries or an overflowing dtype) before fitting"
        )
    return np.sort(lam)


def _no_fit(method: str, reason: str, n_tail: int = 0) -> PowerLawFit:
    return PowerLawFit(alpha=None, xmin=None, xmax=None, ks_distance=None, alpha_sigma=None, n_tail=n_tail,
                       method=method, reliable=False, reason=reason)


# ---------------------------------------------------------------------------------------------------- robust


def _fit_robust(lam: NDArray[np.float64], min_tail: int, max_fingers: int) -> PowerLawFit:
    if lam.size == 0:
        return _no_fit("robust", "no eigenvalues")
    if lam[-1] <= 0.0:
        return _no_fit("robust", "all eigenvalues are zero: no spectrum to fit")
    cut = lam[-1] * lam.size * np.finfo(np.float64).eps
    x = lam[lam > cut]
    if x.size < min_tail:
        return _no_fit("robust", f"only {x.size} eigenvalues above the numerical-zero cut λ_max·N·ε; "
                                 f"a tail needs min_tail={min_tail}")
    raw = _csn_robust(x, min_tail)
    if raw is None:
        return _no_fit("robust", f"no distinct eigenvalue leaves a tail of {min_tail}+ points "
                                 "(constant or heavily tied eigenvalues)")
    fit, n_fingers = raw, _count_fingers(x, raw, min_tail, max_fingers)
    if n_fingers:
        clipped = _csn_robust(x[:-n_fingers], min_tail)
        rise = float("inf") if clipped is None else (clipped.alpha - raw.alpha) * np.sqrt(raw.n_tail) / (raw.alpha - 1)
        if clipped is None or _doubts(clipped, min_tail) or rise > FINGER_MAX_RISE:
            logger.debug("%d top eigenvalue(s) stand out, but not above the same clean power law", n_fingers)
            n_fingers = 0
        else:
            fit = clipped
            logger.debug("set aside %d finger(s): α %.4g -> %.4g", n_fingers, raw.alpha, fit.alpha)
    return _record(x[: x.size - n_fingers], fit, "robust", min_tail, n_fingers=n_fingers, alpha_raw=raw.alpha)


def _csn_robust(x: NDArray[np.float64], min_tail: int) -> _TailFit | None:
    """CSN scan over distinct xmins (first of each tie) with tails of ≥ min_tail points, x sorted."""
    n = x.size
    first = np.ones(n, dtype=bool)
    first[1:] = x[1:] != x[:-1]
    starts = np.flatnonzero(first & (x < x[-1]) & (n - np.arange(n) >= min_tail))
    if starts.size == 0:
        return None
    log_x = np.log(x / x[-1])
    alphas = tail_alphas(x, log_x, starts)
    pos, ks = ks_argmin(x, log_x, starts, alphas)
    return _TailFit(start=int(starts[pos]), alpha=float(alphas[pos]), ks=ks, n_tail=int(n - starts[pos]))


def _count_fingers(x: NDArray[np.float64], raw: _TailFit, min_tail: int, max_fingers: int) -> int:
    """Number of top eigenvalues separated from the tail by an improbably large gap (0 if none).

    Rényi's representation of the upper order statistics of a power law (the basis of Hill's estimator):
    with λ_(1) ≥ λ_(2) ≥ … the tail sorted descending, the scaled log-spacings T_j = j·ln(λ_(j)/λ_(j+1))
    are i.i.d. exponential with mean 1/(α−1). k fingers show as one large T_k; its p-value is
    exp(−T_k / mean(T_j, j > k)), the mean taken below the candidate fingers so they cannot mask
    themselves. The largest k ≤ max_fingers with p < FINGER_P_VALUE is returned.
    """
    tail = x[raw.start:][::-1]
    spacings = np.arange(1, tail.size) * np.log(tail[:-1] / tail[1:])
    k_max = min(max_fingers, spacings.size - min_tail)
    if k_max < 1:
        return 0
    below = np.cumsum(spacings[::-1])[::-1]  # below[k] = Σ_{j>k} T_j (0-based: spacings[k] is T_{k+1})
    k = np.arange(1, k_max + 1)
    body_mean = below[k] / (spacings.size - k)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_values = np.exp(-spacings[k - 1] / body_mean)
    significant = np.flatnonzero(p_values < FINGER_P_VALUE)
    return int(k[significant[-1]]) if significant.size else 0


# ------------------------------------------------------------------------------------------------- reference


def _fit_reference(lam: NDArray[np.float64], min_tail: int) -> PowerLawFit:
    x = lam[lam > REFERENCE_EVALS_THRESH]
    if x.size < 2:
        return _no_fit("reference", f"{x.size} eigenvalue(s) above weightwatcher's EVALS_THRESH=1e-5: "
                                    "weightwatcher 0.7.7 fails this fit")
    fit = _reference_small_n(x) if x.size < REFERENCE_SMALL_N else _reference_standard(x)
    if fit is None or not np.isfinite(fit.alpha):
        return _no_fit("reference", "weightwatcher 0.7.7 reports a placeholder α here (a flat tail: "
                                    "constant eigenvalues above xmin)", n_tail=0 if fit is None else fit.n_tail)
    return _record(x, fit, "reference", min_tail)


def _reference_standard(x: NDArray[np.float64]) -> _TailFit:
    """WWFit.fit_power_law_standard: all n−1 candidates, plain MLE, first argmin of D."""
    n = x.size
    starts = np.arange(n - 1)
    log_x = np.log(x)
    alphas = tail_alphas(x, log_x - log_x[-1], starts)
    pos, _ = ks_argmin(x, log_x - log_x[-1], starts, alphas)
    i = int(starts[pos])
    tail = float(n - i)
    # the winner's α exactly as weightwatcher sums it (pairwise np.sum), then its D from that α
    alpha = 1.0 + tail / (np.sum(log_x[i:]) - tail * log_x[i]) if x[i] < x[-1] else np.inf
    ks = float(ks_exact(x, np.array([i]), np.array([alpha]))[0][0])
    return _TailFit(start=i, alpha=float(alpha), ks=ks, n_tail=n - i)


def _reference_small_n(x: NDArray[np.float64]) -> _TailFit | None:
    """WWFit.fit_powerlaw_smallN (n < 20) as WWFit.__init__ then uses it.

    Candidates need tails of ≥ 8 points and a log-sum > 1e-12; their α is bias-corrected,
    1 + (n−1)/Σ ln(λ/xmin). The branch ranks them by D − 0.868/√n, but ``WWFit.__init__`` then takes the
    first argmin of D itself (others count as D = 1), so that is what weightwatcher reports. Without any
    valid candidate the whole sample is the tail. None where weightwatcher reports a placeholder α (0).
    """
    n = x.size
    log_x = np.log(x)
    starts = np.arange(n - 1)
    tails = (n - starts).astype(np.float64)
    sums = np.cumsum(log_x[::-1])[::-1][starts] - tails * log_x[starts]
    valid = (tails >= REFERENCE_SMALL_N_MIN_TAIL) & (sums > REFERENCE_SMALL_N_FLAT)
    if not valid.any():  # weightwatcher's fallback: the whole sample is the tail
        valid = starts == 0
        if sums[0] <= REFERENCE_SMALL_N_FLAT:
            return None
    alphas = np.zeros(n - 1)
    distances = np.ones(n - 1)
    alphas[valid] = 1.0 + (tails[valid] - 1.0) / sums[valid]
    distances[valid] = ks_exact(x, starts[valid], alphas[valid])[0]
    i = int(np.argmin(distances))
    if alphas[i] <= 1.0:
        return None
    return _TailFit(start=i, alpha=float(alphas[i]), ks=float(distances[i]), n_tail=n - i)


# ------------------------------------------------------------------------------------------ shared numerics


def _doubts(fit: _TailFit, min_tail: int) -> list[str]:
    """Why a tail fit should not be trusted (empty when it can be)."""
    reasons = []
    if fit.n_tail < min_tail:
        reasons.append(f"tail of {fit.n_tail} eigenvalues is shorter than min_tail={min_tail}")
    if fit.alpha > ALPHA_MAX_RELIABLE:
        reasons.append(f"α={fit.alpha:.3g} > {ALPHA_MAX_RELIABLE:g}: the tail is not heavy-tailed "
                       "(random-like or a bulk edge), so α carries no heavy-tail meaning")
    bar = max(KS_CRITICAL_COEFFICIENT / np.sqrt(fit.n_tail), KS_GROSS)
    if fit.ks > bar:
        reasons.append(f"KS distance {fit.ks:.3g} > {bar:.3g} (max of the 0.1 % critical value for "
                       f"{fit.n_tail} points and {KS_GROSS:g}): the tail is not a power law")
    return reasons


def _record(x: NDArray[np.float64], fit: _TailFit, method: str, min_tail: int, *, n_fingers: int = 0,
            alpha_raw: float | None = None) -> PowerLawFit:
    """The PowerLawFit of a tail fit of sorted eigenvalues ``x``, with its reliability verdict."""
    reasons = _doubts(fit, min_tail)
    if x.size + n_fingers < MIN_EVALS_RELIABLE:
        reasons.insert(0, f"only {x.size + n_fingers} eigenvalues fitted; power-law fits need at least "
                          f"{MIN_EVALS_RELIABLE} (weightwatcher README; NC21 used the same floor)")
    return PowerLawFit(
        alpha=fit.alpha,
        xmin=float(x[fit.start]),
        xmax=float(x[-1]),
        ks_distance=fit.ks,
        alpha_sigma=float((fit.alpha - 1.0) / np.sqrt(fit.n_tail)),
        n_tail=fit.n_tail,
        n_fingers=n_fingers,
        alpha_raw=fit.alpha if alpha_raw is None else alpha_raw,
        method=method,
        reliable=not reasons,
        reason="; ".join(reasons),
    )
