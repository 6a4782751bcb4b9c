"""Peak resident memory when streaming a large safetensors checkpoint through zooscan vs loading it whole.

Usage:
    OMP_NUM_THREADS=1 nice .venv/bin/python bench/bench_loader_memory.py [--layers 8 --rows 4096 --cols 8192]

Writes a synthetic checkpoint (default 8 float32 layers of 4096 × 8192 = 128 MiB each, 1 GiB in all) and a
torch zip (.pt) copy to a temporary folder, then measures each way of reading it in a fresh subprocess, so that
every peak (VmHWM of /proc/self/status) starts from the same baseline (Python + torch imported; ru_maxrss is
not used because Linux carries the parent's peak across fork and exec):

    zooscan-safetensors   open_source("file:...safetensors") + iter_layers (one tensor read at a time)
    zooscan-torch-mmap    open_source("file:...pt") + iter_layers (torch.load(mmap=True, weights_only=True))
    safe_open-per-tensor  safetensors.safe_open, get_tensor one name at a time (the file stays memory-mapped)
    load_file-whole       safetensors.torch.load_file (every tensor in memory at once)

Every mode touches every value (a sum), as a scan does. Prints the peak RSS, the baseline and the difference
for each, and the largest layer's size. Memory-mapped pages (safe_open, torch mmap) count in RSS once touched;
they are clean file-backed pages that the kernel can drop under pressure, unlike the copies zooscan reads.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys
sys.path.insert(0, {root!r})
import torch, numpy

def status_kib(field):
    # VmHWM/VmRSS of this process's own address space (ru_maxrss would inherit the parent's peak across fork)
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field + ":"))

base = status_kib("VmRSS")
mode, path = {mode!r}, {path!r}
count = 0
if mode.startswith("zooscan"):
    from scanner.layers import LayerMatrix, iter_layers
    from scanner.sources import open_source
    for row in iter_layers(open_source("file:" + path)):
        if isinstance(row, LayerMatrix):
            count += 1
            float(row.matrices.sum())  # touch every value, as the spectral core will
        del row
elif mode == "safe_open-per-tensor":
    from safetensors import safe_open
    with safe_open(path, framework="pt") as handle:
        for name in handle.keys():
            tensor = handle.get_tensor(name)
            count += 1
            float(tensor.sum())  # touch every value
            del tensor
else:
    from safetensors.torch import load_file
    tensors = load_file(path)
    count = sum(1 for t in tensors.values() if float(t.sum()) == float(t.sum()))  # touch every value
peak = status_kib("VmHWM")
print(json.dumps({{"mode": mode, "base_kib": base, "peak_kib": peak, "tensors": count}}))
"""


def write_checkpoints(folder: Path, layers: int, rows: int, cols: int) -> tuple[Path, Path]:
    """The synthetic checkpoint as .safetensors and as a torch zip .pt (same tensors)."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    state = {f"blocks.{i}.fc.weight": torch.randn(rows, cols, generator=g) for i in range(layers)}
    safetensors_path, torch_path = folder / "big.safetensors", folder / "big.pt"
    save_file(state, str(safetensors_path))
    torch.save(state, torch_path)
    return safetensors_path, torch_path


def measure(mode: str, path: Path) -> dict:
    code = CHILD.format(root=str(ROOT), mode=mode, path=str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> str:
    """Host name, CPU model, cores, memory, Python and torch versions."""
    import os

    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
    return (f"{platform.node()} ({cpu}, {os.cpu_count()} cores, {mem_kib / 2**20:.0f} GiB RAM), "
            f"Linux {platform.release()}, Python {platform.python_version()}, torch {torch.__version__}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=8192)
    args = parser.parse_args()
    layer_mib = args.rows * args.cols * 4 / 2**20
    with tempfile.TemporaryDirectory(prefix="zooscan_bench_") as tmp:
        st_path, pt_path = write_checkpoints(Path(tmp), args.layers, args.rows, args.cols)
        print(f"machine: {machine()}")
        print(f"checkpoint: {args.layers} float32 layers of {args.rows}x{args.cols}; "
              f"file {st_path.stat().st_size / 2**20:.0f} MiB; largest layer {layer_mib:.0f} MiB")
        print(f"{'mode':<22}{'peak MiB':>10}{'base MiB':>10}{'peak-base':>11}{'x layer':>9}")
        for mode, path in (("zooscan-safetensors", st_path), ("zooscan-torch-mmap", pt_path),
                           ("safe_open-per-tensor", st_path), ("load_file-whole", st_path)):
            r = measure(mode, path)
            peak, base = r["peak_kib"] / 1024, r["base_kib"] / 1024
            print(f"{mode:<22}{peak:>10.0f}{base:>10.0f}{peak - base:>11.0f}{(peak - base) / layer_mib:>9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
