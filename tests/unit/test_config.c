/*
 * tests/unit/test_config.c — the daemon's configuration (util/config.c)
 * without a process: config_parse and config_parse_role fill defaults, then
 * INFERD_* variables, then flags (flags win); every bad value is an error that
 * names the flag or variable and its range; a flag a role does not use is
 * refused (its variable ignored); --help documents every option per role.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "index/index.h"
#include "index/people.h"
#include "util/redact.h"
#include "util/config.h"

static const char *const env_names[] = {
    "INFERD_LISTEN",
    "INFERD_DATA_DIR",
    "INFERD_MODELS_DIR",
    "INFERD_MEDIA_ROOT",
    "INFERD_DB",
    "INFERD_MQTT_URL",
    "INFERD_TOKEN",
    "INFERD_TOKEN_FILE",
    "INFERD_ALLOW_NO_AUTH",
    "INFERD_WORKER_ID",
    "INFERD_SLOTS",
    "INFERD_SLOT_PRIORITY",
    "INFERD_INTRA_OP_THREADS",
    "INFERD_ALLOW_PRIVATE_URLS",
    "INFERD_MAX_BODY",
    "INFERD_LEASE_MS",
    "INFERD_POLL_MS",
    "INFERD_MAX_ATTEMPTS",
    "INFERD_RETRY_BASE_MS",
    "INFERD_GRACE_MS",
    "INFERD_FETCH_TIMEOUT_MS",
    "INFERD_MAX_SIDE",
    "INFERD_MAX_PIXELS",
    "INFERD_FACE_THRESHOLD",
    "INFERD_HNSW_THRESHOLD",
    "INFERD_HNSW_M",
    "INFERD_HNSW_EF_CONSTRUCTION",
    "INFERD_HNSW_EF",
    "INFERD_PEOPLE_MIN_FACES",
    "INFERD_PEOPLE_MAX_DISTANCE",
    "INFERD_DUPLICATES_THRESHOLD",
};

static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
        unsetenv(env_names[i]);
    return 0;
}

static int parse(config *c, char *err, size_t errlen, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"inferd serve";
    va_list ap;
    va_start(ap, errlen);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 31)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    return config_parse(c, argc, argv, err, errlen);
}

static void test_config_defaults(void **state)
{
    (void)state;
    config c;
    char err[256];
    assert_int_equal(parse(&c, err, sizeof err, NULL), 0);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 8002);
    assert_string_equal(c.data_dir, "./var");
    assert_string_equal(c.models_dir, "var/models");
    assert_string_equal(c.media_root, "");
    assert_string_equal(c.db_url, "sqlite:./var/inferd.db");
    assert_string_equal(c.token, "");
    assert_true(c.worker_id[0] != '\0');
    assert_true(c.slots >= 1);
    assert_true(c.intra_op_threads >= 1);
    if (c.slots > 1)
        assert_int_equal(c.intra_op_threads, 1);
    assert_int_equal(c.max_body, (size_t)64 << 20);
    assert_int_equal(c.lease_ms, 30000);
    assert_int_equal(c.poll_ms, 1000);
    assert_int_equal(c.max_attempts, 3);
    assert_int_equal(c.retry_base_ms, 1000);
    assert_int_equal(c.grace_ms, 30000);
    assert_int_equal(c.fetch_timeout_ms, 30000);
    assert_int_equal(c.max_side, 2048);
    assert_int_equal(c.max_pixels, 100000000LL);
    assert_true(c.face_threshold > 0.749f && c.face_threshold < 0.751f);
    assert_int_equal(c.allow_private_urls, 0);
    assert_int_equal(c.verbose, 0);
}

static void test_config_flags(void **state)
{
    (void)state;
    config c;
    char err[256];
    assert_int_equal(parse(&c, err, sizeof err, "--listen", "[::1]:0", "--data-dir", "/tmp/d",
                           "--slots=1", "--max-body", "2M", "--token", "s3cret",
                           "--allow-private-urls", "-v", "--face-threshold", "0.5", "--max-pixels",
                           "1000000", "--worker-id", "w1", NULL),
                     0);
    assert_string_equal(c.listen_host, "::1");
    assert_int_equal(c.listen_port, 0);
    assert_string_equal(c.data_dir, "/tmp/d");
    assert_string_equal(c.db_url, "sqlite:/tmp/d/inferd.db");
    assert_int_equal(c.slots, 1);
    assert_true(c.intra_op_threads >= 1); /* cores when one slot */
    assert_int_equal(c.max_body, (size_t)2 << 20);
    assert_string_equal(c.token, "s3cret");
    assert_int_equal(c.allow_private_urls, 1);
    assert_int_equal(c.verbose, 1);
    assert_int_equal(c.max_pixels, 1000000LL);
    assert_string_equal(c.worker_id, "w1");

    assert_int_equal(parse(&c, err, sizeof err, "--slots", "4", "--listen", "0.0.0.0:9000", "--db",
                           "sqlite:/x.db", "--token", "t", NULL),
                     0);
    assert_int_equal(c.intra_op_threads, 1);
    assert_string_equal(c.listen_host, "0.0.0.0");
    assert_int_equal(c.listen_port, 9000);
    assert_string_equal(c.db_url, "sqlite:/x.db");
}

