"""The randomization test: the ESD of the element-wise shuffled W, compared with the ESD of W.

Shuffling the entries of W keeps their distribution and destroys their correlations (Martin & Mahoney,
JMLR 2021 §5; weightwatcher ``randomize``). So:

- eigenvalues of the shuffled matrix above its own MP edge are *correlation traps* (a rank-one mean, or a
  few huge entries; SETOL §3.3.1) — they come from the entries, not from learned correlations;
- ``rand_distance`` measures how far the ESD is from that of its own randomized version: the Jensen–Shannon
  distance (base 2, in [0, 1]) between the two ESDs as histograms of log10 λ on a common grid of 64 bins.
  (The reference tool compares the two sorted eigenvalue vectors normalised to sum 1 — a scree-profile
  distance, docs/decisions.md "Randomization test" — which is not a distance between densities.)

Each matrix of a batch is shuffled on its own, with ``numpy.random.default_rng([seed, SHUFFLE_STREAM])``;
the seed is recorded. The second word keeps the shuffle's random stream apart from ``default_rng(seed)``:
matrices generated from that very stream (seeded synthetic tests do this) would otherwise get keys that
are a function of their own signs, and the "shuffle" would sort rows by sign (seen: a rank-one λ_max
150× too large on an i.i.d. Pareto matrix).

The shuffled ESD is a sample of a null model, so it is computed in float32 (``esd.eigenvalues(...,
precision="float32")``: half the time of float64) and read only above ``FLOAT32_FLOOR``·λ_max,rand, where
float32 eigenvalues are accurate to better than 1 %; both ESDs are compared above the same floor.

Null models (``ScanConfig.null``):

- ``"exact"``: shuffle every matrix and take the full (float32) ESD of the shuffled copy — one more Gram
  product and eigensolve per matrix, about as costly as the ESD of W itself on a CPU;
- ``"auto"``: the closed-form null wherever it is certified, the exact one elsewhere
  (:func:`analytic_null_eigenvalues`). A shuffled matrix has i.i.d. entries drawn from W's own entries, so
  when no entry is large its ESD is the MP law of scale s = N·σ² (σ² the variance of the entries; Bai &
  Silverstein 2010, Thm 3.6) plus at most one outlier, the rank-one mean μ·11ᵀ, at the BBP location
  λ = (θ + Nσ²)(θ + Mσ²)/θ with θ = μ²NM when θ > σ²√(NM) (Benaych-Georges & Nadakuditi 2012, §3.1). The
  certificate is that every centred entry a satisfies a² ≤ ``CERTIFY_RATIO``·σ²√(NM): a single entry acts as
  a rank-one spike of squared size a², which only leaves the bulk above σ²√(NM) (same theorem), so with a
  factor-4 margin no entry can make a trap. The mean is used only when it is clearly below or clearly
  above its transition (θ/(σ²√(NM)) ≤ ``CERTIFY_RATIO`` or ≥ 1/``CERTIFY_RATIO``), where the limit is
  accurate at these sizes. A bound on single entries misses many moderate ones together: when few entries
  per row are non-zero (a sparse or magnitude-pruned layer) the top of the shuffled ESD lies beyond the MP
  edge λ⁺ by about |κ − 3|·λ⁺/√(NM), κ = E(w − μ)⁴/σ⁴ the entries' kurtosis (an edge shift of the order that
  Hwang, Lee & Schnelli 2019 give for sparse sample covariance matrices; measured here, mean of 3 shuffles,
  0.5–1.3 times that on sparse ±1, 0/1, Bernoulli–Gaussian and magnitude-pruned matrices of 512×256 to
  4000×1000 with κ ≥ 15), and the shuffle finds traps there that the MP law has not: missed from a shift of
  about 4 TW scales t_TW on (e.g. 98 % magnitude pruning of a 1000×500 Gaussian, κ ≈ 53, shift ≈ 8 t_TW).
  So the third test: that shift at most ``MAX_EDGE_SHIFT_TW`` = 1 t_TW (:func:`edge_shift_tw`; a Gaussian
  layer shifts by 0, a uniform one, κ = 1.8, by 0.17–0.30 t_TW from 3072×768 to 256×256). Layers failing any test
  (heavy-tailed entries: trained layers with outliers, Pareto or Student-t weights; sparse or pruned
  entries; a mean near its transition) get the exact shuffle, and so do matrices
  narrower than ``CLOSED_FORM_MIN_WIDTH`` (256) columns, whose exact null is cheap. The certified null is the
  MP quantiles at plotting positions (i − ½)/M, their top replaced by the expected λ_max (the edge plus the
  mean of the TW₁ law on the Tracy–Widom scale) or by the mean's outlier: a deterministic pseudo-sample that
  :func:`compare_with_randomized` reads like a shuffled ESD. The k matrices of a pooled batch (a
  convolution's kernel positions) take interleaved positions (i − 1 + (j + ½)/k)/M, j = 0 … k − 1, so that
  their union is the pooled law's k·M plotting positions rather than k copies of the same M points.
  Being smooth, the pseudo-sample lacks the sampling noise of one shuffle, which the 64-bin histogram of
  ``rand_distance`` sees, so on certified layers ``rand_distance`` comes out lower than with the exact null:
  measured on 3,381 layers of 147 trained networks and on random-init ResNet-50 and ViT-B/16, by 0.007–0.014
  on average at M ≥ 256 (largest difference 0.06; two seeds of the shuffle differ by up to 0.05, by 0.001 on
  average), by 0.015–0.06 on average at M = 128–255 and by 0.025–0.06 below 128, where a layer's few
  eigenvalues spread over 64 bins (largest 0.25); the k identical copies of a pooled batch raised it by
  0.04–0.06 on average before the positions were interleaved. Hence the width limit and the interleaving.
  It costs two passes over the entries (the sum, and the fourth moment once the other tests pass; Σw² is the
  sum of the ESD, and the largest and smallest entries come from the finiteness check of
  ``esd.validated_batch``). The closed form puts the top of each of a pooled batch's k matrices at the expected
  λ_max of one matrix, while the shuffled batch's largest eigenvalue is the largest of k: its
  ``lambda_max_rand`` (and ``softrank``) come out 1–3 % low for k = 9 (no trap count changed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import rel_entr

from scanner.records import RandomizationResult
from scanner.spectra.esd import FLOAT32_FLOOR, as_matrix_batch, batch_eigenvalues
from scanner.spectra.metrics import near_zero_tolerance
from scanner.spectra.mp import fit_marchenko_pastur, mp_edges, mp_quantile, tracy_widom_scale

NULL_MODELS = ("exact", "auto")
CLOSED_FORM_MIN_WIDTH = 256
"""Narrower matrices (M columns, oriented) always get the exact null (see the module docstring)."""
CERTIFY_RATIO = 0.25
"""Largest a²/(σ²√(NM)) of a centred entry a for which the closed-form null is used (BBP threshold: 1)."""
MAX_EDGE_SHIFT_TW = 1.0
"""Largest fourth-moment shift of the shuffled matrix's edge, |κ − 3|·λ⁺/√(NM), in TW scales, for which the
closed-form null is used (traps were missed from about 4 on; see the module docstring)."""
TW1_MEAN = -1.2065
"""Mean of the Tracy–Widom TW₁ law (Tracy & Widom 1996): E[λ_max] ≈ λ⁺ + TW1_MEAN·t_TW."""
MOMENT_BLOCK = 1 << 16  # entries per block of the fourth-moment pass (512 KiB of float64)
HISTOGRAM_BINS = 64
SHUFFLE_STREAM = 0x7A6F6F73  # "zoos": the shuffle's own random stream for a given seed (see above)
SHUFFLE_BLOCK = 1 << 20  # entries keyed and sorted at once (whole rows; 8 MiB of keys)


def shuffled(batch: NDArray[np.floating], seed: int, dtype: Any = np.float32) -> NDArray[np.floating]:
    """A copy of the batch (k, N, M), as ``dtype``, with the entries of each matrix randomly permuted.

    Works on the memory order of ``batch`` (a transposed view is shuffled as its contiguous original and the
    result transposed back), so the only copy of the layer is the result.
    """
    rng = np.random.default_rng([seed, SHUFFLE_STREAM])
    transposed = not batch.flags.c_contiguous and np.swapaxes(batch, 1, 2).flags.c_contiguous
    source = np.swapaxes(batch, 1, 2) if transposed else batch
    flat = source.reshape(source.shape[0], -1)
    out = np.empty(flat.shape, dtype=dtype)
    if out.dtype == np.float32:
        _sort_shuffle_float32(flat, out, rng)
    else:
        for values, row in zip(flat, out, strict=True):
            row[:] = values
            rng.shuffle(row)
    out = out.reshape(source.shape)
    return np.swapaxes(out, 1, 2) if transposed else out


def _sort_shuffle_float32(values: NDArray[np.floating], out: NDArray[np.float32], rng: np.random.Generator) -> None:
    """Write each row of ``values`` (rows, n) (as float32) into the same row of ``out`` in an order drawn
    uniformly at random, by sorting keys.

    Each entry is packed into a uint64 as (32 random bits << 32) | (its 32 bits); sorting those (numpy's
    SIMD sort) and keeping the low halves orders the entries by their random keys. Uniform up to ties of
    the keys (about n²/2³³ pairs, e.g. 650 of 2.4 million entries, each pair ordered by value instead of at
    random — immaterial for a null model). 2–3× faster than ``Generator.shuffle``'s Fisher–Yates, whose
    random swaps miss the cache (2.4 M entries: 17.6 vs 38.3 ms; 9.4 M: 86 vs 264 ms, one AVX-512 core).
    Rows are keyed and sorted together, up to ``SHUFFLE_BLOCK`` entries at a time: the random bits are drawn
    in row order from one stream, so this equals shuffling row by row (a 3×3 conv of 16×16 slices: one
    call instead of nine). Memory: the keys of one block (8 bytes per entry) and ``out``.
    """
    rows_per_block = max(1, SHUFFLE_BLOCK // max(values.shape[1], 1))
    for start in range(0, values.shape[0], rows_per_block):
        block = slice(start, start + rows_per_block)
        bits = np.ascontiguousarray(values[block], dtype=np.float32).view(np.uint32)
        keys = rng.integers(0, 1 << 32, bits.shape, dtype=np.uint64)
        keys <<= np.uint64(32)
        keys |= bits
        keys.sort(axis=1)
        np.copyto(out[block].view(np.uint32), keys, casting="unsafe")  # the low 32 bits, in key order


def shuffled_eigenvalues(batch: NDArray[np.floating], seed: int, *, backend: str = "auto") -> NDArray[np.float64]:
    """The pooled ESD (float32 solve, see the module docstring) of the shuffled copies of a validated,
    oriented batch (``esd.as_matrix_batch``)."""
    return batch_eigenvalues(shuffled(batch, seed), backend=backend, precision="float32")


def edge_shift_tw(w: NDArray[np.floating], mean: float, var: float) -> float:
    """|κ − 3|·λ⁺/√(NM) in units of the TW scale t_TW: how far the entries' fourth moment moves the top of
    the shuffled N×M matrix's ESD from the MP edge λ⁺ = N·σ²·(1 + 1/√Q)² (see the module docstring).

    κ = E(w − μ)⁴/σ⁴ is the entries' kurtosis (3 for Gaussian entries, 1.8 uniform, ≈ 1/p for a fraction p of
    non-zeros); one more pass over the entries, in float64 blocks of ``MOMENT_BLOCK`` entries that stay in cache
    (2.1 ms for 3072×768 float32 entries on one core, against 3.8 ms for one float64 copy)."""
    n, m = w.shape
    flat = w.ravel(order="K")  # memory order: a view of a C- or F-contiguous layer (a transposed one included)
    block = np.empty(min(MOMENT_BLOCK, flat.size))
    fourth = 0.0
    for start in range(0, flat.size, MOMENT_BLOCK):
        part = block[:min(MOMENT_BLOCK, flat.size - start)]
        np.subtract(flat[start:start + part.size], mean, out=part, dtype=np.float64)
        np.square(part, out=part)
        fourth += float(np.dot(part, part))
    kurtosis = fourth / flat.size / (var * var)
    scale = n * var
    edge = mp_edges(n / m, scale)[1]
    return abs(kurtosis - 3.0) * edge / np.sqrt(n * m) / tracy_widom_scale(n, m, scale)


def analytic_null_eigenvalues(batch: NDArray[np.floating], sum_squares: NDArray[np.float64] | None = None,
                              extremes: tuple[NDArray[np.floating], NDArray[np.floating]] | None = None,
                              *, min_width: int = CLOSED_FORM_MIN_WIDTH,
                              max_edge_shift: float = MAX_EDGE_SHIFT_TW) -> NDArray[np.float64] | None:
    """The closed-form ESD of the shuffled copies of an oriented batch (k, N, M), pooled, or None when the
    matrices are narrower than ``min_width`` columns or one of them is not certified light-tailed (see the
    module docstring for the law, the certificate and the width limit). ``sum_squares``: each matrix's Σw²
    if known (the trace of its Gram matrix, i.e. the sum of its eigenvalues), which saves a pass;
    ``extremes``: each matrix's largest and smallest entry if known (``esd.validated_batch`` finds them),
    which saves two; ``max_edge_shift``: the largest :func:`edge_shift_tw` certified. Up to five passes over each
    matrix's entries (float64-accumulated sum, max, min; the centred fourth moment, in cache-sized float64
    blocks); nothing is shuffled or solved."""
    k, n, m = batch.shape
    if m < min_width:
        return None
    q = n / m
    size = n * m
    parts = []
    for i, w in enumerate(batch):
        positions = (np.arange(m) + (i + 0.5) / k) / m  # stratified: the k slices' union is the k·M grid
        total = float(np.sum(w, dtype=np.float64))
        squares = float(sum_squares[i]) if sum_squares is not None else float(np.sum(np.square(w, dtype=np.float64)))
        mean = total / size
        var = squares / size - mean * mean
        if not var > 1e-12 * squares / size:  # constant, or a mean so large that the variance is round-off
            return None
        high, low = (float(extremes[0][i]), float(extremes[1][i])) if extremes is not None else (
            float(np.max(w)), float(np.min(w)))
        largest = max(high - mean, mean - low)
        if largest * largest > CERTIFY_RATIO * var * np.sqrt(size):
            return None
        scale = n * var
        theta = mean * mean * size
        mean_ratio = theta / (var * np.sqrt(size))  # the mean leaves the bulk above 1 (BBP transition)
        if CERTIFY_RATIO < mean_ratio < 1.0 / CERTIFY_RATIO:
            return None  # near the transition the finite-size outlier is not where the limit puts it
        if edge_shift_tw(w, mean, var) > max_edge_shift:
            return None  # sparse or pruned: the shuffled edge lies beyond the MP edge by more than the TW scale
        null = mp_quantile(positions, q, scale)
        if mean_ratio >= 1.0 / CERTIFY_RATIO:
            null[-1] = (theta + n * var) * (theta + m * var) / theta
        else:
            null[-1] = mp_edges(q, scale)[1] + TW1_MEAN * tracy_widom_scale(n, m, scale)
        parts.append(null)
    return np.sort(np.concatenate(parts))


def null_eigenvalues(batch: NDArray[np.floating], seed: int, *, null: str = "exact", backend: str = "auto",
                     sum_squares: NDArray[np.float64] | None = None,
                     extremes: tuple[NDArray[np.floating], NDArray[np.floating]] | None = None,
                     ) -> NDArray[np.float64]:
    """The ESD of the null model of a validated, oriented batch: the certified closed form (``null="auto"``)
    or the shuffled copies' ESD (``"exact"``, and ``"auto"`` where the certificate fails). ``sum_squares``,
    ``extremes``: see :func:`analytic_null_eigenvalues`."""
    if null not in NULL_MODELS:
        raise ValueError(f"the null model must be one of {NULL_MODELS}; got {null!r}")
    if null == "auto":
        closed = analytic_null_eigenvalues(batch, sum_squares, extremes)
        if closed is not None:
            return closed
    return shuffled_eigenvalues(batch, seed, backend=backend)


def esd_distance(evals_a: NDArray[np.float64], evals_b: NDArray[np.float64], floor: float = 0.0) -> float:
    """Jensen–Shannon distance (base 2) between two ESDs as histograms of log10 λ on a common grid.

    Both are read above one cut: the larger of their near-zero tolerances (λ ≤ 1e-6 × the 90th percentile,
    ``scanner.spectra.metrics.near_zero_tolerance``, so that round-off eigenvalues of rank-deficient matrices
    do not stretch the grid over 16 decades) and ``floor`` (λ units; the round-off level of a float32 ESD).
    """
    cut = max(0.0, near_zero_tolerance(evals_a), near_zero_tolerance(evals_b), floor)
    a = evals_a[evals_a > cut]
    b = evals_b[evals_b > cut]
    if a.size == 0 or b.size == 0:
        return 1.0
    la, lb = np.log10(a), np.log10(b)
    lo, hi = min(la.min(), lb.min()), max(la.max(), lb.max())
    if hi - lo < 1e-12:
        return 0.0
    edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)
    ha = histogram_counts(la, edges)
    hb = histogram_counts(lb, edges)
    return jensen_shannon_base2(ha / ha.sum(), hb / hb.sum())


def histogram_counts(values: NDArray[np.float64], edges: NDArray[np.float64]) -> NDArray[np.float64]:
    """``np.histogram(values, bins=edges)[0]`` as float64, bit for bit, for 1-D values and increasing edges,
    without its argument checks (about 0.1 ms a call, two calls per layer). numpy's own method for explicit
    edges: the number of sorted values below each edge (``searchsorted`` left; right at the last edge, so the
    last bin includes it), differenced; values outside [edges[0], edges[-1]] are not counted."""
    ordered = np.sort(values)
    below = np.empty(edges.size, dtype=np.intp)
    below[:-1] = ordered.searchsorted(edges[:-1], "left")
    below[-1] = ordered.searchsorted(edges[-1], "right")
    return np.diff(below).astype(np.float64)


def jensen_shannon_base2(p: NDArray[np.float64], q: NDArray[np.float64]) -> float:
    """``scipy.spatial.distance.jensenshannon(p, q, base=2.0)`` for two 1-D non-negative arrays, bit for bit
    (scipy 1.17's steps: p and q renormalised, m = (p + q)/2, Σ rel_entr(p, m) + Σ rel_entr(q, m), divided by
    ln 2, then √(·/2)), without its array-API dispatch."""
    p = p / np.sum(p)
    q = q / np.sum(q)
    m = (p + q) / 2.0
    js = np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m))
    js /= np.log(2.0)
    return float(np.sqrt(js / 2.0))


def compare_with_randomized(
    evals: NDArray[np.float64], rand_evals: NDArray[np.float64], *, n: int, m: int, seed: int
) -> RandomizationResult:
    """Compare an ESD with the ESD of its element-shuffled matrices (both pooled, raw scale).

    Args:
        evals: the ESD of the matrices (float64).
        rand_evals: the ESD of their shuffled copies, accurate above ``FLOAT32_FLOOR``·its λ_max (float32).
        n, m: shape N×M (N ≥ M) of each matrix, for the MP fit of the shuffled ESD.
        seed: the shuffle's seed, recorded.
    """
    rand_evals = np.sort(np.asarray(rand_evals, dtype=np.float64))
    lambda_max = float(np.max(evals))
    lambda_max_rand = float(rand_evals[-1])
    floor = FLOAT32_FLOOR * lambda_max_rand
    n_traps = 0
    usable = rand_evals[rand_evals > max(floor, near_zero_tolerance(rand_evals, is_sorted=True))]
    if usable.size >= 4:
        n_traps = fit_marchenko_pastur(usable, q=n / m, n=n).n_spikes
    return RandomizationResult(
        seed=seed,
        lambda_max_rand=lambda_max_rand,
        n_traps=n_traps,
        rand_distance=esd_distance(np.asarray(evals, dtype=np.float64), rand_evals, floor),
        softrank=lambda_max_rand / lambda_max if lambda_max > 0 else 0.0,
    )


def randomization_test(
    matrices: NDArray[np.floating], evals: NDArray[np.float64], *, seed: int = 0, backend: str = "auto",
    null: str = "exact",
) -> RandomizationResult:
    """The null model's ESD of ``matrices`` (shuffled with ``seed``, or closed-form, see ``null``) compared
    with ``evals``, the ESD of ``matrices``."""
    batch = as_matrix_batch(matrices)
    rand_evals = null_eigenvalues(batch, seed, null=null, backend=backend)
    return compare_with_randomized(evals, rand_evals, n=batch.shape[1], m=batch.shape[2], seed=seed)
