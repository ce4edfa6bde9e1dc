#!/usr/bin/env bash
# `modelsguard live campaign` on the GPU machine (issue 9 item 6/7): the whole node validation as one
# command, on the routing scenario (two llama-3.1-8b-shaped reference engines sharing one H200 behind
# `modelsguard lb`): per variant `live up`, the built-in calibration ladder (first variant only: one
# (model, GPU, engine) triple), the scenario's run, `live down`; then calibrate, validate, one report.
#
#   OUT=/tmp/out validation/h200/campaign.sh [variant...]     # default: round-robin least-outstanding
#
# A CPU dry run with the tiny shape: LAUNCH='<python> live/reference-engine/server.py --model tiny
# --device cpu ...' RUN_SET='workload.prompt_token_id_range=[1, 1000]' QUICK=0.2 validation/h200/campaign.sh
set -uo pipefail
LABEL=campaign
source "$(dirname "$0")/lib.sh"
machine
S=scenarios/routing-h200-2x-llama8b.toml
variants=("$@")
(( ${#variants[@]} )) || variants=(round-robin least-outstanding)
args=()
for v in "${variants[@]}"; do args+=(--variant "$v"); done
[[ -n ${LAUNCH:-} ]] && args+=(--set "instances.*.launch_command=\"$LAUNCH\"")
[[ -n ${RUN_SET:-} ]] && args+=(--set "$RUN_SET")
[[ -n ${QUICK:-} ]] && args+=(--quick "$QUICK")
[[ -n ${EMULATE:-} ]] && args+=(--emulate)  # no engine at all: the emulator (a wiring check)
log "live campaign $S ${args[*]}"
# The campaign is resumable: a rerun with the same --out skips finished steps. Bounded by the call.
timeout -s INT $(( BUDGET_S + 30 - SECONDS )) \
  "$BIN" live campaign "$S" --out "$W/campaign" --tokens --health-timeout 300 "${args[@]}" > "$W/campaign.stdout" 2>&1
log "  rc=$? ($(tail -1 "$W/campaign.stdout"))"
# Nothing large comes back: the campaign dir minus tokens.csv of the scenario runs is a few MB.
log "done in $SECONDS s"
pack
