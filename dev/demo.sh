#!/usr/bin/env bash
# make demo: the service as `make run` starts it (local Redis + TimescaleDB, migrations, DEV_MODE=1,
# a development JWT_SECRET, on HTTP_ADDR, default :8080), with a gentle simulated crowd from
# cmd/loadgen so that the chat page and the dashboard have life in them: about DEMO_CLIENTS (30)
# connections coming and going in the three demo rooms (Lobby, Support, Random), sessions of about
# a minute (lognormal, up to 10), some users with two or three tabs, a few that vanish without
# closing (the server expires them after PRESENCE_TTL), and DEMO_CHAT_RATE (0.5) chat messages per
# second. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
export JWT_SECRET=${JWT_SECRET:-dev-only-secret-change-me-in-production}
addr=${HTTP_ADDR:-:8080}
port=${addr##*:}
bin/presenced migrate up
DEV_MODE=${DEV_MODE:-1} LOG_FORMAT=${LOG_FORMAT:-text} LOG_LEVEL=${LOG_LEVEL:-warn} HTTP_ADDR=$addr bin/presenced serve &
server=$!
loadgen=
cleanup() {
  [ -n "$loadgen" ] && kill "$loadgen" 2>/dev/null && wait "$loadgen" 2>/dev/null
  kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  true
}
trap cleanup EXIT INT TERM
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
echo "make demo: open http://localhost:$port/ (chat: pick Lobby, Support or Random) and http://localhost:$port/admin/ (dashboard: \"Dev admin token\"). Ctrl-C stops."
nice -n 10 bin/loadgen -scenario churn -url "http://127.0.0.1:$port" -quiet -timeout 24h \
  -room-ids 00000000-0000-4000-8000-000000000001,00000000-0000-4000-8000-000000000002,00000000-0000-4000-8000-000000000003 \
  -clients "${DEMO_CLIENTS:-30}" -ramp 20s -hold 24h -session-median 60s -session-sigma 1 -session-max 10m \
  -tabs-p 0.15 -tabs-max 3 -vanish 0.05 -drop 0.05 -chat-rate "${DEMO_CHAT_RATE:-0.5}" &
loadgen=$!
wait "$loadgen" || true
