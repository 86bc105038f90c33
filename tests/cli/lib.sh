# tests/cli/lib.sh — shared by the tests/cli/NN-*.sh scripts (sourced, not run).
#
# Reads INFERD (the binary), INFERD_TEST_MODELS (the provisioned model
# directory) and INFERD_TESTDATA from the environment (tests/cli.cmake sets
# them), makes a private temp dir $T removed at exit, and provides:
#   run_inferd ARGS...   runs $INFERD with ARGS; stdout in $T/out, stderr in
#                        $T/err, exit status in $rc; fails the test at once if
#                        inferd died of a signal or printed a sanitizer report
#   fail MSG...          prints MSG, the last run's output, and exits 1
#   need_file PATH       fails the test when the input PATH is missing or empty
#   expect_usage WORD ARGS...
#                        runs inferd with ARGS and fails the test unless it
#                        exits 2 (a usage error) naming WORD on stderr and
#                        printing nothing on stdout; echoes the message
set -u
: "${INFERD:?INFERD (path to the inferd binary) is not set}"
: "${INFERD_TEST_MODELS:?INFERD_TEST_MODELS (model directory) is not set}"
: "${INFERD_TESTDATA:?INFERD_TESTDATA is not set}"
# Settings from the caller's environment must not change what is tested.
unset INFERD_MODELS_DIR INFERD_DETECTOR INFERD_FACE_EMBEDDER INFERD_IMAGE_EMBEDDER \
    INFERD_INTRA_OP_THREADS INFERD_MAX_SIDE INFERD_MAX_PIXELS INFERD_FACE_THRESHOLD

SKIMAGE=/usr/lib/python3/dist-packages/skimage/data
T=$(mktemp -d "${TMPDIR:-/tmp}/inferd-cli.XXXXXX")
trap 'rm -rf "$T"' EXIT
rc=0

fail() {
    echo "FAIL: $*" >&2
    if [ -f "$T/out" ]; then
        echo "--- stdout of the last inferd run:" >&2
        head -c 4000 "$T/out" >&2
    fi
    if [ -f "$T/err" ]; then
        echo "--- stderr of the last inferd run:" >&2
        head -c 8000 "$T/err" >&2
    fi
    exit 1
}

run_inferd() {
    echo "+ inferd $*" >&2
    rc=0
    "$INFERD" "$@" >"$T/out" 2>"$T/err" || rc=$?
    if [ "$rc" -ge 128 ]; then
        fail "inferd died of signal $((rc - 128)) (exit status $rc)"
    fi
    if grep -qE 'ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:' "$T/err"; then
        fail "inferd printed a sanitizer report"
    fi
}

need_file() {
    [ -s "$1" ] || fail "test input $1 is missing (run scripts/setup.sh)"
}

expect_usage() {
    local word=$1
    shift
    run_inferd "$@"
    [ "$rc" -eq 2 ] || fail "inferd $*: exit status $rc, expected 2"
    grep -qF -- "$word" "$T/err" || fail "inferd $*: stderr does not name $word"
    [ ! -s "$T/out" ] || fail "inferd $*: printed on stdout"
    echo "  $(head -n 1 "$T/err")"
}
