# analyze on corrupt, truncated, empty, non-image, missing and huge-header files prints an error line with a clear code for each, still succeeds on a valid image after them, exits 1 and never crashes.
. "$(dirname "$0")/lib.sh"

JPEG=$INFERD_TESTDATA/faceapi/sample2.jpg
GOOD=$SKIMAGE/chelsea.png
need_file "$JPEG"
need_file "$GOOD"

# Inputs, all written here with a fixed seed so that a failure reproduces.
python3 - "$JPEG" "$T" <<'PY' || fail "could not write the bad inputs"
import random, struct, sys, zlib

src, d = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
rng = random.Random(20240601)

# Corrupt: the real header up to and including the start-of-scan segment,
# then random bytes instead of the entropy-coded data, then a proper
# end-of-image marker, so that the file is damaged but not truncated.
sos = data.index(b"\xff\xda")
seglen = struct.unpack(">H", data[sos + 2:sos + 4])[0]
head = data[:sos + 2 + seglen]
noise = bytes(rng.randrange(256) for _ in range(60000))
open(f"{d}/corrupt.jpg", "wb").write(head + noise + b"\xff\xd9")

# Truncated: the first 30% of the file.
open(f"{d}/truncated.jpg", "wb").write(data[:len(data) * 3 // 10])

open(f"{d}/empty.jpg", "wb").close()
open(f"{d}/text.jpg", "w").write("this is a text file, not a JPEG\n" * 20)

# Huge: a well-formed PNG whose IHDR claims 60000 x 60000 RGB, with a tiny
# IDAT. Refusing it must not need more than the header.
def chunk(kind, body):
    return (struct.pack(">I", len(body)) + kind + body +
            struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff))

ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
       chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
open(f"{d}/huge.png", "wb").write(png)
PY

# name:expected codes (any of, |-separated)
cases="corrupt.jpg:decode truncated.jpg:decode empty.jpg:decode text.jpg:decode
missing.jpg:decode|not_found huge.png:too_big"
args=()
for c in $cases; do
    args+=("$T/${c%%:*}")
done
args+=("$GOOD")

run_inferd analyze --models-dir "$INFERD_TEST_MODELS" "${args[@]}"
[ "$rc" -eq 1 ] || fail "exit status $rc, expected 1 (some images failed)"

cat >"$T/check.py" <<'PY'
import json, sys

d, good, cases = sys.argv[1], sys.argv[2], sys.argv[3:]
lines = sys.stdin.read().splitlines()
errors = []
if len(lines) != len(cases) + 1:
    errors.append(f"{len(lines)} output lines for {len(cases) + 1} images")
for line, case in zip(lines, cases):
    name, codes = case.split(":")
    o = json.loads(line)
    err = o.get("error")
    ok = (o.get("path") == f"{d}/{name}" and isinstance(err, dict) and set(o) == {"path", "error"}
          and err.get("code") in codes.split("|") and isinstance(err.get("message"), str)
          and err["message"].strip())
    print(f"{name}: {json.dumps(err)}")
    if not ok:
        errors.append(f"{name}: expected {{path, error: {{code in {codes}, message}}}}, got {line}")
if len(lines) == len(cases) + 1:
    o = json.loads(lines[-1])
    print(f"{good}: {'error ' + json.dumps(o['error']) if 'error' in o else 'ok'}")
    if o.get("path") != good or "error" in o or o.get("width") != 451 or "faces" not in o:
        errors.append(f"the valid image after the bad ones failed: {lines[-1][:300]}")
for e in errors:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
python3 "$T/check.py" "$T" "$GOOD" $cases <"$T/out" || fail "error lines are not as documented"
echo "ok"
