#!/usr/bin/env bash
# Create .venv and install zooscan with the given extras (default: none), e.g. `bash scripts/install.sh test,reference`.
# torch/torchvision come first: these exact builds are served from local disk (pyproject.toml pins torch<=2.14.1).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/pip install -q -e ".${extras:+[$extras]}"
