"""Attempts at lowering the eigensolver floor (float64 Gram + eigvalsh) without losing float64 accuracy.

For matrix shapes of ResNet-50, ViT-B/16 and BERT-base layers, on one thread (BLAS held to one thread; the
scan runs layers in parallel), each attempt's CPU seconds per matrix (``time.process_time``: robust to other
jobs on a shared machine; minimum of ``--repeats``) and its accuracy against float64 ``numpy.linalg.eigvalsh``
of the float64 Gram matrix: max |Δλ|/λ_max over all eigenvalues, and max relative error over eigenvalues
above 1e-5·λ_max (the ones the fits read).

Attempts:
    gram matmul      ``x.T @ x`` in float64 (the floor's product)
    gram syrk        scipy ``dsyrk`` (half the FLOPs of a general product; the other triangle is not formed)
    syevd            numpy ``eigvalsh`` (LAPACK dsyevd, values only): the floor's solver
    evr / ev / evx   scipy ``eigh(driver=...)`` values only
    syevd_2stage     LAPACK ``dsyevd_2stage`` (two-stage tridiagonalisation), reached through ctypes in numpy's
                     bundled OpenBLAS (``LAPACKE_dsyevd_2stage``; not exposed by numpy or scipy)
    batched          numpy ``eigvalsh`` on a stack of the same-shape matrices (a 3×3 conv's nine positions)
    mixed            float32 ``eigh`` with vectors (ssyevd) + float64 Rayleigh quotients vᵢᵀXvᵢ (one float64
                     product X·V): float32 speed, float64-refined eigenvalues

Usage: OMP_NUM_THREADS=1 .venv/bin/python bench/floor_attempts.py --out bench/results/floor_attempts.md
"""

# ruff: noqa: B023  (every lambda here is called at once, inside its loop iteration)
from __future__ import annotations

import argparse
import ctypes
import glob
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.linalg as sl
from scipy.linalg import blas

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, host, load_average, utc_stamp  # bench/ is not a package

SHAPES = ((768, 768, 1), (3072, 768, 1), (2048, 512, 1), (512, 512, 9), (256, 256, 9))


def _lapacke_2stage() -> Callable[[np.ndarray], np.ndarray] | None:
    """``LAPACKE_dsyevd_2stage`` (values only) from numpy's bundled OpenBLAS, or None when not found."""
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "libscipy_openblas*"))
    for path in libs:
        lib = ctypes.CDLL(path)
        for name, int_type in (("scipy_LAPACKE_dsyevd_2stage64_", ctypes.c_int64),
                               ("LAPACKE_dsyevd_2stage", ctypes.c_int)):
            func = getattr(lib, name, None)
            if func is None:
                continue
            func.restype = int_type
            double_p = ctypes.POINTER(ctypes.c_double)
            func.argtypes = [ctypes.c_int, ctypes.c_char, ctypes.c_char, int_type, double_p, int_type, double_p]

            def solve(x: np.ndarray, func=func) -> np.ndarray:
                a = np.array(x, dtype=np.float64, order="C", copy=True)
                n = a.shape[0]
                w = np.empty(n)
                info = func(101, b"N", b"L", n, a.ctypes.data_as(double_p), n, w.ctypes.data_as(double_p))
                if info != 0:
                    raise RuntimeError(f"dsyevd_2stage info={info}")
                return w

            return solve
    return None


def cpu_seconds(func: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        func()
        best = min(best, time.process_time() - started)
    return best


def accuracy(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    got, ref = np.sort(got.ravel()), np.sort(ref.ravel())
    top = ref[-1]
    above = ref > 1e-5 * top
    return float(np.max(np.abs(got - ref)) / top), float(np.max(np.abs(got[above] - ref[above]) / ref[above]))


def mixed(x64: np.ndarray) -> np.ndarray:
    """float32 eigenvectors, float64 Rayleigh quotients."""
    _, v = np.linalg.eigh(x64.astype(np.float32))
    v = v.astype(np.float64)
    v /= np.linalg.norm(v, axis=0)
    return np.einsum("ij,ij->j", v, x64 @ v)


def run(repeats: int) -> list[str]:
    from threadpoolctl import threadpool_limits

    two_stage = _lapacke_2stage()
    rows = ["| shape (k × N×M) | attempt | CPU ms per matrix | × floor (syevd + matmul) | max abs err / λ_max | "
            "max rel err above 1e-5·λ_max | kept |", "|---|---|---|---|---|---|---|"]
    rng = np.random.default_rng(0)
    with threadpool_limits(limits=1):
        for n, m, k in SHAPES:
            w = rng.standard_t(4, size=(k, n, m)).astype(np.float32) / np.sqrt(n)  # a mildly heavy tail
            w64 = w.astype(np.float64)
            grams = np.matmul(np.swapaxes(w64, 1, 2), w64)
            ref = np.linalg.eigvalsh(grams)
            t_gram = cpu_seconds(lambda: [x.T @ x for x in w64], repeats) / k
            t_syevd = cpu_seconds(lambda: [np.linalg.eigvalsh(g) for g in grams], repeats) / k
            floor = t_gram + t_syevd
            attempts: list[tuple[str, float, np.ndarray | None, str]] = [
                ("gram matmul (floor)", t_gram, None, "floor"),
                ("gram dsyrk", cpu_seconds(lambda: [blas.dsyrk(1.0, x, trans=1) for x in w64], repeats) / k, None,
                 "no"),
                ("syevd (floor)", t_syevd, ref, "floor"),
            ]
            for driver in ("evr", "ev", "evx"):
                out = np.stack([sl.eigh(g, eigvals_only=True, driver=driver, check_finite=False) for g in grams])
                t = cpu_seconds(lambda d=driver: [sl.eigh(g, eigvals_only=True, driver=d, check_finite=False)
                                                  for g in grams], repeats) / k
                attempts.append((f"scipy eigh driver={driver}", t, out, "no"))
            if two_stage is not None:
                out = np.stack([two_stage(g) for g in grams])
                attempts.append(("dsyevd_2stage (ctypes)", cpu_seconds(lambda: [two_stage(g) for g in grams],
                                                                       repeats) / k, out, "no"))
            if k > 1:
                attempts.append(("batched eigvalsh (stack of k)", cpu_seconds(lambda: np.linalg.eigvalsh(grams),
                                                                                repeats) / k, ref, "yes (as before)"))
            out = np.stack([mixed(g) for g in grams])
            attempts.append(("mixed: float32 eigh + float64 Rayleigh", cpu_seconds(lambda: [mixed(g) for g in grams],
                                                                                   repeats) / k, out, "no"))
            for name, seconds, values, note in attempts:
                base = t_gram if "gram" in name else t_syevd
                err = accuracy(values, ref) if values is not None else None
                errs = f"{err[0]:.1e} | {err[1]:.1e}" if err else "(exact product) | —"
                rows.append(f"| {k} × {n}×{m} | {name} | {1e3 * seconds:.2f} | {seconds / base:.2f}× of its "
                            f"part ({seconds / floor:.2f}× floor) | {errs} | {note} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    load = load_average()
    rows = run(args.repeats)
    text = "\n".join(["# Attempts at lowering the eigensolver floor", "",
                      f"Machine: {host()}, {os.cpu_count()} CPUs; numpy {np.__version__}; load average at start "
                      f"{load}, at end {load_average()}; {utc_stamp()}. One thread, CPU time.", "",
                      *rows, ""])
    return emit(text, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
