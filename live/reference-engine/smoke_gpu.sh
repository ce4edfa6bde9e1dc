#!/usr/bin/env bash
# First run of the reference engine on a GPU machine, in one command (~5 minutes on an H200):
# the correctness check (must PASS), the check with the injected bug (must FAIL), then an 8B-shaped
# engine on port 8001 under a short closed-loop load, reporting warm-up, graph captures while serving
# (must be 0) and latencies. Outputs go to ${OUT:-/tmp/refengine-smoke}.
#
#   bash live/reference-engine/smoke_gpu.sh [extra server.py flags, e.g. --kv-memory-gib 30]
set -uo pipefail
cd "$(dirname "$0")"
OUT="${OUT:-/tmp/refengine-smoke}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
exec > >(tee "$OUT/smoke.txt") 2>&1
started=$(date +%s)
elapsed() { echo "$(( $(date +%s) - started )) s"; }

"$PY" -c "import sys, torch, transformers, aiohttp; print('python', sys.version.split()[0], 'torch', torch.__version__, \
'transformers', transformers.__version__, 'aiohttp', aiohttp.__version__, torch.cuda.get_device_name())" || exit 1
"$PY" -c "import uvloop" 2>/dev/null && echo "uvloop: yes" || echo "uvloop: no (asyncio's loop)"

timeout 300 "$PY" check_correctness.py > "$OUT/check.txt" 2>&1
echo "== check_correctness.py: exit $? (want 0) after $(elapsed)"; tail -22 "$OUT/check.txt"
timeout 200 "$PY" check_correctness.py --inject-bug > "$OUT/check_bug.txt" 2>&1
echo "== check_correctness.py --inject-bug: exit $? (want 1) after $(elapsed)"; grep -E "MISMATCH|PASS|FAIL" "$OUT/check_bug.txt" | head -5

"$PY" server.py --model llama-3.1-8b --port 8001 --kv-memory-gib 20 --max-model-len 16384 \
    --step-log "$OUT/steps.csv" "$@" > "$OUT/server.log" 2>&1 &
server=$!
for _ in $(seq 600); do curl -sf localhost:8001/health >/dev/null && break; kill -0 $server 2>/dev/null || break; sleep 1; done
echo "== server: /health $(curl -s -o /dev/null -w '%{http_code}' localhost:8001/health) after $(elapsed)"
grep -E "built|warm|serving|ERROR|Traceback" "$OUT/server.log" | head -8
nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader
timeout 300 "$PY" smoke_client.py http://127.0.0.1:8001 --model llama-3.1-8b
echo "== CUDA graphs captured while serving: $(grep -c 'while serving' "$OUT/server.log") (want 0)"
curl -s localhost:8001/metrics > "$OUT/metrics.txt"
curl -s localhost:8001/steps > "$OUT/steps_http.csv"
"$PY" - "$OUT/steps_http.csv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
decode = [r for r in rows if r["num_prefill_tokens"] == "0"]
print(f"== {len(rows)} steps, {sum(r['cuda_graph'] == '1' for r in rows)} on graphs, {sum(r['captured'] == '1' for r in rows)} captured")
for lo, hi in [(1, 1), (2, 8), (9, 16), (17, 32), (33, 64)]:
    d = [float(r["duration_s"]) for r in decode if lo <= int(r["num_decode_seqs"]) <= hi]
    if d:
        print(f"   decode-only steps with {lo}-{hi} sequences: {len(d)} steps, median {statistics.median(d) * 1e3:.1f} ms")
EOF
kill $server; wait $server
echo "== server stopped (exit $?) after $(elapsed)"
