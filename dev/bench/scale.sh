#!/usr/bin/env bash
# One instance at scale, on this machine, in one command (issue 13, part 2): a throw-away Redis and
# local TimescaleDB (dev/services.sh test), one `presenced serve` per phase (a fresh process each),
# and cmd/loadgen (nice -n 10, as other work on this shared machine; the server is not niced: a
# load generator niced further than the rest was starved of CPU for 16 s and stopped answering
# pings) from several loopback source addresses:
#   1. memory: SCALE_CLIENTS connections in SCALE_ROOMS rooms (steps scenario, no chat); the
#      server's live heap + goroutine stacks per connection after two GCs, goroutines, RSS;
#   2. storm: SCALE_STORM users join one room within one second (storm scenario): counted
#      exactly, the last join known to every member, online_stats frames per member;
#   3. churn: SCALE_CLIENTS connections in SCALE_ROOMS rooms, Poisson visits with heavy-tailed
#      sessions, tabs, silent and reset clients, chat (churn scenario) for SCALE_RAMP + SCALE_HOLD:
#      join -> every member, counts and chat against the truth, and the collector's rows in the
#      database against the truth; the server's CPU profile over the hold and its allocations.
# Prints one BENCH-ROW line per figure (dev/bench/table reads them) and keeps every loadgen JSON,
# log and profile (`go tool pprof -top` text too) in -out DIR (default .data/bench/scale-<UTC>).
#   dev/bench/scale.sh [-out DIR] [-phases "memory storm churn"]
#   SCALE_CLIENTS=2000 SCALE_ROOMS=20 SCALE_HOLD=30s dev/bench/scale.sh     (a smaller run)
# Settings of the server for the run, and why: CONNECT_RATE / CONNECT_BURST 100000 (the per-address
# connect limit would refuse a ramp from eight addresses), MAX_CONNECTIONS_PER_USER 100 (tabs),
# PRESENCE_TTL 30s and SWEEP_INTERVAL 2s (silent clients expire within the run; shorter, a load
# generator starved of CPU for longer than PRESENCE_TTL misses its pongs and the server rightly cuts it). ulimit -n is raised
# to the hard limit (20,000 here: each of server and loadgen holds one socket per connection).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
export PATH=/usr/local/go/bin:$PATH
out=
phases="memory storm churn"
while [ $# -gt 0 ]; do
  case $1 in
  -out) out=$2; shift 2 ;;
  -phases) phases=$2; shift 2 ;;
  *) echo "usage: dev/bench/scale.sh [-out DIR] [-phases \"memory storm churn\"]" >&2; exit 2 ;;
  esac
done
CLIENTS=${SCALE_CLIENTS:-10000}
ROOMS=${SCALE_ROOMS:-100}
STORM=${SCALE_STORM:-1000}
RAMP=${SCALE_RAMP:-120s}
HOLD=${SCALE_HOLD:-120s}
SESSION_MEDIAN=${SCALE_SESSION_MEDIAN:-100s}
CHAT_RATE=${SCALE_CHAT_RATE:-20}
SOURCES=${SCALE_SOURCES:-8}
PRESENCE_TTL=30s
SWEEP_INTERVAL=2s

if [ -z "${TEST_REDIS_URL:-}" ]; then
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  need=$((CLIENTS + 2000))
  [ "$(ulimit -n)" -ge "$need" ] || { echo "scale: ulimit -n is $(ulimit -n); $need or more needed for $CLIENTS connections" >&2; exit 1; }
  [ -n "$out" ] || out=$ROOT/.data/bench/scale-$(date -u +%Y%m%dT%H%M%SZ)
  mkdir -p "$out"
  exec dev/services.sh test "$0" -out "$(cd "$out" && pwd)" -phases "$phases"
fi

tmp=$(mktemp -d -t presence-scale.XXXXXX)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

go build -tags pprof -o "$tmp/presenced" ./cmd/presenced
go build -o "$tmp/loadgen" ./cmd/loadgen
secret=scale-bench-secret-$RANDOM$RANDOM$RANDOM
dburl=$TEST_TSDB_URL
JWT_SECRET=$secret DATABASE_URL=$dburl "$tmp/presenced" migrate up >"$out/migrate.log" 2>&1 ||
  { cat "$out/migrate.log" >&2; exit 1; }
commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
echo "scale: presenced $commit; $(nproc) cores, load average $(load); out $out" >&2

start_server() { # phase
  hport=$(port)
  pport=$(port)
  env JWT_SECRET="$secret" REDIS_URL="$TEST_REDIS_URL" DATABASE_URL="$dburl" HTTP_ADDR="127.0.0.1:$hport" \
    LOG_LEVEL=error SPOOL_DIR="$tmp/spool" PPROF_ADDR="127.0.0.1:$pport" \
    CONNECT_RATE=100000 CONNECT_BURST=100000 MAX_CONNECTIONS_PER_USER=100 \
    PRESENCE_TTL=$PRESENCE_TTL SWEEP_INTERVAL=$SWEEP_INTERVAL \
    "$tmp/presenced" serve 2>>"$out/presenced-$1.log" &
  server=$!
  for _ in $(seq 300); do
    curl -fs "http://127.0.0.1:$hport/healthz" >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  curl -fs "http://127.0.0.1:$hport/healthz" >/dev/null || { echo "scale: presenced did not start" >&2; tail "$out/presenced-$1.log" >&2; exit 1; }
  url=http://127.0.0.1:$hport
  debug=http://127.0.0.1:$pport/debug/pprof
}
stop_server() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=
}
loadgen() { # phase args...
  local phase=$1
  shift
  JWT_SECRET=$secret nice -n 10 "$tmp/loadgen" -url "$url" -sources "$SOURCES" -json "$@" \
    >"$out/$phase.json" 2> >(tee "$out/loadgen-$phase.log" >&2)
}
row() { printf 'BENCH-ROW\t%s\t%s\t%s\t%s\t%s\n' "$@"; }
j() { # file expression: a Python f-string over the loadgen JSON's fields (ended.vanish as vanished)
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["vanished"]=d.get("ended",{}).get("vanish",0); print(eval(sys.argv[2], {}, d))' "$@"
}
engine="presenced + Redis $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p') + local WebAssembly TimescaleDB"
date_of() { date -u '+%Y-%m-%d %H:%M UTC'; }

