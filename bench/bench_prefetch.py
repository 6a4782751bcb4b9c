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


def run(repos: list, mbps: float, prefetch: int, threads: int, results: Path, ray_cpus: int = 0) -> dict:
    """One scan (the real driver; the serial executor, or Ray with ``ray_cpus``) of every repo, fresh cache."""
    from scanner import distributed, runner
    from scanner.config import ScanConfig
    from scanner.query import connect
    from scanner.sources import hub
    from tests._hub_server import FakeHub

    ids = [f"hf:{repo.repo_id}" for repo in repos]
    scan_id = f"prefetch-{prefetch}-{'ray' if ray_cpus else 'serial'}"
    with tempfile.TemporaryDirectory() as cache_dir, FakeHub(repos, bandwidth=mbps * 1e6) as server, \
            open(os.devnull, "w") as quiet:
        os.environ["HF_ENDPOINT"] = server.endpoint
        hub.forget_probes()
        config = ScanConfig(randomize=True, threads=threads, cache_dir=cache_dir, prefetch=prefetch)
        options = runner.RunOptions(results=str(results), scan_id=scan_id, num_cpus=ray_cpus or None)
        scan = distributed.run_ray if ray_cpus else runner.run_serial
        stats = scan(ids, config, options, stream=quiet)
        downloaded = sum(1 for r in server.requests if r[0] == "GET" and r[1].endswith(".safetensors"))
        left = len(list(Path(cache_dir).glob("models--*")))
    con = connect(results, scan_id=scan_id)
    rows = con.execute("select model_id, status, seconds_load, seconds_total from models order by model_id").fetchall()
    assert [r[1] for r in rows] == ["ok"] * len(ids), rows
    spectra = con.execute("select model_id, layer_name, eigenvalues from spectra order by model_id, layer_name")
    evals = {(m, n): np.asarray(e) for m, n, e in spectra.fetchall()}
    return {"wall": stats.seconds, "worker": sum(r[3] for r in rows), "workers": stats.workers, "idle": sum(r[2] for r in rows), "compute": sum(r[3] - r[2] for r in rows),
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
    parser.add_argument("--ray", type=int, default=0, metavar="CPUS",
                        help="also scan on a local Ray of CPUS CPUs (RayExecutor: one model prefetched per worker)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        repos = make_repos(Path(folder), args.models, args.layers)
        size = sum(len(f.data) for f in repos[0].files.values())
        load_before = os.getloadavg()
        out = Path(folder) / "results"
        runs = {"without prefetch": run(repos, args.mbps, 0, args.threads, out),
                "with prefetch": run(repos, args.mbps, args.depth, args.threads, out)}
        if args.ray:
            runs["ray, without"] = run(repos, args.mbps, 0, args.threads, out, args.ray)
            runs["ray, with"] = run(repos, args.mbps, args.depth, args.threads, out, args.ray)
        load_after = os.getloadavg()
    base = runs["without prefetch"]["evals"]
    same = all(r["evals"].keys() == base.keys() and all(np.array_equal(r["evals"][k], e) for k, e in base.items())
               for r in runs.values())
    lines = [
        "bench_prefetch: spectrum-worker idle time waiting for hub weights, with and without prefetch",
        f"machine: {machine()}",
        f"load average (1/5/15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {' '.join(f'{x:.2f}' for x in load_after)} (a shared machine: other jobs ran meanwhile)",
        f"hub: local server (loopback), one {args.mbps:g} MB/s token bucket for all connections",
        f"models: {args.models} synthetic repos, {size / 1e6:.1f} MB each ({args.layers} float32 matrices, every third "
        f"3072x768, the others 768x768), randomize on, threads={args.threads}; prefetch depth {args.depth} "
        "(serial; Ray: one model per worker)",
        f"expected download per model at that bandwidth: {size / (args.mbps * 1e6):.1f} s",
        "idle s = sum of the models' seconds_load (waiting for weights); idle frac = idle / wall; "
        "of worker = idle / sum of seconds_total (a Ray wall includes starting Ray)",
        "",
        f"{'mode':18s} {'workers':>7s} {'wall s':>7s} {'idle s':>7s} {'idle frac':>9s} {'of worker':>9s} "
        f"{'busy s':>7s} {'GETs':>5s}  per-model wait s",
    ]
    for name, r in runs.items():
        lines.append(f"{name:18s} {r['workers']:7d} {r['wall']:7.1f} {r['idle']:7.1f} {r['idle'] / r['wall']:9.2f} "
                     f"{r['idle'] / r['worker']:9.2f} {r['compute']:7.1f} {r['downloads']:5d}  "
                     + " ".join(f"{x:.1f}" for x in r["loads"]))
    gain = runs["without prefetch"]["wall"] - runs["with prefetch"]["wall"]
    lines += ["", f"serial: prefetch saved {gain:.1f} s of {runs['without prefetch']['wall']:.1f} s; eigenvalues "
              f"identical in every mode: {same}; hub repos left in the cache after each scan: "
              + " / ".join(str(r["left"]) for r in runs.values())]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
