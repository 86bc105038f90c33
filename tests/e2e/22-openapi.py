"""Real responses of `inferd serve` match api/openapi.json.

A daemon with a token runs real jobs (path, URL, upload and batch jobs on the
face-api photos), then every route of the document is called, successes and
errors alike (400, 401, 403, 404, 405, 413, 415, 422): each answer's status
must be declared for its operation (not only by `default`), its Content-Type
must be one of the declared media types, its declared headers must match their
schemas, and a JSON body must validate against the declared schema with a JSON
Schema 2020-12 validator (python3-jsonschema), $refs resolved inside the
document. Every Server-Sent Event's data must be a JobEvent; every path answers
an undeclared method with 405 and an Allow header naming exactly the
document's methods; every operation of the document must have been exercised.
GET /openapi.json must serve the committed file byte for byte.

The checker checks itself first on real answers made wrong (a required member
removed, a wrong type, an unknown member, an undeclared status or media type):
each must be refused, so that it cannot silently pass everything."""
import http.client
import json
import os
import re
import socket
import sys
import urllib.parse

from inferdtest import (SseReader, TestFailure, check, face_images, log, run_test, wait_until)

try:
    import jsonschema
except ImportError:  # a pyenv/venv python without Debian's dist-packages
    sys.path.append("/usr/lib/python3/dist-packages")
    import jsonschema

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOC_PATH = os.path.join(REPO, "api", "openapi.json")
TOKEN = "openapi-test-token"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def pointer(*parts):
    """A JSON pointer of `parts` (RFC 6901 escapes)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class Checker:
    """Validates answers against the OpenAPI document `doc`."""

    def __init__(self, doc):
        self.doc = doc
        self.covered = {}  # (path template, method) -> set of statuses seen
        self.validators = {}
        self.templates = []
        for tmpl in doc["paths"]:
            rx = re.escape(tmpl)
            rx = rx.replace(re.escape("{asset_id}"), "(.+)")
            rx = re.sub(r"\\\{[a-z_]+\\\}", "([^/]+)", rx)
            literal = len(re.sub(r"\{[a-z_]+\}", "", tmpl))
            self.templates.append((literal, tmpl, re.compile("^" + rx + "/?$")))
        self.templates.sort(key=lambda t: -t[0])  # /v1/jobs/batch before /v1/jobs/{id}
        # Every schema of the document is a valid 2020-12 schema.
        for name, schema in doc["components"]["schemas"].items():
            jsonschema.Draft202012Validator.check_schema(schema)

    def errors(self, instance, ptr):
        """Validation errors of `instance` against the schema at JSON pointer `ptr`."""
        v = self.validators.get(ptr)
        if v is None:
            # The document is the root resource, so "#/components/..." refs resolve in it;
            # its other members are not JSON Schema keywords and are ignored.
            root = dict(self.doc)
            root["$schema"] = DIALECT
            root["$ref"] = "#" + urllib.parse.quote(ptr, safe="/~")
            v = jsonschema.Draft202012Validator(root)
            self.validators[ptr] = v
        # The precise errors first: an unevaluatedProperties error only echoes a failed allOf.
        errs = sorted(v.iter_errors(instance), key=lambda e: e.validator == "unevaluatedProperties")
        return ["%s at %s" % (e.message, "/".join(str(p) for p in e.absolute_path) or "(root)")
                for e in errs]

    def validate(self, instance, ptr, what):
        errs = self.errors(instance, ptr)
        check(not errs, "%s does not match %s:\n  %s\n  body: %s" %
              (what, ptr, "\n  ".join(errs[:10]), json.dumps(instance)[:600]))

    def template(self, path):
        for _, tmpl, rx in self.templates:
            if rx.match(path):
                return tmpl
        return None

    def resolve(self, obj, ptr):
        """Follows a local $ref: (object, its pointer)."""
        while "$ref" in obj:
            ref = obj["$ref"]
            check(ref.startswith("#/"), "non-local $ref %s" % ref)
            ptr = ref[1:]
            obj = self.doc
            for part in ptr.split("/")[1:]:
                obj = obj[urllib.parse.unquote(part).replace("~1", "/").replace("~0", "~")]
        return obj, ptr

    def response(self, method, url, status, headers, raw):
        """Checks one answer against the document; returns the parsed JSON body or None."""
        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
        tmpl = self.template(path)
        check(tmpl is not None, "%s %s: no path of the document matches" % (method, path))
        op = self.doc["paths"][tmpl].get(method.lower())
        check(op is not None, "%s %s: the document has no %s on %s" % (method, path, method, tmpl))
        resp = op["responses"].get(str(status))
        check(resp is not None, "%s %s: status %d is not declared for %s %s (declared: %s)" %
              (method, path, status, method, tmpl, ", ".join(op["responses"])))
        resp, rptr = self.resolve(resp, pointer("paths", tmpl, method.lower(), "responses",
                                                str(status)))
        for name, h in resp.get("headers", {}).items():
            h, hptr = self.resolve(h, rptr + pointer("headers", name))
            v = headers.get(name.lower())
            check(v is not None, "%s %s %d: header %s missing" % (method, path, status, name))
            sch = h["schema"]
            val = v
            if sch.get("type") == "integer":
                val = int(v)
            self.validate(val, hptr + "/schema", "%s %s %d header %s" % (method, path, status, name))
        content = resp.get("content")
        body = None
        if not content:
            check(raw == b"", "%s %s %d: a body where none is declared: %r" %
                  (method, path, status, raw[:200]))
        else:
            ctype = headers.get("content-type", "")
            media = ctype.split(";")[0].strip().lower()
            declared = [m for m in content if m == media or
                        (m.endswith("/*") and media.startswith(m[:-1]))]
            check(declared, "%s %s %d: Content-Type %r is not declared (%s)" %
                  (method, path, status, ctype, ", ".join(content)))
            if media == "application/json":
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise TestFailure("%s %s %d: not JSON: %r" % (method, path, status, raw[:200]))
                self.validate(body, rptr + pointer("content", declared[0], "schema"),
                              "%s %s %d" % (method, path, status))
        self.covered.setdefault((tmpl, method.lower()), set()).add(status)
        return body


def expect_rejected(what, fn):
    """fn() must fail: the checker's self-check."""
    try:
        fn()
    except TestFailure as e:
        log("self-check: %s refused: %s" % (what, str(e).splitlines()[0][:150]))
        return
    raise TestFailure("the checker accepted %s" % what)


