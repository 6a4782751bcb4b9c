"""One layer's full spectral analysis on arrays: ESD → power law, MP bulk, norms, randomization → phase.

Two steps, so the eigensolves can run on a GPU actor and the fits on CPU tasks:

1. :func:`layer_eigenvalues` — the ESD of the matrices and, when asked, of their element-shuffled copies
   (the only O(M³) work);
2. :func:`analyse_spectrum` — everything else, from eigenvalues alone (milliseconds).

:func:`analyse_matrices` chains both. All of it is pure (numpy/scipy; torch only in the torch ESD backend).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from scanner.config import ScanConfig
from scanner.errors import SpectrumError
from scanner.phases import RANK_COLLAPSE_FRACTION, classify_spectrum
from scanner.records import LayerSpectrum, Phase, PhaseCall, PowerLawFit
from scanner.spectra.esd import batch_eigenvalues, validated_batch
from scanner.spectra.metrics import FLOAT32_EPS, near_zero_tolerance, norm_metrics
from scanner.spectra.mp import fit_marchenko_pastur
from scanner.spectra.powerlaw import fit_power_law
from scanner.spectra.randomize import compare_with_randomized, null_eigenvalues


@dataclass(frozen=True)
class LayerEigen:
    """Eigenvalues of one layer: the pooled ESD of k matrices of shape N×M (N ≥ M), and optionally the
    pooled ESD of their element-shuffled copies (shuffled with ``seed``).

    ``reference_scale`` is the factor the reference tool applies to this layer's eigenvalues before its
    fit (0.5 for a pooled Conv2d: it multiplies each kernel slice by √(1/2); docs/decisions.md, "Metric definitions"). Only
    ``fit="reference"`` uses it, to reproduce the tool's absolute 1e-5 eigenvalue cut exactly; all
    reported values stay in raw units.
    """

    evals: NDArray[np.float64]
    n: int
    m: int
    k: int
    rand_evals: NDArray[np.float64] | None = None
    seed: int = 0
    reference_scale: float = 1.0


@dataclass(frozen=True)
class AnalysedLayer:
    """The spectrum record of a layer plus its eigenvalues (kept for ``spectra/`` and plots)."""

    spectrum: LayerSpectrum
    evals: NDArray[np.float64]


def layer_eigenvalues(
    matrices: NDArray[np.floating],
    *,
    randomize: bool = False,
    seed: int = 0,
    backend: str = "auto",
    reference_scale: float = 1.0,
    null: str = "exact",
) -> LayerEigen:
    """Step 1: eigenvalues of WᵀW (pooled over the batch) and, if ``randomize``, of its null model
    (``null``: "exact" shuffles W and solves, "auto" uses the closed form where certified;
    ``scanner.spectra.randomize.null_eigenvalues``).

    Raises:
        SpectrumError: NaN/Inf entries, an empty or non-numeric matrix.
    """
    checked = validated_batch(matrices)
    batch = checked.values
    k, n, m = batch.shape
    per_matrix = batch_eigenvalues(batch, backend=backend, pooled=False)
    evals = np.sort(per_matrix.ravel())
    rand = None
    if randomize:  # each matrix's Σλ = Σw² (trace of its Gram matrix) and its extreme entries spare the
        # closed-form null three of its four passes
        rand = null_eigenvalues(batch, seed, null=null, backend=backend, sum_squares=per_matrix.sum(axis=1),
                                extremes=(checked.highs, checked.lows))
    return LayerEigen(evals=evals, n=n, m=m, k=k, rand_evals=rand, seed=seed, reference_scale=reference_scale)


def analyse_spectrum(eig: LayerEigen, config: ScanConfig | None = None, *, eps: float = FLOAT32_EPS) -> AnalysedLayer:
    """Step 2: power-law fit, norms, MP bulk fit, randomization comparison and phase, from eigenvalues.

    Args:
        eig: the layer's eigenvalues (step 1).
        config: fit options (``fit``, ``min_tail``); defaults to ``ScanConfig()``.
        eps: machine epsilon of the weights' storage dtype, for ``rank_loss``.

    Raises:
        SpectrumError: an all-zero matrix, or eigenvalues that do not match the shape.
    """
    config = config or ScanConfig()
    lam = np.sort(np.asarray(eig.evals, dtype=np.float64))
    if lam.size != eig.k * eig.m:
        raise SpectrumError(f"got {lam.size} eigenvalues for {eig.k} matrices of {eig.m} columns")
    if lam[-1] <= 0.0:
        raise SpectrumError(f"all-zero matrix ({eig.n}×{eig.m}): it has no spectrum (a dead or pruned layer)")
    power_law = _fit_tail(lam, config, eig.reference_scale)
    norms = norm_metrics(lam, n=eig.n, m=eig.m, alpha=power_law.alpha, eps=eps)
    nonzero = lam[lam > near_zero_tolerance(lam, is_sorted=True)]
    q = eig.n / eig.m
    mp = fit_marchenko_pastur(nonzero, q=q, n=eig.n) if nonzero.size >= 4 else None
    randomization = None
    if eig.rand_evals is not None:
        randomization = compare_with_randomized(lam, eig.rand_evals, n=eig.n, m=eig.m, seed=eig.seed)
    phase: PhaseCall | None = None
    if mp is not None:
        phase = classify_spectrum(lam, mp, power_law, norms.n_near_zero, randomization)
    elif norms.n_near_zero >= RANK_COLLAPSE_FRACTION * lam.size:
        phase = PhaseCall(
            Phase.RANK_COLLAPSE,
            f"only {nonzero.size} of {lam.size} eigenvalues are above the near-zero peak: no bulk to fit",
            rule="no_bulk",
        )
    spectrum = LayerSpectrum(
        n=eig.n, m=eig.m, q=q, n_matrices=eig.k, num_evals=int(lam.size), norms=norms,
        power_law=power_law, mp=mp, randomization=randomization, phase=phase,
    )
    return AnalysedLayer(spectrum=spectrum, evals=lam)


def _fit_tail(lam: NDArray[np.float64], config: ScanConfig, reference_scale: float) -> PowerLawFit:
    """The power-law fit in raw units (the reference mode fits the tool's rescaled eigenvalues)."""
    if config.fit != "reference" or reference_scale == 1.0:
        return fit_power_law(lam, method=config.fit, min_tail=config.min_tail)
    fit = fit_power_law(lam * reference_scale, method=config.fit, min_tail=config.min_tail)
    xmin = None if fit.xmin is None else fit.xmin / reference_scale
    xmax = None if fit.xmax is None else fit.xmax / reference_scale
    return replace(fit, xmin=xmin, xmax=xmax)


def analyse_matrices(
    matrices: NDArray[np.floating],
    config: ScanConfig | None = None,
    *,
    eps: float = FLOAT32_EPS,
    backend: str = "auto",
) -> AnalysedLayer:
    """Both steps for one layer given as a matrix (rows, cols) or a batch (k, rows, cols), pooled."""
    config = config or ScanConfig()
    eig = layer_eigenvalues(matrices, randomize=config.randomize, seed=config.seed, backend=backend,
                            null=config.null)
    return analyse_spectrum(eig, config, eps=eps)
