"""GPU ESD check, prepared for one H100: float64 Gram + eigvalsh throughput, whole models, a 7B projection.

Usage (from the repo root; torch, timm and numpy only — no Ray, no zooscan install needed):
    PYTHONPATH=. OUT=gpu_out python bench/gpu_esd_check.py                 # on the GPU (default --device cuda)
    PYTHONPATH=. python bench/gpu_esd_check.py --device cpu --quick        # smoke run on a CPU (< 60 s)

Measures, on ``--device``:

1. The float64 matmul rate: C = A·A for an n×n float64 A (2n³ FLOP), the limit for forming Gram matrices.
2. Per-shape ESD throughput for a sweep of N×M weights, in batches of same-shape matrices (as zooscan groups
   them): float32 weights already on the device → float64 → X = WᵀW (2·N·M² FLOP per matrix; its rate is
   reported as a fraction of (1)), then ``torch.linalg.eigvalsh(X)`` timed separately — the eigensolver, not
   the product, is the wall (on an H100, ResNet-50: Gram 1 ms, ``eigvalsh`` 0.35 s; docs/decisions.md,
   "Matrices and the ESD").
3. Whole-model ESD for random-init timm models (resnet50, vit_base, vit_large; ``--quick``: resnet18,
   vit_tiny): every Linear weight (fused qkv split into q, k, v) and every Conv2d kernel position as one matrix,
   grouped by shape and batched; upload, Gram, eigvalsh and download timed, plus the one-layer-at-a-time loop.
4. A 7B-class LLM, measured end to end without downloading anything: random float32 layers of Llama-7B
   shapes — 32 blocks × (4 × 4096² + 3 × 11008×4096) plus a 32000×4096 embedding and head — are drawn on
   the device one shape group at a time, and each goes through float64 Gram + eigvalsh + download of its
   eigenvalues (timed; drawing excluded); also projected from the per-shape times for comparison
   (``--quick``: a scaled-down toy, labelled so).
5. The host-CPU alternative (numpy float64 Gram + eigvalsh) for small matrices, against the device per matrix.

Writes ``gpu_esd_check.txt`` and ``gpu_esd_check.json`` to ``$OUT`` (default ./gpu_out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

FULL_SWEEP = ((256, 256), (512, 512), (768, 768), (1024, 1024), (3072, 768), (2048, 2048), (4096, 1024),
              (4096, 4096), (11008, 4096), (32000, 4096))
QUICK_SWEEP = ((128, 128), (256, 256), (512, 256), (512, 512))
FULL_MODELS = ("resnet50", "vit_base_patch16_224", "vit_large_patch16_224")
QUICK_MODELS = ("resnet18", "vit_tiny_patch16_224")
LLM_7B = {"blocks": 32, "hidden": 4096, "ffn": 11008, "vocab": 32000}
LLM_TOY = {"blocks": 32, "hidden": 256, "ffn": 512, "vocab": 1024}  # --quick: exercises the code path only
TINY_SWEEP = ((128, 128), (256, 128))  # --tiny: the CPU smoke test's sizes (tests/test_bench_gpu.py)
TINY_MODELS = ("test_resnet", "test_vit")
LLM_TINY = {"blocks": 2, "hidden": 128, "ffn": 256, "vocab": 512}
HOST_SHAPES = ((256, 256), (512, 512), (768, 768), (1024, 1024))
BATCH_BYTES = 2 << 30  # float64 bytes per batch (weights + Gram), so big shapes run a few at a time


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(func: Callable[[], object], device: torch.device, repeats: int = 3) -> float:
    """Median wall seconds of ``func`` after one warm-up call, synchronising the device around each."""
    func()
    sync(device)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        func()
        sync(device)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def matmul_rate(device: torch.device, n: int) -> float:
    """Measured float64 FLOP/s of an n×n by n×n product (2n³ FLOP)."""
    a = torch.randn(n, n, dtype=torch.float64, device=device)
    return 2.0 * n**3 / timed(lambda: a @ a, device)


def batch_size(n: int, m: int, cap: int) -> int:
    """Matrices per batch: at most ``cap``, and weights + Gram in float64 within BATCH_BYTES."""
    return max(1, min(cap, BATCH_BYTES // (8 * (n * m + m * m))))


def shape_throughput(n: int, m: int, count: int, device: torch.device, rate: float) -> dict[str, float]:
    """Per-matrix seconds of Gram formation and eigvalsh for a batch of ``count`` N×M float32 matrices."""
    w32 = torch.randn(count, n, m, dtype=torch.float32, device=device) / np.sqrt(m)
    grams: list[torch.Tensor] = []

    def gram() -> None:
        w = w32.to(torch.float64)
        grams[:] = [w.transpose(1, 2) @ w]

    gram_s = timed(gram, device)
    eigh_s = timed(lambda: torch.linalg.eigvalsh(grams[0]), device)
    flops = 2.0 * n * m * m * count
    return {"n": n, "m": m, "batch": count, "gram_s": gram_s / count, "eigh_s": eigh_s / count,
            "total_s": (gram_s + eigh_s) / count, "gram_flops": flops / gram_s, "gram_vs_peak": flops / gram_s / rate}


def model_matrices(arch: str) -> list[np.ndarray]:
    """float32 weight matrices of a random-init timm model, as zooscan cuts them (qkv split, conv positions)."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False)
    out: list[np.ndarray] = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.ndim not in (2, 4):
            continue
        w = weight.detach().float().numpy()
        if w.ndim == 4:  # (out, in, kh, kw) → kh·kw matrices out × in
            out.extend(w[:, :, i, j] for i in range(w.shape[2]) for j in range(w.shape[3]))
        elif name.endswith("qkv") and w.shape[0] == 3 * w.shape[1]:
            out.extend(np.split(w, 3, axis=0))
        else:
            out.append(w)
    return [m if m.shape[0] >= m.shape[1] else m.T for m in out if min(m.shape) >= 2]


