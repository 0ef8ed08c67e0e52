#!/usr/bin/env bash
# Installs moto's S3 server (Python, in memory, no compile) for the S3 tests into the tools venv, once per machine,
# and prints the path of its `moto_server` binary: EDDY_MOTO_SERVER="$(tests/services/moto.sh)".
set -euo pipefail

version=5.2.5
venv="${EDDY_TOOLS:-$HOME/.cache/eddy-tools}/py"

if [ ! -x "$venv/bin/moto_server" ]; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  # Progress goes to stderr: stdout carries only the path.
  "$venv/bin/pip" install --quiet "moto[server]==$version" >&2
fi
echo "$venv/bin/moto_server"
