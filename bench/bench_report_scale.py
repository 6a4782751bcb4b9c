"""Report at zoo scale: write a synthetic N-model scan through the store API, then time ``zooscan report``.

The synthetic zoo has ``--families`` families of equal size, ``--layers`` tensors per model (three quarters
analysed matrices of four kinds, the rest skipped biases), eigenvalues with a Marchenko–Pastur bulk and a
power-law tail (``--evals`` per layer, stored in ``spectra/`` as a real scan does), and a catalog whose
published top-1 falls with the model's α̂ plus noise. Records go through ``scanner.store.ResultStore``, so
the report reads exactly the files a scan writes.

Usage:
    python bench/bench_report_scale.py --models 1000 --out bench/results/report_scale.txt
    python bench/bench_report_scale.py --models 20 --keep /tmp/small_zoo     # a quick look
Writes the size, wall time, process CPU time, machine and load average to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from scanner import records as rec
from scanner.config import ScanConfig
from scanner.records import PHASE_ORDER, LayerResult, Status
from scanner.scan import LayerEigenvalues
from scanner.store import ResultStore
from tests._factories import norm_metrics, phase_counts

KINDS = ("conv2d", "linear", "attention_q", "embedding")


def synthetic_layer(model_id: str, index: int, rng: np.random.Generator, tail: float,
                    n_evals: int) -> tuple[LayerResult, np.ndarray | None]:
    """An analysed layer (MP bulk of n_evals·0.9 values plus a Pareto tail of exponent ``tail``) or, for
    every fourth index, a skipped bias."""
    if index % 4 == 3:
        return LayerResult(model_id, index, f"block{index // 4}.bias", "bias", (256,), Status.SKIPPED,
                           reason="bias vector: not a matrix"), None
    kind = KINDS[index % len(KINDS)]
    q = float(rng.choice([1.0, 2.0, 4.0]))
    m = n_evals
    n = int(q * m)
    evals_bulk = np.sort((1 + rng.uniform(-1, 1, int(0.9 * m)) / np.sqrt(q)) ** 2)  # spans the MP support
    alpha = float(max(1.3, rng.normal(tail, 0.8)))
    xmin = float(evals_bulk.max())
    tail_vals = xmin * (1 - rng.uniform(size=m - evals_bulk.size)) ** (-1 / (alpha - 1))
    evals = np.sort(np.concatenate([evals_bulk, tail_vals]))
    lmax = float(evals[-1])
    lam_minus, lam_plus = (1 - 1 / np.sqrt(q)) ** 2, (1 + 1 / np.sqrt(q)) ** 2
    spikes = int((evals > lam_plus * 1.05).sum())
    norms = norm_metrics(evals, alpha, entropy=0.9)
    fit = rec.PowerLawFit(alpha, xmin, lmax, float(rng.uniform(0.02, 0.15)), (alpha - 1) / np.sqrt(m - evals_bulk.size),
                      m - evals_bulk.size, reliable=bool(rng.uniform() > 0.05), reason="")
    mp = rec.MPFit(1.0, float(lam_minus), float(lam_plus), float(lam_plus * 1.05), spikes, float(lam_plus / lmax),
                   0.05, float(1 - spikes / m), q)
    traps = int(rng.poisson(0.15))
    rand = rec.RandomizationResult(0, lmax / 3, traps, float(rng.uniform(0.1, 0.6)), 1 / 3)
    phase = PHASE_ORDER[4 if alpha < 4 else 3 if alpha < 6 else 1]
    if rng.uniform() < 0.01:
        phase = PHASE_ORDER[5]
    call = rec.PhaseCall(phase, f"synthetic: α = {alpha:.2f}", alpha < 2, "syn")
    spectrum = rec.LayerSpectrum(n, m, q, 1, m, norms, fit, mp, rand, call)
    shape = (n, m) if kind != "conv2d" else (n, m, 1, 1)
    return LayerResult(model_id, index, f"block{index // 4}.{kind}.weight", kind, shape, Status.OK,
                       num_params=n * m, spectrum=spectrum), evals


def synthetic_model(model_id: str, rng: np.random.Generator, n_layers: int, n_evals: int,
                    tail: float) -> tuple[rec.ModelResult, list[LayerResult], list[LayerEigenvalues]]:
    layers, spectra = [], []
    for i in range(n_layers):
        layer, evals = synthetic_layer(model_id, i, rng, tail, n_evals)
        layers.append(layer)
        if evals is not None:
            spectra.append(LayerEigenvalues(i, layer.layer_name, evals))
    ok = [x for x in layers if x.spectrum is not None]
    alphas = np.array([x.spectrum.power_law.alpha for x in ok])
    summary = rec.ModelSummary(
        n_layers=n_layers, n_ok=len(ok), n_skipped=n_layers - len(ok), n_failed=0, n_alpha=len(ok),
        alpha_mean=float(alphas.mean()), alpha_median=float(np.median(alphas)), alpha_std=float(alphas.std()),
        alpha_hat=float(np.mean([x.spectrum.norms.alpha_weighted for x in ok])),
        log_alpha_norm_mean=float(np.mean([x.spectrum.norms.log_alpha_norm for x in ok])),
        log_norm_mean=float(np.mean([x.spectrum.norms.log_norm for x in ok])),
        log_spectral_norm_mean=float(np.mean([x.spectrum.norms.log_spectral_norm for x in ok])),
        stable_rank_mean=float(np.mean([x.spectrum.norms.stable_rank for x in ok])),
        frac_alpha_lt2=float(np.mean(alphas < 2)), frac_alpha_gt6=float(np.mean(alphas > 6)),
        phase_counts=phase_counts(ok))
    model = rec.ModelResult(model_id, "file", Status.OK, digest="sha256:0",
                        num_params=sum(x.num_params for x in layers), summary=summary)
    return model, layers, spectra


def write_zoo(root: Path, n_models: int, n_families: int, n_layers: int, n_evals: int, seed: int = 0) -> tuple[Path, Path]:
    """The synthetic scan ``<root>/synthetic`` and its catalog CSV; returns both paths."""
    rng = np.random.default_rng(seed)
    store = ResultStore(root, "synthetic")
    store.open_scan(ScanConfig(), {"name": "synthetic"}, {"host": platform.node()})
    catalog = root / "synthetic_catalog.csv"
    with open(catalog, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model_id", "family", "dataset", "top1"])
        for i in range(n_models):
            family = f"family{i % n_families:02d}"
            model_id = f"file:synthetic/{family}/model{i:04d}.safetensors"
            tail = float(rng.uniform(2.5, 5.5))
            model, layers, spectra = synthetic_model(model_id, rng, n_layers, n_evals, tail)
            store.write_model(model, layers, spectra, host="bench", device="cpu")
            top1 = 90.0 - 2.0 * model.summary.alpha_hat + rng.normal(0, 1.5)  # type: ignore[union-attr]
            writer.writerow([model_id, family, "synthetic", f"{min(max(top1, 1.0), 99.0):.2f}"])
            if (i + 1) % 100 == 0:
                print(f"wrote {i + 1}/{n_models} models", file=sys.stderr, flush=True)
    store.finish_scan({"synthetic": True})
    return store.scan_dir, catalog


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--families", type=int, default=20)
    parser.add_argument("--layers", type=int, default=60, help="tensors per model (3/4 analysed)")
    parser.add_argument("--evals", type=int, default=128, help="eigenvalues per analysed layer")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="write the zoo and report here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, help="append the result lines to this file")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="zooscan_report_scale_"))
    started = time.perf_counter()
    scan_dir, catalog = write_zoo(root, args.models, args.families, args.layers, args.evals)
    write_seconds = time.perf_counter() - started
    report_dir = root / "report"
    cmd = [sys.executable, "-m", "scanner", "report", str(scan_dir), "--catalog", str(catalog), "-o", str(report_dir),
           "--jobs", str(args.jobs)]
    load_before = os.getloadavg()
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - started
    load_after = os.getloadavg()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    size = sum(p.stat().st_size for p in report_dir.rglob("*") if p.is_file())
    files = sum(1 for p in report_dir.rglob("*") if p.is_file())
    lines = [
        f"# zooscan report at scale, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}",
        f"# machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
        f"# zoo: {args.models} synthetic models, {args.families} families, {args.layers} tensors per model "
        f"({args.layers - args.layers // 4} analysed, {args.evals} eigenvalues each); written in {write_seconds:.1f} s",
        f"# command: zooscan report <scan> --catalog <catalog> --jobs {args.jobs} (default --esd-budget)",
        f"report_seconds {seconds:.1f}",
        f"report_cpu_seconds {usage.ru_utime + usage.ru_stime:.1f}",
        f"report_bytes {size} ({size / 1e6:.1f} MB, {files} files)",
        f"load_average_before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}",
        f"load_average_after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
