#!/usr/bin/env bash
# Builds bench-w1-map.wasm (world mapper-udf) from app.py next to this script; OUT=path overrides the output.
# Tool: $COMPONENTIZE_PY (default $HOME/.cache/eddy-tools/py/bin/componentize-py). Works from any directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
tool="${COMPONENTIZE_PY:-$HOME/.cache/eddy-tools/py/bin/componentize-py}"
out="${OUT:-$here/bench-w1-map.wasm}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
cd "$here"
"$tool" -d "$root/wit" -w mapper-udf componentize app \
  -p "$here" -p "$root/guest-sdk/python" -o "$out"
