"""A daemon killed with SIGKILL twice while jobs run loses no accepted job and leaves one set of results per asset after restart."""
import os
import time

from inferdtest import (all_images, baseline, check, jobs_page, log, run_test, wait_until)

LEASE_MS = 3000
N = 12


def states(d, ids):
    return {jid: d.job(jid) for jid in ids}


def main(ctx):
    images = all_images()
    root = ctx.media_root(images)
    names = [os.path.basename(p) for p in images]
    picks = [names[i % len(names)] for i in range(N)]
    ref = baseline([os.path.join(root, n) for n in sorted(set(picks))])
    media = ctx.media_server()
    d = ctx.daemon(slots=2, media_root=root, lease_ms=LEASE_MS, extra=["--max-attempts", "5"])

    # Jobs 3 and 4 fetch from a URL that stalls 4 s on the first request, so
    # that both slots are surely busy when the first kill comes.
    jobs = {}
    for i in range(N):
        aid = "crash-%02d" % i
        if i in (3, 4):
            path = "/slow-%d.jpg" % i
            media.route(path, file=os.path.join(root, picks[i]), delay=4.0, slow=1)
            j = d.submit(aid, {"url": media.url(path)})
        else:
            j = d.submit_path(aid, picks[i])
        jobs[j["id"]] = (aid, picks[i])
    ids = list(jobs)
    check(len(set(ids)) == N, "expected %d job ids, got %s" % (N, ids))
    slow_ids = ids[3:5]

    wait_until(lambda: all(d.job(j)["state"] == "running" for j in slow_ids), 30, 0.02,
               "the two slow jobs to be running")
    before = states(d, ids)
    log("kill -9 #1 with states %s" % sorted(j["state"] for j in before.values()))
    d.kill9()

    d.start()
    t_restart = time.monotonic()
    # Second kill in the middle of inference: as soon as this process runs a
    # job (a path job: the slow ones wait for their lease to expire).
    def mid():
        s = states(d, ids)
        return [j for j in s.values() if j["state"] == "running" and j["id"] not in slow_ids]

    running = wait_until(mid, 30, 0.01, "a job running after the restart")
    log("kill -9 #2 while job(s) %s run" % [j["id"] for j in running])
    d.kill9()
    d.start()
    t1 = time.monotonic()
    final = d.wait_jobs(ids, timeout=60 + 3 * LEASE_MS / 1000)
    log("all %d jobs done %.1f s after the last restart (%.1f s after the first)" %
        (N, time.monotonic() - t1, time.monotonic() - t_restart))

    for jid in slow_ids:
        check(final[jid]["attempts"] >= 2,
              "slow job %s was running at the kill but has attempts %s" %
              (jid, final[jid]["attempts"]))
    log("attempts: %s" % {jid: final[jid]["attempts"] for jid in ids})

    # No job lost or duplicated in the listing.
    seen = []
    cursor = None
    for _ in range(50):
        q = "?limit=1000" + ("&cursor=%s" % cursor if cursor else "")
        page, cursor = jobs_page(d.list_jobs(q))
        seen += [j["id"] for j in page]
        if not cursor or not page:
            break
    check(sorted(seen) == sorted(ids), "GET /v1/jobs lists %s, submitted %s" %
          (sorted(seen), sorted(ids)))

    # One set of results per asset and model, faces as in a single run.
    for jid, (aid, name) in jobs.items():
        a = d.asset(aid)
        embs = a.get("image_embeddings") or []
        models = [e.get("model") for e in embs]
        check(len(models) == len(set(models)) == 1,
              "asset %s has image_embeddings for models %s" % (aid, models))
        faces = a.get("faces") or []
        want = len(ref[name]["faces"])
        check(len(faces) == want, "asset %s (%s): %d faces stored, a single run finds %d" %
              (aid, name, len(faces), want))
        fids = [f.get("id") for f in faces]
        check(len(set(fids)) == len(fids), "asset %s duplicate face ids %s" % (aid, fids))
    # /health counts come from a cache refreshed every 500 ms.
    h = wait_until(lambda: (lambda x: x if x.get("running") == 0 and x.get("queue_size") == 0
                            else None)(d.health()), 3, 0.1, "/health to show an empty queue")
    log("health after: %s" % h)


run_test(main, timeout=300)
