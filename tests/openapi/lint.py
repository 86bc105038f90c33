"""Lints api/openapi.json with Redocly CLI (tests/openapi/node_modules, from
`scripts/setup.sh openapi`) under tests/openapi/redocly.yaml: the recommended
rules, and neither an error nor a warning may remain. Then the self-check: a
copy of the document with a dangling $ref in an operation and a broken
schema (an unknown type) must be refused, so that a linter that silently
accepts everything cannot pass this test.

Run by hand: python3 tests/openapi/lint.py
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
DOC = os.path.join(REPO, "api", "openapi.json")
REDOCLY = os.path.join(HERE, "node_modules", ".bin", "redocly")


def lint(path):
    """(exit status, totals, problems) of `redocly lint --format=json path`."""
    env = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true",
               NO_COLOR="1")
    # Relative to tests/openapi: the ignore file (.redocly.lint-ignore.yaml) names it so.
    rel = os.path.relpath(path, HERE)
    p = subprocess.run([REDOCLY, "lint", "--config", "redocly.yaml", "--format=json", rel],
                       cwd=HERE, env=env, capture_output=True, text=True, timeout=120)
    try:
        out = json.loads(p.stdout)
    except ValueError:
        print(p.stdout[-2000:], p.stderr[-2000:])
        return p.returncode, None, []
    return p.returncode, out["totals"], out["problems"]


def show(problems):
    for pr in problems:
        where = ", ".join(l.get("pointer", "") for l in pr.get("location", []))
        print("  %s %s: %s (%s)" % (pr["severity"], pr["ruleId"], pr["message"], where))


def main():
    if not os.access(REDOCLY, os.X_OK):
        print("FAIL: %s missing: run scripts/setup.sh openapi" % REDOCLY)
        return 1
    ver = subprocess.run([REDOCLY, "--version"], capture_output=True, text=True,
                         env=dict(os.environ, REDOCLY_SUPPRESS_UPDATE_NOTICE="true"))
    print("redocly %s" % ver.stdout.strip())

    rc, totals, problems = lint(DOC)
    print("api/openapi.json: rc=%d totals=%s" % (rc, totals))
    show(problems)
    if rc != 0 or totals is None or totals["errors"] != 0 or totals["warnings"] != 0:
        print("FAIL: api/openapi.json does not lint clean")
        return 1

    with open(DOC) as f:
        doc = json.load(f)
    doc["paths"]["/v1/info"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"] = {"$ref": "#/components/schemas/NoSuchSchema"}
    doc["components"]["schemas"]["Info"]["properties"]["version"]["type"] = "strng"
    with tempfile.TemporaryDirectory(prefix="inferd-openapi-") as tmp:
        bad = os.path.join(tmp, "broken.json")
        with open(bad, "w") as f:
            json.dump(doc, f, indent=2)
        rc, totals, problems = lint(bad)
    print("self-check, a broken copy: rc=%d totals=%s" % (rc, totals))
    show(problems)
    rules = {p["ruleId"] for p in problems if p["severity"] == "error"}
    if rc == 0 or totals is None or not {"struct", "no-unresolved-refs"} <= rules:
        print("FAIL: redocly accepted a dangling $ref or type \"strng\" (errors: %s)" % rules)
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
