#!/usr/bin/env bash
# memcached servers for the tests, on 127.0.0.1 in throwaway folders (Debian's `memcached`, 1.6):
#   memcached       the server the conformance and behaviour tests use
#   memcachedfault  another one that the fault tests stop and restart on the same port (memcached-ctl memcachedfault ...)
# Variables written: POLYGLOT_TEST_MEMCACHED_URL, POLYGLOT_TEST_MEMCACHEDFAULT_URL.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ctl="$(dirname "$0")/memcached-ctl"

svc_apt memcached
command -v memcached >/dev/null || svc_fail "memcached is not on PATH after installing the Debian package"

# setup_mc NAME: picks a free port, records the settings and starts the server.
setup_mc() {
  local name="$1" port dir
  port="$(svc_free_port)"
  dir="$SERVICES_DATA/$name"
  rm -rf "$dir"; mkdir -p "$dir"
  printf 'PORT=%q\nDIR=%q\nMEMORY=%q\n' "$port" "$dir" 64 > "$SERVICES_RUN/$name.conf"
  "$ctl" "$name" start
  svc_log "$name ready on 127.0.0.1:$port ($(memcached -V))"
}

setup_mc memcached
source "$SERVICES_RUN/memcached.conf"
svc_env POLYGLOT_TEST_MEMCACHED_URL "memcached://127.0.0.1:$PORT"

setup_mc memcachedfault
source "$SERVICES_RUN/memcachedfault.conf"
svc_env POLYGLOT_TEST_MEMCACHEDFAULT_URL "memcached://127.0.0.1:$PORT"
