#!/usr/bin/env bash
# The safety campaign of issue 8: fresh seeds over 3, 5 and 9 nodes and every profile of
# harepl's own policy (default, fast, async). Usage: bench/fuzz-campaign.sh START PER_RUN [JOBS]
# NODES="3 5 9" and PROFILES="fast default async" (the defaults) narrow a run.
# Each (nodes, profile) pair runs seeds START..START+PER_RUN-1; results append to
# bench/results/fuzz-campaign.txt with the command, the load average and the date.
set -euo pipefail
cd "$(dirname "$0")/.."
start=${1:?first seed}; per=${2:?seeds per run}; jobs=${3:-2}
out=bench/results/fuzz-campaign.txt; mkdir -p bench/results
for nodes in ${NODES:-3 5 9}; do
  for profile in ${PROFILES:-fast default async}; do
    cmd="harepl sim fuzz --seeds $per --start $start --nodes $nodes --profile $profile --jobs $jobs --keep fuzz-failures"
    # a run with failures exits non-zero: record it and go on with the next one
    rc=0; said=$(.venv/bin/$cmd) || rc=$?
    echo "$(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) | $cmd | exit $rc | $(tail -1 <<<"$said")" | tee -a "$out"
  done
done
