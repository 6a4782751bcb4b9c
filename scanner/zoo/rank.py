"""Rank each family of a zoo catalog by a model-level scan metric beside its published metric.

Per family and dataset (models evaluated on the same benchmark), the scanned models with a published
metric are ranked twice: by the scan metric (ascending: a lower ``alpha_hat`` predicts a better model in
Martin, Peng & Mahoney, Nat. Commun. 2021) and by the published metric (best first, using the row's
``higher_is_better``). Kendall's tau-b between the scan metric and the published *quality* (the metric, negated
when lower is better) is reported: negative tau means a lower scan metric goes with a better model, as the
theory predicts. Families with fewer than two scored models get no tau.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from scanner.zoo.catalog import ZooRow

METRICS = ("alpha_mean", "alpha_hat", "log_norm_mean", "log_spectral_norm_mean", "log_alpha_norm_mean",
           "stable_rank_mean")


@dataclass(frozen=True)
class Ranked:
    """One scanned model of a family: its scan metric, its published metric and both ranks (1 = best)."""

    family: str
    dataset: str
    model_id: str
    scan_value: float
    published: float
    metric: str
    higher_is_better: bool
    rank_by_scan: int
    rank_by_published: int


def kendall_tau_b(x: list[float], y: list[float]) -> float | None:
    """Kendall's tau-b (ties in either variable excluded from that variable's pair count), as
    ``scipy.stats.kendalltau``; None when fewer than two pairs are untied."""
    concordant = 0.0
    tied_x = tied_y = pairs = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            pairs += 1
            tied_x += dx == 0
            tied_y += dy == 0
            concordant += (dx > 0) - (dx < 0) if dy > 0 else ((dx < 0) - (dx > 0) if dy < 0 else 0)
    denominator = math.sqrt((pairs - tied_x) * (pairs - tied_y))
    return concordant / denominator if denominator else None


def rank_families(rows: list[ZooRow], scan_values: dict[str, float]) -> dict[tuple[str, str], list[Ranked]]:
    """Rankings per (family, dataset) for rows that have a published metric and a finite scan value."""
    groups: dict[tuple[str, str], list[ZooRow]] = defaultdict(list)
    for row in rows:
        value = scan_values.get(row.model_id)
        if row.metric_value is not None and value is not None and math.isfinite(value):
            groups[(row.family, row.dataset)].append(row)
    out: dict[tuple[str, str], list[Ranked]] = {}
    for key, members in sorted(groups.items()):
        by_scan = sorted(members, key=lambda r: scan_values[r.model_id])
        by_pub = sorted(members, key=lambda r: -(r.metric_value or 0.0) if r.higher_is_better else (r.metric_value or 0.0))
        out[key] = [Ranked(r.family, r.dataset, r.model_id, scan_values[r.model_id], float(r.metric_value or 0.0),
                           r.metric, bool(r.higher_is_better), by_scan.index(r) + 1, by_pub.index(r) + 1)
                    for r in by_scan]
    return out


def family_tau(ranked: list[Ranked]) -> float | None:
    """Kendall tau-b between the scan metric and the published quality (sign-adjusted metric)."""
    quality = [r.published if r.higher_is_better else -r.published for r in ranked]
    return kendall_tau_b([r.scan_value for r in ranked], quality) if len(ranked) >= 2 else None


def scan_values(results: str, metric: str, scan_id: str | None = None) -> dict[str, float]:
    """model_id -> the metric of its ok row in ``scan_id`` (default: the last scan id, in name order, that has
    one, over every scan under ``results``)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    from scanner.query import connect

    con = connect(results, scan_id=scan_id)
    rows = con.execute(f"SELECT model_id, {metric} FROM models WHERE status = 'ok' AND {metric} IS NOT NULL "
                       "ORDER BY scan_id").fetchall()
    return {m: float(v) for m, v in rows}


def markdown(rankings: dict[tuple[str, str], list[Ranked]], metric: str) -> str:
    """The rankings as Markdown tables, one per family, with tau in the heading."""
    lines = []
    for (family, dataset), ranked in rankings.items():
        tau = family_tau(ranked)
        tau_text = "n/a" if tau is None else f"{tau:+.3f}"
        lines += [f"### {family} ({dataset}): n = {len(ranked)}, Kendall tau({metric}, published quality) = {tau_text}",
                  "", f"| rank by {metric} | model | {metric} | {ranked[0].metric} | rank by published |",
                  "|---:|---|---:|---:|---:|"]
        lines += [f"| {r.rank_by_scan} | `{r.model_id.removeprefix('file:zoo/registry/')}` | {r.scan_value:.3f} | "
                  f"{r.published:g} | {r.rank_by_published} |" for r in ranked]
        lines.append("")
    return "\n".join(lines)


def rank_command(rows: list[ZooRow], results: str, metric: str, markdown_path: str | None,
                 scan_id: str | None = None) -> int:
    """``zooscan zoo rank``: print the tables (and write them to ``markdown_path`` when given)."""
    rankings = rank_families(rows, scan_values(results, metric, scan_id))
    if not rankings:
        print("no scanned model of the catalog has a published metric yet")
        return 0
    text = markdown(rankings, metric)
    print(text)
    if markdown_path:
        Path(markdown_path).write_text(text + "\n", encoding="utf-8")
    return 0
