"""Frozen result records: what every stage of a scan returns.

These are plain values (stdlib only) so that the numerical core, the loaders, the store and Ray all
exchange the same objects. Missing numbers are ``None`` plus a ``status`` and ``reason``; never -1 or
another sentinel. Units: eigenvalues λ are squared singular values of the weight matrix W in its raw
scale (no hidden rescaling), so ``lambda_max`` is ‖W‖₂² and ``sum(λ)`` is ‖W‖_F².
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Status(str, enum.Enum):
    """Outcome of a layer or a model."""

    OK = "ok"
    SKIPPED = "skipped"  # deliberately not analysed (too small, a norm/bias, a duplicate); reason says why
    FAILED = "failed"  # analysis was attempted and broke; reason says how


class Phase(str, enum.Enum):
    """The 5+1 Phases of Training of Martin & Mahoney (ICML 2019; JMLR 2021 Table 4)."""

    RANDOM_LIKE = "random_like"
    BLEEDING_OUT = "bleeding_out"
    BULK_PLUS_SPIKES = "bulk_plus_spikes"
    BULK_DECAY = "bulk_decay"
    HEAVY_TAILED = "heavy_tailed"
    RANK_COLLAPSE = "rank_collapse"


PHASE_ORDER: tuple[Phase, ...] = tuple(Phase)


@dataclass(frozen=True)
class PowerLawFit:
    """Clauset–Shalizi–Newman power-law fit of the ESD tail, p(λ) ∝ λ^(−α) for λ ≥ xmin.

    Attributes:
        alpha: MLE exponent α = 1 + n / Σ ln(λ_i / xmin) over the tail; None when no fit was possible.
        xmin: lower cutoff (an eigenvalue, raw units) chosen by minimum KS distance.
        xmax: largest eigenvalue used in the fit (raw units).
        ks_distance: Kolmogorov–Smirnov distance D between the tail and the fitted law.
        alpha_sigma: standard error (α − 1)/√n_tail.
        n_tail: number of eigenvalues with λ ≥ xmin used in the fit.
        n_fingers: number of top eigenvalues excluded as "fingers" (robust mode only, else 0).
        alpha_raw: α before finger removal (equals alpha when n_fingers == 0).
        method: "robust" (zooscan default) or "reference" (weightwatcher 0.7.7 default fit).
        reliable: False when the fit should not be trusted; ``reason`` says why.
        reason: empty when reliable, else a sentence.
    """

    alpha: float | None
    xmin: float | None
    xmax: float | None
    ks_distance: float | None
    alpha_sigma: float | None
    n_tail: int
    n_fingers: int = 0
    alpha_raw: float | None = None
    method: str = "robust"
    reliable: bool = True
    reason: str = ""


@dataclass(frozen=True)
class MPFit:
    """Marchenko–Pastur fit of the ESD bulk.

    For X = WᵀW with W (N×M, N ≥ M) of i.i.d. entries of variance σ², the bulk of λ lies in
    [λ⁻, λ⁺] with λ^± = s·(1 ± 1/√Q)², where Q = N/M and s = N·σ² is the fitted scale (raw λ units, the
    mean eigenvalue of the bulk). Spikes lie above λ⁺_TW = λ⁺ + 3.3·t_TW + 0.02·λ⁺, with t_TW the
    Tracy–Widom scale (``scanner.spectra.mp`` gives t_TW and the calibration of both margins).

    Attributes:
        scale: fitted s = N·σ² (raw λ units), the MP mean of the bulk.
        lambda_minus, lambda_plus: bulk edges (raw units).
        lambda_plus_tw: the edge plus the Tracy–Widom margin; spikes are λ above it.
        n_spikes: number of eigenvalues above ``lambda_plus_tw``.
        softrank: MP soft rank λ⁺ / λ_max, in (0, 1]; ~1 random-like, → 0 heavy-tailed.
        bulk_ks: KS distance between the eigenvalues below λ⁺_TW and the fitted MP law.
        bulk_fraction: fraction of eigenvalues inside the bulk [0, λ⁺_TW].
        q: aspect ratio N/M used.
    """

    scale: float
    lambda_minus: float
    lambda_plus: float
    lambda_plus_tw: float
    n_spikes: int
    softrank: float
    bulk_ks: float
    bulk_fraction: float
    q: float


@dataclass(frozen=True)
class NormMetrics:
    """Scale metrics of one layer's ESD (raw λ units; logs are base 10, as in the papers).

    log_norm = log10 Σλ (= log10 ‖W‖_F²); log_spectral_norm = log10 λ_max; alpha_weighted (α̂) =
    α·log10 λ_max; log_alpha_norm = log10 Σ λ^α; stable_rank = Σλ/λ_max; entropy = −Σ p ln p / ln R
    with p = λ/Σλ over the R non-zero λ (matrix entropy, in [0, 1]).
    """

    lambda_max: float
    lambda_min: float
    log_norm: float
    log_spectral_norm: float
    stable_rank: float
    entropy: float | None
    alpha_weighted: float | None
    log_alpha_norm: float | None
    rank_loss: int
    n_near_zero: int


@dataclass(frozen=True)
class RandomizationResult:
    """ESD of the element-wise shuffled W, compared with the ESD of W (seeded).

    lambda_max_rand: largest eigenvalue of the shuffled matrix; n_traps: eigenvalues of the shuffled
    matrix above its own MP edge (correlation traps); rand_distance: Jensen–Shannon distance between
    the two ESD histograms on a common log grid; softrank = lambda_max_rand / lambda_max.
    """

    seed: int
    lambda_max_rand: float
    n_traps: int
    rand_distance: float
    softrank: float


@dataclass(frozen=True)
class PhaseCall:
    """A 5+1 phase label with the rule that fired, in words."""

    phase: Phase
    reason: str
    very_heavy_tailed: bool = False  # α < 2: "over-trained"/atypical (SETOL, WW)
    rule: str = ""


@dataclass(frozen=True)
class LayerSpectrum:
    """Everything the numerical core computes for one layer (pure values, no I/O)."""

    n: int
    m: int
    q: float
    n_matrices: int
    num_evals: int
    norms: NormMetrics
    power_law: PowerLawFit
    mp: MPFit | None
    randomization: RandomizationResult | None
    phase: PhaseCall | None


@dataclass(frozen=True)
class LayerResult:
    """One row of ``layers/<model_key>.parquet``: a weight matrix (or pooled conv layer) of a model.

    ``dtype_stored`` is how the file stored the values ("float32", "float16", "int8", ...; "" when not known),
    ``dequantized`` whether the reader dequantised them (scale and zero point) before the analysis, and
    ``note`` how the tensor was cut or what the reader assumed about its layout ("" when nothing was).
    """

    model_id: str
    layer_index: int
    layer_name: str
    kind: str
    shape: tuple[int, ...]
    status: Status
    reason: str = ""
    num_params: int = 0
    spectrum: LayerSpectrum | None = None
    seconds_esd: float = 0.0
    seconds_fit: float = 0.0
    device: str = "cpu"
    dtype_stored: str = ""
    dequantized: bool = False
    note: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", folded(self.reason))


def folded(text: str) -> str:
    """A reason as one line (a third-party error's paragraph folded): rows, logs and CLI errors show one line."""
    return " ".join(text.split()) if text.splitlines() != [text] else text  # any line boundary, \v and \u2028 too


@dataclass(frozen=True)
class ModelSummary:
    """Aggregates over a model's OK layers (failed/skipped layers are counted, never averaged).

    alpha_mean is the mean α over layers whose fit is reliable; alpha_hat is the mean of α·log10 λ_max
    (the "weighted alpha" of Martin, Peng & Mahoney, Nat. Commun. 2021) over the same layers.
    """

    n_layers: int
    n_ok: int
    n_skipped: int
    n_failed: int
    n_alpha: int
    alpha_mean: float | None
    alpha_median: float | None
    alpha_std: float | None
    alpha_hat: float | None
    log_alpha_norm_mean: float | None
    log_norm_mean: float | None
    log_spectral_norm_mean: float | None
    stable_rank_mean: float | None
    frac_alpha_lt2: float | None
    frac_alpha_gt6: float | None
    phase_counts: tuple[tuple[str, int], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ModelResult:
    """One row of ``models/<model_key>.parquet``: a model's identity, outcome and aggregates."""

    model_id: str
    source: str
    status: Status
    reason: str = ""
    error_class: str = ""
    digest: str = ""
    num_params: int = 0
    summary: ModelSummary | None = None
    seconds_load: float = 0.0
    seconds_total: float = 0.0
    attempts: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", folded(self.reason))
