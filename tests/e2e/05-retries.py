"""Transient fetch failures are retried until done (attempts = 3), a 404 or a corrupt image fails at once with a reason, and a failed job does not block the jobs behind it."""
import os
import time

from inferdtest import check, face_images, job_error, log, run_test, wait_until


def main(ctx):
    images = face_images()
    root = ctx.media_root(images)
    with open(images[0], "rb") as f:
        jpeg = f.read()
    with open(os.path.join(root, "truncated.jpg"), "wb") as f:
        f.write(jpeg[: len(jpeg) // 3])
    with open(os.path.join(root, "noise.jpg"), "wb") as f:
        f.write(os.urandom(50000))
    media = ctx.media_server()
    media.route("/flaky500.jpg", file=images[1], fail=2, mode="500")
    media.route("/flakydrop.jpg", file=images[2], fail=2, mode="drop")
    media.route("/missing.jpg", status=404)
    media.route("/corrupt.jpg", body=b"GIF89a not really an image" * 100)
    d = ctx.daemon(slots=1, media_root=root, retry_base_ms=200)

    t0 = time.monotonic()
    flaky = d.submit("flaky500", {"url": media.url("/flaky500.jpg")})
    drop = d.submit("flakydrop", {"url": media.url("/flakydrop.jpg")})
    missing = d.submit("missing", {"url": media.url("/missing.jpg")})
    # With one slot, the corrupt images run before the good job behind them.
    bad1 = d.submit_path("truncated", "truncated.jpg")
    bad2 = d.submit_path("noise", "noise.jpg")
    bad3 = d.submit("corrupt-url", {"url": media.url("/corrupt.jpg")})
    good = d.submit_path("good-after-bad", os.path.basename(images[3]))

    f = d.wait_jobs([flaky["id"], drop["id"], good["id"]], timeout=90)
    log("retried jobs done after %.1f s" % (time.monotonic() - t0))
    for name, j in (("500", f[flaky["id"]]), ("drop", f[drop["id"]])):
        log("flaky(%s): state=%s attempts=%s last error=%s" %
            (name, j["state"], j["attempts"], j.get("error")))
        check(j["attempts"] == 3, "flaky(%s) job done with attempts %s, expected 3" %
              (name, j["attempts"]))
    check(media.hit_count("/flaky500.jpg") == 3, "flaky500 fetched %d times" %
          media.hit_count("/flaky500.jpg"))
    check(d.asset("flaky500").get("image_embeddings"), "flaky500 has no results")

    fails = d.wait_jobs([missing["id"], bad1["id"], bad2["id"], bad3["id"]], states=("failed",),
                        timeout=60)
    m = fails[missing["id"]]
    code, msg = job_error(m)
    log("404: attempts=%s error=%s/%s" % (m["attempts"], code, msg))
    check(m["attempts"] == 1, "404 job attempts %s, expected 1" % m["attempts"])
    check(code in ("noent", "not_found", "fetch"), "404 job error code %r" % code)
    check(msg and "404" in msg, "404 job error message does not say 404: %r" % msg)
    check(media.hit_count("/missing.jpg") == 1, "404 URL fetched %d times" %
          media.hit_count("/missing.jpg"))
    for b in (bad1, bad2, bad3):
        j = fails[b["id"]]
        code, msg = job_error(j)
        log("%s: attempts=%s error=%s/%s" % (j["asset_id"], j["attempts"], code, msg))
        check(j["attempts"] == 1, "corrupt image job %s attempts %s" % (j["asset_id"],
                                                                      j["attempts"]))
        check(code == "decode" and msg, "corrupt image job %s error %r/%r" % (j["asset_id"],
                                                                           code, msg))
        # Server paths (media root, data dir) never reach clients.
        check(d.data_dir not in msg and "/tmp/" not in msg,
              "error message leaks a server path: %r" % msg)
    g = f[good["id"]]
    check(g["state"] == "done", "good job behind the bad ones: %s" % g["state"])
    # /health reads counts from a cache refreshed every 500 ms.
    h = wait_until(lambda: (lambda x: x if x.get("failed") == 4 else None)(d.health()), 3, 0.1,
                   "/health to count 4 failed jobs (last: %s)" % d.health())
    log("health: %s" % h)


run_test(main, timeout=240)
