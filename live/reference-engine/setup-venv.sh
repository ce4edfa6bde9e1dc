#!/usr/bin/env bash
# Creates (or reuses) the Python environment of the reference engine and of its Rust integration test
# (live/tests/it/reference_engine.rs), then prints the interpreter's path on stdout:
#
#   export MODELSGUARD_REFENGINE_PYTHON="$(live/reference-engine/setup-venv.sh [VENV_DIR])"
#
# VENV_DIR defaults to <repo>/.venv-refengine (gitignored). Idempotent: a venv that already imports
# everything at the pinned versions is left alone. Needs python3 (3.11 or 3.12) with venv, and PyPI.
# torch comes from PyPI (with its CUDA libraries, ~5 GB); set MODELSGUARD_TORCH_INDEX_URL to
# https://download.pytorch.org/whl/cpu for the CPU-only build (~10x smaller) where that index is reachable.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${1:-$ROOT/.venv-refengine}"
PY="$VENV/bin/python3"
CHECK='
import aiohttp, numpy, prometheus_client, psutil, torch, transformers
assert torch.__version__.split("+")[0] == "2.11.0", f"torch {torch.__version__}, want 2.11.0"
assert transformers.__version__ == "5.17.0", f"transformers {transformers.__version__}, want 5.17.0"
'
if [ -x "$PY" ] && "$PY" -c "$CHECK" >/dev/null 2>&1; then
    echo "$PY"
    exit 0
fi
echo "setup-venv: installing the reference engine's packages into $VENV" >&2
python3 -m venv "$VENV"
if [ -n "${MODELSGUARD_TORCH_INDEX_URL:-}" ]; then
    "$PY" -m pip install --quiet torch==2.11.0 --index-url "$MODELSGUARD_TORCH_INDEX_URL" >&2
else
    "$PY" -m pip install --quiet torch==2.11.0 >&2
fi
"$PY" -m pip install --quiet transformers==5.17.0 aiohttp==3.14.5 prometheus_client==0.26.0 numpy==2.4.6 psutil==7.2.2 >&2
"$PY" -c "$CHECK"
echo "$PY"
