#!/usr/bin/env bash
# Install zooscan with its test extras into .venv and run the linter and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
# torch/torchvision first: these exact builds are served from local disk (see pyproject.toml pins).
.venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/pip install -q -e ".[test,reference]"
export RAY_AUTH_MODE=disabled HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=2
.venv/bin/ruff check scanner tests bench
.venv/bin/python -m pytest -q -p no:cacheprovider tests
