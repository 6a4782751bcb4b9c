"""Validate the randomization test's null models against the method before them, layer by layer.

Three runs of every layer, all seed 0 unless said:
    before      ``null="exact"`` as it was: every layer shuffled, its ESD in float32 (``FLOAT32_MIN_WIDTH = 0``)
    exact       ``null="exact"`` now (narrow matrices, < ``esd.FLOAT32_MIN_WIDTH`` columns, in float64)
    auto        ``null="auto"`` (the default): the closed-form MP null where certified, else exact
    before s1   ``before`` with seed 1: the run-to-run spread of the shuffled null, the scale for tolerances

Sets: the phase-confusion generators (``scripts/phase_confusion.py``: canonical and crossover, every shape
and seed), sparse ±1 and magnitude-pruned Gaussian layers (``sparse_rows``), every checkpoint of the shared zoo (``$ZOOSCAN_SHARED/zoo``: all layers of every model), with
``--random-models`` random-init ResNet-50 and ViT-B/16 (where most layers are certified), and with
``--registry-zoo`` the main job's real networks of the registry zoo (``zooscan zoo ids registry_zoo --default``:
Keras, ONNX, TF.js, TFLite, torch and spaCy files, fetched beforehand with ``zooscan zoo fetch registry_zoo
--default --zoo-dir zoo``; a network not fetched is counted and left out).

Reports, per set: layers, layers certified (closed form used), phase calls equal to ``before`` (auto,
exact), n_traps equal, |Δ rand_distance| auto − before (max, median) beside the seed spread |before s1 −
before| (max, median), max relative |Δ λ_max_rand|, and every layer whose call differs.

Usage: OMP_NUM_THREADS=2 .venv/bin/python bench/validate_null.py [--random-models] [--registry-zoo] --out bench/results/null_validation.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, host, load_average, utc_stamp  # bench/ is not a package

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


@dataclass
class Row:
    """One layer under the four runs."""

    set_name: str
    layer: str
    certified: bool
    phase: dict[str, str]
    traps: dict[str, int]
    distance: dict[str, float]
    lmax: dict[str, float]


RUNS = ("before", "exact", "auto", "before_s1")


def _config(run: str) -> Any:
    from scanner.config import ScanConfig

    return ScanConfig(null="auto" if run == "auto" else "exact", seed=1 if run == "before_s1" else 0)


def _with_width(run: str):
    from scanner.spectra import esd

    esd.FLOAT32_MIN_WIDTH = 0 if run.startswith("before") else 256


def _certified(matrices: Any) -> bool:
    from scanner.spectra.esd import as_matrix_batch
    from scanner.spectra.randomize import analytic_null_eigenvalues

    return analytic_null_eigenvalues(as_matrix_batch(matrices)) is not None


def synthetic_rows() -> list[Row]:
    from phase_confusion import CANONICAL, CROSSOVER, SEEDS, SHAPES

    from scanner.spectra.layer import analyse_matrices

    rows = []
    for set_name, cases in (("phase confusion, canonical", CANONICAL), ("phase confusion, crossover", CROSSOVER)):
        for name, generator, kwargs in cases:
            for n, m in SHAPES:
                for seed in SEEDS:
                    matrix = generator(n, m, seed=seed, **kwargs).matrix
                    out = {}
                    for run in RUNS:
                        _with_width(run)
                        out[run] = analyse_matrices(matrix, _config(run)).spectrum
                    rows.append(_row(set_name, f"{name} {n}x{m} s{seed}", _certified(matrix), out))
    return rows


SPARSE_SHAPES = ((1000, 500), (768, 768), (3072, 768))
PRUNED_KEPT = (0.5, 0.2, 0.1, 0.05, 0.02)  # fraction of a Gaussian layer's largest-magnitude entries kept
SPARSE_DENSITY = (0.1, 0.05, 0.02, 0.01)  # fraction of ±1 entries, the rest 0


def sparse_rows() -> list[Row]:
    """Sparse and magnitude-pruned layers: every entry passes the single-entry test, and the fourth-moment test
    decides (``randomize.edge_shift_tw``)."""
    import numpy as np

    from scanner.spectra.layer import analyse_matrices

    rows = []
    for n, m in SPARSE_SHAPES:
        for seed in (0, 1):
            rng = np.random.default_rng([seed, n, m])
            gauss = rng.standard_normal((n, m))
            signs = np.sign(rng.standard_normal((n, m)))
            uniform = rng.random((n, m))
            cases = [(f"pruned keep={kept}", np.where(np.abs(gauss) >= np.quantile(np.abs(gauss), 1 - kept), gauss, 0.0))
                     for kept in PRUNED_KEPT]
            cases += [(f"sparse ±1 p={p}", (uniform < p) * signs) for p in SPARSE_DENSITY]
            for name, matrix in cases:
                matrix = matrix.astype(np.float32)
                out = {}
                for run in RUNS:
                    _with_width(run)
                    out[run] = analyse_matrices(matrix, _config(run)).spectrum
                rows.append(_row("sparse and pruned", f"{name} {n}x{m} s{seed}", _certified(matrix), out))
    return rows


def _row(set_name: str, layer: str, certified: bool, spectra: dict[str, Any]) -> Row:
    return Row(set_name, layer, certified,
               {r: s.phase.phase.value if s.phase else "-" for r, s in spectra.items()},
               {r: s.randomization.n_traps for r, s in spectra.items()},
               {r: s.randomization.rand_distance for r, s in spectra.items()},
               {r: s.randomization.lambda_max_rand for r, s in spectra.items()})


def model_rows(set_name: str, target_of: Any, name: str) -> list[Row]:
    from scanner.config import ScanConfig
    from scanner.layers import LayerMatrix, iter_layers
    from scanner.scan import scan_model, size_skip_reason
    from scanner.sources import open_source

    scans = {}
    for run in RUNS:
        _with_width(run)
        scans[run] = {layer.layer_name: layer.spectrum for layer in scan_model(target_of(), _config(run)).layers
                      if layer.spectrum is not None and layer.spectrum.randomization is not None}
    certified = {}
    with open_source(target_of()) as source:
        for item in iter_layers(source):
            if isinstance(item, LayerMatrix) and not size_skip_reason(item, ScanConfig()):
                certified[item.name] = _certified(item.matrices)
    return [_row(set_name, f"{name} {layer}", certified.get(layer, False), {r: scans[r][layer] for r in RUNS})
            for layer in scans["before"]]


def zoo_rows() -> list[Row]:
    zoo = Path(os.environ.get("ZOOSCAN_SHARED", ROOT.parent / "shared")) / "zoo"
    rows = []
    for path in sorted(zoo.rglob("*")):
        if path.suffix in (".th", ".pt", ".pth", ".safetensors", ".bin"):
            rows += model_rows("shared zoo (every checkpoint)", lambda p=path: f"file:{p}", path.name)
    return rows


def random_model_rows() -> list[Row]:
    import timm
    import torch

    rows = []
    for arch in ("resnet50", "vit_base_patch16_224"):
        torch.manual_seed(0)
        model = timm.create_model(arch, pretrained=False).eval()
        rows += model_rows("random-init timm models", lambda m=model: m, arch)
    return rows


def registry_rows() -> tuple[list[Row], list[str]]:
    """Rows of every fetched network of the registry zoo's default subset, and the ids not fetched."""
    from scanner.zoo.catalog import load_zoo_catalog, select

    rows, missing = [], []
    for entry in select(load_zoo_catalog("registry_zoo"), default=True):
        path = ROOT / entry.model_id.removeprefix("file:")
        if not path.exists():
            missing.append(entry.model_id)
            continue
        rows += model_rows("registry zoo (main job's networks)", lambda p=path: f"file:{p}",
                           str(path.relative_to(ROOT / "zoo" / "registry")))
    return rows, missing


