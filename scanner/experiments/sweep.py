"""Train a grid of (batch size × seed) runs into a zoo folder, resumably, and assemble its catalog.

Each finished run leaves ``<zoo>/<tag>.safetensors`` and ``<zoo>/<tag>.json`` (its catalog row). A run
whose two files exist is skipped, so several processes may share a grid (each given disjoint batch
sizes) and an interrupted sweep resumes. The catalog CSV is assembled from the JSON rows.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from scanner.experiments.data import ArrayDataset, load_dataset
from scanner.experiments.models import dataset_for
from scanner.experiments.train import TrainConfig, train_run

logger = logging.getLogger(__name__)

PAPER_BATCH_SIZES = (500, 250, 150, 32, 8, 2)


@dataclass(frozen=True)
class SweepConfig:
    """The grid: one ``TrainConfig`` template, the batch sizes and seeds, and the data subset sizes."""

    base: TrainConfig
    batch_sizes: tuple[int, ...] = PAPER_BATCH_SIZES
    seeds: tuple[int, ...] = (0,)
    train_subset: int | None = 10_000
    test_subset: int | None = 2_000
    data_source: str = "npz"
    data_dir: Path | None = None
    threads: int = 1

    def runs(self) -> list[TrainConfig]:
        return [replace(self.base, batch_size=b, seed=s) for s in self.seeds for b in self.batch_sizes]


def load_sweep_data(config: SweepConfig) -> tuple[ArrayDataset, ArrayDataset]:
    """The training subset and the test subset of the model's dataset (the same for every run)."""
    name = dataset_for(config.base.model)
    train = load_dataset(name, "train", config.train_subset, seed=0, source=config.data_source,
                         folder=config.data_dir)
    test = load_dataset(name, "test", config.test_subset, seed=1, source=config.data_source,
                        folder=config.data_dir)
    return train, test


def run_sweep(config: SweepConfig, zoo_dir: Path) -> list[dict[str, object]]:
    """Train every run of the grid not yet in ``zoo_dir``; return all catalog rows found there."""
    torch.set_num_threads(config.threads)
    zoo_dir = Path(zoo_dir)
    pending = [run for run in config.runs() if not (zoo_dir / f"{run.tag}.json").is_file()]
    if pending:
        train, test = load_sweep_data(config)
        for run in pending:
            outcome = train_run(run, train, test, zoo_dir)
            row = outcome.catalog_row(train.name, len(train))
            (zoo_dir / f"{run.tag}.json").write_text(json.dumps(row, indent=1))
    return collect_rows(zoo_dir, [run.tag for run in config.runs()])


def collect_rows(zoo_dir: Path, tags: list[str] | None = None) -> list[dict[str, object]]:
    """Catalog rows of the finished runs in ``zoo_dir`` (all, or those named), by decreasing batch size."""
    paths = sorted(Path(zoo_dir).glob("*.json")) if tags is None else [Path(zoo_dir) / f"{t}.json" for t in tags]
    rows = []
    for path in (p for p in paths if p.is_file()):
        row = json.loads(path.read_text())
        row["model_id"] = f"file:{path.with_suffix('.safetensors').resolve()}"  # valid wherever the zoo moves
        rows.append(row)
    return sorted(rows, key=lambda r: (r["family"], -int(r["batch_size"]), int(r["seed"])))
