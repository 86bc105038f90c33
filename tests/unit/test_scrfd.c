/*
 * test_scrfd.c — Immich's face models as inferd runs them: insightface's
 * fit and cv2-style resize (vision/scrfd.c), SCRFD decoding and hard NMS,
 * five-point Umeyama and cv2.warpAffine alignment (vision/align.c), the
 * pack loader (infer/insightface.c) and the pipeline on it.
 *
 * The models are toys of the right shape that tools/mkfaces writes into a
 * temp dir at test time; its detector's outputs are constants documented in
 * tools/mkfaces/mkfaces.c, from which the expected faces are computed here
 * by hand. mkfaces is found beside the test binary's directory
 * (build/mkfaces) or at $INFERD_MKFACES.
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
#include <vips/vips.h>

#include "infer/insightface.h"
#include "pipeline/analyze.h"
#include "testsupport.h"
#include "vision/vision.h"

static infer_env *env;
static char tmpdir[] = "/tmp/inferd-scrfd-XXXXXX";
static char mkfaces[4096];

/* The planted faces of mkfaces (its file comment): stride, anchor centre, distances, offsets. */
typedef struct {
    float stride, cx, cy, score, d[4], k[10];
} planted;

static const planted F1 = {
    8,     320,          240,
    0.95f, {4, 5, 4, 6}, {-1.5f, -1.5f, 1.5f, -1.5f, 0, 0.5f, -1.2f, 2.5f, 1.2f, 2.5f}};
static const planted F2 = {32,
                           160,
                           128,
                           0.85f,
                           {2, 2.5f, 2, 3},
                           {-0.8f, -0.8f, 0.8f, -0.8f, 0, 0.3f, -0.6f, 1.6f, 0.6f, 1.6f}};

static int run_mkfaces(const char *args, const char *name)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s %s/%s", mkfaces, args, tmpdir, name);
    return system(cmd);
}

static int setup(void **state)
{
    (void)state;
    if (ts_tool_path("test_scrfd", "mkfaces", "INFERD_MKFACES", mkfaces, sizeof mkfaces) != 0)
        return -1;
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    if (run_mkfaces("", "buffalo_l") || run_mkfaces("--dynamic --batch-dim", "batched") ||
        run_mkfaces("--seed 9", "other"))
        return -1;
    err_t e;
    if (vision_init(1, &e) != ERR_OK)
        return -1;
    infer_env_opts o = {.intra_op_threads = 1};
    return infer_env_new(&o, &env, &e);
}

