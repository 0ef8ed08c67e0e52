#!/usr/bin/env bash
# Builds Go sources into an Eddy user-function component:
#   guest-sdk/go/build.sh -o out.wasm app.go [more.go ...]
# The world is the one the first source names in a comment (world `mapper-udf`), or -w WORLD. Steps, in a temporary
# folder (never committed): `wit-bindgen go` for the world, the SDK and the sources as one module, `go build` to a
# WASI preview1 reactor, `wasm-tools component embed` of the world and `component new` with the preview1 adapter.
# Tools come from EDDY_GO (else go on PATH, else /usr/local/go/bin/go), EDDY_WIT_BINDGEN, EDDY_WASM_TOOLS and
# EDDY_WASI_ADAPTER; when one of the last three is unset, tests/services/c-toolchain.sh installs (once) and names
# them. The build never reaches the network: everything it compiles is here.
set -euo pipefail
sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$sdk/../.." && pwd)"

usage="build.sh [-w world] -o out.wasm app.go [more.go ...]"
# shellcheck source=../build-args.sh
source "$sdk/../build-args.sh"

if [ -z "${EDDY_WIT_BINDGEN:-}" ] || [ -z "${EDDY_WASM_TOOLS:-}" ] || [ -z "${EDDY_WASI_ADAPTER:-}" ]; then
  eval "$("$root/tests/services/c-toolchain.sh")"
fi
go="${EDDY_GO:-$(command -v go || echo /usr/local/go/bin/go)}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# One module, `eddy`: the SDK at its root (import "eddy"), the bindings under wit/, the author's package main
# under app/.
printf 'module eddy\n\ngo 1.26\n' >"$work/go.mod"
cp "$sdk"/eddy/*.go "$work/"
cp -r "$sdk/eddy/process" "$sdk/witrt" "$work/"
"$EDDY_WIT_BINDGEN" go "$root/wit" -w "$world" --pkg-name eddy/wit --out-dir "$work/wit" 2>&1 >/dev/null |
  { grep -v '^Generating ' || true; } >&2
# The generated code imports a support module that not every machine can download; the SDK carries its own
# (witrt/), with the same API.
grep -rl 'go.bytecodealliance.org/pkg/wit/' "$work/wit" | xargs sed -i 's#"go.bytecodealliance.org/pkg/wit/#"eddy/witrt/#'
# The exports call the SDK's glue (only the packages the world imports are compiled).
mkdir -p "$work/wit/exports"
cp -r "$sdk"/glue/export_* "$work/wit/exports/"
mkdir -p "$work/app"
for source in "$@"; do cp "$source" "$work/app/"; done
printf 'package main\n\n// Links the exports of the world.\nimport _ "eddy/wit/exports/wit_exports"\n' >"$work/app/zz_eddy_exports.go"

# -checklinkname=0: witrt reaches the runtime's sbrk for memory the adapter asks for before the runtime started.
(cd "$work" && GOOS=wasip1 GOARCH=wasm GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local \
  "$go" build -buildmode=c-shared -trimpath -ldflags='-checklinkname=0 -s -w' -o "$work/core.wasm" ./app)
"$EDDY_WASM_TOOLS" component embed "$root/wit" -w "$world" "$work/core.wasm" -o "$work/embedded.wasm"
mkdir -p "$(dirname "$out")"
"$EDDY_WASM_TOOLS" component new "$work/embedded.wasm" --adapt "wasi_snapshot_preview1=$EDDY_WASI_ADAPTER" -o "$out"
