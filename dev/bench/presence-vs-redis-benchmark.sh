#!/usr/bin/env bash
# Presence store throughput beside redis-benchmark, in the same run, on the same Redis.
#   dev/bench/presence-vs-redis-benchmark.sh            (starts a throw-away Redis on a free port)
#   REDIS_PORT=6380 dev/bench/presence-vs-redis-benchmark.sh   (uses a running one; keys under bench:)
# Go side: BenchmarkPresenceJoinLeave, alternating Join and Leave through storage.Presence (Lua
# via EVALSHA, reply parsing, event building), 50 goroutines, 20 rooms.
# Baseline: redis-benchmark -c 50 running EVALSHA of the same join.lua and leave.lua on random
# sessions. Prints script calls per second of each and the ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-200000}
tmp=$(mktemp -d)
cleanup() { [ -f "$tmp/redis.pid" ] && kill "$(cat "$tmp/redis.pid")" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
if [ -z "${REDIS_PORT:-}" ]; then
  REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" --dir "$tmp"
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
cli() { redis-cli -p "$REDIS_PORT" "$@"; }
# The scripts as storage/presence.go loads them: clock.lua (the room clock's tick) and outbox.lua
# (the event appended to the shard's stream in the same step) first; the keys and the common
# arguments as storage.Presence passes them (outbox.lua: stream bound 0 = none, as in the Go
# benchmark; event id base; instance; room; stats channel).
join_sha=$(cli script load "$(cat storage/lua/clock.lua storage/lua/outbox.lua storage/lua/join.lua)")
leave_sha=$(cli script load "$(cat storage/lua/clock.lua storage/lua/outbox.lua storage/lua/leave.lua)")
# join.lua takes a seventh key, the room's expired sessions (expire.lua); leave.lua the first six.
keys=("bench:{room}:sessions" "bench:{room}:sessdata" "bench:{room}:users" "bench:{room}:rooms" "bench:{room}:events" "bench:{room}:events:dropped")
join_keys=("${keys[@]}" "bench:{room}:expired")
common=(0 00000000-0000-4000-8000-00000000beef bench 00000000-0000-4000-8000-000000000001 "bench:{room}:updates")

echo "== redis-benchmark: EVALSHA join.lua ($N new sessions) / leave.lua, -c 50"
rb() { redis-benchmark -p "$REDIS_PORT" -c 50 -n "$N" -r 100000000 -q "$@" | tr '\r' '\n' | grep -E 'requests per second' | tail -1; }
# join: session, user, ttl ms, connected-at (0: now), record the connected event, IP, user agent
j=$(rb EVALSHA "$join_sha" 7 "${join_keys[@]}" "${common[@]}" "s:__rand_int__" "u:__rand_int__" 60000 0 1 127.0.0.1 redis-benchmark)
# redis-benchmark cannot leave the sessions it joined (it draws a new random id each time), so the
# leave baseline first fills the room with R sessions named as __rand_int__ draws them
# (s:000000000042) and then leaves R/2 random ones: about 79% find their session, the rest take
# the cheaper not-found path (the Go side always finds it).
R=200000
cli del "${join_keys[@]}" >/dev/null # the join baseline's sessions and events
cli eval "for i = 0, tonumber(ARGV[1]) - 1 do
  local s = string.format('s:%012d', i)
  redis.call('ZADD', KEYS[1], 9999999999999, s)
  redis.call('HSET', KEYS[2], s, 'u' .. i .. '|0|bench|1|1||bench')
  redis.call('HSET', KEYS[3], 'u' .. i, 1)
end" 3 "${keys[@]:0:3}" "$R" >/dev/null
l=$(redis-benchmark -p "$REDIS_PORT" -c 50 -n $((R / 2)) -r "$R" -q EVALSHA "$leave_sha" 6 "${keys[@]}" "${common[@]}" "s:__rand_int__" closed | tr '\r' '\n' | grep -E 'requests per second' | tail -1)
echo "join:  $j"
echo "leave: $l"
jr=$(sed -E 's/.*: ([0-9.]+) requests.*/\1/' <<<"$j")
lr=$(sed -E 's/.*: ([0-9.]+) requests.*/\1/' <<<"$l")
base=$(python3 -c "print(round(2/(1/$jr+1/$lr)))")
echo "redis-benchmark join+leave mix: $base scripts/s (harmonic mean)"

# Twice: go-redis's default (RESP3, which peeks for push notifications before each command) and
# RESP2 (REDIS_URL=...?protocol=2), which saves a read per command.
for q in "" "?protocol=2"; do
  echo "== go test -bench BenchmarkPresenceJoinLeave (50 goroutines) REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0$q"
  out=$(TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0$q" go test -run '^$' -bench 'BenchmarkPresenceJoinLeave$' -benchtime "${BENCHTIME:-100000x}" -count 1 ./storage/ | tee /dev/stderr)
  goops=$(grep -oE '[0-9.]+ scripts/s' <<<"$out" | awk '{print $1}')
  echo "presence store: $goops scripts/s"
  python3 -c "print('ratio presence/redis-benchmark: %.2f' % ($goops/$base))"
done
