#!/usr/bin/env bash
# Start or stop a Docker engine for building and testing the Attention Atlas image on a machine
# where none runs (Debian's docker.io: `apt-get install -y docker.io`, as root).
#
#   bash scripts/docker-engine.sh start    # prints the dockerd pid; reuses an engine that answers
#   bash scripts/docker-engine.sh stop     # stops only the dockerd this script started (its pid file)
#   bash scripts/docker-engine.sh status
#
# The engine runs without a bridge and without iptables rules (--bridge=none --iptables=false):
# builds, containers and compose use host networking, so every connection stays on 127.0.0.1.
# Settings (environment):
#   DOCKER_HOST              the socket (default unix:///var/run/docker.sock)
#   ATLAS_DOCKER_DATA_ROOT   images and containers (default /var/lib/docker; kept between runs so a
#                            built image is reused)
#   ATLAS_DOCKER_STATE       pid file and log of the dockerd started here (default /var/run/atlas-docker)
set -euo pipefail

state="${ATLAS_DOCKER_STATE:-/var/run/atlas-docker}"
data_root="${ATLAS_DOCKER_DATA_ROOT:-/var/lib/docker}"
host="${DOCKER_HOST:-unix:///var/run/docker.sock}"
export DOCKER_HOST="$host"
pidfile="$state/dockerd.pid"
log="$state/dockerd.log"

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

case "${1:-}" in
  start)
    if answers; then
      echo "docker-engine: an engine already answers at $DOCKER_HOST" >&2
      exit 0
    fi
    command -v dockerd >/dev/null || { echo "docker-engine: no dockerd (apt-get install -y docker.io)" >&2; exit 2; }
    [ "$(id -u)" = 0 ] || { echo "docker-engine: dockerd must be started as root" >&2; exit 2; }
    mkdir -p "$state" "$data_root"
    case "$host" in unix://*) sock="${host#unix://}" ;; *) echo "docker-engine: DOCKER_HOST must be a unix socket to start one" >&2; exit 2 ;; esac
    nice -n 10 setsid dockerd --bridge=none --iptables=false --ip-masq=false \
      --data-root "$data_root" --exec-root "$state/exec" --pidfile "$state/dockerd.daemon.pid" \
      -H "unix://$sock" >"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    for _ in $(seq 1 60); do
      if answers; then cat "$pidfile"; exit 0; fi
      if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then break; fi
      sleep 1
    done
    echo "docker-engine: dockerd did not start; the end of $log:" >&2
    tail -n 20 "$log" >&2 || true
    if kill -0 "$(cat "$pidfile")" 2>/dev/null; then kill "$(cat "$pidfile")"; fi
    rm -f "$pidfile"
    exit 1
    ;;
  stop)
    [ -f "$pidfile" ] || { echo "docker-engine: no dockerd started by this script" >&2; exit 0; }
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    fi
    rm -f "$pidfile"
    echo "docker-engine: stopped dockerd $pid" >&2
    ;;
  status)
    if answers; then docker version --format 'engine {{.Server.Version}} at '"$DOCKER_HOST"; else echo "no engine at $DOCKER_HOST"; exit 1; fi
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
