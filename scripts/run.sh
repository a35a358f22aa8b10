#!/usr/bin/env bash
# Install, then serve the bundled demo, computing what its store is missing:
#   1. forward passes and the PCA of every head (well under a minute), in a background process;
#   2. the dashboard (imported meanwhile) serves as soon as every head has its PCA;
#   3. the same background process goes on with t-SNE/UMAP head by head (the page shows each
#      head as it lands); it logs to $CACHE.precompute.log and stops when the dashboard stops.
# Running it again resumes what is missing (nothing is recomputed). Options after the script go
# to `atlas serve` (e.g. --port 8051). ATLAS_CACHE picks another store directory; ATLAS_DEMO_MAX_TOKENS
# (default 2500) a smaller demo run (tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
CACHE=${ATLAS_CACHE:-cache/demo}
CACHE=${CACHE%/}
LOG="$CACHE.precompute.log"
READY="$CACHE.ready"
mkdir -p "$(dirname "$CACHE")"

# every stored run complete: nothing to compute, serve at once (no model to load)
if [ -d "$CACHE" ] && .venv/bin/python -m precompute list --cache "$CACHE" --json 2>/dev/null |
   .venv/bin/python -c 'import json,sys; rows=json.load(sys.stdin); sys.exit(0 if rows and all(r["status"] == "complete" for r in rows) else 1)' 2>/dev/null; then
  exec .venv/bin/python -m attention_atlas serve --cache "$CACHE" "$@"
fi

rm -f "$READY"
echo "precomputing the demo (minilm on the demo corpus) into $CACHE: PCA of every head first, then"
echo "t-SNE/UMAP in the background — progress and ETA: tail -f $LOG"
# The run leads its own process group and watches this shell's pid, which becomes the dashboard's
# (exec below): when the dashboard stops, however it stops, the run and its workers stop too.
# The subshell makes it a child of init, so a run that finishes first leaves no zombie behind.
( exec .venv/bin/python -m precompute run --model minilm --corpus demo --cache "$CACHE" --max-tokens "${ATLAS_DEMO_MAX_TOKENS:-2500}" \
    --fast-first --ready-file "$READY" --stop-with $$ >>"$LOG" 2>&1 </dev/null & echo $! >"$CACHE.precompute.pid" )
PID=$(cat "$CACHE.precompute.pid")
# the dashboard imports while the precompute runs, and serves once every head has its PCA
exec .venv/bin/python -m attention_atlas serve-when-ready "$READY" "$PID" "$LOG" --cache "$CACHE" "$@"
