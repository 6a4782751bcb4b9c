"""The 5+1 Phases of Training (Martin & Mahoney, ICML 2019; JMLR 2021 Table 4) as a table of rules.

A layer's ESD is summarised by a few scale-free features (:class:`PhaseFeatures`); the rules in
:data:`RULES` are tried in order and the first that holds names the phase. Each rule carries the sentence
that becomes the row's ``phase_reason``. Thresholds are module constants, chosen from the papers where they
give numbers and calibrated on the seeded generators of ``scanner.spectra.synthetic`` where they do not
(tests/test_phases.py prints the confusion matrix):

- the Tracy–Widom-corrected MP edge λ⁺_TW decides what is a spike (``scanner.spectra.mp``);
- spike fractions follow the MiniAlexNet batch-size study (docs/decisions.md, "Phase thresholds"): 0 % random-like,
  1–2.5 % bleeding-out / bulk+spikes, 5–13 % bulk-decay, "MP cannot fit" heavy-tailed;
- extents follow the ICML 2019 poster: bulk+spikes reach ~3× the edge, bulk-decay a shoulder to ~2–3×,
  heavy-tailed 8× and beyond (the poster's ~20+ in units where the edge is ~2–4);
- outliers that survive shuffling W's entries come from heavy-tailed entries, the i.i.d. Pareto model of
  the Heavy-Tailed universality class (JMLR §4); learned correlations do not survive it (JMLR §5);
- α < 2 (from a reliable fit) flags a Heavy-Tailed layer as very heavy-tailed ("over-trained"; SETOL;
  weightwatcher's warning threshold); it does not change the phase, and other phases are never flagged.

Phase order of increasing implicit self-regularisation: Random-like → Bleeding-out → Bulk+Spikes →
Bulk-decay → Heavy-Tailed; Rank-collapse stands apart (over-regularisation, a peak at λ ≈ 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from scanner.records import MPFit, Phase, PhaseCall, PowerLawFit, RandomizationResult

RANK_COLLAPSE_FRACTION = 0.10  # near-zero eigenvalues (λ ≤ 1e-6 × upper bulk) that make a "large peak at 0"
HEAVY_SPIKE_FRACTION = 0.15  # MP misses this share of the eigenvalues: it cannot fit the ESD
HEAVY_EXTENT = 8.0  # λ_max / λ⁺_TW of a tail that is heavy by extent alone
SPIKE_GAP = 1.5  # smallest outlier / largest bulk eigenvalue above which spikes stand apart from the bulk
FEW_SPIKES_FRACTION = 0.05  # at most this share of outliers for bleeding-out / bulk+spikes
FRINGE_EXTENT = 2.0  # bleeding-out outliers stay within this factor of λ⁺_TW
MIN_TRAPS = 2  # outliers of the shuffled matrix needed to call the entries themselves heavy-tailed
TRAP_SHARE = 0.5  # ... and at least this share of the outliers of W must survive shuffling
VERY_HEAVY_ALPHA = 2.0  # α below this: very heavy-tailed / over-trained flag


@dataclass(frozen=True)
class PhaseFeatures:
    """Scale-free summary of one ESD used by the rules.

    Attributes:
        n_evals: eigenvalues in the ESD.
        near_zero_fraction: share of eigenvalues in the peak at λ ≈ 0.
        n_spikes: eigenvalues above the TW-corrected MP edge λ⁺_TW.
        spike_fraction: n_spikes / the eigenvalues outside the near-zero peak (those the MP fit saw).
        extent: λ_max / λ⁺_TW (< 1 when nothing leaves the bulk).
        gap: smallest outlier / largest bulk eigenvalue (1.0 when there are no outliers).
        bulk_ks: KS distance of the bulk to the fitted MP law.
        alpha: power-law exponent when the fit is reliable, else None.
        n_traps: outliers of the element-shuffled matrix's ESD (None when the randomization test was not run).
    """

    n_evals: int
    near_zero_fraction: float
    n_spikes: int
    spike_fraction: float
    extent: float
    gap: float
    bulk_ks: float
    alpha: float | None
    n_traps: int | None = None


def phase_features(
    evals: NDArray[np.floating],
    mp: MPFit,
    power_law: PowerLawFit,
    n_near_zero: int,
    randomization: RandomizationResult | None = None,
) -> PhaseFeatures:
    """Compute :class:`PhaseFeatures` from an ESD and its fits."""
    lam = np.sort(np.asarray(evals, dtype=np.float64))
    outliers = lam[lam > mp.lambda_plus_tw]
    bulk = lam[lam <= mp.lambda_plus_tw]
    gap = 1.0
    if outliers.size and bulk.size and bulk[-1] > 0:
        gap = float(outliers[0] / bulk[-1])
    return PhaseFeatures(
        n_evals=int(lam.size),
        near_zero_fraction=n_near_zero / lam.size,
        n_spikes=mp.n_spikes,
        spike_fraction=mp.n_spikes / max(1, lam.size - n_near_zero),
        extent=float(lam[-1] / mp.lambda_plus_tw) if mp.lambda_plus_tw > 0 else float("inf"),
        gap=gap,
        bulk_ks=mp.bulk_ks,
        alpha=power_law.alpha if power_law.reliable else None,
        n_traps=randomization.n_traps if randomization is not None else None,
    )


@dataclass(frozen=True)
class Rule:
    """One row of the phase table: if ``holds(features)``, the layer is in ``phase`` because ``because``."""

    name: str
    phase: Phase
    holds: Callable[[PhaseFeatures], bool]
    because: Callable[[PhaseFeatures], str]


RULES: tuple[Rule, ...] = (
    Rule(
        "near_zero_peak",
        Phase.RANK_COLLAPSE,
        lambda f: f.near_zero_fraction >= RANK_COLLAPSE_FRACTION,
        lambda f: f"{f.near_zero_fraction:.0%} of eigenvalues sit in a peak at λ≈0 "
        f"(≥ {RANK_COLLAPSE_FRACTION:.0%}): the matrix has lost rank",
    ),
    Rule(
        "mp_cannot_fit",
        Phase.HEAVY_TAILED,
        lambda f: f.spike_fraction >= HEAVY_SPIKE_FRACTION,
        lambda f: f"{f.spike_fraction:.0%} of eigenvalues lie beyond the MP edge (≥ {HEAVY_SPIKE_FRACTION:.0%}): "
        "no MP bulk describes the ESD",
    ),
    Rule(
        "long_continuous_tail",
        Phase.HEAVY_TAILED,
        lambda f: f.extent >= HEAVY_EXTENT and f.gap < SPIKE_GAP,
        lambda f: f"a continuous tail reaches {f.extent:.1f}× the MP edge (≥ {HEAVY_EXTENT:g}×)",
    ),
    Rule(
        "heavy_tailed_entries",
        Phase.HEAVY_TAILED,
        lambda f: f.n_traps is not None and f.n_traps >= MIN_TRAPS and f.n_traps >= TRAP_SHARE * f.n_spikes,
        lambda f: (f"{f.n_traps} of {f.n_spikes} outliers survive shuffling the entries"
                   if (f.n_traps or 0) <= f.n_spikes else  # the shuffled matrix can have more outliers than W
                   f"the entry-shuffled matrix has {f.n_traps} outliers, W has {f.n_spikes}")
        + ": the tail comes from heavy-tailed entries (the i.i.d. Pareto universality class)",
    ),
    Rule(
        "no_outliers",
        Phase.RANDOM_LIKE,
        lambda f: f.n_spikes == 0,
        lambda f: f"no eigenvalue beyond the Tracy–Widom-corrected MP edge (λ_max = {f.extent:.2f}× edge)",
    ),
    Rule(
        "separated_spikes",
        Phase.BULK_PLUS_SPIKES,
        lambda f: f.gap >= SPIKE_GAP and f.spike_fraction <= FEW_SPIKES_FRACTION,
        lambda f: f"{f.n_spikes} spike(s) stand apart from an MP bulk (gap {f.gap:.1f}×, up to {f.extent:.1f}× edge)",
    ),
    Rule(
        "thin_fringe",
        Phase.BLEEDING_OUT,
        lambda f: f.spike_fraction <= FEW_SPIKES_FRACTION and f.extent < FRINGE_EXTENT,
        lambda f: f"{f.n_spikes} eigenvalue(s) ({f.spike_fraction:.1%}) bleed just past the MP edge "
        f"(up to {f.extent:.2f}×)",
    ),
    Rule(
        "decaying_shoulder",
        Phase.BULK_DECAY,
        lambda f: f.spike_fraction > FEW_SPIKES_FRACTION,
        lambda f: f"a shoulder of {f.spike_fraction:.1%} of eigenvalues decays from the MP edge to "
        f"{f.extent:.1f}× it",
    ),
    Rule(
        "short_continuous_tail",
        Phase.HEAVY_TAILED,
        lambda f: True,
        lambda f: f"a few outliers ({f.spike_fraction:.1%}) form a continuous tail to {f.extent:.1f}× the MP edge",
    ),
)


def classify(features: PhaseFeatures) -> PhaseCall:
    """The phase of the first rule in :data:`RULES` that holds, with its reason and, for a Heavy-Tailed
    layer whose reliable power-law fit has α < 2, the "very heavy-tailed" flag."""
    for rule in RULES:
        if rule.holds(features):
            reason = rule.because(features)
            very_heavy = (
                rule.phase is Phase.HEAVY_TAILED and features.alpha is not None and features.alpha < VERY_HEAVY_ALPHA
            )
            if very_heavy:
                reason += f"; α = {features.alpha:.2f} < {VERY_HEAVY_ALPHA:g}: very heavy-tailed"
            return PhaseCall(phase=rule.phase, reason=reason, very_heavy_tailed=very_heavy, rule=rule.name)
    raise AssertionError("the last rule always holds")  # pragma: no cover


def classify_spectrum(
    evals: NDArray[np.floating],
    mp: MPFit,
    power_law: PowerLawFit,
    n_near_zero: int,
    randomization: RandomizationResult | None = None,
) -> PhaseCall:
    """Convenience: :func:`phase_features` then :func:`classify`."""
    return classify(phase_features(evals, mp, power_law, n_near_zero, randomization))
