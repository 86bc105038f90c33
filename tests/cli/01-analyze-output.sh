# analyze on two real photos prints one JSON line each in the documented shape; with --vectors every vector has dim unit-norm entries and face boxes lie inside the image.
. "$(dirname "$0")/lib.sh"

GROUP=$INFERD_TESTDATA/faceapi/sample1.jpg
PORTRAIT=$SKIMAGE/astronaut.png
need_file "$GROUP"
need_file "$PORTRAIT"


cat >"$T/check.py" <<'PY'
import json, math, sys

with_vectors = sys.argv[1] == "1"
paths = sys.argv[2:]
lines = sys.stdin.read().splitlines()
errors = []

def need(cond, msg):
    if not cond:
        errors.append(msg)
    return cond

need(len(lines) == len(paths), f"{len(lines)} lines for {len(paths)} images")
for n, (line, path) in enumerate(zip(lines, paths)):
    where = f"line {n + 1}"
    try:
        o = json.loads(line)
    except ValueError as ex:
        errors.append(f"{where}: not JSON: {ex}")
        continue
    need(o.get("path") == path, f"{where}: path {o.get('path')!r}, expected {path!r}")
    need("error" not in o, f"{where}: error {o.get('error')}")
    W, H = o.get("width"), o.get("height")
    if not need(isinstance(W, int) and isinstance(H, int) and W > 0 and H > 0,
                f"{where}: width/height {W!r} {H!r}"):
        continue

    def vec(emb, what):
        if not need(isinstance(emb, dict), f"{where}: {what} is not an object"):
            return
        need(isinstance(emb.get("model"), str) and emb["model"], f"{where}: {what}.model")
        dim = emb.get("dim")
        need(isinstance(dim, int) and dim > 0, f"{where}: {what}.dim {dim!r}")
        if with_vectors:
            v = emb.get("vector")
            if need(isinstance(v, list) and len(v) == dim,
                    f"{where}: {what}.vector has {len(v) if isinstance(v, list) else v!r} entries, dim {dim}"):
                norm = math.sqrt(sum(x * x for x in v))
                need(abs(norm - 1) < 1e-3, f"{where}: {what}.vector norm {norm}")
        else:
            need("vector" not in emb, f"{where}: {what}.vector without --vectors")

    ie = o.get("image_embedding")
    vec(ie, "image_embedding")
    if isinstance(ie, dict):
        need(isinstance(ie.get("norm"), (int, float)) and ie["norm"] > 0,
             f"{where}: image_embedding.norm {ie.get('norm')!r}")
    ns = o.get("nsfw")
    if need(isinstance(ns, dict) and len(ns) >= 2, f"{where}: nsfw {ns!r}"):
        need(all(isinstance(s, (int, float)) and 0 <= s <= 1 for s in ns.values()),
             f"{where}: nsfw scores outside [0, 1]: {ns}")
        need(abs(sum(ns.values()) - 1) < 2e-3, f"{where}: nsfw scores sum to {sum(ns.values())}")
    faces = o.get("faces")
    if need(isinstance(faces, list), f"{where}: faces {faces!r}"):
        for i, f in enumerate(faces):
            fw = f"{where} face {i}"
            box = f.get("box")
            if need(isinstance(box, list) and len(box) == 4, f"{fw}: box {box!r}"):
                x1, y1, x2, y2 = box
                need(0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H,
                     f"{fw}: box {box} not inside the {W}x{H} image")
            s = f.get("score")
            need(isinstance(s, (int, float)) and 0 < s <= 1, f"{fw}: score {s!r}")
            kps = f.get("keypoints")
            need(isinstance(kps, list) and len(kps) == 6 and
                 all(isinstance(p, list) and len(p) == 2 for p in kps), f"{fw}: keypoints {kps!r}")
            vec(f.get("embedding"), f"face {i} embedding")
    t = o.get("timings_ms")
    stages = ["decode", "image_embedding", "face_detection", "face_alignment",
              "face_embedding", "total"]
    if need(isinstance(t, dict), f"{where}: timings_ms {t!r}"):
        for k in stages:
            need(isinstance(t.get(k), (int, float)) and t[k] >= 0, f"{where}: timings_ms.{k} {t.get(k)!r}")
    print(f"{path}: {W}x{H}, {len(faces or [])} faces, nsfw {ns}")
    if n == 0:
        need(len(faces or []) >= 3, f"{where}: {len(faces or [])} faces in a group photo (expected at least 3)")
    else:
        need(len(faces or []) == 1, f"{where}: {len(faces or [])} faces in a one-person portrait")

for e in errors:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY

check_out() {
    python3 "$T/check.py" "$1" "$GROUP" "$PORTRAIT" <"$T/out" ||
        fail "output does not have the documented shape (vectors=$1)"
}

run_inferd analyze --models-dir "$INFERD_TEST_MODELS" --vectors "$GROUP" "$PORTRAIT"
[ "$rc" -eq 0 ] || fail "exit status $rc, expected 0"
check_out 1

run_inferd analyze --models-dir "$INFERD_TEST_MODELS" "$GROUP" "$PORTRAIT"
[ "$rc" -eq 0 ] || fail "exit status $rc, expected 0"
check_out 0
echo "ok"
