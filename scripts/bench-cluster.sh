#!/usr/bin/env bash
# The cluster benchmark of docs/PERFORMANCE.md, in one run on one machine: unseal and seal
# against one daemon on the embedded store, one on PostgreSQL, and three on one PostgreSQL
# (sharing the simulated token), each with the Ping baseline measured alongside; then the
# chain-head lock's wait and hold from the PostgreSQL daemons' metrics. Release binaries.
# Prints one JSON object per measurement. Needs root (PostgreSQL runs as its own user).
#   BENCH_SPLIT_CORES=1  PostgreSQL on CPU 1, the daemons and the load on CPU 0: the database
#                        on a host of its own, as deployed, on a 2-core machine
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${BENCH_SECONDS:-5}
cargo build --release --workspace --bins --locked >&2
pg_cpus=()
if [ "${BENCH_SPLIT_CORES:-0}" = 1 ]; then
  taskset -pc 0 $$ >/dev/null   # this script, and so every daemon and load generator
  pg_cpus=(taskset -c 1)
fi
bin=target/release
work=$(mktemp -d /tmp/locker-bench.XXXXXX)
chmod 711 "$work"   # PostgreSQL runs as its own user under it
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ./scripts/test-postgres.sh stop "$work/pg" || true
  rm -rf "$work"
}
trap cleanup EXIT
pg=$("${pg_cpus[@]}" ./scripts/test-postgres.sh start "$work/pg")
psql "$pg/postgres" -qc "CREATE DATABASE one" -c "CREATE DATABASE three"

# daemon NAME PORT [STORE_URL]: a dev daemon on 127.0.0.1:PORT, metrics on PORT+100.
daemon() {
  local name=$1 port=$2 url=${3:-}
  local args=(--dev --data-dir "$work/$name" --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$((port + 100))")
  [ -n "$url" ] && args+=(--store-url "$url" --dev-keys "$work/keys-${url##*/}")
  RUST_LOG=warn "$bin/vault-daemon" "${args[@]}" >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  for _ in $(seq 100); do grep -q "listening on" "$work/$name.out" 2>/dev/null && return; sleep 0.1; done
  echo "daemon $name did not start" >&2; cat "$work/$name.log" >&2; exit 1
}

# bench LABEL OP PORT CONCURRENCY TOKEN_DIR
bench() {
  local label=$1 op=$2 port=$3 concurrency=$4 tokens=$5
  "$bin/vault-client" --endpoint "http://127.0.0.1:$port" --token-file "$tokens/dev-handler.token" \
    --output json bench --op "$op" --duration "$duration" --records 1000 --concurrency "$concurrency" \
    --baseline --admin-token-file "$tokens/dev-admin.token" | sed "s/^{/{\"setup\":\"$label\",\"port\":$port,/"
}

# lock_times PORT: the chain-head lock histograms of one daemon.
lock_times() {
  curl -s "http://127.0.0.1:$(($1 + 100))/metrics" | grep '^locker_chain_head_lock_' | sed "s/^/port $1: /"
}

daemon redb 52201
for op in unseal seal; do bench redb "$op" 52201 32 "$work/redb/tokens"; done

daemon pg1 52211 "$pg/one"
for op in unseal seal; do bench postgres-1 "$op" 52211 32 "$work/pg1/tokens"; done
lock_times 52211 >&2

daemon pg3a 52221 "$pg/three"
daemon pg3b 52222 "$pg/three"
daemon pg3c 52223 "$pg/three"
names=(pg3a pg3b pg3c)
for op in unseal seal; do
  running=()
  for i in 0 1 2; do
    bench postgres-3 "$op" $((52221 + i)) 11 "$work/${names[$i]}/tokens" &
    running+=($!)
  done
  wait "${running[@]}"
done
for port in 52221 52222 52223; do lock_times "$port" >&2; done
