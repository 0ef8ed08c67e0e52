#!/usr/bin/env bash
# Builds C sources into an Eddy user-function component:
#   guest-sdk/c/build.sh -o out.wasm app.c [more.c ...]
# The world is the one the first source names in a comment (world `mapper-udf`), or -w WORLD. Steps: `wit-bindgen c`
# for the world (into a temporary folder, never committed), clang to a WASI preview1 reactor module, then
# `wasm-tools component new` with the preview1 adapter. Tools come from EDDY_CLANG, EDDY_WIT_BINDGEN,
# EDDY_WASM_TOOLS and EDDY_WASI_ADAPTER; when one is unset, tests/services/c-toolchain.sh installs (once) and
# names them. Extra clang flags: $CFLAGS.
set -euo pipefail
sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$sdk/../.." && pwd)"

usage="build.sh [-w world] -o out.wasm app.c [more.c ...]"
# shellcheck source=../build-args.sh
source "$sdk/../build-args.sh"
# The glue compiles the exports of one kind: mapper-udf -> EDDY_MAPPER.
kind="EDDY_$(echo "${world%-udf}" | tr 'a-z-' 'A-Z_')"

if [ -z "${EDDY_CLANG:-}" ] || [ -z "${EDDY_WIT_BINDGEN:-}" ] || [ -z "${EDDY_WASM_TOOLS:-}" ] || [ -z "${EDDY_WASI_ADAPTER:-}" ]; then
  eval "$("$root/tests/services/c-toolchain.sh")"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# It names each file it writes on stderr: keep only what else it says.
"$EDDY_WIT_BINDGEN" c "$root/wit" -w "$world" --rename-world eddy_world --out-dir "$work" 2>&1 >/dev/null |
  { grep -v '^Generating ' || true; } >&2

# Older WASI libcs (Debian 12's) install under the target's former name, wasm32-wasi; it is the same target.
target=wasm32-wasip1
# clang prints the bare name when it finds no such file.
libc="$("$EDDY_CLANG" --target=wasm32-wasip1 -print-file-name=libc.a)"
case "$libc" in /*) [ -f "$libc" ] || target=wasm32-wasi ;; *) target=wasm32-wasi ;; esac

sources=()
for source in "$@"; do sources+=("$(cd "$(dirname "$source")" && pwd)/$(basename "$source")"); done
# shellcheck disable=SC2086 # CFLAGS is a list of flags
"$EDDY_CLANG" --target="$target" -mexec-model=reactor -O2 -std=c11 -Wall -Wextra ${CFLAGS:-} \
  -D"$kind" -I"$sdk" -I"$work" -Wl,--strip-debug -o "$work/core.wasm" \
  "${sources[@]}" "$sdk/eddy.c" "$sdk/eddy_glue.c" "$work/eddy_world.c" "$work/eddy_world_component_type.o"
mkdir -p "$(dirname "$out")"
"$EDDY_WASM_TOOLS" component new "$work/core.wasm" --adapt "wasi_snapshot_preview1=$EDDY_WASI_ADAPTER" -o "$out"
