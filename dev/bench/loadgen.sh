#!/usr/bin/env bash
# End-to-end presence load on this machine, in one command: a throw-away Redis and one
# `presenced serve` on free loopback ports (no database: the events wait in the Redis outbox,
# which the run's throw-away Redis drops at the end), then cmd/loadgen with 2,000 WebSocket clients in 20 rooms; everything is stopped after.
#   dev/bench/loadgen.sh [loadgen flags...]      e.g. dev/bench/loadgen.sh -clients 500 -rooms 5
#   INSTANCES=2 dev/bench/loadgen.sh -scenario churn -clients 500 -rooms 5 -hold 30s
# INSTANCES=N starts N servers on the same Redis and gives loadgen all their URLs (churn and storm
# spread the visits over them; steps takes one URL).
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
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" --dir "$tmp"
go build -o "$tmp/presenced" ./cmd/presenced
go build -o "$tmp/loadgen" ./cmd/loadgen
secret=loadgen-only-secret-$RANDOM$RANDOM
urls=
for i in $(seq "${INSTANCES:-1}"); do
  hport=$(port)
  # CONNECT_RATE/CONNECT_BURST: every client dials from loopback, which the per-address connect
  # limit (50/s, burst 1,000) would refuse past the first thousand.
  JWT_SECRET=$secret REDIS_URL="redis://127.0.0.1:$rport/0" HTTP_ADDR="127.0.0.1:$hport" LOG_LEVEL=error \
    CONNECT_RATE=100000 CONNECT_BURST=100000 MAX_CONNECTIONS_PER_USER=100 \
    DATABASE_URL="postgres://postgres@127.0.0.1:1/none?connect_timeout=1" SPOOL_DIR="$tmp/spool-$i" \
    "$tmp/presenced" serve 2>"$tmp/presenced-$i.log" &
  pids+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$hport/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  urls=${urls:+$urls,}http://127.0.0.1:$hport
done
echo "presenced on $urls, Redis on $rport; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
JWT_SECRET=$secret "$tmp/loadgen" -url "$urls" "$@"
