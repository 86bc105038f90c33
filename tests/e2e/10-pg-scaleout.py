"""One `inferd api` and three `inferd worker` processes on one PostgreSQL run 200 jobs while two workers are killed with SIGKILL and replaced: every job done once, one outbox event and one MQTT event per job, one set of results per asset, each job's worker_id one of the workers."""
import collections
import os
import random
import time

from inferdtest import (baseline, check, face_images, log, other_images, require_pg, run_test,
                        wait_until)

N = 200
LEASE_MS = 4000
SCHEMA = "scaleout"


def main(ctx):
    require_pg()
    t_start = time.monotonic()
    pg = ctx.pg()
    db = pg.url_for(SCHEMA)
    photos = (other_images()[:3] + face_images()[:2])
    check(len(photos) >= 3, "need at least 3 test photos, have %s" % photos)
    root = ctx.media_root(photos)
    names = [os.path.basename(p) for p in photos]
    ref = baseline([os.path.join(root, n) for n in names])
    broker = ctx.broker()
    mq = ctx.collector(broker.port)

    common = dict(db=db, media_root=root, broker=broker)
    api = ctx.daemon(role="api", worker_id="api-1", **common)
    wid = [0]
    workers = []

    def new_worker(wait=True):
        wid[0] += 1
        w = ctx.daemon(role="worker", slots=1, lease_ms=LEASE_MS, worker_id="w%d" % wid[0],
                       start=False, **common)
        w.start(wait_ready=wait)
        workers.append(w)
        return w

    for _ in range(3):
        new_worker(wait=False)
    for w in workers:
        w.wait_ready(60)
    h = workers[0].health()
    check(h.get("role") == "worker" and h.get("worker_id") == "w1", "worker /health: %s" % h)
    st, _ = workers[0].request("GET", "/v1/jobs")
    check(st == 404, "a worker serves only /health, /ready, /metrics: GET /v1/jobs -> %s" % st)
    check(api.health().get("role") == "api", "api /health: %s" % api.health())

    picks = {}
    ids = []
    t_submit = time.monotonic()
    for i in range(N):
        aid = "scale-%03d" % i
        name = names[i % len(names)]
        j = api.submit_path(aid, name)
        picks[j["id"]] = (aid, name)
        ids.append(j["id"])
    check(len(set(ids)) == N, "expected %d distinct job ids" % N)
    log("submitted %d jobs in %.1f s" % (N, time.monotonic() - t_submit))

    def done_count():
        return int(pg.query("SELECT count(*) FROM jobs WHERE state = 'done'", SCHEMA)[0][0])

    rnd = random.Random(int(os.environ.get("INFERD_E2E_SEED", "10")))
    killed = []
    for threshold in (N // 4, N // 2):
        wait_until(lambda: done_count() >= threshold, 180, 0.1,
                   "%d jobs done before a kill" % threshold)
        alive = [w for w in workers if w.alive()]
        victim = rnd.choice(alive)
        running = pg.query("SELECT count(*) FROM jobs WHERE state = 'running' AND lease_owner = '%s'"
                           % victim.worker_id, SCHEMA)[0][0]
        log("kill -9 %s at done=%d (running under it: %s)" % (victim.worker_id, done_count(),
                                                              running))
        victim.kill9()
        killed.append(victim.worker_id)
        new_worker(wait=False)

    wait_until(lambda: done_count() >= N, 240, 0.2, "all %d jobs done" % N)
    t_run = time.monotonic() - t_submit
    log("all %d jobs done %.1f s after the first submit" % (N, t_run))

    # Every job done, worker_id one of ours.
    rows = pg.query("SELECT id, state, worker_id, attempts FROM jobs ORDER BY id", SCHEMA)
    check(len(rows) == N, "jobs table has %d rows, submitted %d" % (len(rows), N))
    ours = set(w.worker_id for w in workers)
    per_worker = collections.Counter()
    retried = 0
    for jid, state, wk, attempts in rows:
        check(state == "done", "job %s ended %s" % (jid, state))
        check(wk in ours, "job %s worker_id %r is none of %s" % (jid, wk, sorted(ours)))
        per_worker[wk] += 1
        retried += int(attempts) > 1
    log("jobs per worker: %s; jobs that ran more than once: %d; killed: %s" %
        (dict(sorted(per_worker.items())), retried, killed))
    j0 = api.job(ids[0])
    check(j0.get("worker_id") in ours, "GET /v1/jobs/%s worker_id: %s" % (ids[0], j0))

    # Exactly one outbox event per job: nobody committed twice.
    dup = pg.query("SELECT job_id, count(*) FROM outbox GROUP BY job_id HAVING count(*) <> 1",
                   SCHEMA)
    check(not dup, "jobs with other than one outbox event: %s" % dup[:10])
    nev = int(pg.query("SELECT count(DISTINCT job_id) FROM outbox", SCHEMA)[0][0])
    check(nev == N, "outbox has events for %d jobs, want %d" % (nev, N))

    # MQTT: every job's event delivered; a repeat is only a redelivery of the same event.
    mq.wait_for_jobs(ids, timeout=90)
    by_job = collections.defaultdict(list)
    for jid, payload in mq.job_events():
        by_job[jid].append(payload)
    redelivered = 0
    for jid in ids:
        evs = by_job[str(jid)]
        eids = set(e.get("event_id") for e in evs)
        check(len(eids) == 1, "job %s: MQTT events with different event ids %s" % (jid, eids))
        check(evs[0].get("state") == "done", "job %s: MQTT event %s" % (jid, evs[0]))
        redelivered += len(evs) - 1
    log("MQTT: %d job events, %d at-least-once redeliveries (same event_id)" %
        (sum(len(v) for v in by_job.values()), redelivered))
    unsent = int(pg.query("SELECT count(*) FROM outbox WHERE sent_ms IS NULL", SCHEMA)[0][0])
    wait_until(lambda: int(pg.query("SELECT count(*) FROM outbox WHERE sent_ms IS NULL",
                                    SCHEMA)[0][0]) == 0, 30, 0.2, "every outbox row marked sent")
    log("outbox rows unsent at the end of the run: %d (then 0)" % unsent)
    leaders = int(pg.query("SELECT count(*) FROM leader WHERE name = 'publisher'", SCHEMA)[0][0])
    check(leaders == 1, "leader rows: %d" % leaders)

    # One set of results per asset, as a single run finds.
    for jid, (aid, name) in picks.items():
        a = api.asset(aid)
        models = [e.get("model") for e in a.get("image_embeddings") or []]
        check(len(models) == 1, "asset %s has image_embeddings %s" % (aid, models))
        faces = a.get("faces") or []
        want = len(ref[name]["faces"])
        check(len(faces) == want, "asset %s (%s): %d faces stored, a single run finds %d" %
              (aid, name, len(faces), want))
    nemb = int(pg.query("SELECT count(*) FROM image_embeddings", SCHEMA)[0][0])
    check(nemb == N, "image_embeddings rows %d, want %d" % (nemb, N))

    for w in workers:
        if w.alive():
            check(w.health().get("status") == "ok", "%s unhealthy" % w.name)
    log("scale-out: %d jobs, 1 api + %d worker processes (%d killed), %.1f s run, %.1f s total"
        % (N, len(workers), len(killed), t_run, time.monotonic() - t_start))


run_test(main, timeout=330)
