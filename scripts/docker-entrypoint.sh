#!/bin/sh
# Docker entrypoint of the Attention Atlas image: prepares the store, then runs the command it is
# given (the image's CMD is the team server, `gunicorn -c gunicorn.conf.py attention_atlas.wsgi:server`; the
# compose worker passes `celery -A jobs.worker worker ...`).
#
# - A missing or empty store directory ($ATLAS_CACHE, /data/store in the image) becomes an empty
#   store, so a fresh volume serves the "no runs yet" page and /healthz answers ok. A directory
#   that holds anything else is left alone (the server then says what is wrong with it).
# - Optional first-run demo: with ATLAS_DEMO_IF_EMPTY=1, when the command is gunicorn and the store
#   holds no run, precompute the bundled demo into it first (minilm on the demo corpus: several
#   minutes on CPU; ATLAS_DEMO_ARGS adds precompute options, e.g. "--layers 0-1"). Off by default:
#   a team's store is filled by `python -m precompute run` or by the UI's background jobs.
# Runs as well outside Docker (the tests run it directly) with the python/gunicorn found on PATH.
set -eu

store="${ATLAS_CACHE:-./cache/demo}"
runs=$(python - "$store" <<'PY' || true
import sys
from pathlib import Path
from precompute.store import Store
path = Path(sys.argv[1])
try:
    if not (path / "cache.db").exists() and (not path.exists() or not any(path.iterdir())):
        Store(path).close()           # a fresh volume: an empty store
    s = Store(path, readonly=True)
    print(len(s.run_ids()))
    s.close()
except Exception as exc:  # noqa: BLE001 - the server reports the store's problem in one line too
    print(f"docker-entrypoint: store {path}: {exc}", file=sys.stderr)
    print(-1)
PY
)

if [ "${ATLAS_DEMO_IF_EMPTY:-0}" = "1" ] && [ "$(basename "${1:-}")" = "gunicorn" ] && [ "$runs" = "0" ]; then
  echo "docker-entrypoint: the store $store holds no run: precomputing the demo first" >&2
  # shellcheck disable=SC2086  # ATLAS_DEMO_ARGS is a list of options
  python -m precompute run --model minilm --corpus demo --cache "$store" --max-tokens 2500 --quiet \
      ${ATLAS_DEMO_ARGS:-} >&2 \
    || echo "docker-entrypoint: the demo precompute failed; serving the store as it is" >&2
fi

exec "$@"
