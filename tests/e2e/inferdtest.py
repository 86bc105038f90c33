"""Shared harness for the black-box tests of `inferd serve` (tests/e2e/NN-*.py).

Each test spawns the real daemon on a free 127.0.0.1 port with a temporary
data directory, a real mosquitto broker on another free port when it needs
one, and a local media HTTP server whose behaviour is programmed per path.
Every wait is bounded in time; on failure the test prints the tail of every
daemon log it started and exits 1. Nothing here talks to anything but
127.0.0.1 servers the test started itself.

Inputs come from the environment (tests/e2e.cmake sets them), so a test can
also be run by hand:
    INFERD_BIN=build-e2e/inferd INFERD_MODELS_DIR=var/models \\
    INFERD_TESTDATA=.deps/testdata python3 tests/e2e/01-api-seed-scenario.py
"""
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

try:
    import paho.mqtt.client as mqtt
except ImportError:  # a pyenv/venv python without Debian's dist-packages
    sys.path.append("/usr/lib/python3/dist-packages")
    import paho.mqtt.client as mqtt

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.abspath(os.path.join(HERE, "..", ".."))
MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")
SKIMAGE = "/usr/lib/python3/dist-packages/skimage/data"
OPENCV = "/usr/share/doc/opencv-doc/examples/data"


class TestFailure(Exception):
    pass


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when the test process dies (ctest timeout,
    kill -9 of the test), so no daemon or broker outlives its test."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def log(msg):
    print(msg, flush=True)


def check(cond, msg):
    """Fails the test with `msg` unless `cond`."""
    if not cond:
        raise TestFailure(msg)


def env_path(name, default):
    v = os.environ.get(name)
    return os.path.abspath(v if v else os.path.join(SRCDIR, default))


def inferd_bin():
    return env_path("INFERD_BIN", "build-e2e/inferd")


def models_dir():
    return env_path("INFERD_MODELS_DIR", "var/models")


def testdata_dir():
    return env_path("INFERD_TESTDATA", ".deps/testdata")