static int teardown(void **state)
{
    (void)state;
    infer_env_free(env);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- letterbox and resize ------------------------------------------------ */

static void test_letterbox(void **state)
{
    (void)state;
    int w, h;
    float s;
    vision_scrfd_letterbox(1000, 750, 640, &w, &h, &s);
    assert_int_equal(w, 640);
    assert_int_equal(h, 480);
    assert_float_equal(s, 480.0 / 750.0, 1e-7);
    vision_scrfd_letterbox(600, 900, 640, &w, &h, &s);
    assert_int_equal(w, 426); /* int(640 / 1.5) = int(426.67): truncated */
    assert_int_equal(h, 640);
    assert_float_equal(s, 640.0 / 900.0, 1e-7);
    vision_scrfd_letterbox(640, 640, 640, &w, &h, &s);
    assert_int_equal(w, 640);
    assert_int_equal(h, 640);
    assert_float_equal(s, 1.0, 1e-7);
    vision_scrfd_letterbox(333, 1000, 640, &w, &h, &s);
    assert_int_equal(w, 213); /* 640 / (1000 / 333) = 213.12 */
    assert_int_equal(h, 640);
}

static void test_resize_linear(void **state)
{
    (void)state;
    /* One row of 4 grey pixels: shrink to 2 reads positions 0.5 and 2.5. */
    uint8_t src[12], dst[12];
    const uint8_t v[4] = {0, 100, 200, 255};
    for (int i = 0; i < 12; i++)
        src[i] = v[i / 3];
    assert_int_equal(vision_resize_linear(src, 4, 1, dst, 2, 1), ERR_OK);
    assert_int_equal(dst[0], 50);  /* (0 + 100) / 2 */
    assert_int_equal(dst[3], 228); /* (200 + 255) / 2 = 227.5, rounded up */
    /* Enlarge 2 -> 4: positions -0.25 (clamped), 0.25, 0.75, 1.25 (clamped). */
    assert_int_equal(vision_resize_linear(src, 2, 1, dst, 4, 1), ERR_OK);
    assert_int_equal(dst[0], 0);
    assert_int_equal(dst[3], 25);
    assert_int_equal(dst[6], 75);
    assert_int_equal(dst[9], 100);
    /* The same size copies. */
    assert_int_equal(vision_resize_linear(src, 4, 1, dst, 4, 1), ERR_OK);
    assert_memory_equal(src, dst, 12);
    assert_int_equal(vision_resize_linear(src, 0, 1, dst, 4, 1), ERR_INVAL);
    /* An exact halving is OpenCV's 2x2 mean, (sum + 2) / 4: rows {0,100,200,255}, {1,2,3,4}. */
    uint8_t two[24];
    const uint8_t r2[4] = {1, 2, 3, 4};
    memcpy(two, src, 12);
    for (int i = 0; i < 12; i++)
        two[12 + i] = r2[i / 3];
    assert_int_equal(vision_resize_linear(two, 4, 2, dst, 2, 1), ERR_OK);
    assert_int_equal(dst[0], (0 + 100 + 1 + 2 + 2) / 4);
    assert_int_equal(dst[3], (200 + 255 + 3 + 4 + 2) / 4);
    /* A flat image stays flat through both of OpenCV's roundings (a 40-pixel row has both). */
    uint8_t *flat = malloc(64 * 48 * 3), *out = malloc(40 * 30 * 3);
    memset(flat, 77, 64 * 48 * 3);
    assert_int_equal(vision_resize_linear(flat, 64, 48, out, 40, 30), ERR_OK);
    for (int i = 0; i < 40 * 30 * 3; i++)
        assert_int_equal(out[i], 77);
    free(flat);
    free(out);
}

/* ---- NMS ----------------------------------------------------------------- */

static vision_face box_face(float x1, float y1, float x2, float y2, float score)
{
    vision_face f;
    memset(&f, 0, sizeof f);
    f.box = (vision_box){x1, y1, x2, y2};
    f.score = score;
    f.nkps = VISION_FACE_KPS5;
    return f;
}

static void test_nms_hard(void **state)
{
    (void)state;
    /*
     * (0,0,9,9) and (5,0,14,9) overlap 5x10 pixels of 10x10 each with
     * insightface's +1: IoU 50 / 150 = 0.333 (without the +1 it would be
     * 36 / 126 = 0.286).
     */
    vision_face f[4];
    f[0] = box_face(5, 0, 14, 9, 0.8f);
    f[1] = box_face(0, 0, 9, 9, 0.9f);
    f[2] = box_face(100, 100, 120, 120, 0.7f);
    f[3] = box_face(101, 100, 121, 120, 0.95f); /* IoU with f[2] 400/482 */
    assert_int_equal(vision_nms_hard(f, 4, 0.4f), 3);
    assert_float_equal(f[0].score, 0.95f, 0);
    assert_float_equal(f[1].score, 0.9f, 0);
    assert_float_equal(f[2].score, 0.8f, 0);
    f[0] = box_face(5, 0, 14, 9, 0.8f);
    f[1] = box_face(0, 0, 9, 9, 0.9f);
    assert_int_equal(vision_nms_hard(f, 2, 0.3f), 1);
    assert_float_equal(f[0].score, 0.9f, 0);
    /* Ties keep their order. */
    f[0] = box_face(0, 0, 9, 9, 0.5f);
    f[1] = box_face(50, 0, 59, 9, 0.5f);
    assert_int_equal(vision_nms_hard(f, 2, 0.4f), 2);
    assert_float_equal(f[0].box.x1, 0, 0);
    assert_int_equal(vision_nms_hard(f, 0, 0.4f), 0);
}

/* ---- detection on the toy pack ------------------------------------------- */

/* A w x h image of a deterministic texture. */
static vision_image *texture(int w, int h, unsigned seed)
{
    vision_image *img = NULL;
    err_t e;
    assert_int_equal(vision_image_new(w, h, &img, &e), ERR_OK);
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        img->rgb[i] = (uint8_t)(s >> 24);
    }
    return img;
}

