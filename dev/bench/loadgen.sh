#!/usr/bin/env bash
# End-to-end presence load on this machine, in one command: a throw-away Redis and one
# `presenced serve` on free loopback ports (no database: the event collector spools to a temp
# dir), then cmd/loadgen with 2,000 WebSocket clients in 20 rooms; everything is stopped after.
#   dev/bench/loadgen.sh [loadgen flags...]      e.g. dev/bench/loadgen.sh -clients 500 -rooms 5
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$tmp/redis.pid" ] && kill "$(cat "$tmp/redis.pid")" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(port)
hport=$(port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" --dir "$tmp"
go build -o "$tmp/presenced" ./cmd/presenced
go build -o "$tmp/loadgen" ./cmd/loadgen
secret=loadgen-only-secret-$RANDOM$RANDOM
# Every client dials from 127.0.0.1: lift the per-address connect rate (CONNECT_RATE) for them.
JWT_SECRET=$secret REDIS_URL="redis://127.0.0.1:$rport/0" HTTP_ADDR="127.0.0.1:$hport" LOG_LEVEL=error \
  CONNECT_RATE=1000000 CONNECT_BURST=1000000 \
  DATABASE_URL="postgres://postgres@127.0.0.1:1/none?connect_timeout=1" SPOOL_DIR="$tmp/spool" \
  "$tmp/presenced" serve 2>"$tmp/presenced.log" &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$hport/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
echo "presenced on 127.0.0.1:$hport, Redis on $rport; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
JWT_SECRET=$secret "$tmp/loadgen" -url "http://127.0.0.1:$hport" "$@"