static void test_config_env(void **state)
{
    (void)state;
    config c;
    char err[256];
    setenv("INFERD_LISTEN", "localhost:1234", 1);
    setenv("INFERD_SLOTS", "3", 1);
    setenv("INFERD_TOKEN", "tok", 1);
    setenv("INFERD_ALLOW_PRIVATE_URLS", "true", 1);
    setenv("INFERD_DATA_DIR", "/data", 1);
    setenv("INFERD_MAX_BODY", "1024", 1);
    assert_int_equal(parse(&c, err, sizeof err, "--slots", "2", NULL), 0);
    assert_string_equal(c.listen_host, "localhost");
    assert_int_equal(c.listen_port, 1234);
    assert_int_equal(c.slots, 2); /* flag wins */
    assert_string_equal(c.token, "tok");
    assert_int_equal(c.allow_private_urls, 1);
    assert_string_equal(c.db_url, "sqlite:/data/inferd.db");
    assert_int_equal(c.max_body, 1024);
    assert_string_equal(c.slot_priority, "batch"); /* the default */
    setenv("INFERD_SLOT_PRIORITY", "idle", 1);
    assert_int_equal(parse(&c, err, sizeof err, NULL), 0);
    assert_string_equal(c.slot_priority, "idle");
    clear_env(NULL);
}

static void expect_config_error(const char *env, const char *val, const char *flag,
                                const char *fval, const char *prefix)
{
    config c;
    char err[256] = "";
    clear_env(NULL);
    if (env != NULL)
        setenv(env, val, 1);
    int rc = flag != NULL ? (fval != NULL ? parse(&c, err, sizeof err, flag, fval, NULL)
                                          : parse(&c, err, sizeof err, flag, NULL))
                          : parse(&c, err, sizeof err, NULL);
    clear_env(NULL);
    if (rc != -1 || strncmp(err, prefix, strlen(prefix)) != 0)
        fail_msg("%s=%s %s %s: rc=%d err=\"%s\", expected prefix \"%s\"", env ? env : "-",
                 val ? val : "-", flag ? flag : "-", fval ? fval : "-", rc, err, prefix);
}

