#!/usr/bin/env bash
# Install, precompute the bundled demo if its store is missing or partial, serve the dashboard.
# Options after the script are passed to app.py (e.g. --port 8051).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
CACHE=${ATLAS_CACHE:-cache/demo}
if ! .venv/bin/python -m precompute list --cache "$CACHE" --json 2>/dev/null | grep -q '"status": "complete"'; then
  echo "precomputing the demo (minilm on the demo corpus) into $CACHE"
  .venv/bin/python -m precompute run --model minilm --corpus demo --cache "$CACHE" --max-tokens 2500
fi
exec .venv/bin/python app.py --cache "$CACHE" "$@"
