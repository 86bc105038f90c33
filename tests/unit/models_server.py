#!/usr/bin/env python3
"""Local HTTP server for test_models_fetch.c: serves the files under ROOT
(argv[1]) on 127.0.0.1 at a random port, with Range support and test modes set
by GET /_mode?cut=N&once=1&norange=1&wrong=1 (each request to /_mode resets
the modes not named and the log): cut=N closes the connection once the file
offset N is sent (once=1: only on the first request of each path), norange
answers 200 with the whole file to a Range request, wrong flips one byte.
GET /_log returns the requests seen since the last /_mode as JSON (path,
range header, status, body bytes sent). Prints "PORT N" on stdout, then runs
until stdin closes."""
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class BaseHandler(BaseHTTPRequestHandler):
    """What both test servers share (hub_server.py imports it): replies, the /_mode and
    /_log control requests, the request log, and a file body with Range and cut modes."""

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, data, headers=()):
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def begin(self, **extra):
        """Answers a control request (returns None) or logs this request and returns
        (url, query, entry, mode, first): `first` when no earlier request had its path."""
        srv = self.server
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/_mode":
            with srv.lock:
                srv.mode = {k: int(v) for k, v in q.items()}
                srv.log = []
                srv.cut_done = set()
            self.reply(200, b"ok")
            return None
        if url.path == "/_log":
            with srv.lock:
                self.reply(200, json.dumps(srv.log).encode())
            return None
        entry = dict({"path": url.path}, **extra)
        entry.update({"range": self.headers.get("Range"), "status": 0, "sent": 0})
        with srv.lock:
            srv.log.append(entry)
            mode = dict(srv.mode)
            first = url.path not in srv.cut_done
            srv.cut_done.add(url.path)
        return url, q, entry, mode, first

    def send_file_bytes(self, data, entry, mode, first, honour_range=True):
        """`data` as the answer to a GET with an optional "bytes=N-" Range (206, or 416 past
        the end); with mode cut=N the connection is hung up once file offset N is sent."""
        start, status, headers = 0, 200, []
        m = re.fullmatch(r"bytes=(\d+)-", entry["range"] or "")
        if m and honour_range:
            start = int(m.group(1))
            if start >= len(data):
                entry["status"] = 416
                self.reply(416, b"", [("Content-Range", "bytes */%d" % len(data))])
                return
            status = 206
            headers.append(("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data))))
        body = bytes(data[start:])
        entry["status"] = status
        cut = mode.get("cut")
        if cut is not None and start < cut < len(data) and (first or not mode.get("once")):
            # Promise the whole body, send up to file offset `cut`, hang up.
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body[: cut - start])
            self.wfile.flush()
            entry["sent"] = cut - start
            self.close_connection = True
            return
        self.reply(status, body, headers)
        entry["sent"] = len(body)


class Handler(BaseHandler):
    def do_GET(self):
        got = self.begin()
        if got is None:
            return
        url, _, entry, mode, first = got
        srv = self.server
        rel = url.path.lstrip("/")
        full = os.path.realpath(os.path.join(srv.root, rel))
        if not full.startswith(srv.root + os.sep) or not os.path.isfile(full):
            entry["status"] = 404
            self.reply(404, b"not found")
            return
        with open(full, "rb") as f:
            data = bytearray(f.read())
        if mode.get("wrong") and data:
            data[len(data) // 2] ^= 0xFF
        self.send_file_bytes(data, entry, mode, first, honour_range=not mode.get("norange"))


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients that hang up early are expected


def serve(handler):
    """Serves argv[1] with `handler` on a free port until stdin closes."""
    s = Server(("127.0.0.1", 0), handler)
    s.root = os.path.realpath(sys.argv[1])
    s.lock = threading.Lock()
    s.mode = {}
    s.log = []
    s.cut_done = set()
    threading.Thread(target=s.serve_forever, daemon=True).start()
    print("PORT %d" % s.server_port, flush=True)
    sys.stdin.read()  # the test closes our stdin (or dies) to stop us


if __name__ == "__main__":
    serve(Handler)
