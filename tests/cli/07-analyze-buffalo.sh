# analyze with an Immich buffalo_l-layout pack (tools/mkfaces: detection/ + recognition/, no manifest) as --detector and --face-embedder prints the planted SCRFD faces, computed here by hand, with 5 keypoints and 512-D unit embeddings named after the pack.
. "$(dirname "$0")/lib.sh"

MKFACES=$(dirname "$INFERD")/mkfaces
[ -x "$MKFACES" ] || fail "$MKFACES is missing (build the mkfaces target)"
LANDSCAPE=$SKIMAGE/coffee.png # 600x400
SQUARE=$SKIMAGE/astronaut.png # 512x512
need_file "$LANDSCAPE"
need_file "$SQUARE"
mkdir -p "$T/models"
"$MKFACES" "$T/models/buffalo_l" || fail "mkfaces failed"

cat >"$T/check.py" <<'PY'
import json, math, sys

# The planted faces of tools/mkfaces (its file comment): stride, anchor centre,
# distances and keypoint offsets in strides. F1' and F3 must not appear.
F1 = (8, 320, 240, 0.95, (4, 5, 4, 6), (-1.5, -1.5, 1.5, -1.5, 0, 0.5, -1.2, 2.5, 1.2, 2.5))
F2 = (32, 160, 128, 0.85, (2, 2.5, 2, 3), (-0.8, -0.8, 0.8, -0.8, 0, 0.3, -0.6, 1.6, 0.6, 1.6))
errors = []
lines = sys.stdin.read().splitlines()
if len(lines) != 2:
    errors.append(f"{len(lines)} lines for 2 images")
for line in lines:
    o = json.loads(line)
    W, H = o["width"], o["height"]
    # insightface's fit into 640x640: the longer side becomes 640, the other truncated.
    if H / W > 1:
        nh, nw = 640, int(640 / (H / W))
    else:
        nw, nh = 640, int(640 * (H / W))
    s = nh / H
    faces = o.get("faces", [])
    if len(faces) != 2:
        errors.append(f"{o['path']}: {len(faces)} faces, expected 2")
        continue
    for f, (st, cx, cy, score, d, k) in zip(faces, (F1, F2)):
        want = [(cx - d[0] * st) / s, (cy - d[1] * st) / s, (cx + d[2] * st) / s, (cy + d[3] * st) / s]
        if any(abs(a - b) > 0.06 for a, b in zip(f["box"], want)):
            errors.append(f"{o['path']}: box {f['box']}, expected {want}")
        if abs(f["score"] - score) > 1e-4:
            errors.append(f"{o['path']}: score {f['score']}, expected {score}")
        kps = f["keypoints"]
        wk = [[(cx + k[2 * i] * st) / s, (cy + k[2 * i + 1] * st) / s] for i in range(5)]
        if len(kps) != 5 or any(abs(a - b) > 0.06 for p, q in zip(kps, wk) for a, b in zip(p, q)):
            errors.append(f"{o['path']}: keypoints {kps}, expected {wk}")
        e = f.get("embedding", {})
        v = e.get("vector", [])
        if e.get("model") != "buffalo_l" or e.get("dim") != 512 or len(v) != 512:
            errors.append(f"{o['path']}: embedding {e.get('model')!r} dim {e.get('dim')!r} ({len(v)} values)")
        elif abs(math.sqrt(sum(x * x for x in v)) - 1) > 1e-3:
            errors.append(f"{o['path']}: embedding not unit length")
    print(f"{o['path']}: {W}x{H}, det_scale {s:.4f}, faces ok" if not errors else "", end="\n")
for e in errors:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY

run_inferd analyze --models-dir "$T/models" --detector buffalo_l --face-embedder buffalo_l \
    --image-embedder "" --face-threshold 0.7 --vectors "$LANDSCAPE" "$SQUARE"
[ "$rc" -eq 0 ] || fail "exit status $rc, expected 0"
python3 "$T/check.py" <"$T/out" || fail "faces differ from the planted ones"

# Above every planted score: no face.
run_inferd analyze --models-dir "$T/models" --detector buffalo_l --face-embedder buffalo_l \
    --image-embedder "" --face-threshold 0.99 "$SQUARE"
[ "$rc" -eq 0 ] || fail "exit status $rc, expected 0"
grep -q '"faces":\[\]' "$T/out" || fail "faces found above every planted score"

# A pack without recognition/ cannot be the face embedder.
rm -r "$T/models/buffalo_l/recognition"
run_inferd analyze --models-dir "$T/models" --detector buffalo_l --face-embedder buffalo_l \
    --image-embedder "" "$SQUARE"
[ "$rc" -eq 2 ] || fail "exit status $rc without recognition/, expected 2"
echo "ok"
