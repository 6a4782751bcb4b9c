"""GPU scan check, prepared for one H100: ``compute_spectra`` on random-init timm ResNet-50 and ViT-B/16.

Times zooscan's step 1 (read weights, form matrices, float64 Gram + eigvalsh: the step a Ray
``SpectrumWorker`` runs on a GPU) with ``device="cuda"``, against the same step on the host CPU for the first
model, and checks that both give the same eigenvalues. Two routes (``--routes``): "hybrid", a scan's default
(layers narrower than ``scan.DEVICE_MIN_WIDTH`` solved by numpy on the host's threads, the rest on the GPU),
and "device" (every layer on the GPU); ``layer_threads`` in the JSON says how many host threads the hybrid had. Step 2 (fits, on the CPU) is timed once per model for
scale. No Ray: torch, timm, numpy, scipy (imported by scanner.spectra) and, if present, pyarrow.

Usage (from the repository root; nothing to install besides those packages):
    PYTHONPATH=. OUT=gpu_out python bench/gpu_scan_check.py                      # on the GPU
    PYTHONPATH=. OUT=/tmp/gpu_out python bench/gpu_scan_check.py --device cpu --models random:timm/resnet18

Writes ``gpu_scan_check.txt``, ``gpu_scan_check.json`` and (with pyarrow) ``gpu_scan_check_layers.parquet``
to ``$OUT`` (default ./gpu_out). Runtime on an H100: well under 5 minutes (two models, 3 timed repeats each,
one CPU reference pass of ResNet-50).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scanner import scan as scan_module
from scanner.config import ScanConfig
from scanner.scan import ModelSpectra, PendingLayer, compute_spectra, finish_scan

ROUTES = {"hybrid": scan_module.DEVICE_MIN_WIDTH, "device": 0}  # narrowest layer width solved on the device

DEFAULT_MODELS = ("random:timm/resnet50", "random:timm/vit_base_patch16_224")


def pending(spectra: ModelSpectra) -> list[PendingLayer]:
    return [item for item in spectra.items if isinstance(item, PendingLayer)]


def max_relative_error(a: ModelSpectra, b: ModelSpectra) -> float:
    """max over layers of max|λ_a − λ_b| / λ_max (eigenvalues sorted; same layer order in both)."""
    worst = 0.0
    for x, y in zip(pending(a), pending(b), strict=True):
        ex, ey = np.sort(x.eig.evals), np.sort(y.eig.evals)
        worst = max(worst, float(np.max(np.abs(ex - ey)) / max(float(ey[-1]), 1e-300)))
    return worst


def time_model(model_id: str, config: ScanConfig, repeats: int) -> tuple[ModelSpectra, dict]:
    compute_spectra(model_id, config)  # warm-up: CUDA context, cuSOLVER handles, timm import
    walls, loads, esds = [], [], []
    spectra = None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        spectra = compute_spectra(model_id, config)
        walls.append(time.perf_counter() - started)
        loads.append(spectra.seconds_load)
        esds.append(spectra.seconds_esd)
    assert spectra is not None
    layers = pending(spectra)
    fit_started = time.perf_counter()
    scan = finish_scan(spectra, config)
    return spectra, {
        "model_id": model_id, "status": spectra.status.value, "reason": spectra.reason,
        "device": sorted({p.record.device for p in layers}), "layers_analysed": len(layers),
        "eigenvalues": int(sum(p.eig.evals.size for p in layers)), "num_params": spectra.num_params,
        "wall_s_median": statistics.median(walls), "wall_s_all": walls,
        "load_s_median": statistics.median(loads), "esd_s_median": statistics.median(esds),
        "fit_s_cpu": time.perf_counter() - fit_started, "alpha_mean": scan.model.summary.alpha_mean
        if scan.model.summary else None,
        "slowest_layers": sorted(((p.record.layer_name, "x".join(map(str, p.record.shape)), p.record.seconds_esd)
                                  for p in layers), key=lambda t: -t[2])[:5],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--randomize", action="store_true", help="also the shuffled-matrix ESD (twice the work)")
    parser.add_argument("--no-cpu-reference", action="store_true", help="skip the CPU pass of the first model")
    parser.add_argument("--routes", nargs="+", choices=sorted(ROUTES), default=["hybrid", "device"],
                        help="hybrid: layers narrower than scan.DEVICE_MIN_WIDTH on the host's threads (the "
                             "default of a scan); device: every layer on the device")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no GPU; use --device cpu for a smoke run", file=sys.stderr)
        return 1
    out = Path(os.environ.get("OUT", "gpu_out"))
    out.mkdir(parents=True, exist_ok=True)
    config = ScanConfig(device=args.device, randomize=args.randomize)
    report = {"host": platform.node(), "device": args.device, "torch": torch.__version__,
              "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
              "cpu_threads": torch.get_num_threads(), "layer_threads": config.layer_threads(),
              "randomize": args.randomize, "models": []}
    lines = [f"gpu_scan_check on {report['gpu'] or 'CPU'} (torch {torch.__version__}, CUDA {torch.version.cuda}), "
             f"device={args.device}, randomize={args.randomize}, {args.repeats} timed repeats"]
    layer_rows = []
    runs = [(model_id, route) for model_id in args.models for route in args.routes]
    for index, (model_id, route) in enumerate(runs):
        scan_module.DEVICE_MIN_WIDTH = ROUTES[route]
        spectra, row = time_model(model_id, config, args.repeats)
        row["route"] = route
        if index == 0 and not args.no_cpu_reference and args.device != "cpu":
            reference = compute_spectra(model_id, ScanConfig(device="cpu", randomize=args.randomize))
            row["cpu_reference_esd_s"] = reference.seconds_esd
            row["max_rel_error_vs_cpu"] = max_relative_error(spectra, reference)
        report["models"].append(row)
        layer_rows += [{"model_id": model_id, "route": route, "layer": p.record.layer_name, "shape": "x".join(map(str, p.record.shape)),
                        "n_evals": int(p.eig.evals.size), "seconds_esd": p.record.seconds_esd} for p in pending(spectra)]
        extra = (f"; CPU ESD {row['cpu_reference_esd_s']:.2f} s, max rel. error vs CPU {row['max_rel_error_vs_cpu']:.1e}"
                 if "cpu_reference_esd_s" in row else "")
        lines.append(f"{model_id} [{route}]: {row['status']} {row['layers_analysed']} layers, {row['eigenvalues']:,} eigenvalues; "
                     f"wall {row['wall_s_median']:.3f} s (load {row['load_s_median']:.3f} s, ESD {row['esd_s_median']:.3f} s) "
                     f"on {','.join(row['device'])}; fits on CPU {row['fit_s_cpu']:.2f} s{extra}")
    (out / "gpu_scan_check.json").write_text(json.dumps(report, indent=2))
    (out / "gpu_scan_check.txt").write_text("\n".join(lines) + "\n")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(layer_rows), out / "gpu_scan_check_layers.parquet")
    except ImportError:
        pass
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
