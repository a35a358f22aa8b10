#!/usr/bin/env bash
# Build the images that the Attention Atlas Dockerfile and docker-compose.yml start FROM, out of
# Debian packages, for machines that reach Debian's mirror but no image registry:
#
#   bash scripts/docker-base.sh            # attention-atlas-base:bookworm and attention-atlas-redis:bookworm
#
# - attention-atlas-base:bookworm: Debian bookworm (debootstrap, minbase) with python3 (3.11, as in
#   python:3.11-slim-bookworm), venv and CA certificates. Use it with
#   `docker build --build-arg BASE_IMAGE=attention-atlas-base:bookworm ...`.
# - attention-atlas-redis:bookworm: the same base with Debian's redis-server and redis-cli, for
#   docker-compose.yml's redis service (ATLAS_REDIS_IMAGE=attention-atlas-redis:bookworm).
# An image that exists already is kept (ATLAS_REBUILD_BASE=1 rebuilds). Needs root, debootstrap
# (apt-get install -y debootstrap) and a Docker engine (scripts/docker-engine.sh start).
# The mirror is the one apt uses on this machine (ATLAS_DEBIAN_MIRROR overrides it).
set -euo pipefail

base="${ATLAS_BASE_IMAGE:-attention-atlas-base:bookworm}"
redis="${ATLAS_REDIS_IMAGE:-attention-atlas-redis:bookworm}"
suite=bookworm

exists() { docker image inspect "$1" >/dev/null 2>&1; }

mirror="${ATLAS_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  # the first Debian main archive in apt's sources (deb822 .sources or one-line .list files)
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}' | grep -v -- '-security' | grep '/debian/*$' | head -n 1 || true)
  if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1 == "deb" {print $2}' | grep -v -- '-security' | grep '/debian/*$' | head -n 1 || true)
  fi
fi
[ -n "$mirror" ] || { echo "docker-base: no Debian mirror found in apt's sources; set ATLAS_DEBIAN_MIRROR" >&2; exit 2; }

if [ "${ATLAS_REBUILD_BASE:-0}" = 1 ] || ! exists "$base"; then
  command -v debootstrap >/dev/null || { echo "docker-base: no debootstrap (apt-get install -y debootstrap)" >&2; exit 2; }
  root=$(mktemp -d /var/tmp/atlas-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  echo "docker-base: debootstrap $suite from $mirror" >&2
  nice debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates,passwd \
      "$suite" "$root" "$mirror" >&2
  # the same sources as an official Debian image (security updates), a clean apt cache
  cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian*}/debian-security $suite-security main
EOF
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log \
         "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
  tar -C "$root" -c . | docker import \
      --change 'ENV LANG=C.UTF-8' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["python3"]' \
      - "$base" >/dev/null
  rm -rf "$root"; trap - EXIT
  echo "docker-base: built $base" >&2
else
  echo "docker-base: $base exists" >&2
fi

if [ "${ATLAS_REBUILD_BASE:-0}" = 1 ] || ! exists "$redis"; then
  # apt inside the build goes over plain http to the Debian mirror (like debootstrap above)
  nice docker build --network host -t "$redis" --build-arg BASE_IMAGE="$base" - >&2 <<'EOF'
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server redis-tools \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
EOF
  echo "docker-base: built $redis" >&2
else
  echo "docker-base: $redis exists" >&2
fi
