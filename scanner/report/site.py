"""The zoo report: a folder with ``index.html`` (the verdict for the whole zoo), one page per model under
``models/`` and the ESD plots as PNG files under ``img/``.

The first page answers "which models are best, by which metric, and how well does each metric predict the
published value": per group (family · dataset · published metric) the ranking beside the published one,
Kendall τ / Spearman ρ / R² with the fitted line and labelled points; then the phase mix across the zoo and
per layer kind, the α distributions, and the layers worth a look (α < 2, rank collapse, correlation traps,
failed fits), each linked to its ESD plot on its model's page.

Scale: per-model charts are small SVGs written as text; matplotlib draws only the zoo-level figures and a
bounded number of ESD plots (``esd_budget``: whole models in the page's order until the budget is spent,
plus every listed layer worth a look), on ``jobs`` processes. Skipped tensors (biases, norms, buffers) are
left out of the model tables unless ``show_skipped``.
"""

from __future__ import annotations

import html
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scanner.report import plots, style
from scanner.report.svg import scatter_svg, svg_img
from scanner.report.zoo import METRICS, Flag, GroupResult, ModelRow, Zoo, flagged_layers, group_results

logger = logging.getLogger(__name__)

STYLE = style.BASE + style.PHASES + (
    "th,td{text-align:left}td.n{text-align:right}.L td:nth-child(n+3):nth-child(-n+9){text-align:right}"
    ".p{padding:0 4px;border-radius:3px}.verdict{background:#f6f8fa;border:1px solid #dde;padding:8px 14px;"
    "font-size:14px}.esd{margin:6px 0 14px}.bad{color:#b00}"
)
MAX_FLAGS_LISTED = 50
_NUMERIC = re.compile(r"^(<b>)?[-+0-9.,e /×R²n=]*(</b>)?$")
MAX_GROUP_FIGURES = 24
ESD_CHUNK = 8  # ESD plots per pool task
WEAK_AGREEMENT = 0.2  # mean agreement τ below which no metric is called the best predictor


@dataclass(frozen=True)
class ReportOptions:
    """How much the report draws.

    Attributes:
        title: page title (default: the scan ids).
        esd_budget: ESD plots of whole models, in the order of the model table, until this many are drawn;
            the layers listed as worth a look are drawn in addition.
        show_skipped: list skipped tensors (biases, norms, buffers) in the model tables too.
        jobs: processes drawing ESD plots (0: min(2, CPUs)).
        models: draw every layer's ESD for these model ids whatever the budget.
    """

    title: str = ""
    esd_budget: int = 100
    show_skipped: bool = False
    jobs: int = 0
    models: tuple[str, ...] = ()


class Progress:
    """Progress lines on a stream, at most one every ``interval`` seconds (and the last one)."""

    def __init__(self, stream: Any = None, interval: float = 2.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self._last = 0.0
        self.started = time.perf_counter()

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - self._last >= self.interval:
            self._last = now
            print(f"report: {stage} {done}/{total} ({now - self.started:.1f} s)", file=self.stream, flush=True)


ProgressFn = Callable[[str, int, int], None]


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}" if np.isfinite(value) else str(value)
    return str(value)


def _phase(phase: str | None) -> str:
    if not phase:
        return ""
    return f'<span class="p {_esc(phase)}">{_esc(plots.PHASE_LABELS.get(phase, phase))}</span>'


def page_name(model: ModelRow) -> str:
    return f"{model.ref}.html"


