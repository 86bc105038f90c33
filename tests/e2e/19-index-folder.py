"""`inferd index` on a real folder against a real daemon: image files are picked by content
(a JPEG named .txt is taken, a text file named .jpg is not), hidden folders are skipped,
names that are not valid asset ids get a hashed id with the path in the payload, every
job ends done (a corrupt image fails with its reason and exit 1); a second run submits
nothing, a changed file alone is resubmitted; --batch 1 uses POST /v1/jobs; a folder
outside the media root and a server without one are refused with a message naming
--media-root; the token is sent from --token-file; --watch submits a file copied in
later, and Ctrl-C ends it with the summary. POST /v1/jobs/batch is checked directly:
per-item refusals, deduplication inside a batch, one transaction."""
import json
import os
import shutil
import signal
import subprocess
import time

from inferdtest import check, face_images, inferd_bin, jobs_page, log, run_test, wait_until


def index(ctx, d, *args, token_file=None, state=None, timeout=120):
    cmd = [inferd_bin(), "index", "--url", "http://127.0.0.1:%d" % d.port,
           "--state", state or ctx.path("state.tsv")]
    if token_file:
        cmd += ["--token-file", token_file]
    cmd += list(args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERD_")}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    log("$ inferd index %s -> %d\n%s%s" % (" ".join(args), p.returncode, p.stdout,
                                            p.stderr[-600:]))
    return p


def counts(out):
    """The numbers of the summary line."""
    line = [l for l in out.splitlines() if "image files found" in l][0]
    words = line.replace(",", "").split()
    return {words[i + 1]: int(words[i]) for i in range(len(words) - 1)
            if words[i].isdigit() and words[i + 1] in
            ("image", "unchanged", "queued", "done", "failed", "refused")}


