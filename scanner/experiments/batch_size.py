"""The batch-size experiment of Martin & Mahoney (JMLR 2021 §6; ICML 2019): train, scan, classify, report.

The paper trains MiniAlexNet on CIFAR-10 at batch sizes 500 … 2 (all else fixed) and reads the phase of
FC1 (4096→384, Q ≈ 10.7) and FC2 (384→192, Q = 2): larger batches leave FC1 Random-like, smaller batches
push it through Bleeding-out, Bulk+Spikes and Bulk-decay to Heavy-Tailed (ISR notebooks,
``AlexNet-Generalization-Gap``; docs/decisions.md, "Phase thresholds"). ``PAPER_FC1_PHASES`` holds those labels.

Steps: ``sweep.run_sweep`` trains the checkpoints (a zoo folder, git-ignored), ``scan_rows`` runs the normal
pipeline (``scanner.scan.scan_model`` → ``scanner.store.ResultStore``) over them, and ``write_outputs``
writes the phase table (CSV and Markdown, with the paper's label beside ours), the plots and the HTML report.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scanner.catalog import CatalogEntry, write_catalog
from scanner.config import ScanConfig
from scanner.records import Phase, Status

logger = logging.getLogger(__name__)

PAPER_FC1_PHASES: dict[int, Phase] = {
    500: Phase.RANDOM_LIKE,
    150: Phase.BLEEDING_OUT,
    32: Phase.BULK_PLUS_SPIKES,
    8: Phase.BULK_DECAY,
    2: Phase.HEAVY_TAILED,
}
DATASET_NAMES = {"cifar10": "cifar-10", "mnist": "mnist"}


def catalog_entries(rows: Sequence[dict[str, Any]]) -> list[CatalogEntry]:
    """Project-format catalog entries (``scanner.catalog``) for the trained runs: top1 = test accuracy in %."""
    return [
        CatalogEntry(
            model_id=str(r["model_id"]), family=str(r["family"]), dataset=DATASET_NAMES.get(str(r["dataset"]), ""),
            top1=round(100.0 * float(r["test_accuracy"]), 2), source="zooscan reproduce batch-size (this run)",
            notes=(f"batch_size={r['batch_size']}; seed={r['seed']}; epochs={r['epochs']}; "
                   f"train_subset={r['train_subset']}; loss={r['loss']}; train_top1={100 * float(r['train_accuracy']):.2f}"),
        )
        for r in rows
    ]


def write_catalogs(rows: Sequence[dict[str, Any]], folder: Path) -> tuple[Path, Path]:
    """Write ``catalog.csv`` (project catalog format) and ``runs.csv`` (batch size, seed, accuracies, steps)."""
    from scanner.experiments.train import write_catalog as write_runs

    folder.mkdir(parents=True, exist_ok=True)
    catalog_path = folder / "catalog.csv"
    write_catalog(catalog_path, catalog_entries(rows))
    return catalog_path, write_runs(list(rows), folder / "runs.csv")


def scan_rows(rows: Sequence[dict[str, Any]], results_root: Path, scan_id: str, config: ScanConfig) -> Path:
    """Scan every checkpoint of ``rows`` into ``<results_root>/<scan_id>`` (resumes: done models are skipped)."""
    from scanner.scan import scan_model
    from scanner.store import ResultStore

    store = ResultStore(results_root, scan_id)
    store.open_scan(config, {"name": "batch_size", "models": len(rows)}, {"host": platform.node()})
    done = store.done_keys()
    failed = 0
    for row in rows:
        key = store.key(str(row["model_id"]))
        if key in done:
            continue
        result = scan_model(str(row["model_id"]), config)
        failed += result.model.status is not Status.OK
        store.write_model(result.model, result.layers, result.spectra, model_key=key, host=platform.node(),
                          device=config.device)
        logger.info("scanned %s: %s", row["model_id"], result.model.status.value)
    store.finish_scan({"models": len(rows), "failed": failed})
    return Path(store.scan_dir)  # a local folder: the experiment writes under results_root


def compare_with_paper(table: Sequence[dict[str, Any]], layer: str = "fc1") -> list[dict[str, Any]]:
    """For each batch size with a paper label: the paper's FC1 phase beside ours (per seed) and a match flag."""
    out = []
    for row in table:
        if row["layer_name"] != layer:
            continue
        paper = PAPER_FC1_PHASES.get(int(row["batch_size"]))
        out.append({"batch_size": row["batch_size"], "seed": row["seed"], "layer": layer,
                    "paper_phase": paper.value if paper else None, "our_phase": row["phase"],
                    "match": None if paper is None else paper.value == row["phase"]})
    return out


