#!/usr/bin/env bash
# One whole GPU experiment for one model shape, run on the device machine (one H200):
#   start the reference engine through `live up`, the calibration run, the held-out runs,
#   `live down`, the engine's whole step log (GET /steps), then pack every run dir, engine log
#   and step log into $OUT/<label>.tgz.
#
# Usage (repository root, x86-64 release binary in .bin/):
#   OUT=/tmp/out validation/h200/experiment.sh <calibration scenario> <validation scenario> <label> [quick]
#
# `quick` shortens every phase (for a CPU dry run with the tiny shape; see validation/README.md).
# CAP=<req/s> skips the calibration run and the ladder and uses that capacity for the open-loop
# runs; ONLY="gamma-60" (space-separated run names) runs only those. lib.sh has the other knobs.
# The held-out loads: a closed-loop ladder, then open-loop Poisson at 30%, 60% and 90% of the
# capacity measured by the ladder's highest rung, and a gamma-bursty load at 60%. Nothing of the
# held-out runs is used by `calibrate`.
set -uo pipefail

CAL=${1:?calibration scenario}
VAL=${2:?validation scenario}
LABEL=${3:?label}
QUICK=${4:-}
source "$(dirname "$0")/lib.sh"
machine
if [[ -n $QUICK ]]; then SCALE=(--set 'workload.phases.*.duration_s=8'); else SCALE=(); fi

want() { [[ -z ${ONLY:-} || " $ONLY " == *" $1 "* ]]; }  # is run $1 asked for?

up up "$CAL" || exit 1
if [[ -z ${CAP:-} ]]; then
  want calibration && run calibration "$CAL" "${SCALE[@]}"
  for c in 4 16 64; do
    want "closed-$c" && run "closed-$c" "$VAL" --variant closed-ladder --set "workload.phases.0.arrival={ process = \"closed_loop\", concurrency = $c }" "${SCALE[@]}"
  done
  # Capacity: completed requests per second at the ladder's top rung (64 streams).
  CAP=$(python3 - "$W/closed-64/requests.csv" <<'EOF2'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["status"] == "ok"]
t0 = min(float(r["send_s"]) for r in rows); t1 = max(float(r["end_s"]) for r in rows)
print(f"{len(rows) / (t1 - t0):.3f}")
EOF2
  )
fi
log "capacity (closed loop, top rung): $CAP req/s"
for pct in 30 60 90; do
  rate=$(python3 -c "print(round($CAP * $pct / 100, 3))")
  want "poisson-$pct" && run "poisson-$pct" "$VAL" --variant poisson --set "workload.phases.0.arrival={ process = \"poisson\", rate = $rate }" "${SCALE[@]}"
done
rate=$(python3 -c "print(round($CAP * 0.6, 3))")
want gamma-60 && run gamma-60 "$VAL" --variant gamma --set "workload.phases.0.arrival={ process = \"gamma\", rate = $rate, burstiness = 0.5 }" "${SCALE[@]}"
down
log "done in $SECONDS s"
pack