def free_port():
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, interval=0.05, what="condition"):
    """Polls `pred` until it returns a true value (returned) or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TestFailure("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def percentile(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


# --- test images -------------------------------------------------------------


def face_images():
    """The six face-api sample photos (people, faces)."""
    d = os.path.join(testdata_dir(), "faceapi")
    paths = [os.path.join(d, "sample%d.jpg" % i) for i in range(1, 7)]
    for p in paths:
        check(os.path.isfile(p), "test image %s missing (run scripts/setup.sh)" % p)
    return paths


def other_images():
    """Real photos without (many) faces, from Debian packages, when installed."""
    names = [
        os.path.join(SKIMAGE, "astronaut.png"),
        os.path.join(SKIMAGE, "chelsea.png"),
        os.path.join(SKIMAGE, "coffee.png"),
        os.path.join(OPENCV, "baboon.jpg"),
        os.path.join(OPENCV, "fruits.jpg"),
        os.path.join(OPENCV, "lena.jpg"),
        os.path.join(OPENCV, "building.jpg"),
        os.path.join(OPENCV, "home.jpg"),
    ]
    return [p for p in names if os.path.isfile(p)]


def all_images():
    return face_images() + other_images()


# --- processes -----------------------------------------------------------------


class Ctx:
    """Everything one test started: temp dir, daemons, brokers, servers.

    close() stops them all (by their own pids/objects) and removes the temp
    dir unless the test failed (then its path is printed).
    """

    def __init__(self, name):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="inferd-e2e-%s." % name)
        self.daemons = []
        self.brokers = []
        self.servers = []
        self.collectors = []
        self.postgres = []

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def media_root(self, files=None, name="media"):
        """A media root holding copies of `files` (default: every test image)."""
        root = self.path(name)
        os.makedirs(root, exist_ok=True)
        for f in files if files is not None else all_images():
            shutil.copy(f, os.path.join(root, os.path.basename(f)))
        return root

    def clip_models(self, name):
        """A models dir holding the default face models (links) and a generated CLIP model
        `name` (tools/mkclip: Immich's directory layout, toy weights); returns its path."""
        mkclip = os.environ.get("INFERD_MKCLIP") or os.path.join(
            os.path.dirname(inferd_bin()), "mkclip")
        check(os.access(mkclip, os.X_OK), "mkclip not found at %s (build the mkclip target)" %
              mkclip)
        models = self.path("models")
        os.makedirs(models)
        for m in ("blazeface-back-256", "dlib-resnet"):
            os.symlink(os.path.abspath(os.path.join(models_dir(), m)), os.path.join(models, m))
        merges = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), "tests", "fixtures", "clip", "merges.txt")
        out = subprocess.run([mkclip, "--merges", merges, os.path.join(models, name)],
                             capture_output=True, text=True, timeout=120)
        check(out.returncode == 0, "mkclip: %s" % out.stderr)
        return models

    def daemon(self, **kw):
        d = Daemon(self, **kw)
        self.daemons.append(d)
        return d

    def broker(self, **kw):
        b = Broker(self, **kw)
        self.brokers.append(b)
        return b

    def media_server(self):
        m = MediaServer()
        self.servers.append(m)
        return m

    def collector(self, broker_port, **kw):
        c = MqttCollector(broker_port, **kw)
        self.collectors.append(c)
        return c

    def pg(self):
        """A throwaway PostgreSQL server (tests/pg/pgctl.sh) in this test's temp dir."""
        p = Postgres(self)
        self.postgres.append(p)
        return p

    def dump_logs(self):
        for d in self.daemons:
            d.dump_log()
        for b in self.brokers:
            b.dump_log()
        for p in self.postgres:
            p.dump_log()

    def close(self, ok):
        for c in self.collectors:
            c.close()
        for d in self.daemons:
            d.kill()
        for b in self.brokers:
            b.stop()
        for m in self.servers:
            m.close()
        for p in self.postgres:
            p.stop()
        if ok:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            log("kept temp dir %s" % self.tmp)


def run_test(fn, timeout=240):
    """Runs fn(ctx) with a hard time bound; exits 0 on success, 1 on failure."""
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    binp = inferd_bin()
    if not os.access(binp, os.X_OK):
        log("FAIL: inferd binary %s not found (set INFERD_BIN)" % binp)
        sys.exit(1)

    def on_alarm(signum, frame):
        raise TestFailure("test exceeded its %d s time bound" % timeout)

    def on_term(signum, frame):
        raise TestFailure("test interrupted by signal %d" % signum)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(timeout)
    ctx = Ctx(name)
    ok = False
    t0 = time.monotonic()
    try:
        fn(ctx)
        ok = True
    except TestFailure as e:
        log("FAIL: %s" % e)
    except Exception:
        log("FAIL: unexpected exception")
        traceback.print_exc(file=sys.stdout)
    finally:
        signal.alarm(0)
        if not ok:
            ctx.dump_logs()
        try:
            ctx.close(ok)
        except Exception:
            traceback.print_exc(file=sys.stdout)
    log("%s: %s in %.1f s" % (name, "PASS" if ok else "FAIL", time.monotonic() - t0))
    sys.stdout.flush()
    sys.exit(0 if ok else 1)


