"""GET /metrics of a daemon that ran jobs passes `promtool check metrics` (Debian's
prometheus package, unpacked by scripts/setup.sh promtool): base units, counters named
_total, histograms cumulative. The stage histogram is in seconds and agrees with the jobs'
own timings. promtool refuses a text with an abbreviated unit, so this check can fail.
The example Grafana dashboard (docs/grafana/inferd.json) uses only metrics /metrics has."""
import json
import os
import re
import subprocess

from inferdtest import check, face_images, log, run_test

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROMTOOL = os.environ.get("INFERD_PROMTOOL",
                          os.path.join(REPO, ".deps", "prometheus", "usr", "bin", "promtool"))


def promtool(text):
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    return p.returncode, (p.stdout + p.stderr).strip()


def main(ctx):
    check(os.access(PROMTOOL, os.X_OK), "%s missing: run scripts/setup.sh promtool" % PROMTOOL)
    rc, out = promtool("# HELP x_duration_ms A time.\n# TYPE x_duration_ms gauge\n"
                       "x_duration_ms 1\n")
    log("promtool on an abbreviated unit: rc=%d %s" % (rc, out))
    check(rc != 0 and "ms" in out, "promtool accepted x_duration_ms: %d %r" % (rc, out))

    images = face_images()[:2]
    root = ctx.media_root(images)
    d = ctx.daemon(slots=1, media_root=root)
    ids = [d.submit_path("m%d" % i, os.path.basename(p))["id"] for i, p in enumerate(images)]
    jobs = d.wait_jobs(ids, timeout=120)
    st, text = d.get("/metrics")
    check(st == 200 and isinstance(text, str), "GET /metrics -> %s" % st)
    rc, out = promtool(text)
    log("promtool check metrics: rc=%d %s" % (rc, out or "(nothing to say)"))
    check(rc == 0 and out == "", "promtool: rc=%d %s" % (rc, out))

    count = re.search(r'^inferd_stage_duration_seconds_count\{stage="total"\} (\d+)$', text, re.M)
    total = re.search(r'^inferd_stage_duration_seconds_sum\{stage="total"\} (\S+)$', text, re.M)
    check(count and int(count.group(1)) == 2, "total stage count: %s" % (count and count.group(0)))
    sum_s = float(total.group(1))
    jobs_s = sum(j["timings_ms"]["total"] for j in jobs.values()) / 1000.0
    log("stage total sum %.3f s, the jobs' own totals %.3f s" % (sum_s, jobs_s))
    # The histogram's total includes the commit, the jobs' timings stop before it.
    check(jobs_s <= sum_s <= jobs_s + 5.0, "stage total %.3f s vs jobs %.3f s" % (sum_s, jobs_s))
    check("_ms" not in re.sub(r"#.*", "", text), "a metric still named in ms")

    # Every metric the example dashboard queries exists (histograms by their series names).
    have = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", text, re.M))
    with open(os.path.join(REPO, "docs", "grafana", "inferd.json")) as f:
        dash = json.load(f)
    used = set()
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            used |= set(re.findall(r"\binferd_[a-z0-9_]+", t["expr"]))
    missing = sorted(used - have)
    log("dashboard uses %d metrics: %s" % (len(used), " ".join(sorted(used))))
    check(used and not missing, "the dashboard queries metrics /metrics lacks: %s" % missing)


run_test(main, timeout=200)
