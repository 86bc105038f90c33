"""Jobs finish while the MQTT broker is down, and every event is delivered, in order per asset, once it is back on the same port."""
import os
import time

from inferdtest import all_images, check, log, run_test, wait_until


def main(ctx):
    images = all_images()
    root = ctx.media_root(images)
    names = [os.path.basename(p) for p in images]
    # Persistence keeps the collector's session (clean_session=False) over the
    # broker restart, so what the daemon publishes before the collector is
    # back is queued for it rather than dropped: a lost event is then the
    # daemon's fault, not a race in the test.
    broker = ctx.broker(persistent=True)
    col = ctx.collector(broker.port, persistent=True)
    d = ctx.daemon(slots=2, media_root=root, broker=broker)

    first = [d.submit_path("pre-%d" % i, names[i])["id"] for i in range(2)]
    d.wait_jobs(first, timeout=60)
    col.wait_for_jobs(first, timeout=15)
    log("broker up: events for %s arrived" % first)

    batch = [d.submit_path("out-%d" % i, names[(i + 2) % len(names)])["id"] for i in range(8)]
    wait_until(lambda: any(d.job(j)["state"] in ("running", "done") for j in batch), 30, 0.02,
               "a job of the batch to start")
    t_stop = time.monotonic()
    broker.stop()
    log("broker stopped")
    # Same asset, one job after the other, while the broker is down.
    seq = []
    for k in range(3):
        j = d.submit_path("out-same", names[k])
        seq.append(j["id"])
        d.wait_jobs([j["id"]], timeout=60)
    final = d.wait_jobs(batch, timeout=90)
    log("all %d jobs done %.1f s after the broker stopped" %
        (len(batch) + len(seq), time.monotonic() - t_stop))
    h = d.health()
    log("health while the broker is down: %s" % h)
    check(d.alive(), "daemon died during the broker outage")
    got_early = set(j for j, _ in col.job_events())
    time.sleep(2.0)

    broker.start()
    t_back = time.monotonic()
    log("broker restarted on port %d" % broker.port)
    ids = first + batch + seq
    col.wait_for_jobs(ids, timeout=45)
    log("all events arrived %.1f s after the broker came back" % (time.monotonic() - t_back))
    time.sleep(1.0)
    evs = col.job_events()
    missing_during = [j for j in batch + seq if str(j) not in got_early]
    log("%d jobs finished without a broker; %d MQTT job events in all for %d jobs" %
        (len(missing_during), len(evs), len(ids)))
    dups = {}
    for jid in ids:
        mine = [p for t, p in evs if t == str(jid)]
        check(mine, "no event for job %s" % jid)
        check(all(p.get("state") == "done" for p in mine), "job %s events %r" % (jid, mine))
        if len(mine) > 1:
            dups[jid] = len(mine)
    log("duplicates (allowed, at least once): %s" % (dups or "none"))
    # Order per asset: first occurrence of each job of asset out-same follows submission.
    order = []
    for _, p in evs:
        if p.get("asset_id") == "out-same" and int(p["job_id"]) not in order:
            order.append(int(p["job_id"]))
    check(order == [int(x) for x in seq], "asset out-same events in order %s, submitted %s" %
          (order, seq))
    for jid in batch:
        check(final[jid]["state"] == "done", "job %s %s" % (jid, final[jid]["state"]))


run_test(main, timeout=300)
