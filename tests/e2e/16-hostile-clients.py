"""Hostile clients against the real daemon: bodies that lie about their type, huge uploads, and what they must not cost (memory, disk)."""
import http.client
import os
import threading
import time

from inferdtest import check, face_images, log, run_test, wait_until

MIB = 1 << 20


def rss_kib(pid):
    """Resident set size of `pid` in KiB (VmRSS)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def post_stream(port, path, ctype, size, chunk=256 * 1024, timeout=60):
    """POSTs `size` bytes (JPEG-looking junk) in chunks; returns (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", ctype)
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        block = (b"\xff\xd8\xff\xe0" + b"\x5a" * (chunk - 4))
        sent = 0
        try:
            while sent < size:
                n = min(chunk, size - sent)
                conn.send(block[:n])
                sent += n
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and closed
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def body_type_follows_route(d):
    """An image Content-Type on a JSON route is refused (415) before its body is read;
    the JSON cap (1 MiB) holds whatever the Content-Type says."""
    pid = d.proc.pid
    before = rss_kib(pid)
    for path, method in (("/v1/search/images", "POST"), ("/v1/people/1", "PATCH"),
                         ("/v1/people/1/merge", "POST"), ("/v1/search/faces", "POST")):
        for ctype in ("image/jpeg", "application/octet-stream"):
            conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
            conn.putrequest(method, path)
            conn.putheader("Content-Type", ctype)
            conn.putheader("Content-Length", str(16 * MIB))
            conn.endheaders()
            try:
                conn.send(b"{" * (64 * 1024))
            except OSError:
                pass
            resp = conn.getresponse()
            body = resp.read().decode()
            conn.close()
            check(resp.status == 415 and "unsupported_media_type" in body,
                  "%s %s with %s -> %s %s" % (method, path, ctype, resp.status, body))
    # A JSON route with a JSON type still stops at 1 MiB.
    st, body = post_stream(d.port, "/v1/search/images", "application/json", 3 * MIB)
    check(st == 413, "3 MiB of JSON -> %s %s" % (st, body))
    grown = rss_kib(pid) - before
    log("415 for images on JSON routes, 413 past 1 MiB of JSON; RSS grew %d KiB" % grown)
    check(grown < 16 * 1024, "RSS grew by %d KiB answering refused bodies" % grown)


def uploads_stream_to_disk(d):
    """Eight 48 MiB uploads at once cost disk, not memory: the daemon's RSS grows by far
    less than one body (they used to be buffered whole)."""
    pid = d.proc.pid
    before = rss_kib(pid)
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.02)
    t = threading.Thread(target=sample)
    t.start()
    results = []

    def one(k):
        results.append(post_stream(d.port, "/v1/jobs?asset_id=big-%d&tasks=faces" % k,
                                   "image/jpeg", 48 * MIB))
    threads = [threading.Thread(target=one, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stop.set()
    t.join()
    for st, body in results:
        check(st == 202, "48 MiB upload -> %s %s" % (st, body))
    grown = peak[0] - before
    log("8 concurrent 48 MiB uploads: 202 each; peak RSS grew %d KiB" % grown)
    check(grown < 48 * 1024, "RSS grew by %d KiB for 8 x 48 MiB uploads" % grown)
    # An upload over --max-body is cut off: 413, and no temp file stays behind.
    st, body = post_stream(d.port, "/v1/jobs?asset_id=huge&tasks=faces", "image/jpeg",
                           80 * MIB)
    check(st == 413, "80 MiB upload (limit 64 MiB) -> %s %s" % (st, body))
    spool = os.path.join(d.data_dir, "uploads")
    wait_until(lambda: not [f for f in os.listdir(spool) if f.startswith(".")], 10,
               what="temp upload files removed")


def spool_files(d):
    spool = os.path.join(d.data_dir, "uploads")
    return sorted(f for f in os.listdir(spool) if not f.startswith(".")) if os.path.isdir(spool) \
        else []


def upload(d, asset, data):
    st, js = d.request("POST", "/v1/jobs?asset_id=%s&tasks=faces" % asset, data,
                       headers={"Content-Type": "image/jpeg"})
    check(st in (200, 202), "upload %s -> %s %s" % (asset, st, js))
    return js


def spool_metric(d):
    st, text = d.get("/metrics")
    check(st == 200, "/metrics -> %s" % st)
    vals = {}
    for line in text.splitlines():
        if line.startswith("inferd_spool_"):
            k, v = line.split()
            vals[k] = float(v)
    return vals


def spool_lifecycle(ctx):
    """A spooled upload lives as long as a queued or running job needs it: it goes when its
    last job ends (done here, cancelled in the api-only daemon), not while a second job of
    the same bytes still waits; orphans a crash left are swept at start; /metrics counts it."""
    photo = open(face_images()[0], "rb").read()
    # Jobs that run: the file goes when the job is done.
    d = ctx.daemon(slots=1, poll_ms=200)
    js = upload(d, "life-1", photo)
    d.wait_jobs([js["id"]], timeout=60)
    wait_until(lambda: spool_files(d) == [], 10, what="upload removed after its job ended")
    log("an upload is removed once its job is done")
    d.kill()

    # An api-only daemon never runs jobs: they stay queued until cancelled.
    data = ctx.path("api-data")
    spool = os.path.join(data, "uploads")
    os.makedirs(spool, mode=0o700)
    old = os.path.join(spool, "ab" * 32)
    young = os.path.join(spool, "cd" * 32)
    for f in (old, young):
        with open(f, "wb") as fh:
            fh.write(b"orphan")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    a = ctx.daemon(role="api", data_dir=data, poll_ms=200)
    wait_until(lambda: not os.path.exists(old), 10, what="an hour-old orphan swept at start")
    check(os.path.exists(young), "a young unreferenced upload was swept (it may be in flight)")
    os.unlink(young)
    j1 = upload(a, "twin-1", photo)
    j2 = upload(a, "twin-2", photo)
    files = spool_files(a)
    check(len(files) == 1, "two uploads of the same bytes share one file: %s" % files)
    wait_until(lambda: spool_metric(a) == {"inferd_spool_bytes": len(photo),
                                           "inferd_spool_files": 1}, 15,
               what="/metrics counting the one spooled upload (%d bytes)" % len(photo))
    st, js = a.request("DELETE", "/v1/jobs/%d" % j1["id"])
    check(st == 200 and js["state"] == "cancelled", "cancel -> %s %s" % (st, js))
    check(spool_files(a) == files, "the upload went while another queued job needs it")
    st, js = a.request("DELETE", "/v1/jobs/%d" % j2["id"])
    check(st == 200 and js["state"] == "cancelled", "cancel -> %s %s" % (st, js))
    check(spool_files(a) == [], "the upload stayed after its last job was cancelled")
    wait_until(lambda: spool_metric(a) == {"inferd_spool_bytes": 0, "inferd_spool_files": 0}, 15,
               what="/metrics showing an empty spool")
    log("shared upload kept while a job needs it, removed with the last; orphans swept")


PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]"
       b"/Count 1>>endobj 3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 64 64]>>endobj\n"
       b"trailer<</Root 1 0 R>>\n")
SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="2000" height="2000"><filter id="f">'
       + b'<feTurbulence baseFrequency="0.9" numOctaves="10"/>' * 10
       + b'</filter><rect width="2000" height="2000" filter="url(#f)"/></svg>')


def formats_outside_the_allowlist(d):
    """A PDF and an SVG (ten full-canvas feTurbulence filters: a minute of CPU if it were
    rendered) end `failed` at once with unsupported_format; predict answers 415."""
    ids = {}
    for name, data, ctype in (("pdf", PDF, "application/octet-stream"),
                              ("svg", SVG, "image/svg+xml")):
        st, js = d.request("POST", "/v1/jobs?asset_id=fmt-%s" % name, data,
                           headers={"Content-Type": ctype})
        check(st == 202, "upload %s -> %s %s" % (name, st, js))
        ids[name] = js["id"]
        st, js = d.request("POST", "/v1/predict", data, headers={"Content-Type": ctype})
        check(st == 415 and js["error"]["code"] == "unsupported_format",
              "predict %s -> %s %s" % (name, st, js))
    t0 = time.monotonic()
    jobs = d.wait_jobs(list(ids.values()), states=("failed",), timeout=30)
    for name, jid in ids.items():
        err = jobs[jid].get("error") or {}
        check(err.get("code") == "unsupported_format" and name.upper() in err.get("message", ""),
              "job %s error %r" % (name, err))
    log("PDF and SVG: jobs failed with unsupported_format in %.2f s, predict 415" %
        (time.monotonic() - t0))


