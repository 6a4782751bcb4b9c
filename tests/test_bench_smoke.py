"""Smoke runs of the benchmark code (bench/) on tiny inputs, so that CI catches breakage. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def vs_ww() -> ModuleType:
    return _load("bench_vs_weightwatcher")


@pytest.fixture(scope="module")
def layers_bench() -> ModuleType:
    return _load("bench_layers")


def test_layer_key_drops_data_parallel_prefix_and_weight_suffix(vs_ww: ModuleType) -> None:
    assert vs_ww.layer_key("module.layer1.0.conv1.weight") == "layer1.0.conv1"
    assert vs_ww.layer_key("blocks.0.attn.qkv.q") == "blocks.0.attn.qkv.q"


def test_alpha_agreement_on_known_differences(vs_ww: ModuleType) -> None:
    ww = {"a": 2.0, "b": 3.0, "c": 4.0, "fused": 5.0, "failed": None}
    zoo = {"a": 2.0, "b": 3.5, "c": 3.0, "q": 1.0, "failed": 2.0}
    agree = vs_ww.alpha_agreement(ww, zoo)
    assert agree["matched"] == 3
    assert agree["only_ww"] == 1 and agree["only_zoo"] == 1 and agree["alpha_none"] == 1
    assert agree["max_abs"] == pytest.approx(1.0) and agree["median_abs"] == pytest.approx(0.5)
    assert agree["worst_layer"] == "c"


def test_report_prints_ratios_and_flags_different_weights(vs_ww: ModuleType) -> None:
    def row(tool: str, mode: str, seconds: float, peak: float, digest: str) -> dict:
        return {"case": "m", "group": "model", "tool": tool, "mode": mode, "seconds": [seconds],
                "median_s": seconds, "peak_mib": peak, "digest": digest, "n_analysed": 2,
                "alphas": {"x": 2.0, "y": 3.0 if tool == "ww" else 3.25}}

    rows = {("m", "ww", "default"): row("ww", "default", 8.0, 40.0, "d1"),
            ("m", "zoo", "default"): row("zoo", "default", 2.0, 10.0, "d2"),
            ("m", "ww", "full"): row("ww", "full", 100.0, 80.0, "d1"),
            ("m", "zoo", "full"): row("zoo", "full", 1.0, 20.0, "d1")}
    text = "\n".join(vs_ww.report_lines({"cpu": "test"}, rows))
    assert "| m | 8.000 (1) | 2.000 (1) | 4.0× | 100.000 (1) | 1.000 (1) | 100.0× | yes |" in text
    assert "| m | 40.0 | 10.0 | 4.0× | 80.0 | 20.0 | 4.0× |" in text
    assert "| 0.250 | 0.125 | y | NO |" in text  # max, median |Δα|, worst layer, digests differ


@pytest.mark.reference
def test_measure_both_tools_on_a_tiny_model_same_layers_and_alpha(vs_ww: ModuleType) -> None:
    case = vs_ww.cases()["tiny"]
    ww = vs_ww.measure(case, "ww", "default", repeats=1, slow=0.0)
    zoo = vs_ww.measure(case, "zoo", "default", repeats=1, slow=0.0)
    assert set(ww["alphas"]) == set(zoo["alphas"]) == {"0", "2", "3"}  # Conv2d and two Linear layers
    assert ww["digest"] == zoo["digest"]
    assert len(ww["seconds"]) == 1 and ww["peak_mib"] is not None
    agree = vs_ww.alpha_agreement(ww["alphas"], zoo["alphas"])
    assert agree["matched"] == 3 and agree["max_abs"] < 1e-6  # reference mode reproduces the tool's α


@pytest.mark.reference
def test_child_subprocess_writes_one_result_row(vs_ww: ModuleType, tmp_path: Path) -> None:
    row = vs_ww.run_child("resnet20_cifar10", "ww", "default", threads=1, repeats=1, slow=0.0, timeout=600,
                          workdir=tmp_path)
    assert "error" not in row, row
    assert row["n_analysed"] == 20 and row["threads"] == 1  # 19 convs + the classifier of ResNet-20
    assert "layer1.0.conv1" in row["alphas"]


@pytest.mark.reference
@pytest.mark.parametrize(("shape", "evals"), [("256x128", 128), ("conv16x3", 144)])
def test_esd_primitive_agrees_with_the_reference_svd(layers_bench: ModuleType, shape: str, evals: int) -> None:
    row = layers_bench.bench_shape(shape, repeats=1, slow=0.0)
    assert row["evals"] == evals
    assert row["rel_err"] < 1e-12


def test_gpu_esd_check_runs_on_cpu_quick(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OUT": str(tmp_path), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_esd_check.py"), "--device", "cpu", "--quick"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "gpu_esd_check.json").read_text())
    assert result["accuracy"] < 1e-10
    assert [m["model"] for m in result["models"]] == ["resnet18", "vit_tiny_patch16_224"]
    assert all(m["matrices"] > 0 and m["batched_s"] > 0 for m in result["models"])
    assert {(r["n"], r["m"]): r["count"] for r in result["llm"]["shapes"]} == {(256, 256): 128, (512, 256): 96,
                                                                             (1024, 256): 2}
    assert "TOY LLM" in (tmp_path / "gpu_esd_check.txt").read_text()
    assert np.isfinite(result["fp64_flops"]) and result["fp64_flops"] > 0


def test_throughput_bench_runs_one_serial_setting() -> None:
    """bench_throughput.py end to end on two small models, serially (it broke once when helpers moved)."""
    throughput = _load("bench_throughput")
    assert any(line.startswith("python ") and "numpy" in line for line in throughput.machine_lines())
    from scanner.config import ScanConfig

    line = throughput.run_setting("serial", ["random:timm/resnet10t", "random:timm/resnet14t"],
                                  ScanConfig(randomize=False), None)
    assert "ok 2" in line and "models/min" in line


def test_gpu_scan_check_runs_both_routes_on_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OUT": str(tmp_path), "OMP_NUM_THREADS": "2",
           "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_scan_check.py"), "--device", "cpu",
                           "--models", "random:timm/resnet10t", "--repeats", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "gpu_scan_check.json").read_text())
    assert [m["route"] for m in result["models"]] == ["hybrid", "device"]
    assert all(m["status"] == "ok" and m["layers_analysed"] > 10 for m in result["models"])
    assert result["layer_threads"] == 2
