#!/usr/bin/env bash
# The GPU checks of issue 15 in one command: bench/gpu_esd_check.py (per-shape ESD rate, whole-model ESD of
# ResNet-50 / ViT-B / ViT-L, a measured 7B-class LLM of random Llama-7B-shaped layers drawn on the device)
# and bench/gpu_scan_check.py (zooscan's compute_spectra with device="cuda", full analysis incl. the
# randomization test), then bench/gpu_report.py writes bench/results/gpu_<device>.md with the targets
# (ResNet-50 full ESD <= 0.1 s, ViT-L <= 0.3 s, 7B-class < 30 s). Designed to finish in under 5 minutes on
# an H100/H200 (each step has a timeout; a step that times out is reported, the others still run).
#
# Usage (repository root, a Python with torch + timm + numpy + scipy):
#   bash bench/gpu_check.sh                        # on a CUDA machine
#   DEVICE=cpu TINY=1 bash bench/gpu_check.sh      # CPU smoke run with tiny sizes (tests/test_bench_gpu.py)
# Environment: PYTHON (default: .venv/bin/python if present, else python), OUT (raw outputs; default a
# temporary folder), RESULTS (where gpu_<device>.md goes; default bench/results).
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE="${DEVICE:-cuda}"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
OUT="${OUT:-$(mktemp -d -t zooscan-gpu-XXXXXX)}"
RESULTS="${RESULTS:-bench/results}"
export OUT PYTHONPATH="$PWD" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ -n "${TINY:-}" ]; then
  esd_args=(--tiny)
  scan_args=(--models random:timm/test_resnet --repeats 1 --routes hybrid --no-cpu-reference --randomize)
else
  esd_args=()
  scan_args=(--randomize)
fi
start=$(date +%s)
status=0
timeout "${ESD_TIMEOUT:-170}" "$PYTHON" bench/gpu_esd_check.py --device "$DEVICE" --out "$OUT" "${esd_args[@]}" \
  || { echo "gpu_esd_check failed or timed out (exit $?)"; status=1; }
timeout "${SCAN_TIMEOUT:-100}" "$PYTHON" bench/gpu_scan_check.py --device "$DEVICE" "${scan_args[@]}" \
  || { echo "gpu_scan_check failed or timed out (exit $?)"; status=1; }
"$PYTHON" bench/gpu_report.py "$OUT" --seconds "$(( $(date +%s) - start ))" --results "$RESULTS" || status=1
exit $status
