"""The zoo report's data: scans read once, models joined with their published metric, per-group rankings
and correlations, and the layers worth a look.

A **group** is the models of one family evaluated on one dataset with one published metric; only models of
one group are compared (accuracies on MNIST and CIFAR-10 are not comparable). The published metric comes
from a catalog row: ``metric``/``metric_value``/``higher_is_better`` when the catalog has them (zoo catalogs,
``scanner.zoo.catalog``), else ``top1`` (percent, higher is better).

Layers are read with only the columns the report shows or plots (``LAYER_COLUMNS``); eigenvalues are read
per model, only for the layers whose ESD is drawn (``read_eigenvalues``).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from scanner.errors import StoreError, one_line
from scanner.report.stats import Association, associate, ranks

LAYER_COLUMNS = (
    "model_id", "model_key", "layer_index", "layer_name", "kind", "shape", "status", "reason", "n", "m", "q",
    "num_evals", "lambda_max", "log_spectral_norm", "stable_rank", "alpha_weighted", "alpha", "xmin", "xmax",
    "ks_distance", "alpha_sigma", "n_tail", "n_fingers", "alpha_raw", "fit_method", "fit_reliable", "fit_reason",
    "mp_scale", "mp_lambda_minus", "mp_lambda_plus", "mp_lambda_plus_tw", "num_spikes", "mp_softrank",
    "mp_bulk_ks", "mp_bulk_fraction", "mp_q", "rand_num_traps", "phase", "phase_reason",
)
# model-level metric → (label with units, lower values predict a better model)
METRICS: dict[str, tuple[str, bool]] = {
    "alpha_mean": ("mean α (power-law exponent)", True),
    "alpha_hat": ("α̂ = mean α·log₁₀λmax", True),
    "log_norm_mean": ("mean log₁₀‖W‖²_F", True),
    "log_spectral_norm_mean": ("mean log₁₀λmax", True),
}


@dataclass(frozen=True)
class Published:
    """A model's published figure: ``metric`` name, ``value``, and whether higher is better."""

    metric: str
    value: float
    higher_is_better: bool


def published_of(row: dict[str, str]) -> Published | None:
    """The published figure of a raw catalog row (``metric``/``metric_value`` first, then ``top1``)."""
    metric, value = (row.get("metric") or "").strip(), (row.get("metric_value") or "").strip()
    if metric and value:
        flag = (row.get("higher_is_better") or "1").strip().lower()
        return Published(metric, float(value), flag in ("1", "true", "yes"))
    top1 = (row.get("top1") or "").strip()
    return Published("top-1 accuracy (%)", float(top1), True) if top1 else None


def read_catalog_rows(paths: Sequence[Path]) -> dict[str, dict[str, str]]:
    """model_id → raw catalog row (strings) over several catalog CSVs; later files win."""
    rows: dict[str, dict[str, str]] = {}
    for path in paths:
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("model_id"):
                    rows[row["model_id"]] = row
    return rows


def _read(files: Sequence[Path], columns: Sequence[str] | None = None, exclude_keys: frozenset[str] = frozenset(),
          only_key: str | None = None) -> pa.Table:
    """Rows of these Parquet files (the named columns), without rows of ``exclude_keys`` or only ``only_key``."""
    import pyarrow.dataset as ds

    dataset = ds.dataset([str(p) for p in files], format="parquet")
    keep = [c for c in columns if c in dataset.schema.names] if columns else None
    condition = None
    if exclude_keys:
        condition = ~ds.field("model_key").isin(sorted(exclude_keys))
    if only_key is not None:
        condition = ds.field("model_key") == only_key
    return dataset.to_table(columns=keep, filter=condition)


def _table(files: Any, table: str, columns: Sequence[str] | None = None) -> pa.Table | None:
    """A table of one scan: per-model files of committed models, plus the compacted rows of the others
    (the rule of ``scanner.storage_layout``)."""
    parts = []
    live = [Path(e.path) for e in files.live[table]]
    if live:
        parts.append(_read(live, columns))
    if files.compacted[table]:
        parts.append(_read([Path(p) for p in files.compacted[table]], columns, exclude_keys=files.live_keys))
    return pa.concat_tables(parts, promote_options="default") if parts else None


