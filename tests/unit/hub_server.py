#!/usr/bin/env python3
"""A small Hugging-Face-compatible hub for test_models_hub.c, on 127.0.0.1 at
a random port. Every directory ROOT/ORG/REPO (ROOT is argv[1]) is a model
repository whose only revision is "main":

  GET /api/models/ORG/REPO/tree/main?recursive=true
      JSON array of {"type": "file"|"directory", "path", "size", "oid"} with,
      for LFS files (every file but *.json, *.txt, *.md and dot files),
      "lfs": {"oid": SHA256, "size", "pointerSize"}; "oid" is the git blob id
      of the file (non-LFS) or of its LFS pointer. An unknown repository or
      revision answers 404 {"error": ...}.
  GET /ORG/REPO/resolve/main/PATH
      the file, with Range support (and a 302 to /_lfs/... in redirect mode).

Test modes, set by GET /_mode?... (which resets the other modes and the log):
cut=N closes the connection once file offset N is sent (once=1: only on the
first request of each path); wrong=1 flips one byte of every LFS file served,
wrongsmall=1 of every non-LFS file; bigger=1 lists every LFS file 1000 bytes
larger than it is; page=N pages the tree N entries at a time with Link
rel="next" headers; redirect=1 answers resolve requests with a 302.
GET /_log returns the requests since the last /_mode (path, range, status,
bytes sent). Prints "PORT N" on stdout, then runs until stdin closes."""
import hashlib
import json
import os
import re
from urllib.parse import urlsplit

from models_server import BaseHandler, serve


def is_lfs(path):
    name = os.path.basename(path)
    return not (name.startswith(".") or name.endswith((".json", ".txt", ".md")))


def git_oid(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def tree(repo_dir, mode):
    out = []
    for dirpath, dirnames, filenames in os.walk(repo_dir):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, repo_dir)
        for d in dirnames:
            p = os.path.normpath(os.path.join(rel_dir, d))
            out.append({"type": "directory", "path": p, "size": 0, "oid": "0" * 40})
        for f in sorted(filenames):
            p = os.path.normpath(os.path.join(rel_dir, f))
            with open(os.path.join(dirpath, f), "rb") as fh:
                data = fh.read()
            ent = {"type": "file", "path": p, "size": len(data)}
            if is_lfs(p):
                sha = hashlib.sha256(data).hexdigest()
                size = len(data) + (1000 if mode.get("bigger") else 0)
                pointer = ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\n"
                           "size %d\n" % (sha, size)).encode()
                ent["size"] = size
                ent["oid"] = git_oid(pointer)
                ent["lfs"] = {"oid": sha, "size": size, "pointerSize": len(pointer)}
            else:
                ent["oid"] = git_oid(data)
            out.append(ent)
    out.sort(key=lambda e: e["path"])
    return out


class Handler(BaseHandler):
    def do_GET(self):
        got = self.begin(query=urlsplit(self.path).query)
        if got is None:
            return
        url, q, entry, mode, first = got
        srv = self.server

        m = re.fullmatch(r"/api/models/([^/]+)/([^/]+)/tree/([^/]+)", url.path)
        if m:
            org, repo, rev = m.groups()
            repo_dir = os.path.join(srv.root, org, repo)
            if rev != "main" or not os.path.isdir(repo_dir) or org.startswith("."):
                entry["status"] = 404
                self.reply(404, b'{"error": "Repository not found"}',
                           [("Content-Type", "application/json")])
                return
            items = tree(repo_dir, mode)
            headers = [("Content-Type", "application/json")]
            page = mode.get("page")
            if page:
                start = int(q.get("cursor", "0"))
                if start + page < len(items):
                    nxt = "http://127.0.0.1:%d%s?recursive=true&cursor=%d" % (
                        srv.server_port, url.path, start + page)
                    headers.append(("Link", '<%s>; rel="next"' % nxt))
                items = items[start:start + page]
            entry["status"] = 200
            self.reply(200, json.dumps(items).encode(), headers)
            return

        m = re.fullmatch(r"/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)", url.path)
        lfs_m = re.fullmatch(r"/_lfs/([^/]+)/([^/]+)/(.+)", url.path)
        if m and mode.get("redirect"):
            org, repo, rev, rel = m.groups()
            entry["status"] = 302
            self.reply(302, b"", [("Location", "/_lfs/%s/%s/%s" % (org, repo, rel))])
            return
        if m:
            org, repo, rev, rel = m.groups()
        elif lfs_m:
            org, repo, rel = lfs_m.groups()
            rev = "main"
        else:
            entry["status"] = 404
            self.reply(404, b"not found")
            return
        repo_dir = os.path.realpath(os.path.join(srv.root, org, repo))
        full = os.path.realpath(os.path.join(repo_dir, rel))
        if (rev != "main" or not full.startswith(srv.root + os.sep)
                or not os.path.isfile(full)):
            entry["status"] = 404
            self.reply(404, b"Entry not found")
            return
        with open(full, "rb") as f:
            data = bytearray(f.read())
        lfs = is_lfs(rel)
        if data and ((lfs and mode.get("wrong")) or (not lfs and mode.get("wrongsmall"))):
            data[len(data) // 2] ^= 0xFF
        self.send_file_bytes(data, entry, mode, first)


if __name__ == "__main__":
    serve(Handler)
