#!/usr/bin/env bash
# Builds the example udfs/c/<name> into <name>/<name>.wasm (or $OUT), with the world its app.c names
# (world `mapper-udf`), through guest-sdk/c/build.sh. Works from any directory.
set -euo pipefail
name="${1:?usage: build.sh <example folder name>}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${OUT:-$here/$name/$name.wasm}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
exec "$here/../../guest-sdk/c/build.sh" -o "$out" "$here/$name/app.c"
