"""Scan throughput (models/minute) of random-init timm models: serial, and embedded Ray on 1 and 2 CPUs (with
the handover — the driver scans while Ray starts — and, as ``ray2-plain``, without it).

Models: the ``--count`` smallest timm architectures (by parameter count) that built without error in the
layer sweep ``bench/results/timm_layer_sweep.csv`` (``scripts/sweep_timm_layers.py``), scanned as
``random:timm/<arch>`` (random init: no download, the weights only set the work). Each setting writes a
fresh scan into a temporary results folder; the rate counts every model of the run, ok or failed, and
includes Ray's start and stop. Before the first setting the driver scans the first model once, untimed, so
that the process's own first-use costs (lazy imports, page cache) do not land on whichever setting runs first;
the ``ran on`` column says whether Ray computed anything (a short scan with the handover never starts it). The
machine (uname, nproc, CPU model, load average) heads the output, since other jobs may share the cores.

Usage:
    OMP_NUM_THREADS=1 nice .venv/bin/python bench/bench_throughput.py --count 120 \\
        --out bench/results/throughput_cpu.txt
    ... bench/bench_throughput.py --zoo --randomize --settings serial,ray2      # the shared zoo's checkpoints
    zooscan zoo ids registry_zoo --default > ids.txt                           # the registry zoo's main-job rows
    ... bench/bench_throughput.py --ids ids.txt --randomize --settings serial,ray2,ray2-plain
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from scanner import distributed, runner
from scanner.config import ScanConfig

SWEEP = Path(__file__).resolve().parent / "results" / "timm_layer_sweep.csv"


def smallest_timm_models(count: int, sweep: Path = SWEEP) -> list[tuple[str, int]]:
    """(arch, params) of the ``count`` smallest architectures the sweep built without error."""
    with open(sweep, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["params"] and not row["error"]]
    rows.sort(key=lambda row: (int(row["params"]), row["arch"]))
    return [(row["arch"], int(row["params"])) for row in rows[:count]]


def shared_zoo_models() -> list[str]:
    """``file:`` ids of every checkpoint under ``$ZOOSCAN_SHARED/zoo`` (default ../shared/zoo), sorted."""
    zoo = Path(os.environ.get("ZOOSCAN_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "zoo"
    suffixes = (".th", ".pt", ".pth", ".bin", ".safetensors")
    return [f"file:{path}" for path in sorted(zoo.rglob("*")) if path.suffix in suffixes]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_lines() -> list[str]:
    uname = platform.uname()
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return [f"uname: {uname.system} {uname.release} {uname.machine}", f"nproc: {os.cpu_count()}",
            f"cpu: {cpu_model()}", f"load average at start: {' '.join(f'{x:.2f}' for x in load)}",
            f"python {sys.version.split()[0]}; " + ", ".join(f"{k} {v}" for k, v in runner.versions().items()
                                                              if k in ("torch", "ray", "numpy", "timm"))]


def run_setting(name: str, models: list[str], config: ScanConfig, num_cpus: int | None, handover: bool = True) -> str:
    with tempfile.TemporaryDirectory(prefix="zooscan-bench-") as results:
        options = runner.RunOptions(results=results, scan_id="bench", num_cpus=num_cpus, handover=handover)
        started = time.perf_counter()
        if num_cpus is None:
            stats = runner.run_serial(models, config, options)
        else:
            stats = distributed.run_ray(models, config, options)
        wall = time.perf_counter() - started
    rate = 60.0 * (stats.ok + stats.failed) / wall
    return (f"{name:28s} models {stats.ok + stats.failed:4d} (ok {stats.ok}, failed {stats.failed})  "
            f"wall {wall:7.1f} s  {rate:6.1f} models/min  ran on {stats.runner:6s}  spectrum workers {stats.workers}")


def warm_up(model: str, config: ScanConfig) -> None:
    """One untimed serial scan of ``model`` in this process (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="zooscan-bench-") as results:
        runner.run_serial([model], config, runner.RunOptions(results=results, scan_id="warm-up"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=120, help="number of timm architectures (default 120)")
    parser.add_argument("--randomize", action="store_true", help="also run the shuffled-matrix test (slower)")
    parser.add_argument("--settings", default="serial,ray1,ray2",
                        help="comma list of serial, ray1, ray2 (scans start in the driver while Ray starts), "
                             "ray2-plain (ray2 with --no-handover)")
    parser.add_argument("--zoo", action="store_true",
                        help="scan every checkpoint of the shared zoo ($ZOOSCAN_SHARED/zoo) instead of timm models")
    parser.add_argument("--ids", type=Path,
                        help="scan the model ids in this file (whitespace-separated, e.g. `zooscan zoo ids`'s output)")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config = ScanConfig(randomize=args.randomize)
    if args.ids:
        models = args.ids.read_text().split()
        described = f"models: the {len(models)} ids of {args.ids.name}"
    elif args.zoo:
        models = shared_zoo_models()
        described = f"models: every checkpoint of the shared zoo ({len(models)} files)"
    else:
        chosen = smallest_timm_models(args.count)
        models = [f"random:timm/{arch}" for arch, _ in chosen]
        described = (f"models: the {len(models)} smallest timm archs of {SWEEP.name} ({chosen[0][1]:,} to "
                     f"{chosen[-1][1]:,} params, {sum(p for _, p in chosen):,} in all)")
    kind = "listed models" if args.ids else "the shared zoo" if args.zoo else "random-init timm models"
    lines = [f"zooscan scan throughput, {kind} (CPU)",
             *machine_lines(), f"{described}; randomize={args.randomize} (null={config.null}); OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS', '')}", ""]
    print("\n".join(lines), flush=True)
    warm_up(models[0], config)
    settings = {"serial": ("serial (no Ray)", None, True), "ray1": ("ray, num_cpus=1", 1, True),
                "ray2": ("ray, num_cpus=2", 2, True), "ray2-plain": ("ray, num_cpus=2, no handover", 2, False)}
    for key in args.settings.split(","):
        label, cpus, handover = settings[key]
        line = run_setting(label, models, config, cpus, handover)
        print(line, flush=True)
        lines.append(line)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
