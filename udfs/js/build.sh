#!/usr/bin/env bash
# Builds the example udfs/js/<name> into <name>/<name>.wasm (or $OUT). The world is the one app.js names in its
# first comment (world `mapper-udf`). Tool: $COMPONENTIZE_QJS (default
# $HOME/.cache/eddy-tools/js/node_modules/.bin/componentize-qjs). Works from any directory. --module-root is the
# repository so that app.js can import ../../../guest-sdk/js/eddy.js.
set -euo pipefail
name="${1:?usage: build.sh <example folder name>}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
app="$here/$name"
world="$(grep -o -m1 'world `[a-z-]*`' "$app/app.js" | tr -d '`' | cut -d' ' -f2)"
[ -n "$world" ] || { echo "$app/app.js names no world (world \`mapper-udf\`)" >&2; exit 1; }
tool="${COMPONENTIZE_QJS:-$HOME/.cache/eddy-tools/js/node_modules/.bin/componentize-qjs}"
out="${OUT:-$app/$name.wasm}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
"$tool" --wit "$root/wit" --world "$world" --js "$app/app.js" --module-root "$root" --sync -o "$out"
