/*
 * test_faces.c — the default face recogniser (dlib-resnet) on real photos,
 * through the whole pipeline (pipeline_new / pipeline_analyze_*), with the
 * provisioned models:
 *
 *   center     the manifest's embedding_center is what models/dlib-resnet.json
 *              says it is: the mean unit descriptor of the faces of the
 *              face-api group photos with the manifest's crop, recomputed here
 *              (so a change of crop, resampling or model that forgets the
 *              centre fails, and the number stays reproducible);
 *   greyscale  a greyscale photo (one band in the file) gives the same faces
 *              and nearly the same descriptors as the colour original;
 *   people     ../shared/data/faces-dev (20 real crops, 4 people, 5 scenes
 *              each), padded onto 300x300 grey as portraits, with the 22 faces
 *              of the group photos as other people: every face's nearest
 *              neighbour is its own person, and people_assign at the model's
 *              default distance and min_faces gives each person a cluster,
 *              purity >= 0.95 and >= 90 % of the faces assigned. Skipped (with
 *              a message) where ../shared is not checked out beside the
 *              repository; CI has it. bench/faces measures the same through
 *              `inferd serve` and prints mobileface beside it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vips/vips.h>

#include "index/people.h"
#include "pipeline/analyze.h"
#include "util/clock.h"

#define FACEAPI INFERD_TESTDATA "/faceapi/"
#define FACES_DEV INFERD_SRCDIR "/../shared/data/faces-dev"
#define MODEL PIPELINE_DEFAULT_FACE_EMBEDDER
#define MAXF 64
#define DIM 128

static const char *models_dir(void)
{
    const char *d = getenv("INFERD_MODELS_DIR");
    return d && *d ? d : INFERD_MODELS;
}

static pipeline *open_pipeline(const char *dir)
{
    pipeline_opts po = {0};
    po.models_dir = dir;
    po.image_embedder = "";
    pipeline *pl = NULL;
    err_t e = {0};
    if (pipeline_new(&po, &pl, &e) != ERR_OK)
        fail_msg("pipeline_new(%s): %s (run `make models`)", dir, e.msg);
    return pl;
}

static analysis *run_file(pipeline *pl, const char *path)
{
    analysis *a = NULL;
    err_t e = {0};
    if (pipeline_analyze_file(pl, path, PIPELINE_FACES, &a, &e) != ERR_OK)
        fail_msg("analyze %s: %s", path, e.msg);
    return a;
}

static analysis *run_vips(pipeline *pl, VipsImage *img)
{
    void *buf = NULL;
    size_t len = 0;
    if (vips_pngsave_buffer(img, &buf, &len, "compression", 1, NULL))
        fail_msg("encode: %s", vips_error_buffer());
    analysis *a = NULL;
    err_t e = {0};
    if (pipeline_analyze_buffer(pl, buf, len, PIPELINE_FACES, &a, &e) != ERR_OK)
        fail_msg("analyze: %s", e.msg);
    g_free(buf);
    return a;
}

static double dot(const float *a, const float *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* A temp copy of the models dir whose MODEL manifest has no embedding_center. */
static void uncentred_models(char *tmp, size_t cap, json_t **center)
{
    snprintf(tmp, cap, "/tmp/inferd-test-faces-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    char src[600], dst[700], cmd[2000];
    snprintf(src, sizeof src, "%s/%s/manifest.json", models_dir(), MODEL);
    json_error_t je;
    json_t *man = json_load_file(src, 0, &je);
    if (man == NULL)
        fail_msg("%s: %s (run `make models`)", src, je.text);
    *center = json_incref(json_object_get(man, "embedding_center"));
    assert_non_null(*center);
    json_object_del(man, "embedding_center");
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s/%s && ln -s %s/%s/model.onnx %s/%s/model.onnx && "
             "ln -s %s/" PIPELINE_DEFAULT_DETECTOR " %s/" PIPELINE_DEFAULT_DETECTOR,
             tmp, MODEL, models_dir(), MODEL, tmp, MODEL, models_dir(), tmp);
    assert_int_equal(system(cmd), 0);
    snprintf(dst, sizeof dst, "%s/%s/manifest.json", tmp, MODEL);
    assert_int_equal(json_dump_file(man, dst, JSON_REAL_PRECISION(9)), 0);
    json_decref(man);
}

