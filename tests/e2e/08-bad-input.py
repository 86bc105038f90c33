"""Malformed requests, escapes from the media root, oversized bodies, private URLs and wrong routes get clear 4xx JSON errors, and the daemon stays healthy and keeps working."""
import os
import socket
import time

from inferdtest import (check, error_of, face_images, job_error, log, run_test, wait_until)


def expect_error(d, method, path, body, statuses, what, headers=None):
    st, js = d.request(method, path, body, headers=headers)
    check(st in statuses, "%s: %s %s -> %s %s (expected %s)" % (what, method, path, st, js,
                                                                 statuses))
    code, msg = error_of(js)
    log("ok %-38s %s %s: %s" % (what, st, code, msg))
    return st, code, msg


def huge_body(port, path, ctype, send_mb=4, timeout=10, length=1 << 30, payload=None):
    """Announces a `length`-byte body (1 GiB), sends at most `send_mb` MB of it (zeros or
    `payload`), returns (status, body, bytes sent).

    Stops sending as soon as the server answers or closes; bounded in time.
    """
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\n"
            "Content-Length: %d\r\n\r\n" % (path, ctype, length)).encode()
    s.sendall(head)
    chunk = b"\0" * 65536
    sent = 0
    send_mb = min(send_mb, length / (1024.0 * 1024.0))
    deadline = time.monotonic() + timeout
    s.setblocking(False)
    resp = b""
    try:
        while sent < send_mb * 1024 * 1024 and time.monotonic() < deadline:
            try:
                data = s.recv(65536)
                if not data:
                    break
                resp += data
                break  # the server answered: stop sending
            except BlockingIOError:
                pass
            try:
                if payload is not None:
                    chunk = payload[sent:sent + 65536]
                sent += s.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)
    except OSError:
        pass  # reset or broken pipe: the server closed while we were sending
    s.setblocking(True)
    s.settimeout(max(0.5, deadline - time.monotonic()))
    try:
        while b"\r\n\r\n" not in resp or len(resp) < resp.find(b"\r\n\r\n") + 8:
            data = s.recv(65536)
            if not data:
                break
            resp += data
    except OSError:
        pass
    s.close()
    if not resp:
        return None, None, sent
    status = int(resp.split(b" ", 2)[1])
    return status, resp.split(b"\r\n\r\n", 1)[-1][:300], sent


