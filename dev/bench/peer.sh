#!/usr/bin/env bash
# This service side by side with Centrifugo v6.9.1, on this machine, in one command: the same
# cmd/loadgen workload against each (joins one after another per room, rooms in parallel; then
# chat), each server a fresh process, in alternation (presenced, Centrifugo, presenced, ...), on the
# same throw-away Redis (Centrifugo's Redis engine; presenced's presence) with presenced writing
# its history to a throw-away local TimescaleDB (dev/services.sh test). Prints one table.
#   dev/bench/peer.sh [-sizes "200/4 2000/20 5000/50"] [-rounds 1] [-targets "presenced centrifugo"] [-pprof DIR] [-farm RUNS]
#   make bench-peer [SIZES=2000/20] [ROUNDS=2]
# Centrifugo is installed pinned into .data/bin with `go install` (module proxy) when missing.
# Settings passed on to presenced: STATS_PUSH_INTERVAL and STATS_PUSH_ROOM_RATE (default their own: 1ms, 25000). -pprof DIR builds
# presenced with -tags pprof and turns on Centrifugo's debug endpoint, and writes both servers'
# CPU profile of the joins and heap profile (alloc_space) after them per size into DIR.
# -farm RUNS then also times, per size, the whole load generator run (joins, then chat) against
# both servers with farm-bench (RUNS runs each, paired A B A B: presenced A, Centrifugo B): both
# servers stay up for it, and its ratio is the wall time of the same workload end to end.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CENTRIFUGO_VERSION=v6.9.1
CENTRIFUGO=$ROOT/.data/bin/centrifugo
sizes="200/4 2000/20 5000/50"
rounds=1
pprof=
farm=0
targets="presenced centrifugo"
while [ $# -gt 0 ]; do
  case $1 in
  -sizes) sizes=$2; shift 2 ;;
  -rounds) rounds=$2; shift 2 ;;
  -targets) targets=$2; shift 2 ;;
  -pprof) pprof=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
  -farm) farm=$2; shift 2 ;;
  *) echo "usage: dev/bench/peer.sh [-sizes \"200/4 2000/20 5000/50\"] [-rounds N] [-targets \"presenced centrifugo\"] [-pprof DIR]" >&2; exit 2 ;;
  esac
done
export PATH=/usr/local/go/bin:$PATH

if [ -z "${TEST_REDIS_URL:-}" ]; then
  # 5,000 clients: 5,000 sockets in loadgen and as many in the server, plus Redis's.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  [ "$(ulimit -n)" -ge 12000 ] || { echo "peer: ulimit -n is $(ulimit -n); 12000 or more needed" >&2; exit 1; }
  if [[ $targets == *centrifugo* ]] && ! { [ -x "$CENTRIFUGO" ] && go version -m "$CENTRIFUGO" | grep -q "mod.*centrifugo/v6.*$CENTRIFUGO_VERSION"; }; then
    echo "peer: installing Centrifugo $CENTRIFUGO_VERSION into .data/bin (go install; a few minutes of CPU)" >&2
    mkdir -p "$ROOT/.data/bin"
    GOBIN=$ROOT/.data/bin nice -n 10 go install "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION"
  fi
  exec dev/services.sh test "$0" -sizes "$sizes" -rounds "$rounds" -targets "$targets" ${pprof:+-pprof "$pprof"} -farm "$farm"
fi

tmp=$(mktemp -d -t presence-peer.XXXXXX)
server=
others=
cleanup() {
  for p in $server $others; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url log
  for _ in $(seq 1200); do
    curl -fs "$1" >/dev/null 2>&1 && return 0
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  echo "peer: $1 did not answer; the server's log:" >&2
  tail -20 "$2" >&2
  return 1
}
stop_server() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=
}

