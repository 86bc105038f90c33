# analyze with a non-numeric or out-of-range number, an unknown flag or no images exits 2 with a message naming the flag, before loading any model.
. "$(dirname "$0")/lib.sh"

IMG=$SKIMAGE/chelsea.png

expect_usage --max-side analyze --models-dir "$INFERD_TEST_MODELS" --max-side abc "$IMG"
expect_usage --max-side analyze --models-dir "$INFERD_TEST_MODELS" --max-side 12x "$IMG"
expect_usage --max-side analyze --models-dir "$INFERD_TEST_MODELS" --max-side 10 "$IMG"
expect_usage --max-pixels analyze --models-dir "$INFERD_TEST_MODELS" --max-pixels "" "$IMG"
expect_usage --intra-op-threads analyze --models-dir "$INFERD_TEST_MODELS" --intra-op-threads -1 "$IMG"
expect_usage --face-threshold analyze --models-dir "$INFERD_TEST_MODELS" --face-threshold high "$IMG"
expect_usage --max-side analyze --models-dir "$INFERD_TEST_MODELS" "$IMG" --max-side
expect_usage --bogus-flag analyze --models-dir "$INFERD_TEST_MODELS" --bogus-flag "$IMG"
expect_usage IMAGE analyze --models-dir "$INFERD_TEST_MODELS"
INFERD_MAX_SIDE=big expect_usage INFERD_MAX_SIDE analyze --models-dir "$INFERD_TEST_MODELS" "$IMG"
expect_usage frobnicate frobnicate
echo "ok"