static infer_model *load(const char *name, model_task task)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    assert_true(insightface_dir_has(dir, task));
    infer_model *m = NULL;
    err_t e = {0};
    int rc = insightface_load(env, dir, task, &m, &e);
    if (rc != ERR_OK)
        fprintf(stderr, "load %s: %s\n", dir, e.msg);
    assert_int_equal(rc, ERR_OK);
    return m;
}

/* The face planted as `p` in an image fitted with det_scale `s`, as the test computes it. */
static void expect_face(const vision_face *f, const planted *p, float s)
{
    assert_int_equal(f->nkps, VISION_FACE_KPS5);
    assert_float_equal(f->score, p->score, 1e-6);
    assert_float_equal(f->box.x1, (p->cx - p->d[0] * p->stride) / s, 1e-3);
    assert_float_equal(f->box.y1, (p->cy - p->d[1] * p->stride) / s, 1e-3);
    assert_float_equal(f->box.x2, (p->cx + p->d[2] * p->stride) / s, 1e-3);
    assert_float_equal(f->box.y2, (p->cy + p->d[3] * p->stride) / s, 1e-3);
    for (int k = 0; k < 5; k++) {
        assert_float_equal(f->kps[k][0], (p->cx + p->k[2 * k] * p->stride) / s, 1e-3);
        assert_float_equal(f->kps[k][1], (p->cy + p->k[2 * k + 1] * p->stride) / s, 1e-3);
    }
}

static void detect_case(const char *pack, int w, int h, float det_scale)
{
    infer_model *det = load(pack, TASK_FACE_DETECTION);
    const model_manifest *m = infer_model_manifest(det);
    assert_string_equal(m->name, pack);
    assert_string_equal(m->family, "scrfd");
    assert_int_equal(m->width, 640);
    vision_image *img = texture(w, h, 1);
    vision_face *faces = NULL;
    int n = -1;
    err_t e = {0};
    vision_detect_opts o = {.score_threshold = 0.7f};
    assert_int_equal(vision_detect_faces(det, img, &o, &faces, &n, &e), ERR_OK);
    /* F1' is suppressed by F1 (IoU ~0.95), F3 is under the threshold, the rest score 0.01. */
    assert_int_equal(n, 2);
    expect_face(&faces[0], &F1, det_scale);
    expect_face(&faces[1], &F2, det_scale);
    free(faces);
    /* A lower threshold lets F3 (0.6) through the decode, but it overlaps F2 by IoU 0.41. */
    o.score_threshold = 0.5f;
    assert_int_equal(vision_detect_faces(det, img, &o, &faces, &n, &e), ERR_OK);
    assert_int_equal(n, 2);
    free(faces);
    o.score_threshold = 0.005f; /* every anchor: max_faces caps what comes back */
    o.max_faces = 5;
    assert_int_equal(vision_detect_faces(det, img, &o, &faces, &n, &e), ERR_OK);
    assert_int_equal(n, 5);
    assert_float_equal(faces[0].score, 0.95f, 1e-6);
    free(faces);
    o = (vision_detect_opts){.score_threshold = 0.96f};
    assert_int_equal(vision_detect_faces(det, img, &o, &faces, &n, &e), ERR_OK);
    assert_int_equal(n, 0);
    assert_null(faces);
    /* The task API (what the pipeline uses) gives one view. */
    vision_detect_task *t = NULL;
    o.score_threshold = 0.7f;
    assert_int_equal(vision_detect_begin(det, img, &o, &t, &e), ERR_OK);
    assert_int_equal(vision_detect_pending(t), 1);
    assert_int_equal(vision_detect_work(t, 0), 1);
    assert_int_equal(vision_detect_finish(t, &faces, &n, &e), ERR_OK);
    assert_int_equal(n, 2);
    free(faces);
    vision_image_free(img);
    infer_model_free(det);
}

