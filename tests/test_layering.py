"""Imports point down only: the numerical core loads no framework, no storage, no cluster code."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "ray", "pyarrow", "duckdb", "timm", "transformers")

RULES = {
    "scanner.records": HEAVY + ("numpy",),
    "scanner.errors": HEAVY + ("numpy",),
    "scanner.config": HEAVY + ("numpy",),
    "scanner.spectra.esd": HEAVY,
    "scanner.spectra.mp": HEAVY,
    "scanner.spectra.powerlaw": HEAVY,
    "scanner.spectra.csn": HEAVY,
    "scanner.spectra.layer": HEAVY,
    "scanner.phases": HEAVY,
    "scanner.summary": HEAVY,
    "scanner.schema": ("torch", "ray", "duckdb", "timm", "transformers"),
    "scanner.store": ("torch", "ray", "duckdb", "timm", "transformers"),
    "scanner.scan": ("ray", "pyarrow", "duckdb"),
    "scanner.cli": HEAVY,
}


@pytest.mark.parametrize(("module", "forbidden"), sorted(RULES.items()))
def test_module_does_not_load_forbidden_packages(module, forbidden):
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        f"print(','.join(p for p in {forbidden!r} if p in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"importing {module} loaded {loaded}"


def test_only_distributed_imports_ray():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "scanner"
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path.name != "distributed.py" and ("import ray" in path.read_text() or "from ray" in path.read_text())
    ]
    assert offenders == []