def summary(rows: list[Row]) -> list[str]:
    lines = ["| set | layers | certified (closed form) | phase = before: auto | phase = before: exact | "
             "n_traps = before: auto | max (median) abs Δ rand_distance auto − before | max (median) seed "
             "spread, before s1 − before | max rel Δ λ_max_rand auto | max rel Δ λ_max_rand seed spread |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for set_name in dict.fromkeys(r.set_name for r in rows):
        group = [r for r in rows if r.set_name == set_name]
        d_auto = [abs(r.distance["auto"] - r.distance["before"]) for r in group]
        d_seed = [abs(r.distance["before_s1"] - r.distance["before"]) for r in group]
        l_auto = [abs(r.lmax["auto"] / r.lmax["before"] - 1) for r in group]
        l_seed = [abs(r.lmax["before_s1"] / r.lmax["before"] - 1) for r in group]
        lines.append(
            f"| {set_name} | {len(group)} | {sum(r.certified for r in group)} | "
            f"{sum(r.phase['auto'] == r.phase['before'] for r in group)} | "
            f"{sum(r.phase['exact'] == r.phase['before'] for r in group)} | "
            f"{sum(r.traps['auto'] == r.traps['before'] for r in group)} | "
            f"{max(d_auto):.4f} ({statistics.median(d_auto):.4f}) | {max(d_seed):.4f} ({statistics.median(d_seed):.4f}) | "
            f"{max(l_auto):.2e} | {max(l_seed):.2e} |")
    return lines


def differences(rows: list[Row]) -> list[str]:
    out = []
    for r in rows:
        if r.phase["auto"] != r.phase["before"] or r.phase["exact"] != r.phase["before"] \
                or r.traps["auto"] != r.traps["before"]:
            out.append(f"- {r.set_name}: {r.layer} (certified: {r.certified}): phase before {r.phase['before']}, "
                       f"exact {r.phase['exact']}, auto {r.phase['auto']}, seed 1 {r.phase['before_s1']}; n_traps "
                       f"before {r.traps['before']}, exact {r.traps['exact']}, auto {r.traps['auto']}, "
                       f"seed 1 {r.traps['before_s1']}")
    return out or ["- none"]


def certified_summary(rows: list[Row]) -> list[str]:
    """|Δ rand_distance| auto − before on the certified layers only (where ``auto`` changes anything), as
    quantiles beside the seed spread of the same layers."""
    lines = ["| set | certified layers | abs Δ rand_distance auto − before: median / 95th pct / 99th pct / max | "
             "seed spread on the same layers: median / 95th pct / 99th pct / max | mean signed Δ: auto − before "
             "(seed 1 − before) | layers with abs Δ > 0.15 |",
             "|---|---|---|---|---|---|"]
    for set_name in dict.fromkeys(r.set_name for r in rows):
        group = [r for r in rows if r.set_name == set_name and r.certified]
        if not group:
            continue
        d_auto = sorted(abs(r.distance["auto"] - r.distance["before"]) for r in group)
        d_seed = sorted(abs(r.distance["before_s1"] - r.distance["before"]) for r in group)

        def quantiles(values: list[float]) -> str:
            at = [values[min(len(values) - 1, int(q * len(values)))] for q in (0.5, 0.95, 0.99)]
            return " / ".join(f"{v:.3f}" for v in (*at, values[-1]))

        bias = statistics.mean(r.distance["auto"] - r.distance["before"] for r in group)
        bias_seed = statistics.mean(r.distance["before_s1"] - r.distance["before"] for r in group)
        lines.append(f"| {set_name} | {len(group)} | {quantiles(d_auto)} | {quantiles(d_seed)} | "
                     f"{bias:+.4f} ({bias_seed:+.4f}) | {sum(d > 0.15 for d in d_auto)} |")
    return lines


def largest_distance_changes(rows: list[Row], count: int = 5) -> list[str]:
    """The ``count`` layers of each set whose ``rand_distance`` moved most under ``auto``, beside their seed
    spread."""
    out = []
    for set_name in dict.fromkeys(r.set_name for r in rows):
        group = sorted((r for r in rows if r.set_name == set_name),
                       key=lambda r: -abs(r.distance["auto"] - r.distance["before"]))
        for r in group[:count]:
            out.append(f"- {set_name}: {r.layer} (certified: {r.certified}): rand_distance before "
                       f"{r.distance['before']:.4f}, auto {r.distance['auto']:.4f}, exact {r.distance['exact']:.4f}, "
                       f"seed 1 {r.distance['before_s1']:.4f}; phase {r.phase['before']}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random-models", action="store_true")
    parser.add_argument("--registry-zoo", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-shared-zoo", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.time()
    load = load_average()
    rows = [] if args.skip_synthetic else synthetic_rows() + sparse_rows()
    rows += [] if args.skip_shared_zoo else zoo_rows()
    if args.random_models:
        rows += random_model_rows()
    missing: list[str] = []
    if args.registry_zoo:
        registry, missing = registry_rows()
        rows += registry
    text = "\n".join([
        "# Null models of the randomization test: validation against the method before", "",
        f"Machine: {host()}, load average at start {load}; {utc_stamp(started)}, {time.time() - started:.0f} s.", "",
        (__doc__ or "").split("Usage:")[0].strip(), "",
        *summary(rows), "",
        "Certified layers only (the closed form used; elsewhere `auto` is the exact method):", "",
        *certified_summary(rows), "",
        *([f"Registry networks not fetched, left out: {len(missing)} ({', '.join(missing[:5])}"
           f"{', …' if len(missing) > 5 else ''})", ""] if missing else []),
        "Layers whose phase call or n_traps differs from `before`:", "",
        *differences(rows), "",
        "Largest |Δ rand_distance| under `auto`, per set:", "",
        *largest_distance_changes(rows), "",
    ])
    return emit(text, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
