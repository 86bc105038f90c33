"""SIGTERM while jobs run: the daemon exits 0 within the grace period, leaving each job done or queued, and a restart finishes them all."""
import os
import time

from inferdtest import all_images, check, log, run_test, wait_until

GRACE_MS = 1500
SLACK_S = 3.0


def main(ctx):
    images = all_images()
    root = ctx.media_root(images)
    names = [os.path.basename(p) for p in images]
    media = ctx.media_server()
    # Two jobs whose fetch stalls 8 s the first time: they cannot finish within the grace period.
    media.route("/stall-a.jpg", file=images[0], delay=8.0, slow=1)
    media.route("/stall-b.jpg", file=images[1], delay=8.0, slow=1)
    d = ctx.daemon(slots=2, media_root=root, grace_ms=GRACE_MS)

    ids = [d.submit_path("t-%d" % i, names[i % len(names)])["id"] for i in range(4)]
    stall = [d.submit("stall-a", {"url": media.url("/stall-a.jpg")})["id"],
             d.submit("stall-b", {"url": media.url("/stall-b.jpg")})["id"]]
    ids += stall
    ids += [d.submit_path("u-%d" % i, names[(i + 4) % len(names)])["id"] for i in range(4)]
    wait_until(lambda: all(d.job(j)["state"] == "running" for j in stall), 30, 0.02,
               "the stalled jobs to run")
    before = {j: d.job(j)["state"] for j in ids}
    log("SIGTERM with states %s" % before)
    t_term = time.monotonic()
    rc, took = d.sigterm(GRACE_MS / 1000.0 + SLACK_S)
    log("exit status %s after %.2f s (grace %.1f s)" % (rc, took, GRACE_MS / 1000.0))
    problems = []
    if rc is None:
        # Measure how late it is (bounded), then judge the rest anyway.
        try:
            rc = d.proc.wait(30)
        except Exception:
            d.kill9()
            rc = "killed"
        late = time.monotonic() - t_term
        problems.append("daemon still running %.1f s after SIGTERM (grace %d ms); it exited "
                        "after %.1f s with status %s" % (took, GRACE_MS, late, rc))
        log("FAILED CHECK: " + problems[-1])
    check(rc == 0, "daemon exited with status %s after SIGTERM" % rc)

    # Between runs, read the database through a second daemon start (the only
    # interface): every job is done or back to queued, none running or failed.
    d.start()
    after = {}
    for j in ids:
        after[j] = d.job(j)
    log("after restart: %s" % {j: (x["state"], x["attempts"]) for j, x in after.items()})
    for j, x in after.items():
        check(x["state"] in ("done", "queued", "running"),
              "job %s is %s after SIGTERM + restart" % (j, x["state"]))
    for j in stall:
        check(before[j] == "running", "stalled job %s was %s" % (j, before[j]))
    final = d.wait_jobs(ids, timeout=60)
    for j in stall:
        log("stalled job %s: attempts %s" % (j, final[j]["attempts"]))
        check(final[j]["attempts"] == 1,
              "released job %s has attempts %s: a release must not count the attempt" %
              (j, final[j]["attempts"]))
    rc, took = d.sigterm(GRACE_MS / 1000.0 + SLACK_S)
    log("idle SIGTERM: status %s after %.2f s" % (rc, took))
    check(rc == 0 and took < 2.0, "idle daemon SIGTERM -> status %s after %.2f s" % (rc, took))
    check(not problems, "; ".join(problems))


run_test(main, timeout=240)
