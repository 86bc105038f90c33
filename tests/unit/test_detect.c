/*
 * test_detect.c — BlazeFace detection quality with the provisioned model:
 * recall and false positives on the face-api group photos, on the same photos
 * shrunk to a third (small faces), and on face-free photos; plus alignment of
 * a real detection; the shareable detection (begin/work/finish) with two
 * helper threads gives exactly the serial faces, whoever runs which view,
 * and a helper that comes after finish touches neither image nor model.
 * Needs var/models/blazeface-back-256 and FAILS without it
 * (set INFERD_TEST_BLAZEFACE to another model directory to override).
 */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <vips/vips.h>

#include "infer/infer.h"
#include "vision/vision.h"

#define FIXTURE INFERD_SRCDIR "/tests/fixtures/faces_faceapi.txt"
#define FACEAPI INFERD_TESTDATA "/faceapi"
#define SKIMAGE "/usr/lib/python3/dist-packages/skimage/data"
#define MAX_GT 8
#define NPHOTOS 6

typedef struct {
    char file[64];
    int n;
    vision_box gt[MAX_GT];
} photo;

static infer_env *env;
static infer_model *det;
static photo photos[NPHOTOS];

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void load_fixture(void)
{
    FILE *f = fopen(FIXTURE, "r");
    char line[1024];
    int np = 0;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f)) {
        char *tok, *save = NULL;
        photo *p;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        assert_true(np < NPHOTOS);
        p = &photos[np++];
        tok = strtok_r(line, " \t\n", &save);
        snprintf(p->file, sizeof(p->file), "%s", tok);
        while ((tok = strtok_r(NULL, " \t\n", &save))) {
            vision_box *b = &p->gt[p->n++];
            assert_int_equal(sscanf(tok, "%f,%f,%f,%f", &b->x1, &b->y1, &b->x2, &b->y2), 4);
        }
    }
    fclose(f);
    assert_int_equal(np, NPHOTOS);
}

