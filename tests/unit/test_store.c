/*
 * tests/unit/test_store.c — the conformance suite of store.h: every backend
 * must pass it unchanged. It uses store.h only, except the fault tests that
 * need a raw SQLite or libpq connection, each skipped for the other backend.
 *
 * The suite runs once per store URL in INFERD_TEST_STORE_URLS (separated by
 * spaces or commas); the default is a fresh SQLite file per test in a
 * temporary directory (tests/pg/with_pg.sh adds a throwaway PostgreSQL with
 * one schema per test). Each test opens a store of its own: "{n}" in a URL is
 * replaced by a token unique to the test (t<pid>_<k>), so that a backend can
 * give each test a fresh database or schema, e.g.
 *   INFERD_TEST_STORE_URLS='sqlite:/tmp/a-{n}.db postgres://localhost/t?schema={n}'
 * A URL without "{n}" is shared by every test and must be empty at the start.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "store/store.h"
#include "testsupport.h"

static const char *g_template; /* URL of the current run, maybe with "{n}" */

typedef struct {
    char url[512];
    store *s;
} fixture;

static const char *const SRC = "{\"path\":\"/media/a.jpg\"}";

/* --- fixture ---------------------------------------------------------------- */

/* A URL of the current run for one store, "{n}" made unique (t<pid>_<k>). */
static void expand_url(char *out, size_t size)
{
    ts_store_url_expand(g_template, "t", out, size);
}

/*
 * A raw libpq connection to the PostgreSQL store at `url`, on its schema:
 * the "schema" parameter is ours, not libpq's, so it is taken off the URL
 * and set as the search path.
 */
static PGconn *pg_raw(const char *url)
{
    char conninfo[512], schema[80] = "";
    snprintf(conninfo, sizeof conninfo, "%s", url);
    char *q = strstr(conninfo, "schema=");
    if (q != NULL) {
        size_t n = strcspn(q + 7, "&");
        snprintf(schema, sizeof schema, "%.*s", (int)n, q + 7);
        memmove(q, q + 7 + n + (q[7 + n] == '&'), strlen(q + 7 + n + (q[7 + n] == '&')) + 1);
        size_t len = strlen(conninfo);
        while (len > 0 && (conninfo[len - 1] == '?' || conninfo[len - 1] == '&'))
            conninfo[--len] = '\0';
    }
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect %s: %s", conninfo, PQerrorMessage(c));
    if (schema[0] != '\0') {
        char sql[128];
        snprintf(sql, sizeof sql, "SET search_path TO \"%s\"", schema);
        PQclear(PQexec(c, sql));
    }
    return c;
}

static store *open_or_fail(const char *url, int busy_ms)
{
    store_opts o = {.busy_timeout_ms = busy_ms};
    err_t e = {0};
    store *s = NULL;
    int rc = store_open(url, &o, &s, &e);
    if (rc != ERR_OK)
        fail_msg("store_open(%s): %s", url, e.msg);
    return s;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    expand_url(f->url, sizeof f->url);
    ts_store_url_remove_sqlite(f->url);
    f->s = open_or_fail(f->url, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    store_close(f->s);
    ts_store_url_remove_sqlite(f->url);
    free(f);
    return 0;
}

/* --- helpers -------------------------------------------------------------- */

static int64_t enqueue_full(store *s, const char *asset, unsigned tasks, int prio, int max_attempts,
                            const char *payload, int *existing)
{
    job_spec sp = {.asset_id = asset,
                   .tasks = tasks,
                   .priority = prio,
                   .max_attempts = max_attempts,
                   .source = SRC,
                   .payload = payload};
    job j;
    err_t e = {0};
    int ex = -1;
    int rc = store_job_enqueue(s, &sp, &j, &ex, &e);
    if (rc != ERR_OK)
        fail_msg("enqueue %s: %s", asset, e.msg);
    if (existing != NULL)
        *existing = ex;
    int64_t id = j.id;
    job_clear(&j);
    return id;
}

static int64_t enqueue(store *s, const char *asset, int prio)
{
    return enqueue_full(s, asset, JOB_TASK_ALL, prio, 0, NULL, NULL);
}

/* Claims exactly one job (fails the test otherwise) into `out`. */
static void claim_one(store *s, const char *owner, int64_t lease_ms, job *out)
{
    job *arr = NULL;
    int n = -1;
    err_t e = {0};
    int rc = store_job_claim(s, owner, 1, lease_ms, &arr, &n, &e);
    if (rc != ERR_OK)
        fail_msg("claim: %s", e.msg);
    assert_int_equal(n, 1);
    *out = arr[0];
    free(arr); /* the strings now belong to *out */
}

static int claim_count(store *s, const char *owner, int max)
{
    job *arr = NULL;
    int n = -1;
    assert_int_equal(store_job_claim(s, owner, max, 30000, &arr, &n, NULL), ERR_OK);
    job_array_free(arr, n);
    return n;
}

static job get_job(store *s, int64_t id)
{
    job j;
    err_t e = {0};
    if (store_job_get(s, id, &j, &e) != ERR_OK)
        fail_msg("get %lld: %s", (long long)id, e.msg);
    return j;
}

static job_state state_of(store *s, int64_t id)
{
    job j = get_job(s, id);
    job_state st = j.state;
    job_clear(&j);
    return st;
}

static int outbox_count(store *s)
{
    outbox_event *ev = NULL;
    int n = 0;
    assert_int_equal(store_outbox_read(s, 0, 0, 1000, &ev, &n, NULL), ERR_OK);
    outbox_event_array_free(ev, n);
    return n;
}

/* The single outbox event of `job_id` as JSON (fails unless exactly one). */
static json_t *event_of(store *s, int64_t job_id)
{
    outbox_event *ev = NULL;
    int n = 0;
    assert_int_equal(store_outbox_read(s, 0, 0, 1000, &ev, &n, NULL), ERR_OK);
    json_t *found = NULL;
    int count = 0;
    for (int i = 0; i < n; i++) {
        if (ev[i].job_id != job_id)
            continue;
        count++;
        json_decref(found);
        found = json_loads(ev[i].payload, 0, NULL);
        assert_non_null(found);
        assert_int_equal(json_integer_value(json_object_get(found, "event_id")), ev[i].id);
        assert_string_equal(json_string_value(json_object_get(found, "asset_id")), ev[i].asset_id);
    }
    outbox_event_array_free(ev, n);
    assert_int_equal(count, 1);
    return found;
}

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

/* A result with a 4-D image embedding and `nfaces` faces with 3-D vectors. */
typedef struct {
    float img[4];
    store_face faces[4];
    float fvec[4][3];
    store_result r;
} result_buf;

static const store_result *make_result(result_buf *b, const char *image_model, int nfaces)
{
    memset(b, 0, sizeof *b);
    b->img[0] = 0.5f;
    b->img[1] = -0.5f;
    b->img[2] = 0.5f;
    b->img[3] = -0.5f;
    for (int i = 0; i < nfaces; i++) {
        store_face *f = &b->faces[i];
        f->box[0] = 10.0f * (float)i;
        f->box[1] = 20.0f;
        f->box[2] = 10.0f * (float)i + 8.0f;
        f->box[3] = 30.0f;
        f->score = 0.9f - 0.1f * (float)i;
        for (int k = 0; k < 6; k++) {
            f->kps[k][0] = (float)k + 0.25f;
            f->kps[k][1] = (float)k * 2.0f;
        }
        b->fvec[i][0] = 1.0f;
        b->fvec[i][1] = (float)i / 3.0f;
        b->fvec[i][2] = -0.125f;
        f->vector = b->fvec[i];
    }
    b->r.width = 640;
    b->r.height = 480;
    b->r.image_model = image_model;
    b->r.image_dim = 4;
    b->r.image_norm = 1.0f;
    b->r.image_vector = b->img;
    b->r.nsfw = "{\"neutral\":0.9,\"porn\":0.01}";
    b->r.detector_model = "blazeface";
    b->r.face_model = "mobileface";
    b->r.face_dim = 3;
    b->r.nfaces = nfaces;
    b->r.faces = b->faces;
    b->r.timings = "{\"decode\":1.5,\"total\":9}";
    return &b->r;
}

static void complete_ok(store *s, const job *j, const char *owner, const store_result *r)
{
    err_t e = {0};
    if (store_job_complete(s, j, owner, r, &e) != ERR_OK)
        fail_msg("complete job %lld: %s", (long long)j->id, e.msg);
}

/*
 * Runs one job for `asset` (all tasks, `payload`) to done as worker "w":
 * results of model "clip" with `nfaces` faces, built in *rb (which the
 * caller may compare against). Returns the job id.
 */
static int64_t finish_asset_into(store *s, const char *asset, const char *payload, int nfaces,
                                 result_buf *rb)
{
    job j;
    int64_t id = enqueue_full(s, asset, JOB_TASK_ALL, 0, 0, payload, NULL);
    claim_one(s, "w", 30000, &j);
    complete_ok(s, &j, "w", make_result(rb, "clip", nfaces));
    job_clear(&j);
    return id;
}

static int64_t finish_asset(store *s, const char *asset, const char *payload, int nfaces)
{
    result_buf rb;
    return finish_asset_into(s, asset, payload, nfaces, &rb);
}

/* Runs one job for `asset` to done as worker "w" with an empty result; returns its id. */
static int64_t finish_empty(store *s, const char *asset)
{
    job j;
    int64_t id = enqueue(s, asset, 0);
    claim_one(s, "w", 30000, &j);
    complete_ok(s, &j, "w", &(store_result){.timings = NULL});
    job_clear(&j);
    return id;
}

/* --- tests: open, names ------------------------------------------------------ */

/* State names round-trip; unknown names and values are refused. */
static void test_state_names(void **state)
{
    (void)state;
    for (int i = JOB_QUEUED; i <= JOB_CANCELLED; i++)
        assert_int_equal(job_state_parse(job_state_name((job_state)i)), i);
    assert_null(job_state_name((job_state)7));
    assert_int_equal(job_state_parse("bogus"), -1);
    assert_int_equal(job_state_parse(NULL), -1);
    job_clear(NULL);
    job_array_free(NULL, 0);
    outbox_event_array_free(NULL, 0);
    store_close(NULL);
}

/* Reopening migrates nothing twice; unknown schemes are refused with a clear code. */
static void test_open_reopen(void **state)
{
    fixture *f = *state;
    assert_non_null(store_backend(f->s));
    store_close(f->s);
    f->s = open_or_fail(f->url, 0);
    store_close(f->s);
    f->s = open_or_fail(f->url, 0);
    store *t = NULL;
    err_t e = {0};
    assert_int_equal(store_open("ftp://x/y", NULL, &t, &e), ERR_UNSUPPORTED);
    assert_null(t);
    assert_int_equal(store_open("", NULL, &t, &e), ERR_INVAL);
}

/* --- tests: jobs ------------------------------------------------------------ */

/* Enqueue stores what was asked; get returns it; bad specs are ERR_INVAL. */
static void test_enqueue_get(void **state)
{
    fixture *f = *state;
    int ex = -1;
    int64_t t0 = store_now_ms();
    int64_t id = enqueue_full(f->s, "asset-1", JOB_TASK_FACES, 7, 0, "{\"album\":\"x\"}", &ex);
    assert_true(id > 0);
    assert_int_equal(ex, 0);
    job j = get_job(f->s, id);
    assert_int_equal(j.id, id);
    assert_string_equal(j.asset_id, "asset-1");
    assert_int_equal(j.state, JOB_QUEUED);
    assert_int_equal(j.priority, 7);
    assert_int_equal(j.tasks, JOB_TASK_FACES);
    assert_int_equal(j.attempts, 0);
    assert_int_equal(j.max_attempts, 3);
    json_t *src = json_loads(j.source, 0, NULL);
    assert_string_equal(jstr(src, "path"), "/media/a.jpg");
    json_decref(src);
    assert_non_null(j.payload);
    assert_null(j.error);
    assert_string_equal(j.lease_owner, "");
    assert_true(j.created_ms >= t0 - 1000 && j.created_ms <= store_now_ms() + 1000);
    assert_int_equal(j.cancel_requested, 0);

    json_t *o = job_to_json(&j);
    assert_int_equal(json_integer_value(json_object_get(o, "id")), id);
    assert_string_equal(jstr(o, "state"), "queued");
    assert_string_equal(jstr(json_object_get(o, "payload"), "album"), "x");
    assert_true(json_is_null(json_object_get(o, "error")));
    assert_true(json_is_null(json_object_get(o, "finished_at")));
    assert_string_equal(json_string_value(json_array_get(json_object_get(o, "tasks"), 0)), "faces");
    const char *created = jstr(o, "created_at");
    assert_int_equal(strlen(created), 24); /* 2024-01-02T03:04:05.678Z */
    assert_int_equal(created[23], 'Z');
    json_decref(o);
    job_clear(&j);

    err_t e = {0};
    job out;
    assert_int_equal(store_job_get(f->s, id + 1000, &out, &e), ERR_NOENT);
    assert_int_equal(store_job_get(f->s, 0, &out, &e), ERR_NOENT);
    job_spec bad = {.asset_id = "", .tasks = JOB_TASK_ALL, .source = SRC};
    assert_int_equal(store_job_enqueue(f->s, &bad, &out, NULL, &e), ERR_INVAL);
    bad.asset_id = "a";
    bad.tasks = 0;
    assert_int_equal(store_job_enqueue(f->s, &bad, &out, NULL, &e), ERR_INVAL);
    bad.tasks = 0x80;
    assert_int_equal(store_job_enqueue(f->s, &bad, &out, NULL, &e), ERR_INVAL);
    bad.tasks = JOB_TASK_ALL;
    bad.source = "{not json";
    assert_int_equal(store_job_enqueue(f->s, &bad, &out, NULL, &e), ERR_INVAL);
    bad.source = SRC;
    bad.payload = "[1]";
    assert_int_equal(store_job_enqueue(f->s, &bad, &out, NULL, &e), ERR_INVAL);
    char longid[STORE_ASSET_ID_MAX + 2];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    bad.payload = NULL;
    bad.asset_id = longid;
    assert_int_equal(store_job_enqueue(f->s, &bad, &out, NULL, &e), ERR_INVAL);
}

/* List pages newest first through a cursor, and filters by state. */
static void test_list_paging(void **state)
{
    fixture *f = *state;
    int64_t ids[25];
    for (int i = 0; i < 25; i++) {
        char a[32];
        snprintf(a, sizeof a, "asset-%d", i);
        ids[i] = enqueue(f->s, a, 0);
    }
    assert_int_equal(claim_count(f->s, "w1", 4), 4); /* ids[0..3] running */

    int64_t cursor = 0, last = INT64_MAX;
    int total = 0, pages = 0;
    for (;;) {
        job *arr = NULL;
        int n = -1;
        assert_int_equal(store_job_list(f->s, -1, cursor, 10, &arr, &n, NULL), ERR_OK);
        if (n == 0) {
            assert_null(arr);
            break;
        }
        pages++;
        for (int i = 0; i < n; i++) {
            assert_true(arr[i].id < last);
            last = arr[i].id;
        }
        total += n;
        cursor = arr[n - 1].id;
        job_array_free(arr, n);
    }
    assert_int_equal(total, 25);
    assert_int_equal(pages, 3);
    assert_int_equal(last, ids[0]);

    job *arr = NULL;
    int n = -1;
    assert_int_equal(store_job_list(f->s, JOB_RUNNING, 0, 100, &arr, &n, NULL), ERR_OK);
    assert_int_equal(n, 4);
    for (int i = 0; i < n; i++) {
        assert_int_equal(arr[i].state, JOB_RUNNING);
        assert_int_equal(arr[i].id, ids[3 - i]);
    }
    job_array_free(arr, n);
    assert_int_equal(store_job_list(f->s, JOB_QUEUED, ids[10], 100, &arr, &n, NULL), ERR_OK);
    assert_int_equal(n, 6); /* ids[4..9] */
    job_array_free(arr, n);
    assert_int_equal(store_job_list(f->s, -1, 0, 0, &arr, &n, NULL), ERR_INVAL);
    assert_int_equal(store_job_list(f->s, -1, 0, 1001, &arr, &n, NULL), ERR_INVAL);
    assert_int_equal(store_job_list(f->s, 9, 0, 10, &arr, &n, NULL), ERR_INVAL);

    store_counts c;
    assert_int_equal(store_counts_get(f->s, &c, NULL), ERR_OK);
    assert_int_equal(c.queued, 21);
    assert_int_equal(c.running, 4);
    assert_int_equal(c.done + c.failed + c.cancelled + c.outbox_pending, 0);
}

/* Same asset + tasks while queued or running returns that job; after done a new one. */
static void test_dedupe(void **state)
{
    fixture *f = *state;
    int ex = -1;
    int64_t a = enqueue_full(f->s, "dup", JOB_TASK_ALL, 0, 0, NULL, &ex);
    assert_int_equal(ex, 0);
    assert_int_equal(enqueue_full(f->s, "dup", JOB_TASK_ALL, 9, 0, NULL, &ex), a);
    assert_int_equal(ex, 1);
    int64_t b = enqueue_full(f->s, "dup", JOB_TASK_FACES, 0, 0, NULL, &ex);
    assert_int_not_equal(b, a);
    assert_int_equal(ex, 0);

    job j;
    claim_one(f->s, "w1", 30000, &j);
    assert_int_equal(j.id, a);
    assert_int_equal(enqueue_full(f->s, "dup", JOB_TASK_ALL, 0, 0, NULL, &ex), a);
    assert_int_equal(ex, 1);
    result_buf rb;
    complete_ok(f->s, &j, "w1", make_result(&rb, "clip", 1));
    job_clear(&j);
    int64_t c = enqueue_full(f->s, "dup", JOB_TASK_ALL, 0, 0, NULL, &ex);
    assert_int_equal(ex, 0);
    assert_true(c > b);
}

/* Claim takes the highest priority first, then the oldest. */
static void test_claim_order(void **state)
{
    fixture *f = *state;
    int64_t a = enqueue(f->s, "a", 0);
    int64_t b = enqueue(f->s, "b", 5);
    int64_t c = enqueue(f->s, "c", 0);
    int64_t d = enqueue(f->s, "d", 5);
    int64_t x = enqueue(f->s, "x", -3);
    int64_t want[] = {b, d, a, c, x};
    for (int i = 0; i < 5; i++) {
        job j;
        claim_one(f->s, "w", 30000, &j);
        assert_int_equal(j.id, want[i]);
        assert_int_equal(j.state, JOB_RUNNING);
        job_clear(&j);
    }
    assert_int_equal(claim_count(f->s, "w", 5), 0);

    /* A batch comes back in the same order. */
    int64_t p = enqueue(f->s, "p", 1);
    int64_t q = enqueue(f->s, "q", 2);
    int64_t r = enqueue(f->s, "r", 1);
    job *arr = NULL;
    int n = 0;
    assert_int_equal(store_job_claim(f->s, "w", 10, 30000, &arr, &n, NULL), ERR_OK);
    assert_int_equal(n, 3);
    assert_int_equal(arr[0].id, q);
    assert_int_equal(arr[1].id, p);
    assert_int_equal(arr[2].id, r);
    job_array_free(arr, n);
}

/* Claim honours max, sets the lease and counts attempts. */
static void test_claim_max_attempts(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 5; i++) {
        char a[16];
        snprintf(a, sizeof a, "m%d", i);
        enqueue(f->s, a, 0);
    }
    int64_t t0 = store_now_ms();
    job *arr = NULL;
    int n = 0;
    assert_int_equal(store_job_claim(f->s, "worker-a", 2, 30000, &arr, &n, NULL), ERR_OK);
    assert_int_equal(n, 2);
    for (int i = 0; i < n; i++) {
        assert_int_equal(arr[i].attempts, 1);
        assert_string_equal(arr[i].lease_owner, "worker-a");
        assert_true(arr[i].lease_until_ms >= t0 + 30000 - 5);
        assert_true(arr[i].lease_until_ms <= store_now_ms() + 30000 + 5);
    }
    job_array_free(arr, n);
    assert_int_equal(claim_count(f->s, "worker-b", 10), 3);
    assert_int_equal(claim_count(f->s, "worker-b", 10), 0);
    assert_int_equal(claim_count(f->s, "worker-b", 0), 0);
    assert_int_equal(store_job_claim(f->s, "", 1, 30000, &arr, &n, NULL), ERR_INVAL);
}

