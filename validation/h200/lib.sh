# Shared by the device-machine experiment scripts (experiment.sh, routing.sh, coloc.sh): logging,
# `live up` / `live down`, one `live run` under a time budget, packing what is done into $OUT.
# The caller sets LABEL (the experiment's folder name) before sourcing; W is its work dir.
#   BIN       the modelsguard binary (default .bin/modelsguard, an x86-64 release build)
#   OUT       where the packed results go (the device's $OUT)
#   BUDGET_S  skip a run that would start after this many seconds (the device's 600 s per call)
#   LAUNCH    (optional) replaces every instance's launch command: the tiny shape on CPU for a dry run
#   RUN_SET   (optional) more --set for every run, ';'-separated, e.g. the tiny shape's token-id range
#   UP_SET    (optional) more --set for `live up`, ';'-separated
BIN=${MODELSGUARD_BIN:-.bin/modelsguard}
OUT=${OUT:-/tmp/mg-out}
BUDGET_S=${BUDGET_S:-545}
W=/tmp/mg-work/$LABEL
mkdir -p "$W" "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$W/experiment.log"; }
pack() { tar czf "$OUT/$LABEL.tgz" -C /tmp/mg-work "$LABEL" 2>/dev/null; }  # what is done so far survives a kill

machine() {
  { nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || echo "no nvidia-smi";
    python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))';
    nproc; uname -a; } > "$W/machine.txt" 2>&1
  log "machine: $(head -2 "$W/machine.txt" | tail -1)"
}

over_budget() { # over_budget <what>: true (and logged) when the budget is spent
  if (( SECONDS > BUDGET_S )); then log "skip $1: ${SECONDS}s > ${BUDGET_S}s"; return 0; fi
  return 1
}

run() { # run <name> <scenario> [extra live-run args...]: one `live run` into $W/<name>
  local name=$1 scen=$2; shift 2
  over_budget "$name" && return 0
  log "live run $name: $*"
  local extra=() sets=() s
  IFS=';' read -ra sets <<< "${RUN_SET:-}"
  for s in "${sets[@]}"; do extra+=(--set "$s"); done
  "$BIN" live run "$scen" --tokens --no-report --out "$W/$name" "$@" "${extra[@]}" > "$W/$name.stdout" 2>&1
  local rc=$?
  pack
  log "  rc=$rc; $(grep -E '^  (all|[a-z0-9.-]+ ) ' "$W/$name.stdout" | head -3 | tr -s ' ' | tr '\n' '|')"
}

up() { # up <run-dir name> <scenario> [live-up args]: start the engines (and LB), wait until every
     # port in PORTS (default 8080, the LB) answers /health
  local dir=$1; shift
  log "live up $*"
  local extra=() sets=() s
  [[ -n ${LAUNCH:-} ]] && extra=(--set "instances.*.launch_command=\"$LAUNCH\"")
  IFS=';' read -ra sets <<< "${UP_SET:-}"
  for s in "${sets[@]}"; do extra+=(--set "$s"); done
  "$BIN" live up "$@" "${extra[@]}" --run-dir "$W/$dir" > "$W/$dir.stdout" 2>&1 &
  UP_PID=$!
  UP_DIR=$W/$dir
  for _ in $(seq 1 600); do
    if health_all; then
      log "  up after $SECONDS s"; pack; return 0
    fi
    if ! kill -0 $UP_PID 2>/dev/null; then log "  live up exited:"; tail -30 "$W/$dir.stdout"; pack; return 1; fi
    sleep 1
  done
  log "  live up did not come up"; return 1
}

health_all() { # every port in $PORTS answers /health with 200
  local p
  for p in ${PORTS:-8080}; do
    python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$p/health', timeout=2)" 2>/dev/null || return 1
  done
}

down() {
  log "live down"
  "$BIN" live down --run-dir "$UP_DIR" >> "$UP_DIR.stdout" 2>&1
  wait "$UP_PID" 2>/dev/null
  pack
}
