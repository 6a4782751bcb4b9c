"""A zoo catalog scanned for real (serial, no Ray): ids resolve under ./zoo, the summary counts formats,
kinds and phases, and the ranking joins the scan to the published metric."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from scanner import cli
from scanner.zoo.catalog import load_zoo_catalog
from scanner.zoo.rank import rank_families, scan_values
from scanner.zoo.summary import scan_summary
from tests.test_zoo_fetch import write_catalog, zoo_row


@pytest.mark.slow
def test_scan_summary_and_rank_of_a_small_zoo(tmp_path, monkeypatch):
    from safetensors.numpy import save_file

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    rows = []
    for i, (name, value) in enumerate((("a", 90.0), ("b", 80.0), ("c", 70.0))):
        folder = tmp_path / "zoo" / "registry" / "pk" / "1"
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"l{j}.weight": rng.standard_normal((96 + 8 * i, 64)).astype(np.float32) for j in range(3)}
        save_file(tensors, str(folder / f"{name}.safetensors"))
        digest = hashlib.sha256((folder / f"{name}.safetensors").read_bytes()).hexdigest()
        rows.append(zoo_row("pypi", "pk", "1", f"{name}.safetensors", f"{name}.safetensors", digest,
                            metric="acc", metric_value=str(value), higher_is_better="1", format="safetensors"))
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    rows.append({**zoo_row("pypi", "pk", "1", "bad.onnx", "bad.onnx", "0" * 64), "format": "onnx"})
    (tmp_path / "zoo" / "registry" / "pk" / "1" / "bad.onnx").write_bytes(b"not onnx")
    catalog = load_zoo_catalog(write_catalog(tmp_path / "z.csv", rows))
    ids = [r.model_id for r in catalog]
    code = cli.main(["scan", "--models", *ids, "--results", "res", "--scan-id", "s", "--serial",
                     "--max-failed-fraction", "1", "--no-randomize"])
    assert code == 0
    text = scan_summary(catalog, "res", "s")
    assert "| safetensors | 3 | 3 | 0 |" in text
    assert "| onnx | 1 | 0 | 1 |" in text
    assert "| linear | 9 | 9 | 0 |" in text
    ranked = rank_families(catalog, scan_values("res", "alpha_hat"))
    assert [r.published for r in sorted(ranked[("tiny", "")], key=lambda r: r.rank_by_published)] == [90, 80, 70]
