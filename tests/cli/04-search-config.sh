# The search options (--hnsw-*, --people-*, --duplicates-threshold and their INFERD_* variables) refuse bad values with exit 2 naming the flag or variable and its range, are documented for serve and api only, and `people recluster` reads the --people-* ones the same way.
. "$(dirname "$0")/lib.sh"
unset INFERD_HNSW_THRESHOLD INFERD_HNSW_M INFERD_HNSW_EF_CONSTRUCTION INFERD_HNSW_EF \
    INFERD_PEOPLE_MIN_FACES INFERD_PEOPLE_MAX_DISTANCE INFERD_DUPLICATES_THRESHOLD INFERD_DB \
    INFERD_DATA_DIR

D="--data-dir $T/var"
# One bad value per flag, each message naming the flag and the allowed range.
expect_usage "--hnsw-threshold: expected an integer in 1..2147483647" serve $D --hnsw-threshold 0
expect_usage "--hnsw-threshold: expected an integer" serve $D --hnsw-threshold 2e4
expect_usage "--hnsw-m: expected an integer in 4..64" serve $D --hnsw-m 65
expect_usage "--hnsw-ef-construction: expected an integer in 1..10000" api $D --hnsw-ef-construction=0
expect_usage "--hnsw-ef: expected an integer in 1..10000" serve $D --hnsw-ef 10001
expect_usage "--hnsw-ef: missing value" serve $D --hnsw-ef
expect_usage "--people-min-faces: expected an integer in 1..1000" serve $D --people-min-faces 0
expect_usage "--people-max-distance: expected a number in 0.01..2" api $D --people-max-distance 2.5
expect_usage "--people-max-distance: expected a number" serve $D --people-max-distance far
expect_usage "--duplicates-threshold: expected a number in -1..1" serve $D --duplicates-threshold 1.5
# The variables are checked the same way, naming the variable.
INFERD_HNSW_THRESHOLD=-5 expect_usage "INFERD_HNSW_THRESHOLD: expected an integer in 1..2147483647" serve $D
INFERD_HNSW_M=x expect_usage "INFERD_HNSW_M: expected an integer in 4..64" api $D
INFERD_HNSW_EF_CONSTRUCTION=20000 expect_usage INFERD_HNSW_EF_CONSTRUCTION serve $D
INFERD_HNSW_EF=0 expect_usage "INFERD_HNSW_EF: expected an integer in 1..10000" serve $D
INFERD_PEOPLE_MIN_FACES=1001 expect_usage INFERD_PEOPLE_MIN_FACES serve $D
INFERD_PEOPLE_MAX_DISTANCE=0 expect_usage "INFERD_PEOPLE_MAX_DISTANCE: expected a number in 0.01..2" serve $D
INFERD_DUPLICATES_THRESHOLD=-2 expect_usage INFERD_DUPLICATES_THRESHOLD serve $D

# A worker holds no index: the flags are refused by name, the variables ignored.
expect_usage "--hnsw-threshold: not used by inferd worker" worker $D --hnsw-threshold 100
expect_usage "--duplicates-threshold: not used by inferd worker" worker $D --duplicates-threshold 0.9
INFERD_HNSW_M=x expect_usage "--people-min-faces: not used by inferd worker" worker $D \
    --people-min-faces 2

# --help: documented for serve and api (with the variables), not for the worker.
for role in serve api; do
    run_inferd help $role
    for w in --hnsw-threshold INFERD_HNSW_THRESHOLD --hnsw-m INFERD_HNSW_M \
        --hnsw-ef-construction INFERD_HNSW_EF_CONSTRUCTION --hnsw-ef INFERD_HNSW_EF \
        --people-min-faces INFERD_PEOPLE_MIN_FACES --people-max-distance \
        INFERD_PEOPLE_MAX_DISTANCE --duplicates-threshold INFERD_DUPLICATES_THRESHOLD; do
        grep -qF -- "$w" "$T/out" || fail "inferd help $role does not mention $w"
    done
done
run_inferd help worker
if grep -qE -- '--hnsw|--people|--duplicates' "$T/out"; then
    fail "inferd help worker lists search options"
fi

# people recluster: the same --people-* flags and variables (and the older --min-faces /
# --max-distance names), validated before the store is opened.
expect_usage "--people-min-faces: expected an integer in 1..1000" people recluster \
    --db "sqlite:$T/r.db" --people-min-faces 0
expect_usage "--people-min-faces: expected an integer" people recluster --db "sqlite:$T/r.db" \
    --min-faces many
expect_usage "--people-max-distance: expected a number in 0.01..2" people recluster \
    --db "sqlite:$T/r.db" --max-distance -1
expect_usage "--people-max-distance: expected a number in 0.01..2" people recluster \
    --db "sqlite:$T/r.db" --max-distance=5
INFERD_PEOPLE_MAX_DISTANCE=9 expect_usage INFERD_PEOPLE_MAX_DISTANCE people recluster \
    --db "sqlite:$T/r.db"
expect_usage "--hnsw-m: not used by inferd people recluster" people recluster \
    --db "sqlite:$T/r.db" --hnsw-m 8
[ ! -e "$T/r.db" ] || fail "people recluster opened the store despite a usage error"
# Good values run: an empty store has no faces to cluster. INFERD_DATA_DIR picks the database
# as for the daemons.
mkdir -p "$T/var2"
INFERD_DATA_DIR=$T/var2 INFERD_PEOPLE_MIN_FACES=2 run_inferd people recluster \
    --people-max-distance 0.4 --min-faces=2
[ "$rc" -eq 0 ] || fail "people recluster with good values: exit status $rc"
grep -qF '"faces": 0' "$T/out" || fail "people recluster printed $(cat "$T/out")"
[ -s "$T/var2/inferd.db" ] || fail "people recluster did not use INFERD_DATA_DIR's database"
echo "ok"