static void test_detect_landscape(void **state)
{
    (void)state;
    detect_case("buffalo_l", 1000, 750, 480.0f / 750.0f);
}

static void test_detect_portrait(void **state)
{
    (void)state;
    detect_case("buffalo_l", 600, 900, 640.0f / 900.0f);
}

static void test_detect_batch_dim_dynamic(void **state)
{
    (void)state;
    detect_case("batched", 1000, 750, 480.0f / 750.0f);
}

/* Shrink-on-load: detections come back in original pixels. */
static void test_detect_orig_pixels(void **state)
{
    (void)state;
    infer_model *det = load("buffalo_l", TASK_FACE_DETECTION);
    vision_image *img = texture(500, 375, 2);
    img->orig_width = 1000;
    img->orig_height = 750;
    vision_face *faces = NULL;
    int n = 0;
    err_t e;
    assert_int_equal(vision_detect_faces(det, img, NULL, &faces, &n, &e), ERR_OK);
    assert_int_equal(n, 2);
    /* det_scale 640/500 on the decoded image, then x2 to the original. */
    assert_float_equal(faces[0].box.x1, (320 - 32) / (640.0f / 500.0f) * 2, 1e-3);
    free(faces);
    vision_image_free(img);
    infer_model_free(det);
}

/* A manifest.json with family "scrfd" (roles by position, "#K") works as the synthesised one. */
static void test_detect_manifest(void **state)
{
    (void)state;
    char dir[4200], cmd[9000];
    snprintf(dir, sizeof dir, "%s/scrfd-manifest", tmpdir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/buffalo_l/detection/model.onnx %s/", dir,
             tmpdir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/manifest.json", dir);
    FILE *f = fopen(cmd, "w");
    assert_non_null(f);
    fputs("{\"name\": \"toy-scrfd\", \"task\": \"face_detection\", \"family\": \"scrfd\",\n"
          " \"input\": {\"name\": \"#0\", \"layout\": \"NCHW\", \"width\": 640,"
          " \"height\": 640, \"channels\": 3,\n"
          "  \"mean\": [127.5, 127.5, 127.5], \"std\": [128, 128, 128]},\n"
          " \"outputs\": {\"score_8\": \"#0\", \"score_16\": \"#1\", \"score_32\": \"#2\","
          " \"bbox_8\": \"#3\", \"bbox_16\": \"#4\", \"bbox_32\": \"#5\", \"kps_8\": \"#6\","
          " \"kps_16\": \"#7\", \"kps_32\": \"#8\"},\n"
          " \"embedding_dim\": 0}\n",
          f);
    assert_int_equal(fclose(f), 0);
    assert_false(insightface_dir_has(dir, TASK_FACE_DETECTION));
    infer_model *det = NULL;
    err_t e = {0};
    int rc = infer_model_load(env, dir, 0, &det, &e);
    if (rc != ERR_OK)
        fprintf(stderr, "load: %s\n", e.msg);
    assert_int_equal(rc, ERR_OK);
    /* "#K" became the real names, insightface-style numbers. */
    assert_string_equal(manifest_output_by_role(infer_model_manifest(det), "bbox_8")->name, "451");
    vision_image *img = texture(600, 900, 5);
    vision_face *faces = NULL;
    int n = 0;
    vision_detect_opts o = {.score_threshold = 0.7f};
    assert_int_equal(vision_detect_faces(det, img, &o, &faces, &n, &e), ERR_OK);
    assert_int_equal(n, 2);
    expect_face(&faces[0], &F1, 640.0f / 900.0f);
    expect_face(&faces[1], &F2, 640.0f / 900.0f);
    free(faces);
    vision_image_free(img);
    infer_model_free(det);
}

/* ---- alignment ----------------------------------------------------------- */

static model_manifest arcface_manifest(void)
{
    model_manifest m;
    memset(&m, 0, sizeof m);
    m.task = TASK_FACE_EMBEDDING;
    m.width = m.height = 112;
    m.channels = 3;
    m.layout = LAYOUT_NCHW;
    m.crop_method = CROP_ALIGN5;
    for (int c = 0; c < 3; c++) {
        m.mean[c] = 127.5f;
        m.std[c] = 127.5f;
    }
    return m;
}

static void test_umeyama5(void **state)
{
    (void)state;
    /* Landmarks = template scaled by 2.5, rotated by 20 degrees, shifted by (300, 120). */
    const double s = 2.5, th = 20 * M_PI / 180, tx = 300, ty = 120;
    vision_face f;
    memset(&f, 0, sizeof f);
    f.nkps = VISION_FACE_KPS5;
    for (int i = 0; i < 5; i++) {
        double x = vision_arcface_template5[i][0], y = vision_arcface_template5[i][1];
        f.kps[i][0] = (float)(s * (cos(th) * x - sin(th) * y) + tx);
        f.kps[i][1] = (float)(s * (sin(th) * x + cos(th) * y) + ty);
    }
    model_manifest m = arcface_manifest();
    float M[2][3];
    err_t e;
    assert_int_equal(vision_face_map(&m, &f, M, &e), ERR_OK);
    /* M is the inverse: scale 1/s, rotation -th. */
    assert_float_equal(M[0][0], cos(-th) / s, 1e-5);
    assert_float_equal(M[0][1], -sin(-th) / s, 1e-5);
    assert_float_equal(M[1][0], sin(-th) / s, 1e-5);
    assert_float_equal(M[1][1], cos(-th) / s, 1e-5);
    for (int i = 0; i < 5; i++) {
        float u = M[0][0] * f.kps[i][0] + M[0][1] * f.kps[i][1] + M[0][2];
        float v = M[1][0] * f.kps[i][0] + M[1][1] * f.kps[i][1] + M[1][2];
        assert_float_equal(u, vision_arcface_template5[i][0], 1e-3);
        assert_float_equal(v, vision_arcface_template5[i][1], 1e-3);
    }
    /* Half the input size: the template scales with it. */
    m.width = m.height = 56;
    assert_int_equal(vision_face_map(&m, &f, M, &e), ERR_OK);
    assert_float_equal(M[0][0], cos(-th) / s / 2, 1e-5);
    /* All five points at one place cannot be fitted. */
    for (int i = 1; i < 5; i++)
        memcpy(f.kps[i], f.kps[0], sizeof f.kps[0]);
    assert_int_equal(vision_face_map(&m, &f, M, &e), ERR_INVAL);
}

static void test_warp_affine_cv(void **state)
{
    (void)state;
    vision_image *img = texture(16, 16, 3);
    uint8_t out[16 * 16 * 3];
    err_t e;
    /* The identity copies. */
    const float I[2][3] = {{1, 0, 0}, {0, 1, 0}};
    assert_int_equal(vision_warp_affine_cv(img, I, 16, out, &e), ERR_OK);
    assert_memory_equal(out, img->rgb, sizeof out);
    /* Output x samples image x + 0.5: the mean of two neighbours, rounded up at .5. */
    const float T[2][3] = {{1, 0, -0.5f}, {0, 1, 0}};
    assert_int_equal(vision_warp_affine_cv(img, T, 16, out, &e), ERR_OK);
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 15; x++)
            for (int c = 0; c < 3; c++) {
                int a = img->rgb[(y * 16 + x) * 3 + c], b = img->rgb[(y * 16 + x + 1) * 3 + c];
                assert_int_equal(out[(y * 16 + x) * 3 + c], (a + b + 1) / 2);
            }
    /* The last column blends with the black border. */
    assert_int_equal(out[(0 * 16 + 15) * 3], (img->rgb[15 * 3] + 1) / 2);
    /* Shifted off the image entirely: black. */
    const float F[2][3] = {{1, 0, -100}, {0, 1, 0}};
    assert_int_equal(vision_warp_affine_cv(img, F, 16, out, &e), ERR_OK);
    for (size_t i = 0; i < sizeof out; i++)
        assert_int_equal(out[i], 0);
    const float Z[2][3] = {{0, 0, 0}, {0, 0, 0}};
    assert_int_equal(vision_warp_affine_cv(img, Z, 16, out, &e), ERR_INVAL);
    vision_image_free(img);
}