static void test_center_is_reproducible(void **state)
{
    (void)state;
    char tmp[256];
    json_t *center = NULL;
    uncentred_models(tmp, sizeof tmp, &center);
    pipeline *pl = open_pipeline(tmp);
    double mean[DIM] = {0};
    int n = 0;
    for (int ph = 1; ph <= 6; ph++) {
        char path[512];
        snprintf(path, sizeof path, FACEAPI "sample%d.jpg", ph);
        analysis *a = run_file(pl, path);
        assert_int_equal(a->face_dim, DIM);
        for (int i = 0; i < a->nfaces; i++, n++)
            for (int k = 0; k < DIM; k++)
                mean[k] += a->faces[i].embedding[k];
        analysis_free(a);
    }
    pipeline_free(pl);
    double cs = 0, na = 0, nb = 0, maxd = 0;
    for (int k = 0; k < DIM; k++) {
        double want = json_real_value(json_array_get(center, (size_t)k));
        double got = mean[k] / n;
        cs += want * got;
        na += want * want;
        nb += got * got;
        maxd = fabs(want - got) > maxd ? fabs(want - got) : maxd;
    }
    cs /= sqrt(na * nb);
    printf("  center: %d faces of the group photos; cosine to the manifest's %.6f, max |diff| "
           "%.2e (norm %.4f)\n",
           n, cs, maxd, sqrt(nb));
    assert_int_equal(n, 22);
    assert_true(cs >= 0.9999);
    assert_true(maxd < 2e-3);
    json_decref(center);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    assert_int_equal(system(cmd), 0);
}

static void test_greyscale(void **state)
{
    (void)state;
    pipeline *pl = open_pipeline(models_dir());
    VipsImage *rgb = vips_image_new_from_file(FACEAPI "sample1.jpg", NULL), *grey = NULL,
              *grey3 = NULL;
    if (rgb == NULL || vips_colourspace(rgb, &grey, VIPS_INTERPRETATION_B_W, NULL) ||
        vips_colourspace(grey, &grey3, VIPS_INTERPRETATION_sRGB, NULL))
        fail_msg("greyscale: %s", vips_error_buffer());
    assert_int_equal(vips_image_get_bands(grey), 1);
    /* The same grey pixels as three equal bands must give the same faces; the colour
     * original stays the same person (cosine well above the 0.60 of the default
     * people distance). */
    analysis *a = run_vips(pl, grey3), *g = run_vips(pl, grey), *c = run_vips(pl, rgb);
    printf("  greyscale sample1: %d faces (%d from its 3-band copy, %d from the colour photo)\n",
           g->nfaces, a->nfaces, c->nfaces);
    assert_int_equal(g->nfaces, a->nfaces);
    assert_int_equal(g->nfaces, c->nfaces);
    assert_true(g->nfaces >= 3);
    for (int i = 0; i < g->nfaces; i++) {
        double same = dot(g->faces[i].embedding, a->faces[i].embedding, g->face_dim);
        double col = dot(g->faces[i].embedding, c->faces[i].embedding, g->face_dim);
        printf("    face %d: cosine %.6f to the 3-band copy, %.4f to the colour photo\n", i, same,
               col);
        assert_true(same >= 0.9999);
        assert_true(col >= 0.8);
    }
    analysis_free(c);
    analysis_free(a);
    analysis_free(g);
    g_object_unref(rgb);
    g_object_unref(grey);
    g_object_unref(grey3);
    pipeline_free(pl);
}

