#!/usr/bin/env bash
# Submit a zooscan scan to a running Ray cluster as a Ray job, or resume one.
#
#   infra/submit.sh ADDRESS SCAN_ID CATALOG [zooscan scan options...]   first submission
#   infra/submit.sh ADDRESS SCAN_ID --resume                            same scan, same options, again
#
# ADDRESS is the dashboard (http://127.0.0.1:8265 after `ray dashboard infra/ray/aws.yaml` or
# `kubectl port-forward svc/zooscan-head-svc 8265:8265`). Needs `pip install "ray[default]==2.60.0"` here.
# Results default to $ZOOSCAN_RESULTS (an object store on cloud clusters, e.g. s3://my-bucket/zooscan); pass
# --results to override. The options of the first submission are saved in
# ${ZOOSCAN_SUBMISSIONS:-$HOME/.zooscan/submissions}/SCAN_ID.args; --resume submits the same command again, and
# the scan skips every committed model (--retry-failed among the options also redoes failed ones). Each attempt
# gets its own Ray submission id (zooscan-SCAN_ID-<UTC time>), since Ray refuses a reused one. A second
# submission of SCAN_ID with different options is refused: results of one scan id share one configuration.
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ $# -ge 3 ]] || usage
address="$1"; scan_id="$2"; shift 2
[[ "$scan_id" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "error: scan id '$scan_id' must be [A-Za-z0-9._-]+" >&2; exit 2; }
saved_dir="${ZOOSCAN_SUBMISSIONS:-$HOME/.zooscan/submissions}"
saved="$saved_dir/$scan_id.args"

if [[ "$1" == "--resume" ]]; then
  [[ $# -eq 1 ]] || { echo "error: --resume takes no other options (they are the saved ones)" >&2; exit 2; }
  [[ -f "$saved" ]] || { echo "error: no saved submission for scan '$scan_id' in $saved_dir" >&2; exit 1; }
  args=(); while IFS= read -r -d '' arg; do args+=("$arg"); done < "$saved"   # bash 3.2 (macOS) has no mapfile -d
else
  args=("$@")
  if [[ " ${args[*]} " != *" --results "* ]]; then
    [[ -n "${ZOOSCAN_RESULTS:-}" ]] || {
      echo "error: give --results (s3://bucket/prefix, /results) or set ZOOSCAN_RESULTS" >&2; exit 2; }
    args+=(--results "$ZOOSCAN_RESULTS")
  fi
  mkdir -p "$saved_dir"
  if [[ -f "$saved" ]] && ! printf '%s\0' "${args[@]}" | cmp -s - "$saved"; then
    echo "error: scan '$scan_id' was submitted with other options ($(tr '\0' ' ' < "$saved")); resume it with" \
         "'$0 $address $scan_id --resume' or choose a new scan id" >&2
    exit 1
  fi
  printf '%s\0' "${args[@]}" > "$saved"
fi

submission="zooscan-${scan_id}-$(date -u +%Y%m%dT%H%M%SZ)"
ray job submit --address "$address" --submission-id "$submission" --no-wait \
  --runtime-env-json '{"env_vars": {"OMP_NUM_THREADS": "1"}}' \
  -- zooscan scan "${args[@]}" --scan-id "$scan_id" --address auto
echo "submitted $submission; follow with: ray job logs --address $address -f $submission"
echo "resume after a failure or a stop with: $0 $address $scan_id --resume"