/* ---- the pipeline on the pack -------------------------------------------- */

static void write_png(const vision_image *img, const char *path)
{
    VipsImage *v = vips_image_new_from_memory(img->rgb, (size_t)img->width * img->height * 3,
                                              img->width, img->height, 3, VIPS_FORMAT_UCHAR);
    assert_non_null(v);
    assert_int_equal(vips_pngsave(v, path, "compression", 1, NULL), 0);
    g_object_unref(v);
}

static analysis *analyze(pipeline *p, const vision_image *img, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.png", tmpdir, name);
    write_png(img, path);
    analysis *a = NULL;
    err_t e = {0};
    int rc = pipeline_analyze_file(p, path, PIPELINE_FACES, &a, &e);
    if (rc != ERR_OK)
        fprintf(stderr, "analyze: %s\n", e.msg);
    assert_int_equal(rc, ERR_OK);
    return a;
}

static float dot(const float *a, const float *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return (float)s;
}

static void test_pipeline_embeddings(void **state)
{
    (void)state;
    pipeline_opts o = {.models_dir = tmpdir,
                       .detector = "buffalo_l",
                       .face_embedder = "buffalo_l",
                       .image_embedder = "",
                       .intra_op_threads = 1,
                       .detect = {.score_threshold = 0.7f}};
    pipeline *p = NULL;
    err_t e = {0};
    int rc = pipeline_new(&o, &p, &e);
    if (rc != ERR_OK)
        fprintf(stderr, "pipeline_new: %s\n", e.msg);
    assert_int_equal(rc, ERR_OK);
    const model_manifest *fm = pipeline_model(p, TASK_FACE_EMBEDDING);
    assert_string_equal(fm->name, "buffalo_l");
    assert_string_equal(fm->family, "arcface");
    assert_int_equal(fm->embedding_dim, 512);
    assert_int_equal(fm->crop_method, CROP_ALIGN5);

    vision_image *base = texture(1000, 750, 4);
    analysis *a = analyze(p, base, "base");
    assert_int_equal(a->nfaces, 2);
    assert_int_equal(a->face_dim, 512);
    expect_face(&a->faces[0].det, &F1, 0.64f);
    for (int i = 0; i < 2; i++)
        assert_float_equal(dot(a->faces[i].embedding, a->faces[i].embedding, 512), 1.0, 1e-4);
    /* Two different crops, two different embeddings. */
    assert_true(dot(a->faces[0].embedding, a->faces[1].embedding, 512) < 0.999f);

    /* Pixels far from both faces (bottom-right corner) change nothing. */
    vision_image *far = texture(1000, 750, 4);
    for (int y = 650; y < 750; y++)
        for (int x = 900; x < 1000; x++)
            memset(far->rgb + ((size_t)y * 1000 + x) * 3, 255, 3);
    analysis *b = analyze(p, far, "far");
    assert_int_equal(b->nfaces, 2);
    for (int i = 0; i < 2; i++)
        assert_memory_equal(a->faces[i].embedding, b->faces[i].embedding, 512 * sizeof(float));

    /* The content under F1 moved (a smooth gradient slid in): F1's embedding changes, F2's not. */
    vision_image *moved = texture(1000, 750, 4);
    for (int y = 300; y < 460; y++)
        for (int x = 440; x < 560; x++)
            for (int c = 0; c < 3; c++)
                moved->rgb[((size_t)y * 1000 + x) * 3 + c] = (uint8_t)((x - 440) * 2 + c * 40);
    analysis *c = analyze(p, moved, "moved");
    assert_int_equal(c->nfaces, 2);
    assert_true(dot(a->faces[0].embedding, c->faces[0].embedding, 512) < 0.99f);
    assert_memory_equal(a->faces[1].embedding, c->faces[1].embedding, 512 * sizeof(float));

    /* JSON: five keypoints per face, the pack's name. */
    json_t *j = analysis_to_json(a, 1);
    json_t *f0 = json_array_get(json_object_get(j, "faces"), 0);
    assert_int_equal(json_array_size(json_object_get(f0, "keypoints")), 5);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(f0, "embedding"), "model")), "buffalo_l");
    assert_int_equal(json_array_size(json_object_get(json_object_get(f0, "embedding"), "vector")),
                     512);
    json_decref(j);

    /* A per-call threshold above every planted score finds nothing. */
    char path[4200];
    snprintf(path, sizeof path, "%s/base.png", tmpdir);
    pipeline_call call = {.min_score = 0.99f};
    analysis *d = NULL;
    assert_int_equal(pipeline_analyze_file_ex(p, path, PIPELINE_FACES, &call, &d, &e), ERR_OK);
    assert_int_equal(d->nfaces, 0);

    analysis_free(a);
    analysis_free(b);
    analysis_free(c);
    analysis_free(d);
    vision_image_free(base);
    vision_image_free(far);
    vision_image_free(moved);
    pipeline_free(p);
}

