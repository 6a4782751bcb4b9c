"""Sweep every timm architecture (random init, pretrained=False) through scanner.layers; write one CSV row each.

Usage (long; run it niced in the background):
    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python scripts/sweep_timm_layers.py --max-params 25e6 \
        --out bench/results/timm_layer_sweep.csv

Parameter counts come from the architecture built on the meta device (no memory); architectures above
--max-params are listed with the reason instead of being built. Each architecture gets --timeout seconds.
Columns: arch, params, n_layers (matrix rows), n_skipped, kinds, skip_reasons (reason histogram), seconds, error.
"""

from __future__ import annotations

import argparse
import collections
import csv
import logging
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scanner.layers import LayerMatrix, iter_layers
from scanner.sources import open_source

FIELDS = ["arch", "params", "n_layers", "n_skipped", "kinds", "skip_reasons", "seconds", "error"]


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Timeout


def meta_params(arch: str) -> int:
    import timm
    import torch

    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False)
    return sum(p.numel() for p in model.parameters())


def histogram(values: list[str]) -> str:
    return "; ".join(f"{k} x{v}" for k, v in collections.Counter(values).most_common())


def census(model_id: str) -> dict[str, object]:
    """n_layers, n_skipped, kind and skip-reason histograms of one model."""
    rows = list(iter_layers(open_source(model_id)))
    layers = [r for r in rows if isinstance(r, LayerMatrix)]
    skipped = [r for r in rows if not isinstance(r, LayerMatrix)]
    reasons = [r.reason if not r.reason.startswith("duplicate of") else "duplicate (tied)" for r in skipped]
    return {"n_layers": len(layers), "n_skipped": len(skipped), "kinds": histogram([r.kind for r in layers]),
            "skip_reasons": histogram(reasons)}


def sweep_one(arch: str, max_params: float, timeout: int, min_params: float = 0) -> dict[str, object] | None:
    """One architecture's row; None when it is at or below ``min_params`` (covered by an earlier pass)."""
    row: dict[str, object] = {"arch": arch}
    start = time.perf_counter()
    signal.alarm(timeout)
    try:
        row["params"] = meta_params(arch)
        if row["params"] <= min_params:
            return None
        if row["params"] > max_params:
            row["error"] = f"not built: {row['params']} params > --max-params {max_params:.0f}"
        else:
            row.update(census(f"random:timm/{arch}"))
    except _Timeout:
        row["error"] = f"timeout after {timeout} s"
    except Exception as exc:  # the sweep records every failure and goes on
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    finally:
        signal.alarm(0)
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def summarize(path: Path) -> str:
    """A text summary of a sweep CSV: counts, kinds, skip reasons and errors over all rows."""
    import re

    rows = list(csv.DictReader(path.open()))
    built = [r for r in rows if r["n_layers"]]
    not_built = [r for r in rows if r["error"].startswith("not built")]
    failed = [r for r in rows if r["error"] and not r["error"].startswith("not built")]
    totals: dict[str, collections.Counter] = {"kinds": collections.Counter(), "skip_reasons": collections.Counter()}
    for row in built:
        for column, counter in totals.items():
            for part in filter(None, row[column].split("; ")):
                match = re.match(r"(.*) x(\d+)$", part)
                counter[match[1]] += int(match[2])
    lines = [f"{path.name}: {len(rows)} architectures; {len(built)} built and scanned; "
             f"{len(not_built)} above the parameter limit (not built); {len(failed)} failed",
             f"matrix rows: {sum(int(r['n_layers']) for r in built)}; skipped tensors: "
             f"{sum(int(r['n_skipped']) for r in built)}; architectures with 0 matrices: "
             f"{sum(r['n_layers'] == '0' for r in built)}",
             "kinds: " + "; ".join(f"{k} x{v}" for k, v in totals["kinds"].most_common()), "skip reasons:"]
    lines += [f"  {v:>7}  {k}" for k, v in totals["skip_reasons"].most_common()]
    lines += ["failures:"] + [f"  {r['arch']}: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def main() -> int:
    import timm
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", default="*")
    parser.add_argument("--max-params", type=float, default=25e6)
    parser.add_argument("--min-params", type=float, default=0, help="leave out architectures at or below this size")
    parser.add_argument("--timeout", type=int, default=120)
    parser.add_argument("--out", type=Path, default=Path("bench/results/timm_layer_sweep.csv"))
    parser.add_argument("--summarize", action="store_true", help="only print the summary of an existing --out")
    args = parser.parse_args()
    if args.summarize:
        print(summarize(args.out), end="")
        return 0
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.ERROR)
    signal.signal(signal.SIGALRM, _alarm)
    archs = timm.list_models(args.pattern)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        for i, arch in enumerate(archs):
            row = sweep_one(arch, args.max_params, args.timeout, args.min_params)
            if row is None:
                continue
            writer.writerow(row)
            handle.flush()
            print(f"[{i + 1}/{len(archs)}] {arch}: {row.get('n_layers', '-')} layers {row.get('error', '')}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
