#!/usr/bin/env bash
# Build the Docker image for real and run tests/integration/test_docker.py against it (image, precompute in a
# container into the /data volume, the logged-in server, the non-root user, compose with a job):
#
#   bash scripts/docker-test.sh [pytest options]
#
# Installs what is missing (as root: Debian's docker.io, docker-compose and debootstrap), then runs
# the test with ATLAS_DOCKER_TEST=1: it starts a dockerd if none answers (--bridge=none
# --iptables=false, host networking; stopped at the end), builds the base images from Debian
# packages when the public python image is not on the engine (scripts/docker-base.sh), builds the
# image (scripts/docker-build.sh; the first time ~15 min on 2 cores, then Docker's cache makes it
# quick) and removes every container and volume it made. The ordinary suite runs the same test
# only when the image is built already (tests/integration/test_docker.py says why).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ATLAS_DOCKER_TEST=1
exec .venv/bin/python -m pytest -m docker tests/integration/test_docker.py -v -s "$@"
