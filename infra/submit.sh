#!/usr/bin/env bash
# Submit one zooscan scan to a running Ray cluster as a Ray job (needs `pip install "ray[default]==2.60.0"`
# on this machine). Usage: infra/submit.sh http://<head>:8265 <scan_id> <catalog> [extra zooscan scan options]
set -euo pipefail
address="$1"; scan_id="$2"; catalog="$3"; shift 3
# A reused --submission-id is refused by Ray, so the same scan cannot be launched twice by accident.
ray job submit --address "$address" --submission-id "zooscan-${scan_id}" --no-wait \
  --runtime-env-json '{"env_vars": {"OMP_NUM_THREADS": "1"}}' \
  -- zooscan scan "$catalog" --results /results --scan-id "$scan_id" --address auto "$@"
echo "follow with: ray job logs --address $address -f zooscan-${scan_id}"
