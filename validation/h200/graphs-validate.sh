#!/usr/bin/env bash
# Colocation and routing with CUDA graphs on one H200, live vs simulated (issue 9 items 5 and 7).
# Repository root, release binary built. For each contention model (the default for
# transformers-cb engines replaying graphs, `time_slice`, fitted by graphs_contention.py on
# routing-graphs/round-robin only; `serialize` for comparison): validate the two- and three-engine
# staggered/overlapping bursts (coloc-graphs/) and the three routing policies at 3.0 req/s
# (routing-graphs-3/) and at 4.5 req/s, both repetitions (routing-graphs/), then print the
# difference tables (coloc_validate.py).
#
#   bash validation/h200/graphs-validate.sh [results dir]   (default results/graphs-validate)
set -euo pipefail
BIN=${BIN:-target/release/modelsguard}
OUT=${1:-results/graphs-validate}
C=validation/h200/coloc-graphs
DUR=(--set 'workload.phases.*.duration_s=15')   # as the live runs (coloc-graphs/experiment.log)
R45=(--set 'workload.phases.0.arrival={ process = "gamma", rate = 4.5, burstiness = 0.5 }')
S=scenarios/routing-h200-2x-llama8b-graphs.toml
mkdir -p "$OUT"
python3 validation/h200/graphs_contention.py --model-of llama-8b-c=llama-3.1-8b \
  --fit validation/h200/routing-graphs/round-robin validation/h200/routing-graphs/round-robin \
  $C/two-staggered $C/two-overlapping $C/three-staggered $C/three-overlapping \
  validation/h200/routing-graphs-3/{round-robin,queue-aware,least-outstanding} > "$OUT/contention.md"
for cm in time_slice serialize; do
  case $cm in
    time_slice) CS=() ;;   # the default of transformers-cb engines replaying graphs
    *) CS=(--set "cluster.contention={ model = \"$cm\" }") ;;
  esac
  for set in rate-3.0 rate-4.5 rate-4.5-r2; do mkdir -p "$OUT/$set/$cm"; done
  for n in two three; do
    sc=scenarios/coloc-h200-bursts-graphs.toml; [[ $n == three ]] && sc=scenarios/coloc-h200-three-bursts-graphs.toml
    for v in staggered overlapping; do
      "$BIN" validate $sc --variant $v "${DUR[@]}" "${CS[@]}" --live $C/$n-$v --profiles-dir profiles/cuda-graphs --out "$OUT/rate-3.0/$cm/$n-$v" > "$OUT/rate-3.0/$cm/$n-$v.txt" 2>&1
    done
  done
  for p in round-robin queue-aware least-outstanding; do
    "$BIN" validate $S --variant $p "${CS[@]}" --live validation/h200/routing-graphs-3/$p \
      --profiles-dir profiles/cuda-graphs --out "$OUT/rate-3.0/$cm/$p" > "$OUT/rate-3.0/$cm/$p.txt" 2>&1
    "$BIN" validate $S --variant $p "${R45[@]}" "${CS[@]}" --live validation/h200/routing-graphs/$p \
      --profiles-dir profiles/cuda-graphs --out "$OUT/rate-4.5/$cm/$p" > "$OUT/rate-4.5/$cm/$p.txt" 2>&1
    "$BIN" validate $S --variant $p "${R45[@]}" "${CS[@]}" --live validation/h200/routing-graphs/$p-r2 \
      --profiles-dir profiles/cuda-graphs --out "$OUT/rate-4.5-r2/$cm/$p" > "$OUT/rate-4.5-r2/$cm/$p.txt" 2>&1
  done
done
for set in rate-3.0 rate-4.5 rate-4.5-r2; do
  echo "# $set"
  python3 validation/h200/coloc_validate.py tables "$OUT/$set" $C
done | tee "$OUT/tables.md"