def flat_png(w, h, depth=8, rgba=False, interlace=False):
    """A w x h PNG of one colour: a few hundred KB that take libvips seconds to decode
    (and, interlaced, w * h * 8 bytes of memory at 16-bit RGBA)."""
    import struct
    import zlib

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    bpp = (4 if rgba else 3) * depth // 8
    passes = ([(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
               (0, 1, 1, 2)] if interlace else [(0, 0, 1, 1)])
    z = zlib.compressobj(1)
    out = []
    for x0, y0, dx, dy in passes:
        pw, ph = (w - x0 + dx - 1) // dx, (h - y0 + dy - 1) // dy
        if pw > 0 and ph > 0:
            row = b"\x00" + b"\x40" * (pw * bpp)
            out.extend(z.compress(row) for _ in range(ph))
    idat = b"".join(out) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, depth, 6 if rgba else 2, 0, 0, 1 if interlace else 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) +
            chunk(b"IEND", b""))


def decode_memory_is_bounded(ctx):
    """An interlaced 16-bit RGBA PNG of 6000x6000 (a few hundred KB; 288 MB once decoded
    whole) is refused from its header under --decode-memory 64M: the job fails too_big at
    once, predict answers 422, and the daemon's RSS does not move."""
    bomb = flat_png(6000, 6000, depth=16, rgba=True, interlace=True)
    d = ctx.daemon(slots=1, poll_ms=200, extra=["--decode-memory", "64M"])
    before = rss_kib(d.proc.pid)
    t0 = time.monotonic()
    st, js = d.request("POST", "/v1/jobs?asset_id=bomb", bomb, headers={"Content-Type": "image/png"})
    check(st == 202, "upload bomb -> %s %s" % (st, js))
    jobs = d.wait_jobs([js["id"]], states=("failed",), timeout=30)
    err = jobs[js["id"]].get("error") or {}
    check(err.get("code") == "too_big" and "decode budget" in err.get("message", ""),
          "bomb job error %r" % err)
    st, js = d.request("POST", "/v1/predict", bomb, headers={"Content-Type": "image/png"})
    check(st == 422 and js["error"]["code"] == "too_big", "predict bomb -> %s %s" % (st, js))
    grown = rss_kib(d.proc.pid) - before
    check(grown < 64 * 1024, "RSS grew by %d KiB" % grown)
    log("interlaced 6000x6000 16-bit RGBA PNG (%d bytes): too_big in %.2f s under a 64 MiB "
        "budget, RSS +%d KiB" % (len(bomb), time.monotonic() - t0, grown))
    d.kill()


def deadline_frees_the_slot(ctx):
    """With --job-timeout-ms 1000, a photo that takes seconds to decode ends failed
    (timeout) after about a second, not retried, and the one slot runs the next job."""
    big = flat_png(10000, 10000)
    d = ctx.daemon(slots=1, poll_ms=200, extra=["--job-timeout-ms", "1000"])
    t0 = time.monotonic()
    st, js = d.request("POST", "/v1/jobs?asset_id=slow", big, headers={"Content-Type": "image/png"})
    check(st == 202, "upload slow -> %s %s" % (st, js))
    slow = js["id"]
    photo = open(face_images()[0], "rb").read()
    st, js = d.request("POST", "/v1/jobs?asset_id=after-slow", photo,
                       headers={"Content-Type": "image/jpeg"})
    check(st == 202, "upload -> %s %s" % (st, js))
    jobs = d.wait_jobs([slow], states=("failed",), timeout=30)
    took = time.monotonic() - t0
    err = jobs[slow].get("error") or {}
    check(err.get("code") == "timeout" and jobs[slow]["attempts"] == 1,
          "slow job: %r attempts %s" % (err, jobs[slow]["attempts"]))
    check(took < 8, "the slow job took %.1f s to fail" % took)
    d.wait_jobs([js["id"]], timeout=60)
    st, js = d.request("POST", "/v1/predict", big, headers={"Content-Type": "image/png"},
                       timeout=30)
    check(st == 422 and js["error"]["code"] == "timeout", "predict slow -> %s %s" % (st, js))
    log("a 10000x10000 PNG stopped at the 1 s deadline (job failed 'timeout' in %.1f s, "
        "predict 422); the next job ran" % took)
    d.kill()


def main(ctx):
    d = ctx.daemon(slots=1, poll_ms=200)
    formats_outside_the_allowlist(d)
    body_type_follows_route(d)
    uploads_stream_to_disk(d)
    d.kill()
    spool_lifecycle(ctx)
    deadline_frees_the_slot(ctx)
    decode_memory_is_bounded(ctx)


if __name__ == "__main__":
    run_test(main, timeout=300)