/* A retried job waits for run_after; with no delay it is claimable again. */
static void test_claim_run_after(void **state)
{
    fixture *f = *state;
    int64_t id = enqueue(f->s, "ra", 0);
    job j;
    claim_one(f->s, "w", 30000, &j);
    int64_t t0 = store_now_ms();
    assert_int_equal(store_job_retry(f->s, &j, "w", 60000, ERR_TIMEOUT, "fetch timed out", NULL),
                     ERR_OK);
    job_clear(&j);
    job q = get_job(f->s, id);
    assert_int_equal(q.state, JOB_QUEUED);
    assert_true(q.run_after_ms >= t0 + 60000 - 5);
    assert_string_equal(q.error_code, "timeout");
    assert_string_equal(q.error, "fetch timed out");
    assert_string_equal(q.lease_owner, "");
    job_clear(&q);
    assert_int_equal(claim_count(f->s, "w", 5), 0);

    int64_t id2 = enqueue(f->s, "rb", 0);
    claim_one(f->s, "w", 30000, &j);
    assert_int_equal(j.id, id2);
    assert_int_equal(store_job_retry(f->s, &j, "w", 0, ERR_IO, NULL, NULL), ERR_OK);
    job_clear(&j);
    claim_one(f->s, "w", 30000, &j);
    assert_int_equal(j.id, id2);
    assert_int_equal(j.attempts, 2);
    job_clear(&j);
    assert_int_equal(outbox_count(f->s), 0);
}

/* complete/fail/retry with a wrong owner or a stale attempt write nothing. */
static void test_lease_conditional(void **state)
{
    fixture *f = *state;
    int64_t id = enqueue_full(f->s, "lc", JOB_TASK_ALL, 0, 5, NULL, NULL);
    job j;
    claim_one(f->s, "w1", 30000, &j);
    result_buf rb;
    const store_result *r = make_result(&rb, "clip", 2);
    err_t e = {0};
    assert_int_equal(store_job_complete(f->s, &j, "w2", r, &e), ERR_LEASE);
    assert_int_equal(e.code, ERR_LEASE);
    assert_int_equal(store_job_fail(f->s, &j, "w2", ERR_DECODE, "bad", NULL, &e), ERR_LEASE);
    assert_int_equal(store_job_retry(f->s, &j, "w2", 0, ERR_IO, "io", &e), ERR_LEASE);
    job stale = j;
    stale.attempts = j.attempts + 1;
    assert_int_equal(store_job_complete(f->s, &stale, "w1", r, &e), ERR_LEASE);
    stale.attempts = j.attempts - 1;
    assert_int_equal(store_job_fail(f->s, &stale, "w1", ERR_DECODE, "bad", NULL, &e), ERR_LEASE);
    assert_int_equal(store_job_retry(f->s, &stale, "w1", 0, ERR_IO, "io", &e), ERR_LEASE);

    job now = get_job(f->s, id);
    assert_int_equal(now.state, JOB_RUNNING);
    assert_int_equal(now.attempts, 1);
    assert_null(now.error);
    job_clear(&now);
    json_t *a = NULL;
    assert_int_equal(store_asset_get(f->s, "lc", 0, &a, &e), ERR_NOENT);
    assert_int_equal(outbox_count(f->s), 0);

    /* The job moves to another worker: the first one's results are refused. */
    assert_int_equal(store_job_release(f->s, "w1", NULL, NULL), ERR_OK);
    job j2;
    claim_one(f->s, "w2", 30000, &j2);
    assert_int_equal(store_job_complete(f->s, &j, "w1", r, &e), ERR_LEASE);
    complete_ok(f->s, &j2, "w2", r);
    assert_int_equal(store_job_complete(f->s, &j2, "w2", r, &e), ERR_LEASE);
    assert_int_equal(outbox_count(f->s), 1);
    job_clear(&j);
    job_clear(&j2);
}

