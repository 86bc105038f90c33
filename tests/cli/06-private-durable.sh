# The data dir and the SQLite files are private (0700/0600) whatever they were, spooled uploads too, and SQLite fsyncs every commit unless the URL asks for ?synchronous=normal (counted with strace on bench_queue's enqueues).
. "$(dirname "$0")/lib.sh"
unset INFERD_DB INFERD_DATA_DIR INFERD_TOKEN INFERD_TOKEN_FILE INFERD_LISTEN

mode() { stat -c %a "$1"; }

# A data dir and an (empty, valid) database left world-readable by hand.
umask 022
mkdir -p "$T/d"
chmod 0755 "$T/d"
: >"$T/d/inferd.db"
chmod 0644 "$T/d/inferd.db"
# The API role alone: no worker runs the job, so its spooled upload stays
# (a worker would finish it and delete the upload before we look).
"$INFERD" api --listen 127.0.0.1:0 --data-dir "$T/d" >"$T/out" 2>"$T/err" &
pid=$!
port=""
for _ in $(seq 1 200); do
    port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$T/err" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { kill -KILL $pid; fail "the daemon did not start"; }
# An upload is spooled under DATA_DIR/uploads.
code=$(curl -s -o "$T/up.json" -w '%{http_code}' -H 'Content-Type: image/jpeg' \
    --data-binary @"$INFERD_TESTDATA/faceapi/sample1.jpg" \
    "http://127.0.0.1:$port/v1/jobs?asset_id=p1&tasks=faces")
kill -TERM $pid
wait $pid || true
[ "$code" = 202 ] || fail "upload -> $code $(cat "$T/up.json")"
[ "$(mode "$T/d")" = 700 ] || fail "data dir is $(mode "$T/d"), want 700"
for f in "$T/d/inferd.db" "$T/d/inferd.db-wal" "$T/d/inferd.db-shm"; do
    [ ! -e "$f" ] || [ "$(mode "$f")" = 600 ] || fail "$f is $(mode "$f"), want 600"
done
n=0
while IFS= read -r f; do
    n=$((n + 1))
    [ "$(mode "$f")" = 600 ] || fail "spooled $f is $(mode "$f"), want 600"
done < <(find "$T/d/uploads" -type f)
[ "$n" -ge 1 ] || fail "no spooled upload found under $T/d/uploads"
[ "$(mode "$T/d/uploads")" = 700 ] || fail "uploads dir is $(mode "$T/d/uploads"), want 700"

# Durability: fsyncs while enqueueing 40 jobs (and claiming and completing them).
bq=$(dirname "$INFERD")/bench/bench_queue
[ -x "$bq" ] || fail "$bq not built"
command -v strace >/dev/null || fail "strace not installed (scripts/setup.sh installs it)"
# LeakSanitizer refuses to run under ptrace: the ASan build checks leaks everywhere else.
syncs() {
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
        strace -f -qq -c -e trace=fsync,fdatasync -o "$T/strace" "$bq" --db "$1" --jobs 40 \
        >/dev/null 2>"$T/bq.err" || fail "bench_queue --db $1 failed: $(tail -5 "$T/bq.err")"
    awk '$NF == "fsync" || $NF == "fdatasync" { s += $4 } END { print s + 0 }' "$T/strace"
}
full=$(syncs "sqlite:$T/full.db")
normal=$(syncs "sqlite:$T/normal.db?synchronous=normal")
echo "fsync/fdatasync calls for 40 jobs: $full with the default, $normal with synchronous=normal"
[ "$full" -ge 40 ] || fail "only $full fsyncs for 40 enqueued jobs: commits are not synced"
[ "$normal" -lt "$full" ] || fail "synchronous=normal did not sync less ($normal vs $full)"
echo "PASS"
