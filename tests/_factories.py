"""Seeded synthetic records for store/query tests and the store benchmarks (no scan pipeline needed).

Values are drawn from a seeded generator; every optional part (MP fit, randomization, phase) can be
switched off so tests can check that missing parts become nulls. ``norm_metrics`` and ``phase_counts`` are
also what ``bench/bench_report_scale.py`` builds its zoo with.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from scanner import records as rec
from scanner.records import LayerResult, Status
from scanner.scan import LayerEigenvalues

KINDS = ("linear", "conv2d", "embedding")


def make_layer(
    model_id: str,
    index: int,
    rng: np.random.Generator,
    *,
    status: Status = Status.OK,
    with_mp: bool = True,
    with_rand: bool = True,
    with_phase: bool = True,
    num_evals: int = 32,
) -> tuple[LayerResult, np.ndarray]:
    """A layer result and its eigenvalues (ascending, raw units)."""
    evals = np.sort(rng.pareto(2.5, size=num_evals) + 0.1)
    kind = KINDS[index % len(KINDS)]
    name = f"block{index}.{kind}.weight"
    if status is not Status.OK:
        layer = LayerResult(model_id, index, name, kind, (16, 8), status, reason=f"synthetic {status.value}")
        return layer, evals
    alpha = float(rng.uniform(1.5, 7.0))
    lmax = float(evals[-1])
    norms = norm_metrics(evals, alpha, entropy=float(rng.uniform(0.5, 1.0)))
    fit = rec.PowerLawFit(alpha, float(evals[num_evals // 2]), lmax, float(rng.uniform(0, 0.2)), 0.1, num_evals // 2)
    mp = rec.MPFit(1.0, 0.1, 2.0, 2.2, 3, 2.0 / lmax, 0.05, 0.9, 2.0) if with_mp else None
    rand = rec.RandomizationResult(7, lmax / 2, 0, 0.3, 0.5) if with_rand else None
    phase = (rec.PhaseCall(rec.PHASE_ORDER[index % len(rec.PHASE_ORDER)], "synthetic rule", alpha < 2, "r1")
             if with_phase else None)
    spectrum = rec.LayerSpectrum(32, 16, 2.0, 1, num_evals, norms, fit, mp, rand, phase)
    return LayerResult(model_id, index, name, kind, (32, 16), Status.OK, num_params=512, spectrum=spectrum), evals


def norm_metrics(evals: np.ndarray, alpha: float, entropy: float) -> rec.NormMetrics:
    """The norm metrics of eigenvalues ``evals`` (raw λ, ascending) as a scan defines them: log_norm = log10 Σλ,
    log_spectral_norm = log10 λ_max, stable_rank = Σλ/λ_max, alpha_weighted = α·log10 λ_max, log_alpha_norm =
    log10 Σλ^α; ``entropy`` is given (a synthetic value), rank_loss and n_near_zero are 0."""
    lmax = float(evals[-1])
    return rec.NormMetrics(
        lambda_max=lmax,
        lambda_min=float(evals[0]),
        log_norm=float(np.log10(evals.sum())),
        log_spectral_norm=float(np.log10(lmax)),
        stable_rank=float(evals.sum() / lmax),
        entropy=entropy,
        alpha_weighted=alpha * float(np.log10(lmax)),
        log_alpha_norm=float(np.log10(np.sum(evals**alpha))),
        rank_loss=0,
        n_near_zero=0,
    )


def phase_counts(layers: Iterable[LayerResult]) -> tuple[tuple[str, int], ...]:
    """``ModelSummary.phase_counts`` of ``layers``: (phase value, number of layers), sorted by phase value."""
    counts: dict[str, int] = {}
    for layer in layers:
        if layer.spectrum is not None and layer.spectrum.phase is not None:
            counts[layer.spectrum.phase.phase.value] = counts.get(layer.spectrum.phase.phase.value, 0) + 1
    return tuple(sorted(counts.items()))


def make_model(
    model_id: str, n_layers: int = 5, seed: int = 0, **layer_options: bool
) -> tuple[rec.ModelResult, list[LayerResult], list[LayerEigenvalues]]:
    """A model with ``n_layers`` layers (the last one skipped), its summary and spectra records."""
    rng = np.random.default_rng(seed)
    layers, spectra = [], []
    for i in range(n_layers):
        status = Status.SKIPPED if i == n_layers - 1 and n_layers > 1 else Status.OK
        layer, evals = make_layer(model_id, i, rng, status=status, **layer_options)
        layers.append(layer)
        spectra.append(LayerEigenvalues(i, layer.layer_name, evals))
    ok = [layer for layer in layers if layer.spectrum is not None]
    alphas = np.array([layer.spectrum.power_law.alpha for layer in ok])
    summary = rec.ModelSummary(
        n_layers=n_layers,
        n_ok=len(ok),
        n_skipped=n_layers - len(ok),
        n_failed=0,
        n_alpha=len(ok),
        alpha_mean=float(alphas.mean()) if len(ok) else None,
        alpha_median=float(np.median(alphas)) if len(ok) else None,
        alpha_std=float(alphas.std()) if len(ok) else None,
        alpha_hat=float(np.mean([layer.spectrum.norms.alpha_weighted for layer in ok])) if ok else None,
        log_alpha_norm_mean=float(rng.normal()),
        log_norm_mean=float(rng.normal()),
        log_spectral_norm_mean=float(rng.normal()),
        stable_rank_mean=float(rng.uniform(1, 10)),
        frac_alpha_lt2=float(np.mean(alphas < 2)) if len(ok) else None,
        frac_alpha_gt6=float(np.mean(alphas > 6)) if len(ok) else None,
        phase_counts=phase_counts(ok),
    )
    source = model_id.split(":", 1)[0]
    model = rec.ModelResult(model_id, source, Status.OK, digest="sha256:0", num_params=512 * n_layers, summary=summary)
    return model, layers, spectra


def failed_model(model_id: str) -> rec.ModelResult:
    """A model that failed to load: no summary, no layers."""
    return rec.ModelResult(model_id, model_id.split(":", 1)[0], Status.FAILED, "cannot read", "SourceError")


def write_models(results, model_ids: Iterable[str], n_layers: int) -> None:
    """Write one made-up model per id into an open ``ResultStore``: ``file:`` ids as failed rows, the others
    as ``make_model`` rows of ``n_layers`` layers (seeded by position)."""
    for seed, model_id in enumerate(model_ids):
        if model_id.startswith("file:"):
            results.write_model(failed_model(model_id), [], [], host="h", device="cpu")
        else:
            model, layers, spectra = make_model(model_id, n_layers=n_layers, seed=seed)
            results.write_model(model, layers, spectra, host="h", device="cpu")