/* Retries back off, then fail after max_attempts with the last error and one event. */
static void test_retry_max_attempts(void **state)
{
    fixture *f = *state;
    int64_t id = enqueue_full(f->s, "rm", JOB_TASK_ALL, 0, 2, NULL, NULL);
    job j;
    claim_one(f->s, "w", 30000, &j);
    assert_int_equal(store_job_retry(f->s, &j, "w", 0, ERR_UNAVAILABLE, "broker down", NULL),
                     ERR_OK);
    job_clear(&j);
    assert_int_equal(state_of(f->s, id), JOB_QUEUED);
    assert_int_equal(outbox_count(f->s), 0);
    claim_one(f->s, "w", 30000, &j);
    assert_int_equal(j.attempts, 2);
    assert_int_equal(store_job_retry(f->s, &j, "w", 0, ERR_TIMEOUT, "fetch timed out", NULL),
                     ERR_OK);
    job_clear(&j);
    job d = get_job(f->s, id);
    assert_int_equal(d.state, JOB_FAILED);
    assert_string_equal(d.error_code, "timeout");
    assert_string_equal(d.error, "fetch timed out");
    assert_true(d.finished_ms > 0);
    job_clear(&d);
    json_t *ev = event_of(f->s, id);
    assert_string_equal(jstr(ev, "state"), "failed");
    assert_int_equal(json_integer_value(json_object_get(ev, "attempts")), 2);
    assert_string_equal(jstr(json_object_get(ev, "error"), "code"), "timeout");
    assert_string_equal(jstr(json_object_get(ev, "error"), "message"), "fetch timed out");
    json_decref(ev);
    assert_int_equal(claim_count(f->s, "w", 5), 0);
}

/* A permanent failure ends the job at once with its timings and one event. */
static void test_fail(void **state)
{
    fixture *f = *state;
    int64_t id = enqueue(f->s, "fl", 0);
    job j;
    claim_one(f->s, "w", 30000, &j);
    assert_int_equal(
        store_job_fail(f->s, &j, "w", ERR_DECODE, "not an image", "{\"fetch\":2}", NULL), ERR_OK);
    job_clear(&j);
    job d = get_job(f->s, id);
    assert_int_equal(d.state, JOB_FAILED);
    assert_string_equal(d.error_code, "decode");
    assert_string_equal(d.timings, "{\"fetch\":2}");
    job_clear(&d);
    json_t *ev = event_of(f->s, id);
    assert_string_equal(jstr(json_object_get(ev, "error"), "code"), "decode");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(ev, "timings_ms"), "fetch")), 2);
    json_decref(ev);
}

/* Heartbeat extends only the owner's leases; extended jobs are not rescued. */
static void test_heartbeat(void **state)
{
    fixture *f = *state;
    int64_t id = enqueue(f->s, "hb", 0);
    int64_t other = enqueue(f->s, "hb2", 0);
    job j, k;
    claim_one(f->s, "w1", 1, &j);
    claim_one(f->s, "w2", 1, &k);
    assert_int_equal(store_job_heartbeat(f->s, "w1", 60000, NULL), ERR_OK);
    job g = get_job(f->s, id);
    assert_true(g.lease_until_ms >= store_now_ms() + 50000);
    job_clear(&g);
    ts_sleep_ms(10);
    int n = -1;
    assert_int_equal(store_job_rescue(f->s, &n, NULL), ERR_OK);
    assert_int_equal(n, 1); /* only w2's job */
    assert_int_equal(state_of(f->s, id), JOB_RUNNING);
    assert_int_equal(state_of(f->s, other), JOB_QUEUED);
    complete_ok(f->s, &j, "w1", &(store_result){.timings = NULL});
    job_clear(&j);
    job_clear(&k);
}

/* Expired leases go back to queued, and fail with lease_expired after max_attempts. */
static void test_rescue(void **state)
{
    fixture *f = *state;
    int64_t id = enqueue_full(f->s, "rs", JOB_TASK_ALL, 0, 2, NULL, NULL);
    job j;
    claim_one(f->s, "dead", 1, &j);
    int n = -1;
    ts_sleep_ms(10);
    assert_int_equal(store_job_rescue(f->s, &n, NULL), ERR_OK);
    assert_int_equal(n, 1);
    job q = get_job(f->s, id);
    assert_int_equal(q.state, JOB_QUEUED);
    assert_int_equal(q.attempts, 1);
    assert_string_equal(q.lease_owner, "");
    job_clear(&q);
    assert_int_equal(outbox_count(f->s), 0);
    /* The dead worker comes back: refused. */
    result_buf rb;
    assert_int_equal(store_job_complete(f->s, &j, "dead", make_result(&rb, "clip", 1), NULL),
                     ERR_LEASE);
    job_clear(&j);

    claim_one(f->s, "dead2", 1, &j);
    assert_int_equal(j.attempts, 2);
    job_clear(&j);
    ts_sleep_ms(10);
    assert_int_equal(store_job_rescue(f->s, &n, NULL), ERR_OK);
    assert_int_equal(n, 1);
    job d = get_job(f->s, id);
    assert_int_equal(d.state, JOB_FAILED);
    assert_string_equal(d.error_code, "lease_expired");
    job_clear(&d);
    json_t *ev = event_of(f->s, id);
    assert_string_equal(jstr(ev, "state"), "failed");
    assert_string_equal(jstr(json_object_get(ev, "error"), "code"), "lease_expired");
    json_decref(ev);
    assert_int_equal(store_job_rescue(f->s, &n, NULL), ERR_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_job_rescue(f->s, NULL, NULL), ERR_OK);
}

/* Release at shutdown requeues without counting the attempt. */
static void test_release(void **state)
{
    fixture *f = *state;
    int64_t a = enqueue_full(f->s, "rl1", JOB_TASK_ALL, 0, 1, NULL, NULL);
    enqueue_full(f->s, "rl2", JOB_TASK_ALL, 0, 1, NULL, NULL);
    int64_t c = enqueue(f->s, "rl3", 0);
    assert_int_equal(claim_count(f->s, "w1", 2), 2);
    job other;
    claim_one(f->s, "w2", 30000, &other);
    assert_int_equal(other.id, c);
    int n = -1;
    assert_int_equal(store_job_release(f->s, "w1", &n, NULL), ERR_OK);
    assert_int_equal(n, 2);
    job q = get_job(f->s, a);
    assert_int_equal(q.state, JOB_QUEUED);
    assert_int_equal(q.attempts, 0);
    job_clear(&q);
    assert_int_equal(state_of(f->s, c), JOB_RUNNING);
    /* max_attempts 1 still allows the real attempt after a release. */
    job j;
    claim_one(f->s, "w3", 30000, &j);
    assert_int_equal(j.id, a);
    assert_int_equal(j.attempts, 1);
    assert_int_equal(store_job_retry(f->s, &j, "w3", 0, ERR_IO, "x", NULL), ERR_OK);
    assert_int_equal(state_of(f->s, a), JOB_FAILED);
    job_clear(&j);
    job_clear(&other);
    assert_int_equal(store_job_release(f->s, "nobody", &n, NULL), ERR_OK);
    assert_int_equal(n, 0);
}

/* A queued job cancels at once with its event; cancel is idempotent. */
static void test_cancel_queued(void **state)
{
    fixture *f = *state;
    int64_t id = enqueue(f->s, "cq", 0);
    job out;
    assert_int_equal(store_job_cancel(f->s, id, &out, NULL), ERR_OK);
    assert_int_equal(out.state, JOB_CANCELLED);
    assert_true(out.finished_ms > 0);
    job_clear(&out);
    assert_int_equal(store_job_cancel(f->s, id, NULL, NULL), ERR_OK);
    assert_int_equal(state_of(f->s, id), JOB_CANCELLED);
    json_t *ev = event_of(f->s, id);
    assert_string_equal(jstr(ev, "state"), "cancelled");
    assert_true(json_is_null(json_object_get(ev, "error")));
    json_decref(ev);
    assert_int_equal(claim_count(f->s, "w", 5), 0);
    err_t e = {0};
    assert_int_equal(store_job_cancel(f->s, id + 99, NULL, &e), ERR_NOENT);
    /* A new request for the asset is a new job. */
    assert_int_not_equal(enqueue(f->s, "cq", 0), id);
}

/* A running job marked cancelled ends cancelled at commit, its results discarded. */
static void test_cancel_running(void **state)
{
    fixture *f = *state;
    int64_t id = enqueue(f->s, "cr", 0);
    job j;
    claim_one(f->s, "w", 30000, &j);
    job out;
    assert_int_equal(store_job_cancel(f->s, id, &out, NULL), ERR_OK);
    assert_int_equal(out.state, JOB_RUNNING);
    assert_int_equal(out.cancel_requested, 1);
    job_clear(&out);
    assert_int_equal(outbox_count(f->s), 0);
    /* The job being cancelled does not absorb a new request for the asset. */
    int ex = -1;
    int64_t fresh = enqueue_full(f->s, "cr", JOB_TASK_ALL, 0, 0, NULL, &ex);
    assert_int_equal(ex, 0);
    assert_int_not_equal(fresh, id);

    result_buf rb;
    complete_ok(f->s, &j, "w", make_result(&rb, "clip", 2));
    job_clear(&j);
    assert_int_equal(state_of(f->s, id), JOB_CANCELLED);
    json_t *a = NULL;
    assert_int_equal(store_asset_get(f->s, "cr", 0, &a, NULL), ERR_NOENT);
    json_t *ev = event_of(f->s, id);
    assert_string_equal(jstr(ev, "state"), "cancelled");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(ev, "counts"), "faces")),
                     0);
    json_decref(ev);
}

/* --- tests: results ------------------------------------------------------- */

