#!/usr/bin/env bash
# Colocation on one H200 (issue 9 items 5 and 7), in order of priority:
#  1. ladder, async batching on: a llama-8B probe (4 closed-loop streams) and a qwen-7B co-tenant
#     whose load climbs (idle, 1, 4, 16, 64 streams, light open loop), run at the same time;
#  2. two engines, staggered then overlapping bursts (scenarios/coloc-h200-bursts.toml);
#  3. ladder again with the engines' async batching off (--no-async-batching);
#  4. three engines (llama-8B, qwen-7B, a second llama-shaped model), staggered and overlapping bursts.
# Every engine's step log comes back with each run (GET /steps), the raw material of the
# contention fit.
#
#   OUT=/tmp/out validation/h200/coloc.sh [quick]
set -uo pipefail
LABEL=coloc
source "$(dirname "$0")/lib.sh"
machine
LADDER=scenarios/coloc-h200-ladder.toml
B2=scenarios/coloc-h200-bursts.toml
B3=scenarios/coloc-h200-three-bursts.toml
if [[ -n ${1:-} ]]; then PHASE=4; else PHASE=${PHASE_S:-15}; fi
DUR=(--set "workload.phases.*.duration_s=$PHASE")

ladder() { # ladder <suffix>: probe and co-tenant at once, each sent straight to its engine
  over_budget "ladder$1" && return 0
  run "probe$1" "$LADDER" --variant probe --direct 127.0.0.1 "${DUR[@]}" &
  local probe=$!
  run "ladder$1" "$LADDER" --variant ladder --direct 127.0.0.1 "${DUR[@]}"
  wait "$probe"
}

PORTS="8001 8002" up up-on "$LADDER" --variant ladder --no-lb || exit 1
ladder ""
for v in staggered overlapping; do
  run "two-$v" "$B2" --variant "$v" --direct 127.0.0.1 "${DUR[@]}"
done
down

if ! over_budget "async-off ladder"; then
  off=$(grep -m1 '^launch_command' "$LADDER" | sed 's/^launch_command = "\(.*\)"$/\1/')
  [[ -n ${LAUNCH:-} ]] && off=$LAUNCH
  LAUNCH="$off --no-async-batching" PORTS="8001 8002" up up-off "$LADDER" --variant ladder --no-lb && { ladder "-sync"; down; }
fi

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