go build ${pprof:+-tags pprof} -o "$tmp/presenced" ./cmd/presenced
go build -o "$tmp/loadgen" ./cmd/loadgen
secret=peer-bench-secret-$RANDOM$RANDOM$RANDOM
# The throw-away local TimescaleDB of dev/services.sh (it serves one session at a time).
database_url=$TEST_TSDB_URL
JWT_SECRET=$secret DATABASE_URL=$database_url "$tmp/presenced" migrate up >"$tmp/migrate.log" 2>&1 ||
  { cat "$tmp/migrate.log" >&2; exit 1; }
presenced_version=$(git describe --always --dirty 2>/dev/null || echo unknown)
echo "peer: presenced $presenced_version (STATS_PUSH_INTERVAL ${STATS_PUSH_INTERVAL:-1ms}, STATS_PUSH_ROOM_RATE ${STATS_PUSH_ROOM_RATE:-25000}), Centrifugo $CENTRIFUGO_VERSION ($(go version -m "$CENTRIFUGO" | head -1 | cut -d' ' -f2)); $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# Every client of the load generator dials from 127.0.0.1: the per-address connect rate
# (CONNECT_RATE, 50 a second after a burst of 1,000) would refuse most of them. Centrifugo has no
# such limit by default.
start_presenced() {
  hport=$(port)
  pport=$(port)
  env JWT_SECRET="$secret" REDIS_URL="$TEST_REDIS_URL" DATABASE_URL="$database_url" HTTP_ADDR="127.0.0.1:$hport" \
    LOG_LEVEL=error SPOOL_DIR="$tmp/spool" CONNECT_RATE=1000000 CONNECT_BURST=1000000 PPROF_ADDR="${pprof:+127.0.0.1:$pport}" \
    "$tmp/presenced" serve 2>>"$tmp/presenced.log" &
  server=$!
  # Ready as a load balancer sees it (/readyz: Redis and the database answer), as Centrifugo's
  # /health below: joins sent on /healthz alone met a process still dialling its dependencies.
  wait_http "http://127.0.0.1:$hport/readyz" "$tmp/presenced.log"
  url=http://127.0.0.1:$hport
  debug=http://127.0.0.1:$pport/debug/pprof
}

