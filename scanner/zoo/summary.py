"""A Markdown summary of one scan of a zoo catalog: models ok/failed by format (with the failure reasons),
layers per kind, and layer phases per family. Read from the results views (``scanner.query.connect``); models
of the scan that are not rows of the catalog (renamed since) are left out."""

from __future__ import annotations

from collections import Counter, defaultdict

from scanner.zoo.catalog import ZooRow


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def _reason(text: str | None) -> str:
    text = (text or "").replace("|", "/").replace("\n", " ")
    for marker in ("unknown checkpoint format", "needs more than tensors", "weights_only", "Unsupported global"):
        if marker in text:
            start = text.index(marker)
            return text[start:start + 70]
    return text[:90]


def scan_summary(rows: list[ZooRow], results: str, scan_id: str) -> str:
    """Markdown for the scan ``scan_id`` under ``results`` of the catalog ``rows``."""
    from scanner.query import connect

    con = connect(results, scan_id=scan_id)
    by_id = {r.model_id: r for r in rows}
    models = {m: (s, r, e, n) for m, s, r, e, n in con.execute(
        "SELECT model_id, status, reason, error_class, n_ok FROM models").fetchall() if m in by_id}
    lines = [f"# Registry zoo scan `{scan_id}`", "",
             f"{len(models)} models scanned of {len(rows)} catalog rows; "
             f"{sum(v[0] == 'ok' for v in models.values())} ok.", "", "## Models by format", ""]
    per_format: dict[str, Counter[str]] = defaultdict(Counter)
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    for model_id, (status, reason, error_class, _) in models.items():
        fmt = by_id[model_id].format if model_id in by_id else "?"
        per_format[fmt][status] += 1
        if status != "ok":
            reasons[fmt][f"{error_class}: {_reason(reason)}"] += 1
    lines += _table(["format", "models", "ok", "failed"],
                    [[f, sum(c.values()), c["ok"], sum(v for k, v in c.items() if k != "ok")]
                     for f, c in sorted(per_format.items(), key=lambda kv: -sum(kv[1].values()))])
    lines += ["## Failure reasons by format", ""]
    lines += _table(["format", "models", "reason"],
                    [[f, n, r] for f, c in sorted(reasons.items()) for r, n in c.most_common(4)])
    lines += ["## Layers per kind (all ok models)", ""]
    kinds = [k[1:] for k in con.execute("SELECT model_id, kind, status, count(*) FROM layers GROUP BY ALL "
                                        "ORDER BY 2, 3").fetchall() if k[0] in by_id]
    per_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for kind, status, count in kinds:
        per_kind[kind][status] += count
    lines += _table(["kind", "layers", "ok", "skipped/failed"],
                    [[k, sum(c.values()), c["ok"], sum(v for s, v in c.items() if s != "ok")]
                     for k, c in sorted(per_kind.items())])
    lines += ["## Phases per family (ok layers)", ""]
    phases = [p for p in con.execute("SELECT model_id, phase, count(*) FROM layers WHERE status = 'ok' "
                                     "GROUP BY ALL").fetchall() if p[0] in by_id]
    per_family: dict[str, Counter[str]] = defaultdict(Counter)
    names = sorted({p or "none" for _, p, _ in phases})
    for model_id, phase, count in phases:
        per_family[by_id[model_id].family if model_id in by_id else "?"][phase or "none"] += count
    lines += _table(["family", "models ok", *names],
                    [[f, sum(1 for m, v in models.items() if v[0] == "ok" and m in by_id and by_id[m].family == f),
                      *[c[n] for n in names]] for f, c in sorted(per_family.items())])
    return "\n".join(lines)
