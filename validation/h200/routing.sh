#!/usr/bin/env bash
# Routing on one H200 (issue 9 item 7): two llama-3.1-8b-shaped reference engines share the GPU
# behind `modelsguard lb`; the same gamma-bursty request stream under round-robin, queue-aware
# (1 s /metrics polls) and least-outstanding routing. The engines stay up; the LB is restarted per
# policy. Then (time allowing) the reference engine's correctness check on CUDA.
#
#   OUT=/tmp/out validation/h200/routing.sh [quick]
#
# `quick` shortens the load phase (CPU dry run with LAUNCH/RUN_SET, see lib.sh).
# SCEN=<file> another routing scenario (default routing-h200-2x-llama8b.toml); REPS=<n> runs every
# policy n times, in forward then reverse order (ABC CBA ...) so a slow drift of the engines' speed
# weighs on every policy alike (runs after the first are named <policy>-r<k>, or -r<FIRST_REP + k - 1>
# with FIRST_REP); POLICIES='a b' runs only those; DURATION_S=<s> sets every load phase's length (a
# longer stream, so fewer requests decide each percentile); SKIP_CHECK=1 skips the correctness check.
set -uo pipefail
LABEL=${LABEL:-routing}
source "$(dirname "$0")/lib.sh"
machine
S=${SCEN:-scenarios/routing-h200-2x-llama8b.toml}
read -ra POLICIES <<< "${POLICIES:-round-robin queue-aware least-outstanding}"
if [[ -n ${1:-} ]]; then SCALE=(--set 'workload.phases.*.duration_s=8'); else SCALE=(); fi
[[ -n ${DURATION_S:-} && -z ${1:-} ]] && SCALE=(--set "workload.phases.*.duration_s=$DURATION_S")

PORTS="8001 8002" up up "$S" --variant round-robin --no-lb || exit 1
for rep in $(seq "${FIRST_REP:-1}" $(( ${FIRST_REP:-1} + ${REPS:-1} - 1 ))); do
  order=("${POLICIES[@]}")
  if (( rep % 2 == 0 )); then order=(); for p in "${POLICIES[@]}"; do order=("$p" "${order[@]}"); done; fi
  for policy in "${order[@]}"; do
    name=$policy
    (( rep > 1 )) && name=$policy-r$rep
    over_budget "$name" && continue
    lb_extra=()
    [[ -n ${RUN_SET:-} ]] && lb_extra=(--set "$RUN_SET")
    "$BIN" lb "$S" --variant "$policy" --port 8080 "${lb_extra[@]}" > "$W/lb-$name.log" 2>&1 &
    lb=$!
    for _ in $(seq 1 50); do health_all && break; sleep 0.2; done
    run "$name" "$S" --variant "$policy" "${SCALE[@]}"
    kill "$lb" 2>/dev/null; wait "$lb" 2>/dev/null
  done
done
down

# The correctness check on CUDA (flash + CUDA graphs + async, flash eager, paged|sdpa vs generate;
# must pass) and with the injected kernel bug (must fail), each bounded by what is left of the call.
if [[ -z ${1:-} && -z ${SKIP_CHECK:-} ]]; then
  left=$(( BUDGET_S + 40 - SECONDS ))
  if (( left > 60 )); then
    log "check_correctness.py (timeout ${left}s)"
    (cd live/reference-engine && timeout "$left" python3 check_correctness.py) > "$W/check.txt" 2>&1
    log "  exit $? (want 0): $(tail -3 "$W/check.txt" | tr '\n' '|')"
    pack
  fi
  left=$(( BUDGET_S + 40 - SECONDS ))
  if (( left > 40 )); then
    log "check_correctness.py --inject-bug (timeout ${left}s)"
    (cd live/reference-engine && timeout "$left" python3 check_correctness.py --inject-bug) > "$W/check_bug.txt" 2>&1
    log "  exit $? (want 1): $(grep -E 'MISMATCH|PASS|FAIL' "$W/check_bug.txt" | head -3 | tr '\n' '|')"
  fi
fi
log "done in $SECONDS s"
pack
