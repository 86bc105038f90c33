"""Slow and greedy clients cannot take /health away: hundreds of trickling half-header sockets, a full set of event streams, and one address over its connection limit."""
import http.client
import json
import socket
import time

from inferdtest import check, log, percentile, run_test, wait_until


def health_times(port, n=20, timeout=5):
    """n sequential GET /health on fresh connections: their times in ms (None for failures)."""
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            c.request("GET", "/health")
            r = c.getresponse()
            r.read()
            c.close()
            out.append((time.monotonic() - t0) * 1000 if r.status == 200 else None)
        except OSError:
            out.append(None)
    return out


def slowloris(d, n=300):
    """n sockets each send half a request line and then a byte every second: /health keeps
    answering in milliseconds, and the daemon closes them at the header deadline."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        s.sendall(b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    t0 = time.monotonic()
    times = []
    closed = set()
    while time.monotonic() - t0 < 6:
        for i, s in enumerate(socks):
            if i in closed:
                continue
            try:
                s.sendall(b"a")
            except OSError:
                closed.add(i)
        times += health_times(d.port, n=5)
        time.sleep(0.5)
    ok = [t for t in times if t is not None]
    check(len(ok) == len(times), "%d of %d /health calls failed under slowloris" %
          (len(times) - len(ok), len(times)))
    p99 = percentile(ok, 99)
    log("%d trickling half-header sockets: /health n=%d p50=%.1f ms p99=%.1f ms max=%.1f ms" %
        (n, len(ok), percentile(ok, 50), p99, max(ok)))
    check(max(ok) < 1000, "/health took %.0f ms with slow clients around" % max(ok))

    # The header deadline (3 s here) has passed: the server ended every one of them.
    def all_closed():
        for i, s in enumerate(socks):
            if i in closed:
                continue
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    closed.add(i)
            except BlockingIOError:
                pass
            except OSError:
                closed.add(i)
        return len(closed) == n
    wait_until(all_closed, 10, interval=0.2, what="the daemon closing trickling sockets")
    log("all %d closed by the daemon after the header deadline" % n)
    for s in socks:
        s.close()
    st, text = d.get("/metrics")
    reaped = [l for l in text.splitlines() if l.startswith("inferd_http_connections_reaped_total")]
    check(reaped and float(reaped[0].split()[1]) >= n, "metrics: %s" % reaped)


def event_streams(d, cap):
    """--max-event-streams streams open: one more is refused with 503, /health is unaffected,
    and a closed stream frees its place."""
    conns = []
    for _ in range(cap):
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        c.request("GET", "/v1/events")
        r = c.getresponse()
        check(r.status == 200, "stream -> %s" % r.status)
        conns.append((c, r))
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    c.request("GET", "/v1/events")
    r = c.getresponse()
    body = r.read().decode()
    check(r.status == 503 and "max-event-streams" in body, "stream %d -> %s %s" % (cap + 1,
                                                                                r.status, body))
    c.close()
    ok = [t for t in health_times(d.port) if t is not None]
    check(len(ok) == 20 and max(ok) < 1000, "/health with %d streams open: %s" % (cap, ok))
    log("%d event streams open, the next refused with 503; /health max %.1f ms" % (cap, max(ok)))
    for c, r in conns:
        c.close()

    def reopened():
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        c.request("GET", "/v1/events")
        r = c.getresponse()
        st = r.status
        c.close()
        return st == 200
    wait_until(reopened, 30, interval=0.5, what="a stream slot freed by closed clients")


def local_address():
    """A non-loopback address of this machine, or None."""
    for probe in ("10.255.255.255", "192.0.2.1"):
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect((probe, 9))
            ip = s.getsockname()[0]
            s.close()
            if not ip.startswith("127.") and ip != "0.0.0.0":
                return ip
        except OSError:
            pass
    return None


def per_address_limit(ctx):
    """One non-loopback client address may hold --max-connections-per-ip connections; the
    next is refused while a loopback probe still gets /health."""
    ip = local_address()
    if ip is None:
        log("no non-loopback address on this machine: per-address limit not checked")
        return
    d = ctx.daemon(extra=["--allow-no-auth", "--max-connections-per-ip", "8",
                          "--header-timeout-ms", "0"], start=False)
    # Listen on every address so the test can connect from a non-loopback one.
    d.args[d.args.index("--listen") + 1] = "0.0.0.0:%d" % d.port
    d.start()
    socks = [socket.create_connection((ip, d.port), timeout=5) for _ in range(8)]
    time.sleep(0.3)
    s = socket.create_connection((ip, d.port), timeout=5)
    s.settimeout(3)
    try:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        refused = s.recv(100) == b""
    except OSError:
        refused = True
    s.close()
    check(refused, "a 9th connection from %s was served" % ip)
    ok = [t for t in health_times(d.port) if t is not None]
    check(len(ok) == 20, "loopback /health failed while %s is at its limit" % ip)
    log("%s: 8 connections held, the 9th refused; loopback /health still served" % ip)
    for s in socks:
        s.close()
    d.kill()


def main(ctx):
    d = ctx.daemon(slots=1, extra=["--header-timeout-ms", "3000", "--max-event-streams", "40"])
    slowloris(d)
    event_streams(d, 40)
    d.kill()
    per_address_limit(ctx)


if __name__ == "__main__":
    run_test(main, timeout=240)
