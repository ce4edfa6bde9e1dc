#!/usr/bin/env bash
# CUDA graphs on (issue 9 follow-up): what capturing costs when the KV cache and the capture set are
# sized for the workload, and what the engine's steps then cost and how steady they are, on the
# calibration ladder of the Llama-3.1-8B shape. The H200 runs so far were eager (every key of a 90%
# cache took 444 s to capture); here the cache is 1024 blocks of 256 tokens (262,144 tokens) and the
# KV read of a graph step is padded to 32,768 tokens: 8 KV buckets x 15 capture sizes.
#
#   OUT=/tmp/out validation/h200/graphs-probe.sh
set -uo pipefail
LABEL=graphs
source "$(dirname "$0")/lib.sh"
machine
S=scenarios/calibration-h200-llama8b.toml
LAUNCH=${LAUNCH:-"python3 live/reference-engine/server.py --model llama-3.1-8b --served-model-name {served_name} --host {host} --port {port} --block-size {block_size} --num-blocks 1024 --kv-bucket-tokens 32768 --max-batch-tokens {max_num_batched_tokens} --max-num-seqs {max_num_seqs} --max-model-len {max_model_len} --step-log {run_dir}/steps-{instance_id}.csv"}
PORTS=8080 up up "$S" --set 'defaults.engine.max_num_seqs=64' --set 'defaults.engine.num_gpu_blocks_override=1024' || { pack; exit 1; }
grep -hE "graphs captured|warm" "$W"/up/*.log "$W"/up/logs/*.log 2>/dev/null | head -5 | while read -r l; do log "  $l"; done
run calibration "$S" --set 'defaults.engine.max_num_seqs=64' --set 'defaults.engine.num_gpu_blocks_override=1024'
down
grep -rhE "captured a CUDA graph while serving" "$W" 2>/dev/null | head -3 | while read -r l; do log "  ANOMALY $l"; done
log "done in $SECONDS s"
pack