def model_esd(arch: str, device: torch.device) -> dict[str, object]:
    """Whole-model ESD time: grouped by shape and batched, and one matrix at a time (zooscan's current loop)."""
    mats = model_matrices(arch)
    groups: dict[tuple[int, int], list[np.ndarray]] = defaultdict(list)
    for m in mats:
        groups[m.shape].append(m)
    parts = {"upload_s": 0.0, "gram_s": 0.0, "eigh_s": 0.0, "download_s": 0.0}

    def batched() -> None:
        for (n, m), members in groups.items():
            step = batch_size(n, m, 512)
            for start in range(0, len(members), step):
                t0 = time.perf_counter()
                w = torch.from_numpy(np.stack(members[start:start + step])).to(device)
                sync(device)
                t1 = time.perf_counter()
                w = w.to(torch.float64)
                x = w.transpose(1, 2) @ w
                sync(device)
                t2 = time.perf_counter()
                evals = torch.linalg.eigvalsh(x)
                sync(device)
                t3 = time.perf_counter()
                evals.cpu().numpy()
                t4 = time.perf_counter()
                for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    parts[key] += value

    def one_by_one() -> None:
        for m in mats:
            w = torch.from_numpy(m).to(device).to(torch.float64)
            torch.linalg.eigvalsh(w.T @ w).cpu().numpy()

    batched()  # warm-up (kernels, allocator); then one measured run of each
    parts.update(dict.fromkeys(parts, 0.0))
    started = time.perf_counter()
    batched()
    total = time.perf_counter() - started
    started = time.perf_counter()
    one_by_one()
    sync(device)
    loop = time.perf_counter() - started
    return {"model": arch, "matrices": len(mats), "shapes": len(groups),
            "params_m": sum(m.size for m in mats) / 1e6, "batched_s": total, "loop_s": loop, **parts}


def llm_shapes(spec: dict[str, int]) -> dict[tuple[int, int], int]:
    """Matrix count per (N, M) for a decoder LLM: per block 4 hidden² (q, k, v, o) + 3 ffn×hidden (MLP)."""
    h, f, v, b = spec["hidden"], spec["ffn"], spec["vocab"], spec["blocks"]
    counts: dict[tuple[int, int], int] = defaultdict(int)
    for shape, count in (((h, h), 4 * b), ((max(f, h), min(f, h)), 3 * b), ((max(v, h), min(v, h)), 2)):
        counts[shape] += count
    return dict(counts)


def project_llm(spec: dict[str, int], device: torch.device, rate: float, cache: dict) -> dict[str, object]:
    """Projected ESD seconds for ``spec`` from measured per-matrix times (measured here if not in ``cache``)."""
    total, rows = 0.0, []
    for (n, m), count in llm_shapes(spec).items():
        row = cache.get((n, m)) or shape_throughput(n, m, batch_size(n, m, 8), device, rate)
        total += count * row["total_s"]
        rows.append({"n": n, "m": m, "count": count, "per_matrix_s": row["total_s"], "eigh_s": row["eigh_s"]})
    return {"spec": spec, "projected_s": total, "shapes": rows}


