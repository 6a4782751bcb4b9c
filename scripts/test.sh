#!/usr/bin/env bash
# Install zooscan with its test extras into .venv, then run the linter and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test,reference
export RAY_AUTH_MODE=disabled HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=2
.venv/bin/ruff check scanner tests bench scripts
.venv/bin/python -m pytest -q -p no:cacheprovider tests
