"""Time zooscan's power-law fit (robust and reference modes) against weightwatcher 0.7.7's own fit, side by side.

weightwatcher's default ``analyze()`` fit is ``WW_powerlaw.pl_fit(data=evals[evals > 1e-5], xmax=None,
distribution='power_law', pl_package='ww')``, i.e. ``WWFit`` with a Python loop over candidate xmins;
that is what is timed here, on exactly the eigenvalues our fit gets. Two spectrum families per size n:

- ``t3-esd``: the pooled ESD (eigvalsh of WᵀW in float64, the project's ESD route) of k seeded Student-t
  (ν = 3) matrices of shape 2m×m with k·m = n — a heavy-tailed layer spectrum, bulk plus tail;
- ``pareto``: n i.i.d. Pareto(α = 2.5) values — the whole sample is one power law, so the KS curve is flat
  and pruning the xmin candidates is hardest.

Each time is the median of ``--repeat`` runs (weightwatcher: fewer at large n). Run from the repository root:
    OMP_NUM_THREADS=1 nice .venv/bin/python bench/bench_powerlaw_fit.py
which prints the table and writes it to bench/results/powerlaw_fit.txt.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import scipy

from scanner.spectra.powerlaw import fit_power_law

SIZES = (500, 1000, 2000, 4096, 10000)
OUT = Path(__file__).resolve().parent / "results" / "powerlaw_fit.txt"


def t3_esd(n: int, seed: int = 0) -> np.ndarray:
    """Pooled ESD of k Student-t(3) matrices 2m×m (float32 weights), k·m = n, m ≤ 1024."""
    k = max(1, -(-n // 1024))
    m = n // k
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(k):
        w = rng.standard_t(3, (2 * m, m)).astype(np.float32).astype(np.float64)
        parts.append(np.linalg.eigvalsh(w.T @ w))
    return np.concatenate(parts)


def pareto(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).pareto(1.5, n) + 1.0


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    import weightwatcher

    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True, check=False).stdout.strip()
    return [
        f"uname -a: {uname}",
        f"nproc: {os.cpu_count()} (shared with other jobs; load average at start {os.getloadavg()[0]:.2f})",
        f"cpu: {cpu}",
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"weightwatcher {weightwatcher.__version__}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
    ]


def run(repeat: int) -> list[str]:
    from weightwatcher.WW_powerlaw import pl_fit

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)

    def ww_fit(evals: np.ndarray) -> object:
        with contextlib.redirect_stdout(io.StringIO()):
            return pl_fit(data=evals[evals > 1e-5], xmax=None, verbose=False, distribution="power_law",
                          pl_package="ww")

    lines = machine() + [
        "",
        "median time per fit; csn = robust without the finger check (one xmin scan); ratio = weightwatcher / ours;",
        "rel Δα ref = |α_reference − α_ww| / α_ww on the same eigenvalues",
        f"{'spectrum':9} {'n':>6} {'csn ms':>7} {'robust ms':>10} {'reference ms':>13} {'ww ms':>9} {'ww/robust':>10} "
        f"{'ww/ref':>7} {'rel Δα ref':>11} {'α ww':>8} {'α robust':>9} {'robust reliable / fingers':>26}",
    ]
    for family, make in (("t3-esd", t3_esd), ("pareto", pareto)):
        for n in SIZES:
            evals = make(n)
            robust = fit_power_law(evals)
            reference = fit_power_law(evals, method="reference")
            ww = ww_fit(evals)
            t_csn = median_seconds(lambda e=evals: fit_power_law(e, max_fingers=0), repeat)
            t_robust = median_seconds(lambda e=evals: fit_power_law(e), repeat)
            t_reference = median_seconds(lambda e=evals: fit_power_law(e, method="reference"), repeat)
            t_ww = median_seconds(lambda e=evals: ww_fit(e), max(1, repeat // 4) if n >= 4096 else repeat)
            rel = abs(reference.alpha - ww.alpha) / ww.alpha
            lines.append(
                f"{family:9} {n:6d} {1e3 * t_csn:7.2f} {1e3 * t_robust:10.2f} {1e3 * t_reference:13.2f} {1e3 * t_ww:9.1f} "
                f"{t_ww / t_robust:10.1f} {t_ww / t_reference:7.1f} {rel:11.1e} {ww.alpha:8.4f} {robust.alpha:9.4f} "
                f"{str(robust.reliable) + ' / ' + str(robust.n_fingers):>26}"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="runs per timing (median); weightwatcher fewer at n ≥ 4096")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the table")
    args = parser.parse_args()
    text = "\n".join(run(args.repeat)) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