/* Complete writes the results, marks done and inserts exactly one event. */
static void test_complete(void **state)
{
    fixture *f = *state;
    result_buf rb;
    int64_t id = finish_asset_into(f->s, "img-1", "{\"album\":\"a\"}", 2, &rb);

    job d = get_job(f->s, id);
    assert_int_equal(d.state, JOB_DONE);
    assert_true(d.finished_ms > 0);
    assert_string_equal(d.lease_owner, "");
    json_t *t = json_loads(d.timings, 0, NULL);
    assert_true(json_number_value(json_object_get(t, "decode")) == 1.5);
    json_decref(t);
    job_clear(&d);

    json_t *ev = event_of(f->s, id);
    assert_int_equal(json_integer_value(json_object_get(ev, "job_id")), id);
    assert_string_equal(jstr(ev, "state"), "done");
    json_t *counts = json_object_get(ev, "counts");
    assert_int_equal(json_integer_value(json_object_get(counts, "faces")), 2);
    assert_int_equal(json_integer_value(json_object_get(counts, "image_embeddings")), 1);
    assert_int_equal(json_array_size(json_object_get(ev, "tasks")), 2);
    assert_true(json_is_null(json_object_get(ev, "error")));
    assert_true(json_is_object(json_object_get(ev, "timings_ms")));
    assert_int_equal(strlen(jstr(ev, "at")), 24);
    json_decref(ev);

    json_t *a = NULL;
    assert_int_equal(store_asset_get(f->s, "img-1", 0, &a, NULL), ERR_OK);
    assert_string_equal(jstr(a, "asset_id"), "img-1");
    assert_string_equal(jstr(json_object_get(a, "payload"), "album"), "a");
    assert_int_equal(json_integer_value(json_object_get(a, "width")), 640);
    assert_int_equal(json_integer_value(json_object_get(a, "height")), 480);
    assert_non_null(json_string_value(json_object_get(a, "updated_at")));
    json_t *embs = json_object_get(a, "image_embeddings");
    assert_int_equal(json_array_size(embs), 1);
    json_t *ie = json_array_get(embs, 0);
    assert_string_equal(jstr(ie, "model"), "clip");
    assert_int_equal(json_integer_value(json_object_get(ie, "dim")), 4);
    assert_true(json_real_value(json_object_get(ie, "norm")) == 1.0);
    assert_true(json_real_value(json_object_get(json_object_get(ie, "nsfw"), "neutral")) == 0.9);
    assert_null(json_object_get(ie, "vector"));
    json_t *faces = json_object_get(a, "faces");
    assert_int_equal(json_array_size(faces), 2);
    json_t *f1 = json_array_get(faces, 1);
    assert_true(json_integer_value(json_object_get(f1, "id")) > 0);
    json_t *box = json_object_get(f1, "box");
    assert_int_equal(json_array_size(box), 4);
    assert_true(json_real_value(json_array_get(box, 0)) == 10.0);
    assert_true(json_real_value(json_array_get(box, 3)) == 30.0);
    assert_true(json_real_value(json_object_get(f1, "score")) == 0.8);
    json_t *kps = json_object_get(f1, "keypoints");
    assert_int_equal(json_array_size(kps), 6);
    assert_true(json_real_value(json_array_get(json_array_get(kps, 2), 0)) == 2.3);
    assert_true(json_real_value(json_array_get(json_array_get(kps, 2), 1)) == 4.0);
    assert_string_equal(jstr(f1, "detector"), "blazeface");
    assert_string_equal(jstr(f1, "model"), "mobileface");
    assert_int_equal(json_integer_value(json_object_get(f1, "dim")), 3);
    assert_true(json_is_null(json_object_get(f1, "person_id")));
    assert_null(json_object_get(f1, "vector"));
    json_decref(a);

    /* Vectors come back bit-exact. */
    assert_int_equal(store_asset_get(f->s, "img-1", 1, &a, NULL), ERR_OK);
    json_t *v =
        json_object_get(json_array_get(json_object_get(a, "image_embeddings"), 0), "vector");
    assert_int_equal(json_array_size(v), 4);
    for (int i = 0; i < 4; i++)
        assert_true((float)json_real_value(json_array_get(v, (size_t)i)) == rb.img[i]);
    v = json_object_get(json_array_get(json_object_get(a, "faces"), 1), "vector");
    assert_int_equal(json_array_size(v), 3);
    for (int i = 0; i < 3; i++)
        assert_true((float)json_real_value(json_array_get(v, (size_t)i)) == rb.fvec[1][i]);
    json_decref(a);

    store_counts c;
    assert_int_equal(store_counts_get(f->s, &c, NULL), ERR_OK);
    assert_int_equal(c.done, 1);
    assert_int_equal(c.outbox_pending, 1);
    assert_int_equal(c.queued + c.running + c.failed + c.cancelled, 0);
}

/* A second job for the same asset replaces its results: one set per model. */
static void test_results_replaced(void **state)
{
    fixture *f = *state;
    result_buf rb;
    job j;
    finish_asset(f->s, "same", "{\"v\":1}", 3);
    finish_asset(f->s, "same", NULL, 1);

    json_t *a = NULL;
    assert_int_equal(store_asset_get(f->s, "same", 0, &a, NULL), ERR_OK);
    assert_int_equal(json_array_size(json_object_get(a, "image_embeddings")), 1);
    assert_int_equal(json_array_size(json_object_get(a, "faces")), 1);
    /* A job without a payload keeps the asset's payload. */
    assert_int_equal(json_integer_value(json_object_get(json_object_get(a, "payload"), "v")), 1);
    json_decref(a);

    /* Another image model adds a second embedding; a faces-only run leaves it alone. */
    enqueue_full(f->s, "same", JOB_TASK_ALL, 0, 0, "{\"v\":2}", NULL);
    claim_one(f->s, "w", 30000, &j);
    complete_ok(f->s, &j, "w", make_result(&rb, "mobilenet", 2));
    job_clear(&j);
    enqueue_full(f->s, "same", JOB_TASK_FACES, 0, 0, NULL, NULL);
    claim_one(f->s, "w", 30000, &j);
    store_result *r = (store_result *)make_result(&rb, NULL, 0);
    complete_ok(f->s, &j, "w", r);
    job_clear(&j);
    assert_int_equal(store_asset_get(f->s, "same", 0, &a, NULL), ERR_OK);
    assert_int_equal(json_array_size(json_object_get(a, "image_embeddings")), 2);
    assert_int_equal(json_array_size(json_object_get(a, "faces")), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(a, "payload"), "v")), 2);
    json_decref(a);
    assert_int_equal(outbox_count(f->s), 4);
}

/* Deleting an asset forgets its payload, embeddings and faces. */
static void test_asset_delete(void **state)
{
    fixture *f = *state;
    result_buf rb;
    job j;
    enqueue(f->s, "del", 0);
    claim_one(f->s, "w", 30000, &j);
    complete_ok(f->s, &j, "w", make_result(&rb, "clip", 2));
    job_clear(&j);
    err_t e = {0};
    assert_int_equal(store_asset_delete(f->s, "del", &e), ERR_OK);
    json_t *a = NULL;
    assert_int_equal(store_asset_get(f->s, "del", 1, &a, &e), ERR_NOENT);
    assert_null(a);
    assert_int_equal(store_asset_delete(f->s, "del", &e), ERR_NOENT);
    assert_int_equal(store_asset_get(f->s, "never", 0, &a, &e), ERR_NOENT);
    assert_int_equal(store_asset_get(f->s, "", 0, &a, &e), ERR_INVAL);
    /* Re-analysed later, it comes back with one set. */
    enqueue(f->s, "del", 0);
    claim_one(f->s, "w", 30000, &j);
    complete_ok(f->s, &j, "w", make_result(&rb, "clip", 1));
    job_clear(&j);
    assert_int_equal(store_asset_get(f->s, "del", 0, &a, &e), ERR_OK);
    assert_int_equal(json_array_size(json_object_get(a, "faces")), 1);
    json_decref(a);
}

/* Outbox rows come in id order; mark_sent hides them from unsent reads. */
static void test_outbox(void **state)
{
    fixture *f = *state;
    int64_t ids[3], max_id = -1;
    assert_int_equal(store_outbox_max_id(f->s, &max_id, NULL), ERR_OK);
    assert_int_equal(max_id, 0); /* empty outbox */
    for (int i = 0; i < 3; i++) {
        char a[16];
        snprintf(a, sizeof a, "ob%d", i);
        ids[i] = finish_empty(f->s, a);
    }
    outbox_event *ev = NULL;
    int n = 0;
    assert_int_equal(store_outbox_read(f->s, 0, 1, 100, &ev, &n, NULL), ERR_OK);
    assert_int_equal(n, 3);
    int64_t ev_ids[3];
    for (int i = 0; i < 3; i++) {
        ev_ids[i] = ev[i].id;
        assert_int_equal(ev[i].job_id, ids[i]);
        assert_int_equal(ev[i].sent, 0);
        assert_true(ev[i].created_ms > 0);
        if (i > 0)
            assert_true(ev[i].id > ev[i - 1].id);
    }
    outbox_event_array_free(ev, n);
    assert_int_equal(store_outbox_max_id(f->s, &max_id, NULL), ERR_OK);
    assert_int_equal(max_id, ev_ids[2]);

    assert_int_equal(store_outbox_mark_sent(f->s, ev_ids[1], NULL), ERR_OK);
    assert_int_equal(store_outbox_mark_sent(f->s, ev_ids[1], NULL), ERR_OK);
    assert_int_equal(store_outbox_read(f->s, 0, 1, 100, &ev, &n, NULL), ERR_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ev[0].id, ev_ids[0]);
    assert_int_equal(ev[1].id, ev_ids[2]);
    outbox_event_array_free(ev, n);
    assert_int_equal(store_outbox_read(f->s, ev_ids[0], 0, 1, &ev, &n, NULL), ERR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ev[0].id, ev_ids[1]);
    assert_int_equal(ev[0].sent, 1);
    outbox_event_array_free(ev, n);
    assert_int_equal(store_outbox_read(f->s, ev_ids[2], 0, 10, &ev, &n, NULL), ERR_OK);
    assert_int_equal(n, 0);
    assert_null(ev);

    store_counts c;
    assert_int_equal(store_counts_get(f->s, &c, NULL), ERR_OK);
    assert_int_equal(c.outbox_pending, 2);
    err_t e = {0};
    assert_int_equal(store_outbox_mark_sent(f->s, ev_ids[2] + 100, &e), ERR_NOENT);
}

/* --- tests: concurrency and durability ------------------------------------ */

#define CONC_JOBS 200
#define CONC_THREADS 4

typedef struct {
    store *s;
    char owner[32];
    int64_t ids[CONC_JOBS];
    int n;
    int errors;
} claimer;

/* Claims in small batches and completes each job until nothing is left. */
static void *claim_loop(void *arg)
{
    claimer *c = arg;
    for (;;) {
        job *arr = NULL;
        int n = 0;
        err_t e = {0};
        int rc = store_job_claim(c->s, c->owner, 3, 30000, &arr, &n, &e);
        if (rc == ERR_BUSY) {
            ts_sleep_ms(5);
            continue;
        }
        if (rc != ERR_OK) {
            c->errors++;
            break;
        }
        if (n == 0)
            break;
        for (int i = 0; i < n; i++) {
            if (c->n < CONC_JOBS)
                c->ids[c->n++] = arr[i].id;
            store_result r = {.timings = NULL};
            do {
                rc = store_job_complete(c->s, &arr[i], c->owner, &r, &e);
            } while (rc == ERR_BUSY);
            if (rc != ERR_OK)
                c->errors++;
        }
        job_array_free(arr, n);
    }
    return NULL;
}

static void enqueue_many(store *s, int n)
{
    for (int i = 0; i < n; i++) {
        char a[32];
        snprintf(a, sizeof a, "conc-%d", i);
        enqueue(s, a, i % 3);
    }
}

/* Checks that the claimers got every job exactly once. */
static void check_claimed_once(store *s, int64_t *all, int total)
{
    assert_int_equal(total, CONC_JOBS);
    for (int i = 0; i < total; i++)
        for (int k = i + 1; k < total; k++)
            if (all[i] == all[k])
                fail_msg("job %lld claimed twice", (long long)all[i]);
    store_counts c;
    assert_int_equal(store_counts_get(s, &c, NULL), ERR_OK);
    assert_int_equal(c.done, CONC_JOBS);
    assert_int_equal(c.outbox_pending, CONC_JOBS);
    job *arr = NULL;
    int n = 0;
    assert_int_equal(store_job_list(s, JOB_DONE, 0, 1000, &arr, &n, NULL), ERR_OK);
    for (int i = 0; i < n; i++)
        assert_int_equal(arr[i].attempts, 1);
    job_array_free(arr, n);
}

/*
 * CONC_THREADS threads on one handle claim and complete every job; each has
 * its own owner, or all share one (`shared`, a worker's slots).
 */
static void run_claimer_threads(store *s, int shared)
{
    static claimer cl[CONC_THREADS];
    pthread_t th[CONC_THREADS];
    for (int i = 0; i < CONC_THREADS; i++) {
        memset(&cl[i], 0, sizeof cl[i]);
        cl[i].s = s;
        if (shared)
            snprintf(cl[i].owner, sizeof cl[i].owner, "slots");
        else
            snprintf(cl[i].owner, sizeof cl[i].owner, "thread-%d", i);
        assert_int_equal(pthread_create(&th[i], NULL, claim_loop, &cl[i]), 0);
    }
    int64_t all[CONC_JOBS * 2];
    int total = 0;
    for (int i = 0; i < CONC_THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(cl[i].errors, 0);
        for (int k = 0; k < cl[i].n && total < CONC_JOBS * 2; k++)
            all[total++] = cl[i].ids[k];
    }
    check_claimed_once(s, all, total);
}

/* Four threads on one handle never claim the same job. */
static void test_concurrent_threads(void **state)
{
    fixture *f = *state;
    enqueue_many(f->s, CONC_JOBS);
    run_claimer_threads(f->s, 0);
}

/*
 * Threads sharing one owner (a worker's slots) complete at the same time:
 * the group commit batches them, and every job still ends done once with
 * one event.
 */
