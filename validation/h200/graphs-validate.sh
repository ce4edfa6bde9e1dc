#!/usr/bin/env bash
# Colocation and routing with CUDA graphs on one H200, live vs simulated (issue 9 items 5 and 7).
# Repository root, release binary built. For each contention model (the default for
# transformers-cb engines replaying graphs, `time_slice`, fitted by graphs_contention.py on
# routing-graphs/round-robin only; `serialize` for comparison): validate the two- and three-engine
# staggered/overlapping bursts (coloc-graphs/) and the three routing policies at 3.0 req/s
# (routing-graphs-3/) and at 4.5 req/s, both repetitions (routing-graphs/), then print the
# difference tables (coloc_validate.py), and queue-aware at 3.0 req/s under four poll phases
# (router.poll_offset_s 0, 0.25, 0.5, 0.75 s: poll-phase.md).
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
# Queue-aware herds on which bursts land just after a poll: the simulated LB's poll phase
# (router.poll_offset_s; the live LB's is whatever it started with) at 0, 1/4, 1/2, 3/4 s.
for off in 0.25 0.5 0.75; do
  "$BIN" validate $S --variant queue-aware --set "router.poll_offset_s=$off" --live validation/h200/routing-graphs-3/queue-aware \
    --profiles-dir profiles/cuda-graphs --out "$OUT/rate-3.0/phase-$off/queue-aware" > "$OUT/rate-3.0/phase-$off.txt" 2>&1
done
python3 - "$OUT/rate-3.0" <<'PY' > "$OUT/poll-phase.md"
import json, sys
res = sys.argv[1]
def lat(path):
    v = json.load(open(f"{res}/{path}/validation.json"))
    return {(x["metric"], x["percentile"]): (x["sim_s"], x["live_s"]) for x in v["latencies"] if x["model"] == "all"}
rr = lat("time_slice/round-robin")
runs = {"0": lat("time_slice/queue-aware")} | {o: lat(f"phase-{o}/queue-aware") for o in ("0.25", "0.5", "0.75")}
print("queue-aware / round-robin - 1 at 3.0 req/s, simulated per poll phase (s) vs live\n")
print("| metric | " + " | ".join(f"sim, phase {o}" for o in runs) + " | sim, mean | live |")
print("|---|" + "---|" * (len(runs) + 2))
for key in [("ttft", "p50"), ("ttft", "p90"), ("e2e", "p50"), ("e2e", "p90"), ("tpot", "p50")]:
    sims = [q[key][0] / rr[key][0] - 1 for q in runs.values()]
    live = runs["0"][key][1] / rr[key][1] - 1
    cells = " | ".join(f"{d * 100:+.1f}%" for d in sims)
    print(f"| {key[0].upper()} {key[1]} | {cells} | {sum(sims) / len(sims) * 100:+.1f}% | {live * 100:+.1f}% |")
PY
cat "$OUT/poll-phase.md"
for set in rate-3.0 rate-4.5 rate-4.5-r2; do
  echo "# $set"
  python3 validation/h200/coloc_validate.py tables "$OUT/$set" $C
done | tee "$OUT/tables.md"
