/*
 * tests/unit/test_models_hub.c — `inferd models fetch immich/MODEL`
 * (fetch/models_fetch.c, the hub source) against hub_server.py: a local
 * Hugging-Face-compatible hub (tree API, resolve paths, LFS entries) on
 * 127.0.0.1 serving repositories written at setup: a CLIP model from
 * tools/mkclip plus files of other runtimes, a face model (ONNX files in
 * detection/ and recognition/), a repository with neither layout and one with
 * half a CLIP layout. Each test runs the CLI entry point in-process with its
 * own models directory and checks the files it leaves, the requests the
 * server saw and, for CLIP, that infer/clip.c loads the result.
 *
 * mkclip is found beside the test binary's directory (build/mkclip for
 * build/tests/test_models_hub) or at $INFERD_MKCLIP.
 */

#include "infer/clip.h"
#include "models_harness.h"
#include "util/sha256.h"

#define SERVER_PY INFERD_SRCDIR "/tests/unit/hub_server.py"
#define MERGES INFERD_SRCDIR "/tests/fixtures/clip/merges.txt"
#define DIM 64
#define CUT 10000 /* bytes of visual/model.onnx sent before a cut */

static char repos[300]; /* tmpdir/srv/immich-app */

/* What a CLIP install holds: the files inferd needs, none of the others. */
static const char *const clip_files[] = {
    "visual/model.onnx",      "visual/preprocess_cfg.json",    "textual/model.onnx",
    "textual/tokenizer.json", "textual/tokenizer_config.json", "config.json"};
static const char *const clip_skipped[] = {"visual/model.armnn",
                                           "textual/fp16/model.armnn",
                                           "rknpu/rk3588/visual/model.rknn",
                                           "openvino/visual/model.xml",
                                           "README.md",
                                           ".gitattributes"};

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        fail_msg("command failed: %s", cmd);
}

/* Whether files `a` and `b` have the same bytes. */
static int same_file(const char *a, const char *b)
{
    size_t na, nb;
    uint8_t *x = read_file(a, &na), *y = read_file(b, &nb);
    int same = x != NULL && y != NULL && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* Writes the hub's repositories under TMPDIR/srv/immich-app. */
static int make_fixtures(void)
{
    char mkclip[4096];
    if (ts_tool_path("test_models_hub", "mkclip", "INFERD_MKCLIP", mkclip, sizeof mkclip) != 0)
        return -1;
    snprintf(repos, sizeof repos, "%s/srv/immich-app", tmpdir);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && %s --dim %d --merges %s %s/clip-tiny", repos, mkclip,
             DIM, MERGES, repos);
    if (system(cmd) != 0)
        return -1;
    /* Other runtimes' exports and repository files that must be skipped. */
    snprintf(cmd, sizeof cmd,
             "cd %s/clip-tiny && mkdir -p textual/fp16 rknpu/rk3588/visual openvino/visual && "
             "cp visual/model.onnx visual/model.armnn && "
             "cp textual/model.onnx textual/fp16/model.armnn && "
             "cp visual/model.onnx rknpu/rk3588/visual/model.rknn && "
             "echo '<net/>' > openvino/visual/model.xml && echo '# clip-tiny' > README.md && "
             "echo '*.onnx filter=lfs' > .gitattributes",
             repos);
    if (system(cmd) != 0)
        return -1;
    /* A face model: any ONNX files do for fetching. */
    snprintf(cmd, sizeof cmd,
             "cd %s && mkdir -p face-tiny/detection face-tiny/recognition face-tiny/rknpu && "
             "cp clip-tiny/visual/model.onnx face-tiny/detection/model.onnx && "
             "cp clip-tiny/textual/model.onnx face-tiny/recognition/model.onnx && "
             "cp clip-tiny/visual/model.onnx face-tiny/detection/model.armnn && "
             "cp clip-tiny/visual/model.onnx face-tiny/rknpu/detection.rknn && "
             "mkdir -p odd half/visual && cp clip-tiny/visual/model.onnx odd/model.onnx && "
             "echo '# odd' > odd/README.md && cp clip-tiny/visual/model.onnx half/visual/",
             repos);
    return system(cmd) == 0 ? 0 : -1;
}