static void test_group_commit_threads(void **state)
{
    fixture *f = *state;
    enqueue_many(f->s, CONC_JOBS);
    run_claimer_threads(f->s, 1);
    outbox_event *ev = NULL;
    int n = 0;
    assert_int_equal(store_outbox_read(f->s, 0, 0, 1000, &ev, &n, NULL), ERR_OK);
    assert_int_equal(n, CONC_JOBS);
    for (int i = 0; i < n; i++) {
        json_t *o = json_loads(ev[i].payload, 0, NULL);
        assert_non_null(o);
        assert_int_equal(json_integer_value(json_object_get(o, "event_id")), ev[i].id);
        assert_int_equal(json_integer_value(json_object_get(o, "job_id")), ev[i].job_id);
        json_decref(o);
    }
    outbox_event_array_free(ev, n);
}

/* Enqueues, claims and completes one job of `asset` with result `r`. */
static void complete_with(fixture *f, const char *asset, const store_result *r)
{
    job j;
    enqueue(f->s, asset, 0);
    claim_one(f->s, "w", 30000, &j);
    assert_int_equal(store_job_complete(f->s, &j, "w", r, NULL), ERR_OK);
    job_clear(&j);
}

/* store_assets_list: id order, keyset pages, the total, face counts and the thumbnail flag. */
static void test_assets_list(void **state)
{
    fixture *f = *state;
    json_t *o = NULL;
    assert_int_equal(store_assets_list(f->s, NULL, 10, &o, NULL), ERR_OK);
    assert_int_equal(json_array_size(json_object_get(o, "assets")), 0);
    assert_int_equal(json_integer_value(json_object_get(o, "total")), 0);
    json_decref(o);
    static const unsigned char jpg[] = {0xFF, 0xD8, 0xFF, 0xD9};
    const char *ids[] = {"l-b", "l-a", "l-c"};
    for (int i = 0; i < 3; i++) {
        result_buf rb;
        store_result r = *make_result(&rb, "clip", i);
        if (i == 1) {
            r.thumb = jpg;
            r.thumb_len = sizeof jpg;
            r.thumb_w = r.thumb_h = 1;
        }
        complete_with(f, ids[i], &r);
    }
    assert_int_equal(store_assets_list(f->s, "", 2, &o, NULL), ERR_OK);
    json_t *a = json_object_get(o, "assets");
    assert_int_equal(json_array_size(a), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "asset_id")),
                        "l-a");
    assert_true(json_is_true(json_object_get(json_array_get(a, 0), "thumbnail")));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 0), "faces")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 0), "width")), 640);
    assert_string_equal(json_string_value(json_object_get(json_array_get(a, 1), "asset_id")),
                        "l-b");
    assert_true(json_is_false(json_object_get(json_array_get(a, 1), "thumbnail")));
    assert_string_equal(json_string_value(json_object_get(o, "next_cursor")), "l-b");
    assert_int_equal(json_integer_value(json_object_get(o, "total")), 3);
    json_decref(o);
    assert_int_equal(store_assets_list(f->s, "l-b", 2, &o, NULL), ERR_OK);
    a = json_object_get(o, "assets");
    assert_int_equal(json_array_size(a), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "asset_id")),
                        "l-c");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 0), "faces")), 2);
    assert_true(json_is_null(json_object_get(o, "next_cursor")));
    assert_int_equal(json_integer_value(json_object_get(o, "total")), 3);
    json_decref(o);
    assert_int_equal(store_assets_list(f->s, NULL, 0, &o, NULL), ERR_INVAL);
}

/*
 * Thumbnails: stored with a job's results (bytes kept exactly, NUL bytes
 * included), kept by a later job that brings none, replaced by one that
 * does, gone with the asset; an asset without one is ERR_NOENT.
 */
static void test_thumbs(void **state)
{
    fixture *f = *state;
    unsigned char *jpeg = NULL;
    size_t len = 0;
    int w = 0, h = 0;
    assert_int_equal(store_thumb_get(f->s, "th", &jpeg, &len, &w, &h, NULL), ERR_NOENT);
    static const unsigned char one[] = {0xFF, 0xD8, 0x00, 0x01, 0x02, 0x00, 0xFF, 0xD9};
    result_buf rb;
    store_result r = *make_result(&rb, "clip", 1);
    r.thumb = one;
    r.thumb_len = sizeof one;
    r.thumb_w = 64;
    r.thumb_h = 48;
    complete_with(f, "th", &r);
    assert_int_equal(store_thumb_get(f->s, "th", &jpeg, &len, &w, &h, NULL), ERR_OK);
    assert_int_equal(len, sizeof one);
    assert_memory_equal(jpeg, one, sizeof one);
    assert_int_equal(w, 64);
    assert_int_equal(h, 48);
    free(jpeg);

    r.thumb = NULL; /* a job without one keeps it */
    complete_with(f, "th", &r);
    assert_int_equal(store_thumb_get(f->s, "th", &jpeg, &len, &w, &h, NULL), ERR_OK);
    assert_int_equal(len, sizeof one);
    free(jpeg);

    static const unsigned char two[] = {0xFF, 0xD8, 0x42, 0xFF, 0xD9};
    r.thumb = two;
    r.thumb_len = sizeof two;
    r.thumb_w = 32;
    complete_with(f, "th", &r);
    assert_int_equal(store_thumb_get(f->s, "th", &jpeg, &len, &w, &h, NULL), ERR_OK);
    assert_int_equal(len, sizeof two);
    assert_memory_equal(jpeg, two, sizeof two);
    assert_int_equal(w, 32);
    free(jpeg);

    assert_int_equal(store_asset_delete(f->s, "th", NULL), ERR_OK);
    assert_int_equal(store_thumb_get(f->s, "th", &jpeg, &len, &w, &h, NULL), ERR_NOENT);
    assert_null(jpeg);
}

/*
 * store_job_enqueue_many: one transaction, in order; a repeat of an earlier
 * spec in the batch (or of a live job) is deduplicated; an invalid spec
 * fails the whole batch, naming it, and enqueues nothing.
 */
static void test_enqueue_many(void **state)
{
    fixture *f = *state;
    int64_t live = enqueue(f->s, "em-live", 0);
    job_spec sp[4] = {
        {.asset_id = "em-0", .tasks = JOB_TASK_ALL, .source = SRC},
        {.asset_id = "em-1", .tasks = JOB_TASK_FACES, .source = SRC, .payload = "{\"k\":1}"},
        {.asset_id = "em-0", .tasks = JOB_TASK_ALL, .source = SRC},
        {.asset_id = "em-live", .tasks = JOB_TASK_ALL, .source = SRC},
    };
    job out[4];
    int ex[4];
    assert_int_equal(store_job_enqueue_many(f->s, sp, 4, out, ex, NULL), ERR_OK);
    assert_string_equal(out[0].asset_id, "em-0");
    assert_string_equal(out[1].asset_id, "em-1");
    assert_string_equal(out[1].payload, "{\"k\":1}");
    assert_int_equal(out[0].state, JOB_QUEUED);
    assert_int_equal(ex[0], 0);
    assert_int_equal(ex[1], 0);
    assert_int_equal(ex[2], 1);
    assert_int_equal(out[2].id, out[0].id);
    assert_int_equal(ex[3], 1);
    assert_int_equal(out[3].id, live);
    assert_true(out[1].id > out[0].id);
    for (int i = 0; i < 4; i++)
        job_clear(&out[i]);
    store_counts c;
    assert_int_equal(store_counts_get(f->s, &c, NULL), ERR_OK);
    assert_int_equal(c.queued, 3);

    job_spec bad[2] = {
        {.asset_id = "em-2", .tasks = JOB_TASK_ALL, .source = SRC},
        {.asset_id = "em-3", .tasks = JOB_TASK_ALL, .source = "[1]"},
    };
    err_t e = {0};
    assert_int_equal(store_job_enqueue_many(f->s, bad, 2, out, ex, &e), ERR_INVAL);
    assert_non_null(strstr(e.msg, "jobs[1]: source"));
    assert_int_equal(store_counts_get(f->s, &c, NULL), ERR_OK);
    assert_int_equal(c.queued, 3);
    assert_int_equal(store_job_enqueue_many(f->s, bad, 0, out, ex, &e), ERR_INVAL);
    assert_int_equal(store_job_enqueue_many(f->s, bad, STORE_ENQUEUE_MAX + 1, out, ex, &e),
                     ERR_INVAL);
}

/*
 * store_job_complete_many: one call for five leased jobs, of which one was
 * failed meanwhile (ERR_LEASE for it alone) and one was asked to cancel
 * (ends cancelled, its results dropped); the other three are done with
 * their results, and every job has exactly one event.
 */