def llm_full(spec: dict[str, int], device: torch.device, cap: int = 8) -> dict[str, object]:
    """Measured ESD seconds of every matrix of a decoder LLM of ``spec``'s shapes, random float32 weights
    drawn on ``device`` (not timed), in same-shape batches of at most ``cap``: float64 Gram, eigvalsh and the
    download of the eigenvalues are timed. Nothing is downloaded or read from disk."""
    generator = torch.Generator(device=device).manual_seed(0)
    timed_s, matrices, evals = 0.0, 0, 0
    per_shape = []
    for (n, m), count in llm_shapes(spec).items():
        step = batch_size(n, m, cap)
        shape_s = 0.0
        for start in range(0, count, step):
            k = min(step, count - start)
            w = torch.randn(k, n, m, dtype=torch.float32, device=device, generator=generator) / np.sqrt(m)
            sync(device)
            started = time.perf_counter()
            w64 = w.to(torch.float64)
            values = torch.linalg.eigvalsh(w64.transpose(1, 2) @ w64).cpu().numpy()
            sync(device)
            shape_s += time.perf_counter() - started
            evals += values.size
            del w, w64
        matrices += count
        timed_s += shape_s
        per_shape.append({"n": n, "m": m, "count": count, "seconds": shape_s})
    return {"spec": spec, "measured_s": timed_s, "matrices": matrices, "eigenvalues": evals, "shapes": per_shape}


def host_alternative(device: torch.device, cache: dict, shapes: tuple = HOST_SHAPES) -> list[dict[str, float]]:
    """Host numpy float64 Gram + eigvalsh per matrix vs the device, for small shapes."""
    rows = []
    cpu = torch.device("cpu")
    for n, m in shapes:
        w = np.random.default_rng(0).standard_normal((n, m)).astype(np.float32)

        def host(w: np.ndarray = w) -> None:
            x = w.astype(np.float64)
            np.linalg.eigvalsh(x.T @ x)

        dev = cache.get((n, m)) or shape_throughput(n, m, 1, device, 1.0)
        rows.append({"n": n, "m": m, "host_s": timed(host, cpu), "device_s": dev["total_s"]})
    return rows


def accuracy_check(device: torch.device) -> float:
    """max |λ_device − λ_numpy| / λ_max for one 1024×512 float64 Gram (expect ~1e-13)."""
    w = np.random.default_rng(1).standard_normal((1024, 512))
    ref = np.linalg.eigvalsh(w.T @ w)
    t = torch.from_numpy(w).to(device)
    got = torch.linalg.eigvalsh(t.T @ t).cpu().numpy()
    return float(np.max(np.abs(got - ref)) / ref[-1])


