#!/usr/bin/env bash
# Installs what building a C user function into a component needs, once per machine (cached under
# $EDDY_TOOLS, default ~/.cache/eddy-tools), and prints its locations as shell assignments on stdout, progress on
# stderr:  eval "$(tests/services/c-toolchain.sh)"  sets EDDY_CLANG, EDDY_WIT_BINDGEN, EDDY_WASM_TOOLS and
# EDDY_WASI_ADAPTER, which udfs/c/build.sh reads.
set -euo pipefail

tools="${EDDY_TOOLS:-$HOME/.cache/eddy-tools}"
wasm_tools_version=1.263.0
wit_bindgen_version=0.63.0
# The adapter that turns a preview1 module into a WASI 0.2 component; its version follows the server's wasmtime.
adapter_version=48.0.8
llvm=19

say() { echo "c-toolchain: $*" >&2; }

# clang with the wasm32 runtime library, the wasm linker and a WASI libc.
packages=(clang-$llvm lld-$llvm wasi-libc libclang-rt-$llvm-dev-wasm32)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  sudo_if_needed=""
  [ "$(id -u)" -eq 0 ] || sudo_if_needed="sudo"
  $sudo_if_needed apt-get update -qq >&2
  $sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
clang="$(command -v clang-$llvm || echo /usr/lib/llvm-$llvm/bin/clang)"

# wit-bindgen (C bindings) and wasm-tools (component new), built once: a long build.
cargo_root="$tools/cargo"
installed() { [ -x "$cargo_root/bin/$1" ] && "$cargo_root/bin/$1" --version 2>/dev/null | grep -q " $2"; }
crates=()
installed wasm-tools $wasm_tools_version || crates+=("wasm-tools@$wasm_tools_version")
installed wit-bindgen $wit_bindgen_version || crates+=("wit-bindgen-cli@$wit_bindgen_version")
if [ ${#crates[@]} -gt 0 ]; then
  say "building ${crates[*]} (several minutes, once)"
  # A target folder of its own, so that this build never waits on (or wipes) the workspace's.
  CARGO_TARGET_DIR="$tools/cargo-build" nice -n 19 cargo install --quiet --locked --root "$cargo_root" "${crates[@]}" >&2
  rm -rf "$tools/cargo-build"
fi

# The WASI preview1 reactor adapter ships inside a registry crate: fetch it with a throwaway project and copy the
# file out.
adapter="$tools/wasi-adapter/$adapter_version/wasi_snapshot_preview1.reactor.wasm"
if [ ! -s "$adapter" ]; then
  say "fetching the WASI preview1 adapter $adapter_version"
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$scratch/src"
  : >"$scratch/src/lib.rs"
  cat >"$scratch/Cargo.toml" <<EOF
[package]
name = "fetch-wasi-adapter"
version = "0.0.0"
edition = "2021"

[dependencies]
wasi-preview1-component-adapter-provider = "=$adapter_version"
EOF
  (cd "$scratch" && cargo fetch --quiet >&2)
  cargo_home="${CARGO_HOME:-$HOME/.cargo}"
  crate="wasi-preview1-component-adapter-provider-$adapter_version"
  src="$(find "$cargo_home/registry/src" -maxdepth 2 -type d -name "$crate" 2>/dev/null | head -n1)"
  if [ -z "$src" ]; then
    # cargo fetch may leave only the packed crate: it is a gzipped tar.
    packed="$(find "$cargo_home/registry/cache" -maxdepth 2 -name "$crate.crate" | head -n1)"
    [ -n "$packed" ] || { say "cargo fetch left no $crate"; exit 1; }
    tar -xzf "$packed" -C "$scratch"
    src="$scratch/$crate"
  fi
  found="$(find "$src" -name 'wasi_snapshot_preview1.reactor.wasm' | head -n1)"
  [ -n "$found" ] || { say "no reactor adapter inside $src"; exit 1; }
  mkdir -p "$(dirname "$adapter")"
  cp "$found" "$adapter.tmp" && mv "$adapter.tmp" "$adapter"
fi

printf 'EDDY_CLANG=%q\n' "$clang"
printf 'EDDY_WIT_BINDGEN=%q\n' "$cargo_root/bin/wit-bindgen"
printf 'EDDY_WASM_TOOLS=%q\n' "$cargo_root/bin/wasm-tools"
printf 'EDDY_WASI_ADAPTER=%q\n' "$adapter"
