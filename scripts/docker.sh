#!/usr/bin/env bash
# Start or stop the Docker engine the Molecule test hosts run on.
#   docker.sh start   start dockerd if it is not running; remember that we started it
#   docker.sh stop    stop dockerd only if this project started it
# Test hosts only talk to each other on internal bridge networks: dockerd runs with
# --ip-forward=false, and its iptables rules (which enforce `internal: true`) are undone on
# stop, from a snapshot taken at start, so the host's firewall is left as it was found.
source "$(dirname "$0")/lib.sh"

STATE="$CACHE/dockerd"
PIDFILE="$STATE/dockerd.pid"

running() { timeout 10 docker info >/dev/null 2>&1; }

start() {
  if running; then
    return 0
  fi
  command -v dockerd >/dev/null || die "dockerd not found: run 'make bootstrap' (installs docker.io)"
  mkdir -p "$STATE"
  log "starting dockerd (log: $STATE/dockerd.log)"
  # setsid: the daemon must outlive this script and not receive the caller's signals.
  iptables-save > "$STATE/iptables.before" 2>/dev/null || true
  cat /proc/sys/net/ipv4/ip_forward > "$STATE/ip_forward.before" 2>/dev/null || true
  setsid dockerd --storage-driver overlay2 --ip-forward=false \
    --pidfile "$STATE/docker.pid" >"$STATE/dockerd.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 60); do
    running && return 0
    sleep 1
  done
  tail -20 "$STATE/dockerd.log" >&2
  die "dockerd did not become ready within 60 s (see $STATE/dockerd.log)"
}

stop() {
  [ -f "$PIDFILE" ] || return 0
  local pid
  pid=$(cat "$PIDFILE")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping dockerd (pid $pid), which this project started"
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
  if [ -s "$STATE/iptables.before" ]; then
    iptables-restore < "$STATE/iptables.before" && rm -f "$STATE/iptables.before"
  fi
  if [ -s "$STATE/ip_forward.before" ]; then
    cat "$STATE/ip_forward.before" > /proc/sys/net/ipv4/ip_forward 2>/dev/null || true
    rm -f "$STATE/ip_forward.before"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 start|stop" ;;
esac