def esd_file(model: ModelRow, layer_index: int) -> str:
    return f"{model.ref}_L{layer_index}.png"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    th = "".join(f"<th>{_esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if c and _NUMERIC.match(c) else f"<td>{c}</td>"
                                    for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _plain_table(head: Sequence[str], rows: Sequence[Sequence[str]], css: str) -> str:
    """A table without per-cell classes (alignment from the table's CSS class): compact for long tables."""
    th = "".join(f"<th>{_esc(h)}</th>" for h in head)
    body = "".join("<tr><td>" + "</td><td>".join(r) + "</td></tr>" for r in rows)
    return f'<table class="{css}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


# -- figures (in worker processes) ---------------------------------------------------------------------------
def _draw(task: tuple[Any, ...]) -> int:
    """One task of the pool: ("esd", model, rows, img_dir) or ("figure", plots function name, args, path)."""
    if task[0] == "esd":
        return _draw_model_esds(task[1], task[2], task[3])
    _, name, args, path = task
    Path(path).write_bytes(plots.to_png(getattr(plots, name)(*args), dpi=80, colors=96))
    return 1


def _draw_model_esds(model: ModelRow, rows: list[dict[str, Any]], img_dir: str) -> int:
    """Draw the ESD pair of each given layer row of one model into ``img_dir``; returns plots drawn."""
    from scanner.report.tables import mp_of, power_law_of
    from scanner.report.zoo import read_eigenvalues

    evals = read_eigenvalues(model, [r["layer_index"] for r in rows])
    drawn = 0
    for row in rows:
        ev = evals.get(row["layer_index"])
        if ev is None or ev.size == 0:
            continue
        shape = "×".join(map(str, row["shape"] or ()))
        title = f"{row['layer_name']} ({row['n']}×{row['m']} of {shape}, Q={row['q']:.2f})"
        fig = plots.esd_figure(ev, power_law_of(row), mp_of(row), title, row["phase"])
        Path(img_dir, esd_file(model, row["layer_index"])).write_bytes(plots.to_png(fig, dpi=64, colors=48))
        drawn += 1
    return drawn


def _esd_plan(zoo: Zoo, order: Sequence[ModelRow], listed: Sequence[Flag],
              options: ReportOptions) -> dict[str, list[dict[str, Any]]]:
    """model ref (``ModelRow.ref``) → layer rows whose ESD is drawn."""
    ok_rows: dict[str, list[dict[str, Any]]] = {}
    for row in zoo.layer_rows:
        if row["status"] == "ok" and row.get("num_evals"):
            ok_rows.setdefault(row["model_ref"], []).append(row)
    plan: dict[str, dict[int, dict[str, Any]]] = {}
    budget = options.esd_budget
    for model in order:
        rows = ok_rows.get(model.ref, [])
        forced = model.model_id in options.models
        if rows and (forced or len(rows) <= budget):
            plan[model.ref] = {r["layer_index"]: r for r in rows}
            budget -= 0 if forced else len(rows)
    for flag in listed:
        if flag.row.get("status") == "ok" and flag.row.get("num_evals"):
            plan.setdefault(flag.model_ref, {})[flag.layer_index] = flag.row
    return {k: sorted(v.values(), key=lambda r: r["layer_index"]) for k, v in plan.items()}


def draw_all(zoo: Zoo, plan: dict[str, list[dict[str, Any]]], figures: list[tuple[Any, ...]], img_dir: Path,
             jobs: int, progress: ProgressFn) -> set[tuple[str, int]]:
    """Draw the zoo figures and the planned ESD plots on ``jobs`` processes; returns the (model ref,
    layer_index) pairs whose ESD PNG exists."""
    tasks: list[tuple[Any, ...]] = list(figures)
    tasks += [("esd", zoo.model(mid), rows[i:i + ESD_CHUNK], str(img_dir))  # chunks: steady progress, balance
              for mid, rows in plan.items() for i in range(0, len(rows), ESD_CHUNK)]
    sizes = [1 if t[0] == "figure" else len(t[2]) for t in tasks]
    total, done = sum(sizes), 0
    progress("plots", 0, total)
    if jobs <= 1 or len(tasks) <= 1:
        for task, size in zip(tasks, sizes, strict=True):
            _draw(task)
            done += size
            progress("plots", done, total)
    else:
        import multiprocessing

        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            for size, _ in zip(sizes, pool.map(_draw, tasks, chunksize=1), strict=True):
                done += size
                progress("plots", done, total)
    return {(mid, r["layer_index"]) for mid, rows in plan.items() for r in rows
            if (img_dir / esd_file(zoo.model(mid), r["layer_index"])).is_file()}


# -- the first page ------------------------------------------------------------------------------------------
def verdict_html(zoo: Zoo, groups: Sequence[GroupResult], flags: Sequence[Flag]) -> str:
    """The at-a-glance answers: models and groups, the best model per group, and the metric that predicts
    the published ranking best (agreement τ averaged over groups with a correlation, weighted by size)."""
    ok = sum(m.status == "ok" for m in zoo.models)
    failed = [m for m in zoo.models if m.status != "ok"]
    lines = [f"<b>{len(zoo.models):,} models</b> ({ok:,} scanned, {len(failed):,} failed), "
             f"{sum(len(g.models) for g in groups):,} with a published metric in {len(groups)} group(s) "
             "(family · dataset · metric)."]
    scores: dict[str, list[tuple[float, int]]] = {}
    for g in groups:
        for metric, a in g.associations.items():
            if a.agreement is not None:
                scores.setdefault(metric, []).append((a.agreement, a.n))
    if scores:
        mean = {m: sum(t * n for t, n in v) / sum(n for _, n in v) for m, v in scores.items()}
        best = max(mean, key=lambda m: mean[m])
        n_groups = len(scores[best])
        ranking = ", ".join(f"{_esc(METRICS[m][0])} {mean[m]:+.2f}" for m in sorted(mean, key=lambda m: -mean[m]))
        if mean[best] >= WEAK_AGREEMENT:
            lead = f"Best predictor of the published ranking: <b>{_esc(METRICS[best][0])}</b>"
        else:  # a "best" of about zero would mislead
            lead = (f"<b>No metric predicts the published ranking consistently</b> here; the least bad is "
                    f"{_esc(METRICS[best][0])}")
        lines.append(f"{lead} (agreement τ {mean[best]:+.2f}, averaged over {n_groups} group(s) with ≥ 3 models; "
                     f"+1 = same order as published, 0 = no relation, −1 = reversed). All metrics: {ranking}.")
    else:
        lines.append("No group has 3 or more models with a published metric, so no correlation is computed: "
                     "add catalogs with the models' published metric (--catalog) or scan more of a family.")
    for g in groups[:8]:
        top = g.models[0]
        pick = g.best_metric
        by_metric = ""
        if pick:
            first = min(range(len(g.models)), key=lambda i: g.metric_ranks[pick][i] or 10**9)
            by_metric = f"; {_esc(METRICS[pick][0])} picks <b>{_esc(g.models[first].label)}</b>"
        lines.append(f"{_esc(g.name)}: best published <b>{_esc(top.label)}</b> "
                     f"({_num(top.published.value, 4)}){by_metric}.")  # type: ignore[union-attr]
    if failed:
        lines.append(f'<span class="bad">{len(failed)} model(s) failed to scan</span>: see the models table.')
    lines.append(f"{len(flags):,} layer(s) worth a look (α < 2, rank collapse, correlation traps, failed fits).")
    return '<div class="verdict">' + "<br>".join(lines) + "</div>"


def _has_figure(k: int, group: GroupResult) -> bool:
    return k < MAX_GROUP_FIGURES and len(group.models) >= 3


def figure_tasks(zoo: Zoo, groups: Sequence[GroupResult], img_dir: Path) -> list[tuple[Any, ...]]:
    """The zoo page's figures as pool tasks: one per group with ≥ 3 models, the phase mix, the α histograms."""
    tasks: list[tuple[Any, ...]] = []
    for k, g in enumerate(groups):
        if _has_figure(k, g):
            args = ([(METRICS[m][0], [x.values.get(m) for x in g.models], g.associations[m]) for m in METRICS],
                    [x.published.value for x in g.models],  # type: ignore[union-attr]
                    [x.label for x in g.models], f"published {g.metric}", g.name)
            tasks.append(("figure", "metric_vs_published_figure", args, str(img_dir / f"group_{k}.png")))
    mix = phase_mix(zoo)
    if mix:
        tasks.append(("figure", "phase_mix_figure", ({k: dict(v) for k, v in mix.items()},),
                      str(img_dir / "phase_mix.png")))
    alphas = alpha_values(zoo)
    if alphas:
        tasks.append(("figure", "alpha_distribution_figure", alphas, str(img_dir / "alpha_distribution.png")))
    return tasks


def phase_mix(zoo: Zoo) -> dict[str, Counter[str]]:
    """Phase counts of analysed layers: the whole zoo, then the 12 commonest layer kinds ({} when none)."""
    rows = [r for r in zoo.layer_rows if r["status"] == "ok" and r["phase"]]
    if not rows:
        return {}
    mix: dict[str, Counter[str]] = {"whole zoo": Counter(r["phase"] for r in rows)}
    for kind, _ in Counter(r["kind"] for r in rows).most_common(12):
        mix[kind] = Counter(r["phase"] for r in rows if r["kind"] == kind)
    return mix


def alpha_values(zoo: Zoo) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(layer α per kind, with "all"; model mean α and α̂) for the α histograms; None without fits."""
    rows = [r for r in zoo.layer_rows if r["status"] == "ok" and r["alpha"] is not None]
    if not rows:
        return None
    kinds = [k for k, _ in Counter(r["kind"] for r in rows).most_common(6)]
    by_kind = {"all": np.array([r["alpha"] for r in rows])}
    by_kind.update({k: np.array([r["alpha"] for r in rows if r["kind"] == k]) for k in kinds if len(kinds) > 1})
    values = {name: np.array([m.values.get(col) for m in zoo.models if m.values.get(col) is not None])
              for name, col in (("mean α", "alpha_mean"), ("α̂", "alpha_hat"))}
    return by_kind, values


def groups_html(groups: Sequence[GroupResult]) -> str:
    parts = ['<p class="note">Within each group, models are sorted by the published value (best first). '
             "τ: Kendall's rank correlation of the metric with the published value; ρ: Spearman's; R²: of the "
             "least-squares line (red). For α, α̂ and the norms, lower values are expected to mean a better model, "
             "so a good predictor has τ &lt; 0 against an accuracy.</p>"]
    for k, g in enumerate(groups):
        head = ["model", f"published {g.metric}", "rank"]
        for metric in METRICS:
            head += [METRICS[metric][0], "rank"]
        rows = []
        for i, m in enumerate(g.models):
            cells = [f'<a href="models/{page_name(m)}">{_esc(m.label)}</a>',
                     _num(m.published.value, 4), _num(g.published_rank[i])]  # type: ignore[union-attr]
            for metric in METRICS:
                cells += [_num(m.values.get(metric)), _num(g.metric_ranks[metric][i])]
            rows.append(cells)
        assoc_row = ["τ / ρ / R²", "", ""]
        for metric in METRICS:
            a = g.associations[metric]
            assoc_row += [f"{a.kendall_tau:+.2f} / {a.spearman_rho:+.2f} / {a.r2:.2f}" if a.kendall_tau is not None
                          else f"n = {a.n}", ""]
        rows.append([f"<b>{c}</b>" if c else "" for c in assoc_row])
        figure = ""
        if _has_figure(k, g):
            figure = f'<br><img alt="{_esc(g.name)}: metrics against the published value" src="img/group_{k}.png">'
        twice = "" if not g.left_out else (
            f'<p class="note">In more than one of the scans: {", ".join(_esc(m.label) for m in g.left_out)}; '
            "each model is ranked once, with its row from the last scan given where it did not fail.</p>")
        parts.append(f"<h3>{_esc(g.name)} ({len(g.models)} models)</h3>" + twice + _table(head, rows) + figure)
    if len(groups) > MAX_GROUP_FIGURES:
        parts.append(f'<p class="note">Figures drawn for the {MAX_GROUP_FIGURES} largest groups.</p>')
    if not groups:
        parts.append('<p class="note">No model has a published metric in the catalogs given.</p>')
    return "".join(parts)


def phase_mix_html(zoo: Zoo) -> str:
    mix = phase_mix(zoo)
    if not mix:
        return '<p class="note">No analysed layer has a phase.</p>'
    head = ["layers", *[plots.PHASE_LABELS[p] for p in plots.PHASE_LABELS], "total"]
    table = [[_esc(k), *[f"{v.get(p, 0):,}" for p in plots.PHASE_LABELS], f"{sum(v.values()):,}"] for k, v in mix.items()]
    return '<img alt="phase mix" src="img/phase_mix.png">' + _table(head, table)


def alpha_html(zoo: Zoo) -> str:
    values = alpha_values(zoo)
    if values is None:
        return '<p class="note">No layer has a power-law fit.</p>'
    alphas = values[0]["all"]
    stats = (f"{alphas.size:,} fitted layers: median α {np.median(alphas):.2f}, {np.mean(alphas < 2) * 100:.1f} % below 2, "
             f"{np.mean((alphas >= 2) & (alphas <= 6)) * 100:.1f} % in [2, 6], {np.mean(alphas > 6) * 100:.1f} % above 6.")
    return f'<p>{stats}</p><img alt="alpha distributions" src="img/alpha_distribution.png">'


def flags_html(zoo: Zoo, flags: Sequence[Flag], drawn: set[tuple[str, int]]) -> str:
    rows = []
    for f in flags[:MAX_FLAGS_LISTED]:
        model = zoo.model(f.model_ref)
        link = f"models/{page_name(model)}#L{f.layer_index}"
        esd = f'<a href="{link}">ESD</a>' if (f.model_ref, f.layer_index) in drawn else ""
        rows.append([f'<a href="models/{page_name(model)}">{_esc(model.label)}</a>',
                     f'<a href="{link}">{_esc(f.layer_name)}</a>', _esc(f.kind), _num(f.alpha), _phase(f.phase),
                     f'<span class="t">{_esc(f.why)}</span>', esd])
    more = (f'<p class="note">The {MAX_FLAGS_LISTED} most severe of {len(flags):,}; all are in '
            '<a href="worth_a_look.csv">worth_a_look.csv</a>.</p>') if len(flags) > MAX_FLAGS_LISTED else ""
    if not flags:
        return '<p class="note">None: no layer with α &lt; 2, rank collapse, correlation traps or a failed fit.</p>'
    return _table(["model", "layer", "kind", "α", "phase", "why", "plot"], rows) + more


def models_html(zoo: Zoo, order: Sequence[ModelRow]) -> str:
    rows = []
    for m in order:
        v = m.values
        counts = ", ".join(f"{plots.PHASE_LABELS[p]} {v.get('n_' + p)}" for p in plots.PHASE_LABELS if v.get("n_" + p))
        status = _esc(m.status) if m.status == "ok" else f'<span class="bad">{_esc(m.status)}: {_esc(m.reason[:160])}</span>'
        rows.append([f'<a href="models/{page_name(m)}">{_esc(m.label)}</a>', _esc(m.group),
                     _num(m.published.value, 4) if m.published else "", status, _num(v.get("n_ok")),
                     _num(v.get("alpha_mean")), _num(v.get("alpha_hat")), _num(v.get("log_spectral_norm_mean")),
                     f'<span class="t">{_esc(counts)}</span>'])
    return _table(["model", "group", "published", "status", "layers analysed", "mean α", "α̂",
                   "mean log₁₀λmax", "phases"], rows)


# -- per-model pages -----------------------------------------------------------------------------------------
def model_page(model: ModelRow, rows: list[dict[str, Any]], drawn: set[tuple[str, int]], flags: dict[int, str],
               options: ReportOptions) -> str:
    """One model: its summary, α by depth (SVG), the layer table, and the ESD plots drawn for it."""
    v = model.values
    title = model.label
    ok = [r for r in rows if r["status"] == "ok"]
    points = [(r["layer_index"], r["alpha"], plots.PHASE_COLORS.get(r["phase"] or "", plots.NO_PHASE_COLOR))
              for r in ok if r["alpha"] is not None]
    chart = svg_img(scatter_svg(points, xlabel="layer index (read order)", ylabel="power-law α", band=(2.0, 6.0),
                                y_max=12.0, title="α by depth (grey: 2 ≤ α ≤ 6; ▲: α > 12)"), f"alpha by depth {title}")
    shown = rows if options.show_skipped else ok + [r for r in rows if r["status"] == "failed"]
    hidden = len(rows) - len(shown)
    table_rows = []
    for r in shown:
        name = _esc(r["layer_name"])
        if (model.ref, r["layer_index"]) in drawn:
            name = f'<a href="#L{r["layer_index"]}">{name}</a>'
        matrix = f"{r['n']}×{r['m']}" if r.get("n") else "×".join(map(str, r["shape"] or ()))
        note = flags.get(r["layer_index"], "") or (r["reason"] or "")
        table_rows.append([name, _esc(r["kind"]), matrix, _num(r["q"]), _num(r["alpha"]),
                           "" if r["fit_reliable"] in (None, True) else "no", _num(r["alpha_weighted"]),
                           _num(r["num_spikes"]), _num(r["rand_num_traps"]), _phase(r["phase"]),
                           _esc(note) if r["status"] == "ok" else
                           f'<span class="bad">{_esc(r["status"])}: {_esc(note)}</span>'])
    hidden_note = (f'<p class="note">{hidden} skipped tensor(s) (biases, norms, buffers, too small) hidden; '
                   "zooscan report --show-skipped lists them.</p>") if hidden else ""
    esds = []
    for r in ok:
        if (model.ref, r["layer_index"]) in drawn:
            reason = _esc(r.get("phase_reason") or "")
            esds.append(f'<div class="esd" id="L{r["layer_index"]}"><img alt="ESD {_esc(r["layer_name"])}" '
                        f'src="../img/{esd_file(model, r["layer_index"])}"><br><span class="note">{reason}</span></div>')
    esd_note = "" if esds else ('<p class="note">ESD plots were not drawn for this model (the report draws them for '
                                f"a budget of layers); zooscan report --model {_esc(model.model_id)} draws them.</p>")
    summary = [["model id", _esc(model.model_id)], ["scan", _esc(model.scan_name)], ["group", _esc(model.group)],
               ["published", _num(model.published.value, 4) if model.published else "none"],
               ["status", _esc(model.status) + (f": {_esc(model.reason)}" if model.reason else "")],
               ["layers", f"{_num(v.get('n_layers'))} tensors, {_num(v.get('n_ok'))} analysed, "
                          f"{_num(v.get('n_skipped'))} skipped, {_num(v.get('n_failed'))} failed"],
               ["mean α / α̂", f"{_num(v.get('alpha_mean'))} / {_num(v.get('alpha_hat'))}"],
               ["parameters", f"{v.get('num_params') or 0:,}"]]
    body = (f'<p><a href="../index.html">← zoo report</a></p><h1>{_esc(title)}</h1>'
            + "<table>" + "".join(f"<tr><th>{k}</th><td class='t'>{c}</td></tr>" for k, c in summary) + "</table>"
            + chart + "<h2>Layers</h2>"
            + _plain_table(["layer", "kind", "matrix N×M", "Q", "α", "fit ok", "α̂ (α·log₁₀λmax)", "spikes", "traps",
                            "phase", "note"], table_rows, "L")
            + hidden_note + "<h2>Spectra</h2>" + "".join(esds) + esd_note)
    return _page(f"{title} — zooscan", body, "../")


def _page(title: str, body: str, root: str = "") -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
            f"<link rel='icon' href='data:,'><link rel='stylesheet' href='{root}style.css'></head>"
            f"<body>{body}</body></html>")


def _write_flags_csv(path: Path, zoo: Zoo, flags: Sequence[Flag]) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["scan_id", "model_id", "layer_index", "layer_name", "kind", "alpha", "phase", "why"])
        writer.writerows([[zoo.model(f.model_ref).scan_name, f.model_id, f.layer_index, f.layer_name, f.kind,
                           "" if f.alpha is None else f.alpha, f.phase, f.why] for f in flags])


def write_site(zoo: Zoo, out_dir: Path, options: ReportOptions | None = None,
               progress: ProgressFn | None = None) -> Path:
    """Write the report folder and return the path of its ``index.html``."""
    options = options or ReportOptions()
    progress = progress or (lambda stage, done, total: None)
    out_dir = Path(out_dir)
    img_dir, page_dir = out_dir / "img", out_dir / "models"
    img_dir.mkdir(parents=True, exist_ok=True)
    page_dir.mkdir(parents=True, exist_ok=True)
    groups = group_results(zoo)
    grouped = {m.ref: (k, i) for k, g in enumerate(groups) for i, m in enumerate(g.models)}
    order = sorted(zoo.models, key=lambda m: (*grouped.get(m.ref, (len(groups), 0)), m.model_id, m.ref))
    flags = flagged_layers(zoo.layer_rows)
    listed = flags[:MAX_FLAGS_LISTED]
    jobs = options.jobs or min(2, os.cpu_count() or 1)
    drawn = draw_all(zoo, _esd_plan(zoo, order, listed, options), figure_tasks(zoo, groups, img_dir), img_dir, jobs,
                     progress)

    title = options.title or "zooscan report — " + ", ".join(
        m.get("scan_id", d.name) for m, d in zip(zoo.manifests, zoo.scan_dirs, strict=True))
    sections = [
        ("verdict", "Verdict", verdict_html(zoo, groups, flags)),
        ("groups", "Rankings and how each metric predicts the published value", groups_html(groups)),
        ("phases", "Phase mix across the zoo and per layer kind", phase_mix_html(zoo)),
        ("alpha", "α distributions", alpha_html(zoo)),
        ("worth-a-look", "Layers worth a look", flags_html(zoo, flags, drawn)),
        ("models", "Models", models_html(zoo, order)),
    ]
    _write_flags_csv(out_dir / "worth_a_look.csv", zoo, flags)
    (out_dir / "style.css").write_text(STYLE, encoding="utf-8")
    body = f"<h1>{_esc(title)}</h1>" + "".join(
        f'<section id="{sid}"><h2>{_esc(name)}</h2>{content}</section>' for sid, name, content in sections)
    index = out_dir / "index.html"
    index.write_text(_page(title, body), encoding="utf-8")

    by_model: dict[str, list[dict[str, Any]]] = {}
    for row in zoo.layer_rows:
        by_model.setdefault(row["model_ref"], []).append(row)
    flag_text: dict[str, dict[int, str]] = {}
    for f in flags:
        flag_text.setdefault(f.model_ref, {})[f.layer_index] = f.why
    for n, model in enumerate(order, start=1):
        rows = sorted(by_model.get(model.ref, []), key=lambda r: r["layer_index"])
        (page_dir / page_name(model)).write_text(
            model_page(model, rows, drawn, flag_text.get(model.ref, {}), options), encoding="utf-8")
        progress("model pages", n, len(order))
    return index


def folder_size(folder: Path) -> int:
    """Bytes of every file under ``folder``."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
