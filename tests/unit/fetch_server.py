#!/usr/bin/env python3
"""Local HTTP server for test_fetch.c: two servers on 127.0.0.1 (A and B, random
ports) that serve fixed bodies, error statuses, redirects, slow and oversized
responses, and count the requests they see (GET /hits). Prints "PORTS A B" on
stdout, then runs until stdin closes."""
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def body(n):
    return bytes(i % 251 for i in range(n))


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def send(self, status, data=b"", headers=()):
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def redirect(self, location):
        self.send(302, b"moved", [("Location", location)])

    def do_GET(self):
        srv = self.server
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        p = url.path
        n = int(q.get("n", "100"))
        ms = int(q.get("ms", "0"))
        if p == "/hits":
            with srv.lock:
                self.send(200, str(srv.hits).encode())
            return
        with srv.lock:
            srv.hits += 1
        if p == "/bytes":
            self.send(200, body(n))
        elif p == "/empty":
            self.send(200, b"")
        elif p == "/nolength":
            # HTTP/1.0, no Content-Length: the body ends when the connection closes.
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body(n))
        elif p.startswith("/status/"):
            self.send(int(p.split("/")[2]), body(n))
        elif p.startswith("/redirect/"):
            k = int(p.split("/")[2])
            # /redirect/N: a chain of N redirects ending at /bytes?n=100
            self.redirect("/redirect/%d" % (k - 1) if k > 1 else "/bytes?n=100")
        elif p == "/to-other":
            self.redirect("http://127.0.0.1:%d/bytes?n=10" % srv.other.server_port)
        elif p == "/to-localhost":
            self.redirect("http://localhost:%d/bytes?n=10" % srv.other.server_port)
        elif p == "/to-file":
            self.redirect("file:///etc/passwd")
        elif p == "/slow":
            time.sleep(ms / 1000)
            self.send(200, body(n))
        elif p == "/slowbody":
            self.send_response(200)
            self.send_header("Content-Length", "20")
            self.end_headers()
            self.wfile.write(body(10))
            self.wfile.flush()
            time.sleep(ms / 1000)
            self.wfile.write(body(10))
        elif p == "/ua":
            self.send(200, self.headers.get("User-Agent", "").encode())
        else:
            self.send(400, b"unknown test path")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients that hang up early (size cap, timeouts) are expected


def serve():
    servers = []
    for _ in range(2):
        s = Server(("127.0.0.1", 0), Handler)
        s.lock = threading.Lock()
        s.hits = 0
        servers.append(s)
    servers[0].other, servers[1].other = servers[1], servers[0]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("PORTS %d %d" % (servers[0].server_port, servers[1].server_port), flush=True)
    sys.stdin.read()  # the test closes our stdin (or dies) to stop us


if __name__ == "__main__":
    serve()