def main(ctx):
    images = face_images()
    root = ctx.path("media")
    lib = os.path.join(root, "library")
    os.makedirs(os.path.join(lib, "2024", "trip"))
    os.makedirs(os.path.join(lib, ".thumbnails"))
    shutil.copy(images[0], os.path.join(lib, "a.jpg"))
    shutil.copy(images[1], os.path.join(lib, "2024", "b.jpg"))
    shutil.copy(images[2], os.path.join(lib, "2024", "trip", "c with space.jpg"))
    shutil.copy(images[3], os.path.join(lib, "2024", "trip", "really-a-jpeg.txt"))
    shutil.copy(images[4], os.path.join(lib, ".thumbnails", "hidden.jpg"))
    with open(os.path.join(lib, "notes.jpg"), "w") as f:
        f.write("not an image\n" * 100)
    with open(images[5], "rb") as f:
        jpeg = f.read()
    with open(os.path.join(lib, "2024", "broken.jpg"), "wb") as f:
        f.write(jpeg[: len(jpeg) // 3])
    token_file = ctx.path("token")
    with open(token_file, "w") as f:
        f.write("s3cret-index-token\n")
    os.chmod(token_file, 0o600)
    d = ctx.daemon(slots=2, media_root=root, extra=["--token-file", token_file], start=False)
    d.token = "s3cret-index-token"  # for the test's own requests
    d.start()

    # Without the token the server says so and nothing is submitted.
    p = index(ctx, d, lib, state=ctx.path("s0.tsv"))
    check(p.returncode == 2 and "401" in p.stderr, "index without the token: %d %r" %
          (p.returncode, p.stderr))

    p = index(ctx, d, lib, token_file=token_file)
    c = counts(p.stdout)
    check(c == {"image": 5, "unchanged": 0, "queued": 5, "done": 4, "failed": 1, "refused": 0},
          "first run counts %s" % c)
    check(p.returncode == 1, "a failed file must make the exit status 1, got %d" % p.returncode)
    check("library/2024/broken.jpg: decode" in p.stdout,
          "the failure and its reason are listed: %r" % p.stdout)
    jobs = jobs_page(d.list_jobs("?limit=100"))[0]
    ids = sorted(j["asset_id"] for j in jobs)
    log("assets: %s" % ids)
    check("library/a.jpg" in ids and "library/2024/trip/really-a-jpeg.txt" in ids,
          "relative paths are the asset ids: %s" % ids)
    check(not any("hidden" in i or "notes" in i for i in ids), "hidden or non-image taken: %s"
          % ids)
    spaced = [j for j in jobs if j["asset_id"].startswith("path:")]
    check(len(spaced) == 1 and spaced[0]["payload"]["path"] == "library/2024/trip/c with space.jpg",
          "a name that is no asset id gets a hashed id with its path in the payload: %s" % spaced)
    a = d.asset("library/a.jpg")
    check(a.get("faces"), "library/a.jpg has no faces stored: %s" % a)

    # Second run: nothing new except the failure, which is retried (and fails again).
    p = index(ctx, d, lib, token_file=token_file)
    c = counts(p.stdout)
    check(c["unchanged"] == 4 and c["queued"] == 1 and c["failed"] == 1,
          "second run retries only the failed file: %s" % c)
    # A changed file alone is resubmitted; --batch 1 sends it to POST /v1/jobs.
    shutil.copy(images[5], os.path.join(lib, "2024", "broken.jpg"))
    p = index(ctx, d, lib, "--batch", "1", token_file=token_file)
    c = counts(p.stdout)
    check(c["unchanged"] == 4 and c["queued"] == 1 and c["done"] == 1 and p.returncode == 0,
          "the repaired file alone is resubmitted and done: %s rc=%d" % (c, p.returncode))
    p = index(ctx, d, lib, "--no-wait", token_file=token_file)
    check(counts(p.stdout)["unchanged"] == 5 and p.returncode == 0, "all unchanged: %s" % p.stdout)

    # Outside the media root, and a server without one.
    other = ctx.path("elsewhere")
    os.makedirs(other)
    p = index(ctx, d, other, token_file=token_file)
    check(p.returncode == 2 and "--media-root" in p.stderr and "outside" in p.stderr,
          "a folder outside the media root: %d %r" % (p.returncode, p.stderr))
    bare = ctx.daemon(slots=1, name="bare")
    p = index(ctx, bare, lib, state=ctx.path("s1.tsv"))
    check(p.returncode == 2 and "no --media-root" in p.stderr,
          "a server without a media root: %d %r" % (p.returncode, p.stderr))

    # --watch: a file copied in later is submitted and done; Ctrl-C ends with the summary.
    cmd = [inferd_bin(), "index", "--url", "http://127.0.0.1:%d" % d.port, "--state",
           ctx.path("state.tsv"), "--token-file", token_file, "--watch", lib]
    w = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    os.makedirs(os.path.join(lib, "new"))
    time.sleep(0.3)
    shutil.copy(images[1], os.path.join(lib, "new", "later.jpg"))

    def later_done():
        js = [j for j in jobs_page(d.list_jobs("?limit=100"))[0] if j["asset_id"] == "library/new/later.jpg"]
        return js and js[0]["state"] == "done"
    wait_until(later_done, 60, 0.2, "the watched file's job to be done")
    w.send_signal(signal.SIGINT)
    out, err = w.communicate(timeout=20)
    log("watch: rc=%d\n%s%s" % (w.returncode, out, err[-300:]))
    check(w.returncode == 130 and "interrupted" in err, "Ctrl-C ends --watch: %d %r" %
          (w.returncode, err))
    check(counts(out)["queued"] == 1, "--watch queued the new file only: %s" % out)

    # The batch endpoint itself.
    body = {"jobs": [{"asset_id": "x1", "source": {"path": "library/a.jpg"}},
                     {"asset_id": "x1", "source": {"path": "library/a.jpg"}},
                     {"asset_id": "x2", "source": {"path": "library/nope.jpg"}},
                     {"asset_id": "bad id!", "source": {"path": "library/a.jpg"}},
                     7]}
    hdr = {}
    st, r = d.request("POST", "/v1/jobs/batch", body, headers=hdr)
    log("batch: %d %s" % (st, json.dumps({k: v for k, v in r.items() if k != "jobs"})))
    check(st == 202 and r["queued"] == 1 and r["deduplicated"] == 1 and r["rejected"] == 3,
          "batch answer %d %s" % (st, r))
    items = r["jobs"]
    check(items[1]["id"] == items[0]["id"] and items[1]["deduplicated"],
          "a repeat inside the batch is deduplicated: %s" % items[:2])
    check(items[2]["error"]["code"] == "source_not_found" and
          items[2]["error"]["message"].startswith("jobs[2].source"), "item 2: %s" % items[2])
    check(items[3]["error"]["code"] == "invalid_request" and "asset_id" in
          items[3]["error"]["message"], "item 3: %s" % items[3])
    check(items[4]["error"]["message"] == "jobs[4]: expected a job object", "item 4: %s" %
          items[4])
    st, r = d.request("POST", "/v1/jobs/batch", {"jobs": [{"asset_id": "y"}]}, headers=hdr)
    check(st == 400 and "jobs[0].source" in r["error"]["message"],
          "a batch with no valid item answers that item's error: %d %s" % (st, r))
    st, r = d.request("POST", "/v1/jobs/batch", {"jobs": []}, headers=hdr)
    check(st == 400, "an empty batch: %d %s" % (st, r))
    st, r = d.request("POST", "/v1/jobs/batch",
                      {"jobs": [{"asset_id": "z%d" % i, "source": {"path": "library/a.jpg"}}
                                for i in range(1001)]}, headers=hdr)
    check(st == 400 and "1..1000" in r["error"]["message"], "1001 jobs: %d %s" % (st, r))
    st, info = d.request("GET", "/v1/info", headers=hdr)
    check(st == 200 and info["media_root"] == root and info["batch_max"] == 1000 and
          info["models"]["detector"], "GET /v1/info: %s" % info)


run_test(main, timeout=280)
