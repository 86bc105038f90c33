#!/usr/bin/env bash
# tests/pg/with_pg.sh CMD... — runs CMD with a throwaway PostgreSQL server.
#
# Starts a server (tests/pg/pgctl.sh) in a new temporary directory, exports
# INFERD_TEST_PG_URL (the server's URL) and INFERD_TEST_STORE_URLS (the
# SQLite default, then PostgreSQL with one schema per test via
# "?schema={n}", see src/store/store_pg.c), runs CMD, and stops the server
# and removes the directory whether CMD passed or not. Exits with CMD's status,
# or 77 (skip) when no PostgreSQL server is installed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: with_pg.sh CMD..." >&2; exit 2; }

if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && [ -z "${INFERD_PG_BINDIR:-}" ]; then
    echo "with_pg: no PostgreSQL server installed (apt-get install postgresql): skipped" >&2
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/inferd-pg-XXXXXX")
chmod 711 "$tmp" # the server's user (postgres, when we are root) must reach $tmp/pg
cleanup() {
    bash "$here/pgctl.sh" stop "$tmp/pg" || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

url=$(bash "$here/pgctl.sh" start "$tmp/pg")
mkdir -p "$tmp/sqlite"
export INFERD_TEST_PG_URL="$url"
export INFERD_TEST_STORE_URLS="sqlite:$tmp/sqlite/store-{n}.db $url?schema={n}"
echo "with_pg: $url" >&2
set +e
"$@"
rc=$?
set -e
exit $rc
