#!/usr/bin/env bash
# Colocation and routing on one H200, live vs simulated (issue 9 items 5 and 7). Repository root,
# release binary built. For each contention model (the default for transformers-cb, `gpu_share`
# fitted on the ladder; the old `serialize` rule; `none`): validate the two- and three-engine
# staggered/overlapping bursts and the three routing policies against their live runs, and replay
# the ladder (probe and co-tenant together); then print the difference tables.
#
#   bash validation/h200/coloc-validate.sh [results dir]   (default results/coloc-validate)
set -euo pipefail
BIN=${BIN:-target/release/modelsguard}
OUT=${1:-results/coloc-validate}
C=validation/h200/coloc
R=validation/h200/routing
DUR=(--set 'workload.phases.*.duration_s=15')   # as the live runs (coloc/experiment.log)
mkdir -p "$OUT"
# The qwen profile (H2 may refit it with a newer calibrate: rerun this script then).
[[ -f profiles/H200-qwen2.5-7b-transformers-cb.toml ]] ||
  "$BIN" calibrate validation/h200/qwen7b/calibration --out profiles/H200-qwen2.5-7b-transformers-cb.toml --report "$OUT/qwen-fit"
python3 validation/h200/coloc_analysis.py > "$OUT/analysis.md"
replay() { # the --set of a phase replaying the merged ladder <dir>
  echo "workload.phases=[{ name = \"replay\", arrival = { process = \"replay\", path = \"$(realpath "$1")\" }, input_tokens = { dist = \"fixed\", value = 512 }, output_tokens = { dist = \"fixed\", value = 128 } }]"
}
python3 validation/h200/coloc_validate.py merge-ladder $C/probe $C/ladder "$OUT/ladder-merged"
python3 validation/h200/coloc_validate.py merge-ladder $C/probe-sync $C/ladder-sync "$OUT/ladder-sync-merged"
for cm in gpu_share serialize none; do
  case $cm in
    gpu_share) CS=() ;;   # the transformers-cb default
    *) CS=(--set "cluster.contention={ model = \"$cm\" }") ;;
  esac
  mkdir -p "$OUT/$cm"
  for n in two three; do
    sc=scenarios/coloc-h200-bursts.toml; [[ $n == three ]] && sc=scenarios/coloc-h200-three-bursts.toml
    for v in staggered overlapping; do
      "$BIN" validate $sc --variant $v "${DUR[@]}" "${CS[@]}" --live $C/$n-$v --out "$OUT/$cm/$n-$v" --allow-mismatch > "$OUT/$cm/$n-$v.txt" 2>&1
    done
  done
  for p in round-robin queue-aware least-outstanding; do
    "$BIN" validate scenarios/routing-h200-2x-llama8b.toml --variant $p "${CS[@]}" --live $R/$p --out "$OUT/$cm/$p" --allow-mismatch > "$OUT/$cm/$p.txt" 2>&1
  done
  "$BIN" simulate scenarios/coloc-h200-ladder.toml --variant ladder --set "$(replay "$OUT/ladder-merged")" "${CS[@]}" \
    --out "$OUT/$cm/ladder" --no-report -q > "$OUT/$cm/ladder.txt" 2>&1
  # async batching off: the engines' CPU and GPU work run in turn (--no-async-batching live)
  "$BIN" simulate scenarios/coloc-h200-ladder.toml --variant ladder --set "$(replay "$OUT/ladder-sync-merged")" "${CS[@]}" \
    --set defaults.engine.async_scheduling=false --out "$OUT/$cm/ladder-sync" --no-report -q > "$OUT/$cm/ladder-sync.txt" 2>&1
done
python3 validation/h200/coloc_validate.py tables "$OUT" $C | tee "$OUT/tables.md"
