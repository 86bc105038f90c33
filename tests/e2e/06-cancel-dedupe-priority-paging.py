"""With one slot busy: a queued job cancels at once, a duplicate submit returns the queued job, higher priority runs first, and GET /v1/jobs pages through every job once and filters by state."""
import os
import time

from inferdtest import (SseReader, check, face_images, jobs_page, log, run_test, wait_until)


def main(ctx):
    images = face_images()
    root = ctx.media_root(images)
    names = [os.path.basename(p) for p in images]
    media = ctx.media_server()
    media.route("/long.jpg", file=images[0], delay=3.0)
    d = ctx.daemon(slots=1, media_root=root)
    sse = SseReader(d.port)

    long = d.submit("long", {"url": media.url("/long.jpg")})
    wait_until(lambda: d.job(long["id"])["state"] == "running", 10, 0.02, "the long job to run")

    # Cancel a queued job.
    victim = d.submit_path("victim", names[1])
    check(victim["state"] == "queued", "victim state %s" % victim["state"])
    st, js = d.request("DELETE", "/v1/jobs/%s" % victim["id"])
    log("DELETE queued job -> %s %s" % (st, js))
    check(st in (200, 202), "DELETE /v1/jobs/%s -> %s %s" % (victim["id"], st, js))
    v = d.job(victim["id"])
    check(v["state"] == "cancelled", "cancelled job state %s" % v["state"])

    # Dedupe: same asset and tasks while queued -> same job; other tasks -> new job.
    a = d.submit_path("dup", names[2], tasks=["image_embedding", "faces"])
    st, js = d.request("POST", "/v1/jobs", {"asset_id": "dup", "source": {"path": names[2]},
                                             "tasks": ["faces", "image_embedding"]})
    check(st in (200, 202), "duplicate submit -> %s %s" % (st, js))
    b = js.get("job", js)
    log("duplicate submit -> %s, job %s (first %s)" % (st, b.get("id"), a["id"]))
    check(b["id"] == a["id"], "duplicate submit made job %s, first was %s" % (b["id"], a["id"]))
    c = d.submit_path("dup", names[2], tasks=["faces"])
    check(c["id"] != a["id"], "different tasks deduped to job %s" % c["id"])

    # Priority: low submitted before high; high must run first.
    low = d.submit_path("low", names[3], priority=-5)
    high = d.submit_path("high", names[4], priority=10)
    ids = [long["id"], a["id"], c["id"], low["id"], high["id"]]
    final = d.wait_jobs(ids, timeout=60)
    got = d.job(victim["id"])
    check(got["state"] == "cancelled", "cancelled job later %s" % got["state"])
    check(got.get("attempts", 0) == 0, "cancelled job ran: attempts %s" % got.get("attempts"))
    check(media.hit_count("/long.jpg") == 1, "long job fetched %d times" %
          media.hit_count("/long.jpg"))

    # Order of completion from the event stream (outbox order = commit order).
    wait_until(lambda: len(sse.snapshot()) >= 6, 10, 0.05, "6 SSE events")
    order = [e[2].get("job_id") for e in sse.snapshot() if isinstance(e[2], dict)]
    order = [int(x) for x in order]
    log("event order: %s (long %s, victim %s, dup %s, dup-faces %s, low %s, high %s)" %
        (order, long["id"], victim["id"], a["id"], c["id"], low["id"], high["id"]))
    check(order.index(int(high["id"])) < order.index(int(low["id"])),
          "low-priority job %s finished before high-priority job %s" % (low["id"], high["id"]))
    check(order.index(int(high["id"])) < order.index(int(a["id"])),
          "priority 10 job finished after priority 0 job %s" % a["id"])
    check(order.index(int(low["id"])) == len(order) - 1, "priority -5 job not last: %s" % order)
    log("finished_at: high %s, low %s" % (final[high["id"]].get("finished_at"),
                                          final[low["id"]].get("finished_at")))
    sse.close()

    # More jobs so that paging crosses several pages.
    extra = [d.submit_path("page-%d" % i, names[i % 6])["id"] for i in range(5)]
    d.wait_jobs(extra, timeout=60)
    all_ids = sorted(ids + extra + [victim["id"]])
    seen = []
    cursor = None
    pages = 0
    for _ in range(40):
        q = "?limit=2" + ("&cursor=%s" % cursor if cursor else "")
        page, cursor = jobs_page(d.list_jobs(q))
        pages += 1
        check(len(page) <= 2, "limit=2 returned %d jobs" % len(page))
        seen += [j["id"] for j in page]
        if not cursor:
            break
    log("paging limit=2: %d pages, ids %s" % (pages, seen))
    check(sorted(seen) == all_ids, "paging saw %s, jobs are %s" % (sorted(seen), all_ids))
    check(len(seen) == len(set(seen)), "paging returned duplicates: %s" % seen)
    check(seen == sorted(seen, reverse=True), "paging not newest first: %s" % seen)

    page, _ = jobs_page(d.list_jobs("?state=cancelled"))
    check([j["id"] for j in page] == [victim["id"]], "state=cancelled lists %s" %
          [(j["id"], j["state"]) for j in page])
    page, _ = jobs_page(d.list_jobs("?state=done&limit=1000"))
    check(all(j["state"] == "done" for j in page), "state=done lists other states")
    check(len(page) == len(all_ids) - 1, "state=done lists %d jobs, expected %d" %
          (len(page), len(all_ids) - 1))
    page, _ = jobs_page(d.list_jobs("?state=queued"))
    check(page == [], "state=queued lists %s" % [j["id"] for j in page])

    # Cancelling a finished job leaves it done; an unknown job is 404.
    st, js = d.request("DELETE", "/v1/jobs/%s" % high["id"])
    check(d.job(high["id"])["state"] == "done", "DELETE on a done job changed it: %s %s" %
          (st, js))
    st, js = d.request("DELETE", "/v1/jobs/987654")
    check(st == 404, "DELETE unknown job -> %s %s" % (st, js))

    # Cancelling a running job: marked, then cancelled at commit, results discarded.
    media.route("/long2.jpg", file=images[0], delay=2.0)
    run = d.submit("runcancel", {"url": media.url("/long2.jpg")})
    wait_until(lambda: d.job(run["id"])["state"] == "running", 10, 0.02, "runcancel to run")
    st, js = d.request("DELETE", "/v1/jobs/%s" % run["id"])
    log("DELETE running job -> %s state=%s cancel_requested=%s" %
        (st, js.get("state"), js.get("cancel_requested")))
    check(st in (200, 202), "DELETE running job -> %s %s" % (st, js))
    d.wait_jobs([run["id"]], states=("cancelled",), timeout=30)
    st, js = d.get("/v1/assets/runcancel")
    check(st == 404, "cancelled running job left results: %s %s" % (st, js))


run_test(main, timeout=240)
