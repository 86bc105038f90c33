/*
 * tests/unit/test_models_fetch.c — `inferd models fetch|list` (fetch/models_fetch.c)
 * against a local HTTP server (models_server.py on 127.0.0.1, random port)
 * that serves a two-file model and can cut connections, ignore Range and
 * serve wrong bytes. Each test runs the CLI entry point in-process with its
 * own models directory and checks the files it leaves and the requests the
 * server saw.
 */
#include "models_harness.h"
#include "util/sha256.h"

#define SERVER_PY INFERD_SRCDIR "/tests/unit/models_server.py"
#define VISUAL_SIZE 300000
#define TEXTUAL_SIZE 60000
#define CUT 100000

static char catalog[300];
static uint8_t visual[VISUAL_SIZE], textual[TEXTUAL_SIZE];
static char visual_sha[65], textual_sha[65];

/* Deterministic bytes: a small LCG so that neither file is all one pattern. */
static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = (uint8_t)(x >> 24);
    }
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Writes the served tree and a catalogue with the model "tiny" and a few broken entries. */
static void make_fixtures(void)
{
    char p[1024];
    FILE *f;

    fill(visual, sizeof visual, 1);
    fill(textual, sizeof textual, 2);
    sha256_hex(visual, sizeof visual, visual_sha);
    sha256_hex(textual, sizeof textual, textual_sha);
    snprintf(p, sizeof p, "mkdir -p %s/srv/tiny/visual %s/srv/tiny/textual", tmpdir, tmpdir);
    assert_int_equal(system(p), 0);
    snprintf(p, sizeof p, "%s/srv/tiny/visual/model.onnx", tmpdir);
    write_file(p, visual, sizeof visual);
    snprintf(p, sizeof p, "%s/srv/tiny/textual/model.onnx", tmpdir);
    write_file(p, textual, sizeof textual);

    snprintf(catalog, sizeof catalog, "%s/catalog.json", tmpdir);
    f = fopen(catalog, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"format\": 1, \"models\": {\n"
            " \"tiny\": {\"licence\": \"MIT\", \"source\": \"test\",\n"
            "  \"files\": [\n"
            "   {\"path\": \"visual/model.onnx\", \"url\": \"{base}/tiny/visual/model.onnx\",\n"
            "    \"sha256\": \"%s\", \"size\": %d},\n"
            "   {\"path\": \"textual/model.onnx\", \"url\": \"{base}/tiny/textual/model.onnx\",\n"
            "    \"sha256\": \"%s\", \"size\": %d}],\n"
            "  \"manifest\": {\"name\": \"tiny\", \"task\": \"image_embedding\",\n"
            "   \"file\": \"visual/model.onnx\", \"embedding_dim\": 512, \"licence\": \"MIT\"}},\n"
            " \"evil\": {\"files\": [{\"path\": \"../escape\", \"url\": \"{base}/x\",\n"
            "   \"sha256\": \"%s\", \"size\": 1}]},\n"
            " \"nohost\": {\"files\": [{\"path\": \"a\", \"url\": \"file:///etc/passwd\",\n"
            "   \"sha256\": \"%s\", \"size\": 1}]},\n"
            " \"small\": {\"files\": [{\"path\": \"m.onnx\", \"url\": "
            "\"{base}/tiny/visual/model.onnx\",\n"
            "   \"sha256\": \"%s\", \"size\": 1000}]},\n"
            " \"gone\": {\"files\": [{\"path\": \"m.onnx\", \"url\": \"{base}/tiny/nothing\",\n"
            "   \"sha256\": \"%s\", \"size\": 1000}]}\n"
            "}}\n",
            visual_sha, VISUAL_SIZE, textual_sha, TEXTUAL_SIZE, visual_sha, visual_sha, visual_sha,
            visual_sha);
    assert_int_equal(fclose(f), 0);
}

/* Sum of body bytes sent for `path`, and the number of requests for it. */
static long sent_for(json_t *log, const char *path, int *nreq)
{
    long sent;
    *nreq = requests_for(log, path, 0, &sent);
    return sent;
}