class Broker:
    """A mosquitto broker on a private port with a temp config.

    persistent=True keeps sessions and queued QoS 1 messages across a
    stop/start (saved on SIGTERM), so that a client with clean_session=False
    does not miss what is published while it reconnects after a restart.
    """

    def __init__(self, ctx, port=None, persistent=False, extra_conf=""):
        """`extra_conf`: more mosquitto.conf lines (further listeners, say)."""
        self.ctx = ctx
        self.port = port or free_port()
        self.dir = ctx.path("broker-%d" % self.port)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        self.logpath = os.path.join(self.dir, "mosquitto.log")
        with open(self.conf, "w") as f:
            f.write("listener %d 127.0.0.1\n" % self.port)
            f.write("allow_anonymous true\n")
            if os.geteuid() == 0:
                # mosquitto started as root drops to user "mosquitto", which
                # cannot write the persistence file in our temp dir.
                f.write("user root\n")
            if persistent:
                f.write("persistence true\n")
                f.write("persistence_location %s/\n" % self.dir)
                f.write("autosave_interval 0\n")
            else:
                f.write("persistence false\n")
            f.write("log_dest stderr\n")
            f.write("log_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
            f.write("connection_messages true\n")
            f.write(extra_conf)
        self.proc = None
        self.start()

    def start(self, timeout=10):
        check(self.proc is None, "broker already running")
        self.logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf], stdout=self.logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)

        def up():
            if self.proc.poll() is not None:
                self.dump_log()
                raise TestFailure("mosquitto exited with %s" % self.proc.returncode)
            return port_open(self.port)

        wait_until(up, timeout, what="mosquitto on port %d" % self.port)

    def stop(self, timeout=10):
        """Stops the broker (SIGTERM, then SIGKILL) and waits until the port is free."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self.logf.close()

    def restart(self):
        self.stop()
        self.start()

    def dump_log(self, lines=30):
        try:
            with open(self.logpath, "rb") as f:
                tail = f.read().decode("utf-8", "replace").splitlines()[-lines:]
        except OSError:
            return
        log("--- mosquitto log tail (%s):" % self.logpath)
        for line in tail:
            log("  " + line)


class Daemon:
    """One `inferd serve` process; stop/kill/start keep the same port and data dir."""

    def __init__(self, ctx, slots=2, broker=None, media_root=None, allow_private=True,
                 lease_ms=None, retry_base_ms=None, grace_ms=None, extra=None, port=None,
                 data_dir=None, start=True, ready_timeout=60, name=None, role="serve",
                 db=None, worker_id=None, poll_ms=None):
        """`role`: "serve", "api" (no slots, no models) or "worker" (only /health,
        /ready, /metrics on `port`); `db`: a store URL (e.g. Postgres.url_for())."""
        self.ctx = ctx
        self.role = role
        self.port = port or free_port()
        self.name = name or "inferd-%s-%d" % (role, self.port)
        self.data_dir = data_dir or ctx.path(self.name + "-data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.logpath = ctx.path(self.name + ".log")
        self.worker_id = worker_id
        self.args = [inferd_bin(), role, "--listen", "127.0.0.1:%d" % self.port,
                     "--data-dir", self.data_dir]
        if role != "api":
            self.args += ["--models-dir", models_dir(), "--slots", str(slots)]
        if db is not None:
            self.args += ["--db", db]
        if worker_id is not None:
            self.args += ["--worker-id", worker_id]
        if poll_ms is not None:
            self.args += ["--poll-ms", str(poll_ms)]
        if media_root:
            self.args += ["--media-root", media_root]
        if broker is not None:
            bport = broker if isinstance(broker, int) else broker.port
            self.args += ["--mqtt-url", "mqtt://127.0.0.1:%d" % bport]
        if allow_private:
            self.args.append("--allow-private-urls")
        if lease_ms is not None and role != "api":
            self.args += ["--lease-ms", str(lease_ms)]
        if retry_base_ms is not None and role != "api":
            self.args += ["--retry-base-ms", str(retry_base_ms)]
        if grace_ms is not None and role != "api":
            self.args += ["--grace-ms", str(grace_ms)]
        self.args += list(extra or [])
        self.proc = None
        self.ready_timeout = ready_timeout
        if start:
            self.start()

    # process control
    def start(self, wait_ready=True):
        check(self.proc is None or self.proc.poll() is not None, "daemon already running")
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFERD_")}
        if getattr(self, "logf", None) is not None and not self.logf.closed:
            self.logf.close()
        self.logf = open(self.logpath, "ab")
        self.logf.write(("\n=== start %s\n" % " ".join(self.args)).encode())
        self.logf.flush()
        self.proc = subprocess.Popen(self.args, stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env,
                                     preexec_fn=_die_with_parent)
        self.started_at = time.monotonic()
        if wait_ready:
            self.wait_ready(self.ready_timeout)
        return self

    def wait_ready(self, timeout=60):
        def ready():
            if self.proc.poll() is not None:
                raise TestFailure("%s exited with status %s before /ready" %
                                  (self.name, self.proc.returncode))
            try:
                st, _ = self.request("GET", "/ready", timeout=1)
                return st == 200
            except OSError:
                return False

        wait_until(ready, timeout, interval=0.05, what="%s /ready" % self.name)
        log("%s ready in %.2f s" % (self.name, time.monotonic() - self.started_at))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        """SIGKILL, like a crash; waits for the process to be gone."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
            self.logf.close()

    def sigterm(self, timeout):
        """SIGTERM; returns (exit status or None if still running after `timeout` s, seconds)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        return rc, time.monotonic() - t0

    def kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if not self.logf.closed:
            self.logf.close()

    def log_text(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def dump_log(self, lines=60):
        log("--- %s log tail (%s):" % (self.name, self.logpath))
        for line in self.log_text().splitlines()[-lines:]:
            log("  " + line)

    # HTTP
    def request(self, method, path, body=None, headers=None, timeout=10):
        """One request on a fresh connection: (status, parsed JSON or raw text or None).

        `body` may be a dict/list (sent as JSON), bytes or str (sent as is).
        """
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            hdrs = dict(headers or {})
            if getattr(self, "token", None):
                hdrs.setdefault("Authorization", "Bearer " + self.token)
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            elif isinstance(body, str):
                body = body.encode()
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            ctype = resp.getheader("Content-Type", "")
            if data and ("json" in ctype or data[:1] in (b"{", b"[")):
                try:
                    return resp.status, json.loads(data)
                except ValueError:
                    return resp.status, data.decode("utf-8", "replace")
            return resp.status, (data.decode("utf-8", "replace") if data else None)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def submit(self, asset_id, source=None, tasks=None, priority=None, payload=None,
               expect=(200, 201, 202)):
        """POST /v1/jobs with JSON; returns the job object."""
        body = {"asset_id": asset_id}
        if source is not None:
            body["source"] = source
        if tasks is not None:
            body["tasks"] = tasks
        if priority is not None:
            body["priority"] = priority
        if payload is not None:
            body["payload"] = payload
        st, js = self.request("POST", "/v1/jobs", body)
        check(st in expect, "POST /v1/jobs %s -> %s %s" % (json.dumps(body), st, js))
        return job_of(js)

    def submit_path(self, asset_id, name, **kw):
        return self.submit(asset_id, {"path": name}, **kw)

    def job(self, jid):
        st, js = self.get("/v1/jobs/%s" % jid)
        check(st == 200, "GET /v1/jobs/%s -> %s %s" % (jid, st, js))
        return job_of(js)

    def wait_jobs(self, ids, states=("done",), timeout=60, final=("done", "failed", "cancelled")):
        """Waits until every job in `ids` is final; fails unless each ended in `states`.

        Returns {id: job}.
        """
        pending = set(ids)
        out = {}
        deadline = time.monotonic() + timeout
        while pending:
            for jid in list(pending):
                j = self.job(jid)
                if j.get("state") in final:
                    out[jid] = j
                    pending.discard(jid)
            if not pending:
                break
            if not self.alive():
                raise TestFailure("%s died (status %s) while waiting for jobs" %
                                  (self.name, self.proc.returncode))
            if time.monotonic() >= deadline:
                states_now = {jid: self.job(jid).get("state") for jid in pending}
                raise TestFailure("jobs not final after %d s: %s" % (timeout, states_now))
            time.sleep(0.05)
        for jid, j in out.items():
            check(j.get("state") in states,
                  "job %s ended %s (expected %s): error=%s" %
                  (jid, j.get("state"), "/".join(states), j.get("error")))
        return out

    def list_jobs(self, query=""):
        st, js = self.get("/v1/jobs" + query)
        check(st == 200, "GET /v1/jobs%s -> %s %s" % (query, st, js))
        return js

    def asset(self, asset_id, query=""):
        st, js = self.get("/v1/assets/%s%s" % (urllib.parse.quote(asset_id, safe=""), query))
        check(st == 200, "GET /v1/assets/%s -> %s %s" % (asset_id, st, js))
        return js

    def health(self):
        st, js = self.get("/health")
        check(st == 200, "GET /health -> %s %s" % (st, js))
        return js


def job_of(js):
    """The job object of a response, whether bare or wrapped in {"job": ...}."""
    if isinstance(js, dict) and isinstance(js.get("job"), dict):
        return js["job"]
    check(isinstance(js, dict) and "id" in js, "response is not a job: %r" % (js,))
    return js


def jobs_page(js):
    """(jobs, next cursor or None) of a GET /v1/jobs response."""
    check(isinstance(js, dict), "GET /v1/jobs did not return an object: %r" % (js,))
    jobs = js.get("jobs", js.get("items"))
    check(isinstance(jobs, list), "GET /v1/jobs has no jobs array: %r" % (js,))
    cur = js.get("next_cursor", js.get("cursor", js.get("next")))
    return jobs, cur


def error_of(js):
    """(code, message) of an error body, failing unless it has the documented shape."""
    check(isinstance(js, dict) and isinstance(js.get("error"), dict),
          "error body is not {\"error\": {...}}: %r" % (js,))
    e = js["error"]
    check(isinstance(e.get("code"), str) and e["code"], "error has no code: %r" % (js,))
    check(isinstance(e.get("message"), str) and e["message"], "error has no message: %r" % (js,))
    return e["code"], e["message"]


def job_error(j):
    """(code, message) of a failed job's error, or (None, None)."""
    e = j.get("error")
    if isinstance(e, dict):
        return e.get("code"), e.get("message")
    if isinstance(e, str):
        return j.get("error_code"), e
    return None, None