#define FETCH(model, dir, ...)                                                                     \
    run("fetch", model, "--models-dir", dir, "--hub-url", base, "--allow-private-urls",             \
        ##__VA_ARGS__, (const char *)NULL)

/* MODELS/clip-tiny holds the six served files byte for byte and nothing else but fetch.json. */
static void check_clip_installed(const char *dir)
{
    char a[512], b[512];
    json_t *rec, *files, *f;
    size_t i;

    for (i = 0; i < sizeof clip_files / sizeof clip_files[0]; i++) {
        snprintf(a, sizeof a, "%s/clip-tiny/%s", dir, clip_files[i]);
        snprintf(b, sizeof b, "%s/clip-tiny/%s", repos, clip_files[i]);
        if (!same_file(a, b))
            fail_msg("%s differs from the served %s", a, b);
    }
    for (i = 0; i < sizeof clip_skipped / sizeof clip_skipped[0]; i++)
        if (exists("%s/clip-tiny/%s", dir, clip_skipped[i]))
            fail_msg("%s/clip-tiny/%s was installed; it should have been skipped", dir,
                     clip_skipped[i]);
    assert_false(exists("%s/clip-tiny/rknpu", dir));
    assert_false(exists("%s/clip-tiny/openvino", dir));
    assert_false(exists("%s/.partial/clip-tiny", dir));

    snprintf(a, sizeof a, "%s/clip-tiny/fetch.json", dir);
    rec = json_load_file(a, 0, NULL);
    assert_non_null(rec);
    assert_string_equal(json_string_value(json_object_get(rec, "repo")), "immich-app/clip-tiny");
    assert_string_equal(json_string_value(json_object_get(rec, "revision")), "main");
    assert_string_equal(json_string_value(json_object_get(rec, "layout")), "clip");
    files = json_object_get(rec, "files");
    assert_int_equal(json_array_size(files), sizeof clip_files / sizeof clip_files[0]);
    json_array_foreach(files, i, f)
    {
        const char *p = json_string_value(json_object_get(f, "path"));
        char hex[65];
        err_t e;
        snprintf(b, sizeof b, "%s/clip-tiny/%s", repos, p);
        assert_int_equal(sha256_file_hex(b, hex, &e), ERR_OK);
        /* Recorded for every file: from the hub (LFS) or computed after the git id check. */
        assert_string_equal(json_string_value(json_object_get(f, "sha256")), hex);
        if (strstr(p, ".onnx") != NULL) {
            assert_true(json_is_true(json_object_get(f, "lfs")));
        } else {
            assert_int_equal(strlen(json_string_value(json_object_get(f, "git_oid"))), 40);
        }
    }
    json_decref(rec);
}

/* ---------------------------------------------------------------- tests */

static void test_clip_fetch_loads(void **state)
{
    char dir[300], mdir[400];
    json_t *log;
    infer_env *env = NULL;
    infer_env_opts eo = {.intra_op_threads = 1};
    clip_model *cm = NULL;
    err_t e;
    (void)state;

    new_models_dir(dir, sizeof dir);
    set_mode("");
    expect_rc(FETCH("immich/clip-tiny", dir), 0);
    expect_out("immich-app/clip-tiny@main: clip model, 6 of its");
    expect_out("the others skipped");
    expect_out("clip-tiny: installed in");
    expect_out("visual/model.onnx: 26");
    expect_out("config.json: 157 B, git id ok");
    check_clip_installed(dir);
    log = server_log();
    /* One listing, one GET per needed file, none for the skipped ones. */
    assert_int_equal(requests_for(log, "/api/models/immich-app/clip-tiny/tree/main", 1, NULL), 1);
    assert_int_equal(requests_for(log, "/resolve/", 1, NULL), 6);
    assert_int_equal(requests_for(log, "armnn", 1, NULL), 0);
    assert_int_equal(requests_for(log, "rknpu", 1, NULL), 0);
    assert_int_equal(requests_for(log, "openvino", 1, NULL), 0);
    assert_int_equal(requests_for(log, "README", 1, NULL), 0);
    json_decref(log);

    /* `models list` recognises the layout and checks the recorded hashes. */
    expect_rc(run("list", "--models-dir", dir, (const char *)NULL), 0);
    expect_out("clip-tiny");
    expect_out("clip ");
    expect_out(" 64 ");
    expect_out(" ok");

    /* The fetched directory is a CLIP model inferd loads, text encoder included. */
    snprintf(mdir, sizeof mdir, "%s/clip-tiny", dir);
    assert_int_equal(infer_env_new(&eo, &env, &e), ERR_OK);
    if (clip_model_load(env, mdir, &cm, &e) != ERR_OK)
        fail_msg("clip_model_load(%s): %s", mdir, e.msg);
    assert_int_equal(clip_embedding_dim(cm), DIM);
    clip_model_free(cm);
    infer_env_free(env);

    /* Again: nothing to download, only the listing is asked for. */
    set_mode("");
    expect_rc(FETCH("immich/clip-tiny", dir, "-q"), 0);
    expect_out("clip-tiny: present in");
    expect_out("6 files verified");
    log = server_log();
    assert_int_equal(json_array_size(log), 1);
    json_decref(log);

    /* A corrupted small file fails the list check and is fetched again alone. */
    sh("printf 'x' >> %s/clip-tiny/config.json", dir);
    expect_rc(run("list", "--models-dir", dir, (const char *)NULL), 1);
    expect_out("MISMATCH config.json");
    set_mode("");
    expect_rc(FETCH("immich/clip-tiny", dir), 0);
    expect_out("fails its check");
    check_clip_installed(dir);
    log = server_log();
    assert_int_equal(requests_for(log, "/resolve/", 1, NULL), 1);
    assert_int_equal(requests_for(log, "/resolve/main/config.json", 1, NULL), 1);
    json_decref(log);
}

static void test_face_fetch(void **state)
{
    char dir[300], a[512], b[512];
    json_t *log, *rec;
    (void)state;

    new_models_dir(dir, sizeof dir);
    set_mode("redirect=1"); /* LFS files come from elsewhere, as on the real hub */
    expect_rc(FETCH("immich/face-tiny", dir, "-q"), 0);
    expect_out("face-tiny: installed in");
    expect_out("2 files");
    snprintf(a, sizeof a, "%s/face-tiny/detection/model.onnx", dir);
    snprintf(b, sizeof b, "%s/face-tiny/detection/model.onnx", repos);
    assert_true(same_file(a, b));
    snprintf(a, sizeof a, "%s/face-tiny/recognition/model.onnx", dir);
    snprintf(b, sizeof b, "%s/face-tiny/recognition/model.onnx", repos);
    assert_true(same_file(a, b));
    assert_false(exists("%s/face-tiny/detection/model.armnn", dir));
    assert_false(exists("%s/face-tiny/rknpu", dir));
    log = server_log();
    assert_int_equal(requests_for(log, "/_lfs/", 1, NULL), 2);
    json_decref(log);
    snprintf(a, sizeof a, "%s/face-tiny/fetch.json", dir);
    rec = json_load_file(a, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(rec, "layout")), "face");
    json_decref(rec);

    expect_rc(run("list", "--models-dir", dir, (const char *)NULL), 0);
    expect_out("face (det+rec)");
    expect_out(" ok");
}

