"""Layer coverage of the registry zoo, side by side: matrices zooscan analyses vs weightwatcher 0.7.7, and the
α agreement in reference mode where both read the network.

Usage (from the repo root, after ``zooscan zoo fetch registry_zoo --all --zoo-dir zoo`` and a scan of the whole
zoo, ``zooscan scan --models $(zooscan zoo ids registry_zoo) --results results --scan-id registry-zoo-all``):
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_coverage.py run      # both tools, one child per model and tool
    .venv/bin/python bench/bench_coverage.py report --scan-id registry-zoo-all   # bench/results/registry_coverage.md

For every network weightwatcher can read, both tools run in fresh subprocesses on the same file: zooscan with
``fit="reference"`` and no randomization (weightwatcher 0.7.7's α), weightwatcher with its default
``analyze()``. For the other networks, zooscan's matrices come from the scan given to ``report``.
weightwatcher 0.7.7 reads a PyTorch module, a Keras model or a dict of tensors (its PYSTATEDICT path); for the registry files that means the torch pickles and safetensors files, loaded here as a dict of
tensors exactly as zooscan's ``file:`` source unwraps them (``weights_only=True``; nested under ``state_dict``,
``model``, ``module``, ``net`` or ``model_state_dict``). Its Keras path needs TensorFlow (not installed here)
and it has no reader for the other formats; those rows say so. Each weightwatcher run is a fresh subprocess
with a timeout; its raw results are JSON lines in ``bench/results/registry_coverage_raw.txt``.
α agreement per model: layers matched by name ("module." prefix and ".weight" suffix dropped), as in
``bench_vs_weightwatcher.alpha_agreement``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
RAW = ROOT / "bench" / "results" / "registry_coverage_raw.txt"
REPORT = ROOT / "bench" / "results" / "registry_coverage.md"
WW_READS = ("torch_pickle", "safetensors")
WHY_NOT = {"keras_h5": "Keras path needs TensorFlow (not installed)", "onnx": "no reader for ONNX files",
           "tflite": "no TFLite reader", "tfjs": "no TF.js reader", "spacy_msgpack": "no spaCy reader",
           "torchscript": "no TorchScript reader", "tf_checkpoint": "no TF checkpoint reader",
           "npz": "no npz reader", "numpy_pickle": "no numpy pickle reader"}


def load_tensors(path: Path) -> dict[str, Any]:
    """A dict of torch tensors, unwrapped as zooscan's file source does."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for _ in range(3):
        if not isinstance(obj, dict):
            break
        nested = next((obj[k] for k in ("state_dict", "model", "module", "net", "model_state_dict")
                       if isinstance(obj.get(k), dict)), None)
        if nested is None:
            break
        obj = nested
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor) and v.is_floating_point()}


def child(path: str, tool: str) -> None:
    """Analyse one file with one tool in reference mode; print one JSON line (α per layer, counts, seconds).

    ww: weightwatcher 0.7.7 ``WeightWatcher(model=<dict of tensors>).analyze()``; zoo: zooscan
    ``scan_model("file:<path>", ScanConfig(fit="reference", randomize=False))``."""
    import logging

    logging.disable(logging.WARNING)
    from bench_vs_weightwatcher import layer_key, run_zoo

    start = time.perf_counter()
    try:
        if tool == "zoo":
            out = run_zoo(f"file:{path}", "default")
        else:
            import weightwatcher

            details = weightwatcher.WeightWatcher(model=load_tensors(Path(path))).analyze()
            ok = details[details["status"] == "success"] if "status" in details else details
            alphas = {layer_key(str(n)): (float(a) if a != -1 else None)
                      for n, a in zip(ok["longname"], ok["alpha"], strict=True)} if len(ok) else {}
            out = {"n_rows": int(len(details)), "n_analysed": int(len(ok)), "alphas": alphas}
    except Exception as exc:
        out = {"error": f"{type(exc).__name__}: {str(exc)[:160]}"}
    out["seconds"] = time.perf_counter() - start
    print(json.dumps(out))


