"""Immich's machine-learning API on --immich-listen: an Immich-shaped node client (fetch + FormData, as Immich's server) gets clip visual, clip textual and facial-recognition answers that equal inferd's own API's, zero-padded face vectors, clear errors, and waits for a slot instead of failing."""
import json
import os
import struct
import subprocess
import zlib

from inferdtest import (check, face_images, free_port, inferd_bin, log, run_test,
                        wait_until)

SRCDIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def jpeg_size(path):
    """(width, height) from a JPEG's first SOFn marker."""
    with open(path, "rb") as f:
        data = f.read()
    i = 2
    while i + 9 < len(data):
        check(data[i] == 0xFF, "%s: not a JPEG marker at %d" % (path, i))
        marker = data[i + 1]
        seglen = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                      0xCF):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + seglen
    raise AssertionError("%s: no SOF marker" % path)


def write_png(path, w, h):
    """A w x h grey gradient PNG (any content: the generated detector ignores it)."""
    rows = b"".join(b"\0" + bytes(((x + y) * 255 // (w + h)) for x in range(w)) for y in range(h))

    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def planted_faces(w, h, min_score):
    """The faces tools/mkfaces plants (its file comment), as Immich reports them on a w x h
    image: the 640 letterbox's scale, boxes divided by it and rounded half to even."""
    if h / w > 1:
        scale = 640 / h
    else:
        scale = int(640 * h / w) / h
    faces = [((288, 200, 352, 288), 0.95), ((96, 48, 224, 224), 0.85)]  # F1, F2; F1', F3 lost to NMS
    return [{"box": [round(v / scale) for v in box], "score": score}
            for box, score in faces if score >= min_score]


def immich_port(d):
    """The port of the daemon's --immich-listen, from its extra arguments."""
    return int(d.args[d.args.index("--immich-listen") + 1].rsplit(":", 1)[1])


def main(ctx):
    models = ctx.clip_models("ViT-B-32__tiny")

    imgs = face_images()[:4]
    root = ctx.media_root(imgs)
    common = ["--models-dir", models, "--image-embedder", "ViT-B-32__tiny",
              "--face-threshold", "0.7"]
    d = ctx.daemon(slots=2, media_root=root, poll_ms=200,
                   extra=common + ["--immich-listen", "127.0.0.1:%d" % free_port()])
    busy = ctx.daemon(slots=1, name="busy",
                      extra=common + ["--immich-listen", "127.0.0.1:%d" % free_port(),
                                      "--immich-wait-ms", "1"])
    ids = [d.submit_path(os.path.basename(p), os.path.basename(p))["id"] for p in imgs]
    d.wait_jobs(ids, timeout=120)

    def indexed():
        st, js = d.request("POST", "/v1/search/images", {"text": "a photo", "limit": len(imgs)})
        return st == 200 and len(js["results"]) == len(imgs)
    wait_until(indexed, 30, what="text search over every image")

    cfg = {
        "immich": "http://127.0.0.1:%d" % immich_port(d),
        "api": "http://127.0.0.1:%d" % d.port,
        "busy": "http://127.0.0.1:%d" % immich_port(busy),
        "clip": "ViT-B-32__tiny",
        "faces": "dlib-resnet",
        "faceDim": 128,
        "minScore": 0.7,
        "slots": 2,
        "images": [dict(zip(("width", "height"), jpeg_size(p)), path=p,
                        asset_id=os.path.basename(p)) for p in imgs],
        "text": ["a photo of a face", "two people at the beach"],
    }
    # Immich's own face pack layout (detection/ + recognition/), generated: its detector's
    # faces are known in advance, so the boxes are checked against values computed here.
    mkfaces = os.path.join(os.path.dirname(inferd_bin()), "mkfaces")
    check(os.access(mkfaces, os.X_OK), "mkfaces not found at %s" % mkfaces)
    out = subprocess.run([mkfaces, os.path.join(models, "buffalo_l")], capture_output=True,
                         text=True, timeout=120)
    check(out.returncode == 0, "mkfaces: %s" % out.stderr)
    pack = ctx.daemon(slots=1, name="pack",
                      extra=["--models-dir", models, "--image-embedder", "ViT-B-32__tiny",
                             "--detector", "buffalo_l", "--face-embedder", "buffalo_l",
                             "--immich-listen", "127.0.0.1:%d" % free_port()])
    planted = ctx.path("planted.png")
    write_png(planted, 1000, 750)
    cfg["pack"] = {"immich": "http://127.0.0.1:%d" % immich_port(pack), "name": "buffalo_l",
                   "image": planted, "minScore": 0.5, "faces": planted_faces(1000, 750, 0.5),
                   "strict": planted_faces(1000, 750, 0.9)}
    log("planted faces: %s" % cfg["pack"]["faces"])
    cfg_path = ctx.path("client.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    client = os.path.join(SRCDIR, "tests", "immich", "client.mjs")
    out = subprocess.run(["node", client, cfg_path], capture_output=True, text=True, timeout=240)
    for line in out.stdout.splitlines():
        log("client: " + line)
    check(out.returncode == 0, "the Immich-shaped client failed:\n%s" % out.stderr[-4000:])
    check("all " in out.stdout and "checks passed" in out.stdout, "client did not finish")

    # Only serve runs models: the api role refuses the flag instead of ignoring it.
    out = subprocess.run([inferd_bin(), "api", "--immich-listen", "127.0.0.1:0"],
                         capture_output=True, text=True, timeout=30)
    check(out.returncode == 2 and "immich-listen" in out.stderr,
          "api --immich-listen -> %s %s" % (out.returncode, out.stderr))


if __name__ == "__main__":
    run_test(main)