static void test_cut_download_resumes(void **state)
{
    char dir[300], part[512];
    struct stat st;
    json_t *log, *r;
    size_t i;
    long sent;
    int saw = 0;
    (void)state;

    new_models_dir(dir, sizeof dir);
    set_mode("cut=10000");
    expect_rc(FETCH("immich/clip-tiny", dir, "-q", "--retries", "0"), 1);
    expect_out("run again to resume");
    assert_false(exists("%s/clip-tiny", dir));
    snprintf(part, sizeof part, "%s/.partial/clip-tiny/visual/model.onnx.part", dir);
    assert_int_equal(stat(part, &st), 0);
    assert_int_equal(st.st_size, CUT);

    set_mode("");
    expect_rc(FETCH("immich/clip-tiny", dir), 0);
    expect_out("resuming at byte 10000");
    check_clip_installed(dir);
    log = server_log();
    json_array_foreach(log, i, r)
    {
        if (strstr(json_string_value(json_object_get(r, "path")), "visual/model.onnx")) {
            assert_string_equal(json_string_value(json_object_get(r, "range")), "bytes=10000-");
            assert_int_equal(json_integer_value(json_object_get(r, "status")), 206);
            saw = 1;
        }
    }
    assert_true(saw);
    snprintf(part, sizeof part, "%s/clip-tiny/visual/model.onnx", repos);
    assert_int_equal(stat(part, &st), 0);
    assert_int_equal(requests_for(log, "/resolve/main/visual/model.onnx", 1, &sent), 1);
    assert_int_equal(sent, st.st_size - CUT); /* only the rest was sent again */
    json_decref(log);
}