typedef struct {
    char who[64];
    float v[DIM];
} face_row;

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_people_on_real_photos(void **state)
{
    (void)state;
    DIR *d = opendir(FACES_DEV);
    if (d == NULL) {
        printf("  %s not found: ../shared is not checked out beside the repository; "
               "skipping (CI has it)\n",
               FACES_DEV);
        skip();
    }
    char *names[64];
    int nn = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && nn < 64)
        if (strstr(de->d_name, ".png") != NULL)
            names[nn++] = strdup(de->d_name);
    closedir(d);
    qsort(names, (size_t)nn, sizeof names[0], cmp_name);
    assert_int_equal(nn, 20);

    pipeline *pl = open_pipeline(models_dir());
    static face_row rows[MAXF];
    int n = 0, ndev = 0, missed = 0;
    for (int i = 0; i < nn; i++) {
        char path[600];
        snprintf(path, sizeof path, FACES_DEV "/%s", names[i]);
        VipsImage *crop = vips_image_new_from_file(path, NULL), *pad = NULL;
        double grey[1] = {128};
        VipsArrayDouble *bg = vips_array_double_new(grey, 1);
        int bad = crop == NULL || vips_gravity(crop, &pad, VIPS_COMPASS_DIRECTION_CENTRE, 300, 300,
                                               "extend", VIPS_EXTEND_BACKGROUND, "background", bg,
                                               NULL);
        vips_area_unref(VIPS_AREA(bg));
        if (bad)
            fail_msg("pad %s: %s", path, vips_error_buffer());
        analysis *a = run_vips(pl, pad);
        if (a->nfaces == 0) {
            missed++;
        } else {
            /* The best-scored face is the portrait's (faces come sorted by score). */
            snprintf(rows[n].who, sizeof rows[n].who, "%.*s",
                     (int)strcspn(names[i], "0123456789"), names[i]);
            memcpy(rows[n].v, a->faces[0].embedding, sizeof rows[n].v);
            n++;
            ndev++;
        }
        analysis_free(a);
        g_object_unref(crop);
        g_object_unref(pad);
        free(names[i]);
    }
    for (int ph = 1; ph <= 6; ph++) {
        char path[512];
        snprintf(path, sizeof path, FACEAPI "sample%d.jpg", ph);
        analysis *a = run_file(pl, path);
        for (int i = 0; i < a->nfaces && n < MAXF; i++, n++) {
            snprintf(rows[n].who, sizeof rows[n].who, "other:%d:%d", ph, i);
            memcpy(rows[n].v, a->faces[i].embedding, sizeof rows[n].v);
        }
        analysis_free(a);
    }
    pipeline_free(pl);
    printf("  faces-dev: %d of 20 crops with a face, %d faces of other people\n", ndev, n - ndev);
    assert_int_equal(missed, 0);

    int nn_ok = 0;
    for (int i = 0; i < ndev; i++) {
        int best = -1;
        double bs = -2;
        for (int j = 0; j < n; j++) {
            double s = j == i ? -3 : dot(rows[i].v, rows[j].v, DIM);
            if (s > bs) {
                bs = s;
                best = j;
            }
        }
        nn_ok += strcmp(rows[best].who, rows[i].who) == 0;
    }
    printf("  nearest neighbour is the same person: %d/%d\n", nn_ok, ndev);
    assert_int_equal(nn_ok, ndev);

    float *v = malloc((size_t)n * DIM * sizeof *v);
    int64_t *p = calloc((size_t)n, sizeof *p);
    for (int i = 0; i < n; i++)
        memcpy(v + (size_t)i * DIM, rows[i].v, sizeof rows[i].v);
    people_opts o = {.max_distance = people_default_max_distance(MODEL)};
    int nnew = 0;
    assert_int_equal(people_assign(v, (size_t)n, DIM, &o, p, &nnew), ERR_OK);
    /* Majority identity per cluster; purity over every assigned face. */
    int pure = 0, in_people = 0, assigned = 0, owners = 0;
    char owned[8][64];
    for (int c = 1; c <= nnew; c++) {
        int best = 0;
        const char *top = NULL;
        for (int i = 0; i < n; i++) {
            if (p[i] != -c)
                continue;
            int cnt = 0;
            for (int j = 0; j < n; j++)
                cnt += p[j] == -c && strcmp(rows[j].who, rows[i].who) == 0;
            if (cnt > best) {
                best = cnt;
                top = rows[i].who;
            }
        }
        for (int i = 0; i < n; i++)
            in_people += p[i] == -c;
        pure += best;
        int dup = 0;
        for (int k = 0; k < owners; k++)
            dup |= strcmp(owned[k], top) == 0;
        if (top != NULL && strncmp(top, "other:", 6) != 0 && !dup && owners < 8)
            snprintf(owned[owners++], sizeof owned[0], "%.63s", top);
    }
    for (int i = 0; i < ndev; i++)
        assigned += p[i] != 0;
    double purity = in_people ? (double)pure / in_people : 1;
    printf("  people (%s, max_distance %.2f, min_faces %d): %d people, %d of 4 identities own "
           "one, purity %.3f, %d/%d faces assigned\n",
           MODEL, (double)o.max_distance, PEOPLE_DEFAULT_MIN_FACES, nnew, owners, purity,
           assigned, ndev);
    assert_int_equal(owners, 4);
    assert_true(purity >= 0.95);
    assert_true(assigned * 10 >= ndev * 9);
    free(v);
    free(p);
}

