"""How well a model-level metric predicts a published one within a group of models: Kendall τ, Spearman ρ,
and the least-squares line with its R².

Pure functions over plain sequences; ``scipy.stats`` computes τ (variant b, ties handled) and ρ. A group
needs at least ``MIN_MODELS`` models with both values for a correlation; fewer give ``None`` fields, and
the report says so instead of drawing a line through two points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_MODELS = 3


@dataclass(frozen=True)
class Association:
    """Agreement between a metric x and a published value y over ``n`` models of one group.

    Attributes:
        n: models with both values.
        kendall_tau, spearman_rho: rank correlations of x with y (None when n < MIN_MODELS or x or y is
            constant).
        slope, intercept: least-squares line y = slope·x + intercept (None as above).
        r2: coefficient of determination of that line (the square of Pearson's r).
        agreement: τ signed so that positive means "the metric orders models the way the published value
            does": ``kendall_tau · direction`` where direction is −1 for a metric whose lower values predict
            a better model (α, α̂, norms) when higher published values are better, and flips again when the
            published value is lower-is-better (an error rate, a perplexity).
    """

    n: int
    kendall_tau: float | None = None
    spearman_rho: float | None = None
    slope: float | None = None
    intercept: float | None = None
    r2: float | None = None
    agreement: float | None = None


def associate(x: Sequence[float | None], y: Sequence[float | None], *, metric_lower_is_better: bool = True,
              published_higher_is_better: bool = True) -> Association:
    """τ, ρ, the fitted line and R² of ``y`` against ``x`` (pairs with a missing or non-finite value dropped)."""
    from scipy import stats

    pairs = [(float(a), float(b)) for a, b in zip(x, y, strict=True)
             if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
    n = len(pairs)
    if n < MIN_MODELS:
        return Association(n)
    xs, ys = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return Association(n)
    tau = float(stats.kendalltau(xs, ys).statistic)
    rho = float(stats.spearmanr(xs, ys).statistic)
    slope, intercept = np.polyfit(xs, ys, 1)
    r = float(np.corrcoef(xs, ys)[0, 1])
    direction = (-1.0 if metric_lower_is_better else 1.0) * (1.0 if published_higher_is_better else -1.0)
    return Association(n, tau, rho, float(slope), float(intercept), r * r, tau * direction)


def ranks(values: Sequence[float | None], *, higher_is_better: bool) -> list[int | None]:
    """1-based ranks (1 = best; ties share the better rank); None stays None."""
    present = sorted({v for v in values if v is not None}, reverse=higher_is_better)
    first = {}
    position = 1
    for value in present:
        first[value] = position
        position += sum(1 for v in values if v == value)
    return [None if v is None else first[v] for v in values]
