#!/usr/bin/env bash
# An OpenAI-compatible embeddings endpoint for the tests (scripts/services/embeddings-server.py: POST /v1/embeddings
# with OpenAI's request, reply and error shapes, deterministic embeddings, and fault injection per model), on
# 127.0.0.1. No model can be downloaded here, so this stands in for OpenAI, vLLM or Ollama on the wire.
# Variables written: POLYGLOT_TEST_EMBEDDINGS_URL (the API base, ending in /v1), POLYGLOT_TEST_EMBEDDINGS_KEY.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/lib.sh"
command -v python3 >/dev/null || svc_fail "python3 is required for the embeddings test server"

name=embeddings
port="$(svc_free_port)"
key="test-key-$RANDOM$RANDOM"
dir="$SERVICES_DATA/$name"
mkdir -p "$dir"
log="$dir/$name.log"
(
  for fd in /proc/$BASHPID/fd/*; do n="${fd##*/}"; [ "$n" -gt 2 ] && eval "exec $n>&-" 2>/dev/null; done
  exec setsid python3 "$here/embeddings-server.py" --port "$port" --key "$key" >>"$log" 2>&1 </dev/null
) &
svc_pid "$name" $! TERM
svc_wait "$name" 30 "$log" python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=1)"
svc_env POLYGLOT_TEST_EMBEDDINGS_URL "http://127.0.0.1:$port/v1"
svc_env POLYGLOT_TEST_EMBEDDINGS_KEY "$key"
svc_log "$name ready on 127.0.0.1:$port"
