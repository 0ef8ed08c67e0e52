#!/usr/bin/env bash
# Fuzzes Eddy's HTTP API from its own OpenAPI document: starts a server (the `eddy` binary of the last build) on a
# free loopback port with a fresh data folder, lets schemathesis generate requests for every operation, and fails
# on any 5xx, any status code or content type the document does not declare, and any response that breaks its
# schema. Usage: tests/fuzz-api.sh PATH-TO-st [SECONDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

st="$1"
seconds="${2:-60}"
eddy="${CARGO_TARGET_DIR:-target}/debug/eddy"
if [ ! -x "$eddy" ]; then
  echo "fuzz-api: $eddy is missing; build the workspace first (cargo test --workspace --all-targets does)" >&2
  exit 1
fi
data="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

"$eddy" serve --listen "127.0.0.1:$port" --data-dir "$data" >"$data/server.log" 2>&1 &
server=$!
stop() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$data"
}
trap stop EXIT

# Wait until it answers (python3 rather than curl: one tool fewer to install).
python3 - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(600):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1)
        break
    except Exception:
        time.sleep(0.1)
PY

# Draining takes the server out of service for good (its readiness answers 503 from then on), so the fuzzer does
# not call it; tests/all/cluster.rs drives it.
"$st" run "http://127.0.0.1:$port/openapi.json" \
  --exclude-path-regex '/drain$' \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing --max-examples 20 --seed 1 --max-time "$seconds" \
  --warnings off --request-timeout 10
