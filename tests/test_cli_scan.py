"""``zooscan scan`` (serial, no Ray here) and ``zooscan analyze`` through the real CLI entry point."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from scanner.cli import main
from tests.test_distributed import models_table, write_corrupt, write_mlp

ZOO = Path(__file__).resolve().parents[2] / "shared" / "zoo" / "akamaster_resnet_cifar10"
RESNET20 = ZOO / "resnet20-12fca82f.th"


def test_scan_serial_writes_rows_manifest_and_resumes(tmp_path, capsys):
    models = [write_mlp(tmp_path / "a.safetensors", 0), write_corrupt(tmp_path / "bad.safetensors")]
    argv = ["scan", "--models", *models, "--results", str(tmp_path / "res"), "--serial", "--no-randomize",
            "--seed", "3"]
    assert main(argv) == 3  # a model failed and --max-failed-fraction is 0
    out = capsys.readouterr().out
    assert "1 ok, 1 failed, 0 already done" in out and out.count("\n") == 1  # one summary line on stdout
    (scan_dir,) = (tmp_path / "res").iterdir()
    assert scan_dir.name.startswith("scan-")  # derived from options and models: a rerun finds it
    manifest = json.loads((scan_dir / "scan.json").read_text())
    assert manifest["config"]["seed"] == 3 and manifest["config"]["randomize"] is False
    assert set(manifest["host"]["versions"]) >= {"zooscan", "torch", "ray", "numpy"}
    assert manifest["host"]["cpu_count"] >= 1 and manifest["host"]["hostname"]
    assert manifest["stats"]["ok"] == 1 and manifest["stats"]["failed"] == 1 and manifest["finished_at"]
    rows = models_table(tmp_path / "res", scan_dir.name)
    assert rows[models[1]]["status"] == "failed"
    assert main(argv) == 3  # the failed row still counts on resume, and the summary says so
    assert "0 ok, 0 failed (+1 failed earlier), 2 already done" in capsys.readouterr().out
    assert main([*argv, "--max-failed-fraction", "0.5"]) == 0


def test_scan_reads_a_catalog_and_an_explicit_scan_id(tmp_path, capsys):
    catalog = tmp_path / "cat.csv"
    with open(catalog, "w", newline="") as handle:
        csv.writer(handle).writerows([["model_id", "family", "dataset"], [write_mlp(tmp_path / "m.safetensors", 1),
                                                                          "mlp", ""]])
    assert main(["scan", str(catalog), "--results", str(tmp_path / "r"), "--scan-id", "mine", "--serial",
                 "--no-randomize"]) == 0
    assert (tmp_path / "r" / "mine" / "models").is_dir()
    assert json.loads((tmp_path / "r" / "mine" / "scan.json").read_text())["catalog"]["n_models"] == 1


def test_scan_usage_errors_name_the_fix(tmp_path, capsys):
    assert main(["scan", "--results", str(tmp_path)]) == 1
    assert "give a catalog or --models" in capsys.readouterr().err
    assert main(["scan", "--models", "x:y", "--results", str(tmp_path), "--scan-id", "1bad", "--serial"]) == 1
    assert "scan_id must start with a letter" in capsys.readouterr().err


def test_scan_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    text = capsys.readouterr().out
    assert "--timeout-per-model" in text and "examples:" in text and "--retry-failed" in text
    assert "--wait-for-gpus" in text and "--max-failed-fraction" in text


@pytest.mark.skipif(not RESNET20.exists(), reason="../shared/zoo is not beside the repository")
def test_analyze_prints_a_layer_table_and_writes_csv(tmp_path, capsys):
    out_csv = tmp_path / "layers.csv"
    assert main(["analyze", f"file:{RESNET20}", "--no-randomize", "--csv", str(out_csv)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["layer", "kind", "matrix", "alpha", "phase", "status"]
    analysed = [line.split() for line in lines[1:] if line.endswith("  ok")]
    assert len(analysed) == 20  # ResNet-20: 19 convolutions + the classifier
    assert {cells[1] for cells in analysed} == {"conv2d", "linear"} and all(len(cells) == 6 for cells in analysed)
    assert any(line.startswith("model file:") and ": ok" in line for line in lines)
    with open(out_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    ok = [row for row in rows if row["status"] == "ok"]
    assert len(ok) == 20 and all(1.0 < float(row["alpha"]) < 20.0 for row in ok)


def test_analyze_a_corrupt_file_exits_1_with_the_reason(tmp_path, capsys):
    assert main(["analyze", write_corrupt(tmp_path / "bad.safetensors")]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: file:") and "not a valid .safetensors" in captured.err


def test_a_short_scan_without_serial_finishes_in_the_driver_without_starting_ray(tmp_path):
    import subprocess
    import sys

    models = [write_mlp(tmp_path / f"m{i}.safetensors", i) for i in range(3)]
    code = ("import sys; from scanner.cli import main; code = main(sys.argv[1:]); "
            "print('ray imported' if 'ray' in sys.modules else 'ray not imported'); raise SystemExit(code)")
    run = subprocess.run([sys.executable, "-c", code, "-v", "scan", "--models", *models, "--results",
                          str(tmp_path / "r"), "--scan-id", "short", "--no-randomize"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ray not imported" in run.stdout  # no Ray start, not even its import
    assert "the local Ray was not started" in run.stderr
    manifest = json.loads((tmp_path / "r" / "short" / "scan.json").read_text())
    assert manifest["stats"]["runner"] == "serial" and manifest["stats"]["ok"] == 3