static void test_complete_many(void **state)
{
    fixture *f = *state;
    int64_t ids[5];
    for (int i = 0; i < 5; i++) {
        char a[16];
        snprintf(a, sizeof a, "many-%d", i);
        ids[i] = enqueue(f->s, a, 0);
    }
    job *jobs = NULL;
    int n = 0;
    assert_int_equal(store_job_claim(f->s, "w", 5, 30000, &jobs, &n, NULL), ERR_OK);
    assert_int_equal(n, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(jobs[i].id, ids[i]);
    assert_int_equal(store_job_fail(f->s, &jobs[1], "w", ERR_DECODE, "bad", NULL, NULL), ERR_OK);
    assert_int_equal(store_job_cancel(f->s, ids[3], NULL, NULL), ERR_OK);
    result_buf rb[5];
    store_result rs[5];
    for (int i = 0; i < 5; i++) {
        rs[i] = *make_result(&rb[i], "clip", i % 3);
        rs[i].timings = "{\"fetch\":0.1,\"total\":38.4}";
    }
    int rcs[5];
    err_t errs[5];
    memset(errs, 0, sizeof errs);
    assert_int_equal(store_job_complete_many(f->s, jobs, "w", rs, 5, rcs, errs), ERR_LEASE);
    assert_int_equal(rcs[0], ERR_OK);
    assert_int_equal(rcs[1], ERR_LEASE);
    assert_non_null(strstr(errs[1].msg, "not running"));
    assert_int_equal(rcs[2], ERR_OK);
    assert_int_equal(rcs[3], ERR_OK);
    assert_int_equal(rcs[4], ERR_OK);
    job_array_free(jobs, n);

    assert_int_equal(state_of(f->s, ids[0]), JOB_DONE);
    assert_int_equal(state_of(f->s, ids[1]), JOB_FAILED);
    assert_int_equal(state_of(f->s, ids[2]), JOB_DONE);
    assert_int_equal(state_of(f->s, ids[3]), JOB_CANCELLED);
    assert_int_equal(state_of(f->s, ids[4]), JOB_DONE);
    json_t *a = NULL;
    assert_int_equal(store_asset_get(f->s, "many-2", 0, &a, NULL), ERR_OK);
    assert_int_equal(json_array_size(json_object_get(a, "faces")), 2);
    json_decref(a);
    assert_int_equal(store_asset_get(f->s, "many-3", 0, &a, NULL), ERR_NOENT);
    outbox_event *obx = NULL;
    int nobx = 0;
    assert_int_equal(store_outbox_read(f->s, 0, 0, 100, &obx, &nobx, NULL), ERR_OK);
    for (int i = 0; i < nobx; i++) /* timings reach consumers as written, not 0.1000…01 */
        if (obx[i].job_id == ids[0])
            assert_non_null(
                strstr(obx[i].payload, "\"timings_ms\":{\"fetch\":0.1,\"total\":38.4}"));
    outbox_event_array_free(obx, nobx);
    for (int i = 0; i < 5; i++) {
        json_t *ev = event_of(f->s, ids[i]);
        static const char *const want[] = {"done", "failed", "done", "cancelled", "done"};
        assert_string_equal(jstr(ev, "state"), want[i]);
        json_decref(ev);
    }
    assert_int_equal(outbox_count(f->s), 5);

    /* Completing them again: every one answers ERR_LEASE, nothing changes. */
    job again[2] = {{.id = ids[0], .attempts = 1}, {.id = ids[2], .attempts = 1}};
    snprintf(again[0].asset_id, sizeof again[0].asset_id, "many-0");
    snprintf(again[1].asset_id, sizeof again[1].asset_id, "many-2");
    assert_int_equal(store_job_complete_many(f->s, again, "w", rs, 2, rcs, NULL), ERR_LEASE);
    assert_int_equal(rcs[0], ERR_LEASE);
    assert_int_equal(rcs[1], ERR_LEASE);
    assert_int_equal(outbox_count(f->s), 5);
}

#define CONC_PROCS 3

/* Three processes on the same database never claim the same job. */
static void test_concurrent_processes(void **state)
{
    fixture *f = *state;
    enqueue_many(f->s, CONC_JOBS);
    /* No connection may cross fork(): the children open their own. */
    store_close(f->s);
    f->s = NULL;
    int fds[CONC_PROCS][2];
    pid_t pids[CONC_PROCS];
    int go[2]; /* start barrier: children open, then wait until all exist */
    assert_int_equal(pipe(go), 0);
    for (int p = 0; p < CONC_PROCS; p++) {
        assert_int_equal(pipe(fds[p]), 0);
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            close(fds[p][0]);
            store_opts o = {.busy_timeout_ms = 10000};
            store *s = NULL;
            if (store_open(f->url, &o, &s, NULL) != ERR_OK)
                _exit(2);
            close(go[1]);
            char b;
            if (read(go[0], &b, 1) < 0)
                _exit(5);
            static claimer c;
            memset(&c, 0, sizeof c);
            c.s = s;
            snprintf(c.owner, sizeof c.owner, "proc-%d", p);
            claim_loop(&c);
            store_close(s);
            ssize_t want = (ssize_t)(c.n * (int)sizeof c.ids[0]);
            if (write(fds[p][1], c.ids, (size_t)want) != want)
                _exit(3);
            _exit(c.errors ? 4 : 0);
        }
        close(fds[p][1]);
    }
    close(go[0]);
    close(go[1]); /* EOF on go[0]: every child starts claiming now */
    int64_t all[CONC_JOBS * 2];
    int total = 0;
    for (int p = 0; p < CONC_PROCS; p++) {
        int64_t buf[CONC_JOBS];
        size_t got = 0;
        for (;;) {
            ssize_t r = read(fds[p][0], (char *)buf + got, sizeof buf - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        close(fds[p][0]);
        int status = 0;
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        for (size_t k = 0; k < got / sizeof buf[0] && total < CONC_JOBS * 2; k++)
            all[total++] = buf[k];
    }
    f->s = open_or_fail(f->url, 0);
    check_claimed_once(f->s, all, total);
}

/* Everything committed survives close and reopen. */
static void test_durability(void **state)
{
    fixture *f = *state;
    int64_t done = finish_asset(f->s, "dur", "{\"k\":1}", 2);
    job j;
    int64_t queued = enqueue(f->s, "dur2", 3);
    int64_t running = enqueue(f->s, "dur3", 0);
    claim_one(f->s, "w", 30000, &j);
    assert_int_equal(j.id, queued);
    job_clear(&j);
    store_close(f->s);
    f->s = open_or_fail(f->url, 0);

    assert_int_equal(state_of(f->s, done), JOB_DONE);
    assert_int_equal(state_of(f->s, queued), JOB_RUNNING);
    assert_int_equal(state_of(f->s, running), JOB_QUEUED);
    json_t *a = NULL;
    assert_int_equal(store_asset_get(f->s, "dur", 0, &a, NULL), ERR_OK);
    assert_int_equal(json_array_size(json_object_get(a, "faces")), 2);
    json_decref(a);
    assert_int_equal(outbox_count(f->s), 1);
    /* Ids keep increasing after a restart. */
    assert_true(enqueue(f->s, "dur4", 0) > running);
}

/* Fault: another connection holds the write lock past busy_timeout -> ERR_BUSY, transient. */
static void test_busy(void **state)
{
    fixture *f = *state;
    const char *path = ts_store_url_sqlite_path(f->url);
    if (path == NULL || strcmp(store_backend(f->s), "sqlite") != 0)
        skip();
    int64_t id = enqueue(f->s, "busy", 0);
    store_close(f->s);
    f->s = open_or_fail(f->url, 150);

    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    job *arr = NULL;
    int n = -1;
    err_t e = {0};
    int64_t t0 = store_now_ms();
    int rc = store_job_claim(f->s, "w", 1, 30000, &arr, &n, &e);
    assert_int_equal(rc, ERR_BUSY);
    assert_true(err_is_transient(rc));
    assert_int_equal(n, 0);
    assert_null(arr);
    assert_true(store_now_ms() - t0 >= 100);
    assert_non_null(strstr(e.msg, "lock"));
    assert_int_equal(store_job_heartbeat(f->s, "w", 1000, &e), ERR_BUSY);
    /* Readers are not blocked by a writer (WAL). */
    assert_int_equal(state_of(f->s, id), JOB_QUEUED);
    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    job j;
    claim_one(f->s, "w", 30000, &j);
    assert_int_equal(j.id, id);
    job_clear(&j);
}

/* SQLite: a database from a newer inferd is refused, not silently used. */
static void test_schema_newer(void **state)
{
    fixture *f = *state;
    const char *path = ts_store_url_sqlite_path(f->url);
    if (path == NULL || strcmp(store_backend(f->s), "sqlite") != 0)
        skip();
    store_close(f->s);
    f->s = NULL;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    err_t e = {0};
    assert_int_equal(store_open(f->url, NULL, &f->s, &e), ERR_UNSUPPORTED);
    assert_null(f->s);
    assert_non_null(strstr(e.msg, "newer"));
}

/*
 * worker_id: the last claimer, set by the claim, kept after the job ends
 * (lease_owner is cleared), replaced by a later claim after a rescue, and
 * shown by job_to_json(). The schema holds one row per version (PostgreSQL)
 * or user_version 4 (SQLite).
 */
static void test_worker_id(void **state)
{
    fixture *f = *state;
    int64_t id = enqueue(f->s, "wid", 0);
    job q = get_job(f->s, id);
    assert_string_equal(q.worker_id, "");
    json_t *o = job_to_json(&q);
    assert_true(json_is_null(json_object_get(o, "worker_id")));
    json_decref(o);
    job_clear(&q);

    /* The first worker dies: its lease expires, the rescue requeues the job. */
    job j;
    claim_one(f->s, "worker-a", 1, &j);
    assert_string_equal(j.worker_id, "worker-a");
    job_clear(&j);
    ts_sleep_ms(20);
    int n = 0;
    assert_int_equal(store_job_rescue(f->s, &n, NULL), ERR_OK);
    assert_int_equal(n, 1);
    job r = get_job(f->s, id);
    assert_int_equal(r.state, JOB_QUEUED);
    assert_string_equal(r.worker_id, "worker-a"); /* kept: who ran it last */
    job_clear(&r);

    claim_one(f->s, "worker-b", 30000, &j);
    assert_string_equal(j.worker_id, "worker-b");
    complete_ok(f->s, &j, "worker-b", &(store_result){.timings = NULL});
    job_clear(&j);
    job d = get_job(f->s, id);
    assert_int_equal(d.state, JOB_DONE);
    assert_string_equal(d.lease_owner, "");
    assert_string_equal(d.worker_id, "worker-b");
    o = job_to_json(&d);
    assert_string_equal(json_string_value(json_object_get(o, "worker_id")), "worker-b");
    assert_true(json_is_null(json_object_get(o, "lease_owner")));
    json_decref(o);
    job_clear(&d);

    if (strcmp(store_backend(f->s), "postgres") == 0) {
        PGconn *raw = pg_raw(f->url);
        PGresult *res = PQexec(raw, "SELECT string_agg(version::text, ',' ORDER BY version)"
                                    " FROM schema_version");
        assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
        assert_string_equal(PQgetvalue(res, 0, 0), "1,2,3");
        PQclear(res);
        PQfinish(raw);
    } else if (ts_store_url_sqlite_path(f->url) != NULL) {
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open(ts_store_url_sqlite_path(f->url), &db), SQLITE_OK);
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(st, 0), 4);
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
}

/* --- tests: leader leases, wake-ups, concurrent open ------------------------- */

/* Opens a second handle on the fixture's store (another "process" as far as the store knows). */
static store *second_handle(fixture *f)
{
    return open_or_fail(f->url, 0);
}

/* One holder at a time; renew, release, and take-over after expiry. */
static void test_leader_lease(void **state)
{
    fixture *f = *state;
    store *b = second_handle(f);
    err_t e = {0};
    assert_int_equal(store_leader_acquire(f->s, "publisher", "A", 30000, &e), ERR_OK);
    assert_int_equal(store_leader_acquire(b, "publisher", "B", 30000, &e), ERR_LEASE);
    assert_non_null(strstr(e.msg, "A"));
    assert_int_equal(store_leader_acquire(f->s, "publisher", "A", 30000, &e), ERR_OK); /* renew */
    /* Leases are per name. */
    assert_int_equal(store_leader_acquire(b, "other", "B", 30000, &e), ERR_OK);
    /* Release by a non-holder is a no-op; by the holder frees it at once. */
    assert_int_equal(store_leader_release(b, "publisher", "B", &e), ERR_OK);
    assert_int_equal(store_leader_acquire(b, "publisher", "B", 30000, &e), ERR_LEASE);
    assert_int_equal(store_leader_release(f->s, "publisher", "A", &e), ERR_OK);
    assert_int_equal(store_leader_acquire(b, "publisher", "B", 1, &e), ERR_OK);
    /* B lets it expire: A takes over. */
    ts_sleep_ms(10);
    assert_int_equal(store_leader_acquire(f->s, "publisher", "A", 30000, &e), ERR_OK);
    assert_int_equal(store_leader_acquire(b, "publisher", "B", 30000, &e), ERR_LEASE);
    /* Bad arguments. */
    assert_int_equal(store_leader_acquire(f->s, "", "A", 1000, &e), ERR_INVAL);
    assert_int_equal(store_leader_acquire(f->s, "publisher", "", 1000, &e), ERR_INVAL);
    assert_int_equal(store_leader_acquire(f->s, "publisher", "A", 0, &e), ERR_INVAL);
    assert_int_equal(store_leader_release(f->s, "publisher", NULL, &e), ERR_INVAL);
    store_close(b);
}

/* Only the publisher lease holder gets outbox rows, unsent ones, oldest first. */
static void test_outbox_claim(void **state)
{
    fixture *f = *state;
    int64_t ids[3];
    for (int i = 0; i < 3; i++) {
        char a[16];
        snprintf(a, sizeof a, "oc%d", i);
        ids[i] = finish_empty(f->s, a);
    }
    store *b = second_handle(f);
    outbox_event *ev = NULL;
    int n = -1;
    err_t e = {0};
    assert_int_equal(store_outbox_claim(f->s, "pub-a", 10, 30000, &ev, &n, &e), ERR_OK);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ev[i].job_id, ids[i]);
    int64_t first = ev[0].id;
    outbox_event_array_free(ev, n);
    ev = NULL;
    assert_int_equal(store_outbox_claim(b, "pub-b", 10, 30000, &ev, &n, &e), ERR_LEASE);
    assert_int_equal(n, 0);
    assert_null(ev);
    assert_int_equal(store_outbox_mark_sent(f->s, first, NULL), ERR_OK);
    assert_int_equal(store_outbox_claim(f->s, "pub-a", 1, 30000, &ev, &n, &e), ERR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ev[0].job_id, ids[1]);
    outbox_event_array_free(ev, n);
    assert_int_equal(store_outbox_claim(f->s, "pub-a", 0, 30000, &ev, &n, &e), ERR_INVAL);
    /* The holder steps down: the standby takes over where it left off. */
    assert_int_equal(store_leader_release(f->s, STORE_LEADER_PUBLISHER, "pub-a", &e), ERR_OK);
    assert_int_equal(store_outbox_claim(b, "pub-b", 10, 30000, &ev, &n, &e), ERR_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ev[0].job_id, ids[1]);
    outbox_event_array_free(ev, n);
    store_close(b);
}

