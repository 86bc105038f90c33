"""Text queries: serve with a (generated, mkclip) CLIP model as the image embedder answers {"text"} searches; without a text model they get 400 text_model_missing; an api process answers them with --clip-model."""
import os

from inferdtest import check, error_of, face_images, log, other_images, run_test, wait_until


def main(ctx):
    models = ctx.clip_models("tinyclip")

    imgs = (face_images() + other_images())[:8]
    root = ctx.media_root(imgs)
    d = ctx.daemon(slots=2, media_root=root, poll_ms=200,
                   extra=["--models-dir", models, "--image-embedder", "tinyclip"])
    ids = [d.submit_path(os.path.basename(p), os.path.basename(p))["id"] for p in imgs]
    d.wait_jobs(ids, timeout=120)
    emb = d.asset(os.path.basename(imgs[0]))["image_embeddings"]
    log("image embeddings: %s" % [(e["model"], e["dim"]) for e in emb])

    def found():
        st, js = d.request("POST", "/v1/search/images", {"text": "a photo of a cat", "limit": 5})
        return st == 200 and len(js["results"]) == 5
    wait_until(found, 20, what="text search results")
    st, js = d.request("POST", "/v1/search/images", {"text": "a photo of a cat", "limit": 5})
    log("text query: %s" % [(r["asset_id"], round(r["score"], 4)) for r in js["results"]])
    scores = [r["score"] for r in js["results"]]
    check(scores == sorted(scores, reverse=True), "not sorted")
    st, js2 = d.request("POST", "/v1/search/images", {"text": "a photo of a cat", "limit": 5})
    check(js2 == js, "same text, different answer")
    for body in ({"text": ""}, {"text": 5}, {"text": "x" * 1001}):
        st, js = d.request("POST", "/v1/search/images", body)
        check(st == 400, "%s -> %s %s" % (str(body)[:40], st, js))

    # An api process on the same database: no models, so no text encoder...
    db = "sqlite:%s/inferd.db" % d.data_dir
    a = ctx.daemon(role="api", db=db, name="api-plain")
    st, js = a.request("POST", "/v1/search/images", {"text": "a cat"})
    code, msg = error_of(js)
    check(st == 400 and code == "text_model_missing" and "--clip-model" in msg,
          "api without text model -> %s %s" % (st, js))
    log("api without a text model: %s: %s" % (code, msg))
    # ... unless given one.
    b = ctx.daemon(role="api", db=db, name="api-clip",
                   extra=["--clip-model", os.path.join(models, "tinyclip")])
    st, js = b.request("POST", "/v1/search/images", {"text": "a photo of a cat", "limit": 5})
    check(st == 200 and [r["asset_id"] for r in js["results"]] ==
          [r["asset_id"] for r in js2["results"]], "api --clip-model -> %s %s" % (st, js))
    log("api --clip-model answers the same: %s" % [r["asset_id"] for r in js["results"]])


if __name__ == "__main__":
    run_test(main, timeout=300)
