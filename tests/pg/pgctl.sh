#!/usr/bin/env bash
# tests/pg/pgctl.sh — a throwaway PostgreSQL server for tests.
#
#   pgctl.sh start DIR   initdb in DIR (if new), start on 127.0.0.1 at a free
#                        port, print the URL: postgres://postgres@127.0.0.1:PORT/postgres
#   pgctl.sh url DIR     print the URL of the server started in DIR
#   pgctl.sh stop DIR    stop it (a no-op when it is not running)
#
# Uses Debian's postgresql (/usr/lib/postgresql/<ver>/bin). The server cannot
# run as root: as root, DIR is given to the `postgres` system user and every
# server command runs through `runuser -u postgres --`; as any other user it
# runs as that user. Trust authentication, a unix socket in DIR and
# fsync/synchronous_commit off: for tests only, never for data you keep.
# Every wait is bounded (pg_ctl -t).
set -euo pipefail

die() { printf 'pgctl: %s\n' "$*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: pgctl.sh start|stop|url DIR"
cmd=$1
dir=$2

bindir=${INFERD_PG_BINDIR:-}
if [ -z "$bindir" ]; then
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/pg_ctl" ] && bindir=$d
    done
fi
[ -n "$bindir" ] && [ -x "$bindir/pg_ctl" ] || die "PostgreSQL server not found (apt-get install postgresql)"

if [ "$(id -u)" = 0 ]; then
    as_pg() { runuser -u postgres -- "$@"; }
    pg_owner=postgres
else
    as_pg() { "$@"; }
    pg_owner=$(id -un)
fi

url_of() {
    [ -f "$dir/port" ] || die "no server in $dir"
    printf 'postgres://postgres@127.0.0.1:%s/postgres\n' "$(cat "$dir/port")"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

running() {
    [ -f "$dir/data/postmaster.pid" ] && as_pg "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

start() {
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if running; then
        url_of
        return 0
    fi
    chown "$pg_owner" "$dir"
    chmod 700 "$dir"
    as_pg test -x "$dir" || die "$pg_owner cannot reach $dir (a parent directory is private)"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_pg "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C \
            --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    fi
    # The port is free when picked but may be taken before the server binds
    # it: try a few.
    for _ in 1 2 3 4 5; do
        port=$(free_port)
        if as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 -o \
            "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
            start >/dev/null 2>&1; then
            echo "$port" >"$dir/port"
            url_of
            return 0
        fi
        running && break
    done
    tail -n 20 "$dir/server.log" >&2 2>/dev/null || true
    die "server did not start in $dir"
}

stop() {
    [ -d "$dir" ] || return 0
    if running; then
        as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
            as_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    rm -f "$dir/port"
}

case $cmd in
start) start ;;
stop) stop ;;
url) url_of ;;
*) die "unknown command $cmd (start|stop|url)" ;;
esac