#define RACE_PROCS 4

/*
 * Forks `nproc` children that open f->url, wait for a common start, then run
 * `fn`; returns how many exited 0, failing on other statuses than 0 and 1.
 */
static int race_children(fixture *f, int nproc, int (*fn)(store *s, int k))
{
    pid_t pids[RACE_PROCS * 2];
    int go[2];
    assert_true(nproc <= RACE_PROCS * 2);
    assert_int_equal(pipe(go), 0);
    for (int p = 0; p < nproc; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            close(go[1]);
            char b;
            if (read(go[0], &b, 1) < 0)
                _exit(5);
            int rc = fn(NULL, p);
            _exit(rc);
        }
    }
    close(go[0]);
    close(go[1]);
    int zeros = 0;
    for (int p = 0; p < nproc; p++) {
        int status = 0;
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) > 1)
            fail_msg("child %d exited %d", p, WEXITSTATUS(status));
        zeros += WEXITSTATUS(status) == 0;
    }
    (void)f;
    return zeros;
}

static char g_race_url[512];

/* Child `k` of race_children opens g_race_url on its own; NULL (said on stderr) when it cannot. */
static store *race_child_open(int k)
{
    store_opts o = {.busy_timeout_ms = 10000};
    store *s = NULL;
    err_t e = {0};
    if (store_open(g_race_url, &o, &s, &e) != ERR_OK) {
        fprintf(stderr, "child %d: open: %s\n", k, e.msg);
        return NULL;
    }
    return s;
}

static int race_acquire(store *unused, int k)
{
    (void)unused;
    err_t e = {0};
    store *s = race_child_open(k);
    if (s == NULL)
        return 2;
    char owner[32];
    snprintf(owner, sizeof owner, "proc-%d", k);
    int rc = store_leader_acquire(s, "race", owner, 60000, &e);
    store_close(s);
    if (rc != ERR_OK && rc != ERR_LEASE)
        fprintf(stderr, "child %d: acquire: %s\n", k, e.msg);
    return rc == ERR_OK ? 0 : rc == ERR_LEASE ? 1 : 3;
}

/* Processes racing for one lease: exactly one wins. */
static void test_leader_race(void **state)
{
    fixture *f = *state;
    snprintf(g_race_url, sizeof g_race_url, "%s", f->url);
    store_close(f->s); /* no connection crosses fork() */
    f->s = NULL;
    assert_int_equal(race_children(f, RACE_PROCS, race_acquire), 1);
    f->s = open_or_fail(f->url, 0);
    assert_int_equal(store_leader_acquire(f->s, "race", "late", 1000, NULL), ERR_LEASE);
}

static int race_open(store *unused, int k)
{
    (void)unused;
    err_t e = {0};
    store *s = race_child_open(k);
    if (s == NULL)
        return 2;
    char asset[32];
    snprintf(asset, sizeof asset, "open-%d", k);
    job_spec sp = {.asset_id = asset, .tasks = JOB_TASK_ALL, .source = SRC};
    job j;
    int rc = store_job_enqueue(s, &sp, &j, NULL, &e);
    job_clear(&j);
    store_close(s);
    if (rc != ERR_OK)
        fprintf(stderr, "child %d: enqueue: %s\n", k, e.msg);
    return rc == ERR_OK ? 0 : 3;
}

/* Processes opening (creating and migrating) one new store at once all succeed, on one schema. */
static void test_concurrent_open(void **state)
{
    (void)state;
    char url[512];
    expand_url(url, sizeof url); /* a store nobody opened yet */
    ts_store_url_remove_sqlite(url);
    snprintf(g_race_url, sizeof g_race_url, "%s", url);
    fixture f = {0};
    assert_int_equal(race_children(&f, RACE_PROCS, race_open), RACE_PROCS);
    store *s = open_or_fail(url, 0);
    store_counts c;
    assert_int_equal(store_counts_get(s, &c, NULL), ERR_OK);
    assert_int_equal(c.queued, RACE_PROCS);
    if (strcmp(store_backend(s), "postgres") == 0) {
        PGconn *raw = pg_raw(url);
        /* One row per version: nobody applied a step twice. */
        PGresult *r = PQexec(raw, "SELECT count(*), count(DISTINCT version), min(version),"
                                  " max(version) FROM schema_version");
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        assert_string_equal(PQgetvalue(r, 0, 0), "3");
        assert_string_equal(PQgetvalue(r, 0, 1), "3");
        assert_string_equal(PQgetvalue(r, 0, 2), "1");
        assert_string_equal(PQgetvalue(r, 0, 3), "3");
        PQclear(r);
        PQfinish(raw);
    }
    store_close(s);
    ts_store_url_remove_sqlite(url);
}

typedef struct {
    store *s;
    int delay_ms;
    int rc;
} delayed_enqueue;

static void *enqueue_later(void *arg)
{
    delayed_enqueue *d = arg;
    ts_sleep_ms(d->delay_ms);
    job_spec sp = {.asset_id = "wake", .tasks = JOB_TASK_ALL, .source = SRC};
    job j;
    d->rc = store_job_enqueue(d->s, &sp, &j, NULL, NULL);
    job_clear(&j);
    return NULL;
}

/* Enqueue wakes a waiter at once; with no news the wait times out; outbox commits wake too. */
static void test_wait_notify(void **state)
{
    fixture *f = *state;
    int pg = strcmp(store_backend(f->s), "postgres") == 0;
    err_t e = {0};
    /* The first call starts listening (PostgreSQL); nothing is pending yet. */
    assert_int_equal(store_wait_notify(f->s, STORE_CHANNEL_JOBS, 0, &e), 1);
    assert_int_equal(store_wait_notify(f->s, STORE_CHANNEL_OUTBOX, 0, &e), 1);
    int64_t t0 = store_now_ms();
    assert_int_equal(store_wait_notify(f->s, STORE_CHANNEL_JOBS, 60, &e), 1);
    assert_true(store_now_ms() - t0 >= 50);

    /* PostgreSQL hears other connections; SQLite only its own handle. */
    store *other = pg ? second_handle(f) : f->s;
    delayed_enqueue d = {.s = other, .delay_ms = 50, .rc = -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, enqueue_later, &d), 0);
    t0 = store_now_ms();
    int rc = store_wait_notify(f->s, STORE_CHANNEL_JOBS, 10000, &e);
    int64_t waited = store_now_ms() - t0;
    pthread_join(th, NULL);
    assert_int_equal(d.rc, ERR_OK);
    assert_int_equal(rc, ERR_OK);
    assert_true(waited < 5000);

    /* A hint posted while nobody waits is kept for the next call. */
    enqueue(f->s, "wake-2", 0);
    t0 = store_now_ms();
    assert_int_equal(store_wait_notify(f->s, STORE_CHANNEL_JOBS, 5000, &e), ERR_OK);
    assert_true(store_now_ms() - t0 < 2500);
    /* Drained: the next wait times out. Dedupe creates no job and sends no hint. */
    enqueue(f->s, "wake-2", 0);
    assert_int_equal(store_wait_notify(f->s, STORE_CHANNEL_JOBS, 30, &e), 1);

    /* A committed event wakes the outbox channel. */
    job j;
    claim_one(f->s, "w", 30000, &j);
    complete_ok(f->s, &j, "w", &(store_result){.timings = NULL});
    job_clear(&j);
    assert_int_equal(store_wait_notify(f->s, STORE_CHANNEL_OUTBOX, 5000, &e), ERR_OK);
    /* A release makes jobs claimable again: a hint. */
    claim_one(f->s, "w", 30000, &j);
    job_clear(&j);
    assert_int_equal(store_wait_notify(f->s, STORE_CHANNEL_JOBS, 0, &e), 1);
    assert_int_equal(store_job_release(f->s, "w", NULL, NULL), ERR_OK);
    assert_int_equal(store_wait_notify(f->s, STORE_CHANNEL_JOBS, 5000, &e), ERR_OK);

    assert_int_equal(store_wait_notify(f->s, (store_channel)7, 10, &e), ERR_INVAL);
    assert_int_equal(store_wait_notify(f->s, STORE_CHANNEL_JOBS, -1, &e), ERR_INVAL);
    if (other != f->s)
        store_close(other);
}

/* PostgreSQL: a database from a newer inferd is refused, not silently used. */
static void test_pg_schema_newer(void **state)
{
    fixture *f = *state;
    if (strcmp(store_backend(f->s), "postgres") != 0)
        skip();
    store_close(f->s);
    f->s = NULL;
    PGconn *raw = pg_raw(f->url);
    PGresult *r = PQexec(raw, "INSERT INTO schema_version(version) VALUES (99)");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    err_t e = {0};
    assert_int_equal(store_open(f->url, NULL, &f->s, &e), ERR_UNSUPPORTED);
    assert_null(f->s);
    assert_non_null(strstr(e.msg, "newer"));
    r = PQexec(raw, "DELETE FROM schema_version WHERE version = 99");
    PQclear(r);
    PQfinish(raw);
    f->s = open_or_fail(f->url, 0);
}

