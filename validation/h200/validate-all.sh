#!/usr/bin/env bash
# Validate the committed H200 held-out runs against the profile fitted on the calibration run
# (repository root; release binary built). Writes validation/h200/llama8b/<run>/validation/.
set -euo pipefail
BIN=${BIN:-target/release/modelsguard}
V=validation/h200/llama8b
S=scenarios/validate-h200-llama8b.toml
"$BIN" calibrate $V/calibration --report $V/calibration/fit
for c in 4 16 64; do
  "$BIN" validate $S --variant closed-ladder --set "workload.phases.0.arrival={ process = \"closed_loop\", concurrency = $c }" \
    --live $V/closed-$c --out $V/closed-$c/validation
done
for run in poisson-30:0.81 poisson-60:1.621 poisson-90:2.431; do
  "$BIN" validate $S --variant poisson --set "workload.phases.0.arrival={ process = \"poisson\", rate = ${run#*:} }" \
    --live $V/${run%%:*} --out $V/${run%%:*}/validation
done