static int setup(void **state)
{
    infer_env_opts eo = {.intra_op_threads = 1, .inter_op_threads = 1, .log_level = 3};
    const char *dir = getenv("INFERD_TEST_BLAZEFACE");
    char path[1024];
    err_t e;
    (void)state;

    if (!dir) {
        snprintf(path, sizeof(path), "%s/blazeface-back-256", INFERD_MODELS);
        dir = path;
    }
    if (vision_init(1, &e) || infer_env_new(&eo, &env, &e)) {
        fprintf(stderr, "setup: %s\n", e.msg);
        return -1;
    }
    if (infer_model_load(env, dir, 0, &det, &e)) {
        fprintf(stderr, "setup: cannot load the face detector from %s: %s\n", dir, e.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    infer_model_free(det);
    infer_env_free(env);
    vision_shutdown();
    return 0;
}

/* Counts ground-truth boxes matched at IoU >= 0.3 and detections matching none. */
static void score(const vision_box *gt, int ngt, const vision_face *f, int nf, int *hits, int *fps)
{
    for (int i = 0; i < ngt; i++)
        for (int j = 0; j < nf; j++)
            if (vision_box_iou(&gt[i], &f[j].box) >= 0.3f) {
                (*hits)++;
                break;
            }
    for (int j = 0; j < nf; j++) {
        int ok = 0;
        for (int i = 0; i < ngt && !ok; i++)
            ok = vision_box_iou(&gt[i], &f[j].box) >= 0.3f;
        if (!ok) {
            (*fps)++;
            fprintf(stderr, "  false positive %.0f,%.0f,%.0f,%.0f score %.3f\n", f[j].box.x1,
                    f[j].box.y1, f[j].box.x2, f[j].box.y2, f[j].score);
        }
    }
}

static void test_group_photos(void **state)
{
    int hits = 0, fps = 0, total = 0;
    double ms = 0;
    (void)state;

    load_fixture();
    for (int p = 0; p < NPHOTOS; p++) {
        char path[2048];
        vision_image *img;
        vision_face *f;
        int n, h0 = hits;
        double t0;
        err_t e;

        snprintf(path, sizeof(path), "%s/%s", FACEAPI, photos[p].file);
        assert_int_equal(vision_decode_file(path, NULL, &img, &e), ERR_OK);
        t0 = now_ms();
        assert_int_equal(vision_detect_faces(det, img, NULL, &f, &n, &e), ERR_OK);
        ms += now_ms() - t0;
        score(photos[p].gt, photos[p].n, f, n, &hits, &fps);
        total += photos[p].n;
        fprintf(stderr, "  %s: %d/%d faces, %d detections\n", photos[p].file, hits - h0,
                photos[p].n, n);
        free(f);
        vision_image_free(img);
    }
    fprintf(stderr, "group photos: recall %d/%d, false positives %d, %.1f ms/image\n", hits, total,
            fps, ms / NPHOTOS);
    assert_int_equal(total, 22);
    assert_true(hits >= 21);
    assert_true(fps <= 1);
}

static void test_small_faces_canvas(void **state)
{
    VipsImage *canvas = NULL, *grey;
    vision_image *img;
    vision_face *f;
    vision_box gt[NPHOTOS * MAX_GT];
    int ngt = 0, n, hits = 0, fps = 0;
    size_t len;
    void *pix;
    double t0, ms;
    err_t e;
    (void)state;

    if (photos[0].n == 0)
        load_fixture();
    assert_int_equal(vips_black(&grey, 1920, 1536, "bands", 3, NULL), 0);
    assert_int_equal(vips_linear1(grey, &canvas, 1, 128, "uchar", TRUE, NULL), 0);
    g_object_unref(grey);
    /* 3 x 2 cells of 640 x 768, each photo shrunk to 640 wide, centred vertically. */
    for (int p = 0; p < NPHOTOS; p++) {
        char path[2048];
        VipsImage *t, *next;
        int x0 = (p % 3) * 640, y0;
        double s;

        snprintf(path, sizeof(path), "%s/%s", FACEAPI, photos[p].file);
        assert_int_equal(vips_thumbnail(path, &t, 640, NULL), 0);
        s = 640.0 / 1920.0;
        y0 = (p / 3) * 768 + (768 - vips_image_get_height(t)) / 2;
        assert_int_equal(vips_insert(canvas, t, &next, x0, y0, NULL), 0);
        g_object_unref(t);
        g_object_unref(canvas);
        canvas = next;
        for (int i = 0; i < photos[p].n; i++) {
            vision_box b = photos[p].gt[i];
            gt[ngt].x1 = (float)(b.x1 * s + x0);
            gt[ngt].y1 = (float)(b.y1 * s + y0);
            gt[ngt].x2 = (float)(b.x2 * s + x0);
            gt[ngt].y2 = (float)(b.y2 * s + y0);
            ngt++;
        }
    }
    pix = vips_image_write_to_memory(canvas, &len);
    assert_non_null(pix);
    assert_int_equal(len, (size_t)1920 * 1536 * 3);
    g_object_unref(canvas);
    assert_int_equal(vision_image_new(1920, 1536, &img, &e), 0);
    memcpy(img->rgb, pix, len);
    g_free(pix);

    t0 = now_ms();
    assert_int_equal(vision_detect_faces(det, img, NULL, &f, &n, &e), ERR_OK);
    ms = now_ms() - t0;
    score(gt, ngt, f, n, &hits, &fps);
    fprintf(stderr, "small faces canvas: recall %d/%d, false positives %d, %.1f ms\n", hits, ngt,
            fps, ms);
    assert_true(hits >= 18);
    assert_true(fps <= 1);
    free(f);
    vision_image_free(img);
}

static void test_face_free_photos(void **state)
{
    /* chelsea.png (a cat) is left out: BlazeFace scores its face 0.80. */
    static const char *files[10] = {
        "coffee.png", "rocket.jpg", "motorcycle_left.png",   "horse.png",  "coins.png",
        "brick.png",  "retina.jpg", "hubble_deep_field.jpg", "gravel.png", "logo.png",
    };
    int fps = 0;
    (void)state;

    for (int i = 0; i < 10; i++) {
        char path[2048];
        vision_image *img;
        vision_face *f;
        int n;
        err_t e;

        snprintf(path, sizeof(path), "%s/%s", SKIMAGE, files[i]);
        assert_int_equal(vision_decode_file(path, NULL, &img, &e), ERR_OK);
        assert_int_equal(vision_detect_faces(det, img, NULL, &f, &n, &e), ERR_OK);
        if (n)
            fprintf(stderr, "  %s: %d detections\n", files[i], n);
        score(NULL, 0, f, n, &(int){0}, &fps);
        free(f);
        vision_image_free(img);
    }
    fprintf(stderr, "face-free photos: %d false positives in 10\n", fps);
    assert_true(fps <= 1);
}

static void test_detect_then_align(void **state)
{
    vision_image *img;
    vision_face *f;
    vision_detect_opts o = {.no_tiles = 1};
    uint8_t crop[112 * 112 * 3];
    int n;
    err_t e;
    (void)state;

    assert_int_equal(vision_decode_file(FACEAPI "/sample6.jpg", NULL, &img, &e), ERR_OK);
    assert_int_equal(vision_detect_faces(det, img, &o, &f, &n, &e), ERR_OK);
    assert_true(n >= 4);
    for (int i = 0; i < n; i++) {
        /* Upright frontal faces: the subject's right eye is on the image's left. */
        assert_true(f[i].kps[VISION_KP_RIGHT_EYE][0] < f[i].kps[VISION_KP_LEFT_EYE][0]);
        assert_true(f[i].kps[VISION_KP_NOSE][1] < f[i].kps[VISION_KP_MOUTH][1]);
        assert_true(f[i].box.x1 < f[i].kps[VISION_KP_NOSE][0] &&
                    f[i].kps[VISION_KP_NOSE][0] < f[i].box.x2);
        assert_int_equal(vision_align_face(img, (const float(*)[2])f[i].kps, 112, crop, &e),
                         ERR_OK);
    }
    if (getenv("INFERD_TEST_DUMP")) {
        FILE *out = fopen(getenv("INFERD_TEST_DUMP"), "wb");
        if (out) {
            fprintf(out, "P6\n112 112\n255\n");
            fwrite(crop, 1, sizeof(crop), out);
            fclose(out);
        }
    }
    free(f);
    vision_image_free(img);
}

typedef struct {
    vision_detect_task *t;
    atomic_int *ready;
    int views;
} helper_arg;

/* A helper thread: holds the reference the test took for it, runs views one at a time. */
static void *helper_main(void *arg)
{
    helper_arg *h = arg;
    int n;
    atomic_fetch_add(h->ready, 1);
    while ((n = vision_detect_work(h->t, 1)) > 0)
        h->views += n;
    vision_detect_release(h->t);
    return NULL;
}

static void assert_same_faces(const vision_face *a, int na, const vision_face *b, int nb)
{
    assert_int_equal(na, nb);
    if (na > 0)
        assert_memory_equal(a, b, sizeof(*a) * (size_t)na);
}

/* begin/work/finish with two helper threads: exactly the serial faces, photo by photo. */
static void test_shared_equals_serial(void **state)
{
    int helped = 0, helper_only = 0, photos_run = 0;
    (void)state;

    if (photos[0].n == 0)
        load_fixture();
    for (int p = 0; p < NPHOTOS; p++) {
        for (int round = 0; round < 3; round++) {
            char path[2048];
            vision_image *img;
            vision_face *ref, *got;
            vision_detect_task *t;
            int nref, ngot, nv;
            atomic_int ready;
            pthread_t th[2];
            helper_arg ha[2];
            err_t e;

            snprintf(path, sizeof(path), "%s/%s", FACEAPI, photos[p].file);
            assert_int_equal(vision_decode_file(path, NULL, &img, &e), ERR_OK);
            assert_int_equal(vision_detect_faces(det, img, NULL, &ref, &nref, &e), ERR_OK);
            assert_true(nref > 0);

            assert_int_equal(vision_detect_begin(det, img, NULL, &t, &e), ERR_OK);
            nv = vision_detect_pending(t);
            assert_true(nv > 1);
            atomic_init(&ready, 0);
            for (int i = 0; i < 2; i++) {
                ha[i] = (helper_arg){.t = t, .ready = &ready};
                vision_detect_retain(t);
                assert_int_equal(pthread_create(&th[i], NULL, helper_main, &ha[i]), 0);
            }
            /* Round 0: the owner starts at once; 1: after the helpers are in; 2: the
             * helpers do everything and the owner only merges. */
            if (round >= 1)
                while (atomic_load(&ready) < 2)
                    sched_yield();
            if (round == 2)
                for (int i = 0; i < 2; i++)
                    assert_int_equal(pthread_join(th[i], NULL), 0);
            assert_int_equal(vision_detect_finish(t, &got, &ngot, &e), ERR_OK);
            if (round < 2)
                for (int i = 0; i < 2; i++)
                    assert_int_equal(pthread_join(th[i], NULL), 0);
            if (round == 2) {
                assert_int_equal(ha[0].views + ha[1].views, nv);
                helper_only += nv;
            }
            helped += ha[0].views + ha[1].views;
            assert_same_faces(ref, nref, got, ngot);
            photos_run++;
            free(ref);
            free(got);
            vision_image_free(img);
        }
    }
    fprintf(stderr, "shared detection: %d photo runs identical to serial, %d views by helpers\n",
            photos_run, helped);
    assert_true(helped > helper_only); /* helpers also ran views while the owner did */
}

/* A helper that joins after finish finds nothing: it reads neither the (freed) image nor
 * the model, and its reference alone keeps the task alive. */
static void test_helper_after_finish(void **state)
{
    vision_image *img;
    vision_detect_task *t;
    vision_face *f;
    int n;
    err_t e;
    (void)state;

    assert_int_equal(vision_decode_file(FACEAPI "/sample1.jpg", NULL, &img, &e), ERR_OK);
    assert_int_equal(vision_detect_begin(det, img, NULL, &t, &e), ERR_OK);
    vision_detect_retain(t);
    assert_int_equal(vision_detect_work(t, 2), 2); /* at most max_views */
    assert_int_equal(vision_detect_finish(t, &f, &n, &e), ERR_OK);
    assert_true(n > 0);
    free(f);
    vision_image_free(img); /* under ASan, any later read of it would fail the test */
    assert_int_equal(vision_detect_pending(t), 0);
    assert_int_equal(vision_detect_work(t, 0), 0);
    vision_detect_release(t);
    vision_detect_release(NULL);

    /* begin checks its arguments as vision_detect_faces does. */
    assert_int_equal(vision_detect_begin(det, NULL, NULL, &t, &e), ERR_INVAL);
    assert_null(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_photos),         cmocka_unit_test(test_small_faces_canvas),
        cmocka_unit_test(test_face_free_photos),     cmocka_unit_test(test_detect_then_align),
        cmocka_unit_test(test_shared_equals_serial), cmocka_unit_test(test_helper_after_finish),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
