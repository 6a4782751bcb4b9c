"""Every phase rule exactly at its threshold and one float step to either side, and ``phase_features`` on
hand-built eigenvalues and fits.

The rule ids are asserted, not only the phase, because several rules name the same phase (Heavy-Tailed).
A ``>=`` turned into ``>`` (or ``<`` into ``<=``) moves the exact-threshold case to a different rule.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from scanner import phases
from scanner.phases import (
    FEW_SPIKES_FRACTION,
    FRINGE_EXTENT,
    HEAVY_EXTENT,
    HEAVY_SPIKE_FRACTION,
    MIN_TRAPS,
    RANK_COLLAPSE_FRACTION,
    SPIKE_GAP,
    TRAP_SHARE,
    VERY_HEAVY_ALPHA,
    PhaseFeatures,
    classify,
    classify_spectrum,
    phase_features,
)
from scanner.records import MPFit, Phase, PowerLawFit, RandomizationResult


def below(x: float) -> float:
    return math.nextafter(x, -math.inf)


def above(x: float) -> float:
    return math.nextafter(x, math.inf)


def feats(**kw) -> PhaseFeatures:
    """A layer with a few spikes, a short continuous tail and no other signal; override what the case needs."""
    base = {"n_evals": 100, "near_zero_fraction": 0.0, "n_spikes": 3, "spike_fraction": 0.03, "extent": 3.0,
            "gap": 1.0, "bulk_ks": 0.01, "alpha": None, "n_traps": None}
    return PhaseFeatures(**{**base, **kw})


def rule_of(**kw) -> str:
    return classify(feats(**kw)).rule


def test_the_base_case_is_the_fallback_rule():
    assert rule_of() == "short_continuous_tail"


def test_the_thresholds_are_the_documented_numbers():
    assert (RANK_COLLAPSE_FRACTION, HEAVY_SPIKE_FRACTION, HEAVY_EXTENT, SPIKE_GAP) == (0.10, 0.15, 8.0, 1.5)
    assert (FEW_SPIKES_FRACTION, FRINGE_EXTENT, MIN_TRAPS, TRAP_SHARE, VERY_HEAVY_ALPHA) == (0.05, 2.0, 2, 0.5, 2.0)


def test_near_zero_peak_boundary():
    assert rule_of(near_zero_fraction=RANK_COLLAPSE_FRACTION) == "near_zero_peak"
    assert rule_of(near_zero_fraction=above(RANK_COLLAPSE_FRACTION)) == "near_zero_peak"
    assert rule_of(near_zero_fraction=below(RANK_COLLAPSE_FRACTION)) == "short_continuous_tail"
    call = classify(feats(near_zero_fraction=RANK_COLLAPSE_FRACTION))
    assert call.phase is Phase.RANK_COLLAPSE


def test_mp_cannot_fit_boundary():
    assert rule_of(spike_fraction=HEAVY_SPIKE_FRACTION) == "mp_cannot_fit"
    assert rule_of(spike_fraction=above(HEAVY_SPIKE_FRACTION)) == "mp_cannot_fit"
    assert rule_of(spike_fraction=below(HEAVY_SPIKE_FRACTION)) == "decaying_shoulder"


def test_long_continuous_tail_extent_boundary():
    assert rule_of(extent=HEAVY_EXTENT) == "long_continuous_tail"
    assert rule_of(extent=above(HEAVY_EXTENT)) == "long_continuous_tail"
    assert rule_of(extent=below(HEAVY_EXTENT)) == "short_continuous_tail"


def test_long_continuous_tail_gap_boundary():
    assert rule_of(extent=10.0, gap=below(SPIKE_GAP)) == "long_continuous_tail"
    assert rule_of(extent=10.0, gap=SPIKE_GAP) == "separated_spikes"  # a gap of exactly 1.5 separates


def test_heavy_tailed_entries_min_traps_boundary():
    assert rule_of(n_spikes=2, n_traps=MIN_TRAPS) == "heavy_tailed_entries"
    assert rule_of(n_spikes=2, n_traps=MIN_TRAPS - 1) == "short_continuous_tail"
    assert rule_of(n_spikes=2, n_traps=None) == "short_continuous_tail"


def test_heavy_tailed_entries_share_boundary():
    assert rule_of(n_spikes=4, n_traps=2) == "heavy_tailed_entries"  # 2 = 0.5 × 4 exactly
    assert rule_of(n_spikes=5, n_traps=2) == "short_continuous_tail"  # 2 < 0.5 × 5
    assert rule_of(n_spikes=6, n_traps=3) == "heavy_tailed_entries"
    assert rule_of(n_spikes=7, n_traps=3) == "short_continuous_tail"


def test_heavy_tailed_entries_comes_after_the_mp_rules_and_before_no_outliers():
    assert rule_of(spike_fraction=0.5, n_traps=9, n_spikes=9) == "mp_cannot_fit"
    assert rule_of(n_spikes=0, spike_fraction=0.0, n_traps=MIN_TRAPS) == "heavy_tailed_entries"


def test_no_outliers_boundary():
    assert rule_of(n_spikes=0, spike_fraction=0.0, extent=0.9) == "no_outliers"
    assert rule_of(n_spikes=1, spike_fraction=0.01, extent=1.1) == "thin_fringe"
    assert classify(feats(n_spikes=0, spike_fraction=0.0, extent=0.9)).phase is Phase.RANDOM_LIKE


def test_separated_spikes_gap_boundary():
    assert rule_of(gap=SPIKE_GAP) == "separated_spikes"
    assert rule_of(gap=above(SPIKE_GAP)) == "separated_spikes"
    assert rule_of(gap=below(SPIKE_GAP)) == "short_continuous_tail"


def test_separated_spikes_fraction_boundary():
    assert rule_of(gap=2.0, spike_fraction=FEW_SPIKES_FRACTION) == "separated_spikes"
    assert rule_of(gap=2.0, spike_fraction=above(FEW_SPIKES_FRACTION)) == "decaying_shoulder"
    assert classify(feats(gap=2.0)).phase is Phase.BULK_PLUS_SPIKES


def test_thin_fringe_extent_boundary():
    assert rule_of(extent=below(FRINGE_EXTENT)) == "thin_fringe"
    assert rule_of(extent=FRINGE_EXTENT) == "short_continuous_tail"
    assert classify(feats(extent=1.5)).phase is Phase.BLEEDING_OUT


def test_thin_fringe_fraction_boundary():
    assert rule_of(extent=1.5, spike_fraction=FEW_SPIKES_FRACTION) == "thin_fringe"
    assert rule_of(extent=1.5, spike_fraction=above(FEW_SPIKES_FRACTION)) == "decaying_shoulder"


def test_decaying_shoulder_boundary():
    assert rule_of(spike_fraction=FEW_SPIKES_FRACTION) == "short_continuous_tail"
    assert rule_of(spike_fraction=above(FEW_SPIKES_FRACTION)) == "decaying_shoulder"
    assert classify(feats(spike_fraction=0.1)).phase is Phase.BULK_DECAY


def test_rule_phases():
    expected = {
        "near_zero_peak": Phase.RANK_COLLAPSE, "mp_cannot_fit": Phase.HEAVY_TAILED,
        "long_continuous_tail": Phase.HEAVY_TAILED, "heavy_tailed_entries": Phase.HEAVY_TAILED,
        "no_outliers": Phase.RANDOM_LIKE, "separated_spikes": Phase.BULK_PLUS_SPIKES,
        "thin_fringe": Phase.BLEEDING_OUT, "decaying_shoulder": Phase.BULK_DECAY,
        "short_continuous_tail": Phase.HEAVY_TAILED,
    }
    assert {rule.name: rule.phase for rule in phases.RULES} == expected
    assert [rule.name for rule in phases.RULES] == list(expected)


def test_very_heavy_flag_boundary():
    flagged = classify(feats(alpha=below(VERY_HEAVY_ALPHA)))
    assert flagged.phase is Phase.HEAVY_TAILED and flagged.very_heavy_tailed
    assert "very heavy-tailed" in flagged.reason
    at = classify(feats(alpha=VERY_HEAVY_ALPHA))
    assert not at.very_heavy_tailed and "very heavy" not in at.reason
    assert not classify(feats(alpha=None)).very_heavy_tailed


def test_very_heavy_flag_only_on_heavy_tailed_layers():
    call = classify(feats(extent=1.5, alpha=1.2))  # bleeding out with a small α
    assert call.phase is Phase.BLEEDING_OUT and not call.very_heavy_tailed


def test_reasons_quote_the_numbers():
    assert "50% of eigenvalues sit in a peak" in classify(feats(near_zero_fraction=0.5)).reason
    assert "20% of eigenvalues lie beyond the MP edge" in classify(feats(spike_fraction=0.2)).reason
    assert "12.0× the MP edge" in classify(feats(extent=12.0)).reason
    assert "3 of 4 outliers survive" in classify(feats(n_spikes=4, n_traps=3)).reason
    assert "4 of 4 outliers survive" in classify(feats(n_spikes=4, n_traps=4)).reason
    more = classify(feats(n_spikes=4, n_traps=5)).reason
    assert "the entry-shuffled matrix has 5 outliers, W has 4" in more and "heavy-tailed entries" in more
    assert "gap 2.0×" in classify(feats(gap=2.0)).reason


# --- phase_features on a hand-built ESD -------------------------------------------------------------

EDGE = 2.0
MP = MPFit(scale=1.0, lambda_minus=0.1, lambda_plus=1.8, lambda_plus_tw=EDGE, n_spikes=3, softrank=0.2,
           bulk_ks=0.07, bulk_fraction=0.7, q=2.0)
FIT = PowerLawFit(alpha=3.5, xmin=1.0, xmax=9.0, ks_distance=0.05, alpha_sigma=0.1, n_tail=5)
# ten eigenvalues, unsorted: two near zero, five in the bulk (one exactly at the edge), three outliers
EVALS = np.array([9.0, 1e-9, 0.5, EDGE, 3.0, 1.0, 0.0, 1.5, 4.0, 0.8])


def test_phase_features_by_hand():
    f = phase_features(EVALS, MP, FIT, n_near_zero=2)
    assert f.n_evals == 10
    assert f.near_zero_fraction == pytest.approx(0.2)
    assert f.n_spikes == 3  # taken from the MP fit
    assert f.spike_fraction == pytest.approx(3 / 8)  # spikes / eigenvalues outside the near-zero peak
    assert f.extent == pytest.approx(9.0 / EDGE)
    assert f.gap == pytest.approx(3.0 / EDGE)  # smallest outlier over the largest bulk value (the edge itself)
    assert f.bulk_ks == pytest.approx(0.07)
    assert f.alpha == pytest.approx(3.5)
    assert f.n_traps is None


def test_phase_features_alpha_only_when_reliable_and_traps_from_randomization():
    unreliable = PowerLawFit(3.5, 1.0, 9.0, 0.05, 0.1, 5, reliable=False, reason="short")
    rand = RandomizationResult(seed=0, lambda_max_rand=2.0, n_traps=4, rand_distance=0.1, softrank=0.2)
    f = phase_features(EVALS, MP, unreliable, n_near_zero=0, randomization=rand)
    assert f.alpha is None
    assert f.n_traps == 4
    assert f.spike_fraction == pytest.approx(3 / 10)
    assert f.near_zero_fraction == 0.0


def test_phase_features_without_outliers_or_bulk():
    f = phase_features(np.array([0.5, 1.0, 1.5]), MP, FIT, n_near_zero=0)
    assert f.gap == 1.0
    assert f.extent == pytest.approx(1.5 / EDGE)
    all_out = phase_features(np.array([3.0, 4.0]), MP, FIT, n_near_zero=0)
    assert all_out.gap == 1.0  # no bulk eigenvalue to compare with
    zero_bulk = phase_features(np.array([0.0, 3.0]), MP, FIT, n_near_zero=1)
    assert zero_bulk.gap == 1.0  # the largest bulk value is 0: no ratio
    small_bulk = phase_features(np.array([0.5, 3.0]), MP, FIT, n_near_zero=0)
    assert small_bulk.gap == pytest.approx(6.0)  # any positive bulk value gives a ratio


def test_phase_features_all_near_zero_does_not_divide_by_zero():
    f = phase_features(np.array([0.0, 0.0]), MP, FIT, n_near_zero=2)
    assert f.spike_fraction == pytest.approx(3 / 1)
    assert f.near_zero_fraction == 1.0


def test_phase_features_zero_edge_gives_infinite_extent():
    zero_edge = MPFit(1.0, 0.0, 0.0, 0.0, 1, 0.0, 0.0, 0.0, 1.0)
    f = phase_features(np.array([0.0, 1.0]), zero_edge, FIT, n_near_zero=0)
    assert f.extent == math.inf
    all_zero = phase_features(np.array([0.0, 0.0]), zero_edge, FIT, n_near_zero=2)
    assert all_zero.extent == math.inf  # defined as inf, not 0/0


def test_classify_spectrum_is_features_then_classify():
    rand = RandomizationResult(seed=0, lambda_max_rand=2.0, n_traps=3, rand_distance=0.1, softrank=0.2)
    call = classify_spectrum(EVALS, MP, FIT, 0, rand)
    # spike_fraction 0.3 ≥ 0.15 comes before the trap rule
    assert call.rule == "mp_cannot_fit"
    few = MPFit(1.0, 0.1, 1.8, EDGE, 1, 0.2, 0.07, 0.7, 2.0)
    evals = np.concatenate([np.linspace(0.1, 1.9, 99), [2.5]])
    assert classify_spectrum(evals, few, FIT, 0).rule == "thin_fringe"  # 1 % of outliers, extent 1.25
    assert classify_spectrum(evals, few, FIT, 0, rand).rule == "heavy_tailed_entries"