start_centrifugo() {
  cport=$(port)
  cat >"$tmp/centrifugo.json" <<EOF
{
  "http_server": {"address": "127.0.0.1", "port": $cport},
  "log": {"level": "error"},
  "health": {"enabled": true},
  "debug": {"enabled": $([ -n "$pprof" ] && echo true || echo false)},
  "engine": {"type": "redis", "redis": {"address": ["$TEST_REDIS_URL"], "prefix": "centrifugo-peer"}},
  "client": {"token": {"hmac_secret_key": "$secret"}},
  "channel": {"namespaces": [{"name": "room", "presence": true, "join_leave": true,
    "force_push_join_leave": true, "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true}]}
}
EOF
  "$CENTRIFUGO" --config "$tmp/centrifugo.json" >>"$tmp/centrifugo.log" 2>&1 &
  server=$!
  wait_http "http://127.0.0.1:$cport/health" "$tmp/centrifugo.log"
  url=http://127.0.0.1:$cport
  debug=http://127.0.0.1:$cport/debug/pprof
}

: >"$tmp/results.jsonl"
for size in $sizes; do
  clients=${size%/*} rooms=${size#*/}
  for ((r = 1; r <= rounds; r++)); do
    for target in $targets; do
      "start_$target"
      echo "peer: $target, $clients clients in $rooms rooms (round $r)" >&2
      prof=
      if [ -n "$pprof" ]; then # the CPU profile of the joins: the ramp takes about clients/rooms/10 s
        curl -fs -o "$pprof/$target-$clients-cpu.pprof" "$debug/profile?seconds=$((clients / rooms / 10 + 2))" &
        prof=$!
      fi
      if ! JWT_SECRET=$secret "$tmp/loadgen" -target "$target" -url "$url" -pid "$server" \
        -clients "$clients" -rooms "$rooms" -chat 10 -json >>"$tmp/results.jsonl"; then
        echo "peer: loadgen failed against $target; its log:" >&2
        tail -20 "$tmp/$target.log" >&2
        exit 1
      fi
      if [ -n "$prof" ]; then
        wait "$prof" || true
        curl -fs -o "$pprof/$target-$clients-heap.pprof" "$debug/heap"
      fi
      stop_server
    done
  done
done

# -farm: the whole run of the same workload against both servers, up side by side, paired.
if [ "$farm" -gt 0 ]; then
  command -v farm-bench >/dev/null || { echo "peer: -farm needs farm-bench on PATH" >&2; exit 1; }
  for size in $sizes; do
    clients=${size%/*} rooms=${size#*/}
    start_presenced; purl=$url ppid=$server others="$server"; server=
    start_centrifugo; curl_=$url cpid=$server others="$others $server"; server=
    echo "peer: farm-bench, $clients clients in $rooms rooms, $farm runs each (A presenced, B Centrifugo)" >&2
    # -pid: memory and CPU from /proc for both (without it, the presenced target polls /metrics
    # until two collections have run, seconds that are not the workload's).
    lg="$tmp/loadgen -clients $clients -rooms $rooms -chat 10 -chat-after 0"
    JWT_SECRET=$secret farm-bench -n "$farm" --timeout 3600 --vs "$lg -target centrifugo -url $curl_ -pid $cpid" -- \
      $lg -target presenced -url "$purl" -pid "$ppid"
    for p in $others; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
    others=
  done
fi

mkdir -p .data/bench && cp "$tmp/results.jsonl" ".data/bench/peer-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
python3 - "$tmp/results.jsonl" <<'EOF'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sizes = []
for r in rows:
    k = (r["clients"], r["rooms"])
    if k not in sizes:
        sizes.append(k)
metrics = [("join->all p50 ms", "join_p50_ms"), ("join->all p99 ms", "join_p99_ms"),
           ("chat fan-out p50 ms", "chat_p50_ms"), ("chat fan-out p99 ms", "chat_p99_ms"),
           ("RSS KiB/conn", "rss_per_conn_kib"), ("CPU s/1,000 joins", "cpu_s_per_1000_joins")]
def fig(vals):
    if not vals:
        return "-"
    lo, hi = min(vals), max(vals)
    f = (lambda v: f"{v:.1f}") if hi < 100 else (lambda v: f"{v:.0f}")
    return f(lo) if len(vals) == 1 or f(lo) == f(hi) else f"{f(lo)}-{f(hi)}"
rows_out = []
print("| clients / rooms | figure | presenced | Centrifugo | ratio |")
print("|---|---|---|---|---|")
for c, n in sizes:
    for label, key in metrics:
        p = [r[key] for r in rows if (r["clients"], r["rooms"]) == (c, n) and r["target"] == "presenced"]
        q = [r[key] for r in rows if (r["clients"], r["rooms"]) == (c, n) and r["target"] == "centrifugo"]
        ratio = f"{statistics.median(p) / statistics.median(q):.2f}" if p and q and statistics.median(q) > 0 else "-"
        print(f"| {c:,} / {n} | {label} | {fig(p)} | {fig(q)} | {ratio} |")
        rows_out.append((f"{label}, {c:,} clients / {n} rooms: presenced vs Centrifugo", ratio, fig(p), fig(q),
                         "<= 0.5" if key == "rss_per_conn_kib" else "<= 1"))
# The same as rows of make bench's table (dev/bench/table: BENCH-ROW lines).
for figure, ratio, p, q, target in rows_out:
    print("\t".join(["BENCH-ROW", figure, f"ratio {ratio} ({p} vs {q})", f"ratio {target}",
                     "make bench-peer", "presenced + local WebAssembly TimescaleDB vs Centrifugo v6.9.1 (Redis engine)"]))
EOF
