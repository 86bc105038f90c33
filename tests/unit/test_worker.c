/*
 * test_worker.c — the dispatcher and slots with real components: a SQLite
 * store in a temp dir, the pipeline with the provisioned models
 * (INFERD_MODELS) and a fetcher whose media root holds copies of the
 * face-api sample photos (INFERD_TESTDATA). Covers: jobs run to done with
 * their results stored; a corrupt image and a missing file fail at once with
 * a reason while the jobs behind them finish; a transient fetch error is
 * retried until max_attempts; a stop releases running jobs which a second
 * worker then finishes; worker_get_stats answers at once while slots are busy;
 * an idle slot helps a lone job's face detection (helped_views) without
 * changing its faces; many jobs with helpers, then a stop while helping.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "events/events.h"
#include "fetch/fetch.h"
#include "pipeline/analyze.h"
#include "queue/worker.h"
#include "store/store.h"
#include "testsupport.h"

static pipeline *g_pl; /* loaded once: the models take seconds */

typedef struct {
    char dir[256];
    char media[300];
    store *st;
    fetcher *fetch;
    events *ev;
    worker *w;
} fixture;

static void copy_file(const char *from, const char *to, size_t truncate_to, int corrupt)
{
    FILE *in = fopen(from, "rb");
    assert_non_null(in);
    static unsigned char buf[1 << 22];
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    assert_true(n > 4096);
    if (truncate_to > 0 && truncate_to < n)
        n = truncate_to;
    if (corrupt)
        for (size_t i = n / 3; i < n / 3 + 512; i++)
            buf[i] = (unsigned char)(i * 37u);
    FILE *out = fopen(to, "wb");
    assert_non_null(out);
    assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(out);
}

static int group_setup(void **state)
{
    (void)state;
    err_t e = {0};
    pipeline_opts po = {.models_dir = INFERD_MODELS, .intra_op_threads = 1};
    if (pipeline_new(&po, &g_pl, &e) != ERR_OK) {
        fprintf(stderr, "pipeline_new: %s\n", e.msg);
        return -1;
    }
    if (fetch_global_init(&e) != ERR_OK) {
        fprintf(stderr, "fetch_global_init: %s\n", e.msg);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    pipeline_free(g_pl);
    fetch_global_cleanup();
    return 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/inferd-test-worker-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->media, sizeof f->media, "%s/media", f->dir);
    assert_int_equal(mkdir(f->media, 0700), 0);
    char from[512], to[512];
    for (int i = 1; i <= 6; i++) {
        snprintf(from, sizeof from, "%s/faceapi/sample%d.jpg", INFERD_TESTDATA, i);
        snprintf(to, sizeof to, "%s/sample%d.jpg", f->media, i);
        copy_file(from, to, 0, 0);
    }
    snprintf(from, sizeof from, "%s/faceapi/sample1.jpg", INFERD_TESTDATA);
    snprintf(to, sizeof to, "%s/corrupt.jpg", f->media);
    copy_file(from, to, 20000, 1);

    char url[400];
    snprintf(url, sizeof url, "sqlite:%s/inferd.db", f->dir);
    err_t e = {0};
    assert_int_equal(store_open(url, NULL, &f->st, &e), ERR_OK);
    char spool[400];
    snprintf(spool, sizeof spool, "%s/uploads", f->dir);
    fetch_opts fo = {.media_root = f->media,
                     .spool_dir = spool,
                     .allow_private = 1,
                     .connect_timeout_ms = 1000,
                     .timeout_ms = 5000};
    assert_int_equal(fetch_new(&fo, &f->fetch, &e), ERR_OK);
    assert_int_equal(events_new(f->st, NULL, &f->ev, &e), ERR_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->w != NULL) {
        worker_stop(f->w, 0);
        worker_free(f->w);
    }
    events_free(f->ev);
    fetch_free(f->fetch);
    store_close(f->st);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", f->dir);
    free(f);
    return 0;
}

static worker *start_worker(fixture *f, const char *owner, int slots)
{
    worker_opts o = {.st = f->st,
                     .pl = g_pl,
                     .fetch = f->fetch,
                     .owner = owner,
                     .slots = slots,
                     .lease_ms = 60000,
                     .poll_ms = 200,
                     .retry_base_ms = 20,
                     .retry_max_ms = 100};
    worker *w = NULL;
    err_t e = {0};
    assert_int_equal(worker_start(&o, &w, &e), ERR_OK);
    return w;
}