/*
 * A model run past its deadline is terminated (ORT's RunOptionsSetTerminate
 * from the env's watchdog): a batch of 64 faces that takes T ms without a
 * deadline fails with ERR_TIMEOUT well before T with a 5 ms one.
 */
static void test_run_deadline(void **state)
{
    (void)state;
    infer_env *env = NULL;
    infer_model *m = NULL;
    err_t e = {0};
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", models_dir(), MODEL);
    infer_env_opts eo = {.intra_op_threads = 1};
    assert_int_equal(infer_env_new(&eo, &env, &e), ERR_OK);
    if (infer_model_load(env, dir, 0, &m, &e) != ERR_OK)
        fail_msg("%s: %s", dir, e.msg);
    enum { N = 64 };
    size_t per = infer_input_size(m);
    float *in = calloc((size_t)N * per, sizeof *in), *out = calloc((size_t)N * DIM, sizeof *out);
    infer_output o = {.role = "embedding", .data = out, .cap = (size_t)N * DIM};
    int64_t t0 = clock_mono_ms();
    assert_int_equal(infer_run_until(m, in, N, &o, 1, 0, &e), ERR_OK);
    int64_t full = clock_mono_ms() - t0;
    t0 = clock_mono_ms();
    int rc = infer_run_until(m, in, N, &o, 1, clock_mono_ms() + 5, &e);
    int64_t cut = clock_mono_ms() - t0;
    printf("  %d faces: %lld ms to the end; with a 5 ms deadline %s after %lld ms (%s)\n", N,
           (long long)full, err_name(rc), (long long)cut, e.msg);
    assert_int_equal(rc, ERR_TIMEOUT);
    assert_true(cut < full);
    /* After the deadline: refused at once; and the model still runs without one. */
    assert_int_equal(infer_run_until(m, in, 1, &o, 1, clock_mono_ms() - 1, &e), ERR_TIMEOUT);
    assert_int_equal(infer_run_until(m, in, 1, &o, 1, 0, &e), ERR_OK);
    free(in);
    free(out);
    infer_model_free(m);
    infer_env_free(env);
}

int main(void)
{
    if (VIPS_INIT("test_faces"))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_center_is_reproducible),
        cmocka_unit_test(test_greyscale),
        cmocka_unit_test(test_people_on_real_photos),
        cmocka_unit_test(test_run_deadline),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    vision_shutdown(); /* once: libvips cannot start again after it */
    return rc;
}
