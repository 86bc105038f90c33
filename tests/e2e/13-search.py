"""Image and face search over ~60 real photos, on HNSW indexes (--hnsw-threshold 10): a cropped, re-encoded copy finds its original, top-10 equal to brute force over the stored vectors, vector queries, payload filters, limit/min_score, duplicates (default from --duplicates-threshold), deletion and bad requests."""
import os
import struct
import time
import zlib

from inferdtest import (OPENCV, SKIMAGE, check, error_of, face_images, log, pg_bindir, run_test,
                        wait_until)


def png_decode(path):
    """Pure-Python PNG reader for 8-bit RGB/RGBA/gray non-interlaced files: (w, h, ch, rows)."""
    with open(path, "rb") as f:
        data = f.read()
    check(data[:8] == b"\x89PNG\r\n\x1a\n", "%s: not a PNG" % path)
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            check(depth == 8 and interlace == 0 and ctype in (0, 2, 6), "%s: unsupported PNG" % path)
            ch = {0: 1, 2: 3, 6: 4}[ctype]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * ch
    rows, prev = [], bytearray(stride)
    for y in range(h):
        ft = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - ch] if x >= ch else 0
            b = prev[x]
            c = prev[x - ch] if x >= ch else 0
            if ft == 1:
                line[x] = (line[x] + a) & 255
            elif ft == 2:
                line[x] = (line[x] + b) & 255
            elif ft == 3:
                line[x] = (line[x] + ((a + b) >> 1)) & 255
            elif ft == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pr) & 255
        rows.append(line)
        prev = line
    return w, h, ch, rows


def png_encode(w, h, ch, rows):
    ctype = {1: 0, 3: 2, 4: 6}[ch]
    raw = b"".join(b"\x00" + bytes(r) for r in rows)

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body +
                struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def photos():
    out = [(p, "faceapi") for p in face_images()]
    for d, src in ((SKIMAGE, "skimage"), (OPENCV, "opencv")):
        if not os.path.isdir(d):
            continue
        for n in sorted(os.listdir(d)):
            p = os.path.join(d, n)
            if n.lower().endswith((".jpg", ".png")) and 2000 < os.path.getsize(p) < 3000000:
                out.append((p, src))
    return out[:64]


HNSW_THRESHOLD = 10


