#!/usr/bin/env bash
# Calibrate each H200 model shape from its calibration run only, then validate every held-out run of
# that shape against it (repository root; release binary built):
#
#   validation/h200/validate-all.sh [LABEL...]      # default: llama8b qwen7b
#
# LABEL is a folder of validation/h200/ holding `calibration/` and held-out run dirs; its
# experiment*.log lines `live run NAME: ARGS` give each held-out run's variant and --set overrides,
# passed to `validate` unchanged, so the simulation sees the stream the live run sent. Writes
# <run>/validation/ and calibration/fit/, and the profile under profiles/.
# Knobs (for a label whose runs had more overrides, e.g. llama8b-graphs):
#   SCEN=<file>      the validation scenario (default scenarios/validate-h200-<label>.toml)
#   PROFILE=<file>   write the fitted profile there and validate with it (default: profiles/ by name)
#   RUN_SET='a=1;b=2' the --set values every run of the label had beyond its log line (RUN_SET of lib.sh)
set -euo pipefail
BIN=${BIN:-target/release/modelsguard}
for label in "${@:-llama8b qwen7b}"; do
  for L in $label; do
    V=validation/h200/$L
    S=${SCEN:-$(ls scenarios/validate-h200-"$L".toml)}
    cal=() val=() sets=()
    [[ -n ${PROFILE:-} ]] && cal=(--out "$PROFILE") && val=(--profile "$PROFILE")
    IFS=';' read -ra sets <<< "${RUN_SET:-}"
    for s in "${sets[@]}"; do val+=(--set "$s"); done
    "$BIN" calibrate "$V/calibration" --report "$V/calibration/fit" "${cal[@]}"
    grep -h "live run " "$V"/experiment*.log | grep -v "live run calibration" | while IFS= read -r line; do
      name=${line#*live run }; name=${name%%:*}
      args=${line#*: }
      [[ -d $V/$name ]] || { echo "skip $name: no run dir" >&2; continue; }
      # ARGS is `--variant V --set PATH=VALUE` with VALUE holding spaces: split at the first --set.
      variant=$(sed -E 's/^--variant ([^ ]+).*/\1/' <<<"$args")
      set_value=$(sed -E 's/^--variant [^ ]+ --set //' <<<"$args")
      echo "== $L/$name: --variant $variant --set $set_value" >&2
      "$BIN" validate "$S" --variant "$variant" --set "$set_value" --live "$V/$name" --out "$V/$name/validation" "${val[@]}" > /dev/null
    done
  done
done
