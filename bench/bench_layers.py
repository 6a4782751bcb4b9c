"""Per-layer ESD on this CPU: zooscan's float64 Gram + eigvalsh vs the reference tool's per-slice SVD.

Usage (from the repo root):
    OMP_NUM_THREADS=1 nice .venv/bin/python bench/bench_layers.py [--shapes 1024x1024 4096x1024] [--repeats 3]

For each shape — a dense matrix "NxM", or a Conv2d kernel "conv<C>x<k>" (C×C channels, k×k positions, pooled
as both tools do) — times, on the same seeded float32 weights:

    zoo-esd      ``scanner.spectra.esd.eigenvalues`` (numpy backend): WᵀW in float64, then ``eigvalsh``
    ww-svd       weightwatcher 0.7.7's CPU path (``combined_eigenvalues``): each slice cast to float64,
                 ``scipy.linalg.svd(compute_uv=False)``, squared, concatenated and sorted
    zoo-fits     ``scanner.spectra.layer.analyse_spectrum`` on those eigenvalues: reference fit + MP fit + norms
                 (the rest of zooscan's per-layer work; needs ``scanner.spectra.powerlaw``)

and checks that both ESDs agree: max |λ_zoo − λ_ww| / λ_max (float64 round-off is about 1e-13).
Wall time is the median of ``--repeats`` runs (one run when the first exceeds ``--slow`` seconds). Threads come
from OMP_NUM_THREADS, the same for both. Writes ``bench/results/vs_weightwatcher_esd.txt`` (``--out``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_SHAPES = ("1024x1024", "4096x1024", "4096x4096", "conv256x3")
OUT = ROOT / "bench" / "results" / "vs_weightwatcher_esd.txt"


def make_weights(shape: str, seed: int = 0) -> np.ndarray:
    """Seeded float32 weights (k, rows, cols): "NxM" → one N×M matrix; "conv<C>x<k>" → k² slices of C×C.

    Entries are uniform on ±1/√fan_in, PyTorch's default Linear/Conv2d initialisation scale.
    """
    rng = np.random.default_rng(seed)
    if shape.startswith("conv"):
        channels, kernel = (int(v) for v in shape.removeprefix("conv").split("x"))
        dims, fan_in = (kernel * kernel, channels, channels), channels * kernel * kernel
    else:
        rows, cols = (int(v) for v in shape.split("x"))
        dims, fan_in = (1, rows, cols), cols
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=dims).astype(np.float32)


def ww_svd_esd(batch: np.ndarray) -> np.ndarray:
    """The reference tool's CPU ESD: per slice, float64 singular values by scipy, squared; pooled and sorted."""
    import scipy.linalg

    values = [scipy.linalg.svd(w.astype(np.float64), compute_uv=False) ** 2 for w in batch]
    return np.sort(np.concatenate(values))


def timed(func: Callable[[], object], repeats: int, slow: float) -> tuple[float, int, object]:
    """(median seconds, runs, last result) of ``func``; stops after one run slower than ``slow`` seconds."""
    seconds: list[float] = []
    result: object = None
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        result = func()
        seconds.append(time.perf_counter() - started)
        if seconds[0] > slow:
            break
    return statistics.median(seconds), len(seconds), result


def fits_seconds(evals: np.ndarray, batch: np.ndarray, repeats: int, slow: float) -> float | None:
    """Median time of zooscan's step 2 (reference fit, MP fit, norms) on ``evals``; None if unavailable."""
    try:
        from scanner.config import ScanConfig
        from scanner.spectra.layer import LayerEigen, analyse_spectrum
    except ImportError:
        return None
    k, rows, cols = batch.shape
    eig = LayerEigen(evals=evals, n=max(rows, cols), m=min(rows, cols), k=k)
    config = ScanConfig(fit="reference", randomize=False)
    return timed(lambda: analyse_spectrum(eig, config), repeats, slow)[0]


def bench_shape(shape: str, repeats: int, slow: float) -> dict[str, object]:
    """One row: zooscan ESD, reference-tool SVD, their ratio and agreement, zooscan's fit time."""
    from scanner.spectra.esd import eigenvalues

    batch = make_weights(shape)
    zoo_s, zoo_n, zoo = timed(lambda: eigenvalues(batch, backend="numpy"), repeats, slow)
    ww_s, ww_n, ww = timed(lambda: ww_svd_esd(batch), repeats, slow)
    lam_max = float(np.max(ww))
    return {
        "shape": shape, "slices": batch.shape[0], "evals": int(np.size(zoo)),
        "zoo_esd_s": zoo_s, "zoo_n": zoo_n, "ww_svd_s": ww_s, "ww_n": ww_n, "ratio": ww_s / zoo_s,
        "rel_err": float(np.max(np.abs(np.asarray(zoo) - np.asarray(ww))) / lam_max),
        "zoo_fits_s": fits_seconds(np.asarray(zoo), batch, repeats, slow),
    }


def format_rows(rows: list[dict[str, object]], threads: str) -> str:
    """The plain-text table written to the results file."""
    header = (f"per-layer ESD, CPU, {threads} thread(s); wall s = median of n; ratio = ww-svd / zoo-esd\n"
              f"{'shape':>12} {'slices':>6} {'evals':>6} {'zoo-esd s (n)':>15} {'ww-svd s (n)':>15} {'ratio':>7} "
              f"{'max rel diff':>13} {'zoo-fits s':>11}")
    lines = [header]
    for r in rows:
        fits = "n/a" if r["zoo_fits_s"] is None else f"{r['zoo_fits_s']:.4f}"
        lines.append(f"{r['shape']:>12} {r['slices']:>6} {r['evals']:>6} {r['zoo_esd_s']:>10.4f} ({r['zoo_n']}) "
                     f"{r['ww_svd_s']:>10.4f} ({r['ww_n']}) {r['ratio']:>6.1f}× {r['rel_err']:>13.1e} {fits:>11}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(DEFAULT_SHAPES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slow", type=float, default=5.0, help="repeat only while one run takes less (s)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = [bench_shape(shape, args.repeats, args.slow) for shape in args.shapes]
    text = format_rows(rows, os.environ.get("OMP_NUM_THREADS", "default"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
