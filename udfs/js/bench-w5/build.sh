#!/usr/bin/env bash
# Builds bench-w5.wasm (world processor-udf) from app.js next to this script; OUT=path overrides the output.
# Tool: $COMPONENTIZE_QJS (default $HOME/.cache/eddy-tools/js/node_modules/.bin/componentize-qjs). Works from any
# directory. --module-root is the repository so that app.js can import ../../../guest-sdk/js/eddy.js.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
tool="${COMPONENTIZE_QJS:-$HOME/.cache/eddy-tools/js/node_modules/.bin/componentize-qjs}"
out="${OUT:-$here/bench-w5.wasm}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
"$tool" --wit "$root/wit" --world processor-udf --js "$here/app.js" --module-root "$root" --sync -o "$out"
