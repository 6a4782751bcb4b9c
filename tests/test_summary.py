"""``summarize_layers`` against values computed by hand from hand-built layer records.

Every number asserted here is written out from the layer values below (no numpy, no code under test), so
a mean divided by n+1, an aggregate over the wrong set of layers or a shifted threshold changes a result.
"""

from __future__ import annotations

import pytest

from scanner.records import (
    PHASE_ORDER,
    LayerResult,
    LayerSpectrum,
    NormMetrics,
    Phase,
    PhaseCall,
    PowerLawFit,
    Status,
)
from scanner.summary import summarize_layers


def _layer(  # noqa: PLR0913 - one keyword per aggregated quantity, spelled out at each call
    index: int,
    *,
    alpha: float | None = None,
    reliable: bool = True,
    weighted: float | None = None,
    alpha_norm: float | None = None,
    log_norm: float = 0.0,
    log_spectral: float = 0.0,
    stable_rank: float = 1.0,
    phase: Phase | None = None,
) -> LayerResult:
    norms = NormMetrics(
        lambda_max=10.0,
        lambda_min=0.1,
        log_norm=log_norm,
        log_spectral_norm=log_spectral,
        stable_rank=stable_rank,
        entropy=0.9,
        alpha_weighted=weighted,
        log_alpha_norm=alpha_norm,
        rank_loss=0,
        n_near_zero=0,
    )
    fit = PowerLawFit(alpha, 1.0, 10.0, 0.05, 0.1, 20, reliable=reliable, reason="" if reliable else "short tail")
    call = PhaseCall(phase, "hand-built") if phase is not None else None
    spectrum = LayerSpectrum(64, 32, 2.0, 1, 32, norms, fit, None, None, call)
    return LayerResult("m", index, f"l{index}", "linear", (64, 32), Status.OK, spectrum=spectrum)


def _not_ok(index: int, status: Status) -> LayerResult:
    return LayerResult("m", index, f"l{index}", "linear", (4, 4), status, reason=status.value)


# Four OK layers (two reliable fits, one unreliable fit, one without a fit), one skipped, one failed.
LAYERS = [
    _layer(0, alpha=3.0, weighted=6.0, alpha_norm=10.0, log_norm=1.0, log_spectral=0.5, stable_rank=4.0,
           phase=Phase.HEAVY_TAILED),
    _layer(1, alpha=1.5, weighted=1.5, alpha_norm=2.0, log_norm=2.0, log_spectral=1.0, stable_rank=2.0,
           phase=Phase.BULK_DECAY),
    _layer(2, alpha=7.0, reliable=False, weighted=14.0, alpha_norm=20.0, log_norm=3.0, log_spectral=2.0,
           stable_rank=6.0, phase=Phase.RANDOM_LIKE),
    _layer(3, log_norm=6.0, log_spectral=2.5, stable_rank=8.0),
    _not_ok(4, Status.SKIPPED),
    _not_ok(5, Status.FAILED),
]


def test_counts():
    s = summarize_layers(LAYERS)
    assert (s.n_layers, s.n_ok, s.n_skipped, s.n_failed) == (6, 4, 1, 1)
    assert s.n_alpha == 2  # reliable fits only


def test_alpha_statistics_over_reliable_fits():
    s = summarize_layers(LAYERS)
    assert s.alpha_mean == pytest.approx((3.0 + 1.5) / 2)  # 2.25; the unreliable 7.0 is left out
    assert s.alpha_median == pytest.approx(2.25)
    assert s.alpha_std == pytest.approx(0.75)  # population std: |3.0 - 2.25|
    assert s.alpha_hat == pytest.approx((6.0 + 1.5) / 2)  # 3.75
    assert s.log_alpha_norm_mean == pytest.approx((10.0 + 2.0) / 2)  # 6.0


def test_norm_means_over_every_ok_layer():
    s = summarize_layers(LAYERS)
    assert s.log_norm_mean == pytest.approx((1.0 + 2.0 + 3.0 + 6.0) / 4)  # 3.0
    assert s.log_spectral_norm_mean == pytest.approx((0.5 + 1.0 + 2.0 + 2.5) / 4)  # 1.5
    assert s.stable_rank_mean == pytest.approx((4.0 + 2.0 + 6.0 + 8.0) / 4)  # 5.0


def test_fractions_over_every_fitted_layer_reliable_or_not():
    s = summarize_layers(LAYERS)
    # fitted α: 3.0, 1.5, 7.0 (the unreliable fit counts here; the layer without a fit does not)
    assert s.frac_alpha_lt2 == pytest.approx(1 / 3)
    assert s.frac_alpha_gt6 == pytest.approx(1 / 3)


