"""Faces cluster into people as jobs finish; people are listed, renamed and merged through the API, and `inferd people recluster` rebuilds them."""
import subprocess

from inferdtest import check, error_of, face_images, inferd_bin, log, run_test, wait_until


def main(ctx):
    imgs = face_images()[:2]
    d = ctx.daemon(slots=2, poll_ms=200)
    ids = []
    # Each photo three times: every face then has two exact twins (min_faces 3).
    for k, p in enumerate(imgs):
        with open(p, "rb") as f:
            jpeg = f.read()
        for c in "abc":
            st, js = d.request("POST", "/v1/jobs?asset_id=s%d-%s" % (k + 1, c), jpeg,
                               headers={"Content-Type": "image/jpeg"})
            check(st == 202, "upload -> %s %s" % (st, js))
            ids.append(js["id"])
    d.wait_jobs(ids, timeout=120)
    nfaces = sum(len(d.asset("s%d-a" % (k + 1))["faces"]) for k in range(len(imgs)))
    log("%d distinct faces, each in three assets" % nfaces)

    def people():
        st, js = d.get("/v1/people")
        check(st == 200, "GET /v1/people -> %s %s" % (st, js))
        return js["people"]
    wait_until(lambda: len(people()) == nfaces and all(p["face_count"] == 3 for p in people()),
               30, what="clustering of %d people" % nfaces)
    ps = people()
    log("people: %s" % [(p["id"], p["face_count"]) for p in ps])
    a, b = ps[0]["id"], ps[1]["id"]
    check(ps[0]["cover"]["face_id"] > 0 and ps[0]["cover"]["asset_id"], "cover %s" % ps[0])

    st, pa = d.get("/v1/people/%d" % a)
    check(st == 200 and len(pa["faces"]) == 3 and len(pa["assets"]) == 3, "person %s" % pa)
    # Face search reports the person.
    st, js = d.request("POST", "/v1/search/faces", {"face_id": pa["faces"][0]["id"], "limit": 2})
    check(st == 200 and all(r["person_id"] == a for r in js["results"]),
          "twins of a face: %s" % js)

    st, js = d.request("PATCH", "/v1/people/%d" % a, {"name": "Ada"})
    check(st == 200 and js["name"] == "Ada", "rename -> %s %s" % (st, js))
    check(any(p["name"] == "Ada" for p in people()), "name not listed")
    for body, want in (({"name": 5}, 400), ({}, 400), ({"name": "x" * 201}, 400)):
        st, js = d.request("PATCH", "/v1/people/%d" % a, body)
        check(st == want, "PATCH %s -> %s %s" % (body, st, js))
    st, js = d.request("PATCH", "/v1/people/99999999", {"name": "x"})
    check(st == 404, "rename unknown -> %s" % st)
    st, js = d.get("/v1/people/abc")
    check(st == 400, "bad person id -> %s" % st)

    st, js = d.request("POST", "/v1/people/%d/merge" % a, {"from": [b]})
    check(st == 200 and js["face_count"] == 6 and js["name"] == "Ada", "merge -> %s %s" % (st, js))
    st, js = d.get("/v1/people/%d" % b)
    check(st == 404, "merged person still there: %s" % st)
    for body in ({"from": []}, {"from": [a]}, {"from": "x"}):
        st, js = d.request("POST", "/v1/people/%d/merge" % a, body)
        check(st == 400, "merge %s -> %s %s" % (body, st, js))
    st, js = d.request("POST", "/v1/people/%d/merge" % a, {"from": [99999999]})
    check(st == 404, "merge unknown -> %s %s" % (st, js))
    log("renamed %d to Ada, merged %d into it: %d people left" % (a, b, len(people())))
    check(len(people()) == nfaces - 1, "people after merge")

    # Full recluster (the daemon stopped, so that it holds no lease).
    d.sigterm(30)
    out = subprocess.run([inferd_bin(), "people", "recluster", "--db",
                          "sqlite:%s/inferd.db" % d.data_dir],
                         capture_output=True, text=True, timeout=120)
    check(out.returncode == 0, "recluster: %s %s" % (out.returncode, out.stderr))
    log("recluster: %s" % out.stdout.strip())
    check('"people": %d' % nfaces in out.stdout, "recluster output %s" % out.stdout)
    d.start()
    ps = people()
    check(len(ps) == nfaces and all(p["name"] is None for p in ps), "after recluster %s" % ps)


if __name__ == "__main__":
    run_test(main, timeout=300)