static void test_config_errors(void **state)
{
    (void)state;
    expect_config_error(NULL, NULL, "--slots", "0", "--slots: expected an integer in 1..256");
    expect_config_error(NULL, NULL, "--slots", "x", "--slots: expected");
    expect_config_error(NULL, NULL, "--slots", NULL, "--slots: missing value");
    expect_config_error("INFERD_SLOTS", "abc", NULL, NULL, "INFERD_SLOTS: expected an integer");
    expect_config_error(NULL, NULL, "--slot-priority", "low",
                        "--slot-priority: expected batch or idle, got \"low\"");
    expect_config_error("INFERD_SLOT_PRIORITY", "realtime", NULL, NULL, "INFERD_SLOT_PRIORITY:");
    expect_config_error("INFERD_MAX_ATTEMPTS", "21", NULL, NULL, "INFERD_MAX_ATTEMPTS: expected");
    expect_config_error("INFERD_ALLOW_PRIVATE_URLS", "maybe", NULL, NULL,
                        "INFERD_ALLOW_PRIVATE_URLS: expected");
    expect_config_error("INFERD_FACE_THRESHOLD", "2", NULL, NULL, "INFERD_FACE_THRESHOLD:");
    expect_config_error("INFERD_LISTEN", "nope", NULL, NULL, "INFERD_LISTEN: expected HOST:PORT");
    expect_config_error(NULL, NULL, "--listen", "::1:80", "--listen: expected HOST:PORT");
    expect_config_error(NULL, NULL, "--listen", "host:70000", "--listen:");
    expect_config_error(NULL, NULL, "--listen", ":80", "--listen:");
    expect_config_error(NULL, NULL, "--listen", "[::1]80", "--listen:");
    expect_config_error(NULL, NULL, "--max-body", "12X", "--max-body: expected a size");
    expect_config_error(NULL, NULL, "--max-body", "10", "--max-body:");
    expect_config_error(NULL, NULL, "--lease-ms", "5", "--lease-ms:");
    expect_config_error(NULL, NULL, "--bogus", NULL, "inferd serve: unknown option \"--bogus\"");
    expect_config_error(NULL, NULL, "extra", NULL, "inferd serve: unexpected argument \"extra\"");
    expect_config_error(NULL, NULL, "--verbose=maybe", NULL, "--verbose:");
    expect_config_error(NULL, NULL, "--data-dir", "", "--data-dir: must not be empty");
}