for phase in $phases; do
  start_server "$phase"
  at=$(date_of) before=$(load)
  case $phase in
  memory)
    echo "scale: memory, $CLIENTS connections in $ROOMS rooms (load $before)" >&2
    # The connections stay open 20 s after the result, for the heap and goroutine profiles.
    loadgen memory -clients "$CLIENTS" -rooms "$ROOMS" -chat 0 -timeout 10m -linger 20s &
    lg=$!
    for _ in $(seq 600); do [ -s "$out/memory.json" ] && break; kill -0 "$lg" 2>/dev/null || break; sleep 1; done
    curl -fs -o "$out/memory-heap.pprof" "$debug/heap" || true
    curl -fs -o "$out/memory-goroutine.txt" "$debug/goroutine?debug=1" || true
    wait "$lg"
    row "server memory per open WebSocket, $CLIENTS connections in $ROOMS rooms: live heap + goroutine stacks after two GCs (from /metrics)" \
      "$(j "$out/memory.json" 'f"**{heap_stack_per_conn_kib:.1f} KiB** (heap {heap_per_conn_kib:.1f} + stacks {stack_per_conn_kib:.1f}; {goroutines_per_conn:.2f} goroutines); RSS {rss_per_conn_kib:.1f} KiB; join->all p99 {join_p99_ms:.0f} ms"')" \
      "< 16 KiB" "dev/bench/scale.sh (memory)" "$engine; load $before"
    ;;
  storm)
    echo "scale: storm, $STORM users into one room within 1 s (load $before)" >&2
    loadgen storm -scenario storm -clients "$STORM" -database-url "$dburl" -timeout 5m
    row "storm: $STORM users join one room within 1 s, counted exactly, final count at every member, online_stats frames per member" \
      "$(j "$out/storm.json" 'f"{connected} connected; members / REST disagreeing {members_disagreeing} / {rest_rooms_disagreeing}; last join -> every member **{last_join_to_all_ms:.0f} ms**; join->all p99 {join_p99_ms:.0f} ms; frames per member ≤ {max_stats_frames_per_member} (window bound {stats_frames_bound}); errors {error_count}"')" \
      "exact; every member within 1 s; frames ≤ window bound" "dev/bench/scale.sh (storm)" "$engine; load $before"
    ;;
  churn)
    echo "scale: churn, $CLIENTS connections in $ROOMS rooms, ramp $RAMP, hold $HOLD (load $before)" >&2
    secs() { python3 -c "import re,sys; s=sys.argv[1]; print(int(float(re.sub('[a-z]+','',s)) * {'s':1,'m':60,'h':3600}[re.sub('[0-9.]+','',s)]))" "$1"; }
    prof_s=$(( $(secs "$HOLD") * 2 / 3 ))
    # The CPU profile of the hold (the ramp excluded), started when the hold starts.
    (sleep "$(secs "$RAMP")"; curl -fs -o "$out/churn-cpu.pprof" "$debug/profile?seconds=$prof_s") &
    prof=$!
    loadgen churn -scenario churn -clients "$CLIENTS" -rooms "$ROOMS" -ramp "$RAMP" -hold "$HOLD" \
      -session-median "$SESSION_MEDIAN" -chat-rate "$CHAT_RATE" -presence-ttl "$PRESENCE_TTL" -sweep "$SWEEP_INTERVAL" \
      -database-url "$dburl" -timeout 20m
    wait "$prof" || true
    curl -fs -o "$out/churn-allocs.pprof" "$debug/allocs" || true
    row "join -> every member, $CLIENTS connections in $ROOMS rooms with steady churn (Poisson visits, lognormal sessions, tabs, silent and reset clients, chat)" \
      "$(j "$out/churn.json" 'f"p50 {join_p50_ms:.0f} ms, p90 {join_p90_ms:.0f} ms, p99 **{join_p99_ms:.0f} ms**, max {join_max_ms:.0f} ms ({joins_measured} joins, {hold_visits_per_s:.1f} visits/s, peak {peak_live} live; {late_joins} late)"')" \
      "p99 < 250 ms" "dev/bench/scale.sh (churn)" "$engine; load $before"
    row "same churn: counts against the truth after settling; chat lost / duplicated" \
      "$(j "$out/churn.json" 'f"members / REST rooms disagreeing **{members_disagreeing} / {rest_rooms_disagreeing}**; chat {messages_sent} sent, {deliveries} deliveries, lost **{messages_lost}**, duplicated **{messages_duplicated}**, fan-out p99 {chat_p99_ms:.0f} ms; vanished and expired {vanished}; errors {error_count}"')" \
      "0 / 0; 0 lost, 0 duplicated" "dev/bench/scale.sh (churn)" "$engine; load $before"
    row "collector keeps up with that churn: events in the database against the truth" \
      "$(j "$out/churn.json" 'f"**{collector_hold_written_per_s:.0f} events/s** written through the hold, outbox backlog ≤ {collector_max_backlog:.0f}; in the database after the run **{events_connected + events_disconnected:,} of {events_expected:,}** events ({events_timeout} timeouts = the silent clients), the {peak_live:,}-ish closes at the end drained in {collector_lag_s:.1f} s; server CPU {server_cpu_hold_pct_of_core:.0f}% of a core in the hold, loadgen {loadgen_cpu_s:.0f} s"')" \
      "zero loss" "dev/bench/scale.sh (churn)" "$engine; load $before"
    ;;
  *) echo "scale: unknown phase $phase" >&2; exit 2 ;;
  esac
  stop_server
  echo "scale: $phase (started $at, load $before) done at $(date_of), load $(load)" >&2
done
for p in "$out"/*.pprof; do
  [ -s "$p" ] || continue
  go tool pprof -top -nodecount 40 "$tmp/presenced" "$p" >"${p%.pprof}.top.txt" 2>/dev/null || true
done
echo "scale: results, logs and profiles in $out" >&2