def write_outputs(scan_dir: Path, catalog_csv: Path, runs_csv: Path, out_dir: Path) -> dict[str, Path]:
    """Phase table (CSV + Markdown with the paper comparison), PNG plots and the HTML report into ``out_dir``."""
    from scanner.report import plots
    from scanner.report.html import write_report
    from scanner.report.tables import batch_size_phase_table, load_scan, markdown_table, write_rows_csv

    out_dir.mkdir(parents=True, exist_ok=True)
    tables = load_scan(scan_dir, catalogs=[catalog_csv], runs=[runs_csv])
    table = batch_size_phase_table(tables)
    families = sorted({str(r["family"]) for r in tables.runs.values()})
    paths = {"phase_table": write_rows_csv(table, out_dir / "phase_table.csv")}
    md = ["# Phase versus batch size\n", f"Models: {', '.join(families)}; scan: `{scan_dir.name}`\n",
          "## FC layers\n", markdown_table(table)]
    if families == ["minialexnet"]:
        comparison = compare_with_paper(table)
        paths["comparison"] = write_rows_csv(comparison, out_dir / "paper_comparison.csv")
        md += ["\n## FC1 against the paper (JMLR 2021 / ISR notebooks)\n", markdown_table(comparison)]
    else:
        md += ["\nThe paper's phase labels (bs 500 … 2) are for MiniAlexNet's FC1; for MLP3 on MNIST, SETOL §6 "
               "reports α of FC1 falling as the batch size shrinks (docs/decisions.md, \"Phase thresholds\").\n"]
    paths["markdown"] = out_dir / "phase_table.md"
    paths["markdown"].write_text("\n".join(md), encoding="utf-8")
    sizes = sorted({r["batch_size"] for r in table}, reverse=True)
    names = list(dict.fromkeys(r["layer_name"] for r in table))
    seed0 = min((r["seed"] for r in table), default=0)
    grid = {(r["batch_size"], r["layer_name"]): r["phase"] for r in table if r["seed"] == seed0}
    paths["grid"] = out_dir / "phase_grid.png"
    paths["grid"].write_bytes(plots.to_png(plots.phase_grid_figure(sizes, names, grid, "phase by batch size")))
    series = {n: [next((r["alpha"] for r in table if r["layer_name"] == n and r["batch_size"] == b
                        and r["seed"] == seed0), None) for b in sizes] for n in names}
    paths["alpha"] = out_dir / "alpha_vs_batch_size.png"
    paths["alpha"].write_bytes(plots.to_png(plots.metric_vs_batch_size_figure(sizes, series, "power-law α")))
    paths.update(_esd_pngs(tables, out_dir))
    paths["report"] = write_report(tables, out_dir / "report.html", title="Batch size and the 5+1 phases")
    return paths


def _esd_pngs(tables: Any, out_dir: Path, layer: str = "fc1") -> dict[str, Path]:
    """One ESD figure (log-log + linear) of ``layer`` per batch size (first seed)."""
    from scanner.report import plots
    from scanner.report.tables import eigenvalues_by_layer, mp_of, power_law_of

    evals = eigenvalues_by_layer(tables.spectra)
    out = {}
    for row in tables.layers.to_pylist():
        run = tables.runs.get(row["model_id"])
        ev = evals.get((row["model_id"], row["layer_index"]))
        if run is None or ev is None or row["layer_name"] != layer or run["seed"] != min(
                r["seed"] for r in tables.runs.values()):
            continue
        title = f"{layer}, batch size {run['batch_size']}"
        path = out_dir / f"esd_{layer.split('.')[0]}_bs{run['batch_size']}.png"
        path.write_bytes(plots.to_png(plots.esd_figure(ev, power_law_of(row), mp_of(row), title, row["phase"]), 72))
        out[path.stem] = path
    return out
