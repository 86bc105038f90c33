"""A raw image body posted to /v1/jobs?asset_id= runs to done, and /v1/predict returns the analysis synchronously."""
import os
import time

from inferdtest import (baseline, check, error_of, face_images, job_of, log, run_test)


def main(ctx):
    images = face_images()
    ref = baseline(images[:2])
    d = ctx.daemon(slots=2)
    with open(images[0], "rb") as f:
        jpeg = f.read()
    name = os.path.basename(images[0])

    st, js = d.request("POST", "/v1/jobs?asset_id=up-1", jpeg,
                       headers={"Content-Type": "image/jpeg"})
    check(st == 202, "upload -> %s %s" % (st, js))
    j = job_of(js)
    log("upload accepted: job %s source %s" % (j["id"], j.get("source")))
    check(j["asset_id"] == "up-1", "upload job asset %s" % j["asset_id"])
    # The same bytes under another asset id, with tasks in the query.
    st, js = d.request("POST", "/v1/jobs?asset_id=up-2&tasks=faces", jpeg,
                       headers={"Content-Type": "application/octet-stream"})
    check(st == 202, "second upload -> %s %s" % (st, js))
    j2 = job_of(js)
    done = d.wait_jobs([j["id"], j2["id"]], timeout=60)
    a = d.asset("up-1")
    check(len(a.get("faces") or []) == len(ref[name]["faces"]),
          "uploaded asset has %d faces, analyze finds %d" % (len(a.get("faces") or []),
                                                             len(ref[name]["faces"])))
    check(len(a.get("image_embeddings") or []) == 1, "uploaded asset embeddings %s" %
          a.get("image_embeddings"))
    a2 = d.asset("up-2")
    log("up-2 (tasks=faces): %d faces, %d image embeddings; job tasks %s" %
        (len(a2.get("faces") or []), len(a2.get("image_embeddings") or []),
         done[j2["id"]].get("tasks")))
    check(not a2.get("image_embeddings"), "tasks=faces upload computed an image embedding")

    # Errors: no asset id, empty body, not an image.
    st, js = d.request("POST", "/v1/jobs", jpeg, headers={"Content-Type": "image/jpeg"})
    check(st == 400, "upload without asset_id -> %s %s" % (st, js))
    log("upload without asset_id: %s %s" % (st, error_of(js)))
    st, js = d.request("POST", "/v1/jobs?asset_id=empty", b"",
                       headers={"Content-Type": "image/jpeg"})
    check(st == 400, "empty upload -> %s %s" % (st, js))
    log("empty upload: %s %s" % (st, error_of(js)))
    st, js = d.request("POST", "/v1/jobs?asset_id=junk", b"junk" * 1000,
                       headers={"Content-Type": "image/jpeg"})
    njobs = 2
    if st == 202:
        njobs += 1
        jj = d.wait_jobs([job_of(js)["id"]], states=("failed",), timeout=30)
        log("junk upload: job failed with %s" % list(jj.values())[0].get("error"))
    else:
        check(400 <= st < 500, "junk upload -> %s %s" % (st, js))
        log("junk upload refused: %s %s" % (st, error_of(js)))

    # Synchronous predict.
    for img in images[:2]:
        with open(img, "rb") as f:
            data = f.read()
        t0 = time.monotonic()
        st, js = d.request("POST", "/v1/predict", data, headers={"Content-Type": "image/jpeg"},
                           timeout=60)
        ms = (time.monotonic() - t0) * 1000
        check(st == 200, "predict -> %s %s" % (st, js))
        r = ref[os.path.basename(img)]
        log("predict %s: %.0f ms, %sx%s, %d faces, embedding %s" %
            (os.path.basename(img), ms, js.get("width"), js.get("height"),
             len(js.get("faces") or []), js.get("image_embedding")))
        check(js.get("width") == r["width"] and js.get("height") == r["height"],
              "predict size %sx%s, analyze %sx%s" % (js.get("width"), js.get("height"),
                                                     r["width"], r["height"]))
        check((js.get("image_embedding") or {}).get("dim") == r["image_embedding"]["dim"],
              "predict image_embedding %s" % js.get("image_embedding"))
        check(len(js.get("faces") or []) == len(r["faces"]), "predict faces %d, analyze %d" %
              (len(js.get("faces") or []), len(r["faces"])))
        for fa, fb in zip(js["faces"], r["faces"]):
            check(all(abs(x - y) < 1.0 for x, y in zip(fa["box"], fb["box"])),
                  "predict box %s, analyze %s" % (fa["box"], fb["box"]))
    st, js = d.request("POST", "/v1/predict?vectors=1", jpeg,
                       headers={"Content-Type": "image/jpeg"}, timeout=60)
    check(st == 200, "predict?vectors=1 -> %s" % st)
    vec = (js.get("image_embedding") or {}).get("vector")
    check(vec is not None and len(vec) == ref[name]["image_embedding"]["dim"],
          "predict?vectors=1 has no image vector of the right size")
    st, js = d.request("POST", "/v1/predict", b"not an image" * 10,
                       headers={"Content-Type": "image/jpeg"}, timeout=60)
    check(400 <= st < 500, "predict on junk -> %s %s" % (st, js))
    log("predict on junk: %s %s" % (st, error_of(js)))
    # Predict stores nothing and queues nothing.
    st, js = d.request("GET", "/v1/jobs?limit=1000")
    check(len(js.get("jobs", [])) == njobs, "%d jobs after predict, expected %d" %
          (len(js.get("jobs", [])), njobs))
    check(d.alive(), "daemon died")


run_test(main, timeout=240)
