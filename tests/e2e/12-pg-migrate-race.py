"""Two `inferd api` processes started at the same moment on an empty PostgreSQL database migrate it once (one schema_version row per version) and both become healthy."""
from inferdtest import check, log, require_pg, run_test

SCHEMA = "race"


def main(ctx):
    require_pg()
    pg = ctx.pg()
    db = pg.url_for(SCHEMA)
    ds = [ctx.daemon(role="api", db=db, worker_id="api-%d" % i, start=False) for i in (1, 2)]
    # Popen returns at once: both processes open the store within milliseconds.
    # (Not from threads: the harness's PR_SET_PDEATHSIG fires when the
    # spawning thread exits.)
    for d in ds:
        d.start(wait_ready=False)
    for d in ds:
        d.wait_ready(30)
        h = d.health()
        check(h.get("status") == "ok" and h.get("role") == "api", "%s /health: %s" % (d.name, h))
    rows = pg.query("SELECT version, count(*) FROM schema_version GROUP BY version ORDER BY 1",
                    SCHEMA)
    log("schema_version: %s" % rows)
    check(rows == [["1", "1"], ["2", "1"], ["3", "1"]],
          "schema_version rows %s, want 1, 2 and 3 once" % rows)
    tables = pg.query("SELECT table_name FROM information_schema.tables WHERE table_schema = '%s'"
                      " ORDER BY 1" % SCHEMA)
    names = [t[0] for t in tables]
    for want in ("jobs", "outbox", "assets", "leader", "schema_version"):
        check(names.count(want) == 1, "table %s: %s" % (want, names))
    # Both serve the same queue.
    st, js = ds[0].request("POST", "/v1/jobs", {"asset_id": "race-1", "source": {"path": "x.jpg"}})
    check(st < 500, "api-1 POST /v1/jobs -> %s %s" % (st, js))
    st, _ = ds[1].request("GET", "/v1/jobs?limit=10")
    check(st == 200, "api-2 GET /v1/jobs -> %s" % st)


run_test(main, timeout=120)