def run(timeout: float) -> None:
    from scanner.zoo.catalog import load_zoo_catalog

    done = {json.loads(line)["model_id"] for line in RAW.read_text().splitlines()} if RAW.exists() else set()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for row in load_zoo_catalog("registry_zoo"):
        if row.format not in WW_READS or row.model_id in done:
            continue
        path = row.model_id.removeprefix("file:")
        result: dict[str, Any] = {"model_id": row.model_id}
        for tool in ("zoo", "ww"):
            try:
                proc = subprocess.run([sys.executable, __file__, "child", path, "--tool", tool], capture_output=True,
                                      text=True, timeout=timeout, env=env, check=False)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                result[tool] = (json.loads(lines[-1]) if lines else
                                {"error": f"exit {proc.returncode}: {proc.stderr[-160:]}"})
            except subprocess.TimeoutExpired:
                result[tool] = {"error": f"timeout after {timeout:.0f} s"}
        with open(RAW, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")
        print(row.model_id, *(result[t].get("n_analysed", result[t].get("error")) for t in ("zoo", "ww")), flush=True)


def zoo_side(results: str, scan_id: str) -> dict[str, dict[str, Any]]:
    from bench_vs_weightwatcher import layer_key

    from scanner.query import connect

    con = connect(results, scan_id=scan_id)
    out: dict[str, dict[str, Any]] = {}
    for model_id, status, reason in con.execute("SELECT model_id, status, reason FROM models").fetchall():
        out[model_id] = {"status": status, "reason": reason or "", "alphas": {}, "n_matrices": 0}
    for model_id, name, alpha in con.execute(
            "SELECT model_id, layer_name, alpha FROM layers WHERE status = 'ok'").fetchall():
        out[model_id]["alphas"][layer_key(name)] = alpha
        out[model_id]["n_matrices"] += 1
    return out


def report(results: str, scan_id: str) -> None:
    from bench_vs_weightwatcher import alpha_agreement

    from scanner.zoo.catalog import load_zoo_catalog

    rows = load_zoo_catalog("registry_zoo")
    zoo = zoo_side(results, scan_id)
    raw = {r["model_id"]: r for r in map(json.loads, RAW.read_text().splitlines())} if RAW.exists() else {}
    lines = ["# Registry zoo: layer coverage, zooscan vs weightwatcher 0.7.7", "",
             f"zooscan: scan `{scan_id}` (`--fit reference --no-randomize`: weightwatcher 0.7.7's α). "
             "weightwatcher: `WeightWatcher(model=<dict of tensors>).analyze()` in a fresh process per model "
             "(`bench/bench_coverage.py`). Matrices = layers whose ESD was fitted (zooscan status ok; "
             "weightwatcher status success). α agreement over layers matched by name.", ""]
    per_format: dict[str, list[int]] = {}
    diffs: list[float] = []
    both_read = [0, 0]  # matrices fitted by zooscan / weightwatcher on the networks both read
    table = []
    for row in rows:
        z = zoo.get(row.model_id, {"status": "not scanned", "n_matrices": 0, "alphas": {}, "reason": ""})
        w = raw.get(row.model_id, {}).get("ww")
        z_ref = raw.get(row.model_id, {}).get("zoo")
        if z_ref and "n_analysed" in z_ref:  # the reference-mode α of the same child run
            z = {"status": "ok", "n_matrices": z_ref["n_analysed"], "alphas": z_ref["alphas"], "reason": ""}
        counts = per_format.setdefault(row.format, [0, 0, 0, 0, 0])
        counts[0] += 1
        counts[1] += z["status"] == "ok"
        counts[2] += z["n_matrices"]
        if w and "n_analysed" in w:
            counts[3] += 1
            counts[4] += w["n_analysed"]
            both_read[0] += z["n_matrices"]
            both_read[1] += w["n_analysed"]
            agreement = alpha_agreement(w["alphas"], z["alphas"])
            per_layer = [abs(z["alphas"][k] - w["alphas"][k]) for k in w["alphas"].keys() & z["alphas"].keys()
                         if z["alphas"][k] is not None and w["alphas"][k] is not None]
            diffs += per_layer
            ww_text = str(w["n_analysed"])
            agree = (f"{agreement['matched']} | {agreement['median_abs']:.2g} | {agreement['max_abs']:.2g}"
                     if agreement["matched"] else "0 | | ")
        else:
            error = re.sub(r"\x1b\[[0-9;]*m", "", (w or {}).get("error") or "")
            ww_text = (error.split(". ")[0] + " (weights_only refuses it)" if "Weights only load failed" in error
                       else error) or WHY_NOT.get(row.format, "not run")
            agree = " | | "
        table.append(f"| `{row.model_id.removeprefix('file:zoo/registry/')}` | {row.format} | "
                     f"{z['n_matrices'] if z['status'] == 'ok' else z['status']} | {ww_text} | {agree} |")
    lines += ["## By format", "", "| format | models | zooscan ok | zooscan matrices | ww read | ww matrices |",
              "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {f} | {c[0]} | {c[1]} | {c[2]} | {c[3]} | {c[4]} |" for f, c in sorted(per_format.items())]
    total = [sum(c[i] for c in per_format.values()) for i in range(5)]
    lines += [f"| **all** | {total[0]} | {total[1]} | {total[2]} | {total[3]} | {total[4]} |", ""]
    lines += [f"On the {total[3]} networks weightwatcher read: zooscan fitted {both_read[0]} matrices, "
              f"weightwatcher {both_read[1]}.", ""]
    if diffs:
        within = sum(d <= 1e-3 for d in diffs) / len(diffs)
        lines += [f"α agreement (reference mode) over {len(diffs)} matched layers: median |Δα| "
                  f"{statistics.median(diffs):.2g}, max {max(diffs):.3g}, {100 * within:.1f}% within 1e-3.", ""]
    lines += ["## Per model", "", "| model | format | zooscan matrices | ww matrices (or why not) | matched | "
              "median abs Δα | max abs Δα |", "|---|---|---:|---|---:|---:|---:|", *table, ""]
    REPORT.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {REPORT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("child")
    one.add_argument("path")
    one.add_argument("--tool", choices=("ww", "zoo"), required=True)
    go = sub.add_parser("run")
    go.add_argument("--timeout", type=float, default=600.0)
    rep = sub.add_parser("report")
    rep.add_argument("--results", default="results")
    rep.add_argument("--scan-id", default="registry-zoo-all")
    args = parser.parse_args()
    if args.command == "child":
        child(args.path, args.tool)
    elif args.command == "run":
        run(args.timeout)
    else:
        report(args.results, args.scan_id)


if __name__ == "__main__":
    main()
