#!/usr/bin/env python3
"""End-to-end parity: inferd's whole path against the reference libraries' own pipelines.

tests/models/parity.c feeds the same tensors to ONNX Runtime and TF.js, which
proves each conversion but not what surrounds it. Here each side starts from
the same photo file and does everything itself:

  faces  inferd analyze (libvips decode, BlazeFace, crop, resample, normalise,
         dlib-resnet) against face-api's computeFaceDescriptor on the same
         boxes (jpeg-js / pngjs decode, extractFaceTensors, pad to square,
         resizeBilinear to 150x150, its own normalisation), run by
         tests/ref/faceapi_ref.js. Both cut the same upright square around
         BlazeFace's box: inferd with the model's manifest switched to
         {"method": "box"} and no centre, in a temporary models dir (the
         default "align" crop rotates the face, which face-api never does; the
         tensor parity of models.parity covers the network on any crop).
         Pass: cosine >= FACE_MIN_COS for every face.
  nsfw   inferd analyze's NSFW scores (mobilenet-v2-mid, as provisioned)
         against nsfwjs's own classify() (tests/ref/nsfw_ref.js). Pass: every
         class within NSFW_MAX_DIFF.

Photos: the face-api group photos, a greyscale copy of one (made here with
ImageMagick), and skimage's astronaut. What is left between the two sides is
the JPEG decoder (libjpeg-turbo against jpeg-js: a grey level here and there),
sub-pixel crop bounds (face-api cuts whole pixels) and, for faces, the
resampling (inferd averages through its pyramid, tfjs takes one bilinear tap
per pixel without anti-aliasing): the bounds below leave room for that, and
for nothing more.

Inputs from the environment (tests/parity.cmake sets them): INFERD_BIN,
INFERD_MODELS_DIR, INFERD_TESTDATA, INFERD_CACHE / XDG_CACHE_HOME (the npm
tarball cache), INFERD_NODE.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
REF = os.path.join(SRC, "tests", "ref")
SKIMAGE = "/usr/lib/python3/dist-packages/skimage/data"

FACE_MIN_COS = 0.995
NSFW_MAX_DIFF = 0.03
FACE_MODEL = "dlib-resnet"
FACEAPI = ("@vladmandic/face-api", "1.7.15")


def env_path(name, default):
    v = os.environ.get(name)
    return os.path.abspath(v if v else os.path.join(SRC, default))


def fail(msg):
    print("pipeline_parity: FAIL: %s" % msg, flush=True)
    sys.exit(1)


def tarball(package, version):
    cache = os.environ.get("INFERD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ.get("HOME", ""), ".cache"),
        "inferd")
    name = package.lstrip("@").replace("/", "-")
    return os.path.join(cache, "npm", "%s-%s.tgz" % (name, version))


def run(cmd, what):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        fail("%s exited %d: %s" % (what, r.returncode, (r.stderr or r.stdout)[-800:]))
    return r.stdout


def analyze(bin_, models, photos, extra):
    out = run([bin_, "analyze", "--vectors", "--models-dir", models] + extra + photos,
              "inferd analyze")
    return [json.loads(line) for line in out.splitlines()]


def unit(v):
    n = sum(x * x for x in v) ** 0.5
    return [x / n for x in v]


def box_variant(models, tmp):
    """A models dir where FACE_MODEL cuts the box's square and keeps raw unit descriptors."""
    d = os.path.join(tmp, "models")
    os.makedirs(d)
    for m in os.listdir(models):
        if m != FACE_MODEL:
            os.symlink(os.path.join(models, m), os.path.join(d, m))
    src = os.path.join(models, FACE_MODEL)
    with open(os.path.join(src, "manifest.json")) as f:
        man = json.load(f)
    man["crop"] = {"method": "box", "scale": 1.0}
    man.pop("embedding_center", None)
    os.makedirs(os.path.join(d, FACE_MODEL))
    with open(os.path.join(d, FACE_MODEL, "manifest.json"), "w") as f:
        json.dump(man, f)
    os.symlink(os.path.join(src, man.get("file", "model.onnx")),
               os.path.join(d, FACE_MODEL, man.get("file", "model.onnx")))
    return d, man["source"]["sha256"]


