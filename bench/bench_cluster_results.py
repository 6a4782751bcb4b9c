"""Where results are written on a Ray scan: by the driver (results travel back) or by the fit task on its node.

Same executor (``scanner.distributed.RayExecutor`` on a local Ray), same models, same loop; the only
difference is who writes the three Parquet files of a model:

- ``driver``: the fit task returns the ``ModelScan`` record (eigenvalues included) and the driver writes
  on ``scanner.runner.WRITER_THREADS`` writer threads beside its scheduling loop (what ``zooscan scan``
  does, ``scanner.runner._Writer``: nodes need no shared filesystem);
- ``node``: the fit task writes the files where it runs and returns only the model id (the old design; it
  needs a filesystem every node shares).

Usage: ``python bench/bench_cluster_results.py [N_MODELS] [NUM_CPUS] [ROUNDS]``; prints one line per run and
writes nothing else: wall time, and CPU time (user + system, from /proc) of the driver process alone and of the
driver plus every Ray process under it (GCS, raylet, actors, fit workers), per model, over the timed loop. Models: N small safetensors MLPs (Linear 256-192-128-64-10, randomize off).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from scanner import distributed
from scanner.config import ScanConfig
from scanner.runner import WRITER_THREADS
from scanner.store import ResultStore

CONFIG = ScanConfig(randomize=False)


def write_models(folder: Path, count: int) -> list[str]:
    from safetensors.numpy import save_file

    widths = (256, 192, 128, 64, 10)
    ids = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        tensors = {f"fc{i}.weight": rng.standard_normal((o, n)).astype(np.float32)
                   for i, (n, o) in enumerate(zip(widths[:-1], widths[1:], strict=True))}
        path = folder / f"m{seed:04d}.safetensors"
        save_file(tensors, str(path))
        ids.append(f"file:{path}")
    return ids


def node_side_fit(root: str, scan_id: str):
    """A fit task that writes the model's files where it runs (needs shared storage) and returns its id."""

    def fit_and_write(output, config, faults, fault_dir):
        from scanner.scan import finish_scan

        store = ResultStore(root, scan_id)
        store._config_hash = config.config_hash()  # the driver opened the scan; this node only writes
        scan = finish_scan(output.spectra, config)
        store.write_model(scan.model, scan.layers, scan.spectra, host=output.host, device=output.device)
        return scan.model.model_id

    return fit_and_write


def cpu_seconds(root: int) -> dict[int, float]:
    """User + system CPU seconds of ``root`` and of every live process below it (from /proc/<pid>/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = {}, [root]
    while stack:
        pid = stack.pop()
        if pid in stats:
            found[pid] = stats[pid][1]
        stack.extend(children.get(pid, []))
    return found


def run(mode: str, models: list[str], num_cpus: int, results: str) -> tuple[float, float, float]:
    """(wall s, driver CPU s, driver + Ray processes CPU s) of the timed loop."""
    import ray

    scan_id = f"bench-{mode}"
    store = ResultStore(results, scan_id)
    store.open_scan(CONFIG, {}, {})
    executor = distributed.RayExecutor(CONFIG, num_cpus=num_cpus)
    executor.start(len(models))
    if mode == "node":
        executor._fit = ray.remote(node_side_fit(results, scan_id)).options(num_cpus=distributed.FIT_CPUS)
    while sum(a.info is not None for a in executor.actors) < len(executor.actors) or not executor.actors:
        executor.wait(1.0)  # actors up before the clock starts: both modes pay the same start-up
    queue = list(models)
    tree_before = cpu_seconds(os.getpid())
    driver_before = time.process_time()
    started = time.perf_counter()
    done = 0
    writes = []
    with ThreadPoolExecutor(WRITER_THREADS) as writer:
        while queue or executor.in_flight():
            while queue and executor.free_slots() > 0:
                executor.submit(queue.pop())
            for outcome in executor.wait(1.0):
                if mode == "driver":
                    scan = outcome.scan
                    writes.append(writer.submit(store.write_model, scan.model, scan.layers, scan.spectra,
                                                host=outcome.host, device=outcome.device))
                done += 1
    for write in writes:
        write.result()
    seconds = time.perf_counter() - started
    driver_cpu = time.process_time() - driver_before
    tree_after = cpu_seconds(os.getpid())
    tree_cpu = sum(cpu - tree_before.get(pid, 0.0) for pid, cpu in tree_after.items())
    executor.close()
    store.close()
    assert done == len(models) and len(store.done_keys()) == len(models)
    return seconds, driver_cpu, tree_cpu


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    num_cpus = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    with tempfile.TemporaryDirectory(prefix="zbench") as tmp:
        models = write_models(Path(tmp), count)
        print(f"{count} models (Linear 256-192-128-64-10, randomize off), local Ray {num_cpus} CPUs, "
              f"load {os.getloadavg()[0]:.1f}")
        for round_ in range(rounds):
            for mode in ("driver", "node"):
                seconds, driver_cpu, tree_cpu = run(mode, models, num_cpus, f"{tmp}/results-{round_}")
                print(f"round {round_ + 1} {mode:6s}: {seconds:6.1f} s, {1000 * seconds / count:6.1f} ms/model wall, "
                      f"CPU {1000 * driver_cpu / count:5.1f} ms/model driver, {1000 * tree_cpu / count:5.1f} ms/model "
                      f"driver + Ray, load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
