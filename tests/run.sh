#!/usr/bin/env bash
# Installs what Eddy's tests need (once per machine; cached under ~/.cache) and runs them all:
# the Rust workspace (unit, golden, property and end-to-end tests, with real Kafka, S3 and PostgreSQL servers),
# the C, Go, Python and JavaScript SDK tests, the deployment checks, and the HTTP API fuzzed from its OpenAPI document.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eddy/target}"
tools="${EDDY_TOOLS:-$HOME/.cache/eddy-tools}"

echo "==> Rust target wasm32-wasip2"
rustup target add wasm32-wasip2 >/dev/null

echo "==> clang and libclang (RocksDB's build)"
if ! command -v clang >/dev/null || ! dpkg -s libclang-dev >/dev/null 2>&1; then
  sudo_if_needed=""
  [ "$(id -u)" -eq 0 ] || sudo_if_needed="sudo"
  $sudo_if_needed apt-get update -qq
  $sudo_if_needed apt-get install -y -qq clang libclang-dev >/dev/null
fi

echo "==> cmake and libcurl headers (librdkafka's build, for the Kafka connectors)"
# librdkafka 2.12's CMake build includes curl/curl.h even with curl off, so the headers must be there.
if ! command -v cmake >/dev/null || ! dpkg -s libcurl4-openssl-dev >/dev/null 2>&1; then
  sudo_if_needed=""
  [ "$(id -u)" -eq 0 ] || sudo_if_needed="sudo"
  $sudo_if_needed apt-get update -qq
  $sudo_if_needed apt-get install -y -qq cmake libcurl4-openssl-dev >/dev/null
fi

echo "==> Apache Kafka (the Kafka tests start a broker of their own through tests/services/kafka.sh)"
tests/services/kafka.sh fetch >/dev/null

echo "==> Python toolchain (componentize-py)"
if [ ! -x "$tools/py/bin/componentize-py" ] || [ ! -x "$tools/py/bin/pytest" ] || [ ! -x "$tools/py/bin/st" ]; then
  python3 -m venv "$tools/py"
  "$tools/py/bin/pip" install --quiet componentize-py==0.25.1 pytest schemathesis==4.32.5
fi

echo "==> PostgreSQL (the cluster tests start throwaway servers through tests/services/postgres.sh)"
tests/services/postgres.sh install >/dev/null

echo "==> C toolchain (clang 19, wit-bindgen, wasm-tools, the WASI preview1 adapter)"
eval "$(tests/services/c-toolchain.sh)"
export EDDY_CLANG EDDY_WIT_BINDGEN EDDY_WASM_TOOLS EDDY_WASI_ADAPTER

echo "==> Go toolchain (Go 1.26; wit-bindgen and wasm-tools come from the C toolchain)"
export EDDY_GO="${EDDY_GO:-$(command -v go || echo /usr/local/go/bin/go)}"

echo "==> S3 test server (moto)"
EDDY_MOTO_SERVER="$(tests/services/moto.sh)"
export EDDY_MOTO_SERVER

echo "==> JavaScript toolchain (componentize-qjs)"
if [ ! -x "$tools/js/node_modules/.bin/componentize-qjs" ]; then
  mkdir -p "$tools/js"
  (cd "$tools/js" && { [ -f package.json ] || npm init -y >/dev/null; } && npm install --silent --no-fund --no-audit componentize-qjs@0.4.5)
fi

export COMPONENTIZE_PY="$tools/py/bin/componentize-py"
export COMPONENTIZE_QJS="$tools/js/node_modules/.bin/componentize-qjs"

echo "==> Rust tests"
# End-to-end tests start the `eddy` binary itself (with every backend); `cargo test` builds only test harnesses.
cargo build --workspace --bins --features eddy-server/rocksdb,eddy-server/kafka
cargo test --workspace --all-targets
cargo test --workspace --doc

echo "==> Deployment: the Helm chart and the image, checked offline"
tests/deploy.sh

echo "==> Python SDK tests"
(cd guest-sdk/python && "$tools/py/bin/pytest" -q)

echo "==> JavaScript SDK tests"
node --test guest-sdk/js/

echo "==> The HTTP API fuzzed from its OpenAPI document"
tests/fuzz-api.sh "$tools/py/bin/st" 60

echo "All tests passed."