static int64_t enqueue(fixture *f, const char *asset, const char *source, int max_attempts)
{
    job_spec spec = {.asset_id = asset,
                     .tasks = JOB_TASK_ALL,
                     .source = source,
                     .max_attempts = max_attempts,
                     .payload = "{\"album\":\"test\"}"};
    job j = {0};
    err_t e = {0};
    assert_int_equal(store_job_enqueue(f->st, &spec, &j, NULL, &e), ERR_OK);
    int64_t id = j.id;
    job_clear(&j);
    if (f->w != NULL)
        worker_notify(f->w);
    return id;
}

static int64_t enqueue_path(fixture *f, const char *asset, const char *path)
{
    char src[300];
    snprintf(src, sizeof src, "{\"path\":\"%s\"}", path);
    return enqueue(f, asset, src, 0);
}

static store_counts counts(fixture *f)
{
    store_counts c;
    err_t e = {0};
    assert_int_equal(store_counts_get(f->st, &c, &e), ERR_OK);
    return c;
}

/* Waits until no job is queued or running; also measures worker_get_stats latency. */
static void wait_idle(fixture *f, int timeout_ms, double *max_stats_ms, int *saw_busy)
{
    int64_t dl = ts_now_ms() + timeout_ms;
    for (;;) {
        store_counts c = counts(f);
        if (c.queued == 0 && c.running == 0)
            return;
        if (ts_now_ms() >= dl)
            fail_msg("timeout: queued=%lld running=%lld done=%lld failed=%lld", (long long)c.queued,
                     (long long)c.running, (long long)c.done, (long long)c.failed);
        if (f->w != NULL && max_stats_ms != NULL) {
            struct timespec a, b;
            worker_stats s;
            clock_gettime(CLOCK_MONOTONIC, &a);
            worker_get_stats(f->w, &s);
            clock_gettime(CLOCK_MONOTONIC, &b);
            double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
            if (s.busy == s.slots && ms > *max_stats_ms)
                *max_stats_ms = ms;
            if (s.busy == s.slots)
                *saw_busy = 1;
        }
        ts_sleep_ms(20);
    }
}

/* Counts this process's threads running with nice >= `nice` under SCHED_BATCH (policy 3). */
static int count_batch_threads(int nice)
{
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[300], line[1024];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", de->d_name);
        FILE *fp = fopen(path, "r");
        if (fp == NULL)
            continue;
        size_t len = fread(line, 1, sizeof line - 1, fp);
        fclose(fp);
        line[len] = '\0';
        char *p = strrchr(line, ')');
        if (p == NULL)
            continue;
        /* Fields after the command: state is field 3, nice 19, policy 41. */
        long v[40] = {0};
        int k = 0;
        for (char *tok = strtok(p + 2, " "); tok && k < 40; tok = strtok(NULL, " "))
            v[k++] = strtol(tok, NULL, 10);
        if (k >= 39 && v[16] >= nice && v[38] == 3)
            n++;
    }
    closedir(d);
    return n;
}

static job get_job(fixture *f, int64_t id)
{
    job j = {0};
    err_t e = {0};
    assert_int_equal(store_job_get(f->st, id, &j, &e), ERR_OK);
    return j;
}