static void test_wrong_sha256_refused(void **state)
{
    char dir[300], p[512], hex[65];
    err_t e;
    (void)state;

    snprintf(p, sizeof p, "%s/clip-tiny/visual/model.onnx", repos);
    assert_int_equal(sha256_file_hex(p, hex, &e), ERR_OK);
    new_models_dir(dir, sizeof dir);
    set_mode("wrong=1");
    expect_rc(FETCH("immich/clip-tiny", dir, "-q"), 1);
    expect_out("clip-tiny/visual/model.onnx: sha256 mismatch");
    expect_out(hex); /* what the hub's lfs.oid says */
    expect_out("nothing installed");
    assert_false(exists("%s/clip-tiny", dir));
    assert_false(exists("%s/.partial", dir));
}

static void test_wrong_git_id_refused(void **state)
{
    char dir[300];
    (void)state;

    new_models_dir(dir, sizeof dir);
    set_mode("wrongsmall=1");
    expect_rc(FETCH("immich/clip-tiny", dir, "-q"), 1);
    expect_out("clip-tiny/textual/tokenizer.json: git id mismatch");
    expect_out("hub says");
    assert_false(exists("%s/clip-tiny", dir));
    assert_false(exists("%s/.partial/clip-tiny/textual/tokenizer.json", dir));
}

static void test_size_mismatch_refused(void **state)
{
    char dir[300];
    (void)state;

    new_models_dir(dir, sizeof dir);
    set_mode("bigger=1");
    expect_rc(FETCH("immich/clip-tiny", dir, "-q"), 1);
    expect_out("clip-tiny/visual/model.onnx: the server sent 27");
    expect_out("the hub says");
    assert_false(exists("%s/clip-tiny", dir));
    assert_false(exists("%s/.partial", dir));
}

static void test_unknown_repo_and_revision(void **state)
{
    char dir[300];
    (void)state;

    new_models_dir(dir, sizeof dir);
    set_mode("");
    expect_rc(FETCH("immich/no-such-model", dir, "-q"), 1);
    expect_out("immich-app/no-such-model: no such repository or revision \"main\"");
    expect_out("HTTP 404");
    expect_rc(FETCH("immich/clip-tiny", dir, "-q", "--revision", "v9"), 1);
    expect_out("immich-app/clip-tiny: no such repository or revision \"v9\"");
    assert_false(exists("%s/no-such-model", dir));
    assert_false(exists("%s/clip-tiny", dir));
}

static void test_no_known_layout(void **state)
{
    char dir[300];
    json_t *log;
    (void)state;

    new_models_dir(dir, sizeof dir);
    set_mode("");
    expect_rc(FETCH("immich/odd", dir, "-q"), 1);
    expect_out("immich-app/odd (revision main) has neither layout inferd loads");
    expect_out("a CLIP model lacks visual/model.onnx, textual/model.onnx, textual/tokenizer.json");
    expect_out("a face model lacks detection/model.onnx, recognition/model.onnx");
    expect_rc(FETCH("immich/half", dir, "-q"), 1);
    expect_out("a CLIP model lacks textual/model.onnx, textual/tokenizer.json;");
    log = server_log();
    assert_int_equal(requests_for(log, "/resolve/", 1, NULL), 0);
    json_decref(log);
    assert_false(exists("%s/odd", dir));
    assert_false(exists("%s/half", dir));
}