def check_faces(bin_, models, node, photos, tmp):
    vmodels, sha = box_variant(models, tmp)
    tgz = tarball(*FACEAPI)
    if not os.path.exists(tgz):
        fail("%s missing: run scripts/setup.sh testref" % tgz)
    worst, n = 2.0, 0
    print("faces: inferd analyze (box crop, raw descriptor) vs face-api computeFaceDescriptor")
    for r in analyze(bin_, vmodels, photos, ["--face-embedder", FACE_MODEL,
                                             "--image-embedder", ""]):
        faces = r.get("faces", [])
        if "error" in r or not faces:
            fail("%s: %s" % (r["path"], r.get("error", "no face found")))
        boxes = []
        for f in faces:
            x1, y1, x2, y2 = f["box"]
            side = max(x2 - x1, y2 - y1)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            boxes.append((round(cx - side / 2), round(cy - side / 2), round(side), round(side)))
        # face-api cuts whole pixels: give inferd's crop the same whole-pixel squares.
        out = os.path.join(tmp, "ref.f32")
        run([node, os.path.join(REF, "faceapi_ref.js"), "faces", "--tarball", tgz, "--sha256",
             sha, "--image", r["path"], "--boxes",
             ";".join("%d,%d,%d,%d" % b for b in boxes), "--output", out], "faceapi_ref.js")
        import struct
        with open(out, "rb") as f:
            raw = f.read()
        dim = len(raw) // 4 // len(faces)
        ref = [list(struct.unpack_from("<%df" % dim, raw, 4 * dim * i)) for i in range(len(faces))]
        cos = []
        for f, rv in zip(faces, ref):
            ours = f["embedding"]["vector"]
            cos.append(sum(a * b for a, b in zip(ours, unit(rv))))
        print("  %-28s %d faces, cosine %s" % (os.path.basename(r["path"]), len(faces),
                                               " ".join("%.5f" % c for c in cos)))
        worst = min(worst, min(cos))
        n += len(faces)
    print("FACES %d faces, min cosine %.5f (pass >= %.2f) %s" %
          (n, worst, FACE_MIN_COS, "PASS" if worst >= FACE_MIN_COS else "FAIL"))
    return worst >= FACE_MIN_COS


def check_nsfw(bin_, models, node, photos):
    ours = {r["path"]: r for r in analyze(bin_, models, photos, ["--face-embedder", ""])}
    out = run([node, os.path.join(REF, "nsfw_ref.js")] + photos, "nsfw_ref.js")
    worst = 0.0
    print("nsfw: inferd analyze vs nsfwjs classify(), |difference| per class")
    for line in out.splitlines():
        ref = json.loads(line)
        mine = ours[ref["path"]].get("nsfw")
        if not mine:
            fail("%s: no nsfw scores from inferd" % ref["path"])
        diffs = {k: abs(mine[k] - ref["scores"][k]) for k in ref["scores"]}
        worst = max(worst, max(diffs.values()))
        print("  %-28s %s" % (os.path.basename(ref["path"]), "  ".join(
            "%s %.3f/%.3f" % (k, mine[k], ref["scores"][k]) for k in sorted(ref["scores"]))))
    print("NSFW %d photos, max |difference| %.4f (pass <= %.2f) %s" %
          (len(photos), worst, NSFW_MAX_DIFF, "PASS" if worst <= NSFW_MAX_DIFF else "FAIL"))
    return worst <= NSFW_MAX_DIFF


def main():
    bin_ = env_path("INFERD_BIN", "build/inferd")
    models = env_path("INFERD_MODELS_DIR", "var/models")
    data = env_path("INFERD_TESTDATA", ".deps/testdata")
    node = os.environ.get("INFERD_NODE") or "node"
    if not os.path.isdir(os.path.join(REF, "node_modules", "@vladmandic", "face-api")):
        fail("tests/ref/node_modules incomplete: run scripts/setup.sh testref")
    tmp = tempfile.mkdtemp(prefix="inferd-pipeline-parity.")
    try:
        photos = [os.path.join(data, "faceapi", "sample%d.jpg" % i) for i in range(1, 7)]
        grey = os.path.join(tmp, "sample1-grey.png")
        run(["convert", photos[0], "-colorspace", "Gray", grey], "convert")
        photos += [grey, os.path.join(SKIMAGE, "astronaut.png")]
        ok = check_faces(bin_, models, node, photos, tmp)
        ok = check_nsfw(bin_, models, node, photos) and ok
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("pipeline_parity: %s" % ("PASS" if ok else "FAIL"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
