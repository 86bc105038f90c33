/*
 * test_search.c — the search service (src/index/search.c) over a real SQLite
 * store: vectors loaded at start, kept current by the outbox feed (commits,
 * re-analysis, deletion), image and face queries with filters, limits and
 * scores, and concurrent searches while the feed thread applies commits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "index/search.h"
#include "store/store.h"

#define DIM 8

typedef struct {
    char dir[256];
    char url[400];
    store *st;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/inferd-search-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->url, sizeof f->url, "sqlite:%s/s.db", f->dir);
    err_t e = {0};
    assert_int_equal(store_open(f->url, NULL, &f->st, &e), ERR_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    store_close(f->st);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* A unit vector pointing mostly along axis `axis`, tilted by `tilt` along axis+1. */
static void unit_vec(float *v, int axis, float tilt)
{
    memset(v, 0, DIM * sizeof *v);
    v[axis % DIM] = 1.0f;
    v[(axis + 1) % DIM] = tilt;
    float n = sqrtf(1.0f + tilt * tilt);
    for (int i = 0; i < DIM; i++)
        v[i] /= n;
}

/* Runs one job for `asset` to done with an image vector and `nfaces` face vectors. */
static void commit_asset(store *st, const char *asset, const char *payload, int axis, float tilt,
                         int nfaces, int face_axis)
{
    err_t e = {0};
    job_spec sp = {.asset_id = asset,
                   .tasks = JOB_TASK_ALL,
                   .source = "{\"path\":\"/x.jpg\"}",
                   .payload = payload};
    job j;
    assert_int_equal(store_job_enqueue(st, &sp, &j, NULL, &e), ERR_OK);
    job_clear(&j);
    job *cl = NULL;
    int n = 0;
    assert_int_equal(store_job_claim(st, "w", 1, 30000, &cl, &n, &e), ERR_OK);
    assert_int_equal(n, 1);
    float img[DIM];
    unit_vec(img, axis, tilt);
    store_face faces[4];
    float fv[4][DIM];
    memset(faces, 0, sizeof faces);
    for (int i = 0; i < nfaces; i++) {
        unit_vec(fv[i], face_axis + i, 0.05f);
        faces[i].vector = fv[i];
        faces[i].score = 0.9f;
        faces[i].box[2] = faces[i].box[3] = 10;
    }
    store_result r = {.width = 10,
                      .height = 10,
                      .image_model = "emb",
                      .image_dim = DIM,
                      .image_norm = 1,
                      .image_vector = img,
                      .detector_model = "det",
                      .face_model = "face",
                      .face_dim = DIM,
                      .nfaces = nfaces,
                      .faces = faces};
    assert_int_equal(store_job_complete(st, &cl[0], "w", &r, &e), ERR_OK);
    job_array_free(cl, n);
}

static json_t *images(search *s, const char *asset, const float *vec, int limit, float min_score,
                      const char *filter)
{
    json_t *flt = filter != NULL ? json_loads(filter, 0, NULL) : NULL;
    search_image_query q = {.asset_id = asset,
                            .vector = vec,
                            .dim = DIM,
                            .limit = limit,
                            .min_score = min_score,
                            .filter = flt};
    json_t *out = NULL;
    err_t e = {0};
    int rc = search_images(s, &q, &out, &e);
    json_decref(flt);
    if (rc != ERR_OK)
        return NULL;
    return out;
}

static const char *hit_asset(json_t *arr, size_t i)
{
    return json_string_value(json_object_get(json_array_get(arr, i), "asset_id"));
}

static void test_load_and_query(void **state)
{
    fixture *f = *state;
    commit_asset(f->st, "a", "{\"album\":\"x\"}", 0, 0.0f, 2, 0);
    commit_asset(f->st, "a-copy", "{\"album\":\"y\"}", 0, 0.1f, 0, 0);
    commit_asset(f->st, "b", "{\"album\":\"x\"}", 3, 0.0f, 1, 4);
    commit_asset(f->st, "c", NULL, 5, 0.3f, 0, 0);
    search_opts o = {.st = f->st};
    search *s = NULL;
    err_t e = {0};
    assert_int_equal(search_new(&o, &s, &e), ERR_OK);
    assert_string_equal(search_image_model(s), "emb");

    /* By asset: itself excluded, its near copy first. */
    json_t *r = images(s, "a", NULL, 10, -2, NULL);
    assert_non_null(r);
    assert_int_equal(json_array_size(r), 3);
    assert_string_equal(hit_asset(r, 0), "a-copy");
    double s0 = json_real_value(json_object_get(json_array_get(r, 0), "score"));
    assert_true(s0 > 0.99);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(r, 0), "payload"), "album")),
                        "y");
    json_decref(r);
    /* min_score and limit. */
    r = images(s, "a", NULL, 10, 0.9f, NULL);
    assert_int_equal(json_array_size(r), 1);
    json_decref(r);
    float q[DIM];
    unit_vec(q, 3, 0.0f);
    r = images(s, NULL, q, 1, -2, NULL);
    assert_int_equal(json_array_size(r), 1);
    assert_string_equal(hit_asset(r, 0), "b");
    json_decref(r);
    /* Filter on payload equality. */
    unit_vec(q, 0, 0.0f);
    r = images(s, NULL, q, 10, -2, "{\"album\":\"x\"}");
    assert_int_equal(json_array_size(r), 2);
    assert_string_equal(hit_asset(r, 0), "a");
    assert_string_equal(hit_asset(r, 1), "b");
    json_decref(r);
    /* Unknown asset, wrong dimension, unknown model. */
    assert_null(images(s, "nope", NULL, 5, -2, NULL));
    search_image_query bad = {.vector = q, .dim = DIM - 1, .limit = 5, .min_score = -2};
    json_t *out = NULL;
    assert_int_equal(search_images(s, &bad, &out, &e), ERR_INVAL);
    bad.dim = DIM;
    bad.model = "other";
    assert_int_equal(search_images(s, &bad, &out, &e), ERR_NOENT);

    /* Faces: by face id (itself excluded) and by vector. */
    store_vec *fv = NULL;
    int nf = 0;
    assert_int_equal(store_vectors_read(f->st, STORE_VEC_FACE, "a", NULL, 10, &fv, &nf, &e),
                     ERR_OK);
    assert_int_equal(nf, 2);
    search_face_query fq = {.face_id = fv[0].face_id, .limit = 5, .min_score = -2};
    assert_int_equal(search_faces(s, &fq, &out, &e), ERR_OK);
    assert_int_equal(json_array_size(out), 2);
    for (size_t i = 0; i < json_array_size(out); i++)
        assert_int_not_equal(json_integer_value(json_object_get(json_array_get(out, i), "face_id")),
                             fv[0].face_id);
    json_decref(out);
    search_face_query fq2 = {.vector = fv[1].vector, .dim = DIM, .limit = 1, .min_score = -2};
    assert_int_equal(search_faces(s, &fq2, &out, &e), ERR_OK);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(out, 0), "face_id")),
                     fv[1].face_id);
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 0), "asset_id")),
                        "a");
    json_decref(out);
    store_vec_array_free(fv, nf);
    search_free(s);
}

