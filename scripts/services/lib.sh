# Shared helpers for scripts/services/*: throwaway server folders, free ports, readiness waits, pid files.
# Sourced, not run. Every start script records its process id in $SERVICES_RUN/NAME.pid (with the signal
# that stops it in NAME.signal) and the variables tests read in $SERVICES_RUN/env.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Where pid files and the env file live (inside the checkout, git-ignored).
SERVICES_RUN="${POLYGLOT_SERVICES_RUN:-$ROOT/.services}"
# Server data folders live under /tmp: PostgreSQL runs as the `postgres` user, which may not reach the checkout.
# One folder per checkout, so two checkouts on one machine never share (or delete) each other's servers.
SERVICES_DATA="${POLYGLOT_SERVICES_DATA:-/tmp/polyglot-services-$(echo "$ROOT" | cksum | cut -d' ' -f1)}"
mkdir -p "$SERVICES_RUN" "$SERVICES_DATA"

svc_log() { echo "[services] $*" >&2; }
# Whether PID is a running process. A server that exited but whose parent (init, for servers started in their own
# session) has not reaped it yet is a zombie: `kill -0` still succeeds on it, so look at its state too.
svc_alive() {
  local state; state="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  [ -n "$state" ] && [[ "$state" != Z* ]]
}
svc_fail() { echo "[services] FAILED: $*" >&2; exit 1; }

# A TCP port nothing listens on, at or below 55535 (Redis Cluster's bus port is port + 10000).
svc_free_port() {
  python3 - <<'PY'
import random, socket
for _ in range(200):
    p = random.randint(20000, 55535)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); s.close(); print(p); break
    except OSError:
        s.close()
PY
}

# svc_env KEY VALUE: records a variable the tests read (appended to $SERVICES_RUN/env).
svc_env() { echo "export $1=$(printf %q "$2")" >> "$SERVICES_RUN/env"; }

# svc_pid NAME PID [SIGNAL]: records a started server so scripts/services/down can stop it.
svc_pid() { echo "$2" > "$SERVICES_RUN/$1.pid"; echo "${3:-TERM}" > "$SERVICES_RUN/$1.signal"; }

# svc_wait NAME SECONDS LOGFILE CMD...: waits until CMD succeeds; on timeout prints the log and fails.
svc_wait() {
  local name="$1" secs="$2" log="$3"; shift 3
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ -f "$SERVICES_RUN/$name.pid" ] && ! svc_alive "$(cat "$SERVICES_RUN/$name.pid")"; then
      tail -n 30 "$log" >&2 || true
      svc_fail "$name exited during start-up (log above: $log)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 30 "$log" >&2 || true
      svc_fail "$name was not ready after ${secs}s (log above: $log)"
    fi
    sleep 0.1
  done
}

# svc_apt PACKAGE...: installs Debian packages that are missing (needs root, as on CI).
svc_apt() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  svc_log "installing ${missing[*]} from Debian"
  if [ "$(id -u)" != 0 ]; then svc_fail "installing ${missing[*]} needs root (run: sudo apt-get install -y ${missing[*]})"; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${missing[@]}" >/dev/null; } \
    || svc_fail "apt-get install ${missing[*]} failed"
  # Debian's postinst may start a system-wide server; ours run in throwaway folders, so stop those.
  service postgresql stop >/dev/null 2>&1 || true
  service redis-server stop >/dev/null 2>&1 || true
  service memcached stop >/dev/null 2>&1 || true
}

# svc_venv: a Python virtual environment for PyPI wheels, created once, in .services-venv (git-ignored).
svc_venv() {
  local venv="$ROOT/.services-venv"
  if [ ! -x "$venv/bin/python" ]; then
    svc_log "creating a Python venv in $venv"
    python3 -m venv "$venv" || svc_fail "python3 -m venv failed (install python3-venv)"
  fi
  echo "$venv"
}
