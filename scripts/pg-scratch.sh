#!/usr/bin/env bash
# pg-scratch.sh — a throw-away PostgreSQL server in a directory of its own,
# listening on a unix socket there only: for the tests (tests/harness.c),
# `make bench`, and trying `emq-router --store postgresql` by hand.
#
#   scripts/pg-scratch.sh start DIR [--no-fsync]   initdb DIR/data, start,
#                                                  create database emq, print
#                                                  the connection string
#   scripts/pg-scratch.sh restart DIR DOWN_MS      stop (fast), wait, start
#   scripts/pg-scratch.sh stop DIR                 stop (immediate)
#
# As root the server runs as the postgres user (it refuses to run as root):
# DIR is given to that user, and its parent opened for it to pass through.
# Logs: DIR/initdb.log, DIR/pg_ctl.log, DIR/server.log.
set -euo pipefail

usage () {
    sed -n '2,14p' "$0" >&2
    exit 2
}

[ $# -ge 2 ] || usage
command=$1
dir=$2

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "pg-scratch: PostgreSQL is not installed (apt-get install postgresql)" >&2
    exit 3
fi

as_server () {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

server_start () {
    # -o options are kept in DIR so that a restart starts the same server.
    as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "$(cat "$dir/options")" start >>"$dir/pg_ctl.log" 2>&1
}

case $command in
start)
    fsync=on
    [ "${3:-}" = "--no-fsync" ] && fsync=off
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
        chmod o+x "$(dirname "$dir")"
    fi
    as_server "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 \
        --locale C >>"$dir/initdb.log" 2>&1
    echo "-c listen_addresses='' -c unix_socket_directories=$dir -c fsync=$fsync" \
         "-c shared_buffers=32MB -c max_connections=30" >"$dir/options"
    server_start
    as_server "$bin/createdb" -h "$dir" -U postgres emq >>"$dir/pg_ctl.log" 2>&1
    echo "host=$dir user=postgres dbname=emq"
    ;;
restart)
    [ $# -eq 3 ] || usage
    as_server "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 10 stop >>"$dir/pg_ctl.log" 2>&1
    sleep "$(awk "BEGIN { print $3 / 1000 }")"
    server_start
    ;;
stop)
    as_server "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 10 stop \
        >>"$dir/pg_ctl.log" 2>&1 || true
    ;;
*)
    usage
    ;;
esac