static void test_config_help(void **state)
{
    (void)state;
    const char *u = config_usage();
    /* Every flag and variable is documented. */
    static const char *const flags[] = {
        "--listen",
        "--data-dir",
        "--models-dir",
        "--media-root",
        "--db",
        "--mqtt-url",
        "--token",
        "--worker-id",
        "--slots",
        "--intra-op-threads",
        "--allow-private-urls",
        "--max-body",
        "--lease-ms",
        "--poll-ms",
        "--max-attempts",
        "--retry-base-ms",
        "--grace-ms",
        "--fetch-timeout-ms",
        "--max-side",
        "--max-pixels",
        "--face-threshold",
        "--hnsw-threshold",
        "--hnsw-m",
        "--hnsw-ef-construction",
        "--hnsw-ef",
        "--people-min-faces",
        "--people-max-distance",
        "--duplicates-threshold",
        "--verbose",
        "--help",
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (strstr(u, flags[i]) == NULL)
            fail_msg("usage lacks %s", flags[i]);
    for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
        if (strstr(u, env_names[i]) == NULL)
            fail_msg("usage lacks %s", env_names[i]);
    config c;
    char err[64];
    FILE *saved = stdout;
    stdout = fopen("/dev/null", "w");
    int rc = parse(&c, err, sizeof err, "--help", NULL);
    fclose(stdout);
    stdout = saved;
    assert_int_equal(rc, 1);
}

/* Parses argv (NULL-terminated, after the command name) for `role`. */
static int parse_role(config *c, config_role role, char *err, size_t errlen,
                      const char *const *args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"inferd test";
    while (*args != NULL && argc < 31)
        argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    return config_parse_role(c, role, argc, argv, err, errlen);
}

/* The search options: defaults agree with index.h and people.h, flags and variables set them. */
static void test_config_search(void **state)
{
    (void)state;
    config c;
    char err[256];
    assert_int_equal(parse(&c, err, sizeof err, NULL), 0);
    assert_int_equal(c.hnsw_threshold, INDEX_DEFAULT_HNSW_THRESHOLD);
    assert_int_equal(c.hnsw_m, INDEX_DEFAULT_M);
    assert_int_equal(c.hnsw_ef_construction, INDEX_DEFAULT_EF_CONSTRUCTION);
    assert_int_equal(c.hnsw_ef, INDEX_DEFAULT_EF_SEARCH);
    assert_int_equal(c.people_min_faces, PEOPLE_DEFAULT_MIN_FACES);
    assert_true(c.people_max_distance == 0); /* each model's own */
    assert_true(people_default_max_distance("dlib-resnet") == 0.40f);
    assert_true(people_default_max_distance("mobileface") == 0.375f);
    assert_true(people_default_max_distance("my-arcface") == PEOPLE_FALLBACK_MAX_DISTANCE);
    assert_true(people_default_max_distance(NULL) == PEOPLE_FALLBACK_MAX_DISTANCE);
    assert_true(c.duplicates_threshold == 0.95f);

    setenv("INFERD_HNSW_THRESHOLD", "300", 1);
    setenv("INFERD_HNSW_M", "8", 1);
    setenv("INFERD_PEOPLE_MAX_DISTANCE", "0.3", 1);
    setenv("INFERD_DUPLICATES_THRESHOLD", "0.9", 1);
    assert_int_equal(parse(&c, err, sizeof err, "--hnsw-threshold", "500", "--hnsw-ef-construction",
                           "100", "--hnsw-ef=32", "--people-min-faces", "2",
                           "--duplicates-threshold", "-0.5", NULL),
                     0);
    assert_int_equal(c.hnsw_threshold, 500); /* flag wins */
    assert_int_equal(c.hnsw_m, 8);
    assert_int_equal(c.hnsw_ef_construction, 100);
    assert_int_equal(c.hnsw_ef, 32);
    assert_int_equal(c.people_min_faces, 2);
    assert_true(c.people_max_distance == 0.3f);
    assert_true(c.duplicates_threshold == -0.5f);

    /* The api role uses them too; the worker ignores the variables and refuses the flags. */
    const char *const none[] = {NULL};
    assert_int_equal(parse_role(&c, CONFIG_ROLE_API, err, sizeof err, none), 0);
    assert_int_equal(c.hnsw_m, 8);
    assert_int_equal(parse_role(&c, CONFIG_ROLE_WORKER, err, sizeof err, none), 0);
    assert_int_equal(c.hnsw_m, INDEX_DEFAULT_M);
    const char *const wargs[] = {"--hnsw-ef", "10", NULL};
    assert_int_equal(parse_role(&c, CONFIG_ROLE_WORKER, err, sizeof err, wargs), -1);
    assert_string_equal(err, "--hnsw-ef: not used by inferd worker (see --help)");
    clear_env(NULL);
}

static void test_config_search_errors(void **state)
{
    (void)state;
    expect_config_error(NULL, NULL, "--hnsw-threshold", "0",
                        "--hnsw-threshold: expected an integer in 1..2147483647, got \"0\"");
    expect_config_error(NULL, NULL, "--hnsw-threshold", "2147483648", "--hnsw-threshold:");
    expect_config_error(NULL, NULL, "--hnsw-m", "3", "--hnsw-m: expected an integer in 4..64");
    expect_config_error(NULL, NULL, "--hnsw-m", "65", "--hnsw-m: expected an integer in 4..64");
    expect_config_error(NULL, NULL, "--hnsw-ef-construction", "0",
                        "--hnsw-ef-construction: expected an integer in 1..10000");
    expect_config_error(NULL, NULL, "--hnsw-ef", "10001",
                        "--hnsw-ef: expected an integer in 1..10000");
    expect_config_error(NULL, NULL, "--people-min-faces", "0",
                        "--people-min-faces: expected an integer in 1..1000");
    expect_config_error(NULL, NULL, "--people-max-distance", "0",
                        "--people-max-distance: expected a number in 0.01..2");
    expect_config_error(NULL, NULL, "--people-max-distance", "nan",
                        "--people-max-distance: expected a number in 0.01..2");
    expect_config_error(NULL, NULL, "--duplicates-threshold", "1.01",
                        "--duplicates-threshold: expected a number in -1..1");
    expect_config_error("INFERD_HNSW_THRESHOLD", "many", NULL, NULL,
                        "INFERD_HNSW_THRESHOLD: expected an integer in 1..2147483647");
    expect_config_error("INFERD_HNSW_M", "100", NULL, NULL, "INFERD_HNSW_M: expected an integer");
    expect_config_error("INFERD_HNSW_EF_CONSTRUCTION", "", NULL, NULL,
                        "INFERD_HNSW_EF_CONSTRUCTION: expected an integer");
    expect_config_error("INFERD_HNSW_EF", "-1", NULL, NULL, "INFERD_HNSW_EF: expected");
    expect_config_error("INFERD_PEOPLE_MIN_FACES", "2.5", NULL, NULL,
                        "INFERD_PEOPLE_MIN_FACES: expected an integer in 1..1000");
    expect_config_error("INFERD_PEOPLE_MAX_DISTANCE", "3", NULL, NULL,
                        "INFERD_PEOPLE_MAX_DISTANCE: expected a number in 0.01..2");
    expect_config_error("INFERD_DUPLICATES_THRESHOLD", "high", NULL, NULL,
                        "INFERD_DUPLICATES_THRESHOLD: expected a number in -1..1");
}

/* `people recluster`: the store and --people-* options only, read as the daemons read them. */
static void test_config_recluster(void **state)
{
    (void)state;
    config c;
    char err[256];
    setenv("INFERD_PEOPLE_MIN_FACES", "4", 1);
    setenv("INFERD_SLOTS", "bad", 1); /* not used by recluster: ignored */
    setenv("INFERD_DATA_DIR", "/srv/inferd", 1);
    const char *const ok[] = {"--people-max-distance", "0.45", NULL};
    assert_int_equal(parse_role(&c, CONFIG_ROLE_RECLUSTER, err, sizeof err, ok), 0);
    assert_int_equal(c.people_min_faces, 4);
    assert_true(c.people_max_distance == 0.45f);
    assert_string_equal(c.db_url, "sqlite:/srv/inferd/inferd.db");
    const char *const bad[] = {"--hnsw-m", "8", NULL};
    assert_int_equal(parse_role(&c, CONFIG_ROLE_RECLUSTER, err, sizeof err, bad), -1);
    assert_string_equal(err, "--hnsw-m: not used by inferd people recluster (see --help)");
    const char *const listen[] = {"--listen", "127.0.0.1:1", NULL};
    assert_int_equal(parse_role(&c, CONFIG_ROLE_RECLUSTER, err, sizeof err, listen), -1);
    const char *const range[] = {"--people-min-faces", "0", NULL};
    assert_int_equal(parse_role(&c, CONFIG_ROLE_RECLUSTER, err, sizeof err, range), -1);
    assert_string_equal(err, "--people-min-faces: expected an integer in 1..1000, got \"0\"");
    clear_env(NULL);
    unsetenv("INFERD_SLOTS");

    /* Its help lists what it reads and nothing else; the worker's lists no search option. */
    const char *u = config_usage_role(CONFIG_ROLE_RECLUSTER);
    assert_non_null(strstr(u, "usage: inferd people recluster"));
    assert_non_null(strstr(u, "--people-min-faces"));
    assert_non_null(strstr(u, "INFERD_PEOPLE_MAX_DISTANCE"));
    assert_non_null(strstr(u, "--db URL"));
    assert_null(strstr(u, "--hnsw"));
    assert_null(strstr(u, "--listen"));
    assert_null(strstr(u, "--slots"));
    const char *w = config_usage_role(CONFIG_ROLE_WORKER);
    assert_null(strstr(w, "--hnsw"));
    assert_null(strstr(w, "--people-"));
    assert_null(strstr(w, "--duplicates-threshold"));
    assert_non_null(strstr(config_usage_role(CONFIG_ROLE_API), "--hnsw-ef-construction"));
    assert_string_equal(config_role_name(CONFIG_ROLE_RECLUSTER), "people recluster");
}

/*
 * The other commands read the same table: analyze (operands anywhere, "--",
 * an embedder given as "" told apart from one left out, the daemons'
 * variables), models fetch/list (their own rows, operand counts, -q), and
 * an older name (recluster's --min-faces) as the table's alias.
 */
static void test_config_commands(void **state)
{
    (void)state;
    config c;
    char err[256];
    char *av[] = {(char *)"inferd analyze", (char *)"a.jpg", (char *)"--max-side",
                  (char *)"1024", (char *)"--face-embedder", (char *)"", (char *)"-v",
                  (char *)"b.jpg", (char *)"--", (char *)"--c.jpg", NULL};
    unsetenv("INFERD_CATALOG");
    setenv("INFERD_INTRA_OP_THREADS", "3", 1);
    setenv("INFERD_SLOTS", "bad", 1); /* not used by analyze: ignored */
    assert_int_equal(config_parse_role(&c, CONFIG_ROLE_ANALYZE, 10, av, err, sizeof err), 0);
    assert_int_equal(c.nargs, 3);
    assert_string_equal(c.args[0], "a.jpg");
    assert_string_equal(c.args[1], "b.jpg");
    assert_string_equal(c.args[2], "--c.jpg");
    assert_int_equal(c.max_side, 1024);
    assert_int_equal(c.intra_op_threads, 3);
    assert_int_equal(c.verbose, 1);
    assert_true(config_given(&c, "face-embedder"));
    assert_string_equal(c.face_embedder, "");
    assert_false(config_given(&c, "image-embedder"));
    assert_false(config_given(&c, "no-such-flag"));
    unsetenv("INFERD_INTRA_OP_THREADS");
    unsetenv("INFERD_SLOTS");
    /* Without --intra-op-threads analyze leaves ONNX Runtime's default (0), not the worker's. */
    char *av2[] = {(char *)"inferd analyze", (char *)"x.png", NULL};
    assert_int_equal(config_parse_role(&c, CONFIG_ROLE_ANALYZE, 2, av2, err, sizeof err), 0);
    assert_int_equal(c.intra_op_threads, 0);
    char *none[] = {(char *)"inferd analyze", (char *)"--no-tiles", NULL};
    assert_int_equal(config_parse_role(&c, CONFIG_ROLE_ANALYZE, 2, none, err, sizeof err), -1);
    assert_string_equal(err, "inferd analyze: no IMAGE given (see --help)");
    char *slots[] = {(char *)"inferd analyze", (char *)"--slots", (char *)"2", NULL};
    assert_int_equal(config_parse_role(&c, CONFIG_ROLE_ANALYZE, 3, slots, err, sizeof err), -1);
    assert_string_equal(err, "--slots: not used by inferd analyze (see --help)");

    char *f[] = {(char *)"inferd models fetch", (char *)"-q", (char *)"--retries=7",
                 (char *)"--timeout", (char *)"30", (char *)"clip", NULL};
    assert_int_equal(config_parse_role(&c, CONFIG_ROLE_MODELS_FETCH, 6, f, err, sizeof err), 0);
    assert_int_equal(c.quiet, 1);
    assert_int_equal(c.retries, 7);
    assert_int_equal(c.timeout_s, 30);
    assert_int_equal(c.connect_timeout_s, 10);
    assert_string_equal(c.catalog, "models/catalog.json");
    assert_int_equal(c.nargs, 1);
    assert_string_equal(c.args[0], "clip");
    char *two[] = {(char *)"inferd models fetch", (char *)"a", (char *)"b", NULL};
    assert_int_equal(config_parse_role(&c, CONFIG_ROLE_MODELS_FETCH, 3, two, err, sizeof err),
                     -1);
    assert_string_equal(err, "inferd models fetch: unexpected argument \"b\" (one at a time)");
    char *stall[] = {(char *)"inferd models fetch", (char *)"--stall-timeout", (char *)"0",
                     (char *)"a", NULL};
    assert_int_equal(config_parse_role(&c, CONFIG_ROLE_MODELS_FETCH, 4, stall, err, sizeof err),
                     -1);
    char *list[] = {(char *)"inferd models list", (char *)"--no-verify", (char *)"x", NULL};
    assert_int_equal(config_parse_role(&c, CONFIG_ROLE_MODELS_LIST, 3, list, err, sizeof err),
                     -1);
    assert_string_equal(err, "inferd models list: unexpected argument \"x\"");
    char *bad_short[] = {(char *)"inferd models list", (char *)"-x", NULL};
    assert_int_equal(
        config_parse_role(&c, CONFIG_ROLE_MODELS_LIST, 2, bad_short, err, sizeof err), -1);
    assert_string_equal(err, "inferd models list: unknown option \"-x\" (see --help)");

    char *old[] = {(char *)"inferd people recluster", (char *)"--min-faces=5",
                   (char *)"--max-distance", (char *)"0.3", NULL};
    assert_int_equal(config_parse_role(&c, CONFIG_ROLE_RECLUSTER, 4, old, err, sizeof err), 0);
    assert_int_equal(c.people_min_faces, 5);
    assert_true(c.people_max_distance == 0.3f);

    const char *u = config_usage_role(CONFIG_ROLE_MODELS_FETCH);
    assert_non_null(strstr(u, "usage: inferd models fetch [options] NAME"));
    assert_non_null(strstr(u, "-q, --quiet"));
    assert_null(strstr(u, "--no-verify"));
    assert_null(strstr(u, "--slots"));
    u = config_usage_role(CONFIG_ROLE_ANALYZE);
    assert_non_null(strstr(u, "--vectors"));
    assert_non_null(strstr(u, "\"\" to skip"));
    assert_non_null(strstr(u, "INFERD_MAX_SIDE"));
    assert_null(strstr(u, "--db"));
}

/*
 * The token from --token-file (first line, trailing newline and spaces
 * dropped), its errors, and the refusal to serve the API off loopback
 * without a token unless --allow-no-auth says so (a worker serves no API).
 */
static void test_config_token_and_open_api(void **state)
{
    (void)state;
    config c;
    char err[512];
    char dir[] = "/tmp/inferd-test-token-XXXXXX", good[300], empty[300], spaced[300];
    assert_non_null(mkdtemp(dir));
    snprintf(good, sizeof good, "%s/good", dir);
    snprintf(empty, sizeof empty, "%s/empty", dir);
    snprintf(spaced, sizeof spaced, "%s/spaced", dir);
    FILE *f = fopen(good, "w");
    fputs("s3cr3t-t0ken \r\nsecond line\n", f);
    fclose(f);
    f = fopen(empty, "w");
    fputs("\n", f);
    fclose(f);
    f = fopen(spaced, "w");
    fputs("two words\n", f);
    fclose(f);

    assert_int_equal(parse(&c, err, sizeof err, "--token-file", good, NULL), 0);
    assert_string_equal(c.token, "s3cr3t-t0ken");
    setenv("INFERD_TOKEN_FILE", good, 1);
    assert_int_equal(parse(&c, err, sizeof err, NULL), 0);
    assert_string_equal(c.token, "s3cr3t-t0ken");
    assert_int_equal(parse(&c, err, sizeof err, "--token", "x", NULL), -1);
    assert_non_null(strstr(err, "not both"));
    unsetenv("INFERD_TOKEN_FILE");
    assert_int_equal(parse(&c, err, sizeof err, "--token-file", empty, NULL), -1);
    assert_non_null(strstr(err, "empty"));
    assert_int_equal(parse(&c, err, sizeof err, "--token-file", spaced, NULL), -1);
    assert_non_null(strstr(err, "printable"));
    assert_int_equal(parse(&c, err, sizeof err, "--token-file", "/nonexistent/t", NULL), -1);
    assert_non_null(strstr(err, "--token-file: /nonexistent/t"));

    /* Off loopback without a token: serve and api refuse, naming the way out. */
    static const char *const open_addrs[] = {"0.0.0.0:8002", "[::]:8002", "192.168.1.5:80",
                                             "example.org:8002"};
    for (size_t i = 0; i < sizeof open_addrs / sizeof open_addrs[0]; i++) {
        assert_int_equal(parse(&c, err, sizeof err, "--listen", open_addrs[i], NULL), -1);
        assert_non_null(strstr(err, "without a token"));
        assert_non_null(strstr(err, "--token-file"));
        const char *args[] = {"--listen", open_addrs[i], NULL};
        assert_int_equal(parse_role(&c, CONFIG_ROLE_API, err, sizeof err, args), -1);
        assert_int_equal(parse(&c, err, sizeof err, "--listen", open_addrs[i], "--token-file",
                               good, NULL),
                         0);
        assert_int_equal(parse(&c, err, sizeof err, "--listen", open_addrs[i], "--allow-no-auth",
                               NULL),
                         0);
        assert_int_equal(parse_role(&c, CONFIG_ROLE_WORKER, err, sizeof err, args), 0);
    }
    static const char *const loop_addrs[] = {"127.0.0.1:8002", "127.1.2.3:1", "[::1]:8002",
                                             "localhost:8002"};
    for (size_t i = 0; i < sizeof loop_addrs / sizeof loop_addrs[0]; i++)
        assert_int_equal(parse(&c, err, sizeof err, "--listen", loop_addrs[i], NULL), 0);
    setenv("INFERD_ALLOW_NO_AUTH", "1", 1);
    assert_int_equal(parse(&c, err, sizeof err, "--listen", "0.0.0.0:1", NULL), 0);
    unsetenv("INFERD_ALLOW_NO_AUTH");

    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* redact_url: the user info's password and secret query values become "***". */
static void test_redact_url(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"postgres://u:pw@db:5432/x", "postgres://u:***@db:5432/x"},
        {"postgres://u:p@ss:w@db/x?sslmode=require", "postgres://u:***@db/x?sslmode=require"},
        {"postgres://u@db/x?password=pw&application_name=a",
         "postgres://u@db/x?password=***&application_name=a"},
        {"postgresql://db/x?PassWord=a&sslpassword=b&x=1#frag",
         "postgresql://db/x?PassWord=***&sslpassword=***&x=1#frag"},
        {"mqtt://bob:pw@[::1]:1883", "mqtt://bob:***@[::1]:1883"},
        {"mqtt://bob@host", "mqtt://bob@host"},
        {"https://h/p?token=t&api_key=k&key=/etc/k.pem",
         "https://h/p?token=***&api_key=***&key=/etc/k.pem"},
        {"sqlite:/var/lib/inferd.db", "sqlite:/var/lib/inferd.db"},
        {"", ""},
        {"?password=", "?password=***"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = redact_url(cases[i][0]);
        if (strcmp(got, cases[i][1]) != 0)
            fail_msg("redact_url(\"%s\") = \"%s\", want \"%s\"", cases[i][0], got, cases[i][1]);
        free(got);
    }
    assert_null(redact_url(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_config_defaults, clear_env),
        cmocka_unit_test_setup(test_config_flags, clear_env),
        cmocka_unit_test_setup(test_config_env, clear_env),
        cmocka_unit_test_setup(test_config_errors, clear_env),
        cmocka_unit_test_setup(test_config_help, clear_env),
        cmocka_unit_test_setup(test_config_search, clear_env),
        cmocka_unit_test_setup(test_config_search_errors, clear_env),
        cmocka_unit_test_setup(test_config_recluster, clear_env),
        cmocka_unit_test_setup(test_config_commands, clear_env),
        cmocka_unit_test(test_redact_url),
        cmocka_unit_test_setup(test_config_token_and_open_api, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
