"""Events reach an mqtts:// broker only over a verified TLS connection.

The test makes its own CA, a broker certificate for "localhost" and a client
certificate, and runs one mosquitto with three listeners: plain (the test's
collector reads there), TLS, and TLS that requires a client certificate. It
checks that events arrive over TLS with the right CA; that a wrong CA or a
host name the certificate does not name keeps the connection down with a
warning saying why, and that the events queued meanwhile arrive once the
daemon runs with the right settings; that a broker asking for a client
certificate gets one; and that TLS options without mqtts://, or a missing CA
file, stop the daemon at start with a clear message.
"""
import os
import subprocess

from inferdtest import check, face_images, free_port, inferd_bin, log, run_test, wait_until


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_pki(d):
    """CA, a second unrelated CA, a server certificate for localhost and a client certificate."""
    os.makedirs(d, exist_ok=True)
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                "/CN=inferd test %s" % ca, "-keyout", ca + ".key", "-out", ca + ".crt", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout",
            "server.key", "-out", "server.csr", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.crt", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=inferd-client", "-keyout",
            "client.key", "-out", "client.csr", cwd=d)
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", "client.crt", cwd=d)
    for k in ("ca.key", "other-ca.key", "server.key", "client.key"):
        os.chmod(os.path.join(d, k), 0o644)  # mosquitto may run as another user
    return lambda name: os.path.join(d, name)


def mqtt_connected(d):
    st, body = d.request("GET", "/metrics")
    check(st == 200, "/metrics answered %s" % st)
    for line in body.splitlines():
        if line.startswith("inferd_mqtt_connected "):
            return float(line.split()[1]) == 1.0
    raise AssertionError("no inferd_mqtt_connected in /metrics")


def submit(d, asset, name):
    j = d.submit_path(asset, name, tasks=["image_embedding"])
    d.wait_jobs([j["id"]], timeout=60)
    return j["id"]


def refused_at_start(args, want):
    p = subprocess.run([inferd_bin(), "serve"] + args, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    check(p.returncode != 0, "inferd started with %s" % args)
    check(want in out, "start with %s: expected %r in: %s" % (args, want, out[-500:]))


def main(ctx):
    f = make_pki(ctx.path("pki"))
    tls_port, mtls_port = free_port(), free_port()
    tls = "cafile %s\ncertfile %s\nkeyfile %s\n" % (f("ca.crt"), f("server.crt"), f("server.key"))
    broker = ctx.broker(extra_conf="listener %d 127.0.0.1\n%slistener %d 127.0.0.1\n%s"
                        "require_certificate true\n" % (tls_port, tls, mtls_port, tls))
    wait_until(lambda: all(_open(p) for p in (tls_port, mtls_port)), 10, what="TLS listeners")
    col = ctx.collector(broker.port)
    images = face_images()
    root = ctx.media_root(images[:2])
    name = os.path.basename(images[0])

    # 1. The right CA: connected over TLS, events arrive.
    url = "mqtts://localhost:%d" % tls_port
    d = ctx.daemon(slots=1, media_root=root, extra=["--mqtt-url", url, "--mqtt-ca-file",
                                                    f("ca.crt")])
    wait_until(lambda: mqtt_connected(d), 15, what="mqtts connection")
    jid = submit(d, "tls-1", name)
    col.wait_for_jobs([jid], timeout=20)
    check(" tls" in d.log_text(), "the connect line does not say tls")
    log("mqtts with the test CA: connected, event for job %s delivered" % jid)
    d.kill()

    # 2. A CA that did not sign the broker: no connection, a warning, nothing lost.
    d = ctx.daemon(slots=1, media_root=root, data_dir=d.data_dir,
                   extra=["--mqtt-url", url, "--mqtt-ca-file", f("other-ca.crt")])
    wait_until(lambda: "certificate verify failed" in d.log_text(), 15,
               what="a warning that the broker's certificate does not verify")
    queued = submit(d, "tls-2", name)
    check(not mqtt_connected(d), "connected to a broker the CA did not sign")
    check(str(queued) not in [j for j, _ in col.job_events()], "event went through a wrong CA")
    d.kill()
    log("wrong CA: refused (%s)" % _warning(d.log_text()))

    # 3. The right CA but a host the certificate does not name (it names localhost only).
    d = ctx.daemon(slots=1, media_root=root, data_dir=d.data_dir,
                   extra=["--mqtt-url", "mqtts://127.0.0.1:%d" % tls_port,
                          "--mqtt-ca-file", f("ca.crt")])
    wait_until(lambda: _warning(d.log_text()) is not None, 15,
               what="a warning that the broker's name does not match")
    check(not mqtt_connected(d), "connected to 127.0.0.1 with a certificate for localhost")
    check(str(queued) not in [j for j, _ in col.job_events()], "event went to a misnamed broker")
    log("host name mismatch: refused (%s)" % _warning(d.log_text()))
    d.kill()

    # 4. A broker that requires a client certificate: refused without, delivered with;
    #    the event held back by 2. and 3. arrives too.
    murl = "mqtts://localhost:%d" % mtls_port
    d = ctx.daemon(slots=1, media_root=root, data_dir=d.data_dir,
                   extra=["--mqtt-url", murl, "--mqtt-ca-file", f("ca.crt")])
    wait_until(lambda: _warning(d.log_text()) is not None, 15,
               what="a warning that the broker wants a client certificate")
    check(not mqtt_connected(d), "connected without the client certificate the broker requires")
    log("client certificate required, none given: refused (%s)" % _warning(d.log_text()))
    d.kill()
    d = ctx.daemon(slots=1, media_root=root, data_dir=d.data_dir,
                   extra=["--mqtt-url", murl, "--mqtt-ca-file", f("ca.crt"),
                          "--mqtt-cert-file", f("client.crt"), "--mqtt-key-file", f("client.key")])
    col.wait_for_jobs([queued], timeout=20)
    jid = submit(d, "tls-3", name)
    col.wait_for_jobs([jid], timeout=20)
    log("client certificate: connected; the event queued while refused arrived, and a new one")
    d.kill()

    # 5. Mistakes stop the daemon at start.
    data = ctx.path("refused-data")
    base = ["--listen", "127.0.0.1:%d" % free_port(), "--data-dir", data]
    refused_at_start(base + ["--mqtt-url", "mqtt://localhost:%d" % broker.port,
                             "--mqtt-ca-file", f("ca.crt")], "need an mqtts://")
    refused_at_start(base + ["--mqtt-url", url, "--mqtt-ca-file", f("missing.crt")],
                     "missing.crt")
    refused_at_start(base + ["--mqtt-url", url, "--mqtt-cert-file", f("client.crt")],
                     "go together")
    log("TLS flags without mqtts://, a missing CA file, a certificate without key: refused")


def _open(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _warning(text):
    """The last events warning naming a broker, or None."""
    lines = [ln for ln in text.splitlines() if "events" in ln and "broker=" in ln and
             ("WARN" in ln.upper()) and "disconnected" not in ln]
    return lines[-1].split("broker=", 1)[1] if lines else None


if __name__ == "__main__":
    run_test(main, timeout=240)
