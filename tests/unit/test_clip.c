/*
 * test_clip.c — the CLIP directory loader and text encoder (infer/clip.c) on
 * small CLIP-shaped models that tools/mkclip writes into a temp dir at test
 * time (no real CLIP weights are reachable from the build machines).
 *
 * mkclip is found beside the test binary's directory (build/mkclip for
 * build/tests/test_clip) or at $INFERD_MKCLIP.
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

#include "infer/clip.h"
#include "testsupport.h"

#define FIXTURE INFERD_SRCDIR "/tests/fixtures/clip/merges.txt"
#define DIM 64
#define IMG_FLOATS (3 * 224 * 224)

static infer_env *env;
static char tmpdir[] = "/tmp/inferd-clip-XXXXXX";
static char mkclip[4096];

/* Runs mkclip with `args` into tmpdir/`name`. */
static int run_mkclip(const char *args, const char *name)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s --merges %s %s/%s", mkclip, args, FIXTURE, tmpdir, name);
    return system(cmd);
}

static int setup(void **state)
{
    if (ts_tool_path("test_clip", "mkclip", "INFERD_MKCLIP", mkclip, sizeof mkclip) != 0)
        return -1;
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    if (run_mkclip("", "int32") || run_mkclip("", "again") ||
        run_mkclip("--int64 --seed 7", "int64") || run_mkclip("--no-textual", "notext"))
        return -1;
    err_t e;
    infer_env_opts o = {.intra_op_threads = 1};
    return infer_env_new(&o, &env, &e);
}

static int teardown(void **state)
{
    infer_env_free(env);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static clip_model *load(const char *name)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    clip_model *m = NULL;
    err_t e = {0};
    if (clip_model_load(env, dir, &m, &e) != ERR_OK)
        fail_msg("clip_model_load(%s): %s", dir, e.msg);
    return m;
}

static float norm(const float *v, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    return (float)sqrt(s);
}

static float dot(const float *a, const float *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return (float)s;
}

static void test_mkclip_deterministic(void **state)
{
    const char *files[] = {"visual/model.onnx", "textual/model.onnx", "textual/tokenizer.json",
                           "visual/preprocess_cfg.json", "config.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char cmd[9000];
        snprintf(cmd, sizeof cmd, "cmp -s %s/int32/%s %s/again/%s", tmpdir, files[i], tmpdir,
                 files[i]);
        if (system(cmd) != 0)
            fail_msg("mkclip wrote different bytes for %s", files[i]);
    }
}

static void test_load_shapes(void **state)
{
    clip_model *m = load("int32");
    assert_int_equal(clip_embedding_dim(m), DIM);
    assert_int_equal(clip_context_length(m), 77);
    assert_non_null(clip_tokenizer(m));
    const model_manifest *man = infer_model_manifest(clip_visual(m));
    assert_int_equal(man->task, TASK_IMAGE_EMBEDDING);
    assert_string_equal(man->family, "clip");
    assert_string_equal(man->input_name, "image");
    assert_int_equal(man->layout, LAYOUT_NCHW);
    assert_int_equal(man->width, 224);
    assert_int_equal(man->height, 224);
    assert_int_equal(man->embedding_dim, DIM);
    assert_true(fabsf(man->mean[0] - 0.48145466f * 255.0f) < 1e-3f);
    assert_true(fabsf(man->std[2] - 0.27577711f * 255.0f) < 1e-3f);
    assert_non_null(manifest_output_by_role(man, "embedding"));
    /* mkclip writes Immich's "interpolation": "bicubic", "resize_mode": "shortest". */
    assert_int_equal(man->resize, RESIZE_SHORTEST_CROP_BICUBIC);
    clip_model_free(m);
    clip_model_free(NULL);
}

