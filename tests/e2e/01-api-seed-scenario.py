"""Five jobs submitted at once all reach done while /health keeps answering within 100 ms, and their results are readable."""
import os
import time

from inferdtest import (HealthPoller, baseline, check, face_images, log, percentile, run_test)

HEALTH_MAX_MS = 100.0


def main(ctx):
    images = face_images()[:5]
    root = ctx.media_root(images)
    ref = baseline(images)
    d = ctx.daemon(slots=2, media_root=root)

    idle = HealthPoller(d.port, interval=0.05)
    time.sleep(1.0)
    idle.stop()
    log("health idle: %s" % idle.summary())

    poller = HealthPoller(d.port, interval=0.05)
    jobs = {}
    for i, img in enumerate(images):
        name = os.path.basename(img)
        j = d.submit_path("seed-%d" % i, name, payload={"file": name})
        check(j.get("state") in ("queued", "running"), "new job state %s" % j.get("state"))
        check(j.get("asset_id") == "seed-%d" % i, "job asset_id %r" % j.get("asset_id"))
        jobs[j["id"]] = ("seed-%d" % i, name)
    check(len(jobs) == 5, "5 distinct job ids expected, got %s" % sorted(jobs))
    done = d.wait_jobs(list(jobs), timeout=90)
    poller.stop()
    s = poller.samples
    log("health while 5 jobs ran: %s" % poller.summary())
    check(len(s) >= 5, "too few /health samples (%d) to judge" % len(s))
    check(not poller.errors, "/health errors while busy: %s" % poller.errors[:5])
    check(max(s) <= HEALTH_MAX_MS, "/health took %.1f ms (max allowed %.0f ms); p99 %.1f ms" %
          (max(s), HEALTH_MAX_MS, percentile(s, 99)))

    for jid, j in done.items():
        asset_id, name = jobs[jid]
        check(j.get("attempts") == 1, "job %s attempts %s" % (jid, j.get("attempts")))
        log("job %s %s timings_ms=%s" % (jid, name, j.get("timings_ms")))
        a = d.asset(asset_id)
        embs = a.get("image_embeddings")
        check(isinstance(embs, list) and len(embs) == 1,
              "asset %s image_embeddings: %r" % (asset_id, embs))
        check(embs[0].get("dim") == ref[name]["image_embedding"]["dim"],
              "asset %s embedding dim %s, analyze says %s" %
              (asset_id, embs[0].get("dim"), ref[name]["image_embedding"]["dim"]))
        check(embs[0].get("model") == ref[name]["image_embedding"]["model"],
              "asset %s embedding model %s" % (asset_id, embs[0].get("model")))
        faces = a.get("faces")
        check(isinstance(faces, list), "asset %s has no faces array" % asset_id)
        check(len(faces) == len(ref[name]["faces"]),
              "asset %s: %d faces stored, inferd analyze finds %d" %
              (asset_id, len(faces), len(ref[name]["faces"])))
        for f, rf in zip(faces, ref[name]["faces"]):
            check(len(f.get("box", [])) == 4, "face box %r" % f.get("box"))
            check(len(f.get("keypoints", [])) == 6, "face keypoints %r" % f.get("keypoints"))
            # The same face model and dimension as `inferd analyze` on the same defaults.
            check(f.get("model") == rf["embedding"]["model"] and
                  f.get("dim") == rf["embedding"]["dim"],
                  "face embedding %s/%s, inferd analyze: %r" % (f.get("model"), f.get("dim"),
                                                                rf["embedding"]))
        check(a.get("payload") == {"file": name}, "asset payload %r" % a.get("payload"))
        av = d.asset(asset_id, "?vectors=1")
        vec = (av.get("image_embeddings") or [{}])[0].get("vector")
        if vec is not None:
            check(len(vec) == embs[0]["dim"], "vector length %d" % len(vec))
            n2 = sum(x * x for x in vec)
            check(abs(n2 - 1.0) < 1e-3, "image vector not L2-normalised: |v|^2=%f" % n2)
        log("asset %s: %s, embedding %s/%d, %d faces" %
            (asset_id, name, embs[0]["model"], embs[0]["dim"], len(faces)))
    h = d.health()
    log("health after: %s" % h)


run_test(main, timeout=240)
