#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the distributed-search tests and print the line that
# points the tests at it. CI calls it as
#     eval "$(scripts/ci_postgres.sh)"
# which exports NASTK_TEST_POSTGRES=postgresql://nastk:nastk@127.0.0.1:PORT/nastk (the tests create
# and drop one database per test, so the role may create databases). Installs the Debian package
# `postgresql` when its binaries are missing (needs root). Diagnostics go to stderr; stdout carries
# only the export line. `scripts/ci_postgres.sh stop` stops the server that NASTK_PG_DATA names.
set -euo pipefail

log() { echo "ci_postgres: $*" >&2; }

bindir() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

if ! BIN="$(bindir)"; then
  if [ "$(id -u)" != 0 ]; then
    log "PostgreSQL is not installed and this user cannot install it (needs root: apt-get install postgresql)"
    exit 1
  fi
  log "installing the Debian package postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  BIN="$(bindir)"
fi

# initdb refuses to run as root: run the server as the package's `postgres` user in that case.
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

if [ "${1:-}" = stop ]; then
  [ -n "${NASTK_PG_DATA:-}" ] || { log "NASTK_PG_DATA is not set: no server to stop"; exit 1; }
  as_pg "$BIN/pg_ctl" -D "$NASTK_PG_DATA" -m fast -w stop >&2
  rm -rf "$NASTK_PG_DATA"
  exit 0
fi

DATA="$(mktemp -d /tmp/nastk-pg.XXXXXX)"
chmod 700 "$DATA"
[ "$(id -u)" = 0 ] && chown postgres "$DATA"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 >/dev/null
as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c fsync=off -c max_connections=200" start >&2
as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -q \
  -c "CREATE ROLE nastk LOGIN CREATEDB PASSWORD 'nastk';" -c "CREATE DATABASE nastk OWNER nastk;" >&2
log "PostgreSQL running on 127.0.0.1:$PORT (data $DATA)"

echo "export NASTK_TEST_POSTGRES=postgresql://nastk:nastk@127.0.0.1:$PORT/nastk NASTK_PG_DATA=$DATA"
