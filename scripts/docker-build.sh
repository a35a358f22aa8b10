#!/usr/bin/env bash
# Build the Attention Atlas image with what this machine can reach (Docker's layer cache makes a
# repeated build quick: only the application layer is redone when only code changed).
#
#   bash scripts/docker-build.sh               # attention-atlas:latest (ATLAS_IMAGE overrides)
#
# - Base: BASE_IMAGE=$ATLAS_BASE_IMAGE if set; else the Dockerfile's default (python:3.11-slim-bookworm)
#   when the engine has it; else attention-atlas-base:bookworm, built from Debian packages by
#   scripts/docker-base.sh (no image registry needed), which also builds the Redis image that
#   docker-compose.yml can use (ATLAS_REDIS_IMAGE=attention-atlas-redis:bookworm).
# - torch: TORCH_INDEX_URL=$ATLAS_TORCH_INDEX_URL if set (empty = pip's default index); else the
#   Dockerfile's default (the CPU wheel index) when it answers; else pip's default index, whose
#   Linux torch is the CUDA build (several GB more; said so here).
# - CA certificates added on this machine (/usr/local/share/ca-certificates, e.g. a TLS proxy's) are
#   passed as EXTRA_CA_CERTS for pip during the build (ATLAS_EXTRA_CA_CERTS overrides).
# Prints the build time and the image size at the end (bench/RESULTS.md, "Docker").
set -euo pipefail
cd "$(dirname "$0")/.."

image="${ATLAS_IMAGE:-attention-atlas:latest}"
default_arg() { sed -n "s/^ARG $1=//p" Dockerfile | head -n 1 | tr -d '"'; }

if [ -n "${ATLAS_BASE_IMAGE:-}" ]; then
  base="$ATLAS_BASE_IMAGE"
elif docker image inspect "$(default_arg BASE_IMAGE)" >/dev/null 2>&1; then
  base="$(default_arg BASE_IMAGE)"
else
  base=attention-atlas-base:bookworm
fi
if [ "$base" = attention-atlas-base:bookworm ]; then
  bash scripts/docker-base.sh
fi

if [ -n "${ATLAS_TORCH_INDEX_URL+set}" ]; then
  torch_index="$ATLAS_TORCH_INDEX_URL"
else
  torch_index="$(default_arg TORCH_INDEX_URL)"
  if ! python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1].rstrip('/') + '/torch/', timeout=15)" \
       "$torch_index" >/dev/null 2>&1; then
    echo "docker-build: the torch index $torch_index does not answer: torch comes from pip's default index" \
         "(the CUDA build on Linux, several GB larger)" >&2
    torch_index=""
  fi
fi

extra_ca="${ATLAS_EXTRA_CA_CERTS-$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true)}"

# BuildKit when a client has it: its cache survives a restart of the engine, while the legacy
# builder hashes the whole virtualenv again for `COPY --from` after each restart (~2 min here).
# A docker client without the buildx plugin (e.g. a newer CLI installed beside Debian's docker.io)
# cannot use BuildKit; Debian's own 20.10 client (/usr/bin/docker) has it built in.
buildkit_ok() { printf 'FROM scratch\nLABEL atlas.probe=1\n' | DOCKER_BUILDKIT=1 "$1" build -q -t atlas-buildkit-probe - >/dev/null 2>&1 \
                && docker rmi atlas-buildkit-probe >/dev/null 2>&1; }
if docker buildx version >/dev/null 2>&1; then
  build=(docker buildx build --load --progress plain)
elif buildkit_ok docker; then
  build=(env DOCKER_BUILDKIT=1 docker build --progress plain)
elif [ -x /usr/bin/docker ] && buildkit_ok /usr/bin/docker; then
  build=(env DOCKER_BUILDKIT=1 /usr/bin/docker build --progress plain)
else
  build=(env DOCKER_BUILDKIT=0 docker build)
fi

shown="${torch_index:-(empty: the default index)}"
echo "docker-build: $image from BASE_IMAGE=$base TORCH_INDEX_URL=$shown with: ${build[*]}" >&2
t0=$(date +%s)
nice -n 10 "${build[@]}" --network host \
  --build-arg BASE_IMAGE="$base" \
  --build-arg TORCH_INDEX_URL="$torch_index" \
  --build-arg EXTRA_CA_CERTS="$extra_ca" \
  -t "$image" . >&2
t1=$(date +%s)
size=$(docker image inspect "$image" --format '{{.Size}}')
echo "docker-build: built $image in $((t1 - t0)) s; image size $((size / 1000000)) MB" >&2
