#!/usr/bin/env bash
# The main job: install zooscan into .venv, scan the real zoo of ../shared (CIFAR-10 ResNets, MAX78000 nets)
# on an embedded local Ray into results/, then rank the models by alpha-hat beside their published accuracy,
# correlate every metric with accuracy, and write an HTML report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh plot
export RAY_AUTH_MODE=disabled HF_HUB_OFFLINE=1
.venv/bin/zooscan scan cifar10_resnet --results results --scan-id shared-zoo-cifar10
.venv/bin/zooscan scan ai8x_maxim --results results --scan-id shared-zoo-ai8x
.venv/bin/zooscan query status_overview --results results
.venv/bin/zooscan query rank_models --results results --param metric=alpha_hat
.venv/bin/zooscan query metric_accuracy_correlation --results results --param min_models=4
.venv/bin/zooscan report results/shared-zoo-cifar10 --output results/shared-zoo-cifar10/report.html