/* Six photos on two slots: all done, results stored, stage timings recorded. */
static void test_all_done(void **state)
{
    fixture *f = *state;
    int before = count_batch_threads(10);
    f->w = start_worker(f, "w1", 2);
    /* Slot threads lower their own priority: SCHED_BATCH, nice + 10. */
    int64_t dl = ts_now_ms() + 5000;
    while (count_batch_threads(10) < before + 2) {
        assert_true(ts_now_ms() < dl);
        ts_sleep_ms(10);
    }
    int64_t ids[6];
    for (int i = 0; i < 6; i++) {
        char asset[32], path[32];
        snprintf(asset, sizeof asset, "photo-%d", i + 1);
        snprintf(path, sizeof path, "sample%d.jpg", i + 1);
        ids[i] = enqueue_path(f, asset, path);
    }
    double max_stats_ms = 0;
    int saw_busy = 0;
    wait_idle(f, 240000, &max_stats_ms, &saw_busy);
    /* Never stalls: stats answer at once while every slot runs inference. */
    assert_true(saw_busy);
    assert_true(max_stats_ms < 50.0);

    int total_faces = 0;
    for (int i = 0; i < 6; i++) {
        job j = get_job(f, ids[i]);
        assert_int_equal(j.state, JOB_DONE);
        assert_int_equal(j.attempts, 1);
        assert_non_null(j.timings);
        json_t *t = json_loads(j.timings, 0, NULL);
        assert_non_null(t);
        const char *keys[] = {"fetch",          "decode",         "image_embedding",
                              "face_detection", "face_alignment", "face_embedding",
                              "total"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            assert_non_null(json_object_get(t, keys[k]));
        assert_true(json_number_value(json_object_get(t, "total")) > 0);
        json_decref(t);

        json_t *a = NULL;
        err_t e = {0};
        assert_int_equal(store_asset_get(f->st, j.asset_id, 0, &a, &e), ERR_OK);
        json_t *ie = json_object_get(a, "image_embeddings");
        assert_true(json_is_array(ie));
        assert_int_equal(json_array_size(ie), 1);
        json_t *faces = json_object_get(a, "faces");
        assert_true(json_is_array(faces));
        total_faces += (int)json_array_size(faces);
        json_decref(a);
        job_clear(&j);
    }
    assert_true(total_faces >= 6); /* every sample shows at least one face */

    worker_stats s;
    worker_get_stats(f->w, &s);
    assert_int_equal(s.slots, 2);
    assert_int_equal(s.completed, 6);
    assert_int_equal(s.failed, 0);
    assert_int_equal(s.stage[7].total, 6); /* total */
    assert_int_equal(s.stage[6].total, 6); /* commit */
    assert_true(s.busy_seconds > 0);
    assert_string_equal(worker_stage_names[0], "fetch");
    assert_string_equal(worker_stage_names[7], "total");
    assert_true(worker_hist_bounds()[WORKER_HIST_BUCKETS - 1] >= 10000);
    store_counts c = counts(f);
    assert_int_equal(c.done, 6);
    assert_int_equal(c.outbox_pending, 6); /* no publisher: events wait in the outbox */
}

/* A corrupt image and a missing file fail at once with a reason; jobs behind them finish. */
static void test_bad_inputs(void **state)
{
    fixture *f = *state;
    f->w = start_worker(f, "w1", 1);
    int64_t bad = enqueue_path(f, "bad", "corrupt.jpg");
    int64_t missing = enqueue_path(f, "missing", "does-not-exist.jpg");
    int64_t good = enqueue_path(f, "good", "sample2.jpg");
    wait_idle(f, 120000, NULL, NULL);

    job j = get_job(f, bad);
    assert_int_equal(j.state, JOB_FAILED);
    assert_int_equal(j.attempts, 1);
    assert_non_null(j.error);
    assert_non_null(strstr(j.error, "decode: "));
    assert_string_equal(j.error_code, "decode");
    job_clear(&j);

    j = get_job(f, missing);
    assert_int_equal(j.state, JOB_FAILED);
    assert_int_equal(j.attempts, 1);
    assert_non_null(j.error);
    assert_non_null(strstr(j.error, "fetch: "));
    job_clear(&j);

    j = get_job(f, good);
    assert_int_equal(j.state, JOB_DONE);
    job_clear(&j);

    worker_stats s;
    worker_get_stats(f->w, &s);
    assert_int_equal(s.failed, 2);
    assert_int_equal(s.completed, 1);
    assert_int_equal(s.retried, 0);
}

/* A transient fetch error (connection refused) is retried until max_attempts, then fails. */
static void test_retry_then_fail(void **state)
{
    fixture *f = *state;
    /* A port nobody listens on: bind, read the number, close. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    char src[128];
    snprintf(src, sizeof src, "{\"url\":\"http://127.0.0.1:%d/x.jpg\"}", ntohs(a.sin_port));

    f->w = start_worker(f, "w1", 2);
    int64_t id = enqueue(f, "remote", src, 4);
    int64_t t0 = ts_now_ms();
    wait_idle(f, 30000, NULL, NULL);
    job j = get_job(f, id);
    assert_int_equal(j.state, JOB_FAILED);
    assert_int_equal(j.attempts, 4);
    assert_int_equal(j.max_attempts, 4);
    assert_non_null(j.error);
    assert_non_null(strstr(j.error, "fetch: "));
    assert_true(j.error_code != NULL);
    job_clear(&j);
    /* Backoff 20, 40, 80 ms (+-25 %), far below the 200 ms poll: retries are woken by
     * their run_after, not found by polling. */
    assert_true(ts_now_ms() - t0 < 5000);

    worker_stats s;
    int64_t dl = ts_now_ms() + 5000;
    do { /* the store shows the failure a moment before the counter does */
        worker_get_stats(f->w, &s);
        if (s.failed < 1)
            ts_sleep_ms(5);
    } while (s.failed < 1 && ts_now_ms() < dl);
    assert_int_equal(s.retried, 3);
    assert_int_equal(s.failed, 1);
}

/* Stop with jobs running: they go back to queued, a second worker finishes them. */
static void test_stop_releases(void **state)
{
    fixture *f = *state;
    f->w = start_worker(f, "w1", 2);
    int64_t ids[4];
    for (int i = 0; i < 4; i++) {
        char asset[32], path[32];
        snprintf(asset, sizeof asset, "p-%d", i);
        snprintf(path, sizeof path, "sample%d.jpg", i + 3);
        ids[i] = enqueue_path(f, asset, path);
    }
    int64_t dl = ts_now_ms() + 10000;
    for (;;) {
        worker_stats s;
        worker_get_stats(f->w, &s);
        if (s.busy == 2)
            break;
        assert_true(ts_now_ms() < dl);
        ts_sleep_ms(5);
    }
    int64_t t0 = ts_now_ms();
    worker_stop(f->w, 0);
    assert_true(ts_now_ms() - t0 < 2000); /* does not wait for the model runs */
    store_counts c = counts(f);
    assert_int_equal(c.running, 0);
    assert_true(c.queued >= 2);
    worker_free(f->w);
    f->w = NULL;
    /* Released jobs kept their attempt count (release does not count one). */
    for (int i = 0; i < 4; i++) {
        job j = get_job(f, ids[i]);
        if (j.state == JOB_QUEUED)
            assert_true(j.attempts <= 1);
        job_clear(&j);
    }

    f->w = start_worker(f, "w2", 2);
    wait_idle(f, 240000, NULL, NULL);
    for (int i = 0; i < 4; i++) {
        job j = get_job(f, ids[i]);
        assert_int_equal(j.state, JOB_DONE);
        job_clear(&j);
    }
}

/* Faces the pipeline finds in media photo sampleN.jpg on its own (no helpers). */
static int reference_faces(fixture *f, int n)
{
    char path[400];
    snprintf(path, sizeof path, "%s/sample%d.jpg", f->media, n);
    analysis *a = NULL;
    err_t e = {0};
    assert_int_equal(pipeline_analyze_file(g_pl, path, PIPELINE_ALL, &a, &e), ERR_OK);
    int nf = a->nfaces;
    analysis_free(a);
    return nf;
}

static int stored_faces(fixture *f, const char *asset)
{
    json_t *a = NULL;
    err_t e = {0};
    assert_int_equal(store_asset_get(f->st, asset, 0, &a, &e), ERR_OK);
    json_t *faces = json_object_get(a, "faces");
    assert_true(json_is_array(faces));
    int n = (int)json_array_size(faces);
    json_decref(a);
    return n;
}

/* One job at a time on two slots: the idle slot runs some of its detector views. */
static void test_single_job_helped(void **state)
{
    fixture *f = *state;
    f->w = start_worker(f, "w1", 2);
    for (int i = 1; i <= 3; i++) {
        char asset[32], path[32];
        snprintf(asset, sizeof asset, "alone-%d", i);
        snprintf(path, sizeof path, "sample%d.jpg", i);
        int64_t id = enqueue_path(f, asset, path);
        int max_busy = 0;
        int64_t dl = ts_now_ms() + 120000;
        for (;;) {
            worker_stats s;
            worker_get_stats(f->w, &s);
            if (s.busy > max_busy)
                max_busy = s.busy;
            if (s.completed + s.failed == (uint64_t)i)
                break;
            assert_true(ts_now_ms() < dl);
            ts_sleep_ms(2);
        }
        assert_true(max_busy <= 1); /* `busy` counts jobs, not helpers */
        job j = get_job(f, id);
        assert_int_equal(j.state, JOB_DONE);
        job_clear(&j);
        /* Views merged in order: the same faces as the pipeline alone finds. */
        assert_int_equal(stored_faces(f, asset), reference_faces(f, i));
    }
    worker_stats s;
    worker_get_stats(f->w, &s);
    fprintf(stderr, "single jobs on 2 slots: helped_views=%llu help_seconds=%.3f busy=%.3f\n",
            (unsigned long long)s.helped_views, s.help_seconds, s.busy_seconds);
    assert_int_equal(s.completed, 3);
    assert_true(s.helped_views > 0);
    assert_true(s.help_seconds > 0);
    assert_true(s.busy_seconds > s.help_seconds);
    assert_int_equal(s.helping, 0);
}

/* Many jobs on three slots with helping, all done with the pipeline's own faces; then a
 * stop while a slot helps (run under ASan: no use after free, no leak). */
static void test_stress_helpers(void **state)
{
    fixture *f = *state;
    enum { NJOBS = 30 };
    int ref[7];
    for (int i = 1; i <= 6; i++)
        ref[i] = reference_faces(f, i);
    f->w = start_worker(f, "w1", 3);
    for (int i = 0; i < NJOBS; i++) {
        char asset[32], path[32];
        snprintf(asset, sizeof asset, "s-%d", i);
        snprintf(path, sizeof path, "sample%d.jpg", i % 6 + 1);
        enqueue_path(f, asset, path);
        if (i % 7 == 0)
            ts_sleep_ms(30); /* let the slots run dry now and then, so helpers join */
    }
    wait_idle(f, 280000, NULL, NULL);
    for (int i = 0; i < NJOBS; i++) {
        char asset[32];
        snprintf(asset, sizeof asset, "s-%d", i);
        assert_int_equal(stored_faces(f, asset), ref[i % 6 + 1]);
    }
    worker_stats s;
    int64_t dl = ts_now_ms() + 10000;
    do { /* the store shows a commit a moment before the counter does */
        worker_get_stats(f->w, &s);
        if (s.completed < NJOBS)
            ts_sleep_ms(5);
    } while (s.completed < NJOBS && ts_now_ms() < dl);
    fprintf(stderr, "stress: completed=%llu helped_views=%llu\n", (unsigned long long)s.completed,
            (unsigned long long)s.helped_views);
    assert_int_equal(s.completed, NJOBS);
    assert_int_equal(s.failed, 0);

    /* Stop while helping: the helper leaves after its view, the job is released. */
    enqueue_path(f, "last", "sample1.jpg");
    dl = ts_now_ms() + 60000;
    for (;;) {
        worker_get_stats(f->w, &s);
        if (s.helping > 0 || s.completed > NJOBS)
            break;
        assert_true(ts_now_ms() < dl);
        ts_sleep_ms(1);
    }
    fprintf(stderr, "stress: stopping with helping=%d\n", s.helping);
    worker_stop(f->w, 0);
    worker_free(f->w);
    f->w = NULL;
    store_counts c = counts(f);
    assert_int_equal(c.running, 0);
}

/* Argument checks: missing components, no slots, no owner. */
static void test_bad_opts(void **state)
{
    fixture *f = *state;
    worker *w = NULL;
    err_t e = {0};
    worker_opts o = {.st = f->st, .pl = g_pl, .fetch = f->fetch, .owner = "x", .slots = 0};
    assert_int_equal(worker_start(&o, &w, &e), ERR_INVAL);
    o.slots = 1;
    o.owner = "";
    assert_int_equal(worker_start(&o, &w, &e), ERR_INVAL);
    o.owner = "x";
    o.fetch = NULL;
    assert_int_equal(worker_start(&o, &w, &e), ERR_INVAL);
    assert_null(w);
    worker_stop(NULL, 0);
    worker_free(NULL);
    worker_notify(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_opts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_inputs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_then_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_releases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_job_helped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stress_helpers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
