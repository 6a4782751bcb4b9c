"""How long the spectrum worker waits for weights, with and without prefetch, from a bandwidth-throttled hub.

A local hub server (tests/_hub_server.py, loopback only) serves ``--models`` synthetic repos (safetensors of
BERT-base-shaped matrices, ``--layers`` of 768x768 and 768x3072 float32 each) through one token bucket of
``--mbps`` MB/s, as one node's link. Each mode is a real ``zooscan scan --serial`` (``runner.run_serial``: the
driver and the serial executor, thread mode) from an empty ``--cache-dir``, with ``--prefetch 0`` and
``--prefetch --depth``; the driver releases each model's weights after its commit.

Idle fraction = time the spectrum worker spends waiting for weights (the ``seconds_load`` column of every
model: its download, or the wait for the prefetch in flight, plus opening the file) / the scan's wall time.

    .venv/bin/python bench/bench_prefetch.py --out bench/results/prefetch.txt
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "0"  # huggingface_hub reads it at import; only the local server is contacted
os.environ["TRANSFORMERS_OFFLINE"] = "0"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def make_repos(folder: Path, models: int, layers: int) -> list:
    import torch
    from safetensors.torch import save_file

    from tests._hub_server import HubRepo

    repos = []
    for index in range(models):
        generator = torch.Generator().manual_seed(index)
        tensors = {}
        for layer in range(layers):
            shape = (768, 768) if layer % 3 else (3072, 768)
            tensors[f"encoder.layer.{layer}.weight"] = torch.randn(shape, generator=generator) / 30
        path = folder / f"m{index}.safetensors"
        save_file(tensors, str(path))
        repos.append(HubRepo(f"bench/model-{index}", {"model.safetensors": path, "config.json": b"{}"}))
    return repos


def run(repos: list, mbps: float, prefetch: int, threads: int, results: Path) -> dict:
    """One ``zooscan scan --serial`` (the real driver and serial executor) of every repo from a fresh cache."""
    from scanner import runner
    from scanner.config import ScanConfig
    from scanner.query import connect
    from scanner.sources import hub
    from tests._hub_server import FakeHub

    ids = [f"hf:{repo.repo_id}" for repo in repos]
    scan_id = f"prefetch-{prefetch}"
    with tempfile.TemporaryDirectory() as cache_dir, FakeHub(repos, bandwidth=mbps * 1e6) as server, \
            open(os.devnull, "w") as quiet:
        os.environ["HF_ENDPOINT"] = server.endpoint
        hub.forget_probes()
        config = ScanConfig(randomize=True, threads=threads, cache_dir=cache_dir, prefetch=prefetch)
        options = runner.RunOptions(results=str(results), scan_id=scan_id)
        stats = runner.run_serial(ids, config, options, stream=quiet)
        downloaded = sum(1 for r in server.requests if r[0] == "GET" and r[1].endswith(".safetensors"))
        left = len(list(Path(cache_dir).glob("models--*")))
    con = connect(results, scan_id=scan_id)
    rows = con.execute("select model_id, status, seconds_load, seconds_total from models order by model_id").fetchall()
    assert [r[1] for r in rows] == ["ok"] * len(ids), rows
    spectra = con.execute("select model_id, layer_name, eigenvalues from spectra order by model_id, layer_name")
    evals = {(m, n): np.asarray(e) for m, n, e in spectra.fetchall()}
    return {"wall": stats.seconds, "idle": sum(r[2] for r in rows), "compute": sum(r[3] - r[2] for r in rows),
            "loads": [r[2] for r in rows], "evals": evals, "downloads": downloaded, "left": left}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{platform.node()}: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=6)
    parser.add_argument("--layers", type=int, default=6, help="matrices per model (every third 3072x768)")
    parser.add_argument("--mbps", type=float, default=10.0, help="hub bandwidth, MB/s (1 MB = 1e6 bytes)")
    parser.add_argument("--depth", type=int, default=2, help="models prefetched ahead")
    parser.add_argument("--threads", type=int, default=1, help="layers solved at once (ScanConfig.threads)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        repos = make_repos(Path(folder), args.models, args.layers)
        size = sum(len(f.data) for f in repos[0].files.values())
        load_before = os.getloadavg()
        runs = {"without prefetch": run(repos, args.mbps, 0, args.threads, Path(folder) / "results"),
                "with prefetch": run(repos, args.mbps, args.depth, args.threads, Path(folder) / "results")}
        load_after = os.getloadavg()
    same = runs["with prefetch"]["evals"].keys() == runs["without prefetch"]["evals"].keys() and all(
        np.array_equal(runs["with prefetch"]["evals"][k], e) for k, e in runs["without prefetch"]["evals"].items())
    lines = [
        "bench_prefetch: spectrum-worker idle time waiting for hub weights, with and without prefetch",
        f"machine: {machine()}",
        f"load average (1/5/15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {' '.join(f'{x:.2f}' for x in load_after)} (a shared machine: other jobs ran meanwhile)",
        f"hub: local server (loopback), one {args.mbps:g} MB/s token bucket for all connections",
        f"models: {args.models} synthetic repos, {size / 1e6:.1f} MB each ({args.layers} float32 matrices, every third "
        f"3072x768, the others 768x768), randomize on, threads={args.threads}; prefetch depth {args.depth}",
        f"expected download per model at that bandwidth: {size / (args.mbps * 1e6):.1f} s",
        "",
        f"{'mode':18s} {'wall s':>8s} {'idle s':>8s} {'idle frac':>9s} {'busy s':>7s} {'GETs':>5s}  per-model wait s",
    ]
    for name, result in runs.items():
        lines.append(f"{name:18s} {result['wall']:8.1f} {result['idle']:8.1f} {result['idle'] / result['wall']:9.2f} "
                     f"{result['compute']:7.1f} {result['downloads']:5d}  " + " ".join(f"{x:.1f}" for x in result['loads']))
    gain = runs["without prefetch"]["wall"] - runs["with prefetch"]["wall"]
    lines += ["", f"prefetch saved {gain:.1f} s of {runs['without prefetch']['wall']:.1f} s; eigenvalues identical in "
              f"both modes: {same}; hub repos left in the cache after each scan: "
              f"{runs['without prefetch']['left']} / {runs['with prefetch']['left']}"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