/* Writes `json` as dir `name`'s visual/preprocess_cfg.json; returns the directory. */
static const char *write_cfg(const char *name, const char *json)
{
    static char dir[4200];
    char p[4400];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    snprintf(p, sizeof p, "mkdir -p %s/visual", dir);
    assert_int_equal(system(p), 0);
    snprintf(p, sizeof p, "%s/visual/preprocess_cfg.json", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    return dir;
}

/* preprocess_cfg's resize_mode and interpolation become input.resize. */
static void test_visual_resize(void **state)
{
    static const struct {
        const char *keys;
        image_resize want;
    } ok[] = {
        {"", RESIZE_SHORTEST_CROP_BICUBIC}, /* OpenCLIP's defaults */
        {",\"interpolation\":\"bilinear\"", RESIZE_SHORTEST_CROP_BILINEAR},
        {",\"resize_mode\":\"squash\"", RESIZE_SQUASH_BICUBIC},
        {",\"resize_mode\":\"squash\",\"interpolation\":\"bilinear\"", RESIZE_SQUASH_BILINEAR},
        {",\"resize_mode\":\"shortest\",\"interpolation\":\"bicubic\"",
         RESIZE_SHORTEST_CROP_BICUBIC},
    };
    static const struct {
        const char *keys, *names;
    } bad[] = {
        {",\"resize_mode\":\"longest\"", "\"resize_mode\" = \"longest\""},
        {",\"interpolation\":\"lanczos\"", "\"interpolation\" = \"lanczos\""},
        {",\"interpolation\":3", "\"interpolation\""},
    };
    model_manifest man;
    err_t e = {0};
    char json[512], name[32];

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        snprintf(json, sizeof json, "{\"size\":[224,224]%s}", ok[i].keys);
        snprintf(name, sizeof name, "resize-ok-%zu", i);
        assert_int_equal(clip_visual_manifest(write_cfg(name, json), &man, &e), ERR_OK);
        assert_int_equal(man.resize, ok[i].want);
        manifest_clear(&man);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(json, sizeof json, "{\"size\":224%s}", bad[i].keys);
        snprintf(name, sizeof name, "resize-bad-%zu", i);
        assert_int_equal(clip_visual_manifest(write_cfg(name, json), &man, &e), ERR_MANIFEST);
        if (strstr(e.msg, "visual/preprocess_cfg.json") == NULL ||
            strstr(e.msg, bad[i].names) == NULL)
            fail_msg("case %zu: '%s' does not name the file and %s", i, e.msg, bad[i].names);
    }
}

static void test_encode_text(void **state)
{
    clip_model *m = load("int32");
    float a[DIM], a2[DIM], b[DIM], c[DIM];
    err_t e = {0};
    assert_int_equal(clip_encode_text(m, "a photo of a cat", a, &e), ERR_OK);
    assert_true(fabsf(norm(a, DIM) - 1.0f) < 1e-4f);
    assert_int_equal(clip_encode_text(m, "A  Photo of a CAT ", a2, &e), ERR_OK);
    assert_memory_equal(a, a2, sizeof a); /* same tokens, same vector, bit for bit */
    assert_int_equal(clip_encode_text(m, "a diagram", b, &e), ERR_OK);
    assert_int_equal(clip_encode_text(m, "the cat's hat", c, &e), ERR_OK);
    assert_true(fabsf(norm(b, DIM) - 1.0f) < 1e-4f);
    assert_true(dot(a, b, DIM) < 0.999f);
    assert_true(dot(a, c, DIM) < 0.999f);
    assert_true(dot(b, c, DIM) < 0.999f);
    /* Empty and over-long text still give unit vectors (truncated to 77 with EOT). */
    assert_int_equal(clip_encode_text(m, "", b, &e), ERR_OK);
    assert_true(fabsf(norm(b, DIM) - 1.0f) < 1e-4f);
    char long_text[2000] = "";
    for (int i = 0; i < 150; i++)
        strcat(long_text, "cat ");
    assert_int_equal(clip_encode_text(m, long_text, b, &e), ERR_OK);
    assert_true(fabsf(norm(b, DIM) - 1.0f) < 1e-4f);
    clip_model_free(m);
}

static void test_int64_ids(void **state)
{
    clip_model *m = load("int64");
    float a[DIM], b[DIM];
    err_t e = {0};
    assert_int_equal(clip_encode_text(m, "a photo of a cat", a, &e), ERR_OK);
    assert_int_equal(clip_encode_text(m, "a photo of a cat", b, &e), ERR_OK);
    assert_memory_equal(a, b, sizeof a);
    assert_true(fabsf(norm(a, DIM) - 1.0f) < 1e-4f);
    clip_model_free(m);
}

static void fill_image(float *img, int seed)
{
    for (int i = 0; i < IMG_FLOATS; i++)
        img[i] = (float)((i * (seed + 3)) % 251) / 125.0f - 1.0f;
}

