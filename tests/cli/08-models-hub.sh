# `inferd models fetch immich/MODEL` from a local fake hub (tests/unit/hub_server.py)
# serving a CLIP model written by mkclip, then `inferd analyze --image-embedder MODEL`
# runs it and `inferd models list` recognises and checks it.
. "$(dirname "$0")/lib.sh"
unset INFERD_HUB_URL INFERD_ALLOW_PRIVATE_URLS

SRC=$(cd "$(dirname "$0")/../.." && pwd)
MKCLIP=${INFERD_MKCLIP:-$(dirname "$INFERD")/mkclip}
[ -x "$MKCLIP" ] || fail "$MKCLIP not found (build the mkclip target or set INFERD_MKCLIP)"
need_file "$INFERD_TESTDATA/faceapi/sample1.jpg"

mkdir -p "$T/srv/immich-app"
"$MKCLIP" --dim 32 --merges "$SRC/tests/fixtures/clip/merges.txt" "$T/srv/immich-app/clip-cli" \
    || fail "mkclip failed"
cp "$T/srv/immich-app/clip-cli/visual/model.onnx" "$T/srv/immich-app/clip-cli/visual/model.armnn"

# The server runs until its stdin closes: a fifo held open by this shell.
mkfifo "$T/in"
python3 -u "$SRC/tests/unit/hub_server.py" "$T/srv" <"$T/in" >"$T/port" &
srv=$!
exec 3>"$T/in"
trap 'exec 3>&-; wait $srv 2>/dev/null; rm -rf "$T"' EXIT
port=""
for _ in $(seq 1 200); do
    port=$(sed -n 's/^PORT \([0-9]*\)$/\1/p' "$T/port")
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || fail "hub_server.py did not start"
hub="http://127.0.0.1:$port"

run_inferd models fetch immich/clip-cli --hub-url "$hub" --models-dir "$T/models"
[ "$rc" -eq 1 ] || fail "a loopback hub without --allow-private-urls: exit $rc, expected 1"
grep -q "refused" "$T/err" || fail "no refusal message"

run_inferd models fetch immich/clip-cli --hub-url "$hub" --allow-private-urls \
    --models-dir "$T/models"
[ "$rc" -eq 0 ] || fail "fetch: exit $rc"
grep -q "clip-cli: installed in" "$T/out" || fail "no install line"
[ ! -e "$T/models/clip-cli/visual/model.armnn" ] || fail "model.armnn was installed"

run_inferd analyze --models-dir "$T/models" --image-embedder clip-cli --detector "" \
    --face-embedder "" "$INFERD_TESTDATA/faceapi/sample1.jpg"
[ "$rc" -eq 0 ] || fail "analyze with the fetched model: exit $rc"
grep -q '"image_embedding":{"model":"clip-cli","dim":32' "$T/out" \
    || fail "analyze did not embed with clip-cli"

run_inferd models list --models-dir "$T/models"
[ "$rc" -eq 0 ] || fail "models list: exit $rc"
grep -Eq '^clip-cli +clip +32 +- +ok$' "$T/out" || fail "models list does not show clip-cli ok"
echo "ok"
