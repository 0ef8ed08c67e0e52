#!/usr/bin/env bash
# Builds the example udfs/go/<name> into <name>/<name>.wasm (or $OUT), with the world its app.go names
# (world `mapper-udf`), through guest-sdk/go/build.sh. Works from any directory.
set -euo pipefail
name="${1:?usage: build.sh <example folder name>}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${OUT:-$here/$name/$name.wasm}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
exec "$here/../../guest-sdk/go/build.sh" -o "$out" "$here/$name"/*.go
