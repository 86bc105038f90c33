# Passwords in --db and --mqtt-url (user info or ?password=) never reach the logs or error messages: the start-up line, a store that cannot connect, `people recluster`, a malformed broker URL.
. "$(dirname "$0")/lib.sh"
unset INFERD_DB INFERD_MQTT_URL INFERD_DATA_DIR INFERD_TOKEN

no_secret() {
    if grep -q "sekrit" "$T/out" "$T/err"; then
        fail "a password reached the output ($1)"
    fi
    grep -q '\*\*\*' "$T/err" || fail "no redaction mark in the output ($1)"
}

PG='postgres://inferd:sekrit1@127.0.0.1:1/inferd?sslmode=disable&password=sekrit2&connect_timeout=2'
run_inferd serve --listen 127.0.0.1:0 --data-dir "$T/a" --db "$PG"
[ "$rc" -ne 0 ] || fail "serve with an unreachable PostgreSQL exited 0"
grep -q "sslmode=disable" "$T/err" || fail "the store URL is not shown at all"
no_secret "serve --db"

run_inferd people recluster --db "$PG"
[ "$rc" -ne 0 ] || fail "recluster with an unreachable PostgreSQL exited 0"
no_secret "people recluster --db"

run_inferd serve --listen 127.0.0.1:0 --data-dir "$T/b" --mqtt-url 'mqtt://bob:sekrit3@[::1'
[ "$rc" -ne 0 ] || fail "serve with a malformed broker URL exited 0"
no_secret "malformed --mqtt-url"

# A broker that is down: the daemon runs, and its start-up line hides the password.
"$INFERD" serve --listen 127.0.0.1:0 --data-dir "$T/c" --models-dir "$INFERD_TEST_MODELS" \
    --mqtt-url 'mqtt://bob:sekrit4@127.0.0.1:1' >"$T/out" 2>"$T/err" &
pid=$!
for _ in $(seq 1 100); do
    grep -q "listening on" "$T/err" && break
    sleep 0.1
done
kill -TERM "$pid"
wait "$pid" || true
grep -q "listening on" "$T/err" || fail "the daemon did not start"
grep -q "mqtt=mqtt://bob:\*\*\*@127.0.0.1:1" "$T/err" || fail "start-up line lacks the redacted broker"
no_secret "serve --mqtt-url"
echo "PASS"
