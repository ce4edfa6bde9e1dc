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
# The held-out loads: a closed-loop ladder, then open-loop Poisson at 30%, 60% and 90% of the
# capacity measured by the ladder's highest rung, and a gamma-bursty load at 60%. Nothing of the
# held-out runs is used by `calibrate`.
set -uo pipefail

CAL=${1:?calibration scenario}
VAL=${2:?validation scenario}
LABEL=${3:?label}
QUICK=${4:-}
BIN=${MODELSGUARD_BIN:-.bin/modelsguard}
OUT=${OUT:-/tmp/mg-out}
W=/tmp/mg-work/$LABEL
mkdir -p "$W" "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$W/experiment.log"; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || echo "no nvidia-smi";
  python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))';
  nproc; uname -a; } > "$W/machine.txt" 2>&1
log "machine: $(head -2 "$W/machine.txt" | tail -1)"

BUDGET_S=${BUDGET_S:-545}  # skip runs that start after this many seconds (the device's 600 s limit)
run() { # run <name> <scenario> [extra live-run args...]
  local name=$1 scen=$2; shift 2
  if (( SECONDS > BUDGET_S )); then log "skip $name: ${SECONDS}s > ${BUDGET_S}s"; return 0; fi
  log "live run $name: $*"
  local extra=()
  [[ -n ${RUN_SET:-} ]] && extra=(--set "$RUN_SET")  # RUN_SET (optional): one more --set for every run
  "$BIN" live run "$scen" --tokens --no-report --out "$W/$name" "$@" "${extra[@]}" > "$W/$name.stdout" 2>&1
  local rc=$?
  tar czf "$OUT/$LABEL.tgz" -C /tmp/mg-work "$LABEL" 2>/dev/null  # what is done so far survives a kill
  log "  rc=$rc; $(grep -E '^  (all|[a-z0-9.-]+ ) ' "$W/$name.stdout" | head -3 | tr -s ' ' | tr '\n' '|')"
}

up() { # up <scenario> [variant args]
  log "live up $*"
  # LAUNCH (optional): replaces every instance's launch command, e.g. the tiny shape on CPU for a dry run.
  local extra=()
  [[ -n ${LAUNCH:-} ]] && extra=(--set "instances.*.launch_command=\"$LAUNCH\"")
  "$BIN" live up "$@" "${extra[@]}" --run-dir "$W/up" > "$W/up.stdout" 2>&1 &
  UP_PID=$!
  for _ in $(seq 1 600); do
    if python3 -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:8080/health", timeout=2)' 2>/dev/null; then
      log "  up after $SECONDS s"; tar czf "$OUT/$LABEL.tgz" -C /tmp/mg-work "$LABEL" 2>/dev/null; return 0
    fi
    if ! kill -0 $UP_PID 2>/dev/null; then log "  live up exited:"; tail -30 "$W/up.stdout"; return 1; fi
    (( SECONDS % 30 == 0 )) && tar czf "$OUT/$LABEL.tgz" -C /tmp/mg-work "$LABEL" 2>/dev/null
    sleep 1
  done
  log "  live up did not come up"; return 1
}

down() {
  log "live down"
  "$BIN" live down --run-dir "$W/up" >> "$W/up.stdout" 2>&1
  wait $UP_PID 2>/dev/null
}

if [[ -n $QUICK ]]; then SCALE=(--set 'workload.phases.*.duration_s=8'); else SCALE=(); fi

up "$CAL" || { tar czf "$OUT/$LABEL.tgz" -C /tmp/mg-work "$LABEL"; exit 1; }
run calibration "$CAL" "${SCALE[@]}"
for c in 4 16 64; do
  run "closed-$c" "$VAL" --variant closed-ladder --set "workload.phases.0.arrival={ process = \"closed_loop\", concurrency = $c }" "${SCALE[@]}"
done
# Capacity: completed requests per second at the ladder's top rung (64 streams).
CAP=$(python3 - "$W/closed-64/requests.csv" <<'EOF2'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["status"] == "ok"]
t0 = min(float(r["send_s"]) for r in rows); t1 = max(float(r["end_s"]) for r in rows)
print(f"{len(rows) / (t1 - t0):.3f}")
EOF2
)
log "capacity (closed loop, top rung): $CAP req/s"
for pct in 30 60 90; do
  rate=$(python3 -c "print(round($CAP * $pct / 100, 3))")
  run "poisson-$pct" "$VAL" --variant poisson --set "workload.phases.0.arrival={ process = \"poisson\", rate = $rate }" "${SCALE[@]}"
done
rate=$(python3 -c "print(round($CAP * 0.6, 3))")
run gamma-60 "$VAL" --variant gamma --set "workload.phases.0.arrival={ process = \"gamma\", rate = $rate, burstiness = 0.5 }" "${SCALE[@]}"
python3 -c 'import urllib.request as u; open("'"$W"'/steps-all.csv","wb").write(u.urlopen("http://127.0.0.1:8001/steps", timeout=30).read())' || log "no /steps"
down
log "done in $SECONDS s"
tar czf "$OUT/$LABEL.tgz" -C /tmp/mg-work "$LABEL"
