"""Seeded synthetic weight matrices with a known phase: the ground truth for the classifier's tests.

Each generator returns a :class:`SyntheticMatrix` holding W (N×M, N ≥ M, float64), the phase it was built to
show, and its parameters. Models (Martin & Mahoney JMLR 2021 §3–4; Baik, Ben Arous & Péché 2005 for BBP):

- random_like:       i.i.d. Gaussian entries — the whole ESD is Marchenko–Pastur.
- bleeding_out:      spiked covariance W = Z·C^(1/2), C = I + Σ β_i v_i v_iᵀ, with a few β_i just above the
                     BBP threshold √y (y = M/N): eigenvalues leave the bulk and sit just past its edge, at
                     λ = s(1 + β)(1 + y/β).
- bulk_plus_spikes:  the same with a few strong spikes (outliers at 2–8× the bulk edge), a clean MP bulk.
- bulk_decay:        a population covariance whose top 12 % of directions decay smoothly from ~6× to ~1.2×
                     the threshold: no isolated spikes, a continuous shoulder beyond the MP edge.
- heavy_tailed:      i.i.d. symmetric Pareto (tail index μ) or Student-t (ν = μ) entries; for μ < 2 the ESD
                     tail is a power law with α = μ/2 + 1 < 2 ("very heavy-tailed").
- rank_collapse:     a rank-r product (r ≤ M/2) plus noise 1e-4 of its scale: a large peak of λ ≈ 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from scanner.records import Phase


@dataclass(frozen=True)
class SyntheticMatrix:
    """A generated matrix and the phase it was built to show."""

    matrix: NDArray[np.float64]
    phase: Phase
    name: str
    params: dict[str, float] = field(default_factory=dict)


def _shape_ok(n: int, m: int) -> None:
    if n < m or m < 2:
        raise ValueError(f"synthetic matrices need N >= M >= 2; got N={n}, M={m}")


def random_like(n: int, m: int, seed: int) -> SyntheticMatrix:
    """i.i.d. N(0, 1/N) entries."""
    _shape_ok(n, m)
    w = np.random.default_rng(seed).standard_normal((n, m)) / np.sqrt(n)
    return SyntheticMatrix(w, Phase.RANDOM_LIKE, "gaussian")


def spiked_covariance(n: int, m: int, betas: NDArray[np.float64], seed: int) -> NDArray[np.float64]:
    """W = Z·C^(1/2) with Z i.i.d. N(0, 1/N) and C = I + Σ β_i v_i v_iᵀ for random orthonormal v_i."""
    _shape_ok(n, m)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, m)) / np.sqrt(n)
    basis, _ = np.linalg.qr(rng.standard_normal((m, len(betas))))
    # C^(1/2) = I + Σ (√(1+β_i) − 1) v_i v_iᵀ for orthonormal v_i
    root = np.eye(m) + (basis * (np.sqrt(1.0 + betas) - 1.0)) @ basis.T
    return z @ root


def bbp_threshold(n: int, m: int) -> float:
    """Spike strength above which an outlier separates from the bulk: β_c = √(M/N)."""
    return float(np.sqrt(m / n))


def bleeding_out(n: int, m: int, seed: int) -> SyntheticMatrix:
    """About 2 % of directions (at least 2) with β between 2.5 and 4 times the BBP threshold."""
    k = max(2, int(round(0.02 * m)))
    betas = bbp_threshold(n, m) * np.random.default_rng(seed + 7).uniform(2.5, 4.0, size=k)
    return SyntheticMatrix(spiked_covariance(n, m, betas, seed), Phase.BLEEDING_OUT, "weak_spikes", {"k": k})


def bulk_plus_spikes(n: int, m: int, seed: int) -> SyntheticMatrix:
    """About 1.5 % of directions (at least 1) with outliers between 2 and 8 times the bulk edge."""
    k = max(1, int(round(0.015 * m)))
    y = m / n
    edge = (1.0 + np.sqrt(y)) ** 2
    targets = edge * np.random.default_rng(seed + 11).uniform(2.0, 8.0, size=k)
    # invert λ = (1 + β)(1 + y/β) for β above threshold: β² + (1 + y − λ)β + y = 0, larger root
    b = 1.0 + y - targets
    betas = (-b + np.sqrt(b * b - 4.0 * y)) / 2.0
    return SyntheticMatrix(spiked_covariance(n, m, betas, seed), Phase.BULK_PLUS_SPIKES, "strong_spikes", {"k": k})


def bulk_decay(n: int, m: int, seed: int) -> SyntheticMatrix:
    """The top 12 % of directions with β decaying geometrically from 6× to 1.2× the BBP threshold."""
    k = max(4, int(round(0.12 * m)))
    betas = bbp_threshold(n, m) * np.geomspace(6.0, 1.2, k)
    return SyntheticMatrix(spiked_covariance(n, m, betas, seed), Phase.BULK_DECAY, "decaying_shoulder", {"k": k})


def pareto_entries(n: int, m: int, mu: float, seed: int) -> NDArray[np.float64]:
    """i.i.d. symmetric classical Pareto entries: sign·(Pareto(μ) + 1), x_m = 1 (docs/decisions.md, "Synthetic heavy-tailed matrices")."""
    rng = np.random.default_rng(seed)
    sign = rng.choice([-1.0, 1.0], size=(n, m))
    return sign * (rng.pareto(mu, size=(n, m)) + 1.0)


def heavy_tailed(n: int, m: int, seed: int, mu: float = 2.5, family: str = "pareto") -> SyntheticMatrix:
    """i.i.d. heavy-tailed entries with tail index μ: ``family`` "pareto" or "student_t" (ν = μ)."""
    _shape_ok(n, m)
    if family == "pareto":
        w = pareto_entries(n, m, mu, seed)
    elif family == "student_t":
        w = np.random.default_rng(seed).standard_t(mu, size=(n, m))
    else:
        raise ValueError(f"the 'family' option must be 'pareto' or 'student_t'; got {family!r}")
    return SyntheticMatrix(w, Phase.HEAVY_TAILED, f"{family}_mu{mu:g}", {"mu": mu})


def rank_collapse(n: int, m: int, seed: int, rank_fraction: float = 0.25) -> SyntheticMatrix:
    """A rank-r product A·B (r = rank_fraction·M) plus i.i.d. noise 1e-4 of its entry scale."""
    _shape_ok(n, m)
    rng = np.random.default_rng(seed)
    r = max(1, int(round(rank_fraction * m)))
    low = rng.standard_normal((n, r)) @ rng.standard_normal((r, m)) / np.sqrt(n * r)
    noise = 1e-4 * rng.standard_normal((n, m)) / np.sqrt(n)
    return SyntheticMatrix(low + noise, Phase.RANK_COLLAPSE, "low_rank_plus_noise", {"rank": r})


GENERATORS = {
    Phase.RANDOM_LIKE: random_like,
    Phase.BLEEDING_OUT: bleeding_out,
    Phase.BULK_PLUS_SPIKES: bulk_plus_spikes,
    Phase.BULK_DECAY: bulk_decay,
    Phase.HEAVY_TAILED: heavy_tailed,
    Phase.RANK_COLLAPSE: rank_collapse,
}