def brute_force_top10(d, asset_ids):
    """For a dozen query assets, the HTTP top-10 (HNSW) against a brute force over the stored
    vectors: every score is the stored vectors' dot product, recall@10 >= 0.95."""
    vecs = {}
    for aid in asset_ids:
        st, a = d.get("/v1/assets/%s?vectors=1" % aid)
        check(st == 200, "asset %s -> %s" % (aid, st))
        if a.get("image_embeddings"):
            vecs[aid] = a["image_embeddings"][0]["vector"]
    ids = sorted(vecs)
    queries = ids[::max(1, len(ids) // 12)]
    total = 0.0
    for q in queries:
        scores = sorted(((sum(x * y for x, y in zip(vecs[q], vecs[o])), o) for o in ids if o != q),
                        reverse=True)
        kth = scores[9][0]
        res = search(d, {"asset_id": q, "limit": 10})["results"]
        check(len(res) == 10, "%s: %d results" % (q, len(res)))
        for r in res:
            want = sum(x * y for x, y in zip(vecs[q], vecs[r["asset_id"]]))
            check(abs(r["score"] - want) < 1e-4, "%s: score %s of %s, stored vectors give %s" %
                  (q, r["score"], r["asset_id"], want))
        recall = sum(1 for r in res if r["score"] >= kth - 1e-5) / 10.0
        if recall < 1.0:
            log("%s: recall@10 %.1f: HTTP %s, brute force %s" %
                (q, recall, [r["asset_id"] for r in res], [o for _, o in scores[:10]]))
        total += recall
    recall = total / len(queries)
    log("HTTP top-10 vs brute force over %d stored vectors: recall@10 %.3f (%d queries)" %
        (len(ids), recall, len(queries)))
    check(recall >= 0.95, "recall@10 %.3f < 0.95" % recall)


def search(d, body, expect=200):
    st, js = d.request("POST", "/v1/search/images", body)
    check(st == expect, "search %s -> %s %s" % (body, st, js))
    return js


def main(ctx):
    imgs = photos()
    check(len(imgs) >= 50, "only %d test photos found" % len(imgs))
    root = ctx.media_root([p for p, _ in imgs])
    orig = os.path.join(SKIMAGE, "coffee.png")
    check(os.path.isfile(orig), "coffee.png missing")
    w, h, ch, rows = png_decode(orig)
    mx, my = w // 12, h // 10
    crop = [r[mx * ch:(w - mx) * ch] for r in rows[my:h - my]]
    with open(os.path.join(root, "coffee-copy.png"), "wb") as f:
        f.write(png_encode(w - 2 * mx, h - 2 * my, ch, crop))
    log("copy: coffee.png %dx%d cropped to %dx%d, re-encoded" % (w, h, w - 2 * mx, h - 2 * my))

    # Low enough that both indexes (~65 images, ~30 faces) are HNSW: the HTTP path is the graph's.
    d = ctx.daemon(slots=2, media_root=root, poll_ms=200,
                   extra=["--hnsw-threshold", str(HNSW_THRESHOLD), "--hnsw-ef", "48",
                          "--duplicates-threshold", "0.8"])
    ids = []
    for p, src in imgs:
        n = os.path.basename(p)
        ids.append(d.submit_path(n, n, payload={"src": src})["id"])
    ids.append(d.submit_path("coffee-copy", "coffee-copy.png", payload={"src": "copy"})["id"])
    done = d.wait_jobs(ids, states=("done", "failed"), timeout=400)
    ok = [j for j in done.values() if j["state"] == "done"]
    log("%d jobs done, %d failed" % (len(ok), len(done) - len(ok)))
    check(len(ok) >= 51, "only %d photos analysed" % len(ok))

    # The index follows the outbox: wait (bounded) until it holds every image.
    def indexed():
        js = search(d, {"asset_id": "coffee-copy", "limit": 1000})
        return len(js["results"]) >= len(ok) - 1
    wait_until(indexed, 20, what="index catches up")
    # The feed logs each index's switch once its background build is in.
    for coll in ("images", "faces"):
        line = "index=%s model=%s backend=hnsw" % (
            coll, "mobilenet-v2-mid" if coll == "images" else "dlib-resnet")
        wait_until(lambda: line in d.log_text(), 20, what="%s index on HNSW" % coll)
    log("both indexes on HNSW (threshold %d)" % HNSW_THRESHOLD)
    # /metrics says the same, per (collection, model), with the vector counts.
    st, text = d.get("/metrics")
    check(st == 200, "GET /metrics -> %s" % st)
    for coll, model in (("images", "mobilenet-v2-mid"), ("faces", "dlib-resnet")):
        lab = '{collection="%s",model="%s"}' % (coll, model)
        check("inferd_index_hnsw%s 1\n" % lab in text, "metrics: %s not on HNSW:\n%s" % (lab, text))
        check("inferd_index_building%s 0\n" % lab in text, "metrics: %s still building" % lab)
    vec = [l for l in text.splitlines() if l.startswith('inferd_index_vectors{collection="images"')]
    check(len(vec) == 1 and int(vec[0].split()[-1]) == len(ok), "metrics: image vectors %s, %d assets"
          % (vec, len(ok)))
    brute_force_top10(d, sorted(j["asset_id"] for j in ok))

    js = search(d, {"asset_id": "coffee-copy", "limit": 5})
    res = js["results"]
    log("by copy: %s" % [(r["asset_id"], round(r["score"], 4)) for r in res])
    check(res[0]["asset_id"] == "coffee.png", "copy's best match is %s" % res[0]["asset_id"])
    check(all(r["asset_id"] != "coffee-copy" for r in res), "query asset in its own results")
    check(all(res[i]["score"] >= res[i + 1]["score"] for i in range(len(res) - 1)), "not sorted")
    check(res[0]["payload"] == {"src": "skimage"}, "payload %s" % res[0]["payload"])
    margin = res[0]["score"] - res[1]["score"]
    log("copy->original score %.4f, margin over the next %.4f" % (res[0]["score"], margin))

    # By vector: the stored embedding finds its own asset first with score ~1.
    st, a = d.request("GET", "/v1/assets/home.jpg?vectors=1")
    if st == 200 and a.get("image_embeddings"):
        vec = a["image_embeddings"][0]["vector"]
        res = search(d, {"vector": vec, "limit": 3})["results"]
        check(res[0]["asset_id"] == "home.jpg" and res[0]["score"] > 0.999,
              "vector query: %s" % res[:1])
        st, js = d.request("POST", "/v1/search/images", {"vector": vec[:-1]})
        check(st == 400, "short vector -> %s %s" % (st, js))

    # Filter, limit, min_score.
    res = search(d, {"asset_id": "sample1.jpg", "limit": 50, "filter": {"src": "faceapi"}})["results"]
    check(len(res) == 5 and all(r["payload"]["src"] == "faceapi" for r in res),
          "filter: %s" % [(r["asset_id"], r["payload"]) for r in res])
    check(len(search(d, {"asset_id": "sample1.jpg", "limit": 3})["results"]) == 3, "limit 3")
    res = search(d, {"asset_id": "coffee-copy", "min_score": 0.95, "limit": 100})["results"]
    check(all(r["score"] >= 0.95 for r in res), "min_score")
    log("min_score 0.95 keeps %d" % len(res))

    # Duplicates: the threshold defaults to --duplicates-threshold (0.8 here); a query's wins.
    st, js = d.get("/v1/assets/coffee-copy/duplicates")
    check(st == 200, "duplicates -> %s %s" % (st, js))
    check(js["threshold"] == 0.8, "default threshold %s" % js["threshold"])
    check(any(r["asset_id"] == "coffee.png" for r in js["duplicates"]), "duplicates %s" % js)
    check(all(r["score"] >= 0.8 for r in js["duplicates"]), "duplicates below 0.8: %s" % js)
    log("duplicates of the copy: %s" % [r["asset_id"] for r in js["duplicates"]])
    st, js = d.get("/v1/assets/coffee-copy/duplicates?threshold=0.999")
    check(st == 200 and js["threshold"] == 0.999 and all(
        r["score"] >= 0.999 for r in js["duplicates"]), "threshold=0.999: %s %s" % (st, js))

    # Faces.
    st, a = d.get("/v1/assets/sample1.jpg")
    check(st == 200 and a["faces"], "sample1 faces")
    fid = a["faces"][0]["id"]
    st, js = d.request("POST", "/v1/search/faces", {"face_id": fid, "limit": 5})
    check(st == 200 and len(js["results"]) == 5, "face search -> %s %s" % (st, js))
    check(all(r["face_id"] != fid for r in js["results"]), "query face in results")
    log("faces like %d: %s" % (fid, [(r["face_id"], r["asset_id"], round(r["score"], 3))
                                      for r in js["results"]]))

    # Bad requests.
    for body, want in (({"asset_id": "x", "vector": [1.0]}, 400), ({"limit": 5}, 400),
                       ({"asset_id": "coffee.png", "limit": 0}, 400),
                       ({"asset_id": "coffee.png", "limit": 1001}, 400),
                       ({"asset_id": "coffee.png", "min_score": 3}, 400),
                       ({"asset_id": "coffee.png", "filter": [1]}, 400),
                       ({"asset_id": "no-such-asset"}, 404),
                       ({"asset_id": "coffee.png", "model": "nope"}, 404),
                       ({"text": "a cup of coffee"}, 400)):
        st, js = d.request("POST", "/v1/search/images", body)
        check(st == want, "%s -> %s %s (want %d)" % (body, st, js, want))
    st, js = d.request("POST", "/v1/search/images", {"text": "a cup of coffee"})
    check(error_of(js)[0] == "text_model_missing", "text without CLIP: %s" % (js,))
    log("text without CLIP: %s" % (error_of(js),))
    st, js = d.request("POST", "/v1/search/images", b"{not json",
                       headers={"Content-Type": "application/json"})
    check(st == 400, "bad JSON -> %s" % st)
    st, js = d.get("/v1/search/images")
    check(st == 405, "GET search -> %s" % st)
    st, js = d.request("POST", "/v1/search/faces", {"face_id": 99999999})
    check(st == 404, "unknown face -> %s %s" % (st, js))

    # Deleting the original drops it from the index (the deleted event).
    st, _ = d.request("DELETE", "/v1/assets/coffee.png")
    check(st == 204, "delete -> %s" % st)

    def gone():
        res = search(d, {"asset_id": "coffee-copy", "limit": 3})["results"]
        return all(r["asset_id"] != "coffee.png" for r in res)
    wait_until(gone, 10, what="deleted asset leaves the index")
    log("deleted original no longer found")
    d.sigterm(30)
    pg_cross_process(ctx, root)


def pg_cross_process(ctx, root):
    """On PostgreSQL an api process's (HNSW) index follows a worker process's commits and deletes."""
    if pg_bindir() is None:
        log("no PostgreSQL server installed: cross-process part skipped")
        return
    pg = ctx.pg()
    db = pg.url_for("search13")
    # Threshold 2: the api process's index turns HNSW on the worker's commits and rebuilds on the delete.
    api = ctx.daemon(role="api", db=db, worker_id="api-1", poll_ms=5000, media_root=root,
                     extra=["--hnsw-threshold", "2"])
    w = ctx.daemon(role="worker", db=db, worker_id="w-1", slots=2, media_root=root)
    ids = [api.submit_path(n, n)["id"] for n in ("coffee.png", "coffee-copy.png", "home.jpg")]
    api.wait_jobs(ids, timeout=120)
    t0 = time.monotonic()

    def first():
        js = search(api, {"asset_id": "coffee-copy.png", "limit": 2})
        return js["results"] and js["results"][0]["asset_id"] == "coffee.png"
    wait_until(first, 10, what="api index sees the worker's commits")
    log("api process indexed the worker's commits %.2f s after the jobs were seen done" %
        (time.monotonic() - t0))
    st, _ = api.request("DELETE", "/v1/assets/coffee.png")
    check(st == 204, "delete -> %s" % st)
    wait_until(lambda: all(r["asset_id"] != "coffee.png" for r in
                           search(api, {"asset_id": "coffee-copy.png", "limit": 2})["results"]),
               10, what="deleted asset leaves the api index")
    wait_until(lambda: "index=images model=mobilenet-v2-mid backend=hnsw" in api.log_text(), 15,
               what="api image index on HNSW")
    w.sigterm(30)
    api.sigterm(30)


if __name__ == "__main__":
    run_test(main, timeout=600)