#define FETCH(dir, ...)                                                                            \
    run("fetch", "tiny", "--models-dir", dir, "--catalog", catalog, "--base-url", base,            \
        "--allow-private-urls", ##__VA_ARGS__, (const char *)NULL)

/* The installed model in `dir` has exactly the served bytes and the manifest. */
static void check_installed(const char *dir)
{
    char p[512];
    size_t n;
    uint8_t *b;
    json_t *man, *rec;

    snprintf(p, sizeof p, "%s/tiny/visual/model.onnx", dir);
    b = read_file(p, &n);
    assert_non_null(b);
    assert_int_equal(n, VISUAL_SIZE);
    assert_memory_equal(b, visual, VISUAL_SIZE);
    free(b);
    snprintf(p, sizeof p, "%s/tiny/textual/model.onnx", dir);
    b = read_file(p, &n);
    assert_non_null(b);
    assert_int_equal(n, TEXTUAL_SIZE);
    assert_memory_equal(b, textual, TEXTUAL_SIZE);
    free(b);
    snprintf(p, sizeof p, "%s/tiny/manifest.json", dir);
    man = json_load_file(p, 0, NULL);
    assert_non_null(man);
    assert_string_equal(json_string_value(json_object_get(man, "task")), "image_embedding");
    json_decref(man);
    snprintf(p, sizeof p, "%s/tiny/fetch.json", dir);
    rec = json_load_file(p, 0, NULL);
    assert_non_null(rec);
    assert_int_equal(json_array_size(json_object_get(rec, "files")), 2);
    json_decref(rec);
    assert_false(exists("%s/.partial/tiny", dir));
}

/* ---------------------------------------------------------------- tests */

static void test_full_download(void **state)
{
    char dir[300];
    json_t *log;
    int n;
    (void)state;

    new_models_dir(dir, sizeof dir);
    set_mode("");
    expect_rc(FETCH(dir), 0);
    expect_out("tiny: installed in");
    expect_out("sha256 ok"); /* progress/status lines on stderr without -q */
    check_installed(dir);
    assert_false(exists("%s/.partial", dir));
    log = server_log();
    assert_int_equal(sent_for(log, "/tiny/visual/model.onnx", &n), VISUAL_SIZE);
    assert_int_equal(n, 1);
    json_decref(log);
}

static void test_rerun_is_noop(void **state)
{
    char dir[300];
    json_t *log;
    (void)state;

    new_models_dir(dir, sizeof dir);
    set_mode("");
    expect_rc(FETCH(dir, "-q"), 0);
    set_mode("");
    expect_rc(FETCH(dir, "-q"), 0);
    expect_out("tiny: present in");
    expect_out("2 files verified");
    log = server_log();
    assert_int_equal(json_array_size(log), 0); /* not one request */
    json_decref(log);
    check_installed(dir);
}

static void test_cut_download_resumes(void **state)
{
    char dir[300], part[512];
    struct stat st;
    json_t *log, *r;
    size_t i;
    int n, saw_range = 0;
    (void)state;

    new_models_dir(dir, sizeof dir);
    set_mode("cut=100000");
    expect_rc(FETCH(dir, "-q", "--retries", "0"), 1);
    expect_out("run again to resume");
    assert_false(exists("%s/tiny", dir));
    snprintf(part, sizeof part, "%s/.partial/tiny/visual/model.onnx.part", dir);
    assert_int_equal(stat(part, &st), 0);
    assert_int_equal(st.st_size, CUT);

    set_mode("");
    expect_rc(FETCH(dir, "-q"), 0);
    check_installed(dir);
    log = server_log();
    json_array_foreach(log, i, r)
    {
        const char *p = json_string_value(json_object_get(r, "path"));
        const char *rg = json_string_value(json_object_get(r, "range"));
        if (strcmp(p, "/tiny/visual/model.onnx") == 0) {
            assert_non_null(rg);
            assert_string_equal(rg, "bytes=100000-");
            assert_int_equal(json_integer_value(json_object_get(r, "status")), 206);
            saw_range = 1;
        }
    }
    assert_true(saw_range);
    /* Both runs together sent the file once: the cut part plus the rest. */
    assert_int_equal(sent_for(log, "/tiny/visual/model.onnx", &n), VISUAL_SIZE - CUT);
    assert_int_equal(n, 1);
    assert_true(CUT + sent_for(log, "/tiny/visual/model.onnx", &n) < 2 * VISUAL_SIZE);
    json_decref(log);
}

static void test_cut_download_retried_in_one_run(void **state)
{
    char dir[300];
    json_t *log;
    int n;
    (void)state;

    new_models_dir(dir, sizeof dir);
    set_mode("cut=100000&once=1");
    expect_rc(FETCH(dir, "--retries", "2"), 0);
    expect_out("retry 1 of 2");
    expect_out("resuming at byte 100000");
    check_installed(dir);
    log = server_log();
    assert_int_equal(sent_for(log, "/tiny/visual/model.onnx", &n), VISUAL_SIZE);
    assert_int_equal(n, 2);
    json_decref(log);
}

/*
 * Leftovers in the staging directory: a part from another version of the file
 * (resumed, fails its hash, downloaded again from zero) and a file the entry
 * no longer lists (not installed).
 */
static void test_stale_partial_is_not_trusted(void **state)
{
    char dir[300], p[1024];
    uint8_t junk[CUT];
    json_t *log;
    int n;
    (void)state;

    new_models_dir(dir, sizeof dir);
    snprintf(p, sizeof p, "mkdir -p %s/.partial/tiny/visual %s/.partial/tiny/old", dir, dir);
    assert_int_equal(system(p), 0);
    fill(junk, sizeof junk, 99);
    snprintf(p, sizeof p, "%s/.partial/tiny/visual/model.onnx.part", dir);
    write_file(p, junk, sizeof junk);
    snprintf(p, sizeof p, "%s/.partial/tiny/old/stale.bin", dir);
    write_file(p, junk, 10);

    set_mode("");
    expect_rc(FETCH(dir), 0);
    expect_out("resuming at byte 100000");
    expect_out("downloading it again from the start");
    check_installed(dir);
    assert_false(exists("%s/tiny/old", dir));
    log = server_log();
    assert_int_equal(sent_for(log, "/tiny/visual/model.onnx", &n), VISUAL_SIZE - CUT + VISUAL_SIZE);
    assert_int_equal(n, 2);
    json_decref(log);
}

static void test_server_ignoring_range_restarts(void **state)
{
    char dir[300];
    json_t *log, *r;
    int n;
    (void)state;

    new_models_dir(dir, sizeof dir);
    set_mode("cut=100000");
    expect_rc(FETCH(dir, "-q", "--retries", "0"), 1);
    set_mode("norange=1");
    expect_rc(FETCH(dir), 0);
    expect_out("ignored the Range request");
    check_installed(dir);
    log = server_log();
    assert_int_equal(sent_for(log, "/tiny/visual/model.onnx", &n), VISUAL_SIZE);
    assert_int_equal(n, 1);
    r = json_array_get(log, 0);
    assert_string_equal(json_string_value(json_object_get(r, "range")), "bytes=100000-");
    assert_int_equal(json_integer_value(json_object_get(r, "status")), 200);
    json_decref(log);
}

static void test_checksum_mismatch_installs_nothing(void **state)
{
    char dir[300], wrong_sha[65];
    uint8_t *bad = malloc(VISUAL_SIZE);
    (void)state;

    assert_non_null(bad);
    memcpy(bad, visual, VISUAL_SIZE);
    bad[VISUAL_SIZE / 2] ^= 0xFF; /* what the server's wrong mode sends */
    sha256_hex(bad, VISUAL_SIZE, wrong_sha);
    free(bad);

    new_models_dir(dir, sizeof dir);
    set_mode("wrong=1");
    expect_rc(FETCH(dir, "-q"), 1);
    expect_out("sha256 mismatch");
    expect_out("visual/model.onnx");
    expect_out(wrong_sha);
    expect_out(visual_sha);
    assert_false(exists("%s/tiny", dir));
    assert_false(exists("%s/.partial/tiny/manifest.json", dir));
    assert_false(exists("%s/.partial/tiny/fetch.json", dir));
    assert_false(exists("%s/.partial/tiny/visual/model.onnx.part", dir));
    assert_false(exists("%s/.partial/tiny/visual/model.onnx", dir));
    assert_false(exists("%s/.partial", dir));

    /* Fixed server: the next run succeeds. */
    set_mode("");
    expect_rc(FETCH(dir, "-q"), 0);
    check_installed(dir);
}

static void test_corrupted_install_refetched(void **state)
{
    char dir[300], p[512];
    json_t *log;
    int n;
    FILE *f;
    (void)state;

    new_models_dir(dir, sizeof dir);
    set_mode("");
    expect_rc(FETCH(dir, "-q"), 0);
    snprintf(p, sizeof p, "%s/tiny/textual/model.onnx", dir);
    f = fopen(p, "r+b");
    assert_non_null(f);
    fputc('X', f); /* same size, other bytes */
    fclose(f);

    expect_rc(run("list", "--models-dir", dir, (const char *)NULL), 1);
    expect_out("MISMATCH textual/model.onnx");

    set_mode("");
    expect_rc(FETCH(dir), 0);
    expect_out("fails its check");
    expect_out("installed in");
    check_installed(dir);
    log = server_log();
    /* Only the corrupted file was downloaded again; the good one was reused. */
    assert_int_equal(sent_for(log, "/tiny/textual/model.onnx", &n), TEXTUAL_SIZE);
    assert_int_equal(n, 1);
    sent_for(log, "/tiny/visual/model.onnx", &n);
    assert_int_equal(n, 0);
    json_decref(log);
}

/* A body larger than the catalogue's size is cut off at that size; a 404 is an error. */
static void test_size_cap_and_http_error(void **state)
{
    char dir[300];
    (void)state;

    new_models_dir(dir, sizeof dir);
    set_mode("");
    expect_rc(run("fetch", "small", "--models-dir", dir, "--catalog", catalog, "--base-url", base,
                  "--allow-private-urls", "-q", (const char *)NULL),
              1);
    expect_out("larger than the declared 1000 bytes");
    assert_false(exists("%s/small", dir));
    expect_rc(run("fetch", "gone", "--models-dir", dir, "--catalog", catalog, "--base-url", base,
                  "--allow-private-urls", "-q", (const char *)NULL),
              1);
    expect_out("HTTP 404");
    assert_false(exists("%s/gone", dir));
}

static void test_private_url_refused(void **state)
{
    char dir[300];
    json_t *log;
    (void)state;

    new_models_dir(dir, sizeof dir);
    set_mode("");
    expect_rc(run("fetch", "tiny", "--models-dir", dir, "--catalog", catalog, "--base-url", base,
                  "-q", (const char *)NULL),
              1);
    expect_out("127.0.0.1 is loopback; refused");
    expect_out("--allow-private-urls");
    assert_false(exists("%s/tiny", dir));
    assert_false(exists("%s/.partial", dir)); /* nothing was downloaded: nothing is left */
    log = server_log();
    assert_int_equal(json_array_size(log), 0);
    json_decref(log);
}

static void test_foreign_directory_needs_force(void **state)
{
    char dir[300], p[1024];
    (void)state;

    new_models_dir(dir, sizeof dir);
    snprintf(p, sizeof p, "mkdir -p %s/tiny && echo mine > %s/tiny/notes.txt", dir, dir);
    assert_int_equal(system(p), 0);
    set_mode("");
    expect_rc(FETCH(dir, "-q"), 1);
    expect_out("--force");
    assert_true(exists("%s/tiny/notes.txt", dir));
    expect_rc(FETCH(dir, "-q", "--force"), 0);
    check_installed(dir);
    assert_false(exists("%s/tiny/notes.txt", dir));
    assert_false(exists("%s/.partial", dir)); /* the old directory is gone too */
}

static void test_catalogue_errors_and_usage(void **state)
{
    char dir[300];
    (void)state;

    new_models_dir(dir, sizeof dir);
    expect_rc(run("fetch", "evil", "--models-dir", dir, "--catalog", catalog, "--base-url", base,
                  "--allow-private-urls", (const char *)NULL),
              1);
    expect_out("\"../escape\" has a component starting with '.'");
    expect_rc(run("fetch", "nohost", "--models-dir", dir, "--catalog", catalog, (const char *)NULL),
              1);
    expect_out("must be http:// or https://");
    expect_rc(run("fetch", "tiny", "--models-dir", dir, "--catalog", catalog, (const char *)NULL),
              1);
    expect_out("point --base-url at a mirror");
    expect_rc(run("fetch", "nosuch", "--models-dir", dir, "--catalog", catalog, "--base-url", base,
                  (const char *)NULL),
              1);
    expect_out("not in the catalogue (it has: tiny, evil, nohost, small, gone)");
    expect_rc(run("fetch", "--models-dir", dir, (const char *)NULL), 2);
    expect_rc(run("fetch", "tiny", "--bogus", (const char *)NULL), 2);
    expect_rc(run("fetch", "tiny", "--retries", "x", (const char *)NULL), 2);
    expect_rc(run("frobnicate", (const char *)NULL), 2);
    expect_rc(run("help", (const char *)NULL), 0);
    expect_out("Point --base-url at a mirror of the model files");
    expect_rc(run("fetch", "--help", (const char *)NULL), 0);
    expect_out("usage: inferd models fetch");
    assert_false(exists("%s/.partial/evil", dir));
}

static void test_list(void **state)
{
    char dir[300];
    (void)state;

    new_models_dir(dir, sizeof dir);
    expect_rc(run("list", "--models-dir", dir, (const char *)NULL), 0);
    expect_out("no models in");
    set_mode("");
    expect_rc(FETCH(dir, "-q"), 0);
    expect_rc(run("list", "--models-dir", dir, (const char *)NULL), 0);
    expect_out("NAME");
    expect_out("tiny");
    expect_out("image_embedding");
    expect_out("512");
    expect_out("MIT");
    expect_out(" ok");
    expect_rc(run("list", "--models-dir", dir, "--no-verify", (const char *)NULL), 0);
}

/* A catalogue fetched by URL, through the same guard. */
static void test_catalogue_by_url(void **state)
{
    char dir[300], url[128], p[512];
    size_t n;
    uint8_t *text = read_file(catalog, &n);
    (void)state;

    assert_non_null(text);
    snprintf(p, sizeof p, "%s/srv/catalog.json", tmpdir);
    write_file(p, text, n);
    free(text);
    snprintf(url, sizeof url, "%s/catalog.json", base);
    new_models_dir(dir, sizeof dir);
    set_mode("");
    expect_rc(run("fetch", "tiny", "--models-dir", dir, "--catalog", url, "--base-url", base, "-q",
                  (const char *)NULL),
              1);
    expect_out("refused");
    expect_rc(run("fetch", "tiny", "--models-dir", dir, "--catalog", url, "--base-url", base,
                  "--allow-private-urls", "-q", (const char *)NULL),
              0);
    check_installed(dir);
}

/*
 * The default catalogue in the repository parses, every entry is a template,
 * and it offers every default model exactly as models/provision.sh installs
 * it: the pinned ONNX sha256 and the spec's manifest (so a spec change that
 * forgets the catalogue fails here).
 */
static void test_repo_catalogue(void **state)
{
    char dir[300];
    (void)state;

    static const char *const specs[] = {"blazeface-back-256", "dlib-resnet", "mobileface",
                                        "mobilenet-v2-mid"};
    json_error_t je;
    json_t *cat = json_load_file(INFERD_SRCDIR "/models/catalog.json", 0, &je);
    assert_non_null(cat);
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, INFERD_SRCDIR "/models/%s.json", specs[i]);
        json_t *spec = json_load_file(path, 0, &je);
        assert_non_null(spec);
        json_t *entry = json_object_get(json_object_get(cat, "models"), specs[i]);
        if (entry == NULL)
            fail_msg("models/catalog.json has no entry for %s", specs[i]);
        json_t *want = json_deep_copy(json_object_get(spec, "manifest"));
        json_object_set(want, "sha256", json_object_get(spec, "onnx_sha256"));
        if (!json_equal(want, json_object_get(entry, "manifest")))
            fail_msg("models/catalog.json: the manifest of %s differs from models/%s.json",
                     specs[i], specs[i]);
        json_t *file0 = json_array_get(json_object_get(entry, "files"), 0);
        assert_true(json_equal(json_object_get(file0, "sha256"),
                               json_object_get(spec, "onnx_sha256")));
        json_decref(want);
        json_decref(spec);
    }
    json_decref(cat);

    new_models_dir(dir, sizeof dir);
    expect_rc(run("fetch", "mobileface", "--models-dir", dir, "--catalog",
                  INFERD_SRCDIR "/models/catalog.json", (const char *)NULL),
              1);
    expect_out("point --base-url at a mirror");
}

static int group_setup(void **state)
{
    (void)state;
    if (mh_setup("inferd-models") != 0)
        return -1;
    make_fixtures();
    return mh_start_server(SERVER_PY, "test_models_fetch");
}

static int group_teardown(void **state)
{
    (void)state;
    return mh_teardown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_download),
        cmocka_unit_test(test_rerun_is_noop),
        cmocka_unit_test(test_cut_download_resumes),
        cmocka_unit_test(test_cut_download_retried_in_one_run),
        cmocka_unit_test(test_server_ignoring_range_restarts),
        cmocka_unit_test(test_stale_partial_is_not_trusted),
        cmocka_unit_test(test_checksum_mismatch_installs_nothing),
        cmocka_unit_test(test_corrupted_install_refetched),
        cmocka_unit_test(test_size_cap_and_http_error),
        cmocka_unit_test(test_private_url_refused),
        cmocka_unit_test(test_foreign_directory_needs_force),
        cmocka_unit_test(test_catalogue_errors_and_usage),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_catalogue_by_url),
        cmocka_unit_test(test_repo_catalogue),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