/* Another seed gives other weights: embeddings of the same crop differ. */
static void test_recognizer_seed(void **state)
{
    (void)state;
    infer_model *r1 = load("buffalo_l", TASK_FACE_EMBEDDING);
    infer_model *r2 = load("other", TASK_FACE_EMBEDDING);
    size_t n = infer_input_size(r1);
    assert_int_equal(n, 3 * 112 * 112);
    float *in = calloc(2 * n, sizeof(float));
    for (size_t i = 0; i < 2 * n; i++)
        in[i] = (float)((i * 7919) % 255) / 127.5f - 1.0f;
    float o1[1024], o2[1024];
    err_t e;
    infer_output a = {.role = "embedding", .data = o1, .cap = 1024};
    infer_output b = {.role = "embedding", .data = o2, .cap = 1024};
    assert_int_equal(infer_run(r1, in, 2, &a, 1, &e), ERR_OK);
    assert_int_equal(a.count, 1024); /* a batch of two */
    assert_int_equal(infer_run(r2, in, 2, &b, 1, &e), ERR_OK);
    assert_true(memcmp(o1, o2, sizeof o1) != 0);
    free(in);
    infer_model_free(r1);
    infer_model_free(r2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_letterbox),
        cmocka_unit_test(test_resize_linear),
        cmocka_unit_test(test_nms_hard),
        cmocka_unit_test(test_detect_landscape),
        cmocka_unit_test(test_detect_portrait),
        cmocka_unit_test(test_detect_batch_dim_dynamic),
        cmocka_unit_test(test_detect_orig_pixels),
        cmocka_unit_test(test_detect_manifest),
        cmocka_unit_test(test_umeyama5),
        cmocka_unit_test(test_warp_affine_cv),
        cmocka_unit_test(test_pipeline_embeddings),
        cmocka_unit_test(test_recognizer_seed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