@dataclass(frozen=True)
class ModelRow:
    """One model of the report: its scan row, where its files are, and its published figure."""

    model_id: str
    model_key: str
    scan_dir: Path
    status: str
    reason: str
    family: str
    dataset: str
    published: Published | None
    values: dict[str, Any]  # the models-table row (alpha_mean, alpha_hat, n_ok, phase counts, …)
    label: str = ""  # a short name unique in the report (``scanner.report.names.unique_names``)
    ref: str = ""  # unique in the report: the model key, prefixed with the scan's name when another scan has it
    scan_name: str = ""  # the scan folder's name, with its parent folder when another scan folder has that name

    @property
    def group(self) -> str:
        metric = self.published.metric if self.published else "no published metric"
        return f"{self.family} · {self.dataset or '?'} · {metric}"


@dataclass(frozen=True)
class Zoo:
    """Every model and analysed-or-skipped layer of one or more scans."""

    scan_dirs: tuple[Path, ...]
    manifests: tuple[dict[str, Any], ...]
    models: tuple[ModelRow, ...]
    layers: pa.Table  # LAYER_COLUMNS of every layer row

    def model(self, ref: str) -> ModelRow:
        """The model of a ``ModelRow.ref`` (a layer row's ``model_ref``)."""
        return self._by_ref[ref]

    @functools.cached_property
    def _by_ref(self) -> dict[str, ModelRow]:
        return {m.ref: m for m in self.models}

    @functools.cached_property
    def layer_rows(self) -> list[dict[str, Any]]:
        """``layers`` as Python dicts, converted once (the report walks them several times)."""
        return self.layers.to_pylist()


def load_zoo(scan_dirs: Sequence[Path], catalogs: Sequence[Path] = ()) -> Zoo:
    """Read the models and layers of ``scan_dirs`` and join each model with its catalog row.

    Raises:
        StoreError: a folder holds no committed ``models/`` and ``layers/`` Parquet files.
    """
    catalog = read_catalog_rows(catalogs)
    models: list[ModelRow] = []
    layer_tables, manifests = [], []
    from scanner.storage import LocalStorage
    from scanner.storage_layout import scan_files

    names = scan_names([Path(d) for d in scan_dirs])
    for scan_dir in (Path(d) for d in scan_dirs):
        if not scan_dir.is_dir():
            raise StoreError(f"scan folder {scan_dir} does not exist; pass <results>/<scan_id> of a finished scan "
                             "(ls <results> lists the scan ids)")
        files = scan_files(LocalStorage(scan_dir.parent), scan_dir)
        try:
            model_table, layer_table = _table(files, "models"), _table(files, "layers", LAYER_COLUMNS)
        except (pa.ArrowException, OSError) as exc:
            raise StoreError(f"a results file of {scan_dir} cannot be read ({one_line(exc)}); run 'zooscan verify "
                             f"--results {scan_dir.parent} --scan-id {scan_dir.name} --repair' to move it aside, "
                             "then rerun the scan to redo its model") from exc
        if model_table is None or layer_table is None or not model_table.num_rows:
            raise StoreError(f"{scan_dir} holds no committed models/ and layers/ Parquet files; pass a scan folder "
                             "<results>/<scan_id> that a scan has written (zooscan scan … --results <results>)")
        manifest_path = scan_dir / "scan.json"
        manifests.append(json.loads(manifest_path.read_text()) if manifest_path.is_file() else {})
        for row in model_table.to_pylist():
            entry = catalog.get(row["model_id"], {})
            models.append(ModelRow(
                model_id=row["model_id"], model_key=row["model_key"], scan_dir=scan_dir, status=row["status"],
                reason=row.get("reason") or "", family=entry.get("family") or row["model_id"].split(":", 1)[0],
                dataset=entry.get("dataset") or "", published=published_of(entry), values=row,
                scan_name=names[scan_dir]))
        layer_tables.append((scan_dir, layer_table))
    from scanner.report.names import unique_names

    labels = unique_names(list(dict.fromkeys(m.model_id for m in models)))
    scans_of = Counter(m.model_id for m in models)
    models = [_identified(m, labels[m.model_id], scans_of[m.model_id] > 1) for m in models]
    refs = {(m.scan_dir, m.model_key): m.ref for m in models}
    layers = pa.concat_tables([table.append_column("model_ref", pa.array(
        [refs.get((scan_dir, key), key) for key in table["model_key"].to_pylist()], pa.string()))
        for scan_dir, table in layer_tables], promote_options="default")
    return Zoo(tuple(Path(d) for d in scan_dirs), tuple(manifests), tuple(models), layers)


