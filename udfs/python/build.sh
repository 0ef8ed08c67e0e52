#!/usr/bin/env bash
# Builds the example udfs/python/<name> into <name>/<name>.wasm (or $OUT). The world is the one app.py names in
# its docstring (world `mapper-udf`). Tool: $COMPONENTIZE_PY (default
# $HOME/.cache/eddy-tools/py/bin/componentize-py). Works from any directory.
set -euo pipefail
name="${1:?usage: build.sh <example folder name>}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
app="$here/$name"
world="$(grep -o -m1 'world `[a-z-]*`' "$app/app.py" | tr -d '`' | cut -d' ' -f2)"
[ -n "$world" ] || { echo "$app/app.py names no world (world \`mapper-udf\`)" >&2; exit 1; }
tool="${COMPONENTIZE_PY:-$HOME/.cache/eddy-tools/py/bin/componentize-py}"
out="${OUT:-$app/$name.wasm}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
cd "$app"
"$tool" -d "$root/wit" -w "$world" componentize app -p "$app" -p "$root/guest-sdk/python" -o "$out"
