#!/usr/bin/env bash
# Redis servers for the tests (Redis 7 from Debian: redis-server, redis-tools), on 127.0.0.1 in throwaway folders:
#   redis            the main server; also serves TLS on a second port (throwaway self-signed certificate)
#                    when Debian's build supports TLS
#   redisfault       a separate server the engine's fault tests stop and restart mid-run (redis-ctl redisfault ...)
#   redisclientfault another one for the client's own fault tests (kill mid-pipeline, DEBUG SLEEP timeouts), so the
#                    two sets of fault tests, which run in parallel, never stop each other's server
#   redis-cluster-1..3  a 3-master Redis Cluster (no replicas); ports <= 55535 (the bus port is port + 10000)
# All have DEBUG enabled (for DEBUG SLEEP in timeout tests), no persistence, and are stopped by process id.
# Variables written: POLYGLOT_TEST_REDIS_URL, POLYGLOT_TEST_REDISFAULT_URL, POLYGLOT_TEST_REDISCLIENTFAULT_URL,
# POLYGLOT_TEST_REDIS_CLUSTER_URLS
# (comma-separated redis:// URLs of the masters), and with TLS POLYGLOT_TEST_REDIS_TLS_URL (rediss://...) and
# POLYGLOT_TEST_REDIS_TLS_CA (the certificate to trust).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ctl="$(dirname "$0")/redis-ctl"

svc_apt redis-server redis-tools

# cluster_port: a free port whose cluster bus port (port + 10000) is free too.
cluster_port() {
  local p
  for _ in $(seq 1 50); do
    p="$(svc_free_port)"
    if python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', $p + 10000)); s.close()" 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  svc_fail "found no free port pair (port and port + 10000) for the Redis Cluster"
}

# setup_redis NAME [extra config lines...]: writes a fresh folder and config, then starts the server
# (on $REDIS_PORT if set, else a free port).
setup_redis() {
  local name="$1" port dir; shift
  # Started before (scripts/services/up redis run again): stop the old server first, so none is left behind.
  [ -f "$SERVICES_RUN/$name.conf" ] && "$ctl" "$name" stop
  port="${REDIS_PORT:-$(svc_free_port)}"
  dir="$SERVICES_DATA/$name"
  rm -rf "$dir"; mkdir -p "$dir"
  {
    echo "port $port"
    echo "bind 127.0.0.1"
    echo "protected-mode no"
    echo "dir $dir"
    echo "logfile $dir/redis.log"
    echo "save \"\""
    echo "appendonly no"
    echo "daemonize no"
    echo "enable-debug-command local"
    for line in "$@"; do echo "$line"; done
  } > "$dir/redis.conf"
  printf 'CONF=%q\nPORT=%q\nDIR=%q\n' "$dir/redis.conf" "$port" "$dir" > "$SERVICES_RUN/$name.conf"
  "$ctl" "$name" start
  svc_log "$name ready on 127.0.0.1:$port ($(redis-server --version | cut -d' ' -f1-3))"
}

# TLS: Debian's redis-server links OpenSSL when built with TLS support.
tls_lines=()
tls_port=""
# (grep reads all of ldd's output: with -q it could exit first, and under pipefail the SIGPIPE would read as "no TLS")
if ldd "$(command -v redis-server)" 2>/dev/null | grep libssl >/dev/null; then
  tlsdir="$SERVICES_DATA/redis-tls"
  rm -rf "$tlsdir"; mkdir -p "$tlsdir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=polyglot-redis-test" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -addext "basicConstraints=critical,CA:TRUE" \
    -keyout "$tlsdir/server.key" -out "$tlsdir/server.crt" >/dev/null 2>&1 \
    || svc_fail "openssl could not make a test certificate (install openssl)"
  tls_port="$(svc_free_port)"
  tls_lines=("tls-port $tls_port" "tls-cert-file $tlsdir/server.crt" "tls-key-file $tlsdir/server.key"
             "tls-ca-cert-file $tlsdir/server.crt" "tls-auth-clients no")
else
  svc_log "this redis-server was built without TLS; the TLS tests will report POLYGLOT_TEST_REDIS_TLS_URL missing"
fi

setup_redis redis "${tls_lines[@]}"
source "$SERVICES_RUN/redis.conf"
svc_env POLYGLOT_TEST_REDIS_URL "redis://127.0.0.1:$PORT"
if [ -n "$tls_port" ]; then
  svc_env POLYGLOT_TEST_REDIS_TLS_URL "rediss://127.0.0.1:$tls_port"
  svc_env POLYGLOT_TEST_REDIS_TLS_CA "$tlsdir/server.crt"
  svc_log "redis also serves TLS on 127.0.0.1:$tls_port"
fi

setup_redis redisfault
source "$SERVICES_RUN/redisfault.conf"
svc_env POLYGLOT_TEST_REDISFAULT_URL "redis://127.0.0.1:$PORT"
setup_redis redisclientfault
source "$SERVICES_RUN/redisclientfault.conf"
svc_env POLYGLOT_TEST_REDISCLIENTFAULT_URL "redis://127.0.0.1:$PORT"

# A 3-master cluster.
nodes=(); urls=()
for i in 1 2 3; do
  REDIS_PORT="$(cluster_port)" setup_redis "redis-cluster-$i" "cluster-enabled yes" "cluster-config-file nodes.conf" "cluster-node-timeout 2000"
  source "$SERVICES_RUN/redis-cluster-$i.conf"
  nodes+=("127.0.0.1:$PORT"); urls+=("redis://127.0.0.1:$PORT")
done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes \
  >"$SERVICES_DATA/redis-cluster-create.log" 2>&1 \
  || { cat "$SERVICES_DATA/redis-cluster-create.log" >&2; svc_fail "redis-cli --cluster create failed"; }
cluster_ok() {
  local n
  for n in "${nodes[@]}"; do
    redis-cli -h 127.0.0.1 -p "${n##*:}" cluster info | grep -q 'cluster_state:ok' || return 1
  done
}
svc_wait redis-cluster-1 30 "$SERVICES_DATA/redis-cluster-create.log" cluster_ok
svc_env POLYGLOT_TEST_REDIS_CLUSTER_URLS "$(IFS=,; echo "${urls[*]}")"
svc_log "redis cluster ready: ${nodes[*]} (cluster_state:ok)"