def test_phase_counts_in_phase_order_with_zeros():
    s = summarize_layers(LAYERS)
    assert [name for name, _ in s.phase_counts] == [p.value for p in PHASE_ORDER]
    counts = dict(s.phase_counts)
    assert counts == {
        "random_like": 1, "bleeding_out": 0, "bulk_plus_spikes": 0, "bulk_decay": 1, "heavy_tailed": 1,
        "rank_collapse": 0,
    }


def test_thresholds_are_strict():
    layers = [_layer(i, alpha=a, weighted=1.0, alpha_norm=1.0) for i, a in enumerate([2.0, 6.0, 1.999, 6.001])]
    s = summarize_layers(layers)
    assert s.frac_alpha_lt2 == pytest.approx(1 / 4)  # 2.0 is not below 2
    assert s.frac_alpha_gt6 == pytest.approx(1 / 4)  # 6.0 is not above 6


def test_median_is_the_middle_value_and_std_is_population():
    layers = [_layer(i, alpha=a, weighted=a, alpha_norm=a) for i, a in enumerate([1.0, 2.0, 6.0])]
    s = summarize_layers(layers)
    assert s.alpha_mean == pytest.approx(3.0)
    assert s.alpha_median == pytest.approx(2.0)
    assert s.alpha_std == pytest.approx((14 / 3) ** 0.5)  # ((−2)² + (−1)² + 3²) / 3, not / 2
    assert s.frac_alpha_lt2 == pytest.approx(1 / 3)
    assert s.frac_alpha_gt6 == pytest.approx(0.0)


def test_one_alpha_has_no_std_two_have_one():
    one = summarize_layers([_layer(0, alpha=4.0, weighted=2.0, alpha_norm=1.0)])
    assert one.alpha_mean == pytest.approx(4.0) and one.alpha_median == pytest.approx(4.0)
    assert one.alpha_std is None
    two = summarize_layers([_layer(0, alpha=4.0), _layer(1, alpha=4.0)])
    assert two.alpha_std == pytest.approx(0.0)


def test_missing_alpha_weighted_and_alpha_norm_are_skipped_not_zero():
    layers = [_layer(0, alpha=3.0, weighted=6.0, alpha_norm=None), _layer(1, alpha=5.0, weighted=None, alpha_norm=4.0)]
    s = summarize_layers(layers)
    assert s.alpha_mean == pytest.approx(4.0)
    assert s.alpha_hat == pytest.approx(6.0)
    assert s.log_alpha_norm_mean == pytest.approx(4.0)


def test_only_unreliable_fits_give_no_alpha_but_fractions():
    s = summarize_layers([_layer(0, alpha=1.8, reliable=False, weighted=3.0, alpha_norm=2.0, log_norm=2.0)])
    assert s.n_alpha == 0
    assert s.alpha_mean is None and s.alpha_median is None and s.alpha_std is None
    assert s.alpha_hat is None and s.log_alpha_norm_mean is None
    assert s.frac_alpha_lt2 == pytest.approx(1.0) and s.frac_alpha_gt6 == pytest.approx(0.0)
    assert s.log_norm_mean == pytest.approx(2.0)


def test_no_ok_layer_gives_nulls_and_zero_counts():
    s = summarize_layers([_not_ok(0, Status.SKIPPED), _not_ok(1, Status.FAILED), _not_ok(2, Status.FAILED)])
    assert (s.n_layers, s.n_ok, s.n_skipped, s.n_failed, s.n_alpha) == (3, 0, 1, 2, 0)
    for value in (s.alpha_mean, s.alpha_median, s.alpha_std, s.alpha_hat, s.log_alpha_norm_mean, s.log_norm_mean,
                  s.log_spectral_norm_mean, s.stable_rank_mean, s.frac_alpha_lt2, s.frac_alpha_gt6):
        assert value is None
    assert all(count == 0 for _, count in s.phase_counts)


def test_empty_model():
    s = summarize_layers([])
    assert (s.n_layers, s.n_ok, s.n_alpha) == (0, 0, 0)
    assert s.alpha_mean is None and s.frac_alpha_lt2 is None


def test_layers_without_a_fit_only_feed_the_norm_means():
    s = summarize_layers([_layer(0, log_norm=4.0, stable_rank=3.0), _layer(1, log_norm=2.0, stable_rank=5.0)])
    assert s.n_ok == 2 and s.n_alpha == 0
    assert s.frac_alpha_lt2 is None and s.frac_alpha_gt6 is None
    assert s.log_norm_mean == pytest.approx(3.0) and s.stable_rank_mean == pytest.approx(4.0)


def test_an_ok_layer_without_a_spectrum_is_not_counted_as_ok():
    bare = LayerResult("m", 0, "l0", "linear", (4, 4), Status.OK)
    s = summarize_layers([bare, _layer(1, alpha=2.5, weighted=1.0, alpha_norm=1.0, log_norm=1.0)])
    assert s.n_layers == 2 and s.n_ok == 1
    assert s.log_norm_mean == pytest.approx(1.0)