def scan_names(scan_dirs: Sequence[Path]) -> dict[Path, str]:
    """Each scan folder's name in the report: its own name, or parent/name when another folder of the report has
    that name (two results roots holding a scan of one id), or its whole path.

    Raises:
        StoreError: a folder given twice (its models would count twice).
    """
    resolved = [d.resolve() for d in scan_dirs]
    twice = next((d for d, r in zip(scan_dirs, resolved, strict=True) if resolved.count(r) > 1), None)
    if twice is not None:
        raise StoreError(f"scan folder {twice} is given twice; give each scan once")
    names = {d: d.name for d in scan_dirs}
    for parts in (2, None):
        clashes = {n for n in names.values() if list(names.values()).count(n) > 1}
        if not clashes:
            break
        names = {d: (str(Path(*r.parts[-parts:])) if parts else str(r)) if names[d] in clashes else names[d]
                 for d, r in zip(scan_dirs, resolved, strict=True)}
    return names


def _identified(model: ModelRow, label: str, in_several_scans: bool) -> ModelRow:
    """The model with its ``label`` and ``ref`` in the report: a model (the same id) in several of the report's
    scans — e.g. one scan with each of two options — is one entry per scan, its scan's name in both."""
    if not in_several_scans:
        return dataclasses.replace(model, label=label, ref=model.model_key)
    prefix = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.scan_name)
    return dataclasses.replace(model, label=f"{label} [{model.scan_name}]", ref=f"{prefix}--{model.model_key}")


def read_eigenvalues(model: ModelRow, layer_indices: Sequence[int] | None = None) -> dict[int, NDArray[np.float64]]:
    """layer_index → eigenvalues (ascending, raw units) of one model; {} when its scan saved none."""
    path = model.scan_dir / "spectra" / f"{model.model_key}.parquet"
    columns = ["model_id", "layer_index", "eigenvalues"]
    if path.is_file():
        table = pq.read_table(path, columns=columns)
    else:  # compacted: the rows of this key in the compacted spectra files
        from scanner.storage import LocalStorage
        from scanner.storage_layout import scan_files

        compacted = scan_files(LocalStorage(model.scan_dir.parent), model.scan_dir).compacted["spectra"]
        if not compacted:
            return {}
        table = _read([Path(p) for p in compacted], columns, only_key=model.model_key)
    wanted = None if layer_indices is None else set(layer_indices)
    out = {}
    for mid, index, evals in zip(table["model_id"].to_pylist(), table["layer_index"].to_pylist(),
                                 table["eigenvalues"].to_numpy(zero_copy_only=False), strict=True):
        if mid == model.model_id and (wanted is None or index in wanted):
            out[index] = np.asarray(evals, dtype=np.float64)
    return out


@dataclass(frozen=True)
class GroupResult:
    """One group's ranking and how each metric predicts its published value."""

    name: str
    metric: str
    higher_is_better: bool
    models: tuple[ModelRow, ...]  # sorted best first by the published value (unpublished last)
    published_rank: tuple[int | None, ...]
    metric_ranks: dict[str, tuple[int | None, ...]]
    associations: dict[str, Association]
    left_out: tuple[ModelRow, ...] = ()  # rows of a model that a later scan of the report has too (ranked once)

    @property
    def best_metric(self) -> str | None:
        """The metric whose ordering agrees best with the published one (None without correlations)."""
        scored = [(a.agreement, m) for m, a in self.associations.items() if a.agreement is not None]
        return max(scored)[1] if scored else None


