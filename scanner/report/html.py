"""A self-contained one-page HTML report of one small scan (the batch-size experiment's report): plots inline as
base64 PNG, and the key tables. The zoo report of ``zooscan report`` is ``scanner.report.site``.

Sections (each an ``<section id=…>``): ``summary`` (scan manifest), ``models`` (per-model aggregates),
``phase-counts`` (layers per phase and model), ``batch-size`` (phase versus batch size, when experiment
runs are given), ``alpha-depth`` (α by layer index per model), ``alpha-accuracy`` (α and α̂ against
published top-1, when a catalog gives accuracies), ``spectra`` (each layer's ESD: log-log with power law
and MP, linear with MP) and ``layers`` (the per-layer table).
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from scanner.report import plots, style
from scanner.report.names import unique_names
from scanner.report.tables import (
    ScanTables,
    batch_size_phase_table,
    eigenvalues_by_layer,
    format_value,
    models_with_catalog,
    mp_of,
    phase_counts,
    power_law_of,
)

logger = logging.getLogger(__name__)

MODEL_COLUMNS = ("model", "family", "batch_size", "top1", "status", "n_layers", "n_ok", "n_alpha",
                 "alpha_mean", "alpha_hat", "log_norm_mean", "log_spectral_norm_mean", "stable_rank_mean")
LAYER_COLUMNS = ("model_id", "layer_index", "layer_name", "kind", "shape", "status", "q", "num_evals", "alpha",
                 "fit_reliable", "alpha_weighted", "num_spikes", "mp_softrank", "stable_rank", "rand_num_traps",
                 "phase", "phase_reason", "reason")
STYLE = style.BASE + (
    "th,td{text-align:right}td.t{text-align:left}.phase{padding:0 4px;border-radius:3px;color:#000}"
    ".grid{display:flex;flex-wrap:wrap;gap:8px}"
)


def img_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` with the PNG inline as a data URI."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _cell(column: str, value: Any) -> str:
    text = html.escape(format_value(value) if not isinstance(value, list) else "×".join(map(str, value)))
    if column == "phase" and value:
        color = plots.PHASE_COLORS.get(str(value), plots.NO_PHASE_COLOR)
        return f'<td class="t"><span class="phase" style="background:{color}">{text}</span></td>'
    align = ' class="t"' if isinstance(value, str) else ""
    return f"<td{align}>{text}</td>"


def html_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows (dicts) as an HTML table with the given columns (missing keys are blank)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(c, r.get(c)) for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{html.escape(title)}</h2>{body}</section>'


def summary_section(tables: ScanTables) -> str:
    m = tables.manifest
    items = {"scan folder": str(tables.scan_dir), "scan_id": m.get("scan_id", tables.scan_dir.name),
             "models": tables.models.num_rows, "layer rows": tables.layers.num_rows,
             "config": m.get("config", ""), "started": m.get("started_at", ""), "finished": m.get("finished_at", "")}
    rows = "".join(f'<tr><th>{html.escape(k)}</th><td class="t">{html.escape(str(v))}</td></tr>' for k, v in items.items())
    return _section("summary", "Summary", f"<table>{rows}</table>")


def models_section(models: list[dict[str, Any]]) -> str:
    return _section("models", "Models", html_table(models, MODEL_COLUMNS))


def phase_counts_section(tables: ScanTables, models: list[dict[str, Any]]) -> str:
    counts = phase_counts(tables.layers)
    groups = [r["model_id"] for r in models]
    labels = {r["model_id"]: r["model"] for r in models}
    fig = plots.phase_counts_figure([labels[g] for g in groups], {labels[g]: counts.get(g, {}) for g in groups})
    phases = [p for p in plots.PHASE_LABELS if any(p in c for c in counts.values())]
    rows = [{"model": labels[g], **{p: counts.get(g, {}).get(p, 0) for p in phases}} for g in groups]
    return _section("phase-counts", "Phase counts", img_tag(plots.to_png(fig), "phase counts")
                    + html_table(rows, ["model", *phases]))


def batch_size_section(tables: ScanTables) -> str:
    rows = batch_size_phase_table(tables)
    if not rows:
        return ""
    seeds = sorted({r["seed"] for r in rows})
    names = list(dict.fromkeys(r["layer_name"] for r in rows))
    sizes = sorted({r["batch_size"] for r in rows}, reverse=True)
    parts = []
    for seed in seeds:
        grid = {(r["batch_size"], r["layer_name"]): r["phase"] for r in rows if r["seed"] == seed}
        fig = plots.phase_grid_figure(sizes, names, grid, title=f"phase of each FC layer, seed {seed}")
        parts.append(img_tag(plots.to_png(fig), f"phase grid seed {seed}"))
    for column, label in (("alpha", "power-law α"), ("mp_softrank", "MP soft rank λ⁺/λmax")):
        series = {n: [next((r[column] for r in rows if r["layer_name"] == n and r["batch_size"] == b
                            and r["seed"] == seeds[0]), None) for b in sizes] for n in names}
        parts.append(img_tag(plots.to_png(plots.metric_vs_batch_size_figure(sizes, series, label)), label))
    body = '<div class="grid">' + "".join(parts) + "</div>" + html_table(rows, list(rows[0]))
    return _section("batch-size", "Phase versus batch size", body)


def alpha_depth_section(tables: ScanTables, models: list[dict[str, Any]]) -> str:
    parts = []
    for row in models:
        layers = tables.layers.filter(pc.equal(tables.layers["model_id"], row["model_id"]))
        title = row["model"]
        parts.append(img_tag(plots.to_png(plots.alpha_by_depth_figure(layers, title)), f"alpha by depth {title}"))
    note = ('<p class="note">Layer index is the order in which the scanner read the weights (for safetensors '
            "files: sorted tensor names), not necessarily the forward order.</p>")
    return _section("alpha-depth", "α by depth", note + '<div class="grid">' + "".join(parts) + "</div>")


def alpha_accuracy_section(models_table: Any) -> str:
    if not any(r.get("top1") is not None for r in models_table.to_pylist()):
        body = '<p class="note">No catalog accuracy for these models: pass --catalog with a top1 column.</p>'
    else:
        body = img_tag(plots.to_png(plots.alpha_vs_accuracy_figure(models_table)), "alpha vs accuracy")
    return _section("alpha-accuracy", "α and α̂ against published accuracy", body)


def spectra_section(tables: ScanTables, models: list[dict[str, Any]], max_models: int) -> str:
    evals = eigenvalues_by_layer(tables.spectra)
    by_model: dict[str, list[dict[str, Any]]] = {}
    for row in tables.layers.to_pylist():
        by_model.setdefault(row["model_id"], []).append(row)
    parts = []
    for model in models[:max_models]:
        parts.append(f"<h3>{html.escape(model['model_id'])}</h3>")
        for row in sorted(by_model.get(model["model_id"], []), key=lambda r: r["layer_index"]):
            ev = evals.get((row["model_id"], row["layer_index"]))
            if ev is None or row["status"] != "ok":
                continue
            title = f"{row['layer_name']} ({'×'.join(map(str, row['shape']))}, Q={row['q']:.2f})"
            fig = plots.esd_figure(ev, power_law_of(row), mp_of(row), title, row["phase"])
            parts.append(img_tag(plots.to_png(fig, dpi=72), f"ESD {row['layer_name']}"))
    if len(models) > max_models:
        parts.append(f'<p class="note">ESDs shown for the first {max_models} of {len(models)} models.</p>')
    if not evals:
        parts.append('<p class="note">This scan saved no eigenvalues (save_spectra off).</p>')
    return _section("spectra", "Layer spectra (ESD, power law, Marchenko–Pastur)", "".join(parts))


def render_report(tables: ScanTables, title: str = "", max_esd_models: int = 12) -> str:
    """The whole report as one HTML string."""
    models_table = models_with_catalog(tables)
    models = sorted(models_table.to_pylist(), key=lambda r: (-(r["batch_size"] or 0), r["model_id"]))
    labels = unique_names([row["model_id"] for row in models])
    for row in models:
        row["model"] = labels[row["model_id"]]
    title = title or f"zooscan report — {tables.manifest.get('scan_id', tables.scan_dir.name)}"
    sections = [summary_section(tables), models_section(models), phase_counts_section(tables, models),
                batch_size_section(tables), alpha_depth_section(tables, models), alpha_accuracy_section(models_table),
                spectra_section(tables, models, max_esd_models),
                _section("layers", "Layers (analysed and failed; skipped tensors left out)",
                         html_table([r for r in tables.layers.to_pylist() if r["status"] != "skipped"],
                                    LAYER_COLUMNS))]
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>")


def write_report(tables: ScanTables, output: Path, title: str = "", max_esd_models: int = 12) -> Path:
    """Write the report to ``output`` (parent folders created) and return the path."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_report(tables, title, max_esd_models), encoding="utf-8")
    logger.info("wrote report %s (%.1f MB)", output, output.stat().st_size / 1e6)
    return output
