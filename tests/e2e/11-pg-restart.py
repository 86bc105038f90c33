"""PostgreSQL restarted (pg_ctl stop -m fast, start on the same port) while an `inferd api` and two workers run jobs: they recover by themselves, every job ends done with one event, nothing is lost."""
import collections
import os
import time

from inferdtest import (check, log, other_images, face_images, require_pg, run_test, wait_until)

N = 60
SCHEMA = "restart"


def main(ctx):
    require_pg()
    pg = ctx.pg()
    db = pg.url_for(SCHEMA)
    photos = other_images()[:3] + face_images()[:1]
    root = ctx.media_root(photos)
    names = [os.path.basename(p) for p in photos]
    broker = ctx.broker()
    mq = ctx.collector(broker.port)
    common = dict(db=db, media_root=root, broker=broker)
    api = ctx.daemon(role="api", worker_id="api-1", **common)
    workers = [ctx.daemon(role="worker", slots=1, lease_ms=6000, worker_id="w%d" % i,
                          start=False, **common) for i in (1, 2)]
    for w in workers:
        w.start(wait_ready=False)
    for w in workers:
        w.wait_ready(60)

    ids = [api.submit_path("restart-%02d" % i, names[i % len(names)])["id"] for i in range(N)]

    def count(state):
        return int(pg.query("SELECT count(*) FROM jobs WHERE state = '%s'" % state, SCHEMA)[0][0])

    wait_until(lambda: count("done") >= N // 4, 120, 0.05, "a quarter of the jobs done")
    t0 = time.monotonic()
    before = count("done")
    pg.stop_fast()
    log("postgres stopped (fast) at done=%d" % before)
    # While it is down: the processes stay up and /health answers.
    time.sleep(2.0)
    for d in [api] + workers:
        check(d.alive(), "%s died while PostgreSQL was down" % d.name)
        st, _ = d.request("GET", "/health", timeout=5)
        check(st == 200, "%s /health -> %s while PostgreSQL was down" % (d.name, st))
    pg.start_same_port()
    log("postgres started again after %.1f s" % (time.monotonic() - t0))

    # The api takes new jobs again (its pool reconnects by itself).
    more = []
    for i in range(5):
        st, js = None, None
        for _ in range(50):
            st, js = api.request("POST", "/v1/jobs", {"asset_id": "after-%d" % i,
                                                      "source": {"path": names[0]}})
            if st == 202 or st == 200:
                break
            time.sleep(0.2)
        check(st in (200, 202), "POST /v1/jobs after the restart -> %s %s" % (st, js))
        more.append(js["id"] if "id" in js else js["job"]["id"])
    ids += more

    wait_until(lambda: count("done") >= len(ids), 180, 0.2, "all jobs done after the restart")
    log("all %d jobs done %.1f s after the restart" % (len(ids), time.monotonic() - t0))
    rows = pg.query("SELECT state, count(*) FROM jobs GROUP BY state", SCHEMA)
    check(rows == [["done", str(len(ids))]], "job states: %s" % rows)
    dup = pg.query("SELECT job_id, count(*) FROM outbox GROUP BY job_id HAVING count(*) <> 1",
                   SCHEMA)
    check(not dup, "jobs with other than one outbox event: %s" % dup)
    mq.wait_for_jobs(ids, timeout=60)
    per = collections.Counter(j for j, _ in mq.job_events())
    log("MQTT redeliveries: %d" % sum(v - 1 for v in per.values()))
    for d in [api] + workers:
        check(d.alive(), "%s died" % d.name)
        log("%s log mentions: unavailable=%d restored=%d" % (
            d.name, d.log_text().count("unavailable"), d.log_text().count("restored")))


run_test(main, timeout=300)