static void test_encode_image(void **state)
{
    clip_model *m = load("int32");
    infer_model *v = clip_visual(m);
    float *img = malloc(sizeof(float) * IMG_FLOATS);
    float a[DIM], a2[DIM], b[DIM];
    err_t e = {0};
    assert_int_equal(infer_input_size(v), IMG_FLOATS);
    fill_image(img, 1);
    infer_output o = {.role = "embedding", .data = a, .cap = DIM};
    assert_int_equal(infer_run(v, img, 1, &o, 1, &e), ERR_OK);
    assert_int_equal(o.count, DIM);
    assert_int_equal(o.rank, 2);
    assert_int_equal(o.shape[0], 1);
    assert_int_equal(o.shape[1], DIM);
    infer_l2_normalize(a, DIM);
    assert_true(fabsf(norm(a, DIM) - 1.0f) < 1e-4f);
    o.data = a2;
    assert_int_equal(infer_run(v, img, 1, &o, 1, &e), ERR_OK);
    infer_l2_normalize(a2, DIM);
    assert_memory_equal(a, a2, sizeof a);
    fill_image(img, 2);
    o.data = b;
    assert_int_equal(infer_run(v, img, 1, &o, 1, &e), ERR_OK);
    infer_l2_normalize(b, DIM);
    assert_true(dot(a, b, DIM) < 0.999f);
    free(img);
    clip_model_free(m);
}

static void test_missing_textual(void **state)
{
    clip_model *m = load("notext"); /* image embeddings still work */
    assert_null(clip_tokenizer(m));
    float v[DIM];
    err_t e = {0};
    assert_int_equal(clip_encode_text(m, "a photo of a cat", v, &e), ERR_NOENT);
    assert_non_null(strstr(e.msg, "textual/model.onnx"));
    assert_non_null(strstr(e.msg, "missing"));
    clip_model_free(m);
}

static void test_load_errors(void **state)
{
    char dir[4200], p[4300];
    clip_model *m = NULL;
    err_t e = {0};
    /* No visual model at all. */
    snprintf(dir, sizeof dir, "%s/empty", tmpdir);
    snprintf(p, sizeof p, "mkdir -p %s", dir);
    assert_int_equal(system(p), 0);
    assert_int_equal(clip_model_load(env, dir, &m, &e), ERR_NOENT);
    assert_null(m);
    assert_non_null(strstr(e.msg, "visual/model.onnx"));

    /* A text model without tokenizer files. */
    snprintf(p, sizeof p, "cp -r %s/int32 %s/notok && rm %s/notok/textual/tokenizer.json", tmpdir,
             tmpdir, tmpdir);
    assert_int_equal(system(p), 0);
    snprintf(dir, sizeof dir, "%s/notok", tmpdir);
    assert_int_equal(clip_model_load(env, dir, &m, &e), ERR_NOENT);
    assert_non_null(strstr(e.msg, "tokenizer"));

    /* A malformed preprocess_cfg.json names the file and key. */
    snprintf(p, sizeof p, "cp -r %s/int32 %s/badcfg", tmpdir, tmpdir);
    assert_int_equal(system(p), 0);
    snprintf(p, sizeof p, "%s/badcfg/visual/preprocess_cfg.json", tmpdir);
    FILE *f = fopen(p, "w");
    fputs("{\"size\": 224, \"mean\": [0.5, 0.5], \"std\": [0.2, 0.2, 0.2]}", f);
    fclose(f);
    snprintf(dir, sizeof dir, "%s/badcfg", tmpdir);
    assert_int_equal(clip_model_load(env, dir, &m, &e), ERR_MANIFEST);
    assert_non_null(strstr(e.msg, "preprocess_cfg.json"));
    assert_non_null(strstr(e.msg, "mean"));

    /* A config whose context length disagrees with the text model. */
    snprintf(p, sizeof p, "cp -r %s/int32 %s/badctx", tmpdir, tmpdir);
    assert_int_equal(system(p), 0);
    snprintf(p, sizeof p, "%s/badctx/config.json", tmpdir);
    f = fopen(p, "w");
    fputs("{\"embed_dim\": 64, \"text_cfg\": {\"context_length\": 32}}", f);
    fclose(f);
    snprintf(dir, sizeof dir, "%s/badctx", tmpdir);
    assert_int_equal(clip_model_load(env, dir, &m, &e), ERR_MODEL);
    assert_non_null(strstr(e.msg, "context_length"));

    /* Without config.json the embedding size is probed from the visual model. */
    snprintf(p, sizeof p, "cp -r %s/int32 %s/nocfg && rm %s/nocfg/config.json", tmpdir, tmpdir,
             tmpdir);
    assert_int_equal(system(p), 0);
    snprintf(dir, sizeof dir, "%s/nocfg", tmpdir);
    assert_int_equal(clip_model_load(env, dir, &m, &e), ERR_OK);
    assert_int_equal(clip_embedding_dim(m), DIM);
    clip_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mkclip_deterministic), cmocka_unit_test(test_load_shapes),
        cmocka_unit_test(test_encode_text),          cmocka_unit_test(test_int64_ids),
        cmocka_unit_test(test_encode_image),         cmocka_unit_test(test_missing_textual),
        cmocka_unit_test(test_load_errors),          cmocka_unit_test(test_visual_resize),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