static void test_names_options_and_guard(void **state)
{
    char dir[300];
    json_t *log;
    (void)state;

    new_models_dir(dir, sizeof dir);
    set_mode("");
    static const char *const bad[] = {"immich/../clip-tiny", "immich/a/b", "immich/.hidden",
                                      "immich/", "immich/x y"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_rc(FETCH(bad[i], dir, "-q"), 1);
        expect_out("must be 1-128 characters of [A-Za-z0-9._-]");
    }
    expect_rc(FETCH("immich/clip-tiny", dir, "-q", "--revision", "../main"), 1);
    expect_out("--revision \"../main\" must be");
    expect_rc(run("fetch", "immich/clip-tiny", "--models-dir", dir, (const char *)NULL), 1);
    expect_out("point --hub-url (or INFERD_HUB_URL) at the Hugging Face hub or a mirror");
    expect_rc(run("fetch", "immich/clip-tiny", "--models-dir", dir, "--hub-url", "ftp://x",
                  (const char *)NULL),
              1);
    expect_out("--hub-url must start with http:// or https://");
    /* Loopback is refused without --allow-private-urls, before any request. */
    expect_rc(run("fetch", "immich/clip-tiny", "--models-dir", dir, "--hub-url", base, "-q",
                  (const char *)NULL),
              1);
    expect_out("127.0.0.1 is loopback; refused");
    log = server_log();
    assert_int_equal(json_array_size(log), 0);
    json_decref(log);
    assert_false(exists("%s/clip-tiny", dir));

    /* INFERD_HUB_URL stands for --hub-url. */
    setenv("INFERD_HUB_URL", base, 1);
    expect_rc(run("fetch", "immich/face-tiny", "--models-dir", dir, "--allow-private-urls", "-q",
                  (const char *)NULL),
              0);
    unsetenv("INFERD_HUB_URL");
    assert_true(exists("%s/face-tiny/detection/model.onnx", dir));

    expect_rc(run("fetch", "--help", (const char *)NULL), 0);
    expect_out("--hub-url URL");
    expect_out("immich/MODEL");
}

/* A listing paged with Link rel="next" is read to its end. */
static void test_paged_listing(void **state)
{
    char dir[300];
    json_t *log;
    (void)state;

    new_models_dir(dir, sizeof dir);
    set_mode("page=4");
    expect_rc(FETCH("immich/clip-tiny", dir, "-q"), 0);
    check_clip_installed(dir);
    log = server_log();
    assert_true(requests_for(log, "/tree/main", 1, NULL) >= 5);
    json_decref(log);
}

/* A directory the user made is not replaced without --force. */
static void test_foreign_directory_needs_force(void **state)
{
    char dir[300];
    (void)state;

    new_models_dir(dir, sizeof dir);
    sh("mkdir -p %s/clip-tiny && echo mine > %s/clip-tiny/notes.txt", dir, dir);
    set_mode("");
    expect_rc(FETCH("immich/clip-tiny", dir, "-q"), 1);
    expect_out("--force");
    assert_true(exists("%s/clip-tiny/notes.txt", dir));
    expect_rc(FETCH("immich/clip-tiny", dir, "-q", "--force"), 0);
    check_clip_installed(dir);
    assert_false(exists("%s/clip-tiny/notes.txt", dir));
}

static int group_setup(void **state)
{
    (void)state;
    if (mh_setup("inferd-hub") != 0 || make_fixtures() != 0)
        return -1;
    return mh_start_server(SERVER_PY, "test_models_hub");
}

static int group_teardown(void **state)
{
    (void)state;
    return mh_teardown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clip_fetch_loads),
        cmocka_unit_test(test_face_fetch),
        cmocka_unit_test(test_cut_download_resumes),
        cmocka_unit_test(test_wrong_sha256_refused),
        cmocka_unit_test(test_wrong_git_id_refused),
        cmocka_unit_test(test_size_mismatch_refused),
        cmocka_unit_test(test_unknown_repo_and_revision),
        cmocka_unit_test(test_no_known_layout),
        cmocka_unit_test(test_names_options_and_guard),
        cmocka_unit_test(test_paged_listing),
        cmocka_unit_test(test_foreign_directory_needs_force),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