def main(ctx):
    images = face_images()
    root = ctx.media_root(images)
    outside = ctx.path("outside.jpg")
    with open(images[0], "rb") as f:
        jpeg = f.read()
    with open(outside, "wb") as f:
        f.write(jpeg)
    os.symlink(outside, os.path.join(root, "link-out.jpg"))
    os.makedirs(os.path.join(root, "sub"))
    media = ctx.media_server()
    media.route("/img.jpg", file=images[0])
    d = ctx.daemon(slots=1, media_root=root)
    name = os.path.basename(images[0])
    J = "/v1/jobs"

    expect_error(d, "POST", J, '{"asset_id": "x", "source": {"path": ', (400,), "truncated JSON",
                 headers={"Content-Type": "application/json"})
    expect_error(d, "POST", J, "not json at all", (400,), "not JSON",
                 headers={"Content-Type": "application/json"})
    expect_error(d, "POST", J, "[1,2]", (400,), "JSON array body",
                 headers={"Content-Type": "application/json"})
    expect_error(d, "POST", J, {}, (400,), "empty object")
    _, _, m = expect_error(d, "POST", J, {"source": {"path": name}}, (400,), "missing asset_id")
    check("asset_id" in m, "message does not name asset_id: %s" % m)
    _, _, m = expect_error(d, "POST", J, {"asset_id": "a"}, (400,), "missing source")
    check("source" in m, "message does not name source: %s" % m)
    _, _, m = expect_error(d, "POST", J, {"asset_id": "a", "source": {"ftp": "x"}}, (400,),
                           "unknown source type")
    check("source" in m, "message does not name source: %s" % m)
    expect_error(d, "POST", J, {"asset_id": "a", "source": {"path": name, "url": "http://x/"}},
                 (400,), "two source types")
    expect_error(d, "POST", J, {"asset_id": "a", "source": {"url": "file:///etc/passwd"}},
                 (400, 403), "file:// URL")
    expect_error(d, "POST", J, {"asset_id": "a", "source": {"url": "not a url"}}, (400,),
                 "garbage URL")
    _, _, m = expect_error(d, "POST", J, {"asset_id": "a", "source": {"path": name},
                                          "tasks": ["bogus"]}, (400,), "unknown task")
    check("tasks" in m, "message does not name tasks: %s" % m)
    expect_error(d, "POST", J, {"asset_id": "a", "source": {"path": name}, "tasks": []}, (400,),
                 "empty tasks")
    expect_error(d, "POST", J, {"asset_id": "a", "source": {"path": name}, "priority": "high"},
                 (400,), "non-numeric priority")
    expect_error(d, "POST", J, {"asset_id": "a", "source": {"path": name}, "prio": 1}, (400,),
                 "unknown field")
    expect_error(d, "POST", J, {"asset_id": "a b", "source": {"path": name}}, (400,),
                 "asset id with a space")
    expect_error(d, "POST", J, {"asset_id": "x" * 129, "source": {"path": name}}, (400,),
                 "asset id too long")
    expect_error(d, "POST", J, {"asset_id": 5, "source": {"path": name}}, (400,),
                 "asset id not a string")
    expect_error(d, "POST", J, {"asset_id": "a", "source": {"path": name}, "payload": [1]},
                 (400,), "payload not an object")
    for p in ("../outside.jpg", "/etc/passwd", outside, "sub/../../outside.jpg", "link-out.jpg"):
        expect_error(d, "POST", J, {"asset_id": "esc", "source": {"path": p}}, (400, 403, 404),
                     "path escape %s" % p)
    st, _, _ = expect_error(d, "POST", J, {"asset_id": "esc", "source": {"path": "nope.jpg"}},
                            (400, 404, 422), "missing file")
    expect_error(d, "POST", J, {"asset_id": "esc", "source": {"path": "sub"}}, (400,),
                 "directory as path")

    for q in ("?limit=abc", "?limit=0", "?limit=1001", "?limit=-1", "?limit=1e3", "?cursor=x",
              "?cursor=-5", "?state=bogus"):
        _, _, m = expect_error(d, "GET", J + q, None, (400,), "list %s" % q)
        check(q[1:q.index("=")] in m, "message does not name %s: %s" % (q, m))
    expect_error(d, "GET", "/v1/jobs/abc", None, (400, 404), "job id not a number")
    expect_error(d, "GET", "/v1/jobs/0", None, (400, 404), "job id 0")
    expect_error(d, "GET", "/v1/jobs/99999999", None, (404,), "unknown job")
    expect_error(d, "GET", "/v1/jobs/99999999999999999999999", None, (400, 404),
                 "job id overflow")
    expect_error(d, "GET", "/v1/assets/never-seen", None, (404,), "unknown asset")
    expect_error(d, "DELETE", "/v1/assets/never-seen", None, (404,), "delete unknown asset")
    expect_error(d, "GET", "/v1/nothing", None, (404,), "unknown route")
    expect_error(d, "GET", "/ui/no-such-file.js", None, (404,), "unknown page file")
    expect_error(d, "POST", "/", b"{}", (405,), "POST to the page")
    for m_, p in (("PUT", J), ("DELETE", "/health"), ("POST", "/health"), ("PATCH", "/v1/jobs/1"),
                  ("GET", "/v1/predict"), ("POST", "/v1/events")):
        st, js = d.request(m_, p, b"" if m_ in ("PUT", "POST", "PATCH") else None)
        check(st == 405, "%s %s -> %s %s (expected 405)" % (m_, p, st, js))
        error_of(js)
        log("ok %-38s 405" % ("%s %s" % (m_, p)))

    # 1 GiB announced: 413 before the body is read.
    for path, ctype in ((J, "application/json"), (J + "?asset_id=huge", "image/jpeg"),
                        ("/v1/predict", "image/jpeg")):
        t0 = time.monotonic()
        st, body, sent = huge_body(d.port, path, ctype)
        log("1 GiB Content-Length to %s (%s): %s after %.2f s, %.1f MB sent: %s" %
            (path, ctype, st, time.monotonic() - t0, sent / 1e6, body))
        check(st == 413, "1 GiB body to %s -> %s (expected 413)" % (path, st))
    # A real JSON body over 1 MiB (no lying Content-Length) is 413 too.
    big = '{"asset_id": "a", "source": {"path": "%s"}, "payload": {"x": "%s"}}' % (
        name, "y" * (2 << 20))
    st, body, sent = huge_body(d.port, J, "application/json", length=len(big),
                               payload=big.encode())
    log("2 MiB JSON body: %s after %.1f MB sent: %s" % (st, sent / 1e6, body))
    check(st == 413, "2 MiB JSON body -> %s (expected 413)" % st)

    # Still healthy, still working.
    h = d.health()
    log("health after bad input: %s" % h)
    good = d.submit_path("good", name)
    d.wait_jobs([good["id"]], timeout=60)
    log("a good job still runs to done")

    # Without --allow-private-urls: loopback URLs are refused, nothing reaches the media server.
    d2 = ctx.daemon(slots=1, media_root=root, allow_private=False, name="inferd-noprivate")
    for url in (media.url("/img.jpg"), media.url("/img.jpg", host="localhost"),
                media.url("/img.jpg", host="[::1]"), media.url("/img.jpg", host="127.1"),
                media.url("/img.jpg", host="0x7f000001")):
        st, js = d2.request("POST", J, {"asset_id": "priv", "source": {"url": url}})
        if st in (400, 403):
            code, msg = error_of(js)
            log("ok private URL %s refused at submit: %s %s: %s" % (url, st, code, msg))
            continue
        check(st == 202, "private URL %s -> %s %s" % (url, st, js))
        j = d2.wait_jobs([js.get("job", js)["id"]], states=("failed",), timeout=30)
        j = list(j.values())[0]
        code, msg = job_error(j)
        log("ok private URL %s: job failed %s: %s (attempts %s)" % (url, code, msg,
                                                                    j["attempts"]))
        check(code == "forbidden", "private URL job error %s: %s" % (code, msg))
        check(j["attempts"] == 1, "forbidden is permanent but attempts = %s" % j["attempts"])
    check(media.hit_count("/img.jpg") == 0, "the media server got %d requests from the daemon "
          "without --allow-private-urls" % media.hit_count("/img.jpg"))
    check(d.alive() and d2.alive(), "a daemon died")


run_test(main, timeout=240)
