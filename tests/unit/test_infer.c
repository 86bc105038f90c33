/*
 * test_infer.c — the ONNX Runtime wrapper and manifest parser, on the real
 * provisioned BlazeFace model and on hand-written broken manifests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "infer/infer.h"
#include "util/sha256.h"

static const char *detector_dir = INFERD_MODELS "/blazeface-back-256";
static infer_env *env;

static int setup(void **state)
{
    err_t e;
    infer_env_opts o = {.intra_op_threads = 1};
    return infer_env_new(&o, &env, &e);
}

static int teardown(void **state)
{
    infer_env_free(env);
    return 0;
}

/* Writes a model dir at `dir` with `manifest` and a symlink to the real detector. */
static void make_dir(const char *dir, const char *manifest)
{
    char p[512];
    snprintf(p, sizeof p, "mkdir -p %s && ln -sf %s/model.onnx %s/model.onnx", dir, detector_dir,
             dir);
    assert_int_equal(system(p), 0);
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(manifest, f);
    fclose(f);
}

static void test_sha256_vectors(void **state)
{
    char hex[65];
    sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* 1,000,000 x 'a' exercises the multi-block path (FIPS 180-2 appendix B.3). */
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    sha256_hex(a, 1000000, hex);
    free(a);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_load_and_run(void **state)
{
    err_t e;
    infer_model *m = NULL;
    int rc = infer_model_load(env, detector_dir, 1, &m, &e);
    if (rc != ERR_OK)
        fail_msg("load %s: %s", detector_dir, e.msg);
    const model_manifest *man = infer_model_manifest(m);
    assert_int_equal(man->task, TASK_FACE_DETECTION);
    assert_int_equal(man->width, 256);
    assert_int_equal(infer_input_size(m), 256 * 256 * 3);

    float *in = calloc(infer_input_size(m), sizeof(float));
    float s16[512], b16[512 * 16], s8[384];
    infer_output outs[3] = {
        {.role = "scores_16", .data = s16, .cap = 512},
        {.role = "boxes_16", .data = b16, .cap = 512 * 16},
        {.role = "scores_8", .data = s8, .cap = 384},
    };
    rc = infer_run(m, in, 1, outs, 3, &e);
    if (rc != ERR_OK)
        fail_msg("run: %s", e.msg);
    assert_int_equal(outs[0].count, 512);
    assert_int_equal(outs[1].count, 512 * 16);
    assert_int_equal(outs[1].rank, 3);
    assert_int_equal(outs[1].shape[2], 16);
    for (int i = 0; i < 512; i++)
        assert_true(isfinite(s16[i]));

    /* A buffer too small is an error, not an overflow. */
    infer_output small = {.role = "scores_16", .data = s16, .cap = 10};
    assert_int_equal(infer_run(m, in, 1, &small, 1, &e), ERR_TOOBIG);
    /* Unknown role and wrong batch are clear errors. */
    infer_output bad = {.role = "nope", .data = s16, .cap = 512};
    assert_int_equal(infer_run(m, in, 1, &bad, 1, &e), ERR_INVAL);
    assert_non_null(strstr(e.msg, "nope"));
    assert_int_equal(infer_run(m, in, 2, outs, 1, &e), ERR_INVAL);
    free(in);
    infer_model_free(m);
}

static void test_manifest_errors(void **state)
{
    err_t e;
    infer_model *m = NULL;
    char dir[] = "/tmp/inferd-test-infer-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[600];

    snprintf(sub, sizeof sub, "%s/missing", dir);
    assert_int_equal(infer_model_load(env, sub, 0, &m, &e), ERR_NOENT);

    snprintf(sub, sizeof sub, "%s/badjson", dir);
    make_dir(sub, "{\"name\": ");
    assert_int_equal(infer_model_load(env, sub, 0, &m, &e), ERR_MANIFEST);

    snprintf(sub, sizeof sub, "%s/notask", dir);
    make_dir(sub, "{\"name\":\"x\",\"family\":\"blazeface\",\"task\":\"juggling\"}");
    assert_int_equal(infer_model_load(env, sub, 0, &m, &e), ERR_MANIFEST);
    assert_non_null(strstr(e.msg, "juggling"));

    snprintf(sub, sizeof sub, "%s/wrongname", dir);
    make_dir(sub, "{\"name\":\"x\",\"family\":\"blazeface\",\"task\":\"face_detection\","
                  "\"input\":{\"name\":\"pixels\",\"layout\":\"NHWC\",\"width\":256,"
                  "\"height\":256,\"channels\":3},\"outputs\":{\"scores_16\":\"Identity:0\"}}");
    assert_int_equal(infer_model_load(env, sub, 0, &m, &e), ERR_MANIFEST);
    assert_non_null(strstr(e.msg, "pixels"));

    snprintf(sub, sizeof sub, "%s/badsha", dir);
    make_dir(sub, "{\"name\":\"x\",\"family\":\"blazeface\",\"task\":\"face_detection\","
                  "\"sha256\":\"00\",\"input\":{\"name\":\"input:0\",\"layout\":\"NHWC\","
                  "\"width\":256,\"height\":256,\"channels\":3},"
                  "\"outputs\":{\"scores_16\":\"Identity:0\"}}");
    assert_int_equal(infer_model_load(env, sub, 1, &m, &e), ERR_CHECKSUM);
    assert_null(m);

    snprintf(sub, sizeof sub, "%s/noembedding", dir);
    make_dir(sub, "{\"name\":\"x\",\"family\":\"arcface\",\"task\":\"face_embedding\","
                  "\"embedding_dim\":512,\"input\":{\"name\":\"input:0\",\"layout\":\"NHWC\","
                  "\"width\":256,\"height\":256,\"channels\":3},"
                  "\"outputs\":{\"scores_16\":\"Identity:0\"}}");
    assert_int_equal(infer_model_load(env, sub, 0, &m, &e), ERR_MANIFEST);
    assert_non_null(strstr(e.msg, "embedding"));

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Writes `json` as `dir`/manifest.json and parses it with manifest_load(). */
static int load_json(const char *dir, const char *json, model_manifest *m, err_t *e)
{
    char p[600];
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    return manifest_load(dir, m, e);
}

#define FACE_HEAD                                                                                  \
    "{\"name\":\"f\",\"family\":\"x\",\"task\":\"face_embedding\",\"embedding_dim\":4,"            \
    "\"outputs\":{\"embedding\":\"e\"},\"input\":{\"name\":\"i\",\"layout\":\"NCHW\","            \
    "\"width\":150,\"height\":150,\"channels\":3%s}"

/*
 * The face embedder's "crop" and "embedding_center" and the image embedder's
 * input.resize: defaults, values, and errors that name the key.
 */
static void test_manifest_crop_center_resize(void **state)
{
    (void)state;
    char dir[] = "/tmp/inferd-test-manifest-XXXXXX";
    assert_non_null(mkdtemp(dir));
    model_manifest m;
    err_t e;
    char json[1024];

    snprintf(json, sizeof json, FACE_HEAD "}", "");
    assert_int_equal(load_json(dir, json, &m, &e), ERR_OK);
    assert_int_equal(m.crop_method, CROP_ALIGN);
    assert_int_equal(m.crop_has_template, 0);
    assert_int_equal(m.ncenter, 0);
    assert_int_equal(m.resize, RESIZE_AREA);
    manifest_clear(&m);

    snprintf(json, sizeof json,
             FACE_HEAD ",\"crop\":{\"method\":\"box\",\"scale\":1.25,\"shift_y\":0.1},"
                       "\"embedding_center\":[0.5,-0.25,0,1]}",
             ",\"resize\":\"bilinear_align_corners\"");
    assert_int_equal(load_json(dir, json, &m, &e), ERR_OK);
    assert_int_equal(m.crop_method, CROP_BOX);
    assert_true(m.crop_scale == 1.25f && m.crop_shift_y == 0.1f);
    assert_int_equal(m.ncenter, 4);
    assert_true(m.center[0] == 0.5f && m.center[1] == -0.25f && m.center[3] == 1.0f);
    assert_int_equal(m.resize, RESIZE_BILINEAR_ALIGN_CORNERS);
    manifest_clear(&m);

    /* The Pillow-exact modes (CLIP), each name back to itself. */
    static const image_resize pil_modes[] = {RESIZE_SHORTEST_CROP_BICUBIC,
                                             RESIZE_SHORTEST_CROP_BILINEAR, RESIZE_SQUASH_BICUBIC,
                                             RESIZE_SQUASH_BILINEAR};
    for (size_t i = 0; i < sizeof pil_modes / sizeof pil_modes[0]; i++) {
        char extra[64];
        snprintf(extra, sizeof extra, ",\"resize\":\"%s\"", manifest_resize_name(pil_modes[i]));
        snprintf(json, sizeof json, FACE_HEAD "}", extra);
        assert_int_equal(load_json(dir, json, &m, &e), ERR_OK);
        assert_int_equal(m.resize, pil_modes[i]);
        manifest_clear(&m);
    }
    assert_string_equal(manifest_resize_name(RESIZE_SHORTEST_CROP_BICUBIC),
                        "shortest_crop_bicubic");
    assert_string_equal(manifest_resize_name((image_resize)99), "unknown");

    snprintf(json, sizeof json,
             FACE_HEAD ",\"crop\":{\"method\":\"align\",\"template\":[[1,2],[3,4],[5,6],[7,8]]}}",
             "");
    assert_int_equal(load_json(dir, json, &m, &e), ERR_OK);
    assert_int_equal(m.crop_has_template, 1);
    assert_true(m.crop_template[3][0] == 7.0f && m.crop_template[3][1] == 8.0f);
    manifest_clear(&m);

    static const struct {
        const char *input_extra, *extra, *names;
    } bad[] = {
        {"", ",\"crop\":{\"method\":\"spin\"}", "spin"},
        {"", ",\"crop\":{\"method\":\"box\",\"scale\":9}", "scale"},
        {"", ",\"crop\":{\"method\":\"align\",\"template\":[[1,2],[3,4],[5,6]]}", "template"},
        {"", ",\"crop\":{\"method\":\"align\",\"template\":[[1,2],[3,4],[5,6],[7]]}",
         "template[3]"},
        {"", ",\"crop\":\"box\"", "crop"},
        {"", ",\"embedding_center\":[1,2,3]", "embedding_center"},
        {"", ",\"embedding_center\":[1,2,3,\"x\"]", "embedding_center[3]"},
        {",\"resize\":\"nearest\"", "", "nearest"},
        {",\"resize\":\"shortest_crop_lanczos\"", "", "shortest_crop_lanczos"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char tail[300];
        snprintf(tail, sizeof tail, "%s}", bad[i].extra);
        snprintf(json, sizeof json, FACE_HEAD "%s", bad[i].input_extra, tail);
        assert_int_equal(load_json(dir, json, &m, &e), ERR_MANIFEST);
        if (strstr(e.msg, bad[i].names) == NULL)
            fail_msg("case %zu: '%s' does not name %s", i, e.msg, bad[i].names);
    }
    /* A crop is for face embedders only. */
    assert_int_equal(load_json(dir,
                               "{\"name\":\"d\",\"family\":\"blazeface\",\"task\":"
                               "\"face_detection\",\"outputs\":{\"s\":\"t\"},\"input\":{\"name\":"
                               "\"i\",\"layout\":\"NHWC\",\"width\":8,\"height\":8,\"channels\":3},"
                               "\"crop\":{\"method\":\"box\"}}",
                               &m, &e),
                     ERR_MANIFEST);
    assert_non_null(strstr(e.msg, "crop"));

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_l2(void **state)
{
    float v[4] = {3, 4, 0, 0};
    assert_float_equal(infer_l2_normalize(v, 4), 5.0f, 1e-6);
    assert_float_equal(v[0], 0.6f, 1e-6);
    float z[2] = {0, 0};
    assert_float_equal(infer_l2_normalize(z, 2), 0.0f, 0);
    assert_float_equal(z[0], 0.0f, 0);
}

/* A manifest-less directory's name becomes the model's name whole, or the load fails. */
static void test_name_from_dir(void **state)
{
    (void)state;
    model_manifest m;
    err_t e;
    memset(&m, 0, sizeof m);
    assert_int_equal(manifest_name_from_dir(&m, "/models/ViT-B-32__openai/", &e), ERR_OK);
    assert_string_equal(m.name, "ViT-B-32__openai");
    assert_int_equal(manifest_name_from_dir(&m, "buffalo_l", &e), ERR_OK);
    assert_string_equal(m.name, "buffalo_l");
    char dir[200];
    snprintf(dir, sizeof dir, "/models/%0*d", (int)sizeof m.name, 7);
    assert_int_equal(manifest_name_from_dir(&m, dir, &e), ERR_MANIFEST);
    assert_non_null(strstr(e.msg, "1..63 bytes"));
    assert_int_equal(manifest_name_from_dir(&m, "/", &e), ERR_MANIFEST);
}

int main(void)
{
    const char *d = getenv("INFERD_TEST_DETECTOR_DIR");
    if (d != NULL)
        detector_dir = d;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_load_and_run),
        cmocka_unit_test(test_manifest_errors),
        cmocka_unit_test(test_manifest_crop_center_resize),
        cmocka_unit_test(test_l2),
        cmocka_unit_test(test_name_from_dir),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
