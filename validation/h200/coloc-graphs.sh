#!/usr/bin/env bash
# Colocation on one H200 with CUDA graphs (issue 9 item 7): two engines (llama-3.1-8b- and
# qwen2.5-7b-shaped), then three (and a second llama-shaped model), each replaying CUDA graphs over
# a 512-block cache, under staggered and overlapping bursts; every request sent straight to its
# engine. Every engine's step log comes back with each run (GET /steps).
#
#   OUT=/tmp/out validation/h200/coloc-graphs.sh [quick]
#
# PHASE_S (default 15) is each burst phase's length. lib.sh has the other knobs.
set -uo pipefail
LABEL=${LABEL:-coloc-graphs}
source "$(dirname "$0")/lib.sh"
machine
B2=scenarios/coloc-h200-bursts-graphs.toml
B3=scenarios/coloc-h200-three-bursts-graphs.toml
if [[ -n ${1:-} ]]; then PHASE=4; else PHASE=${PHASE_S:-15}; fi
DUR=(--set "workload.phases.*.duration_s=$PHASE")

PORTS="8001 8002" up up-two "$B2" --variant staggered --no-lb && {
  for v in staggered overlapping; do
    run "two-$v" "$B2" --variant "$v" --direct 127.0.0.1 "${DUR[@]}"
  done
  down
}
if ! over_budget "three engines"; then
  PORTS="8001 8002 8003" up up-three "$B3" --variant staggered --no-lb && {
    for v in staggered overlapping; do
      run "three-$v" "$B3" --variant "$v" --direct 127.0.0.1 "${DUR[@]}"
    done
    down
  }
fi
log "done in $SECONDS s"
pack
