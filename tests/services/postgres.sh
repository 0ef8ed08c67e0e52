#!/usr/bin/env bash
# A throwaway PostgreSQL on a loopback port, for the tests of the cluster's control plane.
#   tests/services/postgres.sh install         installs the server once (Debian's package) and prints its bin folder
#   tests/services/postgres.sh start DIR PORT  creates a server with its files in DIR (if new), starts it, prints its URL
#   tests/services/postgres.sh stop DIR        stops it (fast shutdown)
# PostgreSQL refuses to run as root: as root it runs as the `postgres` user the package creates.
set -euo pipefail

bin_dir() {
  local found
  found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  [ -n "$found" ] && [ -x "$found/pg_ctl" ] && echo "$found"
}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
  install)
    if ! bin_dir >/dev/null; then
      sudo_if_needed=""
      [ "$(id -u)" -eq 0 ] || sudo_if_needed="sudo"
      $sudo_if_needed apt-get update -qq >&2
      $sudo_if_needed apt-get install -y -qq postgresql >&2
    fi
    bin_dir
    ;;
  start)
    dir="$2" port="$3" bin="$(bin_dir)"
    chmod 755 "$dir"
    [ "$(id -u)" -ne 0 ] || chown postgres "$dir"
    if [ ! -d "$dir/data" ]; then
      as_owner "$bin/initdb" -D "$dir/data" -A trust -U eddy >/dev/null
    fi
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    echo "postgres://eddy@127.0.0.1:$port/postgres"
    ;;
  stop)
    as_owner "$(bin_dir)/pg_ctl" -D "$2/data" -m fast -w stop >/dev/null
    ;;
  *)
    echo "usage: $0 install | start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
