"""Model-level aggregates over layer results (pure; the definitions of every ``models`` column).

Only layers with status OK are averaged; skipped and failed layers are counted, never averaged.
- alpha_mean / alpha_median / alpha_std: over OK layers whose power-law fit is *reliable*.
- alpha_hat (α̂, "weighted alpha", Martin, Peng & Mahoney, Nat. Commun. 2021): mean of α·log10 λ_max over
  the same layers.
- log_alpha_norm_mean: mean of log10 Σλ^α over the same layers.
- log_norm_mean, log_spectral_norm_mean, stable_rank_mean: over all OK layers (they need no fit).
- frac_alpha_lt2 / frac_alpha_gt6: among OK layers with a fitted α (reliable or not), the share below 2
  ("over-trained") or above 6 ("under-trained"), the reference tool's warning thresholds.
- phase_counts: OK layers per phase, in ``PHASE_ORDER``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from scanner.records import PHASE_ORDER, LayerResult, ModelSummary, Status


def _mean(values: Sequence[float]) -> float | None:
    return float(statistics.fmean(values)) if values else None


def summarize_layers(layers: Sequence[LayerResult]) -> ModelSummary:
    """Aggregate a model's layer results (see the module docstring for each definition)."""
    ok = [layer for layer in layers if layer.status is Status.OK and layer.spectrum is not None]
    spectra = [layer.spectrum for layer in ok if layer.spectrum is not None]
    fitted = [s for s in spectra if s.power_law.alpha is not None]
    reliable = [s for s in fitted if s.power_law.reliable]
    alphas = [float(s.power_law.alpha) for s in reliable if s.power_law.alpha is not None]
    weighted = [s.norms.alpha_weighted for s in reliable if s.norms.alpha_weighted is not None]
    alpha_norms = [s.norms.log_alpha_norm for s in reliable if s.norms.log_alpha_norm is not None]
    any_alpha = [float(s.power_law.alpha) for s in fitted if s.power_law.alpha is not None]
    counts = dict.fromkeys(PHASE_ORDER, 0)
    for s in spectra:
        if s.phase is not None:
            counts[s.phase.phase] += 1
    return ModelSummary(
        n_layers=len(layers),
        n_ok=len(ok),
        n_skipped=sum(layer.status is Status.SKIPPED for layer in layers),
        n_failed=sum(layer.status is Status.FAILED for layer in layers),
        n_alpha=len(alphas),
        alpha_mean=_mean(alphas),
        alpha_median=float(statistics.median(alphas)) if alphas else None,
        alpha_std=float(statistics.pstdev(alphas)) if len(alphas) > 1 else None,
        alpha_hat=_mean(weighted),
        log_alpha_norm_mean=_mean(alpha_norms),
        log_norm_mean=_mean([s.norms.log_norm for s in spectra]),
        log_spectral_norm_mean=_mean([s.norms.log_spectral_norm for s in spectra]),
        stable_rank_mean=_mean([s.norms.stable_rank for s in spectra]),
        frac_alpha_lt2=(sum(a < 2.0 for a in any_alpha) / len(any_alpha)) if any_alpha else None,
        frac_alpha_gt6=(sum(a > 6.0 for a in any_alpha) / len(any_alpha)) if any_alpha else None,
        phase_counts=tuple((phase.value, counts[phase]) for phase in PHASE_ORDER),
    )