# --- health latency ------------------------------------------------------------


class HealthPoller:
    """Polls GET /health every `interval` s on a fresh connection; records latency in ms."""

    def __init__(self, port, interval=0.05, timeout=5):
        self.port = port
        self.interval = interval
        self.timeout = timeout
        self.samples = []
        self.errors = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                conn.request("GET", "/health")
                r = conn.getresponse()
                r.read()
                conn.close()
                ms = (time.perf_counter() - t0) * 1000.0
                if r.status != 200:
                    self.errors.append("status %d" % r.status)
                self.samples.append(ms)
            except OSError as e:
                self.errors.append("%s after %.0f ms" % (e, (time.perf_counter() - t0) * 1e3))
            self._stop.wait(max(0.0, self.interval - (time.perf_counter() - t0)))

    def stop(self):
        self._stop.set()
        self._t.join(10)
        return self.samples

    def summary(self):
        s = self.samples
        return "n=%d p50=%.2f ms p99=%.2f ms max=%.2f ms errors=%d" % (
            len(s), percentile(s, 50), percentile(s, 99), max(s) if s else float("nan"),
            len(self.errors))


def health_latencies(port, n, interval=0.0):
    """n sequential GET /health latencies in ms (fresh connection each)."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/health")
        r = conn.getresponse()
        r.read()
        conn.close()
        out.append((time.perf_counter() - t0) * 1000.0)
        if interval:
            time.sleep(interval)
    return out


# --- MQTT ----------------------------------------------------------------------


class MqttCollector:
    """Subscribes to `topic` (QoS 1) in paho's network thread; records (topic, payload)
    in arrival order. Payloads are parsed as JSON when they are JSON.

    persistent=True uses a fixed client id with clean_session=False so that a
    broker with persistence keeps its subscription and queued messages over a
    restart. Reconnects by itself after an outage.
    """

    def __init__(self, broker_port, topic="inferd/#", persistent=False, timeout=10):
        self.port = broker_port
        self.topic = topic
        self.lock = threading.Lock()
        self.msgs = []
        self.connected = threading.Event()
        self.connects = 0
        cid = "inferd-e2e-%d-%d" % (os.getpid(), broker_port) if persistent else ""
        self.client = mqtt.Client(client_id=cid, clean_session=not persistent)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda c, u, mid, q: self.subscribed.set()
        self.client.connect("127.0.0.1", broker_port, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(timeout):
            raise TestFailure("MQTT collector could not subscribe on port %d" % broker_port)

    def _on_connect(self, client, userdata, flags, rc):
        if rc == 0:
            self.connects += 1
            self.connected.set()
            client.subscribe(self.topic, qos=1)

    def _on_disconnect(self, client, userdata, rc):
        self.connected.clear()

    def _on_message(self, client, userdata, msg):
        try:
            payload = json.loads(msg.payload.decode("utf-8"))
        except ValueError:
            payload = msg.payload
        with self.lock:
            self.msgs.append((msg.topic, payload))

    def messages(self, prefix=None):
        with self.lock:
            return [m for m in self.msgs if prefix is None or m[0].startswith(prefix)]

    def job_events(self):
        """Events on inferd/jobs/<id>, as (job id string, payload) in arrival order."""
        return [(t.split("/")[-1], p) for t, p in self.messages("inferd/jobs/")]

    def wait_for_jobs(self, ids, timeout=20):
        want = set(str(i) for i in ids)

        def have():
            got = set(j for j, _ in self.job_events())
            return want <= got

        wait_until(have, timeout, what="MQTT events for jobs %s (have %s)" %
                   (sorted(want), sorted(set(j for j, _ in self.job_events()))))

    def close(self):
        try:
            self.client.loop_stop()
            self.client.disconnect()
        except Exception:
            pass


# --- Server-Sent Events --------------------------------------------------------


class SseReader:
    """Reads GET /v1/events in a thread; records each event's (id, event, data parsed)."""

    def __init__(self, port, path="/v1/events", headers=None):
        self.port = port
        self.events = []
        self.lock = threading.Lock()
        self.status = None
        self.error = None
        self._stop = threading.Event()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n" % (
            path, port)
        for k, v in (headers or {}).items():
            req += "%s: %s\r\n" % (k, v)
        self.sock.sendall((req + "\r\n").encode())
        self.sock.settimeout(0.5)
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        buf = b""
        headers_done = False
        chunked = False
        raw = b""
        try:
            while not self._stop.is_set():
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                raw += data
                if not headers_done:
                    if b"\r\n\r\n" not in raw:
                        continue
                    head, raw = raw.split(b"\r\n\r\n", 1)
                    lines = head.decode("latin-1").split("\r\n")
                    self.status = int(lines[0].split()[1])
                    chunked = any(l.lower().startswith("transfer-encoding:") and
                                  "chunked" in l.lower() for l in lines[1:])
                    headers_done = True
                if chunked:
                    while True:
                        if b"\r\n" not in raw:
                            break
                        size_line, rest = raw.split(b"\r\n", 1)
                        try:
                            size = int(size_line.split(b";")[0].strip() or b"0", 16)
                        except ValueError:
                            self.error = "bad chunk size %r" % size_line
                            return
                        if len(rest) < size + 2:
                            break
                        buf += rest[:size]
                        raw = rest[size + 2:]
                else:
                    buf += raw
                    raw = b""
                buf = buf.replace(b"\r\n", b"\n")
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    self._block(block.decode("utf-8", "replace"))
        except OSError as e:
            self.error = str(e)

    def _block(self, block):
        ev = {"id": None, "event": None, "data": []}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            k, _, v = line.partition(":")
            v = v[1:] if v.startswith(" ") else v
            if k == "data":
                ev["data"].append(v)
            elif k in ("id", "event"):
                ev[k] = v
        if not ev["data"]:
            return
        text = "\n".join(ev["data"])
        try:
            data = json.loads(text)
        except ValueError:
            data = text
        with self.lock:
            self.events.append((ev["id"], ev["event"], data))

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def close(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self._t.join(5)


# --- media server --------------------------------------------------------------


class MediaServer:
    """A local HTTP server whose behaviour is programmed per path:

        route(path, file=F)                      serve F
        route(path, status=404)                  answer that status
        route(path, file=F, fail=2, mode="500")  fail 2 times (500, or "drop" the
                                                 connection), then serve F
        route(path, file=F, delay=3, slow=1)     wait 3 s before the first `slow`
                                                 answers (None = all), then serve F
    hits[path] counts requests per path (including failed ones).
    """

    def __init__(self):
        self.routes = {}
        self.hits = {}
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_GET(self):
                server._handle(self)

        class Srv(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.httpd = Srv(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self._t = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                   daemon=True)
        self._t.start()

    def url(self, path, host="127.0.0.1"):
        return "http://%s:%d%s" % (host, self.port, path)

    def route(self, path, file=None, status=None, fail=0, mode="500", delay=0.0, slow=None,
              body=None):
        with self.lock:
            self.routes[path] = {"file": file, "status": status, "fail": fail, "mode": mode,
                                 "delay": delay, "slow": slow, "body": body}
            self.hits.setdefault(path, 0)

    def hit_count(self, path):
        with self.lock:
            return self.hits.get(path, 0)

    def _handle(self, h):
        path = urllib.parse.urlsplit(h.path).path
        with self.lock:
            n = self.hits.get(path, 0)
            self.hits[path] = n + 1
            r = self.routes.get(path)
        if r is None:
            self._send(h, 404, b"no route\n", "text/plain")
            return
        if r["delay"] and (r["slow"] is None or n < r["slow"]):
            time.sleep(r["delay"])
        if n < r["fail"]:
            if r["mode"] == "drop":
                try:
                    h.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                h.close_connection = True
                return
            self._send(h, 500, b"injected failure\n", "text/plain")
            return
        if r["status"] is not None:
            self._send(h, r["status"], b"status %d\n" % r["status"], "text/plain")
            return
        data = r["body"]
        if data is None:
            with open(r["file"], "rb") as f:
                data = f.read()
        ctype = "image/png" if (r["file"] or "").endswith(".png") else "image/jpeg"
        self._send(h, 200, data, ctype)

    @staticmethod
    def _send(h, status, data, ctype):
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except OSError:
            pass

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# --- reference results ---------------------------------------------------------


def baseline(paths, timeout=120):
    """Runs `inferd analyze` on `paths`: {basename: analysis dict} (one run of each)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERD_")}
    p = subprocess.run([inferd_bin(), "analyze", "--models-dir", models_dir()] + list(paths),
                       capture_output=True, timeout=timeout, env=env)
    out = {}
    for line in p.stdout.decode().splitlines():
        a = json.loads(line)
        out[os.path.basename(a["path"])] = a
    check(len(out) == len(paths), "inferd analyze gave %d results for %d images: %s" %
          (len(out), len(paths), p.stderr.decode()[-2000:]))
    return out


# --- PostgreSQL -------------------------------------------------------------------


def pg_bindir():
    """Debian's PostgreSQL server binaries, or None when not installed."""
    best = None
    base = "/usr/lib/postgresql"
    if os.path.isdir(base):
        for v in sorted(os.listdir(base)):
            d = os.path.join(base, v, "bin")
            if os.access(os.path.join(d, "pg_ctl"), os.X_OK):
                best = d
    return os.environ.get("INFERD_PG_BINDIR") or best


def require_pg():
    """Exits 77 (ctest: skipped) when no PostgreSQL server is installed."""
    if pg_bindir() is None:
        log("SKIP: no PostgreSQL server installed (apt-get install postgresql)")
        sys.exit(77)


class Postgres:
    """A throwaway PostgreSQL server started with tests/pg/pgctl.sh in the test's temp dir.

    restart_fast() stops it with `pg_ctl stop -m fast` and starts it again on
    the same port (what an operator's restart looks like to the clients).
    query() runs SQL through psql and returns rows as lists of strings.
    """

    PGCTL = os.path.join(SRCDIR, "tests", "pg", "pgctl.sh")

    def __init__(self, ctx):
        self.ctx = ctx
        # The server runs as user postgres when we are root: it must reach the dir.
        os.chmod(ctx.tmp, 0o711)
        self.dir = ctx.path("pg")
        out = subprocess.run(["bash", self.PGCTL, "start", self.dir], capture_output=True,
                             timeout=90)
        check(out.returncode == 0, "pgctl start: %s" % out.stderr.decode(errors="replace"))
        self.url = out.stdout.decode().strip().splitlines()[-1]
        self.port = int(open(os.path.join(self.dir, "port")).read().strip())
        self.running = True
        log("postgres up at %s" % self.url)

    def url_for(self, schema=None):
        return self.url + ("?schema=%s" % schema if schema else "")

    def _as_pg(self, args):
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--"] + args
        return args

    def _pg_ctl(self, *args, timeout=60):
        cmd = self._as_pg([os.path.join(pg_bindir(), "pg_ctl"), "-D",
                           os.path.join(self.dir, "data")] + list(args))
        return subprocess.run(cmd, capture_output=True, timeout=timeout)

    def stop_fast(self):
        r = self._pg_ctl("-m", "fast", "-w", "-t", "30", "stop")
        check(r.returncode == 0, "pg_ctl stop: %s" % r.stderr.decode(errors="replace"))
        self.running = False

    def start_same_port(self):
        opts = ("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200" %
                (self.port, self.dir))
        r = self._pg_ctl("-l", os.path.join(self.dir, "server.log"), "-w", "-t", "30", "-o",
                         opts, "start")
        check(r.returncode == 0, "pg_ctl start: %s" % r.stderr.decode(errors="replace"))
        self.running = True

    def restart_fast(self):
        self.stop_fast()
        self.start_same_port()

    def query(self, sql, schema=None):
        """Rows of `sql` (lists of strings), run by psql on the server (schema: search_path)."""
        env = dict(os.environ)
        if schema:
            env["PGOPTIONS"] = "-c search_path=%s" % schema
        r = subprocess.run(["psql", "-X", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                            "-d", self.url, "-c", sql], capture_output=True, timeout=60, env=env)
        check(r.returncode == 0, "psql %r: %s" % (sql, r.stderr.decode(errors="replace")))
        return [line.split("\t") for line in r.stdout.decode().splitlines() if line != ""]

    def stop(self):
        if self.running or os.path.exists(os.path.join(self.dir, "port")):
            subprocess.run(["bash", self.PGCTL, "stop", self.dir], capture_output=True,
                           timeout=90)
        self.running = False

    def dump_log(self, lines=30):
        path = os.path.join(self.dir, "server.log")
        try:
            with open(path, "rb") as f:
                tail = f.read().decode("utf-8", "replace").splitlines()[-lines:]
        except OSError:
            return
        log("--- postgres log tail (%s):" % path)
        for line in tail:
            log("  " + line)
