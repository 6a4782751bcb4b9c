"""``zooscan reproduce batch-size``: train one small model at several batch sizes, scan, classify, report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

EPILOG = """examples:
  zooscan reproduce batch-size --model minialexnet --batch-sizes 500 250 150 32 8 2 --epochs 8 --subset 10000
  zooscan reproduce batch-size --model mlp3 --batch-sizes 500 32 8 2 --epochs 3 --subset 60000 --out experiments/mlp3
  zooscan reproduce batch-size --device cuda --subset 50000 --epochs 100     # the paper's full setting (GPU)

Checkpoints (safetensors) go to --zoo (default results/zoo_<model>), Parquet to --results/<scan-id>;
--out (default results/batch_size_<model>) receives catalog.csv, runs.csv, phase_table.{csv,md},
paper_comparison.csv, PNG plots and report.html.
Finished runs and scanned models are skipped on a re-run (resume). Exit status 2 on an error."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", choices=["batch-size"], help="which experiment of the papers")
    parser.add_argument("--model", choices=["minialexnet", "mlp3"], default="minialexnet")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[500, 250, 150, 32, 8, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=8, help="same number of epochs for every batch size")
    parser.add_argument("--subset", type=int, default=10_000, help="training images (0: the whole set)")
    parser.add_argument("--test-subset", type=int, default=2_000, help="test images for accuracy (0: all)")
    parser.add_argument("--loss", choices=["mse", "ce"], default="mse",
                        help="mse on softmax/one-hot (the authors' script) or cross-entropy")
    parser.add_argument("--device", default="cpu", help="torch device for training and scanning (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--data-source", choices=["npz", "torchvision"], default="npz")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder of the npz files / torchvision root")
    parser.add_argument("--zoo", type=Path, default=None, help="checkpoint folder (default results/zoo_<model>)")
    parser.add_argument("--results", type=Path, default=Path("results"), help="results root for the Parquet scan")
    parser.add_argument("--scan-id", default=None, help="scan folder name (default batch_size_<model>)")
    parser.add_argument("--out", type=Path, default=None,
                        help="tables, plots, report (default results/batch_size_<model>; the committed outputs of "
                             "the repository's run are in experiments/batch_size/, pass --out there to replace them)")


def output_dir(args: argparse.Namespace) -> Path:
    """--out, else ``results/batch_size_<model>``: a run never overwrites the committed experiments/ by default."""
    return args.out if args.out is not None else Path("results") / f"batch_size_{args.model}"


def run(args: argparse.Namespace) -> int:
    from scanner.config import ScanConfig
    from scanner.experiments.batch_size import scan_rows, write_catalogs, write_outputs
    from scanner.experiments.sweep import SweepConfig, run_sweep
    from scanner.experiments.train import TrainConfig

    sweep = SweepConfig(
        base=TrainConfig(model=args.model, epochs=args.epochs, loss=args.loss, device=args.device),
        batch_sizes=tuple(args.batch_sizes), seeds=tuple(args.seeds), train_subset=args.subset or None,
        test_subset=args.test_subset or None, data_source=args.data_source, data_dir=args.data_dir,
        threads=args.threads)
    zoo = args.zoo or Path("results") / f"zoo_{args.model}"
    out = output_dir(args)
    rows = run_sweep(sweep, zoo)
    catalog_csv, runs_csv = write_catalogs(rows, out)
    device = "cuda" if args.device.startswith("cuda") else "cpu"
    scan_dir = scan_rows(rows, args.results, args.scan_id or f"batch_size_{args.model}", ScanConfig(device=device))
    paths = write_outputs(scan_dir, catalog_csv, runs_csv, out)
    logger.warning("wrote %s", ", ".join(str(p) for p in paths.values()))
    print(Path(paths["markdown"]).read_text())
    return 0