def main(ctx):
    with open(DOC_PATH, "rb") as f:
        doc_bytes = f.read()
    doc = json.loads(doc_bytes)
    try:
        from importlib.metadata import version
        jv = version("jsonschema")
    except Exception:
        jv = "?"
    log("jsonschema %s from %s" % (jv, os.path.dirname(jsonschema.__file__)))
    ck = Checker(doc)
    images = face_images()
    root = ctx.media_root(images)
    media = ctx.media_server()
    media.route("/photo.jpg", file=images[3])
    d = ctx.daemon(slots=1, media_root=root, start=False, poll_ms=200,
                   extra=["--token", TOKEN, "--people-min-faces", "1", "--max-body", "4000000"])
    d.token = TOKEN
    d.start()

    def call(method, url, body=None, headers=None, token=True, expect=None, ctype=None):
        """One request; the answer is checked against the document. Returns (status, body,
        headers)."""
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = "Bearer " + TOKEN
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if ctype:
            hdrs["Content-Type"] = ctype
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=120)
        try:
            conn.request(method, url, body=body, headers=hdrs)
            r = conn.getresponse()
            raw = r.read()
            h = {k.lower(): v for k, v in r.getheaders()}
            status = r.status
        finally:
            conn.close()
        js = ck.response(method, url, status, h, raw)
        if expect is not None:
            exp = expect if isinstance(expect, tuple) else (expect,)
            check(status in exp, "%s %s -> %d (expected %s): %r" %
                  (method, url, status, "/".join(map(str, exp)), raw[:300]))
        return status, (js if js is not None else raw), h

    def raw_request(method, url, head_lines, body=b"", head_only=False):
        """A hand-made request (a Content-Length that lies): (status, headers, body).
        head_only: returns once the headers are in (an event stream never ends)."""
        s = socket.create_connection(("127.0.0.1", d.port), timeout=30)
        try:
            req = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n" % (
                method, url, TOKEN)
            req += "".join(l + "\r\n" for l in head_lines) + "Connection: close\r\n\r\n"
            s.sendall(req.encode() + body)
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except (ConnectionResetError, socket.timeout):
                    break
                if not chunk:
                    break
                data += chunk
                if head_only and b"\r\n\r\n" in data:
                    break
        finally:
            s.close()
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        h = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            h[k.strip().lower()] = v.strip()
        n = int(h.get("content-length", len(rest)))
        return int(lines[0].split()[1]), h, rest[:n]

    # --- the document itself ----------------------------------------------------
    st, served, h = call("GET", "/openapi.json", token=False, expect=200)
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    conn.request("GET", "/openapi.json")
    served_bytes = conn.getresponse().read()
    conn.close()
    check(served_bytes == doc_bytes, "GET /openapi.json is not api/openapi.json (%d vs %d bytes)" %
          (len(served_bytes), len(doc_bytes)))
    check(h.get("cache-control") == "no-cache", "openapi.json Cache-Control %r" %
          h.get("cache-control"))
    check(doc["info"]["version"] == call("GET", "/v1/info", expect=200)[1]["version"],
          "info.version differs from the server's version")

    # --- jobs on real images ----------------------------------------------------
    jobs = []
    for i, p in enumerate(images[:3]):
        st, js, h = call("POST", "/v1/jobs", {"asset_id": "face/%d.jpg" % i,
                                              "source": {"path": os.path.basename(p)},
                                              "payload": {"album": "a%d" % (i % 2), "n": i}},
                         expect=202)
        check(h.get("location") == "/v1/jobs/%d" % js["id"], "Location %r" % h.get("location"))
        jobs.append(js["id"])
    st, js, _ = call("POST", "/v1/jobs", {"asset_id": "face/2.jpg",
                                          "source": {"path": os.path.basename(images[2])},
                                          "payload": {"album": "a0", "n": 2}}, expect=(200, 202))
    log("the same job again -> %d deduplicated=%s" % (st, js["deduplicated"]))
    st, js, _ = call("POST", "/v1/jobs", {"asset_id": "url:photo", "tasks": ["image_embedding"],
                                          "source": {"url": media.url("/photo.jpg")},
                                          "max_attempts": 2, "priority": 5}, expect=202)
    jobs.append(js["id"])
    with open(images[4], "rb") as f:
        jpeg = f.read()
    st, js, _ = call("POST", "/v1/jobs?asset_id=upload/5.jpg&tasks=faces,image_embedding&priority=1",
                     jpeg, ctype="image/jpeg", expect=202)
    check("upload" in js["source"], "upload job source %r" % js["source"])
    jobs.append(js["id"])
    st, js, _ = call("POST", "/v1/jobs/batch", {"jobs": [
        {"asset_id": "batch/6.jpg", "source": {"path": os.path.basename(images[5])}},
        {"asset_id": "batch/bad", "source": {"path": "x.jpg"}, "tasks": ["nope"]}]}, expect=202)
    check(js["queued"] == 1 and js["rejected"] == 1, "batch counts %s" % js)
    jobs.append(js["jobs"][0]["id"])
    # A job cancelled while it waits behind the others (slots=1, lowest priority).
    st, js, _ = call("POST", "/v1/jobs", {"asset_id": "cancel/me", "priority": -1000,
                                          "source": {"path": os.path.basename(images[0])}},
                     expect=202)
    st, js, _ = call("DELETE", "/v1/jobs/%d" % js["id"], expect=200)
    log("cancelled job %d: %s" % (js["id"], js["state"]))
    sse = SseReader(d.port, "/v1/events?after=0", headers={"Authorization": "Bearer " + TOKEN})
    d.wait_jobs(jobs, timeout=240)

    st, page, _ = call("GET", "/v1/jobs?limit=3", expect=200)
    check(page["next_cursor"] is not None, "no next_cursor on a full page")
    call("GET", "/v1/jobs?limit=3&cursor=%d" % page["next_cursor"], expect=200)
    call("GET", "/v1/jobs?state=done", expect=200)
    st, job, _ = call("GET", "/v1/jobs/%d" % jobs[0], expect=200)
    check(job["state"] == "done" and job["timings_ms"], "job %s" % job)

    # --- the checker checks itself on real answers made wrong ------------------
    job_ptr = pointer("components", "schemas", "Job")
    check(not ck.errors(job, job_ptr), "a real job fails its own schema")
    for what, mutate in [
            ("a job without its required state", lambda j: j.pop("state")),
            ("a job whose id is a string", lambda j: j.update(id=str(j["id"]))),
            ("a job with an unknown member", lambda j: j.update(colour="blue")),
            ("a job with a bad timestamp", lambda j: j.update(created_at="yesterday")),
            ("a job with an unknown task", lambda j: j["tasks"].append("ocr")),
            ("a job whose error is a string", lambda j: j.update(error="boom"))]:
        bad = json.loads(json.dumps(job))
        mutate(bad)
        expect_rejected(what, lambda: ck.validate(bad, job_ptr, what))
    health = call("GET", "/health", token=False, expect=200)[1]
    bad = dict(health, slots="1")
    expect_rejected("a health whose slots is a string", lambda: ck.response(
        "GET", "/health", 200, {"content-type": "application/json", "cache-control": "no-store"},
        json.dumps(bad).encode()))
    expect_rejected("an undeclared status (418)", lambda: ck.response(
        "GET", "/health", 418, {"content-type": "application/json"}, json.dumps(health).encode()))
    expect_rejected("an undeclared media type (text/plain job)", lambda: ck.response(
        "GET", "/v1/jobs/1", 200, {"content-type": "text/plain"}, json.dumps(job).encode()))
    expect_rejected("a wrong Cache-Control on /health", lambda: ck.response(
        "GET", "/health", 200, {"content-type": "application/json", "cache-control": "max-age=9"},
        json.dumps(health).encode()))
    expect_rejected("an error without its message", lambda: ck.response(
        "GET", "/v1/jobs/1", 404, {"content-type": "application/json"},
        b'{"error": {"code": "not_found"}}'))

    # --- service routes -----------------------------------------------------------
    call("GET", "/ready", expect=200)
    st, text, _ = call("GET", "/metrics", expect=200)
    check(b"inferd_uptime_seconds" in text, "metrics without inferd_uptime_seconds")
    st, info, _ = call("GET", "/v1/info", expect=200)
    call("GET", "/", token=False, expect=200)
    call("GET", "/ui/app.js", token=False, expect=200)
    call("GET", "/ui/style.css", token=False, expect=200)
    call("GET", "/ui/no-such-file.js", token=False, expect=404)

    # --- assets -------------------------------------------------------------------
    st, al, _ = call("GET", "/v1/assets?limit=2", expect=200)
    check(al["total"] >= 6 and al["next_cursor"], "assets page %s" % al)
    call("GET", "/v1/assets?limit=1000&cursor=" + urllib.parse.quote(al["next_cursor"]),
         expect=200)
    st, asset, _ = call("GET", "/v1/assets/face%2F0.jpg", expect=200)
    st, asset_v, _ = call("GET", "/v1/assets/face%2F0.jpg?vectors=1", expect=200)
    check(asset["faces"] and asset_v["faces"][0].get("vector"), "asset face/0.jpg has no faces")
    face_id = asset["faces"][0]["id"]
    call("GET", "/v1/assets/face%2F0.jpg/thumbnail", expect=200)
    call("GET", "/v1/assets/face%%2F0.jpg/thumbnail?face=%d" % face_id, expect=200)
    call("GET", "/v1/assets/url:photo/duplicates?threshold=0.5&limit=5", expect=200)

    # --- search ------------------------------------------------------------------
    st, res, _ = call("POST", "/v1/search/images", {"asset_id": "face/0.jpg", "limit": 3},
                      expect=200)
    check(res["results"], "no image search results")
    vec = asset_v["image_embeddings"][0]["vector"]
    call("POST", "/v1/search/images", {"vector": vec, "filter": {"album": "a0"}, "min_score": -1},
         expect=200)
    call("POST", "/v1/search/images", {"text": "a photo of people"},
         expect=200 if info["text_search"] else 400)
    st, fres, _ = call("POST", "/v1/search/faces", {"face_id": face_id, "limit": 5}, expect=200)
    call("POST", "/v1/search/faces", {"vector": asset_v["faces"][0]["vector"], "ef": 50},
         expect=200)

    # --- people (--people-min-faces 1: every face founds a person) ---------------
    def people():
        return call("GET", "/v1/people", expect=200)[1]["people"]
    wait_until(lambda: len(people()) >= 3, 60, interval=0.5, what="people")
    ps = people()
    a, b = ps[0]["id"], ps[1]["id"]
    call("GET", "/v1/people/%d" % a, expect=200)
    call("PATCH", "/v1/people/%d" % a, {"name": "Ada"}, expect=200)
    call("PATCH", "/v1/people/%d" % b, {"name": None}, expect=200)
    st, merged, _ = call("POST", "/v1/people/%d/merge" % a, {"from": [b]}, expect=200)
    check(merged["name"] == "Ada", "merged person %s" % merged)

    # --- predict ------------------------------------------------------------------
    st, an, _ = call("POST", "/v1/predict?vectors=1", jpeg, ctype="image/jpeg", expect=200)
    check(an["faces"] and "vector" in an["image_embedding"], "predict result %s" % str(an)[:300])
    call("POST", "/v1/predict?tasks=image_embedding",
         {"source": {"path": os.path.basename(images[1])}}, expect=200)
    call("POST", "/v1/predict", b"this is not an image at all", ctype="application/octet-stream",
         expect=(415, 422))

    # --- events -------------------------------------------------------------------
    call("DELETE", "/v1/assets/upload%2F5.jpg", expect=204)
    wait_until(lambda: any(e[2].get("state") == "deleted" for e in sse.snapshot()
                           if isinstance(e[2], dict)), 20, what="the deleted event")
    sse.close()
    evs = sse.snapshot()
    check(sse.status == 200 and len(evs) >= len(jobs), "%d events, status %s" %
          (len(evs), sse.status))
    ev_ptr = pointer("components", "schemas", "JobEvent")
    for eid, kind, data in evs:
        check(kind == "job" and isinstance(data, dict) and str(data.get("event_id")) == eid,
              "event %s %s %r" % (eid, kind, data))
        ck.validate(data, ev_ptr, "event %s" % eid)
    states = sorted({e[2]["state"] for e in evs})
    log("%d events validated as JobEvent (states %s)" % (len(evs), ", ".join(states)))
    expect_rejected("an event in an unknown state", lambda: ck.validate(
        dict(evs[0][2], state="exploded"), ev_ptr, "event"))
    st, h, body = raw_request("GET", "/v1/events?after=0", [], head_only=True)
    check(st == 200, "GET /v1/events -> %d" % st)
    ck.response("GET", "/v1/events", st, h, b"")
    call("GET", "/v1/events?after=x", expect=400)

    # --- errors ---------------------------------------------------------------------
    st, js, h = call("GET", "/v1/info", token=False, expect=401)
    check(h.get("www-authenticate", "").startswith("Bearer"), "401 without WWW-Authenticate")
    call("GET", "/metrics", token=False, expect=401)
    call("GET", "/v1/jobs/abc", expect=400)
    call("GET", "/v1/jobs?limit=0", expect=400)
    call("POST", "/v1/jobs", b'{"asset_id": ', ctype="application/json", expect=400)
    call("POST", "/v1/jobs", {"asset_id": "x", "source": {"path": "a.jpg"}, "colour": 1},
         expect=400)
    call("POST", "/v1/jobs", {"asset_id": "x", "source": {"path": "../../etc/passwd"}},
         expect=403)
    call("POST", "/v1/jobs", {"asset_id": "x", "source": {"path": "no-such-photo.jpg"}},
         expect=422)
    call("POST", "/v1/jobs/batch", {"jobs": []}, expect=400)
    call("POST", "/v1/search/images", {"asset_id": "a", "text": "b"}, expect=400)
    call("POST", "/v1/search/faces", {"face_id": 999999999}, expect=404)
    call("POST", "/v1/search/images", jpeg, ctype="image/jpeg", expect=415)
    call("PATCH", "/v1/people/%d" % a, b"\x89PNG", ctype="image/png", expect=415)
    call("GET", "/v1/jobs/999999", expect=404)
    call("DELETE", "/v1/jobs/999999", expect=404)
    call("GET", "/v1/assets/no-such-asset", expect=404)
    call("DELETE", "/v1/assets/no-such-asset", expect=404)
    call("GET", "/v1/assets/no-such-asset/thumbnail", expect=404)
    call("GET", "/v1/assets/no-such-asset/duplicates", expect=404)
    call("GET", "/v1/assets/bad%20id", expect=400)
    call("GET", "/v1/people/99999999", expect=404)
    call("PATCH", "/v1/people/99999999", {"name": "x"}, expect=404)
    call("POST", "/v1/people/%d/merge" % a, {"from": [a]}, expect=400)
    # 413 before a byte of the body is read: Content-Length says too much.
    for url, ct, n in [("/v1/search/faces", "application/json", 2 << 20),
                       ("/v1/jobs?asset_id=big", "image/jpeg", 5000000),
                       ("/v1/predict", "image/jpeg", 5000000)]:
        st, h, body = raw_request("POST", url, ["Content-Type: " + ct, "Content-Length: %d" % n])
        check(st == 413, "POST %s with Content-Length %d -> %d" % (url, n, st))
        ck.response("POST", url, st, h, body)
    # An unknown route: 404 with an Error body.
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    conn.request("GET", "/v1/nothing-here", headers={"Authorization": "Bearer " + TOKEN})
    r = conn.getresponse()
    body = json.loads(r.read())
    conn.close()
    check(r.status == 404, "unknown route -> %d" % r.status)
    ck.validate(body, pointer("components", "schemas", "Error"), "unknown route's 404")
    # Every path: a method the document does not list is 405, Allow lists exactly its methods.
    fill = {"{id}": str(a), "{asset_id}": "face%2F0.jpg", "{file}": "app.js"}
    for tmpl, item in doc["paths"].items():
        url = tmpl
        for k, v in fill.items():
            url = url.replace(k, v)
        mine = sorted(m.upper() for m in item if m in METHODS)
        other = next(m for m in ("PUT", "PATCH", "DELETE", "POST") if m not in mine)
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        conn.request(other, url, headers={"Authorization": "Bearer " + TOKEN})
        r = conn.getresponse()
        raw = r.read()
        conn.close()
        allow = sorted(m.strip() for m in (r.getheader("Allow") or "").split(","))
        check(r.status == 405 and allow == mine, "%s %s -> %d Allow %s (document: %s)" %
              (other, url, r.status, allow, mine))
        ck.validate(json.loads(raw), pointer("components", "schemas", "Error"),
                    "%s %s 405" % (other, url))
    log("405 with the document's methods in Allow on all %d paths" % len(doc["paths"]))

    # --- coverage ------------------------------------------------------------------
    missing = []
    for tmpl, item in doc["paths"].items():
        for m in item:
            if m in METHODS:
                seen = ck.covered.get((tmpl, m))
                log("  %-7s %-36s %s" % (m.upper(), tmpl, ",".join(map(str, sorted(seen or [])))))
                if not seen:
                    missing.append("%s %s" % (m.upper(), tmpl))
    check(not missing, "operations never exercised: %s" % missing)
    statuses = sum(len(s) for s in ck.covered.values())
    log("%d operations, %d (operation, status) pairs checked against the document" %
        (len(ck.covered), statuses))


run_test(main, timeout=280)
