"""Plotting functions for HT-SR results: the papers' ESD figures and zoo-level summaries.

Every function is pure: it takes arrays, records or pyarrow tables and returns a matplotlib ``Figure``
(``to_png`` turns one into PNG bytes). The Agg backend is selected on import of this module, so nothing
needs a display. Conventions follow Martin & Mahoney (JMLR 2021, Figs. 4–13): the ESD is the density of
the eigenvalues λ = s² of W (raw units); on log-log axes it is a histogram on logarithmic bins, with the
fitted power law p(λ) ∝ λ^(−α) drawn from xmin on and the fitted Marchenko–Pastur density on the bulk.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from numpy.typing import NDArray

from scanner.records import PHASE_ORDER, MPFit, PowerLawFit
from scanner.spectra.mp import mp_density

PHASE_COLORS: dict[str, str] = {
    "random_like": "#4c72b0",
    "bleeding_out": "#64b5cd",
    "bulk_plus_spikes": "#55a868",
    "bulk_decay": "#ccb974",
    "heavy_tailed": "#c44e52",
    "rank_collapse": "#8172b2",
}
PHASE_LABELS: dict[str, str] = {
    "random_like": "Random-like",
    "bleeding_out": "Bleeding-out",
    "bulk_plus_spikes": "Bulk+Spikes",
    "bulk_decay": "Bulk-decay",
    "heavy_tailed": "Heavy-Tailed",
    "rank_collapse": "Rank-collapse",
}
NO_PHASE_COLOR = "#bbbbbb"
EVAL_LABEL = "eigenvalue λ = σ² of W (weight units²)"
DENSITY_LABEL = "density (1/λ)"


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def power_of_ten_label(value: float, _position: object = None) -> str:
    """A log-axis tick label as plain text: "1", "10", "0.1", else "10⁻⁵" (Unicode superscripts: no mathtext
    parsing, which was a third of an ESD plot's drawing time)."""
    if value <= 0:
        return ""
    exponent = int(round(np.log10(value)))
    if not np.isclose(value, 10.0 ** exponent, rtol=1e-6):
        return f"{value:g}"
    return {0: "1", 1: "10", -1: "0.1"}.get(exponent, "10" + str(exponent).translate(_SUPERSCRIPT))


def readable_log_ticks(axis: matplotlib.axis.Axis, lo: float, hi: float, max_labels: int = 6) -> None:
    """Major ticks on a log axis spanning [lo, hi] that never overlap: at most ``max_labels`` labels.

    Up to one decade the ticks are 1, 2, 5 × 10^k (labels "%g"); wider spans label every decade, or every
    n-th decade, in 10^k notation, with unlabelled minor ticks.
    """
    decades = np.log10(hi / lo) if hi > lo > 0 else 1.0
    if decades <= 1.2:
        axis.set_major_locator(matplotlib.ticker.LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    else:
        axis.set_major_locator(matplotlib.ticker.LogLocator(base=10.0, numticks=max_labels))
        axis.set_major_formatter(matplotlib.ticker.FuncFormatter(power_of_ten_label))
    axis.set_minor_locator(matplotlib.ticker.LogLocator(base=10.0, subs=(2.0, 5.0), numticks=12)
                           if decades <= 6 else matplotlib.ticker.NullLocator())
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def to_png(fig: Figure, dpi: int = 90, tight: bool = True, colors: int = 0) -> bytes:
    """Render ``fig`` to PNG bytes and close it.

    ``tight`` crops to the drawn area (a second layout pass); ``colors`` > 0 writes a palette PNG of that
    many colours (an ESD pair: ~8 kB instead of ~28 kB, indistinguishable at that size).
    """
    buffer = io.BytesIO()
    if colors:
        from PIL import Image

        fig.set_dpi(dpi)
        fig.canvas.draw()
        rgba = fig.canvas.buffer_rgba()  # type: ignore[attr-defined]  # the Agg canvas (selected on import)
        image = Image.frombuffer("RGBA", fig.canvas.get_width_height(), rgba).convert("RGB")
        image.quantize(colors=colors, method=Image.Quantize.FASTOCTREE).save(buffer, format="PNG")
        plt.close(fig)
        return buffer.getvalue()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return buffer.getvalue()


def log_binned_density(evals: NDArray[np.floating], bins: int = 60) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Histogram density of the positive eigenvalues on logarithmic bins.

    Returns (bin centres, density) with density = count / (n_positive · bin width), so that the density
    integrates to 1 over the positive eigenvalues; empty bins are dropped (they cannot be drawn on log axes).
    """
    x = np.asarray(evals, dtype=np.float64)
    x = x[x > 0]
    if x.size == 0:
        return np.empty(0), np.empty(0)
    lo, hi = x.min(), x.max()
    if hi <= lo:
        hi = lo * 1.01
    edges = np.logspace(np.log10(lo), np.log10(hi), bins + 1)
    counts, _ = np.histogram(x, bins=edges)
    centres = np.sqrt(edges[:-1] * edges[1:])
    density = counts / (x.size * np.diff(edges))
    keep = counts > 0
    return centres[keep], density[keep]


def power_law_density(x: NDArray[np.floating], fit: PowerLawFit, n_total: int) -> NDArray[np.float64]:
    """The fitted tail law as a density of the whole ESD: (n_tail/n)·(α−1)/xmin·(λ/xmin)^(−α) for λ ≥ xmin."""
    x = np.asarray(x, dtype=np.float64)
    if fit.alpha is None or fit.xmin is None or fit.n_tail <= 0 or n_total <= 0:
        return np.full_like(x, np.nan)
    share = fit.n_tail / n_total
    out = share * (fit.alpha - 1.0) / fit.xmin * (x / fit.xmin) ** (-fit.alpha)
    return np.where(x >= fit.xmin, out, np.nan)


def mp_bulk_density(x: NDArray[np.floating], mp: MPFit) -> NDArray[np.float64]:
    """MP density of the fitted scale, weighted by the bulk's share of the eigenvalues (bulk_fraction)."""
    return mp.bulk_fraction * mp_density(np.asarray(x, dtype=np.float64), mp.q, mp.scale)


def _title(ax: plt.Axes, title: str, phase: str | None) -> None:
    label = PHASE_LABELS.get(phase or "", phase or "no phase")
    ax.set_title(f"{title}\nphase: {label}" if title else f"phase: {label}", fontsize=9)


def plot_esd_loglog(ax: plt.Axes, evals: NDArray[np.floating], fit: PowerLawFit | None, mp: MPFit | None,
                    title: str = "", phase: str | None = None) -> None:
    """ESD on log-log axes (log-binned density) with the power law from xmin (slope −α) and the MP bulk."""
    x = np.asarray(evals, dtype=np.float64)
    centres, density = log_binned_density(x)
    n_pos = int((x > 0).sum())
    ax.loglog(centres, density, "o", ms=3, color="#333333", label=f"ESD ({x.size} λ)")
    if fit is not None and fit.alpha is not None and fit.xmin is not None:
        grid = np.logspace(np.log10(fit.xmin), np.log10(x.max()), 100)
        ax.loglog(grid, power_law_density(grid, fit, n_pos), "-", color="#c44e52", lw=1.8,
                  label=f"PL α={fit.alpha:.2f}" + ("" if fit.reliable else " (unreliable)"))
        ax.axvline(fit.xmin, color="#c44e52", ls=":", lw=1)
    if mp is not None and centres.size:
        grid = np.logspace(np.log10(max(mp.lambda_minus, centres.min()) * 1.0001), np.log10(mp.lambda_plus), 200)
        ax.loglog(grid, mp_bulk_density(grid, mp), "-", color="#4c72b0", lw=1.5, label=f"MP Q={mp.q:.2f}")
    if density.size:  # keep the axis on the data: the MP density falls to 0 at its edges
        ax.set_ylim(density.min() / 5.0, density.max() * 3.0)
        readable_log_ticks(ax.yaxis, density.min() / 5.0, density.max() * 3.0)
    if x.size and x.max() > 0:
        readable_log_ticks(ax.xaxis, float(x[x > 0].min()), float(x.max()))
    ax.set_xlabel(EVAL_LABEL)
    ax.set_ylabel(DENSITY_LABEL)
    ax.legend(fontsize=7, loc="lower left")
    _title(ax, title, phase)


def plot_esd_linear(ax: plt.Axes, evals: NDArray[np.floating], mp: MPFit | None, title: str = "",
                    phase: str | None = None, bins: int = 80) -> None:
    """ESD on linear axes (histogram density) with the MP density and the TW-corrected edge λ⁺_TW."""
    x = np.asarray(evals, dtype=np.float64)
    counts, edges = np.histogram(x, bins=bins, density=True)
    ax.stairs(counts, edges, fill=True, color="#999999", alpha=0.8, label="ESD")  # one artist, not 80 bars
    if mp is not None:
        grid = np.linspace(mp.lambda_minus, mp.lambda_plus, 300)[1:-1]
        ax.plot(grid, mp_bulk_density(grid, mp), color="#4c72b0", lw=1.5, label="MP fit")
        ax.axvline(mp.lambda_plus_tw, color="#4c72b0", ls="--", lw=1, label=f"λ⁺_TW ({mp.n_spikes} spikes)")
    ax.set_xlabel(EVAL_LABEL)
    ax.set_ylabel(DENSITY_LABEL)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
    ax.legend(fontsize=7)
    _title(ax, title, phase)


def esd_figure(evals: NDArray[np.floating], fit: PowerLawFit | None, mp: MPFit | None, title: str = "",
               phase: str | None = None) -> Figure:
    """One layer: log-log ESD with PL and MP (left), linear ESD with MP (right)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    plot_esd_loglog(left, evals, fit, mp, title, phase)
    plot_esd_linear(right, evals, mp, title, phase)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.84, wspace=0.22)  # fixed: no layout pass
    return fig


def _phase_legend(ax: plt.Axes, phases: Sequence[str]) -> None:
    present = [p.value for p in PHASE_ORDER if p.value in set(phases)]
    handles = [Patch(color=PHASE_COLORS[p], label=PHASE_LABELS[p]) for p in present]
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="best")


def alpha_by_depth_figure(layers: pa.Table, title: str = "") -> Figure:
    """α of each layer against its layer index, coloured by phase (one model's ``layers`` rows)."""
    rows = [r for r in layers.select(["layer_index", "alpha", "phase"]).to_pylist() if r["alpha"] is not None]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    colors = [PHASE_COLORS.get(r["phase"] or "", NO_PHASE_COLOR) for r in rows]
    ax.scatter([r["layer_index"] for r in rows], [r["alpha"] for r in rows], c=colors, s=28, edgecolor="k", lw=0.4)
    ax.axhspan(2.0, 6.0, color="#eeeeee", zorder=0, label="2 ≤ α ≤ 6")
    ax.set_xlabel("layer index (depth)")
    ax.set_ylabel("power-law α")
    ax.set_title(title, fontsize=9)
    _phase_legend(ax, [r["phase"] or "" for r in rows])
    fig.tight_layout()
    return fig


def alpha_vs_accuracy_figure(models: pa.Table, x_columns: Sequence[str] = ("alpha_mean", "alpha_hat")) -> Figure:
    """Per-family scatter of model-level α (and α̂) against published top-1 (rows need ``family``, ``top1``)."""
    rows = [r for r in models.to_pylist() if r.get("top1") is not None]
    families = sorted({r["family"] or "?" for r in rows})
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(x_columns), figsize=(5 * len(x_columns), 3.6), squeeze=False)
    for ax, column in zip(axes[0], x_columns, strict=True):
        for k, family in enumerate(families):
            pts = [(r[column], r["top1"]) for r in rows if (r["family"] or "?") == family and r[column] is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.scatter(xs, ys, s=22, color=cmap(k % 10), label=family, edgecolor="k", lw=0.3)
        ax.set_xlabel({"alpha_mean": "mean α", "alpha_hat": "α̂ (weighted α)"}.get(column, column))
        ax.set_ylabel("published top-1 (%)")
    if families:
        axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def phase_grid_figure(batch_sizes: Sequence[int], layer_names: Sequence[str],
                      phases: dict[tuple[int, str], str | None], title: str = "") -> Figure:
    """A batch size × layer grid, each cell coloured and labelled with the layer's phase."""
    fig, ax = plt.subplots(figsize=(1.4 + 1.25 * len(batch_sizes), 0.9 + 0.55 * len(layer_names)))
    for i, name in enumerate(layer_names):
        for j, bs in enumerate(batch_sizes):
            phase = phases.get((bs, name))
            ax.add_patch(plt.Rectangle((j, i), 1, 1, color=PHASE_COLORS.get(phase or "", NO_PHASE_COLOR)))
            ax.text(j + 0.5, i + 0.5, PHASE_LABELS.get(phase or "", "—"), ha="center", va="center", fontsize=7)
    ax.set_xlim(0, len(batch_sizes))
    ax.set_ylim(len(layer_names), 0)
    ax.set_xticks(np.arange(len(batch_sizes)) + 0.5, [str(b) for b in batch_sizes])
    ax.set_yticks(np.arange(len(layer_names)) + 0.5, list(layer_names))
    ax.set_xlabel("batch size")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def phase_counts_figure(groups: Sequence[str], counts: dict[str, dict[str, int]], xlabel: str = "") -> Figure:
    """Stacked bars: for each group (a model, a batch size) how many layers fall in each phase."""
    fig, ax = plt.subplots(figsize=(1.5 + 0.7 * len(groups), 3.4))
    bottom = np.zeros(len(groups))
    for phase in PHASE_ORDER:
        heights = np.array([counts.get(g, {}).get(phase.value, 0) for g in groups], dtype=float)
        if heights.any():
            ax.bar(range(len(groups)), heights, bottom=bottom, color=PHASE_COLORS[phase.value],
                   label=PHASE_LABELS[phase.value])
            bottom += heights
    ax.set_xticks(range(len(groups)), list(groups), rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("layers")
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def metric_vs_batch_size_figure(batch_sizes: Sequence[int], series: Mapping[str, Sequence[float | None]],
                                ylabel: str) -> Figure:
    """One line per layer (or per quantity) of a metric against batch size, log-scaled x."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, values in series.items():
        pts = [(b, v) for b, v in zip(batch_sizes, values, strict=True) if v is not None]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, "o-", label=label, ms=4)
    ax.set_xscale("log")
    ax.set_xticks(list(batch_sizes), [str(b) for b in batch_sizes])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("batch size")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def short_labels(labels: Sequence[str], width: int = 34) -> list[str]:
    """Point labels of at most ``width`` characters: the leading path parts all labels share are dropped
    (``zoo/registry/``), then a longer name keeps its head and tail around an ellipsis (the package and the file
    stay readable)."""
    split = [label.split("/") for label in labels]
    shared = 0
    while split and all(len(parts) > shared + 1 for parts in split) and len({p[shared] for p in split}) == 1:
        shared += 1
    out = []
    for parts in split:
        label = "/".join(parts[shared:])
        if len(label) > width:
            keep = width - 1
            label = f"{label[: keep // 2]}…{label[-(keep - keep // 2):]}"
        out.append(label)
    return out


def _label_points(ax: plt.Axes, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str],
                  max_labels: int) -> None:
    """Label every point when there are at most ``max_labels``, else only the best and worst few by y. A label
    grows away from the nearer edge (left of a point in the right half, below a point in the top tenth), so no
    label runs off the panel."""
    order = np.argsort(ys)
    chosen = range(len(xs)) if len(xs) <= max_labels else [*order[: max_labels // 2], *order[-(max_labels // 2):]]
    names = short_labels(labels)
    x_mid = (min(xs) + max(xs)) / 2
    y_low, y_high = min(ys), max(ys)
    for i in chosen:
        right = xs[i] > x_mid
        top = y_high > y_low and ys[i] > y_high - 0.1 * (y_high - y_low)
        ax.annotate(names[i], (xs[i], ys[i]), xytext=(-3 if right else 3, -3 if top else 3),
                    textcoords="offset points", ha="right" if right else "left", va="top" if top else "bottom",
                    fontsize=6.5, color="#333333")


def metric_vs_published_figure(panels: Sequence[tuple[str, Sequence[float | None], Any]], ys: Sequence[float],
                               labels: Sequence[str], ylabel: str, title: str = "", max_labels: int = 12) -> Figure:
    """One panel per model-level metric: published value (y) against the metric (x) for one group of models,
    with the least-squares line and Kendall τ / Spearman ρ / R² in the panel (``panels``: (x label, x values,
    ``scanner.report.stats.Association``)); points labelled with the model names."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.3), squeeze=False)
    for ax, (xlabel, xs, assoc) in zip(axes[0], panels, strict=True):
        pts = [(x, y, lab) for x, y, lab in zip(xs, ys, labels, strict=True) if x is not None and y is not None]
        if pts:
            px, py, pl = zip(*pts, strict=True)
            ax.scatter(px, py, s=20, color="#4c72b0", edgecolor="k", lw=0.3, zorder=3)
            _label_points(ax, px, py, pl, max_labels)
            if assoc.slope is not None:
                grid = np.linspace(min(px), max(px), 20)
                ax.plot(grid, assoc.slope * grid + assoc.intercept, "-", color="#c44e52", lw=1.2, zorder=2)
        if assoc.kendall_tau is not None:
            text = f"τ = {assoc.kendall_tau:+.2f}   ρ = {assoc.spearman_rho:+.2f}\nR² = {assoc.r2:.2f}   n = {assoc.n}"
        else:
            text = f"n = {assoc.n}: too few models\nfor a correlation"
        ax.set_title(text, fontsize=7, loc="left")  # above the panel: never over a point or its label
        ax.set_xlabel(xlabel, fontsize=8)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel(ylabel, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9, y=0.99)
    # fixed, no layout pass; the top leaves room for the title and each panel's two-line statistics
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.17, top=0.77, wspace=0.28)
    return fig


def phase_mix_figure(rows: dict[str, dict[str, int]]) -> Figure:
    """Horizontal 100 % bars: the share of analysed layers in each phase, one bar per row label (the whole
    zoo, then each layer kind), with the number of layers at the right."""
    labels = list(rows)
    fig, ax = plt.subplots(figsize=(8.5, max(1.6, 0.7 + 0.32 * len(labels))))
    left = np.zeros(len(labels))
    totals = np.array([max(sum(rows[k].values()), 1) for k in labels], dtype=float)
    for phase in PHASE_ORDER:
        share = np.array([rows[k].get(phase.value, 0) for k in labels], dtype=float) / totals
        if share.any():
            ax.barh(range(len(labels)), share * 100, left=left * 100, color=PHASE_COLORS[phase.value],
                    label=PHASE_LABELS[phase.value], height=0.75)
            left += share
    for i, k in enumerate(labels):
        ax.text(101, i, f"{sum(rows[k].values()):,}", va="center", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlim(0, 112)
    ax.set_xticks([0, 25, 50, 75, 100])
    ax.set_xlabel("share of analysed layers (%); right: number of layers")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.subplots_adjust(left=0.2, right=0.78, bottom=max(0.12, 0.5 / (0.6 + 0.32 * len(labels))), top=0.97)
    return fig


def alpha_distribution_figure(layer_alphas: dict[str, NDArray[np.floating]],
                              model_values: dict[str, NDArray[np.floating]], max_alpha: float = 10.0) -> Figure:
    """Left: histogram of layer α per layer kind (α above ``max_alpha`` in the last bin), with the 2 and 6
    guides; right: histogram of each model-level metric in ``model_values`` (e.g. mean α, α̂)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.0))
    bins = np.linspace(0, max_alpha, 41)
    for kind, values in layer_alphas.items():
        v = np.clip(np.asarray(values, dtype=float), 0, max_alpha - 1e-9)
        left.hist(v, bins=bins, histtype="step", lw=1.4, label=f"{kind} ({v.size:,})")
    for guide in (2.0, 6.0):
        left.axvline(guide, color="#888888", ls=":", lw=1)
    left.set_xlabel(f"layer power-law α (dimensionless; > {max_alpha:g} in the last bin)")
    left.set_ylabel("layers")
    left.legend(fontsize=7)
    for name, values in model_values.items():
        v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
        if v.size:
            right.hist(v, bins=min(30, max(5, v.size // 3)), histtype="step", lw=1.4, label=f"{name} ({v.size:,})")
    right.set_xlabel("model-level value")
    right.set_ylabel("models")
    right.legend(fontsize=7)
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.17, top=0.97, wspace=0.22)
    return fig