def environment(device: torch.device) -> dict[str, object]:
    import platform

    import timm

    info: dict[str, object] = {"device": str(device), "torch": torch.__version__, "timm": timm.__version__,
                               "numpy": np.__version__, "python": platform.python_version(),
                               "host_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda)
    return info


TARGETS = {"resnet50": 0.1, "vit_large_patch16_224": 0.3, "llm_7b": 30.0}


def targets(result: dict) -> list[tuple[str, float, float]]:
    """(what, seconds, limit) for each target this run measured: whole-model batched ESD of ResNet-50 and
    ViT-L, and the measured 7B-class LLM (the toy of ``--quick`` is no target)."""
    rows = [(f"{r['model']} full ESD (batched)", r["batched_s"], TARGETS[r["model"]])
            for r in result["models"] if r["model"] in TARGETS]
    full = result.get("llm_full")
    if full and full["spec"] == LLM_7B:
        rows.append(("7B-class LLM ESD (measured)", full["measured_s"], TARGETS["llm_7b"]))
    return rows


def render(result: dict) -> str:
    """The plain-text report."""
    lines = ["# gpu_esd_check", *(f"{k}: {v}" for k, v in result["environment"].items()),
             f"fp64 matmul: {result['fp64_flops'] / 1e12:.3f} TFLOP/s (n={result['matmul_n']})",
             f"eigvalsh accuracy vs numpy: max rel diff {result['accuracy']:.1e}", "",
             "## per-shape ESD (per matrix, batched same-shape; Gram fraction = Gram FLOP/s / fp64 matmul rate)",
             f"{'N':>6} {'M':>5} {'batch':>5} {'gram ms':>9} {'eigvalsh ms':>12} {'total ms':>9} {'gram/peak':>9}"]
    for r in result["sweep"]:
        lines.append(f"{r['n']:>6} {r['m']:>5} {r['batch']:>5} {1e3 * r['gram_s']:>9.3f} {1e3 * r['eigh_s']:>12.3f} "
                     f"{1e3 * r['total_s']:>9.3f} {r['gram_vs_peak']:>9.2f}")
    lines += ["", "## whole models (random init; seconds; batched = upload + gram + eigvalsh + download by shape group)",
              f"{'model':>24} {'mats':>5} {'shapes':>6} {'Mparams':>8} {'batched':>8} {'upload':>7} {'gram':>7} "
              f"{'eigvalsh':>8} {'download':>8} {'per-matrix loop':>15}"]
    for r in result["models"]:
        lines.append(f"{r['model']:>24} {r['matrices']:>5} {r['shapes']:>6} {r['params_m']:>8.1f} "
                     f"{r['batched_s']:>8.3f} {r['upload_s']:>7.3f} {r['gram_s']:>7.3f} {r['eigh_s']:>8.3f} "
                     f"{r['download_s']:>8.3f} {r['loop_s']:>15.3f}")
    llm = result["llm"]
    label = "7B-class LLM" if llm["spec"] == LLM_7B else "TOY LLM (--quick; not a 7B projection)"
    lines += ["", f"## projection: {label} {llm['spec']}: {llm['projected_s']:.2f} s of ESD"]
    lines += [f"  {r['count']:>4} × {r['n']}×{r['m']}: {1e3 * r['per_matrix_s']:.2f} ms each "
              f"(eigvalsh {1e3 * r['eigh_s']:.2f} ms)" for r in llm["shapes"]]
    full = result.get("llm_full")
    if full:
        lines += ["", f"## measured: {label}, {full['matrices']} random matrices drawn on the device, "
                      f"{full['eigenvalues']:,} eigenvalues: {full['measured_s']:.2f} s of ESD (Gram + eigvalsh + "
                      "download; drawing excluded)"]
        lines += [f"  {r['count']:>4} × {r['n']}×{r['m']}: {r['seconds']:.2f} s" for r in full["shapes"]]
    lines += ["", "## targets (issue 15; a GPU run only)"]
    lines += [f"  {name}: {value:.3f} s (target ≤ {limit} s): {'met' if value <= limit else 'NOT met'}"
              for name, value, limit in targets(result)]
    lines += ["", "## host CPU (numpy fp64 Gram + eigvalsh) vs device, per matrix",
              f"{'N':>6} {'M':>5} {'host ms':>9} {'device ms':>10} {'faster':>7}"]
    lines += [f"{r['n']:>6} {r['m']:>5} {1e3 * r['host_s']:>9.3f} {1e3 * r['device_s']:>10.3f} "
              f"{'host' if r['host_s'] < r['device_s'] else 'device':>7}" for r in result["host"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="small shapes and models (a CPU smoke run)")
    parser.add_argument("--tiny", action="store_true", help="smaller still: the smoke test's sizes")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_out")))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu" and args.quick:
        torch.set_num_threads(1)  # a CPU smoke run: torch's own thread pool stalls on a loaded shared machine
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no GPU; run with --device cpu --quick to check the script")
    args.quick = args.quick or args.tiny
    sweep = TINY_SWEEP if args.tiny else QUICK_SWEEP if args.quick else FULL_SWEEP
    models = TINY_MODELS if args.tiny else QUICK_MODELS if args.quick else FULL_MODELS
    llm = LLM_TINY if args.tiny else LLM_TOY if args.quick else LLM_7B
    matmul_n = 1024 if args.quick else 8192
    rate = matmul_rate(device, matmul_n)
    rows = [shape_throughput(n, m, batch_size(n, m, 4 if args.quick else 16), device, rate) for n, m in sweep]
    cache = {(r["n"], r["m"]): r for r in rows}
    result = {
        "environment": environment(device), "fp64_flops": rate, "matmul_n": matmul_n,
        "accuracy": accuracy_check(device), "sweep": rows,
        "models": [model_esd(arch, device) for arch in models],
        "llm": project_llm(llm, device, rate, cache),
        "llm_full": llm_full(llm, device),
        "host": host_alternative(device, cache, TINY_SWEEP if args.tiny else HOST_SHAPES),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    text = render(result)
    (args.out / "gpu_esd_check.txt").write_text(text)
    (args.out / "gpu_esd_check.json").write_text(json.dumps(result, indent=1, default=str))
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