def group_results(zoo: Zoo) -> list[GroupResult]:
    """Every group with a published metric and at least one scanned model, largest group first. A model in
    several of the report's scans is ranked and correlated once, with the row of the last scan given."""
    groups: dict[str, dict[str, ModelRow]] = {}
    left_out: dict[str, list[ModelRow]] = {}
    for model in zoo.models:  # in the order of the scans given: a later scan's row of a model replaces the earlier
        if model.published is not None and model.status == "ok":
            earlier = groups.setdefault(model.group, {}).pop(model.model_id, None)
            if earlier is not None:
                left_out.setdefault(model.group, []).append(earlier)
            groups[model.group][model.model_id] = model
    out = []
    for name, by_id in groups.items():
        members = list(by_id.values())
        hib = members[0].published.higher_is_better  # type: ignore[union-attr]
        members.sort(key=lambda m: -m.published.value if hib else m.published.value)  # type: ignore[union-attr]
        published: list[float | None] = [m.published.value for m in members]  # type: ignore[union-attr]
        metric_ranks = {k: tuple(ranks([m.values.get(k) for m in members], higher_is_better=not lower))
                        for k, (_, lower) in METRICS.items()}
        assoc = {k: associate([m.values.get(k) for m in members], published, metric_lower_is_better=lower,
                              published_higher_is_better=hib) for k, (_, lower) in METRICS.items()}
        out.append(GroupResult(name, members[0].published.metric, hib, tuple(members),  # type: ignore[union-attr]
                               tuple(ranks(published, higher_is_better=hib)), metric_ranks, assoc,
                               tuple(left_out.get(name, ()))))
    out.sort(key=lambda g: (-len(g.models), g.name))
    return out


@dataclass(frozen=True)
class Flag:
    """A layer worth a look: which model and layer, why, and a severity for sorting (higher first)."""

    model_id: str
    layer_index: int
    layer_name: str
    kind: str
    alpha: float | None
    phase: str
    why: str
    severity: float
    row: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    model_ref: str = ""  # the model's ``ModelRow.ref`` (the layer row's ``model_ref``)


def flagged_layers(layers: pa.Table | list[dict[str, Any]]) -> list[Flag]:
    """Layers with α < 2, rank collapse, correlation traps, a failed fit or a failed eigensolve.

    Severity: failed layers 4, rank collapse 3, α < 2 of a reliable fit by how far below 2 (2 + (2 − α)), traps
    1 + traps/100, unreliable or missing fits 0.5; sorted by decreasing severity, then model and layer order.
    """
    out = []
    for row in layers if isinstance(layers, list) else layers.to_pylist():
        reasons, severity = [], 0.0
        status, alpha, phase = row["status"], row.get("alpha"), row.get("phase") or ""
        if status == "failed":
            reasons.append(f"failed: {row.get('reason') or 'no reason recorded'}")
            severity = 4.0
        elif status == "ok":
            if phase == "rank_collapse":
                reasons.append("rank collapse")
                severity = max(severity, 3.0)
            reliable = row.get("fit_reliable") is not False
            if alpha is not None and alpha < 2.0 and reliable:
                reasons.append(f"α = {alpha:.2f} < 2 (very heavy tail)")
                severity = max(severity, 2.0 + (2.0 - alpha))
            if alpha is not None and not reliable:  # e.g. a 10-eigenvalue classifier: its α says little
                reasons.append(f"unreliable power-law fit, α = {alpha:.2f} ({row.get('fit_reason') or 'see the fit'})")
                severity = max(severity, 0.5)
            traps = row.get("rand_num_traps") or 0
            if traps > 0:
                reasons.append(f"{traps} correlation trap{'s' if traps != 1 else ''}")
                severity = max(severity, 1.0 + min(traps, 99) / 100.0)
            if alpha is None:
                reasons.append(f"no power-law fit ({row.get('fit_reason') or 'tail too short'})")
                severity = max(severity, 0.5)
        if reasons:
            out.append(Flag(row["model_id"], row["layer_index"], row["layer_name"], row["kind"], alpha, phase,
                            "; ".join(reasons), severity, row, row.get("model_ref") or row["model_id"]))
    out.sort(key=lambda f: (-f.severity, f.model_id, f.model_ref, f.layer_index))
    return out