/* Commits, re-analysis and deletion after start reach the index through the outbox. */
static void test_feed(void **state)
{
    fixture *f = *state;
    commit_asset(f->st, "a", NULL, 0, 0.0f, 1, 0);
    search_opts o = {.st = f->st};
    search *s = NULL;
    err_t e = {0};
    assert_int_equal(search_new(&o, &s, &e), ERR_OK);
    float q[DIM];
    unit_vec(q, 2, 0.0f);
    json_t *r = images(s, NULL, q, 10, 0.5f, NULL);
    assert_int_equal(json_array_size(r), 0);
    json_decref(r);
    commit_asset(f->st, "new", NULL, 2, 0.0f, 2, 2);
    assert_int_equal(search_sync(s, &e), ERR_OK);
    r = images(s, NULL, q, 10, 0.5f, NULL);
    assert_int_equal(json_array_size(r), 1);
    assert_string_equal(hit_asset(r, 0), "new");
    json_decref(r);
    json_t *st = search_stats(s);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "faces"), "face")), 3);
    json_decref(st);
    /* Re-analysed: the image moves, faces are replaced (old ids gone). */
    commit_asset(f->st, "new", NULL, 6, 0.0f, 1, 6);
    assert_int_equal(search_sync(s, &e), ERR_OK);
    r = images(s, NULL, q, 10, 0.5f, NULL);
    assert_int_equal(json_array_size(r), 0);
    json_decref(r);
    st = search_stats(s);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "faces"), "face")), 2);
    json_decref(st);
    /* Deleted: gone from images and faces. */
    assert_int_equal(store_asset_delete(f->st, "new", &e), ERR_OK);
    assert_int_equal(search_sync(s, &e), ERR_OK);
    st = search_stats(s);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "faces"), "face")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "images"), "emb")), 1);
    json_decref(st);
    unit_vec(q, 6, 0.0f);
    r = images(s, NULL, q, 10, 0.5f, NULL);
    assert_int_equal(json_array_size(r), 0);
    json_decref(r);
    search_free(s);
}

typedef struct {
    search *s;
    int stop;
    int errors;
} reader_arg;

static void *reader(void *arg)
{
    reader_arg *ra = arg;
    float q[DIM];
    unit_vec(q, 1, 0.2f);
    for (int i = 0; i < 2000 && !__atomic_load_n(&ra->stop, __ATOMIC_ACQUIRE); i++) {
        json_t *r = images(ra->s, NULL, q, 5, -2, NULL);
        if (r == NULL)
            ra->errors++;
        json_decref(r);
    }
    return NULL;
}

/* The feed thread applies commits while other threads search. */
static void test_thread_concurrent(void **state)
{
    fixture *f = *state;
    commit_asset(f->st, "seed", NULL, 1, 0.0f, 0, 0);
    search_opts o = {.st = f->st, .poll_ms = 20};
    search *s = NULL;
    err_t e = {0};
    assert_int_equal(search_new(&o, &s, &e), ERR_OK);
    assert_int_equal(search_start(s, &e), ERR_OK);
    reader_arg ra = {.s = s};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, reader, &ra), 0);
    char name[32];
    for (int i = 0; i < 30; i++) {
        snprintf(name, sizeof name, "x%d", i);
        commit_asset(f->st, name, NULL, i, 0.1f, 1, i);
    }
    /* Wait (bounded) for the thread to catch up. */
    int seen = 0;
    for (int i = 0; i < 300 && seen != 31; i++) {
        json_t *st = search_stats(s);
        seen = (int)json_integer_value(json_object_get(json_object_get(st, "images"), "emb"));
        json_decref(st);
        usleep(10000);
    }
    __atomic_store_n(&ra.stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(seen, 31);
    assert_int_equal(ra.errors, 0);
    search_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load_and_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_feed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thread_concurrent, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
