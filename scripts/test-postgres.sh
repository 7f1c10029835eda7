#!/usr/bin/env bash
# A throwaway PostgreSQL 15 server for the end-to-end suites on the PostgreSQL store.
#   test-postgres.sh start DIR   initialises DIR/data as the postgres user (initdb refuses root),
#                                starts it on a free loopback port, prints its URL
#   test-postgres.sh stop DIR    stops it at once and removes DIR
set -euo pipefail
bin=/usr/lib/postgresql/15/bin
[ -x "$bin/initdb" ] || { echo "postgresql-15 is missing (scripts/install-deps.sh)" >&2; exit 1; }
command=${1:?start or stop}
dir=${2:?directory}
case "$command" in
  start)
    mkdir -p "$dir/data"
    chmod 711 "$dir"
    chown -R postgres:postgres "$dir/data"
    runuser -u postgres -- "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$dir/data/sock" && chown postgres:postgres "$dir/data/sock"
    printf "\nport = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nmax_connections = 400\n" \
      "$port" "$dir/data/sock" >> "$dir/data/postgresql.conf"
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w start >/dev/null
    echo "postgresql://postgres@127.0.0.1:$port"
    ;;
  stop)
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