/* Kills every backend of the store's connections (not the caller's raw one). */
static void pg_kill_backends(const char *url)
{
    PGconn *raw = pg_raw(url);
    PGresult *r = PQexec(raw, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE application_name = 'inferd' AND pid <> pg_backend_pid()");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(raw);
}

/*
 * Fault: the server drops every connection. Calls fail with ERR_UNAVAILABLE
 * (transient) or succeed, never crash, and work again after a retry.
 */
static void test_pg_connection_loss(void **state)
{
    fixture *f = *state;
    const char *own = getenv("INFERD_TEST_PG_URL");
    if (strcmp(store_backend(f->s), "postgres") != 0 || own == NULL ||
        strncmp(f->url, own, strlen(own)) != 0)
        skip(); /* only on a throwaway server (tests/pg/with_pg.sh): it kills backends */
    int64_t id = enqueue(f->s, "loss", 0);
    err_t e = {0};
    assert_int_equal(store_wait_notify(f->s, STORE_CHANNEL_JOBS, 0, &e), 1); /* listening */
    for (int round = 0; round < 2; round++) {
        pg_kill_backends(f->url);
        ts_sleep_ms(50);
        /* Every pool connection is dead: each call fails or recovers, then all recover. */
        int ok = 0, unavailable = 0;
        for (int i = 0; i < 40 && ok < 8; i++) {
            job j;
            int rc = store_job_get(f->s, id, &j, &e);
            if (rc == ERR_OK) {
                ok++;
                assert_int_equal(j.id, id);
                job_clear(&j);
            } else {
                assert_int_equal(rc, ERR_UNAVAILABLE);
                assert_true(err_is_transient(rc));
                unavailable++;
                ts_sleep_ms(120);
            }
        }
        assert_int_equal(ok, 8);
        /* The listener notices, reconnects and asks the caller to look. */
        int rc = ERR_INTERNAL;
        for (int i = 0; i < 20; i++) {
            rc = store_wait_notify(f->s, STORE_CHANNEL_JOBS, 200, &e);
            if (rc != ERR_UNAVAILABLE)
                break;
        }
        assert_true(rc == ERR_OK || rc == 1);
    }
    /* Writes work again, in transactions that were rolled back or committed whole. */
    job j;
    claim_one(f->s, "w", 30000, &j);
    complete_ok(f->s, &j, "w", &(store_result){.timings = NULL});
    job_clear(&j);
    assert_int_equal(state_of(f->s, id), JOB_DONE);
    assert_int_equal(outbox_count(f->s), 1);
}

/* --- main ----------------------------------------------------------------- */

/* --- vectors, deletion events, people (search and clustering) ------------------- */

/* Keyset pages return every vector once, in key order, with payloads and persons. */
static void test_vectors_read(void **state)
{
    fixture *f = *state;
    finish_asset(f->s, "v-b", "{\"album\":\"x\"}", 2);
    finish_asset(f->s, "v-a", NULL, 1);
    finish_asset(f->s, "v-c", "{\"album\":\"y\"}", 0);
    err_t e = {0};
    store_vec *page = NULL;
    int n = 0;
    const char *want[] = {"v-a", "v-b", "v-c"};
    store_vec last;
    memset(&last, 0, sizeof last);
    int got = 0;
    for (int round = 0; round < 5; round++) {
        assert_int_equal(
            store_vectors_read(f->s, STORE_VEC_IMAGE, NULL, got ? &last : NULL, 2, &page, &n, &e),
            ERR_OK);
        for (int i = 0; i < n; i++) {
            assert_true(got < 3);
            assert_string_equal(page[i].asset_id, want[got]);
            assert_string_equal(page[i].model, "clip");
            assert_int_equal(page[i].dim, 4);
            assert_float_equal(page[i].vector[1], -0.5f, 0);
            if (got == 1)
                assert_string_equal(page[i].payload, "{\"album\":\"x\"}");
            if (got == 0)
                assert_null(page[i].payload);
            got++;
        }
        if (n > 0) {
            snprintf(last.asset_id, sizeof last.asset_id, "%s", page[n - 1].asset_id);
            free(last.model);
            last.model = strdup(page[n - 1].model);
        }
        store_vec_array_free(page, n);
        if (n < 2)
            break;
    }
    free(last.model);
    assert_int_equal(got, 3);
    /* Faces: by id, only one asset when asked. */
    assert_int_equal(store_vectors_read(f->s, STORE_VEC_FACE, NULL, NULL, 10, &page, &n, &e),
                     ERR_OK);
    assert_int_equal(n, 3);
    assert_true(page[0].face_id < page[1].face_id && page[1].face_id < page[2].face_id);
    assert_int_equal(page[0].dim, 3);
    assert_int_equal(page[0].person_id, 0);
    store_vec after = page[0];
    store_vec *p2 = NULL;
    int n2 = 0;
    assert_int_equal(store_vectors_read(f->s, STORE_VEC_FACE, NULL, &after, 10, &p2, &n2, &e),
                     ERR_OK);
    assert_int_equal(n2, 2);
    assert_int_equal(p2[0].face_id, page[1].face_id);
    store_vec_array_free(p2, n2);
    store_vec_array_free(page, n);
    assert_int_equal(store_vectors_read(f->s, STORE_VEC_FACE, "v-b", NULL, 10, &page, &n, &e),
                     ERR_OK);
    assert_int_equal(n, 2);
    assert_string_equal(page[1].asset_id, "v-b");
    store_vec_array_free(page, n);
    assert_int_equal(store_vectors_read(f->s, STORE_VEC_IMAGE, "nope", NULL, 10, &page, &n, &e),
                     ERR_OK);
    assert_int_equal(n, 0);
    assert_null(page);
    assert_int_equal(store_vectors_read(f->s, STORE_VEC_IMAGE, NULL, NULL, 0, &page, &n, &e),
                     ERR_INVAL);
    assert_int_equal(store_vectors_read(f->s, (store_vec_kind)7, NULL, NULL, 5, &page, &n, &e),
                     ERR_INVAL);
}

/* Deleting an asset leaves a "deleted" event under its latest job. */
static void test_asset_deleted_event(void **state)
{
    fixture *f = *state;
    finish_asset(f->s, "gone", NULL, 1);
    finish_asset(f->s, "gone", NULL, 1);
    err_t e = {0};
    outbox_event *ev = NULL;
    int n = 0;
    assert_int_equal(store_outbox_read(f->s, 0, 0, 100, &ev, &n, &e), ERR_OK);
    assert_int_equal(n, 2);
    int64_t last_job = ev[1].job_id;
    int64_t last_id = ev[1].id;
    outbox_event_array_free(ev, n);
    assert_int_equal(store_asset_delete(f->s, "gone", &e), ERR_OK);
    assert_int_equal(store_outbox_read(f->s, last_id, 0, 100, &ev, &n, &e), ERR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].asset_id, "gone");
    assert_int_equal(ev[0].job_id, last_job);
    json_t *o = json_loads(ev[0].payload, 0, NULL);
    assert_non_null(o);
    assert_string_equal(jstr(o, "state"), "deleted");
    assert_int_equal(json_integer_value(json_object_get(o, "event_id")), ev[0].id);
    json_decref(o);
    outbox_event_array_free(ev, n);
    /* A failed delete writes no event. */
    assert_int_equal(store_asset_delete(f->s, "gone", &e), ERR_NOENT);
    assert_int_equal(outbox_count(f->s), 3);
}

/* People: create, conditional assign, list with cover, get, rename, merge, reset. */
static void test_people_ops(void **state)
{
    fixture *f = *state;
    finish_asset(f->s, "p1", NULL, 3);
    finish_asset(f->s, "p2", NULL, 2);
    err_t e = {0};
    store_vec *v = NULL;
    int n = 0;
    assert_int_equal(store_vectors_read(f->s, STORE_VEC_FACE, NULL, NULL, 10, &v, &n, &e), ERR_OK);
    assert_int_equal(n, 5);
    int64_t fid[5];
    for (int i = 0; i < 5; i++)
        fid[i] = v[i].face_id;
    store_vec_array_free(v, n);
    int64_t a = 0, b = 0;
    assert_int_equal(store_person_create(f->s, NULL, &a, &e), ERR_OK);
    assert_int_equal(store_person_create(f->s, "Bea", &b, &e), ERR_OK);
    assert_true(a > 0 && b > a);
    int64_t pa[5] = {a, a, b, b, b};
    int done = -1;
    assert_int_equal(store_faces_assign(f->s, fid, pa, 3, &done, &e), ERR_OK);
    assert_int_equal(done, 3);
    /* Already assigned faces keep their person. */
    int64_t pb[5] = {b, b, b, b, b};
    assert_int_equal(store_faces_assign(f->s, fid, pb, 5, &done, &e), ERR_OK);
    assert_int_equal(done, 2);
    json_t *list = NULL;
    assert_int_equal(store_people_list(f->s, &list, &e), ERR_OK);
    assert_int_equal(json_array_size(list), 2);
    json_t *first = json_array_get(list, 0);
    assert_int_equal(json_integer_value(json_object_get(first, "id")), b);
    assert_int_equal(json_integer_value(json_object_get(first, "face_count")), 3);
    assert_string_equal(jstr(first, "name"), "Bea");
    json_t *second = json_array_get(list, 1);
    assert_true(json_is_null(json_object_get(second, "name")));
    /* Face 0 of an asset has the best score (0.9): p1's first face. */
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(second, "cover"), "face_id")), fid[0]);
    json_decref(list);
    json_t *p = NULL;
    assert_int_equal(store_person_get(f->s, b, &p, &e), ERR_OK);
    assert_int_equal(json_array_size(json_object_get(p, "faces")), 3);
    json_t *assets = json_object_get(p, "assets");
    assert_int_equal(json_array_size(assets), 2);
    assert_string_equal(json_string_value(json_array_get(assets, 0)), "p1");
    json_decref(p);
    assert_int_equal(store_person_get(f->s, 999999, &p, &e), ERR_NOENT);
    assert_int_equal(store_person_rename(f->s, a, "Al", &e), ERR_OK);
    assert_int_equal(store_person_rename(f->s, 999999, "x", &e), ERR_NOENT);
    int64_t from[1] = {b};
    int64_t bogus[1] = {999999};
    assert_int_equal(store_people_merge(f->s, a, bogus, 1, &e), ERR_NOENT);
    assert_int_equal(store_people_merge(f->s, a, from, 1, &e), ERR_OK);
    assert_int_equal(store_people_merge(f->s, a, (int64_t[]){a}, 1, &e), ERR_INVAL);
    assert_int_equal(store_person_get(f->s, a, &p, &e), ERR_OK);
    assert_int_equal(json_integer_value(json_object_get(p, "face_count")), 5);
    assert_string_equal(jstr(p, "name"), "Al");
    json_decref(p);
    assert_int_equal(store_person_get(f->s, b, &p, &e), ERR_NOENT);
    /* The asset view shows the person. */
    json_t *as = NULL;
    assert_int_equal(store_asset_get(f->s, "p2", 0, &as, &e), ERR_OK);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(as, "faces"), 0), "person_id")),
                     a);
    json_decref(as);
    assert_int_equal(store_faces_assign(f->s, fid, (int64_t[]){0}, 1, &done, &e), ERR_INVAL);
    assert_int_equal(store_people_reset(f->s, &e), ERR_OK);
    assert_int_equal(store_people_list(f->s, &list, &e), ERR_OK);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    assert_int_equal(store_vectors_read(f->s, STORE_VEC_FACE, NULL, NULL, 10, &v, &n, &e), ERR_OK);
    for (int i = 0; i < n; i++)
        assert_int_equal(v[i].person_id, 0);
    store_vec_array_free(v, n);
}

/* The upload digests of queued/running jobs, of one asset's jobs, and one digest's use. */
static void test_upload_shas(void **state)
{
    fixture *f = *state;
    static const char a[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    static const char b[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    char src[160];
    job j;
    err_t e = {0};
    int64_t ids[3];
    const char *const shas[3] = {a, b, a};
    const char *const assets[3] = {"u1", "u2", "u3"};
    for (int i = 0; i < 3; i++) {
        snprintf(src, sizeof src, "{\"upload\":\"%s\",\"size\":%d}", shas[i], 10 + i);
        job_spec sp = {.asset_id = assets[i], .tasks = JOB_TASK_ALL, .source = src};
        assert_int_equal(store_job_enqueue(f->s, &sp, &j, NULL, &e), ERR_OK);
        ids[i] = j.id;
        job_clear(&j);
    }
    enqueue(f->s, "not-an-upload", 0); /* a path source */
    char **v = NULL;
    int n = 0, used = -1;
    assert_int_equal(store_upload_shas(f->s, NULL, &v, &n, &e), ERR_OK);
    assert_int_equal(n, 2); /* sorted, unique */
    assert_string_equal(v[0], a);
    assert_string_equal(v[1], b);
    store_strings_free(v, n);
    assert_int_equal(store_upload_in_use(f->s, a, &used, &e), ERR_OK);
    assert_int_equal(used, 1);
    /* Cancel both jobs of `a`: it is no longer in use, but asset u1 still names it. */
    assert_int_equal(store_job_cancel(f->s, ids[0], NULL, &e), ERR_OK);
    assert_int_equal(store_upload_in_use(f->s, a, &used, &e), ERR_OK);
    assert_int_equal(used, 1);
    assert_int_equal(store_job_cancel(f->s, ids[2], NULL, &e), ERR_OK);
    assert_int_equal(store_upload_in_use(f->s, a, &used, &e), ERR_OK);
    assert_int_equal(used, 0);
    assert_int_equal(store_upload_shas(f->s, NULL, &v, &n, &e), ERR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0], b);
    store_strings_free(v, n);
    assert_int_equal(store_upload_shas(f->s, "u1", &v, &n, &e), ERR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0], a);
    store_strings_free(v, n);
    assert_int_equal(store_upload_shas(f->s, "nobody", &v, &n, &e), ERR_OK);
    assert_int_equal(n, 0);
    store_strings_free(v, n);
    assert_int_equal(store_upload_in_use(f->s, "xyz", &used, &e), ERR_INVAL);
}

static int run_suite(const char *url_template)
{
    g_template = url_template;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_names),
        cmocka_unit_test_setup_teardown(test_open_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enqueue_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedupe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_max_attempts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_run_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_conditional, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_max_attempts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rescue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_complete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_results_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_asset_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_shas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_complete_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enqueue_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thumbs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_assets_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_durability, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_newer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leader_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_claim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leader_race, setup, teardown),
        cmocka_unit_test(test_concurrent_open),
        cmocka_unit_test_setup_teardown(test_wait_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_schema_newer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_connection_loss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vectors_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_asset_deleted_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_people_ops, setup, teardown),
    };
    char name[600];
    snprintf(name, sizeof name, "store[%s]", url_template);
    return _cmocka_run_group_tests(name, tests, sizeof tests / sizeof tests[0], NULL, NULL);
}

int main(void)
{
    return ts_store_urls_each("test_store", "store", NULL, run_suite) != 0;
}
